//! `bench_driver storm`: a join storm at the connection manager (`loadgen storm`): N
//! clients join at once, the time until every one holds the whole list, then a tenth of
//! them leave and the time until the others are told, with bytes and CPU per join; beside
//! the echo floor, where the same clients only wait for their line to come back.

use crate::bench_common::*;
use crate::harness::{emit_raw, loadgen, start_manager, start_port_printer, Ctx, Res};
use std::thread;
use std::time::Duration;

pub fn storm(ctx: &Ctx, args: &[String]) -> Res<()> {
    let ns = arg_list(args, "--ns", "100,1000");
    let runs: usize = arg(args, "--runs", 3);
    for &n in &ns {
        for r in 0..runs {
            let leave = (n / 10).max(1);
            let (mgr, maddr) = start_manager(ctx, &format!("storm-{n}-{r}"), 4000)?;
            let leave = leave.to_string();
            let addr = maddr.to_string();
            storm_row(ctx, "genp2p", r, &addr, n, &["--leave", &leave], mgr.pid())?;
            drop(mgr);
            let (echo, eport, _ein) = start_port_printer(
                ctx,
                "echo_floor",
                &[],
                &format!("echo-floor-storm-{n}-{r}.log"),
            )?;
            let addr = format!("127.0.0.1:{eport}");
            storm_row(ctx, "echo-floor", r, &addr, n, &["--echo"], echo.pid())?;
            drop(echo);
            thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

/// One `loadgen storm` of `n` clients against `addr` (`how`: whether some leave or
/// they only want an echo), the CPU time of `pid`: the row of `system`'s run `run`.
fn storm_row(
    ctx: &Ctx,
    system: &str,
    run: usize,
    addr: &str,
    n: usize,
    how: &[&str],
    pid: u32,
) -> Res<()> {
    let (n, pid) = (n.to_string(), pid.to_string());
    let mut args = vec!["storm", "--addr", addr, "--n", &n];
    args.extend(how);
    args.extend(["--pid", &pid, "--phase-secs", "30"]);
    let raw = loadgen(ctx, &args)?;
    emit_raw(
        ctx,
        Json::new()
            .str("test", "storm")
            .str("system", system)
            .int("run", run as i64),
        &raw,
    );
    Ok(())
}
