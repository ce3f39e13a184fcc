//! One sender thread per peer: delivers this servant's messages to that peer, in order,
//! over one persistent connection.
//!
//! The article's `txtSend1_KeyPress` used a single Winsock control, `send1`, for every
//! peer: for each one it busy-waited (`While send1.State = 6: DoEvents`) until the last
//! connect finished, then connected again, so one slow peer held up every other and a
//! message typed meanwhile could be lost. Here each peer has its own thread fed by its
//! own bounded channel: a slow or dead peer fills only its own queue.
//!
//! The thread keeps the connection open, reconnects with backoff when it breaks, and on
//! every (re)connection asks the peer what it last showed from us (`HELLO` → `WELCOME
//! ID LAST`), then resends from its history whatever the peer missed. The peer drops
//! duplicates by sequence number, so a message is shown once even when a break leaves us
//! unsure whether it arrived. The thread ends when the core drops the channel's sender
//! (the peer left, or we are shutting down), after a last attempt to deliver what is queued.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info, warn};

use crate::lines::{LineError, LineReader};
use crate::protocol::{PeerLine, CHAT_LINE_LIMIT};

/// Messages kept after sending, to resend what a peer missed across a reconnection.
const HISTORY: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed tries after which each further failure is reported to the manager.
const COMPLAIN_AFTER: u64 = 2;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An idle connection is pinged this often, so the peer does not time it out.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// One of this servant's messages, as it goes on the wire (shared by every sender).
#[derive(Debug)]
pub struct Outgoing {
    pub seq: u64,
    /// The whole `MSG` line, with its `\n`.
    pub line: String,
}

/// What `/peers` shows of a sender. Written by the sender thread, read by the core.
#[derive(Debug, Default)]
pub struct SenderStatus {
    pub connected: AtomicBool,
    /// Failed connection attempts since the last success.
    pub failures: AtomicU64,
}

/// Why a connection attempt failed.
enum Failure {
    /// No TCP connection could be made (refused, timed out, no route): reported to the manager.
    Unreachable(io::Error),
    /// Connected, but the handshake failed.
    Refused(io::Error),
}

/// Everything a sender thread needs to know.
pub struct Target {
    pub addr: SocketAddr,
    /// The peer's name or address, for logs.
    pub label: String,
    /// Our own `HELLO` line.
    pub hello: String,
    /// Reports the peer to the manager as unreachable (the article's complaint); called
    /// after every failed try but the first.
    pub complain: Box<dyn Fn() + Send>,
}

/// Starts the sender thread for one peer: the per-peer part of the article's
/// `txtSend1_KeyPress`, which used one `send1` control for all peers.
pub fn spawn(
    target: Target,
    rx: Receiver<Arc<Outgoing>>,
    status: Arc<SenderStatus>,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("send-{}", target.label))
        .spawn(move || Sender::new(target, status).run(rx))
}

struct Sender {
    target: Target,
    status: Arc<SenderStatus>,
    conn: Option<TcpStream>,
    /// Sent on the current or an earlier connection, oldest first.
    history: VecDeque<Arc<Outgoing>>,
    /// Taken from the channel, not yet written.
    pending: VecDeque<Arc<Outgoing>>,
    /// The peer's id, from its `WELCOME`.
    peer_id: Option<String>,
    last_write: Instant,
    /// Messages dropped while the peer was unreachable.
    dropped: u64,
}

impl Sender {
    fn new(target: Target, status: Arc<SenderStatus>) -> Sender {
        Sender {
            target,
            status,
            conn: None,
            history: VecDeque::new(),
            pending: VecDeque::new(),
            peer_id: None,
            last_write: Instant::now(),
            dropped: 0,
        }
    }

    /// The `send1.Connect` loop of `txtSend1_KeyPress`, without its busy wait: deliver
    /// each message from the channel, reconnecting with backoff.
    fn run(mut self, rx: Receiver<Arc<Outgoing>>) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            if self.conn.is_none() {
                match self.connect() {
                    Ok(()) => backoff = BACKOFF_FIRST,
                    Err(failure) => {
                        let failures = self.status.failures.fetch_add(1, Ordering::Relaxed) + 1;
                        // Only a connection that cannot be made is the article's complaint;
                        // a peer that accepts and then closes (a ban) is reachable.
                        let e = match failure {
                            Failure::Unreachable(e) => {
                                if failures >= COMPLAIN_AFTER {
                                    (self.target.complain)();
                                }
                                e
                            }
                            Failure::Refused(e) => e,
                        };
                        if failures == 1 {
                            warn!(
                                "cannot reach {} at {}: {e}; retrying with backoff",
                                self.target.label, self.target.addr
                            );
                        } else {
                            debug!(
                                "cannot reach {} at {} (try {failures}): {e}",
                                self.target.label, self.target.addr
                            );
                        }
                        // Wait out the backoff, still taking messages so the queue does
                        // not fill, and stop at once if the peer leaves.
                        let deadline = Instant::now() + backoff;
                        loop {
                            match rx.recv_deadline(deadline) {
                                Ok(m) => self.queue(m),
                                Err(RecvTimeoutError::Timeout) => break,
                                Err(RecvTimeoutError::Disconnected) => return self.finish(),
                            }
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            if !self.pending.is_empty() {
                if let Err(e) = self.write_pending() {
                    debug!("lost connection to {}: {e}", self.target.label);
                    self.disconnect();
                }
                continue;
            }
            match rx.recv_timeout(PING_EVERY) {
                Ok(m) => {
                    self.queue(m);
                    // Take no more than `pending` holds: the rest waits in the channel,
                    // which is what makes the core wait for room instead of losing it.
                    while self.pending.len() < HISTORY {
                        match rx.try_recv() {
                            Ok(m) => self.queue(m),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(conn) = &self.conn {
                        if (&*conn)
                            .write_all(PeerLine::Ping.to_line().as_bytes())
                            .is_err()
                        {
                            self.disconnect();
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return self.finish(),
            }
        }
    }

    fn queue(&mut self, m: Arc<Outgoing>) {
        // The channel is the bound on what waits for a peer; this only holds what was taken
        // out of it during one backoff (while unreachable), so it gets the same bound.
        if self.pending.len() >= HISTORY {
            self.pending.pop_front();
            self.dropped += 1;
            if self.dropped == 1 || self.dropped % 1000 == 0 {
                warn!(
                    "{} is unreachable; dropped {} of our oldest messages for it so far",
                    self.target.label, self.dropped
                );
            }
        }
        self.pending.push_back(m);
    }

    /// Connects, says `HELLO`, reads `WELCOME` and puts back into `pending` whatever the
    /// peer has not shown yet.
    fn connect(&mut self) -> Result<(), Failure> {
        let stream = TcpStream::connect_timeout(&self.target.addr, CONNECT_TIMEOUT)
            .map_err(Failure::Unreachable)?;
        self.handshake(stream).map_err(Failure::Refused)
    }

    /// `HELLO` and `WELCOME` on a fresh connection. A failure here is not unreachability:
    /// the peer answered the connection (it may have banned us, or be another program).
    fn handshake(&mut self, stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        (&stream).write_all(self.target.hello.as_bytes())?;
        let mut reader = LineReader::new(&stream, CHAT_LINE_LIMIT);
        let line = match reader.read_line() {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "closed before WELCOME (banned there?)",
                ))
            }
            Err(LineError::Idle) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no WELCOME in time",
                ))
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        let (id, last_seq) = match PeerLine::parse(&line) {
            Some(Ok(PeerLine::Welcome { id, last_seq })) => (id, last_seq),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected WELCOME, got {:?}", truncate(&line)),
                ))
            }
        };
        if self.peer_id.as_deref().is_some_and(|old| old != id) {
            // A different process listens there now: our history is not its business.
            self.history.clear();
        }
        self.peer_id = Some(id);
        // Resend, in order, what the peer has not shown: the tail of the history, then
        // what was waiting anyway.
        let missed: Vec<_> = self
            .history
            .iter()
            .filter(|m| m.seq > last_seq)
            .cloned()
            .collect();
        if !missed.is_empty() {
            debug!(
                "resending {} message(s) to {}",
                missed.len(),
                self.target.label
            );
        }
        self.history.retain(|m| m.seq <= last_seq);
        for m in missed.into_iter().rev() {
            self.pending.push_front(m);
        }
        let failures = self.status.failures.swap(0, Ordering::Relaxed);
        if failures > 0 {
            info!(
                "reached {} at {} after {failures} failed tries",
                self.target.label, self.target.addr
            );
        }
        self.status.connected.store(true, Ordering::Relaxed);
        self.conn = Some(stream);
        self.last_write = Instant::now();
        Ok(())
    }

    /// Writes everything pending in one `write`, moving it to the history.
    fn write_pending(&mut self) -> io::Result<()> {
        let conn = self
            .conn
            .as_ref()
            .expect("write_pending only when connected");
        if self.last_write.elapsed() > Duration::from_secs(1) && peer_has_closed(conn) {
            // A peer that restarted or timed us out: reconnect before writing into a socket
            // that would swallow the first message.
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer closed the connection",
            ));
        }
        let mut buf = Vec::with_capacity(self.pending.iter().map(|m| m.line.len()).sum());
        for m in &self.pending {
            buf.extend_from_slice(m.line.as_bytes());
        }
        // Into the history first: if the write fails half way, the reconnection's WELCOME
        // tells which of these to send again.
        for m in self.pending.drain(..) {
            if self.history.len() >= HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(m);
        }
        (&*conn).write_all(&buf)?;
        self.last_write = Instant::now();
        Ok(())
    }

    fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.status.connected.store(false, Ordering::Relaxed);
    }

    /// The channel is closed: deliver what is still pending (one attempt), then stop.
    fn finish(mut self) {
        if !self.pending.is_empty() {
            if self.conn.is_none() {
                let _ = self.connect();
            }
            if self.conn.is_some() {
                if let Err(e) = self.write_pending() {
                    debug!("{}: last messages not delivered: {e}", self.target.label);
                }
            }
        }
        self.disconnect();
        debug!("sender for {} stopped", self.target.label);
    }
}

/// True when the peer has closed its end (a read would return end of stream now).
fn peer_has_closed(conn: &TcpStream) -> bool {
    if conn.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let closed = match conn.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    let _ = conn.set_nonblocking(false);
    closed
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}
