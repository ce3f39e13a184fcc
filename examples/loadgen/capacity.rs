//! `loadgen capacity`: clients connect one after another, listed or only asking for the
//! list, until the server refuses one (or `--max`): how many it held, what its refusal
//! said and cost, and its memory and threads along the way.

use crate::bench_common::*;
use crate::client::{connect, listen_port, Got, LineBuf, Registration};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

pub fn capacity(args: &[String], addr: SocketAddr, deadline: Instant) -> Json {
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
