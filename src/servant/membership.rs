//! Who is on the network: the manager's list and its changes, as the link reports them,
//! turned into senders started and stopped (the article's `Winsock1_DataArrival` filling
//! the servants' list), and a grace period after a manager change.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::unbounded;
use log::{info, warn};

use crate::protocol::{PeerEntry, PeerList};

use super::dispatch::PeerQueue;
use super::link::LinkEvent;
use super::neighbors::link::ToDriver;
use super::sender;
use super::sending::Target;
use super::state::{grace_for, Core, Peer};
use super::switch;
use super::wire::{Outgoing, Wire};

impl Core {
    /// What the link reports (the article's `Winsock1_DataArrival`, split into events).
    pub(super) fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Up { list, another } => {
                self.manager_up = true;
                self.grace = grace_for(list.timeout_ms);
                if self.epoch.is_empty() {
                    // Started without a manager (`<bootstrap>`): this is the first list.
                    info!("listed by the connection manager");
                    self.epoch = list.epoch.clone();
                } else if list.epoch != self.epoch {
                    // A restarted (or another) manager: its list fills up as servants
                    // re-register.
                    let what = if another {
                        "another connection manager lists us"
                    } else {
                        "the connection manager restarted"
                    };
                    info!(
                        "{what}; keeping known peers for {:.0}s while they rejoin",
                        self.grace.as_secs_f64()
                    );
                    self.grace_until = Some(Instant::now() + self.grace);
                    self.epoch = list.epoch.clone();
                }
                self.apply_list(list);
            }
            LinkEvent::List(list) => self.apply_list(list),
            LinkEvent::Join(entries) => {
                for e in entries {
                    self.add_or_update(e);
                }
                self.consider_overlay();
            }
            LinkEvent::Leave(entries) => {
                for e in entries {
                    let key = e.filing_key();
                    self.listed.remove(&key);
                    if let Some(id) = &e.id {
                        self.relayed().remove(id);
                        self.listed_since.remove(id);
                    }
                    if self.config.managers.len() > 1 {
                        // With several managers, leaving this one's list may only mean
                        // moving to another (back to the first, say), where we follow
                        // within three beats: kept for a grace period, dropped when it ends
                        // unless a list names it again.
                        info!(
                            "{} left the manager's list; kept for {:.0}s in case it moved to another manager",
                            e.label(),
                            self.grace.as_secs_f64()
                        );
                        let until = Instant::now() + self.grace;
                        self.grace_until = Some(self.grace_until.map_or(until, |t| t.max(until)));
                    } else {
                        self.remove(&key, "left the network");
                    }
                }
            }
            LinkEvent::Down(_) => self.manager_up = false,
            LinkEvent::Pull(Some(relay)) => self.pull_from(relay),
            LinkEvent::Sample(entries) => {
                for e in entries {
                    self.add_or_update(e);
                }
            }
            LinkEvent::Pull(None) => {
                self.hidden = false;
                if let Some(n) = &self.overlay {
                    let _ = n.tx.send(ToDriver::Hidden(false));
                }
                if let Some(p) = self.puller.take() {
                    info!("no longer pulling from {}", p.relay_label);
                }
                self.relayed.store(false, Ordering::Relaxed);
            }
        }
    }

    /// The article's `Winsock1_DataArrival` refilling `userList1`: makes the peer table
    /// match a whole list (keeping absent peers during a grace period).
    pub(super) fn apply_list(&mut self, list: PeerList) {
        self.my_offset = list.me().map(|me| me.offset);
        if let Some(ip) = list.me().and_then(|me| me.ip.parse().ok()) {
            self.my_ip = Some(ip);
        }
        let my_relay = list.me().and_then(|me| me.relay);
        let others: HashMap<String, PeerEntry> = list
            .peers
            .iter()
            .filter(|e| !self.is_me(e))
            .map(|e| (e.filing_key(), e.clone()))
            .collect();
        self.listed = others;
        // Before any sender starts: a newcomer to a large network starts none.
        self.consider_overlay();
        if let Some(relay) = my_relay.and_then(|r| list.peers.iter().find(|e| e.offset == r)) {
            self.pull_from(relay.clone());
        }
        for e in list.peers {
            self.add_or_update(e);
        }
        let listed = &self.listed;
        self.inbound
            .relayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| listed.contains_key(id));
        self.listed_since.retain(|id, _| listed.contains_key(id));
        self.inbound
            .seen
            .keep(self.listed.values().filter_map(|e| e.id.clone()).collect());
        self.inbound.seen.keep_addresses(
            self.listed
                .values()
                .filter_map(|e| e.ip.parse::<IpAddr>().ok())
                .collect(),
        );
        self.refresh_banned_authors();
        if self.grace_until.is_none() {
            self.drop_unlisted();
        }
        self.consider_overlay();
    }

    pub(super) fn end_grace(&mut self) {
        if self.grace_until.is_some_and(|t| Instant::now() >= t) {
            self.grace_until = None;
            self.drop_unlisted();
        }
    }

    pub(super) fn drop_unlisted(&mut self) {
        let gone: Vec<String> = self
            .peers
            .keys()
            .filter(|k| !self.listed.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key, "is no longer listed");
        }
    }

    /// Starts (or keeps, or restarts) the sender for a listed peer. A peer behind a
    /// firewall gets none: it pulls our messages from its relay.
    pub(super) fn add_or_update(&mut self, entry: PeerEntry) {
        if self.is_me(&entry) {
            return;
        }
        let key = entry.filing_key();
        if self.overlay.is_some() && self.listed.get(&key) == Some(&entry) {
            // Sampled again: its key is learnt, its name pinned and the overlay told of it
            // already. (Samples repeat servants; decoding each key again was 7 % of what
            // 1,000 idle servants did, `perf` found.)
            return;
        }
        self.listed.insert(key.clone(), entry.clone());
        self.note_relayed(&entry);
        self.note_banned(&entry);
        if let Some(id) = &entry.id {
            self.inbound.seen.keep_one(id, entry.ip.parse().ok());
        }
        // Its key is learnt (and its name pinned) even when it is relayed: its lines
        // reach us through relays, and are checked with it.
        let expect = self.key_of(&entry);
        if let Some(n) = &self.overlay {
            // In the overlay, a listed servant is someone to know, not a link to open.
            if let Some(c) = switch::contact_of(&entry) {
                let _ = n.tx.try_send(ToDriver::Learn(vec![c]));
            }
            return;
        }
        if let Some(relay) = entry.relay {
            if let Some(p) = self.stop_sender(&key) {
                info!(
                    "{} is behind a firewall: no longer connecting to it; it pulls our messages from slot {relay}",
                    p.entry.label()
                );
            }
            return;
        }
        let addr = match entry.ip.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, entry.port),
            Err(_) => {
                warn!(
                    "the manager lists {} with a bad address {:?}; ignored",
                    entry.label(),
                    entry.ip
                );
                return;
            }
        };
        if let Some(p) = self.peers.get_mut(&key) {
            if p.addr == addr {
                p.entry = entry;
                return;
            }
            // Same servant, new address: start over with a fresh sender.
            self.remove(&key, "moved");
        }
        // Unbounded, held to `<queue>` by `dispatch::deliver` (see `PeerQueue::tx`).
        let (tx, rx) = unbounded::<Arc<Outgoing>>();
        let wire = Arc::new(Wire::default());
        let complain = {
            let (writer, id) = (Arc::clone(&self.writer), entry.id.clone());
            Box::new(move || {
                if let Some(id) = &id {
                    writer.complain(id);
                }
            })
        };
        let Some(expect) = expect else {
            return;
        };
        let target = Target {
            addr,
            label: entry.label(),
            identity: Arc::clone(&self.inbound.identity),
            name: self.name.clone(),
            expect: Some(expect),
            network: self.inbound.network.clone(),
            complain,
            relayed: Arc::clone(&self.relayed),
            said: {
                let (said, id) = (Arc::clone(&self.said), entry.id.clone());
                Box::new(move |inc, seq| {
                    if let Some(id) = &id {
                        said.note(id, inc, seq);
                    }
                })
            },
        };
        match sender::spawn(target, rx.clone(), Arc::clone(&wire)) {
            Ok(thread) => {
                self.dispatch.add(PeerQueue {
                    key: key.clone(),
                    label: entry.label(),
                    tx: tx.clone(),
                    cap: self.config.queue,
                    drain: rx.clone(),
                    wire: Arc::clone(&wire),
                    dropped: Default::default(),
                });
                // Said once its queue takes what is typed: from this line on, the peer
                // hears every line (scripts and tests wait for it).
                info!(
                    "peer joined: {} at {addr} (slot {})",
                    entry.label(),
                    entry.offset
                );
                self.peers.insert(
                    key,
                    Peer {
                        entry,
                        addr,
                        tx,
                        drain: rx,
                        wire,
                        thread,
                    },
                );
            }
            Err(e) => warn!(
                "cannot start a sender for {}: {e}; it will not hear from us",
                entry.label()
            ),
        }
    }
}
