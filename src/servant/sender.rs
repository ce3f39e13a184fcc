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
//! every (re)connection proves who we are and checks that the peer is the servant the
//! manager listed (`HELLO`, `WELCOME`, `PROOF`, `READY LAST`: see `handshake`); `READY`
//! says what the peer last showed from us, and the thread resends from its history
//! whatever the peer missed. Every line written after the handshake is tagged with the
//! connection's secret. The peer drops
//! duplicates by sequence number, so a message is shown once even when a break leaves us
//! unsure whether it arrived. The thread ends when the core drops the channel's sender
//! (the peer left, or we are shutting down), after a last attempt to deliver what is queued.
//!
//! Waking a thread for every line costs more than the write itself, so when the sender has
//! nothing queued and is connected, the typist (`dispatch`) writes the line to the socket
//! itself: the two share the peer's `Wire` (see `wire`), and whoever holds its turn writes.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, warn};

use super::linking::PING_EVERY;
use super::sending::{Failure, Sender, Target};
use super::wire::{Outgoing, Wire, HISTORY};
/// Failed tries after which each further failure is reported to the manager.
const COMPLAIN_AFTER: u64 = 2;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An idle sender wakes this often: to `PING` once `PING_EVERY` has passed, and to read
/// the peer's `SAID` answers to what the typist wrote meanwhile (see `poll_said`).
const IDLE_WAKE: Duration = Duration::from_secs(5);

/// Starts the sender thread for one peer: the per-peer part of the article's
/// `txtSend1_KeyPress`, which used one `send1` control for all peers.
pub fn spawn(
    target: Target,
    rx: Receiver<Arc<Outgoing>>,
    wire: Arc<Wire>,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("send-{}", target.label))
        .spawn(move || Sender::new(target, wire).run(rx))
}

impl Sender {
    /// The `send1.Connect` loop of `txtSend1_KeyPress`, without its busy wait: deliver
    /// each message from the channel, reconnecting with backoff.
    fn run(mut self, rx: Receiver<Arc<Outgoing>>) {
        self.wire.take_turn();
        let mut backoff = BACKOFF_FIRST;
        loop {
            self.poll_said();
            if self.conn.is_none() {
                match self.connect() {
                    Ok(()) => backoff = BACKOFF_FIRST,
                    Err(failure) => {
                        let failures = self.wire.failures.fetch_add(1, Ordering::Relaxed) + 1;
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
            // Nothing to write: until a message comes, the typist may write itself.
            {
                let mut st = self.wire.lock();
                self.wire.give_turn(&mut st);
            }
            let got = rx.recv_timeout(IDLE_WAKE);
            self.wire.take_turn();
            match got {
                Ok(m) => {
                    self.queue(m);
                    // Take no more than `pending` holds: the rest waits in the channel,
                    // which is what makes the typist wait for room instead of losing it.
                    while self.pending.len() < HISTORY {
                        match rx.try_recv() {
                            Ok(m) => self.queue(m),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    // While we are relayed, every `PING` fetches a `SAID`: the relay is
                    // checked every few seconds even when we say nothing.
                    let ping_every = if self.target.relayed.load(Ordering::Relaxed) {
                        IDLE_WAKE
                    } else {
                        PING_EVERY
                    };
                    let idle = {
                        let st = self.wire.lock();
                        st.queued == 0
                            && st.partial.is_none()
                            && st.last_write.is_none_or(|t| t.elapsed() >= ping_every)
                    };
                    if let (true, Some(conn), Some(tags)) = (idle, &self.conn, &self.tags) {
                        let ping = tags.tagged("PING\n");
                        if (&**conn).write_all(&ping).is_err() {
                            self.disconnect();
                        } else {
                            self.wire.lock().last_write = Some(Instant::now());
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return self.finish(),
            }
        }
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
