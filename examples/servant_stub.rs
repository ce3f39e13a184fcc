//! A receiving stub for `make bench`: speaks just enough of the servant protocol to be
//! listed by the connection manager and to receive chat from real servants, and prints
//! each message as a servant does (`<name> text`), flushing after each line like the
//! fan-out floor's receiver.
//!
//! Why it exists: a real servant runs two threads per peer, so a network of N servants on
//! one machine needs about 2·N² threads. At N = 200 that is ~80,000 threads, beyond this
//! machine's pid_max (32,768). For N = 200 the bench therefore runs one real servant (the
//! sender) and N stubs; the stub costs what the floor's receiver costs, so the figure is
//! the real servant's fan-out beside the floor's.
//!
//! `servant_stub --manager 127.0.0.1:PORT --name NAME`. Ends at end of standard input or
//! after `BENCH_MAX_SECS` (default 1200).

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

fn main() {
    bench_common::dead_man_from_env("servant_stub");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let manager = bench_common::arg_str(&args, "--manager", "127.0.0.1:8585");
    let name = bench_common::arg_str(&args, "--name", "stub");
    if let Err(e) = run(&manager, &name) {
        eprintln!("servant_stub: {e}");
        std::process::exit(1);
    }
}

fn run(manager: &str, name: &str) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let id = format!("stub-{}-{port}", std::process::id());
    bench_common::exit_at_end_of_input();
    let m = TcpStream::connect(manager)?;
    m.set_nodelay(true)?;
    (&m).write_all(format!("listening {port} {id} {name}\n").as_bytes())?;
    // Drain the manager's answers and pushes; beat every 20 s so it keeps us listed.
    let mr = m.try_clone()?;
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!((&mr).read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    thread::spawn(move || loop {
        thread::sleep(Duration::from_secs(20));
        if (&m).write_all(b"needs peer list since 0\n").is_err() {
            return;
        }
    });
    for stream in listener.incoming() {
        let stream = stream?;
        let id = id.clone();
        thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let Ok(w) = stream.try_clone() else { return };
            let mut lines = BufReader::new(stream).lines();
            match lines.next() {
                Some(Ok(l)) if l.starts_with("HELLO ") => {
                    if (&w)
                        .write_all(format!("WELCOME {id} 0\n").as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
                _ => return,
            }
            for line in lines {
                let Ok(line) = line else { break };
                // MSG ORIGIN SEQ NAME TEXT
                let mut parts = line.splitn(5, ' ');
                if parts.next() != Some("MSG") {
                    continue;
                }
                let (_, _, Some(from), Some(text)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let mut out = io::stdout().lock();
                if out
                    .write_all(format!("<{from}> {text}\n").as_bytes())
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
