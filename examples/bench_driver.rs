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
//! bench_driver ready    --out DIR [--gib N]
//! bench_driver transfer --out DIR --mib 1024 --runs 3 [--resume-runs 3]
//! ```
//!
//! Every process it starts is killed when it is done with it, and by a dead-man timer
//! (`--limit-secs`, default 900) if the driver itself overruns; servants and floor
//! processes also end when the driver's end of their standard input closes.
//!
//! Each benchmark is a module of its own under `bench_driver/`, on the process plumbing
//! of `harness.rs`; this file only reads the subcommand and hands over.

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "bench_driver/capacity.rs"]
mod capacity;
#[path = "bench_driver/contenders.rs"]
mod contenders;
#[path = "bench_driver/fanout.rs"]
mod fanout;
#[path = "bench_driver/harness.rs"]
mod harness;
#[path = "bench_driver/manager.rs"]
mod manager;
#[path = "bench_driver/ready.rs"]
mod ready;
#[path = "bench_driver/sizes.rs"]
mod sizes;
#[path = "bench_driver/storm.rs"]
mod storm;
#[path = "bench_driver/system.rs"]
mod system;
#[path = "bench_driver/transfer.rs"]
mod transfer;

use bench_common::*;
use harness::Ctx;
use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: u64 = arg(&args, "--limit-secs", 900);
    harness::stop_all_after(Duration::from_secs(limit));
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
        Some("fanout") => fanout::fanout(&ctx, &args),
        Some("manager") => manager::manager_rtt(&ctx, &args),
        Some("storm") => storm::storm(&ctx, &args),
        Some("capacity") => capacity::capacity(&ctx, &args),
        Some("sizes") => sizes::sizes(&ctx),
        Some("ready") => ready::ready(&ctx, &args),
        Some("transfer") => transfer::transfer(&ctx, &args),
        _ => Err(
            "usage: bench_driver fanout|manager|storm|capacity|sizes|ready|transfer --out DIR ..."
                .into(),
        ),
    };
    if let Err(e) = r {
        eprintln!("bench_driver: {e}");
        ctx.emit(Json::new().str("test", "error").str("what", &e));
        std::process::exit(1);
    }
}
