//! Load generator for the connection manager (`make bench`): clients that speak the
//! servant's side of the manager protocol, without being servants. Prints one JSON line.
//!
//! - `loadgen rtt --addr A --clients 50 --listed 50 --secs 3 [--pid P] [--line L]`:
//!   registers `listed` fake servants (`listening PORT ID NAME KEY`, each with a key of
//!   its own that signs the manager's challenge; they drain their pushes),
//!   then `clients` connections each send `L` (default `needs peer list`) and wait for
//!   one line back, over and over, for `secs`. Round trips/s, p50/p99, server CPU.
//! - `loadgen storm --addr A --n 1000 --leave 100 [--echo]`: `n` clients join at once;
//!   time until every one holds the whole list; then `leave` of them say `bye`; time until
//!   every remaining one has been told. Bytes received per join and per leave. With
//!   `--echo`, against a line echo server: time until every client got its line back.
//! - `loadgen capacity --addr A --max M [--unlisted] [--pid P]`: connects clients one
//!   after another until the server refuses one (or `max`); RSS and threads of P.
//!
//! Every loop is bounded by a count and by `--limit-secs` (default 120).

#[path = "bench_common/mod.rs"]
mod bench_common;

use bench_common::*;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use genp2p::identity::Identity;

/// A fake servant's registration: its `listening` line and the key that proves it.
struct Registration {
    me: Identity,
    listening: String,
}

impl Registration {
    fn new(port: u16, name: &str) -> io::Result<Registration> {
        let me = Identity::ephemeral().map_err(|e| io::Error::other(e.to_string()))?;
        let listening = format!("listening {port} {} {name} {}", me.id, me.key.hex());
        Ok(Registration { me, listening })
    }

    /// The `prove` line (with its `\n`) answering a `<challenge>` line.
    fn prove(&self, challenge: &str) -> Option<String> {
        match genp2p::protocol::ManagerMessage::parse(challenge) {
            Ok(genp2p::protocol::ManagerMessage::Challenge { nonce }) => {
                let signed = genp2p::protocol::listen_proof(&nonce, &self.listening);
                Some(format!(
                    "prove {}\n",
                    genp2p::encoding::hex(&self.me.sign(&signed))
                ))
            }
            _ => None,
        }
    }
}

/// Frames lines out of a socket without allocating per line.
struct LineBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    scanned: usize,
    bytes: u64,
}

enum Got {
    Line(usize, usize),
    Idle,
}

impl LineBuf {
    fn new() -> LineBuf {
        LineBuf {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            scanned: 0,
            bytes: 0,
        }
    }

    /// The next line (range into `buf`, without `\n`), `Idle` on a read time-out.
    fn next(&mut self, s: &TcpStream, on_bytes: &mut dyn FnMut(usize)) -> io::Result<Got> {
        loop {
            if let Some(p) = self.buf[self.scanned..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = (self.start, self.scanned + p);
                self.start = self.scanned + p + 1;
                self.scanned = self.start;
                return Ok(Got::Line(line.0, line.1));
            }
            self.scanned = self.end;
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            match (&*s).read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
                Ok(n) => {
                    self.end += n;
                    self.bytes += n as u64;
                    on_bytes(n);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Ok(Got::Idle)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn text(&self, (a, b): (usize, usize)) -> &str {
        std::str::from_utf8(&self.buf[a..b]).unwrap_or("")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: u64 = arg(&args, "--limit-secs", 120);
    dead_man(Duration::from_secs(limit + 5), "loadgen");
    let addr: SocketAddr = match arg_str(&args, "--addr", "").parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("loadgen: --addr IP:PORT is required");
            std::process::exit(2);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(limit);
    let out = match args.first().map(String::as_str) {
        Some("rtt") => rtt(&args, addr, deadline),
        Some("storm") => storm(&args, addr, deadline),
        Some("capacity") => capacity(&args, addr, deadline),
        _ => {
            eprintln!("usage: loadgen rtt|storm|capacity --addr IP:PORT ...");
            std::process::exit(2);
        }
    };
    println!("{}", out.finish());
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connects, says `listening`, reads the `<peers>` answer; then a thread drains pushes
/// until `stop`.
fn fake_servant(
    addr: SocketAddr,
    i: usize,
    stop: Arc<AtomicBool>,
) -> io::Result<thread::JoinHandle<()>> {
    let (l, port) = listen_port()?;
    let reg = Registration::new(port, &format!("fake{i}"))?;
    let s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    (&s).write_all(format!("{}\n", reg.listening).as_bytes())?;
    let mut lb = LineBuf::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match lb.next(&s, &mut |_| {})? {
            Got::Line(a, b) => match reg.prove(lb.text((a, b))) {
                Some(prove) => (&s).write_all(prove.as_bytes())?,
                None => break,
            },
            Got::Idle if Instant::now() > deadline => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no <peers> answer"))
            }
            Got::Idle => {}
        }
    }
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut scratch = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match (&s).read(&mut scratch) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            let _ = (&s).write_all(b"bye\n");
            drop(l);
        })
}

/// A port this client really listens on: the manager connects back to the port a servant
/// lists (its reachability probe). Nothing is accepted; the kernel completes the handshake.
fn listen_port() -> io::Result<(TcpListener, u16)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}

fn rtt(args: &[String], addr: SocketAddr, deadline: Instant) -> Json {
    let clients: usize = arg(args, "--clients", 50);
    let listed: usize = arg(args, "--listed", 0);
    let secs: f64 = arg(args, "--secs", 3.0);
    let warm: f64 = arg(args, "--warm", 0.3);
    let pid: u32 = arg(args, "--pid", 0);
    let mut line = arg_str(args, "--line", "needs peer list");
    line.push('\n');
    let stop = Arc::new(AtomicBool::new(false));
    let mut drains = Vec::new();
    for i in 0..listed {
        match fake_servant(addr, i, Arc::clone(&stop)) {
            Ok(h) => drains.push(h),
            Err(e) => {
                return Json::new().str("error", &format!("registering fake servant {i}: {e}"))
            }
        }
    }
    let barrier = Arc::new(Barrier::new(clients + 1));
    let t_start: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (barrier, t_start, line) = (Arc::clone(&barrier), Arc::clone(&t_start), line.clone());
        let conn = connect(addr);
        handles.push(
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut lat = Vec::with_capacity(100_000);
                    let mut reply_bytes = 0usize;
                    let mut err = None;
                    let s = match conn {
                        Ok(s) => s,
                        Err(e) => {
                            barrier.wait();
                            return (lat, 0, Some(e.to_string()));
                        }
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut lb = LineBuf::new();
                    barrier.wait();
                    let t0 = *t_start.get().unwrap();
                    let warm_end = t0 + Duration::from_secs_f64(warm);
                    let end = (t0 + Duration::from_secs_f64(warm + secs)).min(deadline);
                    let mut n = 0u64;
                    while n < 50_000_000 {
                        let t = Instant::now();
                        if t >= end {
                            break;
                        }
                        if let Err(e) = (&s).write_all(line.as_bytes()) {
                            err = Some(e.to_string());
                            break;
                        }
                        match lb.next(&s, &mut |_| {}) {
                            Ok(Got::Line(a, b)) => {
                                reply_bytes = b - a + 1;
                                let done = Instant::now();
                                if t >= warm_end && done <= end {
                                    lat.push((done - t).as_secs_f64() * 1e6);
                                }
                            }
                            Ok(Got::Idle) => {
                                err = Some("no answer within 5 s".into());
                                break;
                            }
                            Err(e) => {
                                err = Some(e.to_string());
                                break;
                            }
                        }
                        n += 1;
                    }
                    (lat, reply_bytes, err)
                })
                .expect("client thread"),
        );
    }
    let tck = clk_tck();
    let cpu0 = cpu_ticks(pid);
    t_start.set(Instant::now()).unwrap();
    barrier.wait();
    let mut all = Vec::new();
    let mut reply = 0;
    let mut errors = Vec::new();
    for h in handles {
        let (l, rb, e) = h.join().unwrap();
        all.extend(l);
        reply = reply.max(rb);
        if let Some(e) = e {
            errors.push(e);
        }
    }
    let cpu1 = cpu_ticks(pid);
    stop.store(true, Ordering::Relaxed);
    for d in drains {
        let _ = d.join();
    }
    let count = all.len();
    let rps = count as f64 / secs;
    let cpu_ms = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b - a) as f64 * 1000.0 / tck,
        _ => f64::NAN,
    };
    Json::new()
        .int("count", count as i64)
        .num("rps", rps)
        .num("p50_us", quantile(&mut all, 0.5))
        .num("p99_us", quantile(&mut all, 0.99))
        .num("max_us", quantile(&mut all, 1.0))
        .int("reply_bytes", reply as i64)
        .num("server_cpu_ms", cpu_ms)
        .num(
            "server_cpu_us_per_req",
            cpu_ms * 1000.0 / count.max(1) as f64,
        )
        .int("errors", errors.len() as i64)
        .str(
            "first_error",
            errors.first().map(String::as_str).unwrap_or(""),
        )
}

#[derive(Default)]
struct Storm {
    t0: OnceLock<Instant>,
    t1: OnceLock<Instant>,
    phase: AtomicU8,
    stop: AtomicBool,
    joined: AtomicUsize,
    told: AtomicUsize,
    join_ms: Mutex<Vec<f64>>,
    leave_ms: Mutex<Vec<f64>>,
    bytes_join: AtomicU64,
    bytes_leave: AtomicU64,
    doc_bytes: AtomicU64,
    connect_retries: AtomicU64,
    connect_ms: Mutex<Vec<f64>>,
    leave_lines: AtomicU64,
    /// Bytes of the `<leave>` lines themselves (with their line ends).
    leave_line_bytes: AtomicU64,
    /// Lines during the leave phase that are not `<leave>` (kind of the first one).
    other_leave_lines: AtomicU64,
    other_kind: Mutex<String>,
    reads: AtomicU64,
    errors: Mutex<Vec<String>>,
    leavers: Mutex<Vec<TcpStream>>,
}

fn storm(args: &[String], addr: SocketAddr, deadline: Instant) -> Json {
    let n: usize = arg(args, "--n", 1000);
    let leave: usize = arg(args, "--leave", n / 10).min(n.saturating_sub(1));
    let echo = flag(args, "--echo");
    let phase_limit = Duration::from_secs_f64(arg(args, "--phase-secs", 30.0));
    let every = n.checked_div(leave).unwrap_or(usize::MAX).max(1);
    let is_leaver = move |i: usize| leave > 0 && i.is_multiple_of(every) && i / every < leave;
    let st = Arc::new(Storm::default());
    st.phase.store(1, Ordering::SeqCst);
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (st, barrier) = (Arc::clone(&st), Arc::clone(&barrier));
        let leaver = is_leaver(i);
        let h = thread::Builder::new()
            .stack_size(192 * 1024)
            .spawn(move || storm_client(addr, i, n, leave, leaver, echo, &st, &barrier, deadline));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("loadgen: cannot start client thread {i}: {e}");
                std::process::exit(1);
            }
        }
    }
    let pid: u32 = arg(args, "--pid", 0);
    let tck = clk_tck();
    let over0 = netstat("TcpExt", "ListenOverflows").unwrap_or(0);
    let drops0 = netstat("TcpExt", "ListenDrops").unwrap_or(0);
    let cpu0 = cpu_ticks(pid).unwrap_or(0);
    let self0 = cpu_ticks(std::process::id()).unwrap_or(0);
    let t0 = Instant::now();
    st.t0.set(t0).unwrap();
    barrier.wait();
    let join_deadline = (t0 + phase_limit).min(deadline);
    while st.joined.load(Ordering::SeqCst) < n && Instant::now() < join_deadline {
        thread::sleep(Duration::from_micros(500));
    }
    let joined = st.joined.load(Ordering::SeqCst);
    let cpu1 = cpu_ticks(pid).unwrap_or(0);
    let self1 = cpu_ticks(std::process::id()).unwrap_or(0);
    let reads_join = st.reads.load(Ordering::SeqCst);
    let over1 = netstat("TcpExt", "ListenOverflows").unwrap_or(0);
    let drops1 = netstat("TcpExt", "ListenDrops").unwrap_or(0);
    let mut told = 0;
    if !echo && leave > 0 && joined == n {
        thread::sleep(Duration::from_millis(200));
        st.phase.store(2, Ordering::SeqCst);
        let t1 = Instant::now();
        st.t1.set(t1).unwrap();
        for s in st.leavers.lock().unwrap().iter() {
            let _ = (&*s).write_all(b"bye\n");
            let _ = s.shutdown(Shutdown::Both);
        }
        let leave_deadline = (t1 + phase_limit).min(deadline);
        while st.told.load(Ordering::SeqCst) < n - leave && Instant::now() < leave_deadline {
            thread::sleep(Duration::from_micros(500));
        }
        told = st.told.load(Ordering::SeqCst);
    }
    let cpu2 = cpu_ticks(pid).unwrap_or(0);
    st.stop.store(true, Ordering::SeqCst);
    for h in handles {
        let _ = h.join();
    }
    let mut jm = st.join_ms.lock().unwrap().clone();
    let mut lm = st.leave_ms.lock().unwrap().clone();
    let errors = st.errors.lock().unwrap().clone();
    let other_kind = st.other_kind.lock().unwrap().clone();
    let mut cm = st.connect_ms.lock().unwrap().clone();
    let slow_connects = cm.iter().filter(|&&m| m > 900.0).count();
    let bj = st.bytes_join.load(Ordering::SeqCst) as f64;
    let bl_raw = st.bytes_leave.load(Ordering::SeqCst) as f64;
    let bl = st.leave_line_bytes.load(Ordering::SeqCst) as f64;
    let docs = st.doc_bytes.load(Ordering::SeqCst) as f64;
    Json::new()
        .int("n", n as i64)
        .int("leave", leave as i64)
        .num("server_cpu_join_ms", (cpu1 - cpu0) as f64 * 1000.0 / tck)
        .num(
            "server_cpu_leave_ms",
            cpu2.saturating_sub(cpu1) as f64 * 1000.0 / tck,
        )
        .num("loadgen_cpu_join_ms", (self1 - self0) as f64 * 1000.0 / tck)
        .num("reads_per_client_join", reads_join as f64 / n as f64)
        .int("joined", joined as i64)
        .int("told", told as i64)
        .num(
            "join_ms",
            if joined == n {
                quantile(&mut jm, 1.0)
            } else {
                f64::NAN
            },
        )
        .num("join_p50_ms", quantile(&mut jm, 0.5))
        .num(
            "leave_ms",
            if leave > 0 && told == n - leave {
                quantile(&mut lm, 1.0)
            } else {
                f64::NAN
            },
        )
        .num("leave_p50_ms", quantile(&mut lm, 0.5))
        .num("bytes_per_join", bj / n as f64)
        .num("doc_bytes_per_join", docs / n as f64)
        .num("push_bytes_per_join", (bj - docs) / n as f64)
        .num(
            "bytes_per_leave",
            if leave > 0 {
                bl / leave as f64
            } else {
                f64::NAN
            },
        )
        .num("raw_bytes_leave_phase", bl_raw)
        .num("connect_p50_ms", quantile(&mut cm, 0.5))
        .num("connect_max_ms", quantile(&mut cm, 1.0))
        .int("slow_connects", slow_connects as i64)
        .int("leave_lines", st.leave_lines.load(Ordering::SeqCst) as i64)
        .int(
            "other_leave_lines",
            st.other_leave_lines.load(Ordering::SeqCst) as i64,
        )
        .str("other_kind", &other_kind)
        .int(
            "connect_retries",
            st.connect_retries.load(Ordering::SeqCst) as i64,
        )
        .int("listen_overflows", over1.saturating_sub(over0) as i64)
        .int("listen_drops", drops1.saturating_sub(drops0) as i64)
        .int("errors", errors.len() as i64)
        .str(
            "first_error",
            errors.first().map(String::as_str).unwrap_or(""),
        )
}

/// The names a storm client knows. Its fellow clients' names (`snN`) are kept as bits:
/// a load generator should cost less than the server it loads, and a set of strings cost
/// it a million allocations in a storm of a thousand. Any other name goes into a set.
struct Known {
    bits: Vec<bool>,
    count: usize,
    other: HashSet<String>,
}

impl Known {
    fn new(n: usize) -> Known {
        Known {
            bits: vec![false; n],
            count: 0,
            other: HashSet::new(),
        }
    }

    fn index(&self, id: &str) -> Option<usize> {
        let i: usize = id.strip_prefix("sn")?.parse().ok()?;
        (i < self.bits.len()).then_some(i)
    }

    fn insert(&mut self, id: &str) {
        match self.index(id) {
            Some(i) if !self.bits[i] => {
                self.bits[i] = true;
                self.count += 1;
            }
            Some(_) => {}
            None => {
                self.other.insert(id.to_owned());
            }
        }
    }

    fn remove(&mut self, id: &str) {
        match self.index(id) {
            Some(i) if self.bits[i] => {
                self.bits[i] = false;
                self.count -= 1;
            }
            Some(_) => {}
            None => {
                self.other.remove(id);
            }
        }
    }

    fn len(&self) -> usize {
        self.count + self.other.len()
    }
}

#[allow(clippy::too_many_arguments)]
fn storm_client(
    addr: SocketAddr,
    i: usize,
    n: usize,
    leave: usize,
    leaver: bool,
    echo: bool,
    st: &Storm,
    barrier: &Barrier,
    deadline: Instant,
) {
    let err = |e: String| st.errors.lock().unwrap().push(format!("client {i}: {e}"));
    // Bound before the storm starts: the port this client lists, and the manager probes.
    let bound = if echo { None } else { listen_port().ok() };
    let port = bound.as_ref().map_or(30000 + (i % 30000) as u16, |b| b.1);
    let me = format!("sn{i}");
    let reg = match Registration::new(port, &me) {
        Ok(r) => r,
        Err(e) => return err(format!("no key: {e}")),
    };
    barrier.wait();
    let t0 = *st.t0.get().unwrap();
    let s = loop {
        match connect(addr) {
            Ok(s) => {
                st.connect_ms
                    .lock()
                    .unwrap()
                    .push(t0.elapsed().as_secs_f64() * 1e3);
                break s;
            }
            Err(e) => {
                st.connect_retries.fetch_add(1, Ordering::Relaxed);
                if Instant::now() > deadline || st.stop.load(Ordering::Relaxed) {
                    return err(format!("connect: {e}"));
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    // Wakes to look at `stop` this often: a thousand clients waking every 50 ms took CPU
    // from the manager they measure.
    let _ = s.set_read_timeout(Some(Duration::from_millis(250)));
    if leaver {
        if let Ok(c) = s.try_clone() {
            st.leavers.lock().unwrap().push(c);
        }
    }
    if let Err(e) = (&s).write_all(format!("{}\n", reg.listening).as_bytes()) {
        return err(format!("write: {e}"));
    }
    let mut lb = LineBuf::new();
    let mut others = Known::new(n);
    let mut joined = false;
    let mut told = false;
    let mut first = true;
    loop {
        if st.stop.load(Ordering::Relaxed) {
            return;
        }
        let mut count = |k: usize| {
            st.reads.fetch_add(1, Ordering::Relaxed);
            if st.phase.load(Ordering::Relaxed) == 1 {
                st.bytes_join.fetch_add(k as u64, Ordering::Relaxed);
            } else {
                st.bytes_leave.fetch_add(k as u64, Ordering::Relaxed);
            }
        };
        let range = match lb.next(&s, &mut count) {
            Ok(Got::Line(a, b)) => (a, b),
            Ok(Got::Idle) => continue,
            Err(e) => {
                if !(leaver && st.phase.load(Ordering::Relaxed) == 2) {
                    err(format!("read: {e}"));
                }
                return;
            }
        };
        let line = lb.text(range);
        if echo {
            st.join_ms
                .lock()
                .unwrap()
                .push(t0.elapsed().as_secs_f64() * 1e3);
            st.joined.fetch_add(1, Ordering::SeqCst);
            // Hold the connection until the end, like a joined client.
            while !st.stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        if line.starts_with("<challenge") {
            if let Some(prove) = reg.prove(line) {
                if let Err(e) = (&s).write_all(prove.as_bytes()) {
                    return err(format!("write: {e}"));
                }
            }
            continue;
        }
        if first {
            st.doc_bytes
                .fetch_add((range.1 - range.0 + 1) as u64, Ordering::Relaxed);
            first = false;
        }
        if line.starts_with("<peers") || line.starts_with("<join") {
            each_elem(line, "name", |name| {
                if name != me {
                    others.insert(name);
                }
            });
        } else if line.starts_with("<leave") {
            st.leave_lines.fetch_add(1, Ordering::Relaxed);
            st.leave_line_bytes
                .fetch_add((range.1 - range.0 + 1) as u64, Ordering::Relaxed);
            each_elem(line, "name", |name| {
                others.remove(name);
            });
        } else if line.starts_with("<error") {
            err(line.chars().take(120).collect());
        }
        if st.phase.load(Ordering::Relaxed) == 2 && !line.starts_with("<leave") {
            st.other_leave_lines.fetch_add(1, Ordering::Relaxed);
            let mut k = st.other_kind.lock().unwrap();
            if k.is_empty() {
                *k = line.chars().take(60).collect();
            }
        }
        if !joined && others.len() >= n - 1 {
            joined = true;
            st.join_ms
                .lock()
                .unwrap()
                .push(t0.elapsed().as_secs_f64() * 1e3);
            st.joined.fetch_add(1, Ordering::SeqCst);
        }
        if joined
            && !told
            && !leaver
            && st.phase.load(Ordering::Relaxed) == 2
            && others.len() == n - 1 - leave
        {
            told = true;
            let t1 = *st.t1.get().unwrap();
            st.leave_ms
                .lock()
                .unwrap()
                .push(t1.elapsed().as_secs_f64() * 1e3);
            st.told.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn capacity(args: &[String], addr: SocketAddr, deadline: Instant) -> Json {
    let max: usize = arg(args, "--max", 5000);
    let unlisted = flag(args, "--unlisted");
    let pid: u32 = arg(args, "--pid", 0);
    let alive = |pid: u32| {
        pid == 0
            || std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
                && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| !s.contains(") Z "))
                    .unwrap_or(false)
    };
    let rss0 = rss_kb(pid);
    let thr0 = threads(pid);
    let t0 = Instant::now();
    let mut conns: Vec<Option<TcpStream>> = Vec::new();
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut outcome = String::from("reached --max");
    let mut refusal = String::new();
    let mut closed_after_refusal = false;
    let mut refusal_us = f64::NAN;
    let mut dropped = 0usize;
    let mut bytes = 0u64;
    let mut scratch = vec![0u8; 256 * 1024];
    let mut samples = String::new();
    let mut sweep = |conns: &mut Vec<Option<TcpStream>>, dropped: &mut usize, bytes: &mut u64| {
        for c in conns.iter_mut() {
            let Some(s) = c else { continue };
            loop {
                match (&*s).read(&mut scratch) {
                    Ok(0) => {
                        *dropped += 1;
                        *c = None;
                        break;
                    }
                    Ok(k) => *bytes += k as u64,
                    Err(_) => break,
                }
            }
        }
    };
    for i in 0..max {
        if Instant::now() > deadline {
            outcome = "time limit".into();
            break;
        }
        if !alive(pid) {
            outcome = format!("server process {pid} is gone");
            break;
        }
        let t = Instant::now();
        let s = match connect(addr) {
            Ok(s) => s,
            Err(e) => {
                outcome = format!("connect failed: {e}");
                break;
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reg = None;
        let hello = if unlisted {
            "needs peer list\n".to_owned()
        } else {
            match listen_port()
                .and_then(|(l, port)| Ok((l, Registration::new(port, &format!("cap{i}"))?)))
            {
                Ok((l, r)) => {
                    listeners.push(l);
                    let line = format!("{}\n", r.listening);
                    reg = Some(r);
                    line
                }
                Err(e) => {
                    outcome = format!("cannot listen for client {i}: {e}");
                    break;
                }
            }
        };
        let _ = (&s).write_all(hello.as_bytes());
        let mut lb = LineBuf::new();
        let mut answer = lb.next(&s, &mut |k| bytes += k as u64);
        // A listed client answers the manager's challenge; the list comes next.
        if let (Ok(Got::Line(a, b)), Some(r)) = (&answer, &reg) {
            if let Some(prove) = r.prove(lb.text((*a, *b))) {
                let _ = (&s).write_all(prove.as_bytes());
                answer = lb.next(&s, &mut |k| bytes += k as u64);
            }
        }
        match answer {
            Ok(Got::Line(a, b)) => {
                let line = lb.text((a, b));
                let echoed = line == hello.trim_end();
                if !echoed && (line.starts_with("<error") || !line.starts_with('<')) {
                    refusal = line.chars().take(200).collect();
                    refusal_us = t.elapsed().as_secs_f64() * 1e6;
                    let mut rest = [0u8; 256];
                    closed_after_refusal = matches!((&s).read(&mut rest), Ok(0) | Err(_));
                    outcome = "refused".into();
                    break;
                }
            }
            Ok(Got::Idle) => {
                outcome = format!("no answer within 5 s after {i} connections");
                break;
            }
            Err(e) => {
                outcome = format!("connection {i}: {e} before any answer");
                refusal_us = t.elapsed().as_secs_f64() * 1e6;
                break;
            }
        }
        let _ = s.set_nonblocking(true);
        conns.push(Some(s));
        if !unlisted && i % 16 == 15 {
            sweep(&mut conns, &mut dropped, &mut bytes);
        }
        if i % 500 == 499 {
            samples.push_str(&format!("{}:{}:{} ", i + 1, rss_kb(pid), threads(pid)));
        }
    }
    let accepted = conns.len();
    if !unlisted {
        sweep(&mut conns, &mut dropped, &mut bytes);
    }
    thread::sleep(Duration::from_millis(300));
    let rss = rss_kb(pid);
    let thr = threads(pid);
    let secs = t0.elapsed().as_secs_f64();
    // More newcomers while full: is the refusal the same every time?
    let mut again = Vec::new();
    if outcome == "refused" {
        for _ in 0..3 {
            let t = Instant::now();
            let r = connect(addr).and_then(|s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut lb = LineBuf::new();
                match lb.next(&s, &mut |_| {})? {
                    Got::Line(a, b) => Ok(lb.text((a, b)).chars().take(80).collect::<String>()),
                    Got::Idle => Ok("(nothing within 2 s)".into()),
                }
            });
            again.push(format!(
                "{:.0}us {}",
                t.elapsed().as_secs_f64() * 1e6,
                r.unwrap_or_else(|e| e.to_string())
            ));
        }
    }
    let alive_end = alive(pid);
    drop(conns);
    drop(listeners);
    Json::new()
        .int("accepted", accepted as i64)
        .str("outcome", &outcome)
        .str("refusal", &refusal)
        .bool("closed_after_refusal", closed_after_refusal)
        .num("refusal_us", refusal_us)
        .str("again", &again.join(" | "))
        .int("rss0_kb", rss0 as i64)
        .int("rss_kb", rss as i64)
        .num(
            "rss_per_conn_kb",
            (rss as f64 - rss0 as f64) / accepted.max(1) as f64,
        )
        .int("threads0", thr0 as i64)
        .int("threads", thr as i64)
        .int("dropped_by_server", dropped as i64)
        .int("bytes_read", bytes as i64)
        .num("secs", secs)
        .bool("server_alive", alive_end)
        .str("samples", samples.trim())
}
