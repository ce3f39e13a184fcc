//! Load generator for the connection manager (`make bench`): clients that speak the
//! servant's side of the manager protocol, without being servants. Prints one JSON line.
//!
//! - `loadgen rtt --addr A --clients 50 --listed 50 --secs 3 [--pid P] [--line L]`:
//!   registers `listed` fake servants (`listening PORT ID NAME KEY`, each with a key of
//!   its own that signs the manager's challenge; they drain their pushes),
//!   then `clients` connections each send `L` (default `needs peer list`) and wait for
//!   one line back, over and over, for `secs`. Round trips/s, p50/p99, server CPU.
//! - `loadgen storm --addr A --n 1000 --leave 100 [--echo]`: `n` clients join at once;
//!   time until every one holds the whole list; then `leave` of them say `bye`; time until
//!   every remaining one has been told. Bytes received per join and per leave. With
//!   `--echo`, against a line echo server: time until every client got its line back.
//! - `loadgen capacity --addr A --max M [--unlisted] [--pid P]`: connects clients one
//!   after another until the server refuses one (or `max`); RSS and threads of P.
//!
//! Every loop is bounded by a count and by `--limit-secs` (default 120).
//!
//! Each load is a module of its own under `loadgen/`, on the protocol's client side in
//! `loadgen/client.rs`; this file reads the subcommand and prints the result.

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "loadgen/capacity.rs"]
mod capacity;
#[path = "loadgen/client.rs"]
mod client;
#[path = "loadgen/rtt.rs"]
mod rtt;
#[path = "loadgen/storm.rs"]
mod storm;

use bench_common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: u64 = arg(&args, "--limit-secs", 120);
    dead_man(Duration::from_secs(limit + 5), "loadgen");
    let addr: SocketAddr = match arg_str(&args, "--addr", "").parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("loadgen: --addr IP:PORT is required");
            std::process::exit(2);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(limit);
    let out = match args.first().map(String::as_str) {
        Some("rtt") => rtt::rtt(&args, addr, deadline),
        Some("storm") => storm::storm(&args, addr, deadline),
        Some("capacity") => capacity::capacity(&args, addr, deadline),
        _ => {
            eprintln!("usage: loadgen rtt|storm|capacity --addr IP:PORT ...");
            std::process::exit(2);
        }
    };
    println!("{}", out.finish());
}
