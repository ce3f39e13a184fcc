//! The connection manager's table of who is on the network.
//!
//! In the article this was `pDoc`, an MSXML document of `<peer>` elements guarded by a
//! Win32 critical section, and `iPortMax`, the counter of listen ports handed out. Here it
//! is a plain struct that `manager` keeps behind one `Mutex` (the critical section). Every
//! method runs in a few microseconds and does no I/O: pushes to other servants go into
//! their bounded outboxes (`outbox`), which never block, so the lock is never held while
//! a socket is written.
//!
//! Changes are queued without waking the clients' writer threads: the outboxes that got
//! one are collected in `nudges`, and the manager's `publish` thread wakes them after a
//! moment (see `outbox`), outside the lock.
//!
//! Why pushes are queued under the lock: a servant must see the list and the changes to
//! it in the order they happened. Taking a snapshot for one servant and queueing a change
//! for it in the same critical section is what guarantees that a `<join>` never overtakes
//! the `<peers>` it follows.
//!
//! The registry also keeps the manager's view of who cannot be reached (the article's
//! closing section): complaints feed `relay::Suspicion`; a servant found unreachable is
//! given a relay, listed with `<relay>` so others stop connecting to it, and told to pull
//! with `<pull>`. When a relay leaves, its clients get another at once.
//!
//! What it keeps is split by kind: one client's row (`slot`), the list's documents made
//! from the rows (`document`), the changes waiting for the writers (`pushes`) and who
//! cannot be reached (`reach`). This file holds the table itself and the changes to it:
//! connecting, listing, removing, and announcing each change to the others.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::document::Documents;
use self::pushes::Pushes;
use self::slot::Slot;
use crate::overlay::rng::Rng;
use crate::protocol::{peer_xml, ManagerMessage, PeerEntry};
use crate::relay::Suspicion;

mod document;
mod pushes;
mod reach;
mod slot;

pub use self::document::DocumentView;
pub use self::slot::{Outbox, Ticket};

/// What a change did, for the manager to log and act on.
#[derive(Debug)]
pub struct Change<C> {
    pub entry: PeerEntry,
    pub effects: Effects<C>,
}

/// What the registry did along the way, to be logged and acted on after the lock is
/// released (logging and closing sockets are I/O).
#[derive(Debug)]
pub struct Effects<C> {
    /// Clients removed on the registry's own account (not reading their pushes, or
    /// replaced by a newer connection of the same servant): close their connections.
    pub dropped: Vec<Dropped<C>>,
    /// Decisions about unreachable servants and relays, with their reasons.
    pub notes: Vec<String>,
}

impl<C> Default for Effects<C> {
    fn default() -> Self {
        Effects {
            dropped: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// A client the registry removed on its own, its closer, and why.
pub type Dropped<C> = (PeerEntry, C, &'static str);

struct Removed<C> {
    entry: PeerEntry,
    closer: C,
    was_listed: bool,
}

/// The peer table. See the module docs for the locking rule.
pub struct Registry<C> {
    slots: BTreeMap<u32, Slot<C>>,
    serial: u64,
    /// Offset of the listed servant with each id, to replace a stale registration.
    by_id: HashMap<String, u32>,
    /// The next listen port to hand out (the article's `iPortMax`).
    next_port: u16,
    first_port: u16,
    version: u64,
    /// The list as servants read it, with its epoch and timeout.
    docs: Documents,
    /// Complaints about unreachable servants.
    suspicion: Suspicion,
    /// How long a servant must be listed before its complaints count and it may relay.
    trust_after: Duration,
    /// Whether the manager dials back newcomers (then only those it reached may relay).
    probing: bool,
    /// Complaints that did not count, logged once a minute per complainer.
    uncounted: crate::limits::LogLimiter<u32>,
    /// Changes queued for writers not woken yet.
    pushes: Pushes,
}

impl<C> Registry<C> {
    pub fn new(first_port: u16, epoch: String, timeout_ms: u64) -> Registry<C> {
        Registry {
            suspicion: Suspicion::new(3),
            trust_after: Duration::ZERO,
            probing: false,
            uncounted: crate::limits::LogLimiter::new(Duration::from_secs(60)),
            slots: BTreeMap::new(),
            serial: 0,
            by_id: HashMap::new(),
            next_port: first_port,
            first_port,
            version: 0,
            docs: Documents::new(epoch, timeout_ms),
            pushes: Pushes::default(),
        }
    }

    /// Sets what tells the manager's `publish` thread that writers wait for a nudge.
    pub fn on_news(&mut self, tell: impl Fn() + Send + 'static) {
        self.pushes.on_news(tell);
    }

    /// The outboxes whose writers are to be woken for the changes gathered so far.
    pub fn take_nudges(&mut self) -> Vec<Outbox> {
        self.pushes.take()
    }

    /// No publish thread: from now on changes wake their writers at once.
    pub fn wake_writers_at_once(&mut self) {
        self.pushes.wake_at_once();
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn connections(&self) -> usize {
        self.slots.len()
    }

    /// A new client connected: give it the lowest free slot and the next port, as the
    /// article's `p2p_ConnectionRequest` did. It is not listed until it listens.
    pub fn connect(&mut self, ip: IpAddr, outbox: Outbox, closer: C) -> (Ticket, u16) {
        let offset = (1..)
            .find(|o| !self.slots.contains_key(o))
            .expect("fewer than 2^32 slots");
        let port = self.next_port;
        self.next_port = if self.next_port == u16::MAX {
            self.first_port
        } else {
            self.next_port + 1
        };
        self.serial += 1;
        let slot = Slot::new(self.serial, closer, ip, port, outbox);
        let ticket = slot.ticket(offset);
        self.slots.insert(offset, slot);
        (ticket, port)
    }

    fn owns(&self, t: &Ticket) -> bool {
        self.slots.get(&t.offset).is_some_and(|s| s.held_by(t))
    }

    /// The client holding `t` listens on `port` and has proved `key` (whose fingerprint
    /// is `id`): list it and tell everyone else. A listed servant with the same id (a
    /// stale connection of the same process, say half-open after a network fault; it
    /// proved the same key) is dropped first and returned in `dropped`. `None` when `t` no
    /// longer holds its slot.
    pub fn listen(
        &mut self,
        t: &Ticket,
        port: u16,
        id: String,
        name: String,
        key: String,
    ) -> Option<Change<C>> {
        let id = Some(id);
        if !self.owns(t) {
            return None;
        }
        let mut fx = Effects::default();
        if let Some(old) = id.as_ref().and_then(|id| self.by_id.get(id)).copied() {
            if old != t.offset {
                let stale = self.slots[&old].ticket(old);
                if let Some(removed) = self.remove_slot(&stale, &mut fx) {
                    fx.dropped.push((
                        removed.entry,
                        removed.closer,
                        "replaced by a newer connection with the same id",
                    ));
                }
            }
        }
        let slot = self.slots.get_mut(&t.offset)?;
        let before = slot.listed.then(|| slot.entry(t.offset, false));
        if let Some(old_id) = slot.id.take() {
            self.by_id.remove(&old_id);
        }
        // Listed before under another id: servants file peers by id, so tell them the old
        // one left, or they would keep it as a stale peer.
        if let Some(before) = before.filter(|b| b.id != id) {
            self.announce(false, before, &mut fx);
        }
        let slot = self.slots.get_mut(&t.offset)?;
        if slot.port != port {
            slot.dialed_back = false;
        }
        slot.port = port;
        slot.id = id.clone();
        slot.name = Some(name);
        slot.key = Some(key);
        if !slot.listed {
            slot.listed_at = Some(Instant::now());
        }
        slot.listed = true;
        let entry = slot.entry(t.offset, false);
        slot.xml = Arc::from(peer_xml(&entry));
        if let Some(id) = id {
            self.by_id.insert(id, t.offset);
        }
        self.announce(true, entry.clone(), &mut fx);
        self.assign_waiting_relays(&mut fx);
        Some(Change { entry, effects: fx })
    }

    /// The client holding `t` is gone (the article's `p2p_Close` and `RemovePeerByOffset`). Returns the
    /// change when it was listed, so the others were told; `None` when it was never
    /// listed or had already been removed.
    pub fn remove(&mut self, t: &Ticket) -> Option<Change<C>> {
        let mut fx = Effects::default();
        let removed = self.remove_slot(t, &mut fx)?;
        removed.was_listed.then_some(Change {
            entry: removed.entry,
            effects: fx,
        })
    }

    fn remove_slot(&mut self, t: &Ticket, fx: &mut Effects<C>) -> Option<Removed<C>> {
        if !self.owns(t) {
            return None;
        }
        let slot = self.slots.remove(&t.offset)?;
        if let Some(id) = &slot.id {
            if self.by_id.get(id) == Some(&t.offset) {
                self.by_id.remove(id);
            }
        }
        let entry = slot.entry(t.offset, false);
        self.suspicion.forget(t.offset);
        if slot.listed {
            self.announce(false, entry.clone(), fx);
        }
        // Its relayed clients need another relay, at once.
        let orphans: Vec<u32> = self
            .slots
            .iter()
            .filter(|(_, s)| s.relay == Some(t.offset))
            .map(|(&o, _)| o)
            .collect();
        for o in orphans {
            if let Some(s) = self.slots.get_mut(&o) {
                s.relay = None;
            }
            fx.notes.push(format!(
                "relay {} left; finding another for slot {o}",
                entry.label()
            ));
            self.assign_relay(o, fx);
        }
        Some(Removed {
            entry,
            closer: slot.closer,
            was_listed: slot.listed,
        })
    }

    /// A new version of the list: tells every other listed client that `entry` joined
    /// (`<join>`) or left (`<leave>`).
    fn announce(&mut self, joined: bool, entry: PeerEntry, fx: &mut Effects<C>) {
        self.version += 1;
        let (version, offset, peers) = (self.version, entry.offset, vec![entry]);
        let message = if joined {
            ManagerMessage::Join { version, peers }
        } else {
            ManagerMessage::Leave { version, peers }
        };
        self.publish(offset, message.to_line(), fx);
    }

    /// Queues `line` for every listed client but `except`, without waking their writers
    /// (that is the `publish` thread's job). A client whose outbox is full is not reading:
    /// it is removed (which tells the others in turn) and its closer is added to `dropped`.
    fn publish(&mut self, except: u32, line: String, fx: &mut Effects<C>) {
        let stalled = self.pushes.queue(&self.slots, except, Arc::from(line));
        for t in stalled {
            if let Some(removed) = self.remove_slot(&t, fx) {
                fx.dropped
                    .push((removed.entry, removed.closer, "not reading its pushes"));
            }
        }
    }

    fn label(&self, offset: u32) -> String {
        match self.slots.get(&offset) {
            Some(s) => format!("{} (slot {offset})", s.entry(offset, false).label()),
            None => format!("slot {offset}"),
        }
    }

    /// The article's per-asker copy of `pDoc` in `p2p_DataArrival`: the whole peer document
    /// as the holder of `t` sees it: every listed servant, plus
    /// its own entry with `<me>TRUE</me>` (listed or not, so a newcomer learns its
    /// assigned port, as in the article).
    pub fn peer_document(&mut self, t: &Ticket) -> String {
        self.docs.whole(self.version, &self.slots, t)
    }

    /// `peer_document` as three parts: the others' view of the list, cached per version
    /// and shared (one reference count, not one per servant), cut around the asker's own
    /// entry, which is made for it. Taken under the lock in a microsecond or two, and
    /// written as it is (`writev`) after the lock is released.
    pub fn document_view(&mut self, t: &Ticket) -> DocumentView {
        self.docs.view(self.version, &self.slots, t)
    }

    /// `needs sample`: at most `count` listed servants other than the holder of `t`,
    /// chosen at random, as a `<sample>` line cut from the cached list (so a flood of
    /// samples costs what a flood of lists does: no walk over every servant).
    pub fn sample(&mut self, t: &Ticket, count: usize, rng: &mut Rng) -> String {
        self.docs.sample(self.version, &self.slots, t, count, rng)
    }

    /// `needs no changes` (`quiet`) or `needs changes`: whether the list's changes are
    /// pushed to the holder of `t`; the list's version now.
    pub fn set_quiet(&mut self, t: &Ticket, quiet: bool) -> u64 {
        if let Some(slot) = self.slots.get_mut(&t.offset).filter(|s| s.held_by(t)) {
            slot.quiet = quiet;
        }
        self.version
    }

    /// How many servants are listed.
    pub fn listed_count(&self) -> usize {
        self.slots.values().filter(|s| s.listed).count()
    }

    /// The listed servants, for the manager's console.
    pub fn listed(&self) -> Vec<PeerEntry> {
        self.slots
            .iter()
            .filter(|(_, s)| s.listed)
            .map(|(&o, s)| s.entry(o, false))
            .collect()
    }

    pub fn is_listed(&self, t: &Ticket) -> bool {
        self.owns(t) && self.slots[&t.offset].listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::peers_open_tag;

    /// A client whose outbox holds `bytes` (any one line fits an empty outbox).
    fn client(r: &mut Registry<()>, bytes: usize) -> (Ticket, u16, Outbox) {
        let o = Arc::new(crate::outbox::Outbox::new(bytes));
        let (t, p) = r.connect(IpAddr::from([10, 0, 0, 1]), Arc::clone(&o), ());
        (t, p, o)
    }

    fn queued(o: &Outbox) -> Vec<Arc<str>> {
        let mut v = Vec::new();
        o.take_now(&mut v);
        v
    }

    #[test]
    fn each_askers_document_is_the_list_with_its_own_entry_true() {
        let mut r = Registry::new(2224, "e".into(), 6000);
        let c: Vec<(Ticket, u16, Outbox)> = (0..6).map(|_| client(&mut r, 1 << 20)).collect();
        for (i, (t, _, _)) in c.iter().enumerate() {
            if i % 2 == 0 {
                r.listen(
                    t,
                    4000 + i as u16,
                    format!("id{i}"),
                    format!("n{i}"),
                    "k".into(),
                );
            }
        }
        r.remove(&c[2].0);
        for (t, _, _) in &c[..] {
            // What the document must be: every listed slot as others see it, the asker's
            // own (listed or not) with TRUE, in slot order.
            let mut want = peers_open_tag(r.version, &r.docs.epoch, r.docs.timeout_ms);
            for (&o, slot) in &r.slots {
                if o == t.offset && slot.serial == t.serial {
                    want.push_str(&peer_xml(&slot.entry(o, true)));
                } else if slot.listed {
                    want.push_str(&slot.xml);
                }
            }
            want.push_str("</peers>");
            assert_eq!(r.peer_document(t), want, "asker in slot {}", t.offset);
        }
    }

    #[test]
    fn slots_and_ports_follow_the_article() {
        let mut r = Registry::new(2224, "e".into(), 6000);
        let (t1, p1, _a) = client(&mut r, 1 << 16);
        let (t2, p2, _b) = client(&mut r, 1 << 16);
        assert_eq!((t1.offset, p1, t2.offset, p2), (1, 2224, 2, 2225));
        r.remove(&t1);
        let (t3, p3, _c) = client(&mut r, 1 << 16);
        assert_eq!(
            (t3.offset, p3),
            (1, 2226),
            "lowest free slot is reused; ports keep counting"
        );
        assert!(
            r.remove(&t1).is_none(),
            "an old ticket cannot remove the slot's new owner"
        );
        assert_eq!(r.connections(), 2);
    }

    #[test]
    fn only_listening_servants_are_listed_and_told() {
        let mut r = Registry::new(2224, "e".into(), 6000);
        let (a, _, rxa) = client(&mut r, 1 << 16);
        let (b, _, rxb) = client(&mut r, 1 << 16);
        r.listen(&a, 4000, "ida".into(), "alice".into(), "k".into());
        assert!(
            queued(&rxa).is_empty(),
            "a servant is not told of its own join"
        );
        assert!(queued(&rxb).is_empty(), "an unlisted client gets no pushes");
        let doc_b = r.peer_document(&b);
        assert!(
            doc_b.contains("<port>4000</port><offset>1</offset><me>FALSE</me><name>alice</name>")
        );
        assert!(doc_b.contains("<offset>2</offset><me>TRUE</me>"));
        let doc_a = r.peer_document(&a);
        assert!(
            !doc_a.contains("<offset>2</offset>"),
            "b is not listed to others before it listens"
        );
        r.listen(&b, 4001, "idb".into(), "n".into(), "k".into());
        let push = queued(&rxa).remove(0);
        assert!(push.starts_with("<join version=\"2\"><peer><ip>10.0.0.1</ip><port>4001</port>"));
        let gone = r.remove(&b).unwrap();
        assert_eq!(gone.entry.port, 4001);
        assert!(queued(&rxa)[0].starts_with("<leave version=\"3\">"));
    }

    #[test]
    fn a_stalled_client_is_dropped_and_a_stale_id_replaced() {
        let mut r = Registry::new(2224, "e".into(), 6000);
        let (a, _, _rxa) = client(&mut r, 0);
        r.listen(&a, 4000, "ida".into(), "n".into(), "k".into());
        let (b, _, _rxb) = client(&mut r, 1 << 16);
        let change = r
            .listen(&b, 4001, "idb".into(), "n".into(), "k".into())
            .unwrap();
        assert!(change.effects.dropped.is_empty());
        let (c, _, _rxc) = client(&mut r, 1 << 16);
        let change = r
            .listen(&c, 4002, "idc".into(), "n".into(), "k".into())
            .unwrap();
        assert_eq!(
            change.effects.dropped.len(),
            1,
            "a's outbox of one line is full"
        );
        assert_eq!(change.effects.dropped[0].0.offset, a.offset);
        assert!(!r.is_listed(&a));
        let (d, _, _rxd) = client(&mut r, 1 << 16);
        let change = r
            .listen(&d, 4003, "idb".into(), "n".into(), "k".into())
            .unwrap();
        assert_eq!(
            change.effects.dropped[0].0.offset, b.offset,
            "the stale registration of idb is dropped"
        );
        assert_eq!(r.listed().len(), 2);
        assert!(r.remove(&b).is_none());
    }

    #[test]
    fn listening_again_under_another_id_announces_the_old_one_left() {
        let mut r = Registry::new(2224, "e".into(), 6000);
        let (a, _, rxa) = client(&mut r, 1 << 16);
        r.listen(&a, 4000, "ida".into(), "n".into(), "k".into());
        let (b, _, _rxb) = client(&mut r, 1 << 16);
        r.listen(&b, 4001, "old".into(), "n".into(), "k".into());
        r.listen(&b, 4001, "new".into(), "n".into(), "k".into());
        let pushes = queued(&rxa);
        assert_eq!(pushes.len(), 3, "{pushes:?}");
        assert!(
            pushes[1].starts_with("<leave version=\"3\">") && pushes[1].contains("<id>old</id>")
        );
        assert!(
            pushes[2].starts_with("<join version=\"4\">") && pushes[2].contains("<id>new</id>")
        );
    }

    #[test]
    fn a_probe_of_a_port_no_longer_used_changes_nothing() {
        let mut r = Registry::new(2224, "e".into(), 6000);
        let (a, _, _rxa) = client(&mut r, 1 << 16);
        r.listen(&a, 4000, "ida".into(), "n".into(), "k".into());
        r.listen(&a, 4001, "ida".into(), "n".into(), "k".into());
        let fx = r.unreachable_by_probe(&a, 4000, "timed out");
        assert!(fx.notes.is_empty(), "{:?}", fx.notes);
        let fx = r.unreachable_by_probe(&a, 4001, "timed out");
        assert!(
            fx.notes.iter().any(|n| n.contains("is unreachable")),
            "{:?}",
            fx.notes
        );
    }

    #[test]
    fn a_client_that_cannot_take_its_pull_is_dropped() {
        let mut r = Registry::new(2224, "e".into(), 6000);
        let (a, _, _rxa) = client(&mut r, 1 << 16);
        r.listen(&a, 4000, "ida".into(), "n".into(), "k".into());
        let (b, _, _rxb) = client(&mut r, 0);
        r.listen(&b, 4001, "idb".into(), "n".into(), "k".into());
        let (c, _, _rxc) = client(&mut r, 1 << 16);
        // b's outbox (room for one line) now holds c's join.
        assert!(r
            .listen(&c, 4002, "idc".into(), "n".into(), "k".into())
            .unwrap()
            .effects
            .dropped
            .is_empty());
        let fx = r.unreachable_by_probe(&b, 4001, "timed out");
        assert_eq!(fx.dropped.len(), 1, "{:?}", fx.notes);
        assert_eq!(fx.dropped[0].0.offset, b.offset);
        assert!(!r.is_listed(&b));
    }
}
