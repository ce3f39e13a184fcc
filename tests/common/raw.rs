//! Raw sockets that play a client or a servant by hand, the way `telnet` would: to send
//! what a real binary never would (forged, replayed, truncated lines) and read the answer.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::process::*;

/// What one attempt to read a line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Line(String),
    /// The other end closed (or reset) the connection.
    Closed,
    /// Nothing complete before the time-out.
    Nothing,
}

/// A plain TCP client on 127.0.0.1.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// A raw client on a connected socket, with the tests' write time-out.
    fn over(stream: TcpStream) -> Raw {
        stream
            .set_write_timeout(Some(WAIT))
            .expect("set a write time-out");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| fail(&format!("cannot connect to 127.0.0.1:{port}: {e}")));
        Raw::over(stream)
    }

    /// A client whose socket is bound to `from` (another 127.0.0.x address) before it
    /// connects to 127.0.0.1:`port`, so the other side sees it come from `from`.
    pub fn connect_from(from: std::net::Ipv4Addr, port: u16) -> Raw {
        use socket2::{Domain, Socket, Type};
        let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream: TcpStream = (|| -> io::Result<TcpStream> {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            s.bind(&std::net::SocketAddr::from((from, 0)).into())?;
            s.connect_timeout(&to.into(), WAIT)?;
            Ok(s.into())
        })()
        .unwrap_or_else(|e| fail(&format!("cannot connect from {from} to {to}: {e}")));
        Raw::over(stream)
    }

    /// The local port of this connection (what the other side sees it come from).
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().expect("local address").port()
    }

    /// Sends `line` and a newline.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            fail(&format!("raw client: cannot send: {e}"));
        }
    }

    /// Reads one line (without its `\n`, lossily decoded), waiting at most `timeout`.
    pub fn read_line(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Got::Line(String::from_utf8_lossy(&line).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Nothing;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set a read time-out");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Got::Closed,
            }
        }
    }

    /// Reads exactly `n` raw bytes (what follows a `DATA` line), failing the test if they
    /// do not all come within `WAIT`.
    pub fn expect_bytes(&mut self, n: usize, what: &str) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                fail(&format!(
                    "raw client: expected {n} bytes of {what}, got {} in {WAIT:?}",
                    self.buf.len()
                ));
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set a read time-out");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => fail(&format!(
                    "raw client: closed after {} of {n} bytes of {what}",
                    self.buf.len()
                )),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => fail(&format!("raw client: reading {what}: {e}")),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Reads one line, failing the test if none comes within `WAIT`.
    pub fn expect_line(&mut self, what: &str) -> String {
        match self.read_line(WAIT) {
            Got::Line(l) => l,
            other => fail(&format!("raw client: expected {what}, got {other:?}")),
        }
    }

    /// Reads lines until one satisfies `pred` (returned) or `WAIT` passes.
    pub fn expect_line_where(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_line(left) {
                Got::Line(l) if pred(&l) => return l,
                Got::Line(l) => skipped.push(l),
                other => fail(&format!(
                    "raw client: expected {what}, got {other:?} after {skipped:?}"
                )),
            }
        }
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Starts `bin` with a config file that does not exist: it must exit non-zero with one
/// error line that names the file and the reason.
pub fn assert_missing_config_is_one_error_line(role: &str, bin: &str, file: &str) {
    let dir = TestDir::new(&format!("{role}-missing-config"));
    let mut p = Proc::spawn(
        role,
        bin,
        &["--config".into(), file.into()],
        "info",
        &dir.path,
    );
    let status = p.wait_exit();
    assert!(!status.success(), "{}", dump());
    let err = p.stderr();
    assert_eq!(err.len(), 1, "a single error line\n{}", dump());
    assert!(
        log_message(&err[0]).starts_with(&format!("{file}: cannot read: ")),
        "names the file and the reason\n{}",
        dump()
    );
}

// ---------------------------------------------------------------------------------------
// Raw clients that hold a key: an honest servant written by hand (attacks start from it)
// ---------------------------------------------------------------------------------------

pub use genp2p::identity::Identity;

/// Registers a raw client with the manager as a servant listening on `port`: `listening`,
/// the manager's `<challenge>` signed with `me`, `prove`. Returns the `<peers>` line.
pub fn register_with(c: &mut Raw, me: &Identity, port: u16, name: &str) -> String {
    let listening = format!("listening {port} {} {name} {}", me.id, me.key.hex());
    c.send(&listening);
    let challenge = c.expect_line_where("the <challenge> answering `listening`", |l| {
        l.starts_with("<challenge ")
    });
    c.send(&prove_line(me, &challenge, &listening));
    c.expect_line_where("the <peers> answering `prove`", |l| {
        l.starts_with("<peers ")
    })
}

/// The `prove` line that answers `challenge` (a `<challenge nonce="..."/>` line) to the
/// `listening` line sent before it.
pub fn prove_line(me: &Identity, challenge: &str, listening: &str) -> String {
    let nonce = match genp2p::protocol::ManagerMessage::parse(challenge) {
        Ok(genp2p::protocol::ManagerMessage::Challenge { nonce }) => nonce,
        other => fail(&format!("not a challenge: {challenge:?} ({other:?})")),
    };
    let sig = me.sign(&genp2p::protocol::listen_proof(&nonce, listening));
    format!("prove {}", genp2p::encoding::hex(&sig))
}

/// A fresh key for a raw client.
pub fn new_identity() -> Identity {
    Identity::ephemeral().unwrap_or_else(|e| fail(&format!("no key: {e}")))
}

/// A hand-written servant's sending connection to a servant: the handshake done, lines
/// written with their tags.
pub struct RawPeer {
    pub raw: Raw,
    pub me: std::sync::Arc<Identity>,
    pub name: String,
    pub link: genp2p::handshake::Link,
    /// What the servant's `READY` said it has shown from us.
    pub last: u64,
}

impl RawPeer {
    /// Connects to the servant at `port` as `me`, named `name`, and runs the handshake.
    pub fn connect(port: u16, me: std::sync::Arc<Identity>, name: &str) -> RawPeer {
        let mut raw = Raw::connect(port);
        let (link, last) = raw_handshake(&mut raw, &me, name, genp2p::handshake::Mode::Send);
        RawPeer {
            raw,
            me,
            name: name.to_owned(),
            link,
            last,
        }
    }

    /// Our signed `MSG` line (without its `\n`) for `text` as number `seq`.
    pub fn msg(&self, seq: u64, text: &str) -> String {
        signed_msg(&self.me, self.me.incarnation, seq, &self.name, text)
    }

    /// Writes `line` with this connection's tag.
    pub fn send_tagged(&mut self, line: &str) {
        let tag = genp2p::encoding::hex(&self.link.tags.tag(line.as_bytes()));
        self.raw.send(&format!("{tag} {line}"));
    }

    /// Writes `lines` as one block under one tag (`BLOCK TAG COUNT`, then the lines).
    pub fn send_block(&mut self, lines: &[String]) {
        let mut block = String::new();
        for l in lines {
            block.push_str(l);
            block.push('\n');
        }
        let tag = genp2p::encoding::hex(&self.link.tags.block(block.as_bytes()));
        self.raw
            .send_bytes(format!("BLOCK {tag} {}\n{block}", lines.len()).as_bytes());
    }

    /// Checks that the servant wrote nothing back within `wait` but its tagged
    /// `SAID INC SEQ` lines (4.5), and returns the last SEQ they said.
    pub fn nothing_but_said(&mut self, wait: Duration) -> Option<u64> {
        let mut last = None;
        loop {
            match self.raw.read_line(wait) {
                Got::Nothing => return last,
                Got::Line(l) => {
                    let Some((tag, rest)) = genp2p::protocol::split_tag(&l) else {
                        fail(&format!("an untagged answer {l:?}\n{}", dump()))
                    };
                    assert!(
                        self.link.tags.checks(&tag, rest.as_bytes()),
                        "a SAID whose tag does not match: {l:?}"
                    );
                    match genp2p::protocol::PeerLine::parse(rest) {
                        Some(Ok(genp2p::protocol::PeerLine::Said { seq, .. })) => last = Some(seq),
                        _ => fail(&format!("answered {l:?}\n{}", dump())),
                    }
                }
                other => fail(&format!("answered {other:?}\n{}", dump())),
            }
        }
    }

    /// Writes message `seq` saying `text`, signed and tagged.
    pub fn say(&mut self, seq: u64, text: &str) {
        let line = self.msg(seq, text);
        self.send_tagged(&line);
    }
}

/// A `MSG` line (without its `\n`) signed by `me`.
pub fn signed_msg(me: &Identity, incarnation: u64, seq: u64, name: &str, text: &str) -> String {
    use genp2p::protocol::{msg_line, ChatMessage};
    let sig = me.sign(&ChatMessage::signed_bytes(
        &me.id,
        incarnation,
        seq,
        name,
        text,
    ));
    let line = msg_line(&me.id, incarnation, seq, name, &sig, None, text);
    line.trim_end_matches('\n').to_owned()
}

/// The opener's handshake over a raw connection; returns the link and READY's number.
pub fn raw_handshake(
    raw: &mut Raw,
    me: &Identity,
    name: &str,
    mode: genp2p::handshake::Mode,
) -> (genp2p::handshake::Link, u64) {
    use genp2p::protocol::PeerLine;
    let (opening, hello) = genp2p::handshake::Opening::new(me, name, mode)
        .unwrap_or_else(|e| fail(&format!("cannot open: {e}")));
    raw.send_bytes(hello.as_bytes());
    let welcome = raw.expect_line("WELCOME");
    let Some(Ok(PeerLine::Welcome(w))) = PeerLine::parse(&welcome) else {
        fail(&format!("expected WELCOME, got {welcome:?}"))
    };
    let (link, proof) = opening
        .finish(me, &w, None, None)
        .unwrap_or_else(|e| fail(&format!("the servant's WELCOME: {e}")));
    raw.send_bytes(proof.as_bytes());
    let ready = raw.expect_line("READY");
    let Some(Ok(PeerLine::Ready { last })) = PeerLine::parse(&ready) else {
        fail(&format!("expected READY, got {ready:?}"))
    };
    (link, last)
}
