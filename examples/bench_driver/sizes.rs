//! `bench_driver sizes`: the size on disk of the release binaries (servant,
//! connection-manager) beside the floors' (fanout_floor, echo_floor), and how many crates
//! the normal dependency tree holds (`cargo tree -e normal`, genp2p itself not counted).

use crate::bench_common::*;
use crate::harness::{Ctx, Res};
use std::fs;
use std::path::PathBuf;

pub fn sizes(ctx: &Ctx) -> Res<()> {
    let size = |p: PathBuf| fs::metadata(&p).map(|m| m.len() as i64).unwrap_or(-1);
    ctx.emit(
        Json::new()
            .str("test", "sizes")
            .int("servant", size(ctx.bin.join("servant")))
            .int(
                "connection_manager",
                size(ctx.bin.join("connection-manager")),
            )
            .int("fanout_floor", size(ctx.ex.join("fanout_floor")))
            .int("echo_floor", size(ctx.ex.join("echo_floor")))
            .int("dependencies", dependencies()),
    );
    Ok(())
}

/// Crates in the normal dependency tree, each once, genp2p not counted; -1 when `cargo
/// tree` cannot run here.
fn dependencies() -> i64 {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["tree", "-e", "normal", "--prefix", "none", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            // "name vX.Y.Z (path) (*)": a crate is its name and version.
            let crates: std::collections::BTreeSet<(&str, &str)> = text
                .lines()
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    Some((words.next()?, words.next()?))
                })
                .filter(|(name, _)| *name != "genp2p")
                .collect();
            crates.len() as i64
        }
        _ => -1,
    }
}
