//! `bench_driver sizes`: the size on disk of the release binaries (servant,
//! connection-manager) beside the floors' (fanout_floor, echo_floor).

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
            .int("echo_floor", size(ctx.ex.join("echo_floor"))),
    );
    Ok(())
}
