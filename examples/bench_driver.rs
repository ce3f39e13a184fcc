//! The driver of `make bench`: starts the real binaries (and their baselines) on
//! 127.0.0.1, measures, and appends one JSON line per measurement to OUT/results.jsonl.
//! `bench/report.py` turns that file into bench/RESULTS.md and bench/fanout.svg.
//!
//! ```text
//! bench_driver fanout   --out DIR --ns 10,50,200 --runs 5 --samples 300
//!                       --burst-ns 10,50 --burst-runs 3 --burst-msgs 5000
//! bench_driver manager  --out DIR --runs 3 --secs 3
//! bench_driver storm    --out DIR --ns 100,1000 --runs 3
//! bench_driver capacity --out DIR --max 4000 [--stress 20000]
//! bench_driver sizes    --out DIR
//! bench_driver transfer --out DIR --mib 1024 --runs 3 [--resume-runs 3]
//! ```
//!
//! Every process it starts is killed when it is done with it, and by a dead-man timer
//! (`--limit-secs`, default 900) if the driver itself overruns; servants and floor
//! processes also end when the driver's end of their standard input closes.

#[path = "bench_common/mod.rs"]
mod bench_common;

use bench_common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Pids of every process started, for the dead-man timer.
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        PIDS.lock().unwrap().retain(|&p| p != pid);
    }
}

fn start(mut cmd: Command) -> io::Result<Proc> {
    let child = cmd.spawn()?;
    PIDS.lock().unwrap().push(child.id());
    Ok(Proc { child })
}

struct Ctx {
    out: PathBuf,
    bin: PathBuf,
    ex: PathBuf,
    results: Mutex<File>,
    tck: f64,
}

impl Ctx {
    fn emit(&self, j: Json) {
        let line = j.finish();
        eprintln!("  {line}");
        let mut f = self.results.lock().unwrap();
        let _ = writeln!(f, "{line}");
    }
    /// `head` with the figures of `r`, or an error row that says what failed.
    fn emit_result(&self, head: Json, r: Res<Json>, what: &str) {
        match r {
            Ok(j) => self.emit(head.merge(&j)),
            Err(e) => self.emit(
                Json::new()
                    .str("test", "error")
                    .str("what", &format!("{what}: {e}")),
            ),
        }
    }
    fn log(&self, name: &str) -> File {
        File::create(self.out.join("logs").join(name)).expect("log file")
    }
    fn conf(&self, name: &str, text: &str) -> PathBuf {
        let p = self.out.join("conf").join(name);
        fs::write(&p, text).expect("config file");
        p
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: u64 = arg(&args, "--limit-secs", 900);
    std::thread::spawn(move || {
        thread::sleep(Duration::from_secs(limit));
        eprintln!("bench_driver: time limit of {limit}s reached; stopping what it started");
        for pid in PIDS.lock().unwrap().iter() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        std::process::exit(3);
    });
    let out = PathBuf::from(arg_str(&args, "--out", "bench/out"));
    for d in ["logs", "conf"] {
        fs::create_dir_all(out.join(d)).expect("output directory");
    }
    let target = PathBuf::from(arg_str(&args, "--target", "target/release"));
    let ctx = Ctx {
        results: Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(out.join("results.jsonl"))
                .expect("results file"),
        ),
        out,
        ex: target.join("examples"),
        bin: target,
        tck: clk_tck(),
    };
    let r = match args.first().map(String::as_str) {
        Some("fanout") => fanout(&ctx, &args),
        Some("manager") => manager_rtt(&ctx, &args),
        Some("storm") => storm(&ctx, &args),
        Some("capacity") => capacity(&ctx, &args),
        Some("sizes") => sizes(&ctx),
        Some("transfer") => transfer(&ctx, &args),
        _ => Err(
            "usage: bench_driver fanout|manager|storm|capacity|sizes|transfer --out DIR ...".into(),
        ),
    };
    if let Err(e) = r {
        eprintln!("bench_driver: {e}");
        ctx.emit(Json::new().str("test", "error").str("what", &e));
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn wait_for_line(path: &Path, needle: &str, limit: Duration) -> Option<String> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(text) = fs::read_to_string(path) {
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return Some(l.to_owned());
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Starts a connection manager on 127.0.0.1, port chosen by the OS.
fn start_manager(ctx: &Ctx, tag: &str, max_conn: usize) -> Res<(Proc, SocketAddr)> {
    start_manager_with(ctx, tag, max_conn, 120)
}

/// `timeout`: seconds a silent listed client stays listed (the fake clients never beat).
fn start_manager_with(
    ctx: &Ctx,
    tag: &str,
    max_conn: usize,
    timeout: u64,
) -> Res<(Proc, SocketAddr)> {
    let conf = ctx.conf(
        &format!("manager-{tag}.xml"),
        &format!(
            "<manager><port>0</port><bind>127.0.0.1</bind><timeout>{timeout}</timeout>\
             <idletimeout>{timeout}</idletimeout><maxconnections>{max_conn}</maxconnections>\
             <maxperaddress>{max_conn}</maxperaddress></manager>\n"
        ),
    );
    let log = ctx.out.join("logs").join(format!("manager-{tag}.log"));
    let mut cmd = Command::new(ctx.bin.join("connection-manager"));
    cmd.arg("--config")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).map_err(|e| e.to_string())?);
    let p = start(cmd).map_err(|e| format!("cannot start connection-manager: {e}"))?;
    let line = wait_for_line(&log, "listening on ", Duration::from_secs(10))
        .ok_or("connection-manager did not say where it listens")?;
    let addr = line
        .rsplit("listening on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| format!("cannot read the address in {line:?}"))?;
    Ok((p, addr))
}

/// Starts an example that prints `PORT N` first; returns it and the port.
fn start_port_printer(
    ctx: &Ctx,
    exe: &str,
    args: &[&str],
    log: &str,
) -> Res<(Proc, u16, ChildStdin)> {
    let mut cmd = Command::new(ctx.ex.join(exe));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(ctx.log(log));
    let mut p = start(cmd).map_err(|e| format!("cannot start {exe}: {e}"))?;
    let stdin = p.child.stdin.take().unwrap();
    let mut out = BufReader::new(p.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let port = line
        .strip_prefix("PORT ")
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("{exe} said {line:?}"))?;
    thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Ok((p, port, stdin))
}

// ---------------------------------------------------------------------------------------
// Fan-out and burst
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct BurstRx {
    run: u64,
    seen: Vec<u8>,
    distinct: usize,
    total: usize,
    stale: usize,
    last: Option<Instant>,
}

/// What the reader thread of one receiver's standard output shares with the driver.
#[derive(Default)]
struct RxShared {
    warm_last: AtomicI64,
    burst: Mutex<BurstRx>,
    burst_distinct: AtomicUsize,
}

type Arrival = (usize, u64, Instant);

/// Reads one receiver's standard output: `<name> TOKEN ...` (servant) or `TOKEN ...`
/// (floor). Tokens: `wK` warm-up, `fK` fan-out sample, `bR.I` burst run R message I.
fn reader(
    idx: usize,
    out: impl io::Read + Send + 'static,
    shared: Arc<RxShared>,
    events: Sender<Arrival>,
    port_tx: Option<Sender<(usize, u16)>>,
) {
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut r = BufReader::with_capacity(64 * 1024, out);
            let mut line = String::new();
            if let Some(tx) = port_tx {
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let port = line
                    .trim()
                    .strip_prefix("PORT ")
                    .and_then(|p| p.parse().ok());
                let _ = tx.send((idx, port.unwrap_or(0)));
            }
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let now = Instant::now();
                let mut text = line.trim_end();
                if text.starts_with('<') {
                    match text.find("> ") {
                        Some(i) => text = &text[i + 2..],
                        None => continue,
                    }
                }
                let token = text.split(' ').next().unwrap_or("");
                let (kind, rest) = token.split_at(token.len().min(1));
                match kind {
                    "w" => {
                        if let Ok(k) = rest.parse::<i64>() {
                            shared.warm_last.fetch_max(k, Ordering::SeqCst);
                        }
                    }
                    "f" => {
                        if let Ok(k) = rest.parse::<u64>() {
                            let _ = events.send((idx, k, now));
                        }
                    }
                    "b" => {
                        let Some((run, i)) = rest.split_once('.') else {
                            continue;
                        };
                        let (Ok(run), Ok(i)) = (run.parse::<u64>(), i.parse::<usize>()) else {
                            continue;
                        };
                        let mut b = shared.burst.lock().unwrap();
                        if b.run == run && i < b.seen.len() {
                            if b.seen[i] == 0 {
                                b.distinct += 1;
                                shared.burst_distinct.fetch_add(1, Ordering::SeqCst);
                            }
                            b.seen[i] = b.seen[i].saturating_add(1);
                            b.total += 1;
                            b.last = Some(now);
                        } else {
                            b.stale += 1;
                        }
                    }
                    _ => {}
                }
            }
        })
        .expect("reader thread");
}

/// One system under test: a sender process fed through its stdin, N receivers.
struct System {
    name: &'static str,
    input: ChildStdin,
    rx: Vec<Arc<RxShared>>,
    events: Receiver<Arrival>,
    /// Every process of the system (for CPU time), sender first.
    pids: Vec<u32>,
    next: u64,
    warm_next: i64,
    /// Samples in a row that did not reach every receiver: past 10, the system is broken.
    misses_in_a_row: u32,
    _procs: Vec<Proc>,
    _stdins: Vec<ChildStdin>,
}

impl System {
    fn send(&mut self, line: &str) -> Res<()> {
        self.input
            .write_all(line.as_bytes())
            .map_err(|e| format!("{}: writing to the sender's stdin: {e}", self.name))
    }

    fn cpu_ticks(&self) -> u64 {
        self.pids.iter().filter_map(|&p| cpu_ticks(p)).sum()
    }

    fn warm(&mut self, limit: Duration) -> Res<f64> {
        let t0 = Instant::now();
        let end = t0 + limit;
        loop {
            let k = self.warm_next;
            self.warm_next += 1;
            self.send(&format!("w{k} warm-up\n"))?;
            thread::sleep(Duration::from_millis(50));
            if self
                .rx
                .iter()
                .all(|r| r.warm_last.load(Ordering::SeqCst) >= 0)
            {
                break;
            }
            if Instant::now() > end {
                let missing = self
                    .rx
                    .iter()
                    .filter(|r| r.warm_last.load(Ordering::SeqCst) < 0)
                    .count();
                return Err(format!(
                    "{}: {missing} of {} receivers heard nothing after {:?}",
                    self.name,
                    self.rx.len(),
                    limit
                ));
            }
        }
        let ready = t0.elapsed().as_secs_f64();
        for _ in 0..30 {
            let k = self.warm_next;
            self.warm_next += 1;
            self.send(&format!("w{k} warm-up\n"))?;
            thread::sleep(Duration::from_millis(5));
        }
        let last = self.warm_next - 1;
        let end = Instant::now() + Duration::from_secs(20);
        while self
            .rx
            .iter()
            .any(|r| r.warm_last.load(Ordering::SeqCst) < last)
        {
            if Instant::now() > end {
                return Err(format!("{}: warm-up messages stopped arriving", self.name));
            }
            thread::sleep(Duration::from_millis(5));
        }
        while self.events.try_recv().is_ok() {}
        Ok(ready)
    }

    /// One message; the time from the write to the sender's stdin until the last and the
    /// first receiver printed it (µs), or the number of receivers that missed it.
    fn sample(&mut self) -> Res<Result<(f64, f64), usize>> {
        let n = self.rx.len();
        let k = self.next;
        self.next += 1;
        let line = format!("f{k} fan-out sample\n");
        let mut got: Vec<Option<Instant>> = vec![None; n];
        let mut count = 0;
        let t0 = Instant::now();
        self.send(&line)?;
        let end = t0 + Duration::from_secs(3);
        while count < n {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((i, kk, t)) if kk == k && got[i].is_none() => {
                    got[i] = Some(t);
                    count += 1;
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return Err("readers are gone".into()),
            }
        }
        // A little idle time between samples, varied so nothing locks into a rhythm.
        thread::sleep(Duration::from_micros(1000 + (k % 7) * 300));
        if count < n {
            let missed: Vec<usize> = (0..n).filter(|&i| got[i].is_none()).collect();
            eprintln!(
                "  {}: sample f{k} reached {count} of {n} receivers in 3 s; missing {missed:?}",
                self.name
            );
            self.misses_in_a_row += 1;
            if self.misses_in_a_row >= 10 {
                return Err(format!(
                    "{}: 10 samples in a row missed receivers (last: {missed:?})",
                    self.name
                ));
            }
            return Ok(Err(n - count));
        }
        self.misses_in_a_row = 0;
        let ts: Vec<Instant> = got.into_iter().flatten().collect();
        let since = |t: &Instant| (*t - t0).as_secs_f64() * 1e6;
        Ok(Ok((
            ts.iter().map(since).fold(0.0, f64::max),
            ts.iter().map(since).fold(f64::INFINITY, f64::min),
        )))
    }

    /// `msgs` messages written to the sender's stdin as fast as it takes them.
    fn burst(&mut self, run: u64, msgs: usize, tck: f64) -> Res<Json> {
        let n = self.rx.len();
        for r in &self.rx {
            let mut b = r.burst.lock().unwrap();
            *b = BurstRx {
                run,
                seen: vec![0; msgs],
                ..BurstRx::default()
            };
            r.burst_distinct.store(0, Ordering::SeqCst);
        }
        let mut buf = Vec::with_capacity(msgs * 48);
        for i in 0..msgs {
            buf.extend_from_slice(
                format!("b{run}.{i} burst message of ordinary length\n").as_bytes(),
            );
        }
        let cpu0 = self.cpu_ticks();
        let t0 = Instant::now();
        self.send(std::str::from_utf8(&buf).unwrap())?;
        let written = t0.elapsed().as_secs_f64();
        let want = n * msgs;
        let mut last_total = 0;
        let mut last_progress = Instant::now();
        let hard_end = t0 + Duration::from_secs(90);
        loop {
            let total: usize = self
                .rx
                .iter()
                .map(|r| r.burst_distinct.load(Ordering::SeqCst))
                .sum();
            if total >= want {
                break;
            }
            if total != last_total {
                last_total = total;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > Duration::from_secs(3) || Instant::now() > hard_end
            {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        let cpu1 = self.cpu_ticks();
        // Let late duplicates show up.
        thread::sleep(Duration::from_millis(300));
        let (mut distinct, mut total, mut stale) = (0, 0, 0);
        let mut end = t0;
        for r in &self.rx {
            let b = r.burst.lock().unwrap();
            distinct += b.distinct;
            total += b.total;
            stale += b.stale;
            if let Some(l) = b.last {
                end = end.max(l);
            }
        }
        let secs = (end - t0).as_secs_f64();
        let cpu_ms = (cpu1 - cpu0) as f64 * 1000.0 / tck;
        Ok(Json::new()
            .str("test", "burst")
            .str("system", self.name)
            .int("n", n as i64)
            .int("run", run as i64)
            .int("msgs", msgs as i64)
            .num(
                "msgs_per_s",
                if distinct == want {
                    msgs as f64 / secs
                } else {
                    distinct as f64 / n as f64 / secs
                },
            )
            .num("secs", secs)
            .num("stdin_secs", written)
            .int("lost", (want - distinct) as i64)
            .int("dup", (total - distinct) as i64)
            .int("stale", stale as i64)
            .num("cpu_ms", cpu_ms)
            .num(
                "cpu_us_per_delivery",
                cpu_ms * 1000.0 / distinct.max(1) as f64,
            ))
    }
}

/// How the servants of a system link: to every servant (the article's design, kept at
/// any N so full-mesh figures stay comparable), or in the overlay past the default
/// `<fullmesh>` of 8.
#[derive(Clone, Copy, PartialEq)]
enum Links {
    Mesh,
    Overlay,
}

fn servant_conf(ctx: &Ctx, tag: &str, i: usize, manager: SocketAddr, links: Links) -> PathBuf {
    let full_mesh = match links {
        Links::Mesh => 1_000_000,
        Links::Overlay => 8,
    };
    ctx.conf(
        &format!("servant-{tag}-{i}.xml"),
        &format!(
            "<config><connectionmgr>127.0.0.1</connectionmgr><port>{}</port><name>s{i}</name>\
             <listen>0</listen><bind>127.0.0.1</bind><heartbeat>1</heartbeat>\
             <maxconnections>1024</maxconnections><maxperaddress>1024</maxperaddress>\
             <fullmesh>{full_mesh}</fullmesh></config>\n",
            manager.port()
        ),
    )
}

fn start_servant(ctx: &Ctx, tag: &str, i: usize, manager: SocketAddr) -> Res<Proc> {
    start_servant_linked(ctx, tag, i, manager, Links::Mesh)
}

fn start_servant_linked(
    ctx: &Ctx,
    tag: &str,
    i: usize,
    manager: SocketAddr,
    links: Links,
) -> Res<Proc> {
    let conf = servant_conf(ctx, tag, i, manager, links);
    let mut cmd = Command::new(ctx.bin.join("servant"));
    cmd.arg("--config")
        .arg(conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(ctx.log(&format!("servant-{tag}-{i}.log")));
    start(cmd).map_err(|e| format!("cannot start servant {i}: {e}"))
}

fn start_stub(ctx: &Ctx, tag: &str, i: usize, manager: SocketAddr) -> Res<Proc> {
    let mut cmd = Command::new(ctx.ex.join("servant_stub"));
    cmd.args([
        "--manager",
        &manager.to_string(),
        "--name",
        &format!("s{i}"),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(ctx.log(&format!("stub-{tag}-{i}.log")));
    start(cmd).map_err(|e| format!("cannot start servant_stub {i}: {e}"))
}

fn genp2p_system(ctx: &Ctx, n: usize, manager: (SocketAddr, u32), stub: bool) -> Res<System> {
    genp2p_linked(ctx, n, manager, stub, Links::Mesh)
}

fn genp2p_linked(
    ctx: &Ctx,
    n: usize,
    manager: (SocketAddr, u32),
    stub: bool,
    links: Links,
) -> Res<System> {
    let tag = match (stub, links) {
        (true, _) => format!("n{n}-stub"),
        (false, Links::Mesh) => format!("n{n}"),
        (false, Links::Overlay) => format!("n{n}-overlay"),
    };
    let (etx, erx) = mpsc::channel();
    let mut procs = Vec::new();
    let mut stdins = Vec::new();
    let mut rx = Vec::new();
    let mut pids = Vec::new();
    // The sender first, so that its log's first lines are its own start.
    let mut sender = start_servant_linked(ctx, &tag, 0, manager.0, links)?;
    let input = sender.child.stdin.take().unwrap();
    let drain = sender.child.stdout.take().unwrap();
    reader(
        usize::MAX,
        drain,
        Arc::new(RxShared::default()),
        mpsc::channel().0,
        None,
    );
    pids.push(sender.pid());
    procs.push(sender);
    for i in 1..=n {
        let mut p = if stub {
            start_stub(ctx, &tag, i, manager.0)?
        } else {
            start_servant_linked(ctx, &tag, i, manager.0, links)?
        };
        stdins.push(p.child.stdin.take().unwrap());
        let shared = Arc::new(RxShared::default());
        shared.warm_last.store(-1, Ordering::SeqCst);
        reader(
            i - 1,
            p.child.stdout.take().unwrap(),
            Arc::clone(&shared),
            etx.clone(),
            None,
        );
        rx.push(shared);
        pids.push(p.pid());
        procs.push(p);
    }
    pids.push(manager.1);
    if links == Links::Overlay {
        // Measured once every servant has closed its links to every servant.
        for i in 0..=n {
            let log = ctx.out.join("logs").join(format!("servant-{tag}-{i}.log"));
            wait_for_line(&log, "closed the links to ", Duration::from_secs(60))
                .ok_or_else(|| format!("overlay servant {i} never left the full mesh"))?;
        }
    }
    Ok(System {
        name: match links {
            Links::Mesh => "genp2p",
            Links::Overlay => "genp2p-overlay",
        },
        input,
        rx,
        events: erx,
        pids,
        next: 0,
        warm_next: 0,
        misses_in_a_row: 0,
        _procs: procs,
        _stdins: stdins,
    })
}

/// The libp2p baseline (bench/libp2p-chat, a cargo project of its own; `make bench`
/// builds it): gossipsub over TCP with noise and yamux, every message signed by its
/// author. The sender listens; each receiver dials it, so a message reaches every
/// receiver in one hop (flood publishing), as genp2p's full mesh does. `None` when the
/// baseline is not built.
fn libp2p_system(ctx: &Ctx, n: usize) -> Res<Option<System>> {
    let exe = PathBuf::from("bench/libp2p-chat/target/release/libp2p-chat");
    if !exe.exists() {
        return Ok(None);
    }
    let (etx, erx) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    let sender_log = ctx.out.join("logs").join(format!("libp2p-n{n}-send.log"));
    let mut cmd = Command::new(&exe);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(ctx.log(&format!("libp2p-n{n}-send.log")));
    let mut sender = start(cmd).map_err(|e| format!("cannot start libp2p-chat: {e}"))?;
    let input = sender.child.stdin.take().unwrap();
    reader(
        usize::MAX,
        sender.child.stdout.take().unwrap(),
        Arc::new(RxShared::default()),
        mpsc::channel().0,
        Some(ptx.clone()),
    );
    let (_, port) = prx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| "the libp2p sender did not start")?;
    let mut pids = vec![sender.pid()];
    let mut procs = vec![sender];
    let (mut stdins, mut rx) = (Vec::new(), Vec::new());
    for i in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.args(["--dial", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(ctx.log(&format!("libp2p-n{n}-recv-{i}.log")));
        let mut p = start(cmd).map_err(|e| format!("cannot start libp2p-chat {i}: {e}"))?;
        stdins.push(p.child.stdin.take().unwrap());
        let shared = Arc::new(RxShared::default());
        shared.warm_last.store(-1, Ordering::SeqCst);
        reader(
            i,
            p.child.stdout.take().unwrap(),
            Arc::clone(&shared),
            etx.clone(),
            Some(ptx.clone()),
        );
        rx.push(shared);
        pids.push(p.pid());
        procs.push(p);
    }
    for _ in 0..n {
        prx.recv_timeout(Duration::from_secs(20))
            .map_err(|_| "libp2p receivers did not start")?;
    }
    // Formed when the sender knows every receiver subscribed.
    wait_for_line(
        &sender_log,
        &format!("SUBSCRIBED {n}"),
        Duration::from_secs(30 + n as u64),
    )
    .ok_or_else(|| format!("the libp2p sender never saw {n} subscribers"))?;
    Ok(Some(System {
        name: "libp2p",
        input,
        rx,
        events: erx,
        pids,
        next: 0,
        warm_next: 0,
        misses_in_a_row: 0,
        _procs: procs,
        _stdins: stdins,
    }))
}

fn floor_system(ctx: &Ctx, n: usize) -> Res<System> {
    let (etx, erx) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    let mut procs = Vec::new();
    let mut stdins = Vec::new();
    let mut rx = Vec::new();
    let mut pids = Vec::new();
    for i in 0..n {
        let mut cmd = Command::new(ctx.ex.join("fanout_floor"));
        cmd.arg("recv")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(ctx.log(&format!("floor-n{n}-recv-{i}.log")));
        let mut p = start(cmd).map_err(|e| format!("cannot start fanout_floor: {e}"))?;
        stdins.push(p.child.stdin.take().unwrap());
        let shared = Arc::new(RxShared::default());
        shared.warm_last.store(-1, Ordering::SeqCst);
        reader(
            i,
            p.child.stdout.take().unwrap(),
            Arc::clone(&shared),
            etx.clone(),
            Some(ptx.clone()),
        );
        rx.push(shared);
        pids.push(p.pid());
        procs.push(p);
    }
    let mut ports = vec![0u16; n];
    let end = Instant::now() + Duration::from_secs(20);
    for _ in 0..n {
        let left = end.saturating_duration_since(Instant::now());
        let (i, p) = prx
            .recv_timeout(left)
            .map_err(|_| "floor receivers did not start")?;
        ports[i] = p;
    }
    let mut cmd = Command::new(ctx.ex.join("fanout_floor"));
    cmd.arg("send")
        .args(ports.iter().map(|p| p.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(ctx.log(&format!("floor-n{n}-send.log")));
    let mut sender = start(cmd).map_err(|e| format!("cannot start fanout_floor send: {e}"))?;
    let input = sender.child.stdin.take().unwrap();
    pids.insert(0, sender.pid());
    procs.insert(0, sender);
    Ok(System {
        name: "floor",
        input,
        rx,
        events: erx,
        pids,
        next: 0,
        warm_next: 0,
        misses_in_a_row: 0,
        _procs: procs,
        _stdins: stdins,
    })
}

fn fanout(ctx: &Ctx, args: &[String]) -> Res<()> {
    let ns = arg_list(args, "--ns", "10,50,200");
    let runs: usize = arg(args, "--runs", 5);
    let samples: usize = arg(args, "--samples", 300);
    let burst_ns = arg_list(args, "--burst-ns", "10,50");
    let burst_runs: u64 = arg(args, "--burst-runs", 3);
    let burst_msgs: usize = arg(args, "--burst-msgs", 5000);
    let join_ns = arg_list(args, "--join-ns", "10,50");
    let join_runs: usize = arg(args, "--join-runs", 5);
    let stub_ns = arg_list(args, "--stub-ns", "");
    let libp2p_ns = arg_list(args, "--libp2p-ns", "");
    let overlay_ns = arg_list(args, "--overlay-ns", "");
    let configs: Vec<(usize, bool)> = ns
        .iter()
        .map(|&n| (n, false))
        .chain(stub_ns.iter().map(|&n| (n, true)))
        .collect();
    for (n, stub) in configs {
        let receivers = if stub { "stub" } else { "servant" };
        eprintln!("fan-out, N = {n} receivers ({receivers}s)");
        // Threads this needs: a servant runs about 2 per peer plus 7.
        let need = if stub {
            2 * n + 7 + 4 * n
        } else {
            (n + 1) * (2 * n + 7)
        } + 4 * n;
        let pid_max: usize = fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(32768);
        let in_use: usize = fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
            .unwrap_or(0);
        if in_use + need > pid_max / 2 {
            ctx.emit(Json::new().str("test", "skipped").int("n", n as i64).str("receivers", receivers)
                .str("why", &format!("needs ~{need} threads; {in_use} in use of pid_max {pid_max} (limit used: half)")));
            continue;
        }
        let (mgr, maddr) = start_manager(ctx, &format!("fanout-n{n}-{receivers}"), 4000)?;
        let t_start = Instant::now();
        let mut g = genp2p_system(ctx, n, (maddr, mgr.pid()), stub)?;
        let mut f = floor_system(ctx, n)?;
        // The libp2p baseline runs beside real servants only (stub receivers stand in for
        // servants, not for libp2p nodes).
        let mut l = if stub || !libp2p_ns.contains(&n) {
            None
        } else {
            libp2p_system(ctx, n)?
        };
        // The overlay beside them (real servants only), with a manager of its own.
        let mut o = if stub || !overlay_ns.contains(&n) {
            None
        } else {
            let (om, oaddr) = start_manager(ctx, &format!("fanout-n{n}-overlay"), 4000)?;
            let sys = genp2p_linked(ctx, n, (oaddr, om.pid()), false, Links::Overlay)?;
            Some((sys, om))
        };
        let limit = Duration::from_secs(30 + n as u64 / 2);
        let g_ready = g.warm(limit)?;
        let f_ready = f.warm(limit)?;
        if let Some((o, om)) = &mut o {
            let ready = o.warm(limit)?;
            let receivers: Vec<u32> = o.pids[1..=o.rx.len()].to_vec();
            let mut rss: Vec<f64> = receivers.iter().map(|&p| rss_kb(p) as f64).collect();
            let mut thr: Vec<f64> = receivers.iter().map(|&p| threads(p) as f64).collect();
            ctx.emit(
                Json::new()
                    .str("test", "footprint-overlay")
                    .int("n", n as i64)
                    .num("ready_s", ready)
                    .int("sender_rss_kb", rss_kb(o.pids[0]) as i64)
                    .int("sender_threads", threads(o.pids[0]) as i64)
                    .num("receiver_rss_kb_median", quantile(&mut rss, 0.5))
                    .num("receiver_rss_kb_max", quantile(&mut rss, 1.0))
                    .num("receiver_threads_median", quantile(&mut thr, 0.5))
                    .num("receiver_threads_max", quantile(&mut thr, 1.0))
                    .int("manager_rss_kb", rss_kb(om.pid()) as i64),
            );
        }
        if let Some(l) = &mut l {
            let ready = l.warm(limit)?;
            ctx.emit(
                Json::new()
                    .str("test", "footprint-libp2p")
                    .int("n", n as i64)
                    .num("ready_s", ready)
                    .int("sender_rss_kb", rss_kb(l.pids[0]) as i64)
                    .int("sender_threads", threads(l.pids[0]) as i64)
                    .int("receiver_rss_kb", rss_kb(l.pids[1]) as i64)
                    .int("receiver_threads", threads(l.pids[1]) as i64),
            );
        }
        ctx.emit(
            Json::new()
                .str("test", "setup")
                .int("n", n as i64)
                .str("receivers", receivers)
                .int("threads_needed", need as i64)
                .num("genp2p_ready_s", g_ready)
                .num("floor_ready_s", f_ready)
                .num("total_s", t_start.elapsed().as_secs_f64()),
        );
        // Footprint at rest.
        let s0 = g.pids[0];
        let s1 = g.pids[1];
        ctx.emit(
            Json::new()
                .str("test", "footprint")
                .int("n", n as i64)
                .str("receivers", receivers)
                .int("servant_rss_kb", rss_kb(s0) as i64)
                .int("servant_threads", threads(s0) as i64)
                .int("receiver_rss_kb", rss_kb(s1) as i64)
                .int("receiver_threads", threads(s1) as i64)
                .int("manager_rss_kb", rss_kb(mgr.pid()) as i64)
                .int("manager_threads", threads(mgr.pid()) as i64)
                .int("floor_sender_rss_kb", rss_kb(f.pids[0]) as i64)
                .int("floor_sender_threads", threads(f.pids[0]) as i64)
                .int("floor_receiver_rss_kb", rss_kb(f.pids[1]) as i64)
                .int("floor_receiver_threads", threads(f.pids[1]) as i64),
        );
        // The two systems take turns message by message (which goes first alternates), so
        // both see the same machine: its speed drifts over seconds here, which is as large
        // as the difference being measured when each system runs for a second on its own.
        // The receivers' pids follow the sender's (the manager's, if any, comes last).
        let mut libp2p_broken: Vec<bool> = Vec::new();
        let counters = |sys: &System| -> [u64; 4] {
            let (sp, rp) = (sys.pids[0], sys.pids[1]);
            let receivers: u64 = sys.pids[1..=sys.rx.len()].iter().map(|&p| cpu_ns(p)).sum();
            [ctx_switches(sp), ctx_switches(rp), cpu_ns(sp), receivers]
        };
        for r in 0..runs {
            let mut systems: Vec<&mut System> = vec![&mut g, &mut f];
            if let Some(l) = &mut l {
                systems.push(l);
            }
            if let Some((o, _)) = &mut o {
                systems.push(o);
            }
            let k = systems.len();
            let before: Vec<[u64; 4]> = systems.iter().map(|s| counters(s)).collect();
            let mut lasts = vec![Vec::with_capacity(samples); k];
            let mut firsts = vec![Vec::with_capacity(samples); k];
            let mut missing = vec![0usize; k];
            let broken = &mut libp2p_broken;
            broken.resize(k, false);
            for i in 0..samples {
                // Each takes its turn first in turn.
                for j in 0..k {
                    let which = (r + i + j) % k;
                    if broken[which] {
                        continue;
                    }
                    match systems[which].sample() {
                        Ok(Ok((last, first))) => {
                            lasts[which].push(last);
                            firsts[which].push(first);
                        }
                        Ok(Err(m)) => missing[which] += m,
                        // A baseline that stops delivering leaves the rotation with an
                        // error row; genp2p or the floor doing so ends the benchmark.
                        Err(e)
                            if systems[which].name != "genp2p"
                                && systems[which].name != "floor" =>
                        {
                            ctx.emit(
                                Json::new()
                                    .str("test", "error")
                                    .str("what", &e)
                                    .int("n", n as i64),
                            );
                            broken[which] = true;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            for (which, sys) in systems.iter().enumerate() {
                if broken[which] {
                    continue;
                }
                let after = counters(sys);
                let d = |j: usize| {
                    after[j].saturating_sub(before[which][j]) as f64 / samples.max(1) as f64
                };
                let (last, first) = (&mut lasts[which], &mut firsts[which]);
                ctx.emit(
                    Json::new()
                        .str("test", "fanout")
                        .str("system", sys.name)
                        .str("receivers", receivers)
                        .int("n", n as i64)
                        .int("run", r as i64)
                        .int("samples", last.len() as i64)
                        .int("missing", missing[which] as i64)
                        .num("p50_us", quantile(last, 0.5))
                        .num("p99_us", quantile(last, 0.99))
                        .num("max_us", quantile(last, 1.0))
                        .num("first_p50_us", quantile(first, 0.5))
                        .num("sender_cs_per_msg", d(0))
                        .num("receiver_cs_per_msg", d(1))
                        .num("sender_cpu_us_per_msg", d(2) / 1e3)
                        .num("receiver_cpu_us_per_msg", d(3) / 1e3 / n as f64),
                );
            }
        }
        if let Some((o, _)) = &mut o {
            // Bytes on the loopback per line per receiving servant, full mesh and overlay,
            // each on its own (TCP/IP headers and the heartbeats of the moment included).
            for sys in [&mut g, o] {
                let lines = 50;
                let before = lo_tx_bytes();
                for _ in 0..lines {
                    let _ = sys.sample()?;
                }
                thread::sleep(Duration::from_millis(1500));
                let bytes = lo_tx_bytes().saturating_sub(before);
                ctx.emit(
                    Json::new()
                        .str("test", "bytes-per-line")
                        .str("system", sys.name)
                        .int("n", n as i64)
                        .int("lines", lines as i64)
                        .num(
                            "bytes_per_line_per_servant",
                            bytes as f64 / (lines * n) as f64,
                        ),
                );
            }
        }
        if burst_ns.contains(&n) {
            for r in 0..burst_runs {
                let mut order: Vec<&mut System> = if r % 2 == 0 {
                    vec![&mut g, &mut f]
                } else {
                    vec![&mut f, &mut g]
                };
                if let Some(l) = l
                    .as_mut()
                    .filter(|_| !libp2p_broken.get(2).copied().unwrap_or(false))
                {
                    order.push(l);
                }
                for sys in order {
                    let j = sys.burst(r, burst_msgs, ctx.tck)?;
                    ctx.emit(j.str("receivers", receivers));
                    thread::sleep(Duration::from_millis(200));
                }
            }
            let tag = if stub {
                format!("n{n}-stub")
            } else {
                format!("n{n}")
            };
            let log = fs::read_to_string(ctx.out.join("logs").join(format!("servant-{tag}-0.log")))
                .unwrap_or_default();
            ctx.emit(
                Json::new()
                    .str("test", "burst-log")
                    .int("n", n as i64)
                    .str("receivers", receivers)
                    .int(
                        "not_taking_warnings",
                        (log.matches("is not taking messages").count()
                            + log.matches("dropped its oldest").count())
                            as i64,
                    )
                    .int("receiver_gap_warnings", {
                        // Receivers that noticed numbers missing from the sender's sequence.
                        (1..=n)
                            .map(|i| {
                                fs::read_to_string(
                                    ctx.out.join("logs").join(format!("servant-{tag}-{i}.log")),
                                )
                                .unwrap_or_default()
                                .matches("never arrived")
                                .count()
                            })
                            .sum::<usize>() as i64
                    })
                    .str(
                        "last_warning",
                        log.lines()
                            .rfind(|l| l.contains("is not taking"))
                            .unwrap_or(""),
                    ),
            );
        }
        if join_ns.contains(&n) && !stub {
            join_time(ctx, n, maddr, join_runs)?;
        }
        drop(g);
        drop(f);
        drop(l);
        drop(o);
        drop(mgr);
        thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Bytes the loopback interface has sent (/proc/net/dev), machine-wide.
fn lo_tx_bytes() -> u64 {
    fs::read_to_string("/proc/net/dev")
        .ok()
        .and_then(|s| {
            let line = s
                .lines()
                .find(|l| l.trim_start().starts_with("lo:"))?
                .to_owned();
            // Receive: 8 fields, then transmit bytes.
            line.split(':')
                .nth(1)?
                .split_whitespace()
                .nth(8)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Time from starting one more servant to its "joined" log line, beside the time a floor
/// receiver takes from start to printing its port.
fn join_time(ctx: &Ctx, n: usize, manager: SocketAddr, runs: usize) -> Res<()> {
    for r in 0..runs {
        let idx = 10_000 + r;
        let tag = format!("n{n}");
        let t0 = Instant::now();
        let p = start_servant(ctx, &tag, idx, manager)?;
        let log = ctx
            .out
            .join("logs")
            .join(format!("servant-{tag}-{idx}.log"));
        let joined =
            wait_for_line(&log, "joined as", Duration::from_secs(10)).map(|_| t0.elapsed());
        let rss = rss_kb(p.pid());
        drop(p);
        let t1 = Instant::now();
        let floor = start_port_printer(
            ctx,
            "fanout_floor",
            &["recv"],
            &format!("floor-join-{n}-{r}.log"),
        )
        .map(|_| t1.elapsed());
        ctx.emit(
            Json::new()
                .str("test", "join")
                .int("n", n as i64)
                .int("run", r as i64)
                .num(
                    "genp2p_ms",
                    joined.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
                )
                .num(
                    "floor_ms",
                    floor.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
                )
                .int("servant_rss_kb_at_join", rss as i64),
        );
        thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Manager round trips, join storm, capacity
// ---------------------------------------------------------------------------------------

fn loadgen(ctx: &Ctx, args: &[String]) -> Res<String> {
    let out = Command::new(ctx.ex.join("loadgen"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run loadgen: {e}"))?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !s.starts_with('{') {
        return Err(format!("loadgen {args:?} printed {s:?} ({})", out.status));
    }
    Ok(s)
}

fn emit_raw(ctx: &Ctx, head: Json, raw: &str) {
    let mut h = head.finish();
    h.pop();
    let line = format!("{h},{}", &raw[1..]);
    eprintln!("  {line}");
    let _ = writeln!(ctx.results.lock().unwrap(), "{line}");
}

fn opentracker(ctx: &Ctx) -> Option<(Proc, u16)> {
    let exe = ["/usr/bin/opentracker", "/usr/sbin/opentracker"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let dir = fs::canonicalize(&ctx.out).ok()?.join("opentracker");
    fs::create_dir_all(&dir).ok()?;
    fs::write(
        dir.join("whitelist.txt"),
        "0123456789abcdef0123456789abcdef01234567\n",
    )
    .ok()?;
    // The whitelist path is read after chroot into tracker.rootdir.
    fs::write(
        dir.join("opentracker.conf"),
        format!(
            "access.whitelist /whitelist.txt\ntracker.rootdir {}\n",
            dir.display()
        ),
    )
    .ok()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        l.local_addr().ok()?.port()
    };
    let udp = {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
        u.local_addr().ok()?.port()
    };
    let mut cmd = Command::new(exe);
    cmd.arg("-f")
        .arg(dir.join("opentracker.conf"))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &udp.to_string(),
            "-u",
            "nobody",
        ])
        .stdin(Stdio::null())
        .stdout(ctx.log("opentracker.log"))
        .stderr(ctx.log("opentracker.err"));
    let p = start(cmd).ok()?;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            thread::sleep(Duration::from_millis(300));
            return Some((p, port));
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

const HASH: &str = "%01%23%45%67%89%AB%CD%EF%01%23%45%67%89%AB%CD%EF%01%23%45%67";

fn parse_wrk_time(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mul) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * mul)
}

fn wrk(ctx: &Ctx, port: u16, secs: u64, pid: u32) -> Res<Json> {
    let url = format!(
        "http://127.0.0.1:{port}/announce?info_hash={HASH}&peer_id=ABCDEFGHIJKLMNOPQRST&port=6881&left=0&compact=1"
    );
    let cpu0 = cpu_ticks(pid).unwrap_or(0);
    let out = Command::new("timeout")
        .args([
            &(secs + 20).to_string(),
            "wrk",
            "-t2",
            "-c50",
            &format!("-d{secs}s"),
            "--latency",
            &url,
        ])
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let cpu1 = cpu_ticks(pid).unwrap_or(0);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    fs::write(ctx.out.join("logs").join("wrk-last.txt"), &text).ok();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .ok_or_else(|| format!("wrk printed no Requests/sec: {text}"))?;
    let pct = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| parse_wrk_time(l.split_whitespace().nth(1)?))
            .unwrap_or(f64::NAN)
    };
    let total = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let bad = text.contains("Non-2xx");
    let cpu_ms = (cpu1 - cpu0) as f64 * 1000.0 / ctx.tck;
    Ok(Json::new()
        .num("rps", rps)
        .num("p50_us", pct("50%"))
        .num("p99_us", pct("99%"))
        .num("count", total)
        .num("server_cpu_ms", cpu_ms)
        .num("server_cpu_us_per_req", cpu_ms * 1000.0 / total)
        .bool("non_2xx", bad))
}

fn manager_rtt(ctx: &Ctx, args: &[String]) -> Res<()> {
    let runs: usize = arg(args, "--runs", 3);
    let secs: u64 = arg(args, "--secs", 3);
    let clients: usize = arg(args, "--clients", 50);
    let listed: usize = arg(args, "--listed", 50);
    let (mgr, maddr) = start_manager(ctx, "rtt", 4000)?;
    let (echo, eport, _ein) = start_port_printer(ctx, "echo_floor", &[], "echo-floor-rtt.log")?;
    let ot = opentracker(ctx);
    ctx.emit(
        Json::new()
            .str("test", "manager-setup")
            .bool("opentracker", ot.is_some())
            .int("clients", clients as i64)
            .int("listed", listed as i64)
            .int("secs", secs as i64),
    );
    let systems = ["genp2p", "echo-floor", "opentracker"];
    for r in 0..runs {
        for k in 0..3 {
            let sys = systems[(k + r) % 3];
            let head = Json::new()
                .str("test", "manager")
                .str("system", sys)
                .int("run", r as i64);
            match sys {
                "genp2p" => {
                    let raw = loadgen(
                        ctx,
                        &[
                            "rtt".into(),
                            "--addr".into(),
                            maddr.to_string(),
                            "--clients".into(),
                            clients.to_string(),
                            "--listed".into(),
                            listed.to_string(),
                            "--secs".into(),
                            secs.to_string(),
                            "--pid".into(),
                            mgr.pid().to_string(),
                        ],
                    )?;
                    emit_raw(ctx, head, &raw);
                }
                "echo-floor" => {
                    let raw = loadgen(
                        ctx,
                        &[
                            "rtt".into(),
                            "--addr".into(),
                            format!("127.0.0.1:{eport}"),
                            "--clients".into(),
                            clients.to_string(),
                            "--listed".into(),
                            "0".into(),
                            "--secs".into(),
                            secs.to_string(),
                            "--pid".into(),
                            echo.pid().to_string(),
                        ],
                    )?;
                    emit_raw(ctx, head, &raw);
                }
                _ => {
                    if let Some((p, port)) = &ot {
                        let j = wrk(ctx, *port, secs, p.pid())?;
                        ctx.emit(head.merge(&j));
                    }
                }
            }
            thread::sleep(Duration::from_millis(300));
        }
    }
    drop(ot);
    drop(echo);
    drop(mgr);
    Ok(())
}

fn storm(ctx: &Ctx, args: &[String]) -> Res<()> {
    let ns = arg_list(args, "--ns", "100,1000");
    let runs: usize = arg(args, "--runs", 3);
    for &n in &ns {
        for r in 0..runs {
            let leave = (n / 10).max(1);
            let (mgr, maddr) = start_manager(ctx, &format!("storm-{n}-{r}"), 4000)?;
            let raw = loadgen(
                ctx,
                &[
                    "storm".into(),
                    "--addr".into(),
                    maddr.to_string(),
                    "--n".into(),
                    n.to_string(),
                    "--leave".into(),
                    leave.to_string(),
                    "--pid".into(),
                    mgr.pid().to_string(),
                    "--phase-secs".into(),
                    "30".into(),
                ],
            )?;
            emit_raw(
                ctx,
                Json::new()
                    .str("test", "storm")
                    .str("system", "genp2p")
                    .int("run", r as i64),
                &raw,
            );
            drop(mgr);
            let (echo, eport, _ein) = start_port_printer(
                ctx,
                "echo_floor",
                &[],
                &format!("echo-floor-storm-{n}-{r}.log"),
            )?;
            let raw = loadgen(
                ctx,
                &[
                    "storm".into(),
                    "--addr".into(),
                    format!("127.0.0.1:{eport}"),
                    "--n".into(),
                    n.to_string(),
                    "--echo".into(),
                    "--pid".into(),
                    echo.pid().to_string(),
                    "--phase-secs".into(),
                    "30".into(),
                ],
            )?;
            emit_raw(
                ctx,
                Json::new()
                    .str("test", "storm")
                    .str("system", "echo-floor")
                    .int("run", r as i64),
                &raw,
            );
            drop(echo);
            thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

fn capacity(ctx: &Ctx, args: &[String]) -> Res<()> {
    let max: usize = arg(args, "--max", 4000);
    let listed_secs: u64 = arg(args, "--listed-secs", 60);
    let stress: usize = arg(args, "--stress", 0);
    // Connections up to the configured cap: clients that ask for the list, not listed.
    let (mgr, maddr) = start_manager_with(ctx, "capacity", max, 3600)?;
    let raw = loadgen(
        ctx,
        &[
            "capacity".into(),
            "--addr".into(),
            maddr.to_string(),
            "--max".into(),
            (max + 10).to_string(),
            "--unlisted".into(),
            "--pid".into(),
            mgr.pid().to_string(),
            "--limit-secs".into(),
            "120".into(),
        ],
    )?;
    emit_raw(
        ctx,
        Json::new()
            .str("test", "capacity")
            .str("system", "genp2p")
            .str("clients", "connected")
            .int("maxconnections", max as i64),
        &raw,
    );
    drop(mgr);
    // The floor: a thread-per-connection echo server holding as many.
    let (echo, eport, _ein) = start_port_printer(
        ctx,
        "echo_floor",
        &["--max", &max.to_string()],
        "echo-floor-capacity.log",
    )?;
    let raw = loadgen(
        ctx,
        &[
            "capacity".into(),
            "--addr".into(),
            format!("127.0.0.1:{eport}"),
            "--max".into(),
            max.to_string(),
            "--unlisted".into(),
            "--pid".into(),
            echo.pid().to_string(),
            "--limit-secs".into(),
            "120".into(),
        ],
    )?;
    emit_raw(
        ctx,
        Json::new()
            .str("test", "capacity")
            .str("system", "echo-floor")
            .str("clients", "connected")
            .int("maxconnections", max as i64),
        &raw,
    );
    drop(echo);
    thread::sleep(Duration::from_millis(500));
    // Listed servants (each join told to all the others), for a bounded time.
    if listed_secs > 0 {
        let (mgr, maddr) = start_manager_with(ctx, "capacity-listed", max, 3600)?;
        let raw = loadgen(
            ctx,
            &[
                "capacity".into(),
                "--addr".into(),
                maddr.to_string(),
                "--max".into(),
                (max + 10).to_string(),
                "--pid".into(),
                mgr.pid().to_string(),
                "--limit-secs".into(),
                listed_secs.to_string(),
            ],
        )?;
        emit_raw(
            ctx,
            Json::new()
                .str("test", "capacity")
                .str("system", "genp2p")
                .str("clients", "listed")
                .int("maxconnections", max as i64)
                .int("limit_secs", listed_secs as i64),
            &raw,
        );
        drop(mgr);
        thread::sleep(Duration::from_millis(500));
    }
    if stress > 0 {
        // Beyond what threads and descriptors allow: a refusal, a hang, or an abort?
        let (mut mgr, maddr) = start_manager_with(ctx, "capacity-stress", stress, 3600)?;
        let raw = loadgen(
            ctx,
            &[
                "capacity".into(),
                "--addr".into(),
                maddr.to_string(),
                "--max".into(),
                stress.to_string(),
                "--unlisted".into(),
                "--pid".into(),
                mgr.pid().to_string(),
                "--limit-secs".into(),
                "120".into(),
            ],
        )?;
        thread::sleep(Duration::from_millis(500));
        let status = mgr
            .child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "running".into());
        let log = fs::read_to_string(ctx.out.join("logs").join("manager-capacity-stress.log"))
            .unwrap_or_default();
        let mut tail: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("peer joined") && !l.contains("peer left"))
            .rev()
            .take(3)
            .collect();
        tail.reverse();
        let nofile = fs::read_to_string(format!("/proc/{}/limits", mgr.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .map(|l| l.split_whitespace().nth(3).unwrap_or("").to_owned())
            })
            .unwrap_or_default();
        emit_raw(
            ctx,
            Json::new()
                .str("test", "capacity-stress")
                .str("system", "genp2p")
                .int("maxconnections", stress as i64)
                .str("manager_status", &status)
                .str("manager_log_tail", &tail.join(" || "))
                .str("manager_nofile", &nofile)
                .int(
                    "max_map_count",
                    fs::read_to_string("/proc/sys/vm/max_map_count")
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0),
                ),
            &raw,
        );
        drop(mgr);
    }
    Ok(())
}

fn sizes(ctx: &Ctx) -> Res<()> {
    let size = |p: PathBuf| fs::metadata(&p).map(|m| m.len() as i64).unwrap_or(-1);
    ctx.emit(
        Json::new()
            .str("test", "sizes")
            .int("servant", size(ctx.bin.join("servant")))
            .int(
                "connection_manager",
                size(ctx.bin.join("connection-manager")),
            )
            .int("fanout_floor", size(ctx.ex.join("fanout_floor")))
            .int("echo_floor", size(ctx.ex.join("echo_floor"))),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// File transfer
// ---------------------------------------------------------------------------------------

/// Removes the transfer's scratch folder (and its large files) when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `bytes` of pseudo-random data (xorshift64*), written in 1 MiB blocks.
fn write_random(path: &Path, bytes: u64) -> Res<()> {
    let mut f = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for c in block.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            c.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

fn which(exe: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(exe))
            .find(|f| f.is_file())
    })
}

fn deb_version(pkg: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A port the OS says is free on 127.0.0.1 (bound to 0, then released).
fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Waits until something listens on 127.0.0.1:`port` (/proc/net/tcp, state 0A), without
/// connecting to it (a one-shot `socat tcp-listen` would take the probe for its client).
fn wait_listening(port: u16, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    while Instant::now() < end {
        if fs::read_to_string("/proc/net/tcp").is_ok_and(|t| t.contains(&needle)) {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Waits for a child to exit, at most `limit`; kills it after that.
fn wait_exit(p: &mut Proc, limit: Duration) -> Res<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        match p.child.try_wait() {
            Ok(Some(s)) => return Ok(s),
            Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = p.child.kill();
                return Err(format!("still running after {limit:?}; killed"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A servant taking part in a transfer, with its standard output timestamped line by line.
struct FileServant {
    proc: Proc,
    input: ChildStdin,
    lines: Receiver<(String, Instant)>,
    log: PathBuf,
}

impl FileServant {
    fn start(
        ctx: &Ctx,
        name: &str,
        manager: SocketAddr,
        share: Option<&Path>,
        downloads: Option<&Path>,
    ) -> Res<FileServant> {
        let folders = share
            .map(|d| format!("<share>{}</share>", d.display()))
            .unwrap_or_default()
            + &downloads
                .map(|d| format!("<downloads>{}</downloads>", d.display()))
                .unwrap_or_default();
        let conf = ctx.conf(
            &format!("servant-transfer-{name}.xml"),
            &format!(
                "<config><connectionmgr>127.0.0.1</connectionmgr><port>{}</port><name>{name}</name>\
                 <listen>0</listen><bind>127.0.0.1</bind><heartbeat>1</heartbeat>\
                 <maxconnections>64</maxconnections><maxperaddress>64</maxperaddress>{folders}</config>\n",
                manager.port()
            ),
        );
        let log = ctx
            .out
            .join("logs")
            .join(format!("servant-transfer-{name}.log"));
        let mut cmd = Command::new(ctx.bin.join("servant"));
        cmd.arg("--config")
            .arg(conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).map_err(|e| e.to_string())?);
        let mut proc = start(cmd).map_err(|e| format!("cannot start servant {name}: {e}"))?;
        let input = proc.child.stdin.take().unwrap();
        let out = proc.child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let _ = tx.send((line.trim_end().to_owned(), Instant::now()));
                line.clear();
            }
        });
        Ok(FileServant {
            proc,
            input,
            lines,
            log,
        })
    }

    /// Returns when a line containing one of `stops` is printed (which one, the line,
    /// when), or fails on `download of NAME stopped` or after `limit`.
    fn until(&mut self, stops: &[&str], limit: Duration) -> Res<(usize, String, Instant)> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((l, t)) => {
                    if let Some(i) = stops.iter().position(|s| l.contains(s)) {
                        return Ok((i, l, t));
                    }
                    if l.starts_with("download of ") && l.contains(" stopped") {
                        return Err(format!("genp2p: {l}"));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("genp2p: none of {stops:?} within {limit:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("genp2p: the servant ended before {stops:?}"))
                }
            }
        }
    }

    fn get(&mut self, name: &str) -> Res<Instant> {
        let t0 = Instant::now();
        self.input
            .write_all(format!("/get {name}\n").as_bytes())
            .map_err(|e| format!("writing /get: {e}"))?;
        Ok(t0)
    }
}

/// `(X MiB/s)` in a `downloaded` line.
fn printed_rate(line: &str) -> f64 {
    line.split_once(" (")
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

struct TransferSetup {
    manager: SocketAddr,
    name: String,
    size: u64,
    scratch: PathBuf,
    sharer_pid: u32,
    seq: usize,
}

impl TransferSetup {
    fn downloads(&self) -> PathBuf {
        self.scratch.join("downloads")
    }

    /// A fresh downloader (empty downloads folder unless `keep`), joined and knowing the
    /// sharer.
    fn downloader(&mut self, ctx: &Ctx, keep: bool) -> Res<(FileServant, Instant)> {
        let dl = self.downloads();
        if !keep {
            let _ = fs::remove_dir_all(&dl);
        }
        fs::create_dir_all(&dl).map_err(|e| e.to_string())?;
        self.seq += 1;
        let name = format!("getter{}", self.seq);
        let t0 = Instant::now();
        let s = FileServant::start(ctx, &name, self.manager, None, Some(&dl))?;
        wait_for_line(&s.log, "peer joined: sharer ", Duration::from_secs(20))
            .ok_or_else(|| format!("{name} did not hear of the sharer within 20 s"))?;
        Ok((s, t0))
    }
}

fn genp2p_transfer(ctx: &Ctx, t: &mut TransferSetup) -> Res<Json> {
    let (mut d, _) = t.downloader(ctx, false)?;
    let sharer0 = cpu_ticks(t.sharer_pid).unwrap_or(0);
    let d0 = cpu_ticks(d.proc.pid()).unwrap_or(0);
    // Where the time goes: the `.NAME.state` record, polled, says when all but the last
    // `workers` (4) pieces were in, and when every piece was; then the whole-file hash.
    let count = t.size.div_ceil(1 << 20) as usize;
    let state = t.downloads().join(format!(".{}.state", t.name));
    let done = format!("downloaded {}:", t.name);
    let t0 = d.get(&t.name)?;
    let end = t0 + Duration::from_secs(600);
    let (mut first_piece, mut bulk, mut all) = (None, None, None);
    let (line, t1) = loop {
        match d.lines.try_recv() {
            Ok((l, t)) if l.contains(&done) => break (l, t),
            Ok((l, _)) if l.starts_with("download of ") && l.contains(" stopped") => {
                return Err(format!("genp2p: {l}"))
            }
            Ok(_) => continue,
            Err(mpsc::TryRecvError::Disconnected) => {
                return Err("genp2p: the downloader ended".into())
            }
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if Instant::now() > end {
            return Err("genp2p: no `downloaded` line within 600 s".into());
        }
        if all.is_none() {
            let n = fs::read(&state)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count().saturating_sub(1))
                .unwrap_or(0);
            let now = Instant::now();
            if n >= 1 && first_piece.is_none() {
                first_piece = Some(now);
            }
            if n + 4 >= count && bulk.is_none() {
                bulk = Some(now);
            }
            if n >= count {
                all = Some(now);
            }
        }
        thread::sleep(Duration::from_micros(500));
    };
    let secs = t1.duration_since(t0).as_secs_f64();
    let since = |t: Option<Instant>| {
        t.map(|t| t.duration_since(t0).as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    let cpu_ms = ((cpu_ticks(t.sharer_pid).unwrap_or(0) - sharer0)
        + (cpu_ticks(d.proc.pid()).unwrap_or(0) - d0)) as f64
        * 1000.0
        / ctx.tck;
    let got = t.downloads().join(&t.name);
    let ok = fs::metadata(&got).map(|m| m.len()).unwrap_or(0) == t.size;
    drop(d);
    let _ = fs::remove_file(&got);
    if !ok {
        return Err(format!("genp2p: {} is not {} bytes", got.display(), t.size));
    }
    Ok(Json::new()
        .num("secs", secs)
        .num("gib_per_s", t.size as f64 / (1u64 << 30) as f64 / secs)
        .num("printed_mib_per_s", printed_rate(&line))
        .num("cpu_ms", cpu_ms)
        .num("first_piece_secs", since(first_piece))
        .num("all_but_4_secs", since(bulk))
        .num("all_pieces_secs", since(all))
        .str("line", &line))
}

fn socat_transfer(t: &TransferSetup) -> Res<Json> {
    let port = free_port()?;
    let src = t.scratch.join("share").join(&t.name);
    let dst = t.scratch.join("socat.out");
    let mut cmd = Command::new("socat");
    cmd.arg("-u")
        .arg(&src)
        .arg(format!("tcp-listen:{port},bind=127.0.0.1,reuseaddr"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut server = start(cmd).map_err(|e| format!("cannot start socat: {e}"))?;
    if !wait_listening(port, Duration::from_secs(10)) {
        return Err(format!("socat did not listen on 127.0.0.1:{port}"));
    }
    let t0 = Instant::now();
    let mut cmd = Command::new("socat");
    cmd.arg("-u")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .arg(format!("OPEN:{},creat,trunc", dst.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut client = start(cmd).map_err(|e| format!("cannot start socat: {e}"))?;
    let st = wait_exit(&mut client, Duration::from_secs(300)).map_err(|e| format!("socat: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = wait_exit(&mut server, Duration::from_secs(10));
    let ok = st.success() && fs::metadata(&dst).map(|m| m.len()).unwrap_or(0) == t.size;
    let _ = fs::remove_file(&dst);
    if !ok {
        return Err(format!("socat: copy failed ({st})"));
    }
    Ok(Json::new()
        .num("secs", secs)
        .num("gib_per_s", t.size as f64 / (1u64 << 30) as f64 / secs))
}

/// nginx on 127.0.0.1 serving the share folder (Range requests), in the foreground.
fn start_nginx(ctx: &Ctx, t: &TransferSetup) -> Res<(Proc, u16)> {
    let port = free_port()?;
    let prefix = t.scratch.join("nginx");
    fs::create_dir_all(prefix.join("logs")).map_err(|e| e.to_string())?;
    let conf = prefix.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off; master_process off; worker_processes 1;\n\
             pid {p}/nginx.pid; error_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; sendfile on; default_type application/octet-stream;\n\
             client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
            p = prefix.display(),
            root = t.scratch.join("share").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(ctx.log("nginx-transfer.log"));
    let p = start(cmd).map_err(|e| format!("cannot start nginx: {e}"))?;
    if !wait_listening(port, Duration::from_secs(10)) {
        return Err(format!(
            "nginx did not listen on 127.0.0.1:{port} (see logs/nginx-transfer.log)"
        ));
    }
    Ok((p, port))
}

fn aria2c_transfer(ctx: &Ctx, t: &TransferSetup, port: u16, run: usize) -> Res<Json> {
    let dir = t.scratch.join("aria2");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--no-conf",
        "-x8",
        "-s8",
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--disable-ipv6",
        "--summary-interval=0",
        "--console-log-level=warn",
    ])
    .arg("-d")
    .arg(&dir)
    .arg("-o")
    .arg("out")
    .arg(format!("http://127.0.0.1:{port}/{}", t.name))
    .stdin(Stdio::null())
    .stdout(ctx.log(&format!("aria2c-{run}.log")))
    .stderr(Stdio::null());
    let t0 = Instant::now();
    let mut p = start(cmd).map_err(|e| format!("cannot start aria2c: {e}"))?;
    let st = wait_exit(&mut p, Duration::from_secs(300)).map_err(|e| format!("aria2c: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let ok = st.success() && fs::metadata(dir.join("out")).map(|m| m.len()).unwrap_or(0) == t.size;
    let _ = fs::remove_dir_all(&dir);
    if !ok {
        return Err(format!(
            "aria2c: download failed ({st}; see logs/aria2c-{run}.log)"
        ));
    }
    Ok(Json::new()
        .num("secs", secs)
        .num("gib_per_s", t.size as f64 / (1u64 << 30) as f64 / secs))
}

/// kill -9 the downloader once half the pieces are recorded, start it again, `/get` again.
fn resume_transfer(ctx: &Ctx, t: &mut TransferSetup) -> Res<Json> {
    let count = t.size.div_ceil(1 << 20) as usize;
    let (mut d, _) = t.downloader(ctx, false)?;
    let state = t.downloads().join(format!(".{}.state", t.name));
    let t0 = d.get(&t.name)?;
    let end = t0 + Duration::from_secs(300);
    let mut recorded = 0;
    while Instant::now() < end {
        // The header line, then one line per verified piece.
        recorded = fs::read(&state)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count().saturating_sub(1))
            .unwrap_or(0);
        if recorded >= count / 2 {
            break;
        }
        if let Ok((l, _)) = d.lines.try_recv() {
            if l.contains(&format!("downloaded {}:", t.name)) {
                return Err("genp2p: the download finished before half of it was recorded".into());
            }
        }
        thread::sleep(Duration::from_micros(500));
    }
    if recorded < count / 2 {
        return Err(format!(
            "genp2p: only {recorded} of {count} pieces recorded in 300 s"
        ));
    }
    let _ = d.proc.child.kill(); // SIGKILL
    let _ = d.proc.child.wait();
    let first_secs = t0.elapsed().as_secs_f64();
    drop(d);
    let (mut d, r0) = t.downloader(ctx, true)?;
    let joined_secs = r0.elapsed().as_secs_f64();
    let g = d.get(&t.name)?;
    let done = format!("downloaded {}:", t.name);
    let (which, line, t1) = d.until(&["resuming ", &done], Duration::from_secs(300))?;
    if which != 0 {
        return Err(format!(
            "genp2p: no `resuming` line after the restart: {line}"
        ));
    }
    let (kept, of) = line
        .split_once(": ")
        .and_then(|(_, r)| {
            let mut w = r.split(' ');
            Some((
                w.next()?.parse::<i64>().ok()?,
                w.nth(1)?.parse::<i64>().ok()?,
            ))
        })
        .unwrap_or((-1, -1));
    let (_, fin, t2) = d.until(&[&done], Duration::from_secs(600))?;
    let got = t.downloads().join(&t.name);
    let ok = fs::metadata(&got).map(|m| m.len()).unwrap_or(0) == t.size;
    drop(d);
    let _ = fs::remove_file(&got);
    if !ok {
        return Err(format!(
            "genp2p: resumed {} is not {} bytes",
            got.display(),
            t.size
        ));
    }
    Ok(Json::new()
        .int("recorded_at_kill", recorded as i64)
        .int("kept", kept)
        .int("pieces", of)
        .num("first_secs", first_secs)
        .num("restart_joined_secs", joined_secs)
        .num("reverify_secs", t1.duration_since(r0).as_secs_f64())
        .num("get_to_resuming_secs", t1.duration_since(g).as_secs_f64())
        .num("rest_secs", t2.duration_since(t1).as_secs_f64())
        .num("restart_to_done_secs", t2.duration_since(r0).as_secs_f64())
        .num(
            "total_secs",
            first_secs + t2.duration_since(r0).as_secs_f64(),
        )
        .str("line", &fin))
}

fn transfer(ctx: &Ctx, args: &[String]) -> Res<()> {
    let mib: u64 = arg(args, "--mib", 1024);
    let runs: usize = arg(args, "--runs", 3);
    let resume_runs: usize = arg(args, "--resume-runs", runs);
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        ctx.out.clone()
    };
    let scratch = root.join(format!("genp2p-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let _cleanup = ScratchDir(scratch.clone());
    let share = scratch.join("share");
    fs::create_dir_all(&share).map_err(|e| e.to_string())?;
    let name = format!("bench-{mib}MiB.bin");
    let size = mib << 20;
    let w0 = Instant::now();
    write_random(&share.join(&name), size)?;
    eprintln!(
        "  wrote {size} bytes to {} in {:.1}s",
        share.join(&name).display(),
        w0.elapsed().as_secs_f64()
    );

    let (_mgr, manager) = start_manager(ctx, "transfer", 64)?;
    let s0 = Instant::now();
    let sharer = FileServant::start(ctx, "sharer", manager, Some(&share), None)?;
    wait_for_line(
        &sharer.log,
        &format!("sharing {name} "),
        Duration::from_secs(300),
    )
    .ok_or("the sharer did not index the file within 300 s")?;
    let index_secs = s0.elapsed().as_secs_f64();
    wait_for_line(&sharer.log, "joined as sharer", Duration::from_secs(20))
        .ok_or("the sharer did not join within 20 s")?;
    let mut t = TransferSetup {
        manager,
        name,
        size,
        scratch: scratch.clone(),
        sharer_pid: sharer.proc.pid(),
        seq: 0,
    };

    let have_socat = which("socat").is_some();
    let have_aria = which("aria2c").is_some();
    let have_nginx = which("nginx").is_some();
    let mut nginx = None;
    let mut missing = Vec::new();
    if !have_socat {
        missing
            .push("socat (Debian package socat) not installed: socat baseline skipped".to_owned());
    }
    if !have_aria || !have_nginx {
        missing.push(format!(
            "{} not installed: aria2c baseline skipped",
            [
                (!have_aria).then_some("aria2c (Debian package aria2)"),
                (!have_nginx).then_some("nginx (Debian package nginx-light)")
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
        ));
    } else {
        match start_nginx(ctx, &t) {
            Ok(n) => nginx = Some(n),
            Err(e) => missing.push(format!(
                "nginx did not start ({e}): aria2c baseline skipped"
            )),
        }
    }
    ctx.emit(
        Json::new()
            .str("test", "transfer-setup")
            .int("bytes", size as i64)
            .int("pieces", size.div_ceil(1 << 20) as i64)
            .str("where", &root.display().to_string())
            .num("index_secs", index_secs)
            .str("socat", &deb_version("socat"))
            .str("aria2", &deb_version("aria2"))
            .str(
                "nginx",
                &Some(deb_version("nginx-light"))
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| deb_version("nginx")),
            )
            .str("skipped", &missing.join("; ")),
    );

    let systems = ["genp2p", "socat", "aria2c"];
    for run in 0..runs {
        for k in 0..systems.len() {
            let system = systems[(run + k) % systems.len()];
            let head = Json::new()
                .str("test", "transfer")
                .str("system", system)
                .int("run", run as i64)
                .int("bytes", size as i64);
            let r = match system {
                "genp2p" => genp2p_transfer(ctx, &mut t),
                "socat" if have_socat => socat_transfer(&t),
                "aria2c" => match &nginx {
                    Some((_, port)) => aria2c_transfer(ctx, &t, *port, run),
                    None => continue,
                },
                _ => continue,
            };
            ctx.emit_result(head, r, &format!("transfer run {run}"));
        }
    }
    drop(nginx);
    for run in 0..resume_runs {
        let head = Json::new()
            .str("test", "transfer-resume")
            .int("run", run as i64)
            .int("bytes", size as i64);
        let r = resume_transfer(ctx, &mut t);
        ctx.emit_result(head, r, &format!("transfer resume run {run}"));
    }
    drop(sharer);
    Ok(())
}
