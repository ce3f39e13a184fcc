//! `Fake`, a hand-written servant with a key of its own for the attack tests: listed by
//! the manager, it receives real servants' signed lines (so it holds genuine lines to
//! replay or alter) and can be chosen as a relay (so it can try to rewrite what it
//! carries).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::*;
use genp2p::handshake::{Answered, Mode};
use genp2p::protocol::{split_tag, MsgRef, PeerLine};

/// A hand-written servant: listed, heartbeating, and answering handshakes honestly.
pub struct Fake {
    pub me: Arc<Identity>,
    pub port: u16,
    /// Untagged lines received on sending connections, in order.
    pub received: Arc<Mutex<Vec<String>>>,
    /// Relay connections that have said `END`: written to by the test.
    pub pullers: Arc<Mutex<Vec<TcpStream>>>,
    pub stop: Arc<AtomicBool>,
    pub manager: TcpStream,
}

impl Fake {
    pub fn start(manager_port: u16, name: &str) -> Fake {
        Fake::start_at(std::net::Ipv4Addr::LOCALHOST, manager_port, name)
    }

    /// A fake servant at loopback address `at`: it listens there and registers from there.
    pub fn start_at(at: std::net::Ipv4Addr, manager_port: u16, name: &str) -> Fake {
        Fake::start_with(at, manager_port, name, false)
    }

    /// A fake servant that answers every sending connection with hostile `SAID`s (see
    /// `lie_in_said`).
    pub fn start_lying(manager_port: u16, name: &str) -> Fake {
        Fake::start_with(std::net::Ipv4Addr::LOCALHOST, manager_port, name, true)
    }

    pub fn start_with(at: std::net::Ipv4Addr, manager_port: u16, name: &str, lies: bool) -> Fake {
        let me = Arc::new(new_identity());
        let listener = TcpListener::bind((at, 0)).expect("bind a loopback address");
        let port = listener.local_addr().expect("local address").port();
        let (received, pullers, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        {
            let (me, received, pullers, stop) =
                (me.clone(), received.clone(), pullers.clone(), stop.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (me, received, pullers) = (me.clone(), received.clone(), pullers.clone());
                    thread::spawn(move || serve(conn, &me, &received, &pullers, lies));
                }
            });
        }
        let mut m = Raw::connect_from(at, manager_port);
        register_with(&mut m, &me, port, name);
        let manager = m.stream.try_clone().expect("clone the manager connection");
        {
            let stop = stop.clone();
            thread::spawn(move || {
                // Heartbeats, and the manager's pushes drained.
                let mut s = m.stream;
                let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if s.write_all(b"needs peer list\n").is_err() {
                        return;
                    }
                    let _ = std::io::Read::read(&mut s, &mut buf);
                }
            });
        }
        Fake {
            me,
            port,
            received,
            pullers,
            stop,
            manager,
        }
    }

    /// Waits for the first received line that satisfies `pred`.
    pub fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(what, || {
            let got = self.received.lock().unwrap_or_else(|p| p.into_inner());
            got.iter().find(|l| pred(l)).cloned()
        })
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.manager.shutdown(Shutdown::Both);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for p in self
            .pullers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = p.shutdown(Shutdown::Both);
        }
    }
}

/// One connection to a `Fake`: the listener's handshake, then lines (a sending
/// connection) or the catch-up lines up to `END` (a relay connection).
pub fn serve(
    conn: TcpStream,
    me: &Identity,
    received: &Mutex<Vec<String>>,
    pullers: &Mutex<Vec<TcpStream>>,
    lies: bool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut w) = conn.try_clone() else { return };
    let mut lines = BufReader::new(conn).lines();
    let Some(Ok(first)) = lines.next() else {
        return;
    };
    let (mode, hello) = match PeerLine::parse(&first) {
        Some(Ok(PeerLine::Hello(h))) => (Mode::Send, h),
        Some(Ok(PeerLine::Pull(h))) => (Mode::Pull, h),
        _ => return,
    };
    let Ok((answered, welcome)) = Answered::new(me, &first, &hello, None) else {
        return;
    };
    if w.write_all(welcome.as_bytes()).is_err() {
        return;
    }
    let Some(Ok(proof)) = lines.next() else {
        return;
    };
    let Some(Ok(PeerLine::Proof(proof))) = PeerLine::parse(&proof) else {
        return;
    };
    let Ok(link) = answered.finish(&proof, None) else {
        return;
    };
    if w.write_all(b"READY 0\n").is_err() {
        return;
    }
    if lies && mode == Mode::Send {
        lie_in_said(&mut w, me, &link);
    }
    let mut claimed = 999;
    while let Some(Ok(line)) = lines.next() {
        // A liar answers every line (a `PING` too) with a larger number it never wrote.
        if lies && mode == Mode::Send {
            claimed += 1;
            let lie = format!("SAID {} {claimed}\n", me.incarnation);
            let _ = w.write_all(&link.tags.tagged(&lie));
        }
        match mode {
            // Several lines under one tag: `BLOCK TAG COUNT`, then the lines.
            Mode::Send if line.starts_with("BLOCK ") => {
                let w: Vec<&str> = line.split(' ').collect();
                let (Some(tag), Some(Ok(count))) = (w.get(1), w.get(2).map(|c| c.parse::<usize>()))
                else {
                    return;
                };
                let mut block = String::new();
                for _ in 0..count {
                    let Some(Ok(l)) = lines.next() else { return };
                    block.push_str(&l);
                    block.push('\n');
                }
                if genp2p::encoding::hex(&link.tags.block(block.as_bytes())) == *tag {
                    let mut got = received.lock().unwrap_or_else(|p| p.into_inner());
                    got.extend(block.lines().map(str::to_owned));
                }
            }
            Mode::Send => {
                if let Some((tag, rest)) = split_tag(&line) {
                    if link.tags.checks(&tag, rest.as_bytes()) {
                        received
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(rest.to_owned());
                    }
                }
            }
            Mode::Pull if line == "END" => {
                pullers.lock().unwrap_or_else(|p| p.into_inner()).push(w);
                return;
            }
            Mode::Pull => {}
            // This listener never took a LINK (see the parse above).
            Mode::Link(_) => return,
        }
    }
}

/// What a hostile listener writes back to a sender at once: a correctly tagged lie (that
/// it wrote 999 lines, none of which it ever sent anyone), a `SAID` under a wrong tag,
/// 300 KB without a line end, 10,000 lines of junk. Then it lies on (see `serve`).
pub fn lie_in_said(w: &mut TcpStream, me: &Identity, link: &genp2p::handshake::Link) {
    let inc = me.incarnation;
    let _ = w.write_all(&link.tags.tagged(&format!("SAID {inc} 999\n")));
    let forged = format!("{} SAID {inc} 1999\n", "0".repeat(32));
    let _ = w.write_all(forged.as_bytes());
    let _ = w.write_all(&vec![b'x'; 300_000]);
    let _ = w.write_all("junk\n".repeat(10_000).as_bytes());
}

/// A line rewritten: the same `MSG` with other text.
pub fn with_text(line: &str, text: &str) -> String {
    let m = MsgRef::parse(line)
        .expect("a MSG line")
        .expect("a valid MSG");
    let cut = line.len() - m.text.len();
    format!("{}{text}", &line[..cut])
}
