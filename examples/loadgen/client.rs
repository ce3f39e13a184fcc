//! The client side of the manager protocol that every load of `loadgen` speaks: a
//! connection, a port that really listens (the manager probes the port a servant lists),
//! a fake servant's signed registration, and lines framed out of a socket without an
//! allocation each, so that the load generator costs less than the server it loads.

use genp2p::identity::Identity;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A fake servant's registration: its `listening` line and the key that proves it.
pub struct Registration {
    me: Identity,
    pub listening: String,
}

impl Registration {
    pub fn new(port: u16, name: &str) -> io::Result<Registration> {
        let me = Identity::ephemeral().map_err(|e| io::Error::other(e.to_string()))?;
        let listening = format!("listening {port} {} {name} {}", me.id, me.key.hex());
        Ok(Registration { me, listening })
    }

    /// The `prove` line (with its `\n`) answering a `<challenge>` line.
    pub fn prove(&self, challenge: &str) -> Option<String> {
        match genp2p::protocol::ManagerMessage::parse(challenge) {
            Ok(genp2p::protocol::ManagerMessage::Challenge { nonce }) => {
                let signed = genp2p::protocol::listen_proof(&nonce, &self.listening);
                Some(format!(
                    "prove {}\n",
                    genp2p::encoding::hex(&self.me.sign(&signed))
                ))
            }
            _ => None,
        }
    }
}

/// Frames lines out of a socket without allocating per line.
pub struct LineBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    scanned: usize,
    bytes: u64,
}

pub enum Got {
    Line(usize, usize),
    Idle,
}

impl LineBuf {
    pub fn new() -> LineBuf {
        LineBuf {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            scanned: 0,
            bytes: 0,
        }
    }

    /// The next line (range into `buf`, without `\n`), `Idle` on a read time-out.
    pub fn next(&mut self, s: &TcpStream, on_bytes: &mut dyn FnMut(usize)) -> io::Result<Got> {
        loop {
            if let Some(p) = self.buf[self.scanned..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = (self.start, self.scanned + p);
                self.start = self.scanned + p + 1;
                self.scanned = self.start;
                return Ok(Got::Line(line.0, line.1));
            }
            self.scanned = self.end;
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            match (&*s).read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
                Ok(n) => {
                    self.end += n;
                    self.bytes += n as u64;
                    on_bytes(n);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Ok(Got::Idle)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn text(&self, (a, b): (usize, usize)) -> &str {
        std::str::from_utf8(&self.buf[a..b]).unwrap_or("")
    }
}

pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A port this client really listens on: the manager connects back to the port a servant
/// lists (its reachability probe). Nothing is accepted; the kernel completes the handshake.
pub fn listen_port() -> io::Result<(TcpListener, u16)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}
