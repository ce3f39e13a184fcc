//! A peer's connection as the typist and its sender thread share it: whoever holds the
//! turn writes.
//!
//! Waking a thread for every line costs more than the write itself, so when the sender
//! has nothing queued and is connected, the typist (`dispatch`) writes the line to the
//! socket itself (`Wire::try_write`). The lock is held only to take or give the turn,
//! never across a write; a line the typist cannot write at once (the socket is full, or
//! broken) goes through the sender's channel, and if part of it was written, the sender
//! thread writes the rest before anything else. Both record what they wrote in one
//! history, from which a reconnection resends what the peer missed.

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::handshake::Tags;

/// Messages kept after sending, to resend what a peer missed across a reconnection.
pub(super) const HISTORY: usize = 1024;
/// After this long without writing, a connection is checked for a peer that has closed it
/// before the next write (a write would vanish into a socket the peer no longer reads).
pub(super) const QUIET: Duration = Duration::from_secs(1);

/// One of this servant's messages, as it goes on the wire (shared by every sender).
#[derive(Debug)]
pub struct Outgoing {
    pub seq: u64,
    /// The whole signed `MSG` line, with its `\n`; each connection writes it after its tag.
    pub line: String,
}

impl Outgoing {
    /// The line without its `\n`: what a tag is made of.
    pub fn bare(&self) -> &[u8] {
        self.line.trim_end_matches('\n').as_bytes()
    }
}

/// One peer's connection as the sender thread, the typist and `/peers` share it.
#[derive(Default)]
pub struct Wire {
    /// What `/peers` shows; written by whoever connects or writes.
    pub connected: AtomicBool,
    /// Failed connection attempts since the last success.
    pub failures: AtomicU64,
    state: Mutex<WireState>,
    /// Signalled when the turn becomes free while the sender thread waits for it.
    turn_free: Condvar,
}

/// Who may write to the connection now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// The sender thread is waiting for its channel: the typist may write.
    Free,
    /// The sender thread is connecting or writing (it starts with the turn).
    #[default]
    Sender,
    Typist,
}

#[derive(Default)]
pub(super) struct WireState {
    pub(super) turn: Turn,
    /// The sender thread waits for the typist to give the turn back.
    pub(super) sender_waiting: bool,
    /// Messages handed to the sender thread and not yet written (in its channel or its
    /// pending list). The typist writes itself only when this is zero, which keeps the
    /// order: nothing older is still on its way.
    pub(super) queued: usize,
    /// The typist's handle on the connection, while there is one: a second descriptor of
    /// the sender thread's socket, kept here rather than shared through an `Arc` so that
    /// the typist's write touches only this state, not another allocation.
    pub(super) conn: Option<TcpStream>,
    /// What tags the lines written on the current connection (set with `conn`).
    pub(super) tags: Option<Tags>,
    /// Written on the current or an earlier connection, oldest first, to resend what a
    /// peer missed across a reconnection.
    pub(super) history: VecDeque<Arc<Outgoing>>,
    /// The typist wrote only the first bytes of this message (its sequence number, the
    /// bytes written) before the socket filled; the sender thread writes the rest.
    pub(super) partial: Option<(u64, usize)>,
    pub(super) last_write: Option<Instant>,
}

impl Wire {
    pub(super) fn lock(&self) -> MutexGuard<'_, WireState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while the typist writes, then holds the turn for the sender thread.
    pub(super) fn take_turn(&self) {
        let mut st = self.lock();
        while st.turn == Turn::Typist {
            st.sender_waiting = true;
            st = self.turn_free.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.sender_waiting = false;
        st.turn = Turn::Sender;
    }

    pub(super) fn give_turn(&self, st: &mut WireState) {
        st.turn = Turn::Free;
        if st.sender_waiting {
            self.turn_free.notify_one();
        }
    }

    /// The typist hands one message to the sender thread's channel (or takes it back, `-1`).
    pub fn count_queued(&self, delta: isize) {
        let mut st = self.lock();
        st.queued = st.queued.saturating_add_signed(delta);
    }

    /// The typist's fast path: writes `m` straight to the connection when the sender
    /// thread is idle and has nothing queued. False when it could not write all of it (no
    /// connection, the sender is busy, the socket is full or broken): then `m` is counted
    /// as queued, and the caller hands it to the channel. When only part of it fit, the
    /// sender thread writes the rest (see `partial`), so a peer that reads slowly never
    /// holds up the typist.
    ///
    /// `now` is when the line was typed: one reading of the clock serves every peer.
    pub fn try_write(&self, m: &Arc<Outgoing>, now: Instant) -> bool {
        let (conn, prefix, quiet) = {
            let mut st = self.lock();
            // The sender thread neither reads nor replaces `conn` while the typist has the
            // turn, so the typist borrows it by moving it out, and puts it back below.
            let conn = match (st.conn.take(), &st.tags) {
                (Some(conn), Some(_)) if st.turn == Turn::Free && st.queued == 0 => conn,
                (other, _) => {
                    st.conn = other;
                    st.queued += 1;
                    return false;
                }
            };
            st.turn = Turn::Typist;
            let quiet = st
                .last_write
                .is_none_or(|t| now.saturating_duration_since(t) > QUIET);
            let prefix = st.tags.as_ref().map(|t| t.prefix(m.bare()));
            (conn, prefix.unwrap_or([b' '; 33]), quiet)
        };
        let sent = if quiet && peer_has_closed(&conn) {
            Err(())
        } else {
            let parts = [
                io::IoSlice::new(&prefix),
                io::IoSlice::new(m.line.as_bytes()),
            ];
            SockRef::from(&conn)
                .send_vectored_with_flags(&parts, libc::MSG_DONTWAIT)
                .map_err(|_| ())
        };
        let mut st = self.lock();
        st.conn = Some(conn);
        let written = match sent {
            Ok(n) if n == prefix.len() + m.line.len() => {
                // Into the history, as the sender thread does: see `write_pending`.
                push_history(&mut st.history, Arc::clone(m));
                st.last_write = Some(now);
                true
            }
            Ok(n) => {
                if n > 0 {
                    st.partial = Some((m.seq, n));
                }
                st.queued += 1;
                false
            }
            // Would block, or broken: the sender thread finds out which.
            Err(()) => {
                st.queued += 1;
                false
            }
        };
        self.give_turn(&mut st);
        written
    }
}

pub(super) fn push_history(history: &mut VecDeque<Arc<Outgoing>>, m: Arc<Outgoing>) {
    if history.len() >= HISTORY {
        history.pop_front();
    }
    history.push_back(m);
}

/// True when the peer has closed its end (a read would return end of stream now). Peeks
/// without waiting, leaving the socket as it is.
pub(super) fn peer_has_closed(conn: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match SockRef::from(conn).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}
