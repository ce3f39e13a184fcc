//! Sending what the user types: each line goes to the queue of every peer's sender thread.
//!
//! This is the part of the article's `txtSend1_KeyPress` that runs when Enter is pressed.
//! The `stdin` thread runs it itself, so a typed line reaches the senders without a hand-over
//! to another thread first, and a full queue slows the reading of input directly. The core
//! keeps the list of queues up to date as peers come and go.
//!
//! A line typed alone, to a connected peer whose sender thread has nothing queued, is
//! written to that peer's socket right here (the sender's `Wire` decides), so one line
//! costs N writes and no thread wake-ups. Lines arriving faster than that (more input is
//! already waiting) go through the queues, where each sender writes all it has in one go.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, warn};

use super::inbound::Inbound;
use super::neighbors::bell::Bell;
use super::neighbors::link::ToDriver;
use super::wire::{Outgoing, Wire};
use crate::batch;
use crate::identity::{Identity, Presigned};
use crate::protocol::{msg_head, msg_line, ChatMessage, TEXT_LIMIT};

/// How long after a line typed alone its successor's signature is begun (see `say`).
const PRESIGN_AFTER: Duration = Duration::from_micros(300);

/// How long input waits for room in the queue of a peer we are connected to.
const FULL_QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How often a full queue is looked at again while input waits for room.
const ROOM_POLL: Duration = Duration::from_millis(1);

/// One peer's queue, as the typist sees it.
#[derive(Clone)]
pub struct PeerQueue {
    pub key: String,
    pub label: String,
    /// An unbounded channel held to `cap` messages here. Not a bounded channel: that
    /// allocates and touches all its slots when it is made, 64 KiB for the 4,096 of
    /// `<queue>`, and a servant with 50 peers held 3 MiB of empty queues. This one grows
    /// by blocks of 31 as messages wait, and gives them back as they are sent.
    pub tx: Sender<Arc<Outgoing>>,
    /// Messages queued at most (`<queue>`).
    pub cap: usize,
    /// The same queue's other end, to drop its oldest message when it is full.
    pub drain: Receiver<Arc<Outgoing>>,
    /// The peer's connection, shared with its sender thread.
    pub wire: Arc<Wire>,
    /// Messages dropped from this queue so far.
    pub dropped: Arc<AtomicU64>,
}

/// The typist: who we are (to sign each line), the next sequence number, and every
/// peer's queue.
pub struct Dispatch {
    identity: Arc<Identity>,
    name: String,
    /// Servants pulling from us get what we write too (its relay hub).
    inbound: Arc<Inbound>,
    /// Replaced by the core when peers come and go; `say` takes the current list for each
    /// line, so the lock is never held while writing or waiting for room in a queue.
    queues: Mutex<Arc<Vec<PeerQueue>>>,
    /// Used by the `stdin` thread only.
    next_seq: AtomicU64,
    /// The next line's signature, begun once the last line was sent (see `Presigned`):
    /// the typist signs at the moment a line is sent, and a signature costs 19 µs.
    spare: Mutex<Option<Presigned>>,
    /// When the last run of lines was sent.
    last_sent: Mutex<Option<Instant>>,
    /// Set once the servant is in the overlay: every line goes to the `overlay` thread
    /// too, which passes it on to the neighbours.
    overlay: Mutex<Option<Bell<ToDriver>>>,
}

impl Dispatch {
    pub fn new(identity: Arc<Identity>, name: String, inbound: Arc<Inbound>) -> Dispatch {
        Dispatch {
            identity,
            name,
            inbound,
            queues: Mutex::new(Arc::default()),
            next_seq: AtomicU64::new(1),
            spare: Mutex::new(None),
            last_sent: Mutex::new(None),
            overlay: Mutex::new(None),
        }
    }

    /// From now on, every line goes to the overlay too.
    pub fn set_overlay(&self, tx: Bell<ToDriver>) {
        *self.overlay.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    fn lock(&self) -> MutexGuard<'_, Arc<Vec<PeerQueue>>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, q: PeerQueue) {
        let key = q.key.clone();
        self.replace(&key, Some(q));
    }

    pub fn remove(&self, key: &str) {
        self.replace(key, None);
    }

    /// A new list: the current one without `key`, plus `with`. Lines being sent keep the
    /// list they started with.
    fn replace(&self, key: &str, with: Option<PeerQueue>) {
        let mut queues = self.lock();
        let mut next: Vec<PeerQueue> = queues.iter().filter(|q| q.key != key).cloned().collect();
        next.extend(with);
        *queues = Arc::new(next);
    }

    /// Removes every queue (shutdown), so the sender threads see their channels close.
    pub fn clear(&self) {
        *self.lock() = Arc::default();
    }

    /// Sends one typed line to every peer (see `say_all`).
    pub fn say(&self, text: String, more_waiting: bool) {
        self.say_all(vec![text], more_waiting);
    }

    /// Sends lines typed together to every peer, in order. Waits (up to 2 s) for room in
    /// the queue of a peer we are connected to, so nothing typed is lost to it; the queue
    /// of a peer we cannot reach loses its oldest message instead, so a dead peer holds up
    /// no one. `more_waiting`: further input is already buffered, so queue these lines
    /// (each sender then writes the run of lines at once) rather than write the last one
    /// straight away.
    ///
    /// One line is signed on its own; several are signed together, one signature for up
    /// to `batch::MAX_LEAVES` of them (see `batch`), since a signature costs more than
    /// everything else a line costs the typist.
    pub fn say_all(&self, texts: Vec<String>, more_waiting: bool) {
        let texts: Vec<String> = texts
            .into_iter()
            .filter(|t| {
                let fits = t.len() <= TEXT_LIMIT;
                if !fits {
                    warn!("line longer than {TEXT_LIMIT} bytes; not sent");
                }
                fits
            })
            .collect();
        let lines = self.sign(texts);
        if !lines.is_empty() {
            self.send(&lines, more_waiting);
        }
        // The next line's signature, begun now that these are on their way: at once when
        // more input is waiting, otherwise a moment later, once the receivers this line
        // woke have had the processors (on a small host they share them with us).
        // In a run of input that arrives in pieces (a paste read a buffer at a time), no
        // wait: the next piece is already there.
        let now = Instant::now();
        let in_a_run = self
            .last_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(now)
            .is_some_and(|t| now.duration_since(t) < PRESIGN_AFTER * 4);
        if !more_waiting && !in_a_run {
            std::thread::sleep(PRESIGN_AFTER);
        }
        *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.identity.presign());
    }

    /// Numbers and signs `texts`: the `MSG` line of each.
    fn sign(&self, texts: Vec<String>) -> Vec<Arc<Outgoing>> {
        let me = &self.identity;
        let first = self
            .next_seq
            .fetch_add(texts.len() as u64, Ordering::Relaxed);
        self.inbound
            .said
            .fetch_max(first + texts.len() as u64 - 1, Ordering::Relaxed);
        let heads: Vec<String> = (0..texts.len() as u64)
            .map(|i| msg_head(&me.id, me.incarnation, first + i, &self.name))
            .collect();
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let signer = spare.unwrap_or_else(|| me.presign());
        let line = |i: usize, sig: &[u8; 64], batch: Option<(u64, &[batch::Node])>| {
            let seq = first + i as u64;
            Arc::new(Outgoing {
                seq,
                line: msg_line(
                    &me.id,
                    me.incarnation,
                    seq,
                    &self.name,
                    sig,
                    batch,
                    &texts[i],
                ),
            })
        };
        match texts.len() {
            0 => Vec::new(),
            1 => {
                let sig = signer.sign(&ChatMessage::signed_parts(&heads[0], &texts[0]));
                vec![line(0, &sig, None)]
            }
            _ => {
                let mut out = Vec::with_capacity(texts.len());
                let mut signer = Some(signer);
                for chunk in (0..texts.len())
                    .collect::<Vec<_>>()
                    .chunks(batch::MAX_LEAVES)
                {
                    let leaves: Vec<batch::Node> = chunk
                        .iter()
                        .map(|&i| batch::leaf(&ChatMessage::signed_parts(&heads[i], &texts[i])))
                        .collect();
                    let (depth, root, paths) = batch::build(&leaves);
                    let sig = signer
                        .take()
                        .unwrap_or_else(|| me.presign())
                        .sign(&[&batch::signed_root(depth, &root)]);
                    for (k, &i) in chunk.iter().enumerate() {
                        out.push(line(i, &sig, Some((k as u64, &paths[k]))));
                    }
                }
                out
            }
        }
    }

    /// Signed lines to every peer (and the servants we relay to), in order, peer by peer:
    /// each peer's queue counts the run once, and only the last line, when no more input
    /// waits, may be written straight away.
    fn send(&self, lines: &[Arc<Outgoing>], more_waiting: bool) {
        let me = &self.identity;
        for out in lines {
            self.inbound
                .hub
                .record(&me.id, me.incarnation, out.seq, &out.line);
        }
        let overlay = self
            .overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(tx) = overlay {
            // Read back into their parts on the `overlay` thread, not here.
            if tx.send(ToDriver::Typed(lines.to_vec())).is_err() {
                debug!("the overlay has stopped; the line goes to linked servants only");
            }
        }
        let (last, queued) = match more_waiting {
            true => (None, lines),
            false => (lines.last(), &lines[..lines.len() - 1]),
        };
        let queues = Arc::clone(&self.lock());
        let mut now = Instant::now();
        for q in queues.iter() {
            if !queued.is_empty() {
                q.wire.count_queued(queued.len() as isize);
                for out in queued {
                    deliver(q, Arc::clone(out));
                }
                now = Instant::now();
            }
            if let Some(out) = last {
                if !q.wire.try_write(out, now) {
                    deliver(q, Arc::clone(out));
                    // Handing over may have waited for room in a full queue.
                    now = Instant::now();
                }
            }
        }
    }
}

/// Hands `item`, already counted as queued, to the peer's sender thread. A full queue
/// of a connected peer is waited on (it is draining), for `FULL_QUEUE_WAIT` at most;
/// then, or at once when the peer is not connected, its oldest message is dropped.
/// (The stdin thread and a relay's hub may both be here for one peer, so a queue can
/// pass `cap` by one message each.)
fn deliver(q: &PeerQueue, item: Arc<Outgoing>) {
    let mut waiting: Option<Instant> = None;
    loop {
        if q.tx.len() < q.cap {
            if q.tx.send(item).is_err() {
                debug!("sender for {} has stopped", q.key);
                q.wire.count_queued(-1);
            }
            return;
        }
        let connected = q.wire.connected.load(Ordering::Relaxed);
        let since = *waiting.get_or_insert_with(Instant::now);
        if connected && since.elapsed() < FULL_QUEUE_WAIT {
            // A connected peer is draining its queue: wait for room. One stuck for
            // longer is cut off by its write time-out, and then loses its oldest.
            thread::sleep(ROOM_POLL);
            continue;
        }
        if drop_oldest(q) {
            let n = q.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if connected {
                warn!(
                    "{} took nothing for {:.0}s; dropped its oldest queued message ({n} so far)",
                    q.label,
                    FULL_QUEUE_WAIT.as_secs_f64()
                );
            } else if n == 1 || n.is_multiple_of(1000) {
                warn!(
                    "{} is not taking messages; dropped {n} oldest so far",
                    q.label
                );
            }
        }
        waiting = None;
    }
}

/// Makes room in a full queue by dropping its oldest message; false when the sender
/// thread took it first.
fn drop_oldest(q: &PeerQueue) -> bool {
    let dropped = q.drain.try_recv().is_ok();
    if dropped {
        q.wire.count_queued(-1);
    }
    dropped
}
