//! `bench_driver fanout`: the time a chat line takes from the sender's input to the last
//! of N receivers (p50, p99), and the CPU and context switches it costs, beside the
//! floor, libp2p and the overlay, taking turns line by line so that all of them see the
//! same machine. Also the footprint at rest, the bytes on the loopback per line, bursts
//! (throughput and losses) and the time one more servant takes to join, beside the time
//! a floor receiver takes to start.

use crate::bench_common::*;
use crate::contenders::{
    floor_system, genp2p_linked, genp2p_system, libp2p_system, start_servant, Links,
};
use crate::harness::{start_manager, start_port_printer, wait_for_line, Ctx, Res};
use crate::system::System;
use std::fs;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

pub fn fanout(ctx: &Ctx, args: &[String]) -> Res<()> {
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
                footprint("footprint-overlay", n, ready, o)
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
                footprint("footprint-libp2p", n, ready, l)
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
            bytes_per_line(ctx, n, [&mut g, o])?;
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
            ctx.emit(burst_log(ctx, n, stub, receivers));
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

/// Bytes on the loopback per line per receiving servant, full mesh and overlay, each on
/// its own (TCP/IP headers and the heartbeats of the moment included).
fn bytes_per_line(ctx: &Ctx, n: usize, systems: [&mut System; 2]) -> Res<()> {
    for sys in systems {
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
    Ok(())
}

/// The sender's warnings during the bursts (receivers not taking messages, oldest
/// dropped) and the receivers' (numbers of the sender's that never arrived).
fn burst_log(ctx: &Ctx, n: usize, stub: bool, receivers: &str) -> Json {
    let tag = if stub {
        format!("n{n}-stub")
    } else {
        format!("n{n}")
    };
    let log = fs::read_to_string(ctx.out.join("logs").join(format!("servant-{tag}-0.log")))
        .unwrap_or_default();
    Json::new()
        .str("test", "burst-log")
        .int("n", n as i64)
        .str("receivers", receivers)
        .int(
            "not_taking_warnings",
            (log.matches("is not taking messages").count()
                + log.matches("dropped its oldest").count()) as i64,
        )
        .int("receiver_gap_warnings", {
            // Receivers that noticed numbers missing from the sender's sequence.
            (1..=n)
                .map(|i| {
                    fs::read_to_string(ctx.out.join("logs").join(format!("servant-{tag}-{i}.log")))
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
        )
}

/// The head of a baseline's footprint row: how long it took to be ready, its sender's
/// memory and threads.
fn footprint(test: &str, n: usize, ready: f64, sys: &System) -> Json {
    Json::new()
        .str("test", test)
        .int("n", n as i64)
        .num("ready_s", ready)
        .int("sender_rss_kb", rss_kb(sys.pids[0]) as i64)
        .int("sender_threads", threads(sys.pids[0]) as i64)
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
