//! `bench_driver capacity`: how many connections the connection manager holds up to its
//! `<maxconnections>` and what each costs in memory and threads (`loadgen capacity`),
//! beside the echo floor holding as many; then listed servants for `--listed-secs`; and
//! with `--stress`, a cap beyond what threads and descriptors allow, to see whether the
//! manager refuses, hangs or aborts.

use crate::bench_common::*;
use crate::harness::{emit_raw, loadgen, start_manager_with, start_port_printer, Ctx, Res};
use std::fs;
use std::thread;
use std::time::Duration;

pub fn capacity(ctx: &Ctx, args: &[String]) -> Res<()> {
    let max: usize = arg(args, "--max", 4000);
    let listed_secs: u64 = arg(args, "--listed-secs", 60);
    let stress: usize = arg(args, "--stress", 0);
    // Connections up to the configured cap: clients that ask for the list, not listed.
    let (mgr, maddr) = start_manager_with(ctx, "capacity", max, 3600)?;
    let raw = hold(ctx, &maddr.to_string(), max + 10, true, mgr.pid(), 120)?;
    emit_raw(ctx, row("genp2p", "connected", max), &raw);
    drop(mgr);
    // The floor: a thread-per-connection echo server holding as many.
    let (echo, eport, _ein) = start_port_printer(
        ctx,
        "echo_floor",
        &["--max", &max.to_string()],
        "echo-floor-capacity.log",
    )?;
    let raw = hold(
        ctx,
        &format!("127.0.0.1:{eport}"),
        max,
        true,
        echo.pid(),
        120,
    )?;
    emit_raw(ctx, row("echo-floor", "connected", max), &raw);
    drop(echo);
    thread::sleep(Duration::from_millis(500));
    // Listed servants (each join told to all the others), for a bounded time.
    if listed_secs > 0 {
        let (mgr, maddr) = start_manager_with(ctx, "capacity-listed", max, 3600)?;
        let addr = maddr.to_string();
        let raw = hold(ctx, &addr, max + 10, false, mgr.pid(), listed_secs)?;
        emit_raw(
            ctx,
            row("genp2p", "listed", max).int("limit_secs", listed_secs as i64),
            &raw,
        );
        drop(mgr);
        thread::sleep(Duration::from_millis(500));
    }
    if stress > 0 {
        // Beyond what threads and descriptors allow: a refusal, a hang, or an abort?
        let (mut mgr, maddr) = start_manager_with(ctx, "capacity-stress", stress, 3600)?;
        let raw = hold(ctx, &maddr.to_string(), stress, true, mgr.pid(), 120)?;
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

/// `loadgen capacity` against `addr`: clients one after another up to `max`, listed
/// servants unless `unlisted`, the memory and threads of `pid`, for `limit_secs` at most.
fn hold(
    ctx: &Ctx,
    addr: &str,
    max: usize,
    unlisted: bool,
    pid: u32,
    limit_secs: u64,
) -> Res<String> {
    let (max, pid, limit) = (max.to_string(), pid.to_string(), limit_secs.to_string());
    let mut args = vec!["capacity", "--addr", addr, "--max", &max];
    if unlisted {
        args.push("--unlisted");
    }
    args.extend(["--pid", &pid, "--limit-secs", &limit]);
    loadgen(ctx, &args)
}

/// The head of a capacity row: `system` holding `clients` (connected or listed) clients.
fn row(system: &str, clients: &str, max: usize) -> Json {
    Json::new()
        .str("test", "capacity")
        .str("system", system)
        .str("clients", clients)
        .int("maxconnections", max as i64)
}
