//! What every link between two servants shares, whichever side opened it: the opener's
//! half of the handshake (`open_link`, for the sender threads, the relay puller and the
//! overlay's links), how long a handshake may take, how often an idle link pings, and
//! how many lines one tagged block may hold.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::escape::Shown;
use crate::handshake::{HandshakeError, Link, Mode, Opening};
use crate::identity::{Identity, NetworkKey, PeerKey};
use crate::lines::{LineError, LineReader};
use crate::protocol::PeerLine;

/// How long each side of a handshake waits for the other's next line.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection is pinged this often, so the peer does not time it out.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// Lines in one tagged block at most (see `write_tagged`).
pub const BLOCK_LINES: usize = 64;

pub(super) fn truncate(s: &str) -> String {
    Shown(&s.chars().take(60).collect::<String>()).to_string()
}

pub(super) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The next line of a handshake, parsed.
pub(super) fn next_peer_line(
    reader: &mut LineReader<&TcpStream>,
    waiting_for: &str,
) -> io::Result<PeerLine> {
    let line = match reader.read_line() {
        Ok(Some(line)) => line,
        Ok(None) => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("closed before {waiting_for} (banned there?)"),
            ))
        }
        Err(LineError::Idle) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no {waiting_for} in time"),
            ))
        }
        Err(e) => return Err(invalid(e)),
    };
    match PeerLine::parse(&line) {
        Some(Ok(l)) => Ok(l),
        Some(Err(e)) => Err(invalid(e)),
        None => Err(invalid(format!(
            "expected {waiting_for}, got {:?}",
            truncate(&line)
        ))),
    }
}

/// The opener's half of the handshake (see `handshake`) on a fresh connection: `HELLO`
/// (or `PULL`), the peer's `WELCOME` checked against `expect`, `PROOF`, and `READY LAST`.
/// Returns the link and LAST.
pub fn open_link(
    stream: &TcpStream,
    reader: &mut LineReader<&TcpStream>,
    (me, name): (&Identity, &str),
    mode: Mode,
    expect: Option<&PeerKey>,
    network: Option<&NetworkKey>,
) -> io::Result<(Link, u64)> {
    let refused = |e: HandshakeError| invalid(format!("refused the handshake: it {e}"));
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let (opening, hello) = Opening::new(me, name, mode).map_err(refused)?;
    { stream }.write_all(hello.as_bytes())?;
    let welcome = match next_peer_line(reader, "WELCOME")? {
        PeerLine::Welcome(w) => w,
        other => {
            return Err(invalid(format!(
                "expected WELCOME, got {:?}",
                truncate(&other.to_line())
            )))
        }
    };
    let (link, proof) = opening
        .finish(me, &welcome, expect, network)
        .map_err(refused)?;
    { stream }.write_all(proof.as_bytes())?;
    match next_peer_line(reader, "READY")? {
        PeerLine::Ready { last } => Ok((link, last)),
        other => Err(invalid(format!(
            "expected READY, got {:?}",
            truncate(&other.to_line())
        ))),
    }
}
