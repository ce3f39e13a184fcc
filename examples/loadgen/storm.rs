//! `loadgen storm`: N clients join the connection manager at once; the time until every
//! one holds the whole list, then the time until the others are told that some left,
//! with the bytes, reads and server CPU each costs and the kernel's listen overflows.
//! With `--echo`, against a line echo server: the time until every client got its line
//! back, the least a join can take.

use crate::bench_common::*;
use crate::client::{connect, listen_port, Got, LineBuf, Registration};
use std::collections::HashSet;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

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

pub fn storm(args: &[String], addr: SocketAddr, deadline: Instant) -> Json {
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
