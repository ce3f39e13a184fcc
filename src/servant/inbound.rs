//! What every receiving thread shares: who we are, the keys and pins of the servants we
//! know, the bans, the dedup table, the relay hub, the shared files, and where shown lines
//! go.
//!
//! The listener's `recv-ADDR` threads, the relay puller, the overlay's links and the
//! typist all read it; the core writes the few parts that change (the relayed servants,
//! the authors banned by address) behind their own locks.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;

use super::authors::Authors;
use super::bans::Bans;
use super::console::Pipe;
use super::hub::Hub;
use super::known::KnownPeers;
use super::neighbors::Door;
use super::seen::Seen;
use crate::identity::{Identity, NetworkKey};
use crate::limits::LogLimiter;
use crate::lines::LineReader;
use crate::transfer::Library;

/// What every receiving thread shares.
pub struct Inbound {
    /// Who we are, in every handshake.
    pub identity: Arc<Identity>,
    pub name: String,
    /// The network's shared secret, when it has one.
    pub network: Option<NetworkKey>,
    /// Keys of the servants we know of, to check lines not tagged by their author.
    pub authors: Authors,
    /// The key pinned for each name (trust on first use).
    pub known: KnownPeers,
    /// The servants the manager has made us relay to, by id, with when we learnt it:
    /// only they are served a `PULL`, and with nothing older. Written by the core.
    pub relayed: Mutex<HashMap<String, Instant>>,
    /// The ids of the servants listed at a banned address (bans follow the author);
    /// written by the core.
    pub banned_authors: BannedAuthors,
    /// Lines by those authors dropped, for `/bans`.
    pub banned_lines: AtomicU64,
    /// The number of the last line we have written ourselves (set by the typist).
    pub said: AtomicU64,
    /// Refused handshakes, logged once per address a minute.
    pub refusals: Mutex<LogLimiter<IpAddr>>,
    /// Where links that overlay neighbours open are handed (closed in the full mesh).
    pub links: Arc<Door>,
    /// What we relay to servants behind firewalls (empty unless one pulls from us).
    pub hub: Hub,
    /// The files we share, for `FILES`, `MANIFEST` and `GET` requests.
    pub library: Arc<Library>,
    pub bans: Arc<Bans>,
    pub seen: Seen,
    /// Lines for standard output (the article's `txtChat1`).
    pub out: Sender<String>,
    /// Standard output when it is not a terminal: receivers print into it themselves.
    pub pipe: Option<Arc<Pipe>>,
}

/// The ids banned because a ban covers the address they are listed at. Asked for every
/// line received, by every receiving thread: while there are none (the usual case) the
/// answer comes from an atomic, without the lock.
#[derive(Default)]
pub struct BannedAuthors {
    ids: Mutex<HashSet<String>>,
    count: AtomicUsize,
}

impl BannedAuthors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, id: &str) -> bool {
        !self.is_empty() && self.lock().contains(id)
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the whole set.
    pub fn set(&self, ids: HashSet<String>) {
        let mut set = self.lock();
        *set = ids;
        self.count.store(set.len(), Ordering::Relaxed);
    }

    /// Adds `id` to the set, or takes it out.
    pub fn mark(&self, id: &str, banned: bool) {
        let mut set = self.lock();
        if banned {
            set.insert(id.to_owned());
        } else {
            set.remove(id);
        }
        self.count.store(set.len(), Ordering::Relaxed);
    }
}

impl Inbound {
    /// Shows a received line: straight into standard output when it is a pipe (printed
    /// by this thread), through the `stdout` thread when it is a terminal.
    pub fn show(&self, parts: &[&str]) {
        match &self.pipe {
            Some(pipe) => pipe.push_parts(parts),
            None => {
                let _ = self.out.send(parts.concat());
            }
        }
    }

    /// Writes out what this thread has shown, unless another whole line is already
    /// waiting in `reader` (then it is written with that one: one write per burst).
    pub fn flush_unless_more<R: std::io::Read>(&self, reader: &LineReader<R>) {
        if let Some(pipe) = &self.pipe {
            if !reader.has_line() {
                pipe.flush();
            }
        }
    }
}
