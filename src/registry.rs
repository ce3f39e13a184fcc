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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::outbox::Refused;
use crate::overlay::rng::Rng;
use crate::protocol::{peer_xml, peers_open_tag, ManagerMessage, PeerEntry};
use crate::relay::Suspicion;

mod reach;

/// Where lines for one client's writer thread are queued.
pub type Outbox = Arc<crate::outbox::Outbox>;

/// Names one connection for its whole life. Offsets are reused (lowest free first, as in
/// the article), so a thread that outlives its slot must not remove the slot's next owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub offset: u32,
    serial: u64,
}

/// One connected client: a servant, or a person with telnet.
struct Slot<C> {
    serial: u64,
    /// Closes this client's connection (the manager's socket); handed back to the caller
    /// when the registry drops a client, so the socket is shut outside the lock.
    closer: C,
    ip: IpAddr,
    /// The assigned port until the client says `listening`, then the port it listens on.
    port: u16,
    name: Option<String>,
    id: Option<String>,
    /// The public key it proved (hex), once listed.
    key: Option<String>,
    /// Listed to others only once it listens (`listening`).
    listed: bool,
    /// Asked for no `<join>`/`<leave>` pushes (`needs no changes`).
    quiet: bool,
    /// Written by `publish` under the lock; read by this client's writer thread.
    outbox: Outbox,
    /// This peer's `<peer>` element as others see it (me FALSE), cached while listed.
    xml: Arc<str>,
    /// Found unreachable: it needs a relay (and has one when `relay` is set).
    unreachable: bool,
    /// The offset of the servant relaying to it.
    relay: Option<u32>,
    /// When it was listed (a newcomer's complaints do not count and it relays to nobody).
    listed_at: Option<Instant>,
    /// The manager's dial-back reached it: complaints cannot condemn it, and it may relay.
    dialed_back: bool,
    /// Found unreachable with no relay to be had, and logged so once.
    waiting_noted: bool,
    /// The ids of the relays this (relayed) servant gave up, never chosen for it again.
    abandoned: Vec<String>,
    /// The addresses of the relayed servants that gave this relay up.
    abandoned_by: BTreeSet<IpAddr>,
    /// When this (relayed) servant last gave up a relay.
    replaced_at: Option<Instant>,
}

impl<C> Slot<C> {
    fn entry(&self, offset: u32, me: bool) -> PeerEntry {
        PeerEntry {
            ip: self.ip.to_string(),
            port: self.port,
            offset,
            me,
            name: self.name.clone(),
            id: self.id.clone(),
            key: self.key.clone(),
            relay: self.relay,
        }
    }
}

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
    epoch: String,
    timeout_ms: u64,
    /// Complaints about unreachable servants.
    suspicion: Suspicion,
    /// How long a servant must be listed before its complaints count and it may relay.
    trust_after: Duration,
    /// Whether the manager dials back newcomers (then only those it reached may relay).
    probing: bool,
    /// Complaints that did not count, logged once a minute per complainer.
    uncounted: crate::limits::LogLimiter<u32>,
    /// Outboxes holding changes their writers have not been woken for.
    nudges: Vec<Outbox>,
    /// Called when `nudges` stops being empty (it must not block).
    on_news: Option<Box<dyn Fn() + Send>>,
    /// The others' view of the list at one version (see `document_view`).
    doc_cache: Option<DocCache>,
}

/// The peer document as every listed servant appears in it, and where each one's
/// `<peer>` element stands.
struct DocCache {
    version: u64,
    doc: Arc<str>,
    /// (offset, start, end) of each listed servant's element, in offset order.
    spans: Vec<(u32, usize, usize)>,
    /// Where `</peers>` begins.
    end: usize,
}

/// One asker's peer document: `doc` with `doc[cut.0..cut.1]` replaced by `own`.
pub struct DocumentView {
    doc: Arc<str>,
    own: String,
    cut: (usize, usize),
}

impl DocumentView {
    /// The document's three parts, in order.
    pub fn parts(&self) -> [&str; 3] {
        [&self.doc[..self.cut.0], &self.own, &self.doc[self.cut.1..]]
    }
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
            epoch,
            timeout_ms,
            nudges: Vec::new(),
            on_news: None,
            doc_cache: None,
        }
    }

    /// Sets what tells the manager's `publish` thread that writers wait for a nudge.
    pub fn on_news(&mut self, tell: impl Fn() + Send + 'static) {
        self.on_news = Some(Box::new(tell));
    }

    /// The outboxes whose writers are to be woken for the changes gathered so far.
    pub fn take_nudges(&mut self) -> Vec<Outbox> {
        std::mem::take(&mut self.nudges)
    }

    /// No publish thread: from now on changes wake their writers at once.
    pub fn wake_writers_at_once(&mut self) {
        self.on_news = None;
        for outbox in self.nudges.drain(..) {
            outbox.nudge();
        }
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
        let serial = self.serial;
        self.slots.insert(
            offset,
            Slot {
                serial,
                closer,
                ip,
                port,
                name: None,
                id: None,
                key: None,
                listed: false,
                quiet: false,
                outbox,
                xml: Arc::from(""),
                unreachable: false,
                relay: None,
                listed_at: None,
                dialed_back: false,
                waiting_noted: false,
                abandoned: Vec::new(),
                abandoned_by: BTreeSet::new(),
                replaced_at: None,
            },
        );
        (Ticket { offset, serial }, port)
    }

    fn owns(&self, t: &Ticket) -> bool {
        self.slots
            .get(&t.offset)
            .is_some_and(|s| s.serial == t.serial)
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
                let serial = self.slots[&old].serial;
                if let Some(removed) = self.remove_slot(
                    &Ticket {
                        offset: old,
                        serial,
                    },
                    &mut fx,
                ) {
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
        let line: Arc<str> = Arc::from(line);
        let mut stalled = Vec::new();
        let was_quiet = self.nudges.is_empty();
        for (&offset, slot) in &self.slots {
            if offset == except || !slot.listed || slot.quiet {
                continue;
            }
            match slot.outbox.push_change(line.clone()) {
                Ok(true) if self.on_news.is_some() => self.nudges.push(Arc::clone(&slot.outbox)),
                // Nobody gathers changes (no publish thread): wake the writer now.
                Ok(true) => slot.outbox.nudge(),
                Ok(false) => {}
                Err(Refused::Full) => stalled.push(Ticket {
                    offset,
                    serial: slot.serial,
                }),
                // Its connection is closing; the closing thread removes it.
                Err(Refused::Closed) => {}
            }
        }
        if was_quiet && !self.nudges.is_empty() {
            if let Some(tell) = &self.on_news {
                tell();
            }
        }
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
        if self
            .doc_cache
            .as_ref()
            .is_some_and(|c| c.version == self.version)
        {
            return self.document_view(t).parts().concat();
        }
        // The list changed since the cache was made (a join storm changes it at every
        // join): made directly, without a cache that the next join would spoil.
        let mut doc = peers_open_tag(self.version, &self.epoch, self.timeout_ms);
        doc.reserve(self.slots.len() * 200 + 10);
        for (&o, slot) in &self.slots {
            if o == t.offset && slot.serial == t.serial {
                doc.push_str(&peer_xml(&slot.entry(o, true)));
            } else if slot.listed {
                doc.push_str(&slot.xml);
            }
        }
        doc.push_str("</peers>");
        doc
    }

    /// `peer_document` as three parts: the others' view of the list, cached per version
    /// and shared (one reference count, not one per servant), cut around the asker's own
    /// entry, which is made for it. Taken under the lock in a microsecond or two, and
    /// written as it is (`writev`) after the lock is released.
    pub fn document_view(&mut self, t: &Ticket) -> DocumentView {
        self.fresh_cache();
        let cache = self.doc_cache.as_ref().expect("made by fresh_cache");
        let own = self
            .slots
            .get(&t.offset)
            .filter(|s| s.serial == t.serial)
            .map(|s| peer_xml(&s.entry(t.offset, true)));
        // Where the asker's entry goes: in place of its own listed one, or where its slot
        // falls among the others.
        let cut = match cache.spans.binary_search_by_key(&t.offset, |&(o, _, _)| o) {
            Ok(i) if own.is_some() => (cache.spans[i].1, cache.spans[i].2),
            Ok(i) => (cache.spans[i].1, cache.spans[i].1),
            Err(i) => {
                let at = cache.spans.get(i).map_or(cache.end, |&(_, start, _)| start);
                (at, at)
            }
        };
        DocumentView {
            doc: Arc::clone(&cache.doc),
            own: own.unwrap_or_default(),
            cut,
        }
    }

    /// Makes the cached view of the list for this version, if it is not made yet.
    fn fresh_cache(&mut self) {
        if self
            .doc_cache
            .as_ref()
            .is_some_and(|c| c.version == self.version)
        {
            return;
        }
        let mut doc = peers_open_tag(self.version, &self.epoch, self.timeout_ms);
        doc.reserve(self.slots.len() * 200 + 10);
        let mut spans = Vec::with_capacity(self.slots.len());
        for (&o, slot) in &self.slots {
            if slot.listed {
                let start = doc.len();
                doc.push_str(&slot.xml);
                spans.push((o, start, doc.len()));
            }
        }
        let end = doc.len();
        doc.push_str("</peers>");
        self.doc_cache = Some(DocCache {
            version: self.version,
            doc: Arc::from(doc),
            spans,
            end,
        });
    }

    /// `needs sample`: at most `count` listed servants other than the holder of `t`,
    /// chosen at random, as a `<sample>` line cut from the cached list (so a flood of
    /// samples costs what a flood of lists does: no walk over every servant).
    pub fn sample(&mut self, t: &Ticket, count: usize, rng: &mut Rng) -> String {
        self.fresh_cache();
        let cache = self.doc_cache.as_ref().expect("made by fresh_cache");
        let own = cache
            .spans
            .binary_search_by_key(&t.offset, |&(o, _, _)| o)
            .ok()
            .filter(|_| {
                self.slots
                    .get(&t.offset)
                    .is_some_and(|s| s.serial == t.serial)
            });
        let others: usize = cache.spans.len() - usize::from(own.is_some());
        let mut chosen: Vec<usize> = Vec::with_capacity(count.min(others));
        if others <= 2 * count {
            let all: Vec<usize> = (0..cache.spans.len()).filter(|&i| Some(i) != own).collect();
            chosen = rng.sample(&all, count);
        } else {
            // Far more listed than asked for: draw until enough distinct ones came.
            while chosen.len() < count {
                let i = rng.below(cache.spans.len());
                if Some(i) != own && !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
        }
        let mut doc = format!(
            "<sample version=\"{}\" total=\"{}\">",
            self.version,
            cache.spans.len()
        );
        for i in chosen {
            let (_, start, end) = cache.spans[i];
            doc.push_str(&cache.doc[start..end]);
        }
        doc.push_str("</sample>");
        doc
    }

    /// `needs no changes` (`quiet`) or `needs changes`: whether the list's changes are
    /// pushed to the holder of `t`; the list's version now.
    pub fn set_quiet(&mut self, t: &Ticket, quiet: bool) -> u64 {
        if let Some(slot) = self
            .slots
            .get_mut(&t.offset)
            .filter(|s| s.serial == t.serial)
        {
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
            let mut want = peers_open_tag(r.version, &r.epoch, r.timeout_ms);
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
