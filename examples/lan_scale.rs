//! `make lan-scale N=1000`: a connection manager and N servants on this machine, each
//! servant on a loopback address of its own (127.0.X.Y), so the per-address caps keep
//! their defaults and every servant is a host of its own to the others.
//!
//! It writes lines from several servants in three phases and reports what every servant
//! showed against what was written: lines lost, shown twice, shown out of their author's
//! order, and the spread of delivery times.
//!
//! - *stable*: `--writers` servants (5) write `--lines` lines each (4), one every
//!   `--every-ms` (200);
//! - *churn*: while the writers go on, `--churn` servants are killed with SIGKILL and as
//!   many new ones started; counted over the servants up the whole time;
//! - *burst*: `--burst-writers` servants write `--burst-lines` lines each, as fast as
//!   their input takes them.
//!
//! The phases start `--settle-secs` (10) after every servant hears s0. Servants are
//! started `--batch` at a time, each batch once the last has joined. Every
//! wait is bounded, and `--limit-secs` (default 1,800) kills everything it started and
//! exits 3. Exit 0 when nothing was lost, doubled or out of order, 1 otherwise.
//!
//! `make test` runs it with 50 servants (the test at the end of this file).

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bench_common::{arg, quantile, rss_kb, threads};

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct Plan {
    pub servants: usize,
    pub writers: usize,
    pub lines: usize,
    /// Between two paced lines (stable phase).
    pub every: Duration,
    /// Waited before the stable phase, once everyone hears s0.
    pub settle: Duration,
    pub churn: usize,
    pub burst_writers: usize,
    pub burst_lines: usize,
    pub batch: usize,
    pub limit: Duration,
}

/// One phase's figures.
#[derive(Debug, Default)]
pub struct Phase {
    pub name: &'static str,
    pub lines: usize,
    /// Between two paced lines (stable phase).
    pub every: Duration,
    /// Waited before the stable phase, once everyone hears s0.
    pub settle: Duration,
    pub servants: usize,
    pub lost: usize,
    pub doubled: usize,
    pub out_of_order: usize,
    /// Every delivery's time from write to show, ms.
    pub deliveries: Vec<f64>,
    /// For each line, the time until the last servant showed it, ms.
    pub last: Vec<f64>,
}

impl Phase {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.doubled == 0 && self.out_of_order == 0
    }
}

/// What a servant showed: (author, number, when).
type Shown = Arc<Mutex<Vec<(usize, u64, Instant)>>>;

struct Servant {
    child: Child,
    stdin: Option<ChildStdin>,
    shown: Shown,
    /// Set once its log says it has a neighbour in the overlay.
    linked: Arc<AtomicBool>,
    joined: Arc<AtomicBool>,
    /// Set once it has closed its links to every servant (10 s after joining the overlay).
    meshed_out: Arc<AtomicBool>,
    alive: bool,
}

impl Servant {
    fn write(&mut self, text: &str) {
        if let Some(s) = &mut self.stdin {
            let _ = s.write_all(format!("{text}\n").as_bytes());
        }
    }

    fn kill(&mut self) {
        if self.alive {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.alive = false;
        }
    }
}

/// Everything a run started; all of it is killed when this goes.
struct Net {
    dir: PathBuf,
    bin: PathBuf,
    manager: Child,
    manager_port: u16,
    servants: Vec<Servant>,
    /// Who wrote line `k`: (author, number) -> when.
    written: HashMap<(usize, u64), Instant>,
    next: HashMap<usize, u64>,
    /// Keep the logs: something was lost, doubled or out of order.
    keep: bool,
}

impl Drop for Net {
    fn drop(&mut self) {
        for s in &mut self.servants {
            s.kill();
        }
        let _ = self.manager.kill();
        let _ = self.manager.wait();
        if self.keep {
            eprintln!(
                "lan-scale: the servants' logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The loopback address of servant `i`: 127.0.1.1, 127.0.1.2, ... 127.0.1.250, 127.0.2.1, ...
fn address(i: usize) -> String {
    format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250)
}

/// Reads `<sA> m A K` lines from a servant's output.
fn read_shown(out: impl std::io::Read, shown: Shown) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { return };
        let Some(rest) = line.strip_prefix("<s") else {
            continue;
        };
        let mut f = rest.split(' ');
        let (Some(_), Some("m"), Some(a), Some(k)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if let (Ok(a), Ok(k)) = (a.parse(), k.parse()) {
            shown.lock().unwrap().push((a, k, Instant::now()));
        }
    }
}

/// Copies a servant's log to its file, raising the flags its lines announce.
fn read_log(err: impl std::io::Read, file: PathBuf, flags: [Arc<AtomicBool>; 3]) {
    let [joined, linked, meshed_out] = flags;
    let mut log = fs::File::create(file).ok();
    for line in BufReader::new(err).lines() {
        let Ok(line) = line else { return };
        if line.contains("joined as ") {
            joined.store(true, Ordering::Relaxed);
        }
        if line.contains("neighbour up: ") || line.contains("overlay link ") {
            linked.store(true, Ordering::Relaxed);
        }
        if line.contains("closed the links to ") {
            meshed_out.store(true, Ordering::Relaxed);
        }
        if let Some(f) = &mut log {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn spawn_reader(name: String, f: impl FnOnce() + Send + 'static) {
    let _ = thread::Builder::new()
        .name(name)
        .stack_size(64 * 1024)
        .spawn(f);
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() > end {
            return Err(format!("{what}: not within {} s", limit.as_secs()));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Net {
    fn start(bin: &Path, dir: PathBuf) -> Result<Net, String> {
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf = dir.join("manager.xml");
        fs::write(
            &conf,
            "<manager><port>0</port><bind>127.0.0.1</bind></manager>\n",
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let mut manager = Command::new(bin.join("connection-manager"))
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e}",
                    bin.join("connection-manager").display()
                )
            })?;
        PIDS.lock().unwrap().push(manager.id());
        let (tx, rx) = std::sync::mpsc::channel();
        let err = manager.stderr.take().ok_or("no manager stderr")?;
        let log = dir.join("manager.log");
        spawn_reader("manager-log".into(), move || {
            let mut f = fs::File::create(log).ok();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(p) = line.split("listening on ").nth(1) {
                    let _ = tx.send(p.rsplit(':').next().unwrap_or("").trim().to_owned());
                }
                if let Some(f) = &mut f {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or("the manager did not say where it listens")?;
        Ok(Net {
            dir,
            bin: bin.to_owned(),
            manager,
            manager_port: port,
            servants: Vec::new(),
            written: HashMap::new(),
            next: HashMap::new(),
            keep: false,
        })
    }

    fn add_servant(&mut self) -> Result<usize, String> {
        let i = self.servants.len();
        let conf = self.dir.join(format!("s{i}.xml"));
        fs::write(
            &conf,
            format!(
                "<config><connectionmgr>127.0.0.1</connectionmgr><port>{}</port><name>s{i}</name>\
                 <listen>0</listen><bind>{}</bind><heartbeat>2</heartbeat></config>\n",
                self.manager_port,
                address(i)
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let mut child = Command::new(self.bin.join("servant"))
            .arg("--config")
            .arg(&conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start servant s{i}: {e}"))?;
        PIDS.lock().unwrap().push(child.id());
        let shown: Shown = Default::default();
        let flags: [Arc<AtomicBool>; 3] = Default::default();
        let [joined, linked, meshed_out] = flags.clone();
        let out = child.stdout.take().ok_or("no servant stdout")?;
        let err = child.stderr.take().ok_or("no servant stderr")?;
        let s = Arc::clone(&shown);
        spawn_reader(format!("out-s{i}"), move || read_shown(out, s));
        let file = self.dir.join(format!("s{i}.log"));
        spawn_reader(format!("log-s{i}"), move || read_log(err, file, flags));
        self.servants.push(Servant {
            stdin: child.stdin.take(),
            child,
            shown,
            linked,
            joined,
            meshed_out,
            alive: true,
        });
        Ok(i)
    }

    fn write(&mut self, author: usize) {
        let k = self.next.entry(author).or_insert(0);
        *k += 1;
        let k = *k;
        self.written.insert((author, k), Instant::now());
        self.servants[author].write(&format!("m {author} {k}"));
    }

    /// Waits until each of `who` has shown every line in `lines` not its own.
    fn wait_shown(&self, who: &[usize], lines: &[(usize, u64)], limit: Duration) {
        let _ = wait("delivery", limit, || {
            who.iter().all(|&i| {
                let shown: HashSet<(usize, u64)> = {
                    let s = self.servants[i].shown.lock().unwrap();
                    s.iter().map(|(a, k, _)| (*a, *k)).collect()
                };
                lines.iter().all(|l| l.0 == i || shown.contains(l))
            })
        });
    }

    /// Counts over `who`: each of `lines` shown exactly once, in its author's order.
    fn tally(&self, name: &'static str, who: &[usize], lines: &[(usize, u64)]) -> Phase {
        let mut p = Phase {
            name,
            lines: lines.len(),
            servants: who.len(),
            ..Phase::default()
        };
        let mut last: HashMap<(usize, u64), f64> = HashMap::new();
        let wanted: HashSet<(usize, u64)> = lines.iter().copied().collect();
        for &i in who {
            let shown = self.servants[i].shown.lock().unwrap();
            let mut counts: HashMap<(usize, u64), usize> = HashMap::new();
            let mut prev: HashMap<usize, u64> = HashMap::new();
            for &(a, k, at) in shown.iter() {
                if !wanted.contains(&(a, k)) {
                    continue;
                }
                *counts.entry((a, k)).or_insert(0) += 1;
                if prev.get(&a).is_some_and(|&pk| k < pk) {
                    p.out_of_order += 1;
                }
                prev.insert(a, k);
                if let Some(t) = self.written.get(&(a, k)) {
                    let ms = at.saturating_duration_since(*t).as_secs_f64() * 1e3;
                    p.deliveries.push(ms);
                    let e = last.entry((a, k)).or_insert(0.0);
                    *e = e.max(ms);
                }
            }
            for l in lines.iter().filter(|(a, _)| *a != i) {
                match counts.get(l).copied().unwrap_or(0) {
                    0 => p.lost += 1,
                    1 => {}
                    n => p.doubled += n - 1,
                }
            }
        }
        p.last = last.into_values().collect();
        p
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.servants.len())
            .filter(|&i| self.servants[i].alive)
            .collect()
    }
}

/// A small random source for picking victims (seeded from the clock).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
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
    pub manager_rss_kb: f64,
    pub churn: usize,
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
    let mut rss: Vec<f64> = net
        .servants
        .iter()
        .map(|s| rss_kb(s.child.id()) as f64)
        .collect();
    let mut thr: Vec<f64> = net
        .servants
        .iter()
        .map(|s| threads(s.child.id()) as f64)
        .collect();
    let mut footprint = Footprint {
        start_s: started.as_secs_f64(),
        ready_s: t0.elapsed().as_secs_f64(),
        threads_median: quantile(&mut thr, 0.5),
        threads_max: quantile(&mut thr, 1.0),
        rss_kb_median: quantile(&mut rss, 0.5),
        rss_kb_max: quantile(&mut rss, 1.0),
        rss_mib_total: rss.iter().sum::<f64>() / 1024.0,
        manager_rss_kb: rss_kb(net.manager.id()) as f64,
        churn: 0,
    };
    say(
        &mut text,
        format!(
            "per servant: threads median {} max {}; RSS median {:.1} MiB max {:.1} MiB; all servants {:.0} MiB; manager {:.1} MiB",
            footprint.threads_median,
            footprint.threads_max,
            footprint.rss_kb_median / 1024.0,
            footprint.rss_kb_max / 1024.0,
            footprint.rss_mib_total,
            footprint.manager_rss_kb / 1024.0
        ),
    );
    let writers: Vec<usize> = (0..plan.writers.min(plan.servants)).collect();
    let mut phases = Vec::new();
    // The last to join are still filling their neighbours and reserves: let them settle.
    thread::sleep(plan.settle);

    // Stable.
    let mut lines = Vec::new();
    for _ in 0..plan.lines {
        for &w in &writers {
            net.write(w);
            lines.push((w, net.next[&w]));
            thread::sleep(plan.every);
        }
    }
    let everyone = net.alive();
    net.wait_shown(&everyone, &lines, Duration::from_secs(30));
    phases.push(net.tally("stable", &everyone, &lines));

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
        every: Duration::from_millis(arg(&args, "--every-ms", 200)),
        settle: Duration::from_secs(arg(&args, "--settle-secs", 10)),
        churn: arg(&args, "--churn", servants / 10),
        burst_writers: arg(&args, "--burst-writers", 10),
        burst_lines: arg(&args, "--burst-lines", 50),
        batch: arg(&args, "--batch", 25),
        limit: Duration::from_secs(arg(&args, "--limit-secs", 1800)),
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
            settle: Duration::from_secs(1),
            churn: 5,
            burst_writers: 10,
            burst_lines: 20,
            batch: 25,
            limit: Duration::from_secs(600),
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
