//! `loadgen rtt`: round trips at the connection manager. Fake servants are listed first
//! (each signs the manager's challenge and drains what it pushes), then every client
//! writes its line and waits for the answer, over and over: round trips a second, their
//! p50 and p99, and the server's CPU time per request.

use crate::bench_common::*;
use crate::client::{connect, listen_port, Got, LineBuf, Registration};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

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

pub fn rtt(args: &[String], addr: SocketAddr, deadline: Instant) -> Json {
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
