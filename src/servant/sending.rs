//! One sender's connection to its peer: connecting and proving who we are (`open_link`),
//! writing what is pending as tagged lines and blocks, reading the peer's `SAID` answers,
//! and closing. The `send-NAME` thread's loop (`sender`) decides when each happens.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use socket2::SockRef;

use crate::handshake::{Mode, Tags};
use crate::identity::{Identity, NetworkKey, PeerKey};
use crate::lines::LineReader;
use crate::protocol::{PeerLine, CHAT_LINE_LIMIT};

use super::linking::{open_link, BLOCK_LINES};
use super::wire::{peer_has_closed, push_history, Outgoing, Wire, HISTORY, QUIET};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The kernel's send buffer for a chat connection. Left to itself Linux grows it to
/// several MiB for a peer that stops reading; chat lines are at most 8 KiB, so this is
/// plenty, and beyond it lines wait in the peer's `<queue>`, which is bounded and shown.
const SEND_BUFFER: usize = 256 * 1024;

/// Why a connection attempt failed.
pub(super) enum Failure {
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
    /// Who we are, and our name, for the handshake.
    pub identity: Arc<Identity>,
    pub name: String,
    /// The key the manager lists for the peer: whoever answers at `addr` must prove it.
    pub expect: Option<PeerKey>,
    pub network: Option<NetworkKey>,
    /// Reports the peer to the manager as unreachable (the article's complaint); called
    /// after every failed try but the first.
    pub complain: Box<dyn Fn() + Send>,
    /// Told the peer's `SAID INC SEQ` (see `relay_watch`).
    pub said: Box<dyn Fn(u64, u64) + Send>,
    /// Set while we pull from a relay (then idle connections ping every `IDLE_WAKE`).
    pub relayed: Arc<AtomicBool>,
}

pub(super) struct Sender {
    pub(super) target: Target,
    /// Shared with the typist; this thread holds its turn except while waiting for the
    /// channel with nothing to write.
    pub(super) wire: Arc<Wire>,
    pub(super) conn: Option<Arc<TcpStream>>,
    /// What tags our lines on `conn`.
    pub(super) tags: Option<Tags>,
    /// Taken from the channel (or put back for resending), not yet written.
    pub(super) pending: VecDeque<Arc<Outgoing>>,
    /// The peer's id, from its `WELCOME`.
    pub(super) peer_id: Option<String>,
    /// Messages dropped while the peer was unreachable.
    pub(super) dropped: u64,
    /// What the peer wrote back (its `SAID` lines), up to a line end.
    pub(super) heard: Vec<u8>,
    /// When `heard` was last read into.
    pub(super) polled: Option<Instant>,
}

/// Appends `run` to `buf` as what goes on the wire: one line with its tag, or several as
/// `BLOCK TAG COUNT` followed by the lines, with one tag for all of them (see
/// `handshake::Tags::block`): a keyed hash over a block costs a fraction of one per line.
pub(super) fn write_tagged(buf: &mut Vec<u8>, tags: &Tags, run: &[&Arc<Outgoing>]) {
    if let [m] = run {
        buf.extend_from_slice(&tags.prefix(m.bare()));
        buf.extend_from_slice(m.line.as_bytes());
        return;
    }
    let at = buf.len();
    for m in run {
        buf.extend_from_slice(m.line.as_bytes());
    }
    let header = format!(
        "BLOCK {} {}\n",
        crate::encoding::hex(&tags.block(&buf[at..])),
        run.len()
    );
    buf.splice(at..at, header.into_bytes());
}

impl Sender {
    pub(super) fn new(target: Target, wire: Arc<Wire>) -> Sender {
        Sender {
            target,
            wire,
            conn: None,
            tags: None,
            pending: VecDeque::new(),
            peer_id: None,
            dropped: 0,
            heard: Vec::new(),
            polled: None,
        }
    }

    /// Reads, without waiting and at most once a second, what the peer wrote back: its
    /// tagged `SAID INC SEQ` lines, handed to `Target::said` (see `relay_watch`).
    /// Anything else, or a tag that does not match, is dropped; a line is at most 256
    /// bytes, so a peer writing garbage costs one small buffer, and at most 64 KiB is
    /// read a poll, so a peer writing floods costs that much a second.
    pub(super) fn poll_said(&mut self) {
        if self
            .polled
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.polled = Some(Instant::now());
        let (Some(conn), Some(tags)) = (&self.conn, &self.tags) else {
            return;
        };
        // Non-blocking for these reads only; this thread holds the turn, so no write of
        // ours is under way meanwhile (the typist's never wait anyway).
        let mut buf = [0u8; 4096];
        let _ = conn.set_nonblocking(true);
        for _ in 0..16 {
            let n = match (&**conn).read(&mut buf) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            self.heard.extend_from_slice(&buf[..n]);
            while let Some(end) = memchr::memchr(b'\n', &self.heard) {
                let line: Vec<u8> = self.heard.drain(..=end).collect();
                let Ok(line) = std::str::from_utf8(&line[..line.len() - 1]) else {
                    continue;
                };
                if let Some((tag, rest)) = crate::protocol::split_tag(line) {
                    if tags.checks(&tag, rest.as_bytes()) {
                        if let Some(Ok(PeerLine::Said { incarnation, seq })) = PeerLine::parse(rest)
                        {
                            (self.target.said)(incarnation, seq);
                        }
                    }
                }
            }
            if self.heard.len() > 256 {
                self.heard.clear();
            }
        }
        let _ = conn.set_nonblocking(false);
    }

    pub(super) fn queue(&mut self, m: Arc<Outgoing>) {
        // The channel is the bound on what waits for a peer; this only holds what was taken
        // out of it during one backoff (while unreachable), so it gets the same bound.
        if self.pending.len() >= HISTORY {
            self.pending.pop_front();
            self.wire.count_queued(-1);
            self.dropped += 1;
            if self.dropped == 1 || self.dropped.is_multiple_of(1000) {
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
    pub(super) fn connect(&mut self) -> Result<(), Failure> {
        let stream = crate::dial::connect(&self.target.addr, CONNECT_TIMEOUT)
            .map_err(Failure::Unreachable)?;
        self.handshake(stream).map_err(Failure::Refused)
    }

    /// The handshake on a fresh connection. A failure here is not unreachability: the
    /// peer answered the connection (it may have banned us, or be another program, or
    /// not be the servant listed).
    pub(super) fn handshake(&mut self, stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let t = &self.target;
        let (link, last_seq) = {
            let mut reader = LineReader::new(&stream, CHAT_LINE_LIMIT);
            let (link, last) = open_link(
                &stream,
                &mut reader,
                (&t.identity, &t.name),
                Mode::Send,
                t.expect.as_ref(),
                t.network.as_ref(),
            )?;
            (link, last)
        };
        let id = link.peer_id.clone();
        // The typist's own descriptor of the same socket (see `WireState::conn`).
        let for_typist = stream.try_clone()?;
        let stream = Arc::new(stream);
        let mut st = self.wire.lock();
        if self.peer_id.as_deref().is_some_and(|old| old != id) {
            // A different process listens there now: our history is not its business.
            st.history.clear();
        }
        self.peer_id = Some(id);
        // Resend, in order, what the peer has not shown: the tail of the history, then
        // what was waiting anyway.
        let missed: Vec<_> = st
            .history
            .iter()
            .filter(|m| m.seq > last_seq)
            .cloned()
            .collect();
        st.history.retain(|m| m.seq <= last_seq);
        st.queued += missed.len();
        st.conn = Some(for_typist);
        st.tags = Some(link.tags.clone());
        st.last_write = Some(Instant::now());
        drop(st);
        if !missed.is_empty() {
            debug!(
                "resending {} message(s) to {}",
                missed.len(),
                self.target.label
            );
        }
        for m in missed.into_iter().rev() {
            self.pending.push_front(m);
        }
        let failures = self.wire.failures.swap(0, Ordering::Relaxed);
        if failures > 0 {
            info!(
                "reached {} at {} after {failures} failed tries",
                self.target.label, self.target.addr
            );
        }
        self.wire.connected.store(true, Ordering::Relaxed);
        self.conn = Some(stream);
        self.tags = Some(link.tags);
        Ok(())
    }

    /// Writes what is pending in one `write` (at most a history's worth), moving it to the
    /// history.
    pub(super) fn write_pending(&mut self) -> io::Result<()> {
        let conn = Arc::clone(
            self.conn
                .as_ref()
                .expect("write_pending only when connected"),
        );
        let quiet = self
            .wire
            .lock()
            .last_write
            .is_none_or(|t| t.elapsed() > QUIET);
        if quiet && peer_has_closed(&conn) {
            // A peer that restarted or timed us out: reconnect before writing into a socket
            // that would swallow the first message.
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer closed the connection",
            ));
        }
        // After a long outage `pending` may hold more than the history keeps: write it in
        // parts, so nothing leaves the history before it has been written.
        let count = self.pending.len().min(HISTORY);
        let tags = self
            .tags
            .as_ref()
            .expect("write_pending only when connected");
        // What the typist began on this connection (if anything) is finished first, as
        // the tagged line it began; the rest go in blocks, one tag each.
        let partial = self.wire.lock().partial.take();
        let mut buf = Vec::with_capacity(
            self.pending
                .iter()
                .take(count)
                .map(|m| m.line.len())
                .sum::<usize>()
                + 33 * count.div_ceil(BLOCK_LINES)
                + 33,
        );
        let mut first = 0;
        if let Some((seq, n)) = partial {
            match self.pending.front() {
                Some(m) if m.seq == seq => {
                    let mut line = tags.prefix(m.bare()).to_vec();
                    line.extend_from_slice(m.line.as_bytes());
                    buf.extend_from_slice(&line[n.min(line.len())..]);
                    first = 1;
                }
                // Its rest is gone (dropped from a full queue): start a clean connection.
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "half a line was left on the connection",
                    ))
                }
            }
        }
        let lines: Vec<&Arc<Outgoing>> = self.pending.iter().take(count).skip(first).collect();
        for run in lines.chunks(BLOCK_LINES) {
            write_tagged(&mut buf, tags, run);
        }
        // Into the history first: if the write fails half way, the reconnection's WELCOME
        // tells which of these to send again.
        {
            let mut st = self.wire.lock();
            st.queued = st.queued.saturating_sub(count);
            for m in self.pending.drain(..count) {
                push_history(&mut st.history, m);
            }
        }
        (&*conn).write_all(&buf)?;
        self.wire.lock().last_write = Some(Instant::now());
        Ok(())
    }

    pub(super) fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.tags = None;
        {
            let mut st = self.wire.lock();
            st.conn = None;
            st.tags = None;
            // Half a line on a closed connection is nothing to finish on the next one.
            st.partial = None;
        }
        self.wire.connected.store(false, Ordering::Relaxed);
    }
}
