//! One system under test in the fan-out benchmark, as the driver sees it: a sender fed
//! through its standard input and N receivers whose output a thread each reads
//! (`reader`), and the three measures taken of it: `warm` (until every receiver hears),
//! `sample` (from the write to the last and the first receiver: the fan-out latency) and
//! `burst` (throughput, lines lost or doubled, CPU per delivery). genp2p and each of its
//! baselines are the same `System`, so their figures compare.

use crate::bench_common::*;
use crate::harness::{Proc, Res};
use std::io::{self, BufRead, BufReader, Write};
use std::process::ChildStdin;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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
pub struct RxShared {
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
pub struct System {
    pub name: &'static str,
    input: ChildStdin,
    pub rx: Vec<Arc<RxShared>>,
    events: Receiver<Arrival>,
    /// Every process of the system (for CPU time), sender first.
    pub pids: Vec<u32>,
    next: u64,
    warm_next: i64,
    /// Samples in a row that did not reach every receiver: past 10, the system is broken.
    misses_in_a_row: u32,
    _procs: Vec<Proc>,
    _stdins: Vec<ChildStdin>,
}

/// The processes of a system while it is started: each receiver's output read by a
/// `reader`, its standard input held open (closing it ends the receiver).
#[derive(Default)]
pub struct Crew {
    procs: Vec<Proc>,
    stdins: Vec<ChildStdin>,
    rx: Vec<Arc<RxShared>>,
    pids: Vec<u32>,
}

impl Crew {
    /// The sender (its stdin already taken), placed first; its output, if piped, is read
    /// only for the `PORT N` line it may print (to `port_tx`) and otherwise drained.
    pub fn sender(&mut self, mut p: Proc, port_tx: Option<Sender<(usize, u16)>>) {
        if let Some(out) = p.child.stdout.take() {
            reader(
                usize::MAX,
                out,
                Arc::new(RxShared::default()),
                mpsc::channel().0,
                port_tx,
            );
        }
        self.pids.insert(0, p.pid());
        self.procs.insert(0, p);
    }

    /// Receiver `idx`: its arrivals go to `events`, its `PORT N` line (if it prints one)
    /// to `port_tx`.
    pub fn receiver(
        &mut self,
        idx: usize,
        mut p: Proc,
        events: &Sender<Arrival>,
        port_tx: Option<Sender<(usize, u16)>>,
    ) {
        self.stdins.push(p.child.stdin.take().unwrap());
        let shared = Arc::new(RxShared::default());
        shared.warm_last.store(-1, Ordering::SeqCst);
        reader(
            idx,
            p.child.stdout.take().unwrap(),
            Arc::clone(&shared),
            events.clone(),
            port_tx,
        );
        self.rx.push(shared);
        self.pids.push(p.pid());
        self.procs.push(p);
    }

    /// A process of the system not started here (its manager), counted in its CPU time.
    pub fn count_too(&mut self, pid: u32) {
        self.pids.push(pid);
    }

    pub fn system(
        self,
        name: &'static str,
        input: ChildStdin,
        events: Receiver<Arrival>,
    ) -> System {
        System {
            name,
            input,
            rx: self.rx,
            events,
            pids: self.pids,
            next: 0,
            warm_next: 0,
            misses_in_a_row: 0,
            _procs: self.procs,
            _stdins: self.stdins,
        }
    }
}

impl System {
    pub fn send(&mut self, line: &str) -> Res<()> {
        self.input
            .write_all(line.as_bytes())
            .map_err(|e| format!("{}: writing to the sender's stdin: {e}", self.name))
    }

    fn cpu_ticks(&self) -> u64 {
        self.pids.iter().filter_map(|&p| cpu_ticks(p)).sum()
    }

    pub fn warm(&mut self, limit: Duration) -> Res<f64> {
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
    pub fn sample(&mut self) -> Res<Result<(f64, f64), usize>> {
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
    pub fn burst(&mut self, run: u64, msgs: usize, tck: f64) -> Res<Json> {
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
