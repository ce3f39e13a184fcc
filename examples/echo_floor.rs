//! The manager's floor for `make bench`: a thread-per-connection line echo server on
//! 127.0.0.1 (port chosen by the OS, printed first as `PORT N`). Each line read is written
//! back in one `write` (TCP_NODELAY). Ends at end of standard input or after
//! `BENCH_MAX_SECS` (default 1200); connections beyond `--max N` (default 15000) are
//! closed at once, and a failed thread spawn closes that connection instead of aborting.

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn main() -> io::Result<()> {
    bench_common::dead_man_from_env("echo_floor");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let max: usize = bench_common::arg(&args, "--max", 15000);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    bench_common::announce(&listener)?;
    let live = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if live.load(Ordering::Relaxed) >= max {
            continue; // dropped: closed
        }
        live.fetch_add(1, Ordering::Relaxed);
        let l2 = Arc::clone(&live);
        let spawned = thread::Builder::new().spawn(move || {
            let _ = stream.set_nodelay(true);
            if let Ok(r) = stream.try_clone() {
                let mut reader = BufReader::new(r);
                let mut line = Vec::with_capacity(256);
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if (&stream).write_all(&line).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            l2.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::Relaxed);
        }
    }
    Ok(())
}
