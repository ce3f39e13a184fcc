//! `bench_driver manager`: round trips a second at the connection manager and their
//! latency (`loadgen rtt`: `needs peer list` over 50 connections while 50 servants are
//! listed), beside the echo floor (a line echo server with a thread per connection: the
//! least a round trip costs) and opentracker driven by wrk (a tracker answering the same
//! question over HTTP), the three taking turns run by run.

use crate::bench_common::*;
use crate::harness::{emit_raw, loadgen, start, start_manager, start_port_printer, Ctx, Proc, Res};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

pub fn manager_rtt(ctx: &Ctx, args: &[String]) -> Res<()> {
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
    // `loadgen rtt` against `addr` with `listed` fake servants, the CPU time of `pid`.
    let rtt = |addr: &str, listed: usize, pid: u32| {
        let (clients, listed, secs, pid) = (
            clients.to_string(),
            listed.to_string(),
            secs.to_string(),
            pid.to_string(),
        );
        loadgen(
            ctx,
            &[
                "rtt",
                "--addr",
                addr,
                "--clients",
                &clients,
                "--listed",
                &listed,
                "--secs",
                &secs,
                "--pid",
                &pid,
            ],
        )
    };
    let systems = ["genp2p", "echo-floor", "opentracker"];
    for r in 0..runs {
        for k in 0..3 {
            let sys = systems[(k + r) % 3];
            let head = Json::new()
                .str("test", "manager")
                .str("system", sys)
                .int("run", r as i64);
            match sys {
                "genp2p" => emit_raw(ctx, head, &rtt(&maddr.to_string(), listed, mgr.pid())?),
                "echo-floor" => emit_raw(
                    ctx,
                    head,
                    &rtt(&format!("127.0.0.1:{eport}"), 0, echo.pid())?,
                ),
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
