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
//! It holds a key of its own (for this run), registers by signing the manager's challenge,
//! runs the listener's side of the handshake on each connection and checks each line's
//! (or block's) tag, as a servant does for lines from their author's own connection.
//!
//! `servant_stub --manager 127.0.0.1:PORT --name NAME`. Ends at end of standard input or
//! after `BENCH_MAX_SECS` (default 1200).

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use genp2p::handshake::Answered;
use genp2p::identity::Identity;
use genp2p::protocol::{listen_proof, split_tag, ManagerMessage, MsgRef, PeerLine};

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

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn run(manager: &str, name: &str) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let me = Arc::new(Identity::ephemeral().map_err(invalid)?);
    bench_common::exit_at_end_of_input();
    let m = TcpStream::connect(manager)?;
    m.set_nodelay(true)?;
    let listening = format!("listening {port} {} {name} {}", me.id, me.key.hex());
    (&m).write_all(format!("{listening}\n").as_bytes())?;
    let mut answers = BufReader::new(m.try_clone()?);
    let mut line = String::new();
    let nonce = loop {
        line.clear();
        if answers.read_line(&mut line)? == 0 {
            return Err(invalid("the manager closed the connection"));
        }
        if let Ok(ManagerMessage::Challenge { nonce }) = ManagerMessage::parse(line.trim_end()) {
            break nonce;
        }
    };
    let sig = me.sign(&listen_proof(&nonce, &listening));
    (&m).write_all(format!("prove {}\n", genp2p::encoding::hex(&sig)).as_bytes())?;
    // Drain the manager's answers and pushes; beat every 20 s so it keeps us listed.
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(answers.read(&mut buf), Ok(n) if n > 0) {}
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
        let me = Arc::clone(&me);
        thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let _ = receive(stream, &me);
        });
    }
    Ok(())
}

/// One sending connection: the listener's half of the handshake, then each tagged `MSG`
/// printed as `<name> text`.
fn receive(stream: TcpStream, me: &Identity) -> io::Result<()> {
    let w = stream.try_clone()?;
    let mut lines = BufReader::new(stream).lines();
    let mut next = || lines.next().unwrap_or_else(|| Err(invalid("closed")));
    let first = next()?;
    let Some(Ok(PeerLine::Hello(hello))) = PeerLine::parse(&first) else {
        return Ok(());
    };
    let (answered, welcome) = Answered::new(me, &first, &hello, None).map_err(invalid)?;
    (&w).write_all(welcome.as_bytes())?;
    let Some(Ok(PeerLine::Proof(proof))) = PeerLine::parse(&next()?) else {
        return Ok(());
    };
    let link = answered.finish(&proof, None).map_err(invalid)?;
    (&w).write_all(b"READY 0\n")?;
    let show = |line: &str| {
        let Some(Ok(m)) = MsgRef::parse(line) else {
            return;
        };
        let mut out = io::stdout().lock();
        if out
            .write_all(format!("<{}> {}\n", m.name, m.text).as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            std::process::exit(0);
        }
    };
    loop {
        let line = next()?;
        // Lines written together come as `BLOCK TAG COUNT` and the lines, one tag for all.
        if let Some(header) = line.strip_prefix("BLOCK ") {
            let Some((tag, count)) = header.split_once(' ') else {
                continue;
            };
            let (Ok(tag), Ok(count)) = (
                genp2p::encoding::parse_hex::<16>(tag),
                count.parse::<usize>(),
            ) else {
                continue;
            };
            let mut block = String::new();
            for _ in 0..count.min(64) {
                block.push_str(&next()?);
                block.push('\n');
            }
            if link.tags.checks_block(&tag, block.as_bytes()) {
                block.lines().for_each(show);
            }
            continue;
        }
        let Some((tag, line)) = split_tag(&line) else {
            continue;
        };
        if link.tags.checks(&tag, line.as_bytes()) {
            show(line);
        }
    }
}
