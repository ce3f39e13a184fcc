//! The core's part in relaying, both ways: pulling from the relay the manager names when
//! we cannot be reached (and checking that it passes on what the others say), and noting
//! the servants the manager has told to pull from us.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};

use crate::protocol::PeerEntry;

use super::neighbors::link::ToDriver;
use super::puller::Puller;
use super::relay_watch;
use super::state::Core;

impl Core {
    /// The article's "pull from another peer": we cannot be reached, so fetch every
    /// message from `relay`. A new relay replaces the old one (the manager chose again).
    pub(super) fn pull_from(&mut self, relay: PeerEntry) {
        self.hidden = true;
        if let Some(n) = &self.overlay {
            // In the overlay the links it opens carry everything, both ways.
            let _ = n.tx.send(ToDriver::Hidden(true));
            return;
        }
        let Ok(ip) = relay.ip.parse::<IpAddr>() else {
            warn!(
                "the manager named a relay with a bad address {:?}",
                relay.ip
            );
            return;
        };
        let addr = SocketAddr::new(ip, relay.port);
        if self.puller.as_ref().is_some_and(|p| p.addr == addr) {
            return;
        }
        info!(
            "the manager finds us unreachable; pulling from {} at {addr}",
            relay.label()
        );
        // The old puller (if any) stops when dropped here, after the new one starts: what
        // both deliver is shown once.
        let key = self.key_of(&relay);
        if key.is_none() {
            warn!(
                "the manager named {} as our relay without a usable key",
                relay.label()
            );
            return;
        }
        match Puller::start(
            relay.label(),
            addr,
            key,
            self.joined,
            Arc::clone(&self.inbound),
        ) {
            Ok(p) => {
                self.puller = Some(p);
                self.relay_watch = Some((Instant::now(), false));
                self.relayed.store(true, Ordering::Relaxed);
            }
            Err(e) => warn!("cannot start pulling from {}: {e}", relay.label()),
        }
    }

    /// While we pull from a relay: if a servant we send to said it wrote a line that the
    /// relay has not brought in `relay_watch::GRACE`, the relay fails us; ask the manager
    /// for another, once per relay.
    pub(super) fn watch_relay(&mut self, now: Instant) {
        let (Some(p), Some((since, false))) = (&self.puller, self.relay_watch) else {
            return;
        };
        let banned = &self.inbound.banned_authors;
        let late = self
            .said
            .overdue(&self.inbound.seen, since, now, &|id| banned.contains(id));
        let relay = p.key.map(|k| k.id());
        let others = self
            .listed
            .values()
            .filter(|e| e.relay.is_none() && e.id.is_some() && e.id != relay)
            .count();
        let Some(late) = relay_watch::verdict(&late, relay.as_deref(), others) else {
            return;
        };
        let who = self
            .listed
            .values()
            .find(|e| e.id.as_deref() == Some(late.id.as_str()))
            .map_or(late.id.clone(), PeerEntry::label);
        warn!(
            "our relay {} has not passed on line {} of {who} in {} s (the last shown is {}); asking the manager for another",
            p.relay_label,
            late.seq,
            relay_watch::GRACE.as_secs(),
            late.shown
        );
        self.relay_watch = Some((since, true));
        if let Err(e) = self.writer.replace_relay() {
            warn!("cannot ask the manager for another relay: {e}");
        }
    }

    /// Keeps `Inbound::relayed` in step with the list: `e` pulls from us when its
    /// `<relay>` is our slot, and is caught up from when it was first listed here (what
    /// was written to it while the others could not reach it, and nothing before it came).
    pub(super) fn note_relayed(&mut self, e: &PeerEntry) {
        let Some(id) = &e.id else { return };
        let since = *self
            .listed_since
            .entry(id.clone())
            .or_insert_with(Instant::now);
        match (e.relay, self.my_offset) {
            (Some(r), Some(me)) if r == me => {
                self.relayed().entry(id.clone()).or_insert(since);
            }
            _ => {
                self.relayed().remove(id);
            }
        }
    }
}
