//! `make lan-scale N=1000`: a connection manager and N servants on this machine, each
//! servant on a loopback address of its own (127.0.X.Y), so the per-address caps keep
//! their defaults and every servant is a host of its own to the others.
//!
//! It writes lines from several servants in four phases and reports what every servant
//! showed against what was written: lines lost, shown twice, shown out of their author's
//! order, and the spread of delivery times.
//!
//! - *stable*: `--writers` servants (5) write `--lines` lines each (4), one line every
//!   `--every-ms` (1,000). The servants of a LAN each have a host of their own; here
//!   1,000 share two cores, and a line costs each of them about half a millisecond of
//!   CPU, so a line a second is a load this machine carries with room to spare, and the
//!   figure is the overlay's latency (its hops), not a queue of the machine's;
//! - *busy*: the same again, one line every `--busy-every-ms` (200): five lines a second
//!   are 5,000 deliveries a second, most of what two cores can do, and the figure shows
//!   the machine's queue;
//! - *churn*: while the writers go on, `--churn` servants are killed with SIGKILL and as
//!   many new ones started; counted over the servants up the whole time;
//! - *burst*: `--burst-writers` servants write `--burst-lines` lines each, as fast as
//!   their input takes them.
//!
//! The phases start `--settle-secs` (10) after every servant hears s0. Servants are
//! started `--batch` at a time, each batch once the last has joined. Every
//! wait is bounded, and `--limit-secs` (default 1,800) kills everything it started and
//! exits 3. `--per-line` also prints each line's time to its last servant. Exit 0 when nothing was lost, doubled or out of order, 1 otherwise.
//!
//! `make test` runs it with 50 servants (the test at the end of this file). The
//! processes and the counting are in `lan_scale/net.rs`.

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "lan_scale/net.rs"]
mod net;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use bench_common::{arg, pss_kb, quantile, rss_kb, threads};
use net::{address, wait, Lcg, Net, Phase, PIDS};

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct Plan {
    pub servants: usize,
    pub writers: usize,
    pub lines: usize,
    /// Between two paced lines (stable phase).
    pub every: Duration,
    /// Between two lines of the busy phase.
    pub busy_every: Duration,
    /// Waited before the stable phase, once everyone hears s0.
    pub settle: Duration,
    pub churn: usize,
    pub burst_writers: usize,
    pub burst_lines: usize,
    pub batch: usize,
    pub limit: Duration,
    /// Also print each line's time to its last servant, in the order written.
    pub per_line: bool,
}

/// What a run found, phase by phase, and the footprint.
pub struct Report {
    pub phases: Vec<Phase>,
    pub footprint: Footprint,
    pub text: String,
}

/// Start-up times and what the servants hold at rest.
#[derive(Default)]
pub struct Footprint {
    pub start_s: f64,
    pub ready_s: f64,
    pub threads_median: f64,
    pub threads_max: f64,
    pub rss_kb_median: f64,
    pub rss_kb_max: f64,
    pub rss_mib_total: f64,
    /// The servants' proportional set sizes summed: what they hold together, each page
    /// the binary and libc share counted once.
    pub pss_mib_total: f64,
    pub manager_rss_kb: f64,
    /// Median and max RSS once the burst has been shown everywhere.
    pub rss_kb_median_after: f64,
    pub rss_kb_max_after: f64,
    /// Hops a line came over to a servant: the median of the servants' means, the most.
    pub hops_median: f64,
    pub hops_max: u64,
    pub churn: usize,
}

/// RSS (KiB) and threads of each servant up, and the sum of their PSS (MiB).
fn measure(net: &Net) -> (Vec<f64>, Vec<f64>, f64) {
    let up: Vec<u32> = net
        .servants
        .iter()
        .filter(|s| s.alive)
        .map(|s| s.child.id())
        .collect();
    let rss = up.iter().map(|&p| rss_kb(p) as f64).collect();
    let thr = up.iter().map(|&p| threads(p) as f64).collect();
    let pss = up.iter().map(|&p| pss_kb(p) as f64).sum::<f64>() / 1024.0;
    (rss, thr, pss)
}

impl Report {
    pub fn clean(&self) -> bool {
        self.phases.iter().all(Phase::clean)
    }
}

fn ms(v: &[f64], q: f64) -> String {
    let mut v = v.to_vec();
    format!("{:.0}", quantile(&mut v, q))
}

/// Runs `plan` with the binaries in `bin`; what it found, or why it could not.
pub fn run(plan: &Plan, bin: &Path) -> Result<Report, String> {
    let dead = plan.limit;
    thread::spawn(move || {
        thread::sleep(dead);
        eprintln!(
            "lan-scale: time limit of {} s reached; stopping everything",
            dead.as_secs()
        );
        for pid in PIDS.lock().unwrap().iter() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        std::process::exit(3);
    });
    let dir = std::env::temp_dir().join(format!("genp2p-scale-{}", std::process::id()));
    let mut net = Net::start(bin, dir)?;
    let mut text = String::new();
    let t0 = Instant::now();
    let say = |text: &mut String, line: String| {
        eprintln!("lan-scale: {line}");
        text.push_str(&line);
        text.push('\n');
    };
    say(
        &mut text,
        format!(
            "{} servants on {} .. {}, the manager on 127.0.0.1:{}",
            plan.servants,
            address(0),
            address(plan.servants - 1),
            net.manager_port
        ),
    );
    while net.servants.len() < plan.servants {
        let from = net.servants.len();
        let to = (from + plan.batch).min(plan.servants);
        for _ in from..to {
            net.add_servant()?;
        }
        wait(
            &format!("servants s{from} to s{} joining", to - 1),
            Duration::from_secs(120),
            || {
                net.servants[from..to]
                    .iter()
                    .all(|s| s.joined.load(Ordering::Relaxed))
            },
        )?;
    }
    let started = t0.elapsed();
    wait(
        "every servant in the overlay, its links to every servant closed",
        Duration::from_secs(120),
        || {
            net.servants
                .iter()
                .all(|s| s.linked.load(Ordering::Relaxed) && s.meshed_out.load(Ordering::Relaxed))
        },
    )?;
    // Warm-up: s0 writes until everyone has shown one of its lines.
    let warm_end = Instant::now() + Duration::from_secs(120);
    loop {
        net.write(0);
        thread::sleep(Duration::from_millis(200));
        let all = net.servants[1..]
            .iter()
            .all(|s| s.shown.lock().unwrap().iter().any(|(a, _, _)| *a == 0));
        if all {
            break;
        }
        if Instant::now() > warm_end {
            return Err("warm-up: some servants showed nothing of s0's in 120 s".into());
        }
    }
    say(
        &mut text,
        format!(
            "started in {:.1} s; every servant linked and hearing s0 after {:.1} s",
            started.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        ),
    );
    // Footprint, at rest.
    let (mut rss, mut thr, pss) = measure(&net);
    let mut footprint = Footprint {
        start_s: started.as_secs_f64(),
        ready_s: t0.elapsed().as_secs_f64(),
        threads_median: quantile(&mut thr, 0.5),
        threads_max: quantile(&mut thr, 1.0),
        rss_kb_median: quantile(&mut rss, 0.5),
        rss_kb_max: quantile(&mut rss, 1.0),
        rss_mib_total: rss.iter().sum::<f64>() / 1024.0,
        pss_mib_total: pss,
        manager_rss_kb: rss_kb(net.manager.id()) as f64,
        ..Footprint::default()
    };
    say(
        &mut text,
        format!(
            "per servant: threads median {} max {}; RSS median {:.1} MiB max {:.1} MiB; all servants {:.0} MiB RSS, {:.0} MiB PSS; manager {:.1} MiB",
            footprint.threads_median,
            footprint.threads_max,
            footprint.rss_kb_median / 1024.0,
            footprint.rss_kb_max / 1024.0,
            footprint.rss_mib_total,
            footprint.pss_mib_total,
            footprint.manager_rss_kb / 1024.0
        ),
    );
    let writers: Vec<usize> = (0..plan.writers.min(plan.servants)).collect();
    let mut phases = Vec::new();
    // The last to join are still filling their neighbours and reserves: let them settle.
    thread::sleep(plan.settle);

    // Stable, then busy: the same lines, paced apart and then close together.
    for (name, every) in [("stable", plan.every), ("busy", plan.busy_every)] {
        let mut lines = Vec::new();
        for _ in 0..plan.lines {
            for &w in &writers {
                net.write(w);
                lines.push((w, net.next[&w]));
                thread::sleep(every);
            }
        }
        let everyone = net.alive();
        net.wait_shown(&everyone, &lines, Duration::from_secs(30));
        phases.push(net.tally(name, &everyone, &lines));
    }

    // Churn: victims killed and newcomers started while the writers go on.
    let mut rng = Lcg(t0.elapsed().as_nanos() as u64 | 1);
    let mut victims = Vec::new();
    let candidates: Vec<usize> = (plan.writers.max(plan.burst_writers)..plan.servants).collect();
    while victims.len() < plan.churn.min(candidates.len()) {
        let v = candidates[rng.below(candidates.len())];
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    let steady: Vec<usize> = net
        .alive()
        .into_iter()
        .filter(|i| !victims.contains(i))
        .collect();
    let mut lines = Vec::new();
    let mut newcomers = Vec::new();
    let rounds = plan.churn.max(plan.lines);
    for r in 0..rounds {
        let w = writers[r % writers.len()];
        net.write(w);
        lines.push((w, net.next[&w]));
        if r < victims.len() {
            net.servants[victims[r]].kill();
            newcomers.push(net.add_servant()?);
        }
        thread::sleep(Duration::from_millis(100));
    }
    net.wait_shown(&steady, &lines, Duration::from_secs(30));
    phases.push(net.tally("churn", &steady, &lines));
    let _ = wait("newcomers linked", Duration::from_secs(60), || {
        newcomers
            .iter()
            .all(|&i| net.servants[i].linked.load(Ordering::Relaxed))
    });

    // Burst.
    let burst_writers: Vec<usize> = (0..plan.burst_writers.min(plan.servants)).collect();
    let mut lines = Vec::new();
    for _ in 0..plan.burst_lines {
        for &w in &burst_writers {
            net.write(w);
            lines.push((w, net.next[&w]));
        }
    }
    let everyone: Vec<usize> = net
        .alive()
        .into_iter()
        .filter(|i| !newcomers.contains(i))
        .collect();
    net.wait_shown(&everyone, &lines, Duration::from_secs(120));
    phases.push(net.tally("burst", &everyone, &lines));
    let (mut rss_after, _, _) = measure(&net);
    (footprint.hops_median, footprint.hops_max) = net.hops();
    footprint.rss_kb_median_after = quantile(&mut rss_after, 0.5);
    footprint.rss_kb_max_after = quantile(&mut rss_after, 1.0);
    let linked_newcomers = newcomers
        .iter()
        .filter(|&&i| net.servants[i].linked.load(Ordering::Relaxed))
        .count();

    say(&mut text, String::new());
    say(
        &mut text,
        format!(
            "{:<7} {:>6} {:>8} {:>5} {:>7} {:>12} {:>26} {:>22}",
            "phase",
            "lines",
            "servants",
            "lost",
            "doubled",
            "out of order",
            "delivery ms p50/p99/max",
            "last servant ms p50"
        ),
    );
    for p in &phases {
        say(
            &mut text,
            format!(
                "{:<7} {:>6} {:>8} {:>5} {:>7} {:>12} {:>26} {:>22}",
                p.name,
                p.lines,
                p.servants,
                p.lost,
                p.doubled,
                p.out_of_order,
                format!(
                    "{}/{}/{}",
                    ms(&p.deliveries, 0.5),
                    ms(&p.deliveries, 0.99),
                    ms(&p.deliveries, 1.0)
                ),
                ms(&p.last, 0.5)
            ),
        );
    }
    say(
        &mut text,
        format!(
            "per servant after the burst: RSS median {:.1} MiB max {:.1} MiB; a line came over {:.1} hops (median of the servants' means), {} at most",
            footprint.rss_kb_median_after / 1024.0,
            footprint.rss_kb_max_after / 1024.0,
            footprint.hops_median,
            footprint.hops_max
        ),
    );
    for p in phases.iter().filter(|_| plan.per_line) {
        let each: Vec<String> = p.last.iter().map(|ms| format!("{ms:.0}")).collect();
        say(
            &mut text,
            format!("{} last servant ms per line: {}", p.name, each.join(" ")),
        );
    }
    say(
        &mut text,
        format!(
            "churn: {} killed with SIGKILL and {} started ({} of them linked); counted over the {} servants up throughout",
            victims.len(),
            newcomers.len(),
            linked_newcomers,
            steady.len()
        ),
    );
    net.keep = !phases.iter().all(Phase::clean);
    drop(net);
    footprint.churn = victims.len();
    Ok(Report {
        phases,
        footprint,
        text,
    })
}

/// One row per phase, and one for the footprint, for bench/report.py.
fn append_json(path: &Path, plan: &Plan, r: &Report) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for p in &r.phases {
        let row = bench_common::Json::new()
            .str("test", "lan-scale")
            .int("n", plan.servants as i64)
            .str("phase", p.name)
            .int("lines", p.lines as i64)
            .int("servants", p.servants as i64)
            .int("lost", p.lost as i64)
            .int("doubled", p.doubled as i64)
            .int("out_of_order", p.out_of_order as i64)
            .num("p50_ms", quantile(&mut p.deliveries.clone(), 0.5))
            .num("p99_ms", quantile(&mut p.deliveries.clone(), 0.99))
            .num("max_ms", quantile(&mut p.deliveries.clone(), 1.0))
            .num("last_p50_ms", quantile(&mut p.last.clone(), 0.5));
        writeln!(f, "{}", row.finish())?;
    }
    let fp = &r.footprint;
    let row = bench_common::Json::new()
        .str("test", "lan-scale-footprint")
        .int("n", plan.servants as i64)
        .num("start_s", fp.start_s)
        .num("ready_s", fp.ready_s)
        .num("threads_median", fp.threads_median)
        .num("threads_max", fp.threads_max)
        .num("rss_kb_median", fp.rss_kb_median)
        .num("rss_kb_max", fp.rss_kb_max)
        .num("rss_mib_total", fp.rss_mib_total)
        .num("pss_mib_total", fp.pss_mib_total)
        .num("rss_kb_median_after", fp.rss_kb_median_after)
        .num("rss_kb_max_after", fp.rss_kb_max_after)
        .num("hops_median", fp.hops_median)
        .int("hops_max", fp.hops_max as i64)
        .num("manager_rss_kb", fp.manager_rss_kb)
        .int("churn", fp.churn as i64);
    writeln!(f, "{}", row.finish())
}

/// The directory of the servant and connection-manager binaries: the one above this
/// program's (target/release/examples/lan_scale → target/release).
fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.to_owned()))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let servants: usize = arg(&args, "--servants", 50);
    let plan = Plan {
        servants,
        writers: arg(&args, "--writers", 5),
        lines: arg(&args, "--lines", 4),
        every: Duration::from_millis(arg(&args, "--every-ms", 1000)),
        busy_every: Duration::from_millis(arg(&args, "--busy-every-ms", 200)),
        settle: Duration::from_secs(arg(&args, "--settle-secs", 10)),
        churn: arg(&args, "--churn", servants / 10),
        burst_writers: arg(&args, "--burst-writers", 10),
        burst_lines: arg(&args, "--burst-lines", 50),
        batch: arg(&args, "--batch", 25),
        limit: Duration::from_secs(arg(&args, "--limit-secs", 1800)),
        per_line: args.iter().any(|a| a == "--per-line"),
    };
    let bin = PathBuf::from(bench_common::arg_str(
        &args,
        "--bin",
        &bin_dir().to_string_lossy(),
    ));
    let json = bench_common::arg_str(&args, "--json", "");
    match run(&plan, &bin) {
        Ok(r) => {
            print!("{}", r.text);
            if !json.is_empty() {
                if let Err(e) = append_json(Path::new(&json), &plan, &r) {
                    eprintln!("lan-scale: {json}: {e}");
                }
            }
            std::process::exit(if r.clean() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("lan-scale: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `make test`'s run: 50 servants, each on its own loopback address.
    #[test]
    fn fifty_servants_on_their_own_addresses_lose_and_double_nothing() {
        let plan = Plan {
            servants: 50,
            writers: 5,
            lines: 4,
            every: Duration::from_millis(50),
            busy_every: Duration::from_millis(10),
            settle: Duration::from_secs(1),
            churn: 5,
            burst_writers: 10,
            burst_lines: 20,
            batch: 25,
            limit: Duration::from_secs(600),
            per_line: false,
        };
        let r = run(&plan, &bin_dir()).unwrap_or_else(|e| panic!("lan-scale: {e}"));
        assert!(r.clean(), "{}", r.text);
        for p in &r.phases {
            assert!(
                p.lines > 0 && p.servants > 0 && !p.deliveries.is_empty(),
                "{}",
                r.text
            );
        }
    }
}
