//! The fan-out floor for `make bench`: the raw-TCP fan-out a person would write in ten
//! minutes, naive on purpose.
//!
//! - `fanout_floor recv`: listens on 127.0.0.1 (a port the OS chooses, printed first as
//!   `PORT N`), and prints every line received, flushing after each one.
//! - `fanout_floor send PORT...`: connects once to every port (TCP_NODELAY), then for each
//!   line read from standard input writes it to every connection, one `write` per line
//!   per connection, from one thread.
//!
//! Both end at end of standard input (the driver holds the pipe, so they die with it) and
//! after a time limit (`BENCH_MAX_SECS`, default 1200).

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

fn main() {
    bench_common::dead_man_from_env("fanout_floor");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("recv") => recv(),
        Some("send") => send(&args[1..]),
        _ => {
            eprintln!("usage: fanout_floor recv | fanout_floor send PORT...");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("fanout_floor: {e}");
        std::process::exit(1);
    }
}

fn recv() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    bench_common::announce(&listener)?;
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let reader = BufReader::new(stream);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let mut out = io::stdout().lock();
                // Naive: one flush per printed line.
                if out
                    .write_all(line.as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    std::process::exit(0);
                }
            }
        });
    }
    Ok(())
}

fn send(ports: &[String]) -> io::Result<()> {
    let mut conns = Vec::with_capacity(ports.len());
    for p in ports {
        let port: u16 = p
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {p}")))?;
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    eprintln!("READY {} connections", conns.len());
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        for c in &mut conns {
            // One write per line per connection.
            c.write_all(&line)?;
        }
    }
}
