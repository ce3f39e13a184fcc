//! The servant in an overlay: a few neighbours instead of a link to every servant.
//!
//! Past `<fullmesh>` servants, the article's "send to every servant" costs two threads
//! per servant on every servant. Here one thread, `overlay`, owns the protocol's state
//! (`crate::overlay`, HyParView and Plumtree, the code the simulator runs) and the links
//! to its neighbours (`link`): it hands the state what arrives, the time and its timers,
//! and does what the state asks (send this line to that neighbour, dialling it first;
//! close that link; show this line). Every thread that talks to it does so through one
//! bounded channel, so the state needs no lock and a flood of lines slows its senders'
//! sockets instead of filling memory.
//!
//! ```text
//!   nrecv-ID ──┐                                   ┌──> nsend-ID ──> neighbour
//!   nrecv-ID ──┼──> overlay (Overlay<Wire>, timers) ┼──> nsend-ID ──> neighbour
//!   core, stdin┘        │ shows each line once       └──> ...
//!                       └──> listener::Forwarded ──> stdout
//! ```
//!
//! A servant holds at most `<degree>` neighbours and a few links being tried, so about
//! twice as many threads, whatever the size of the network.

pub mod bell;
pub mod link;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, TrySendError};
use log::{debug, info, warn};

use crate::overlay::{Action, Input, LineId, Message, Overlay, Params, Rng, Timer};
use crate::protocol::overlay::{to_line, Contact, Signed, Wire};
use crate::protocol::PeerLine;
use bell::{Bell, Waiter};
use link::{Endpoint, ToDriver};

/// Lines queued for one neighbour at most. A neighbour that lets this many pile up is
/// not reading: its link is closed, and the tree repairs around it.
pub const LINK_QUEUE: usize = 1024;
/// Messages waiting for the `overlay` thread at most; past it, links wait to hand theirs
/// (and TCP slows their neighbours). 1,024, not more: a bounded channel allocates and
/// touches every slot when it is made, and 4,096 messages of 150 bytes were 600 KiB of
/// a servant's resident memory, most of it never used.
pub const EVENTS: usize = 1024;
/// Known servants kept to rejoin through when the overlay loses every neighbour.
const CONTACTS: usize = 4096;
/// How often an isolated servant tries to join again.
const REJOIN_EVERY: Duration = Duration::from_secs(2);
/// As often, until the first neighbour: a newcomer that picked a servant killed a moment
/// ago (still listed until the manager's time-out) hears nothing until it tries again,
/// and lines written meanwhile are not fetched for it (it counts as new from its first
/// neighbour). `make stress`'s churn, a servant killed every other second, found it.
const REJOIN_FIRST: Duration = Duration::from_millis(200);

/// Where the listener hands the links that neighbours open: open while the servant is
/// in an overlay, closed (a `LINK` is refused) while it links to every servant.
#[derive(Default)]
pub struct Door(Mutex<Option<Arc<Endpoint>>>);

impl Door {
    pub fn endpoint(&self) -> Option<Arc<Endpoint>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, ep: Option<Arc<Endpoint>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = ep;
    }
}

/// What the `overlay` thread does with what it is handed.
pub struct Setup {
    /// This servant as the others dial it.
    pub me: Contact,
    pub params: Params,
    pub endpoint: Arc<Endpoint>,
    pub events: Waiter<ToDriver>,
    /// Shows a line once (the full mesh's receiving path: pins, `Seen`, relays).
    pub show: Box<dyn FnMut(&Signed) + Send>,
    /// Whether an address is banned: never dialled, never a neighbour.
    pub refuses: Box<dyn Fn(IpAddr) -> bool + Send>,
    /// Servants to join through when nobody else is known (`<bootstrap>`).
    pub bootstrap: Vec<SocketAddr>,
}

/// The running `overlay` thread.
pub struct Neighbors {
    pub tx: Bell<ToDriver>,
    thread: JoinHandle<()>,
    door: Arc<Door>,
}

impl Neighbors {
    /// Starts the `overlay` thread and opens the door to links.
    pub fn start(setup: Setup, door: Arc<Door>) -> std::io::Result<Neighbors> {
        let tx = setup.endpoint.events.clone();
        door.set(Some(Arc::clone(&setup.endpoint)));
        let thread = thread::Builder::new()
            .name("overlay".into())
            .spawn(move || Driver::new(setup).run())?;
        Ok(Neighbors { tx, thread, door })
    }

    /// Says goodbye to the neighbours and waits (up to `linger`) for the thread to end.
    pub fn leave(self, linger: Duration) {
        self.door.set(None);
        let _ = self.tx.send(ToDriver::Leave);
        let deadline = Instant::now() + linger;
        while Instant::now() < deadline && !self.thread.is_finished() {
            thread::sleep(Duration::from_millis(10));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }

    /// `/peers`: the overlay's lines, or `None` when it does not answer within a second.
    pub fn view(&self) -> Option<String> {
        let (tx, rx) = bounded(1);
        self.tx.send(ToDriver::View(tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(1)).ok()
    }
}

/// The links to one neighbour: one (when both sides dialled at once, see `up`).
struct Slot {
    /// Each connection's number and queue; lines go on the first.
    conns: Vec<(u64, Bell<Arc<str>>)>,
    /// The connection we dialled, while it is one of them.
    dialled: Option<u64>,
    /// Whether a handshake has finished on one of them.
    up: bool,
}

struct Driver {
    overlay: Overlay<Wire>,
    rng: Rng,
    started: Instant,
    /// Timers by when they fire (and a count, so two at the same instant both stay).
    timers: BTreeMap<(Instant, u64), Timer<Wire>>,
    timer_count: u64,
    links: BTreeMap<Contact, Slot>,
    /// Dials to `<bootstrap>` addresses, whose servant the handshake names.
    bootstrapping: HashMap<u64, Bell<Arc<str>>>,
    /// Servants the core told us of, to join through when isolated.
    contacts: Vec<Contact>,
    known: HashSet<Contact>,
    isolated_since: Option<Instant>,
    last_rejoin: Option<Instant>,
    /// Whether it has had a neighbour yet (see `REJOIN_FIRST`).
    ever_linked: bool,
    setup: Setup,
    /// Inputs for the state, from what it asked (a dial that cannot even start).
    later: Vec<Input<Wire>>,
    shown: u64,
    /// Hops the lines shown came over (summed), and the most: for `/peers`.
    hops: u64,
    hops_max: u16,
    /// Behind a firewall: `LINK` says port 0 and shuffles leave us out, so nobody
    /// tries to dial us; every link is one we opened.
    hidden: bool,
}

impl Driver {
    fn new(setup: Setup) -> Driver {
        Driver {
            overlay: Overlay::new(setup.me.clone(), setup.params.clone()),
            rng: Rng::from_os(),
            started: Instant::now(),
            timers: BTreeMap::new(),
            timer_count: 0,
            links: BTreeMap::new(),
            bootstrapping: HashMap::new(),
            contacts: Vec::new(),
            known: HashSet::new(),
            isolated_since: Some(Instant::now()),
            last_rejoin: None,
            ever_linked: false,
            setup,
            later: Vec::new(),
            shown: 0,
            hops: 0,
            hops_max: 0,
            hidden: false,
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn run(mut self) {
        let mut out = Vec::new();
        self.overlay.start(&mut self.rng, &mut out);
        self.apply(out);
        info!(
            "in the overlay as {} (at most {} neighbours)",
            self.setup.me.addr,
            self.overlay.params().active
        );
        loop {
            self.fire_timers();
            self.maybe_rejoin();
            let wait = self
                .timers
                .keys()
                .next()
                .map_or(self.rejoin_every(), |(t, _)| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(self.rejoin_every());
            match self.setup.events.recv_timeout(wait) {
                Ok(ToDriver::Leave) => break,
                Ok(ev) => self.on(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.handle(Input::Leave);
        // Dropping the queues ends each `nsend-` thread once it has written the goodbyes.
        self.links.clear();
        self.bootstrapping.clear();
        info!("left the overlay");
    }

    fn fire_timers(&mut self) {
        loop {
            let now = Instant::now();
            let Some(entry) = self.timers.first_entry() else {
                return;
            };
            if entry.key().0 > now {
                return;
            }
            let timer = entry.remove();
            self.handle(Input::Timer(timer));
        }
    }

    /// Hands one input to the state, then does what it asks (and what that leads to).
    fn handle(&mut self, input: Input<Wire>) {
        let mut out = Vec::new();
        let now = self.now();
        self.overlay.handle(now, input, &mut self.rng, &mut out);
        self.apply(out);
    }

    fn apply(&mut self, mut out: Vec<Action<Wire>>) {
        loop {
            for action in out.drain(..) {
                self.act(action);
            }
            let Some(input) = self.later.pop() else {
                return;
            };
            let now = self.now();
            self.overlay.handle(now, input, &mut self.rng, &mut out);
        }
    }

    fn act(&mut self, action: Action<Wire>) {
        match action {
            Action::Send(peer, msg) => self.send(peer, &msg),
            Action::Close(peer) => {
                self.links.remove(&peer);
            }
            Action::Show { id, line, hops } => {
                let delivered = &self.setup.endpoint.delivered;
                delivered.note(&id.author, id.incarnation, id.seq);
                if id.author != self.setup.me.id {
                    self.shown += 1;
                    self.hops += u64::from(hops);
                    self.hops_max = self.hops_max.max(hops);
                    (self.setup.show)(&line);
                }
            }
            Action::Lost {
                author,
                incarnation,
                first,
                last,
            } => warn!(
                "{} line(s) of {author} (run {incarnation}, numbers {first} to {last}) never reached this servant",
                last - first + 1
            ),
            Action::SetTimer { after, timer } => {
                self.timer_count += 1;
                let at = Instant::now() + Duration::from_millis(after);
                self.timers.insert((at, self.timer_count), timer);
            }
            Action::NeighborUp(peer) => {
                self.isolated_since = None;
                self.ever_linked = true;
                info!("neighbour up: {} at {}", peer.id, peer.addr);
            }
            Action::NeighborDown(peer) => {
                info!("neighbour down: {} at {}", peer.id, peer.addr);
                if self.overlay.active().is_empty() {
                    self.isolated_since.get_or_insert_with(Instant::now);
                }
            }
            Action::Isolated => {
                self.isolated_since.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Queues `msg` on the link to `peer`, dialling it first when there is none.
    fn send(&mut self, peer: Contact, msg: &Message<Wire>) {
        let line: Arc<str> = Arc::from(match msg {
            // Unreachable: our own address in a sample would only cost others a dial.
            Message::Shuffle { origin, ttl, peers } if self.hidden => to_line(&Message::Shuffle {
                origin: origin.clone(),
                ttl: *ttl,
                peers: peers
                    .iter()
                    .filter(|c| c.id != self.setup.me.id)
                    .cloned()
                    .collect(),
            }),
            _ => to_line(msg),
        });
        if !self.links.contains_key(&peer) {
            if peer.addr.port() == 0 || (self.setup.refuses)(peer.addr.ip()) {
                debug!(
                    "not dialling {} at {}: banned or not reachable",
                    peer.id, peer.addr
                );
                self.later.push(Input::Unreachable(peer));
                return;
            }
            let conn = link::next_conn();
            let (tx, rx) = bell::bounded(LINK_QUEUE);
            let ep = Arc::clone(&self.setup.endpoint);
            if let Err(e) = link::dial(Some(peer.clone()), peer.addr, conn, rx, ep) {
                warn!("cannot start a link to {} at {}: {e}", peer.id, peer.addr);
                self.later.push(Input::Unreachable(peer));
                return;
            }
            self.links.insert(
                peer.clone(),
                Slot {
                    conns: vec![(conn, tx)],
                    dialled: Some(conn),
                    up: false,
                },
            );
        }
        let Some(slot) = self.links.get(&peer) else {
            return;
        };
        match slot.conns.first().map(|(_, tx)| tx.try_send(line)) {
            Some(Ok(())) | None => {}
            Some(Err(TrySendError::Full(_))) => {
                warn!(
                    "neighbour {} at {} has not taken {LINK_QUEUE} lines; closing its link",
                    peer.id, peer.addr
                );
                self.links.remove(&peer);
                self.later.push(Input::LinkDown(peer));
            }
            Some(Err(TrySendError::Disconnected(_))) => {
                // Its thread has ended; its `Down` or `Unreachable` is on the way.
            }
        }
    }

    fn on(&mut self, ev: ToDriver) {
        match ev {
            ToDriver::Up { contact, conn, tx } => self.up(contact, conn, tx),
            ToDriver::Received { contact, msg } => {
                if !self.links.contains_key(&contact) {
                    return;
                }
                if let Some(msg) = self.screen(msg) {
                    self.handle(Input::Received(contact, msg));
                }
            }
            ToDriver::Copy { contact, id } => {
                if self.links.contains_key(&contact) {
                    self.handle(Input::Copy(contact, id));
                }
            }
            ToDriver::Down { contact, conn, why } => {
                if self.drop_conn(&contact, conn) {
                    debug!("link to {} at {} ended: {why}", contact.id, contact.addr);
                    self.handle(Input::LinkDown(contact));
                }
            }
            ToDriver::Unreachable {
                contact,
                addr,
                conn,
                why,
            } => {
                if self.bootstrapping.remove(&conn).is_some() {
                    return warn!("cannot join the overlay through {addr}: {why}");
                }
                let Some(contact) = contact else { return };
                if self.drop_conn(&contact, conn) {
                    debug!("cannot reach {} at {addr}: {why}", contact.id);
                    self.handle(Input::Unreachable(contact));
                }
            }
            ToDriver::Typed(lines) => {
                let key = self.setup.endpoint.identity.key;
                for out in lines {
                    let Some(Ok(PeerLine::Msg(chat))) = PeerLine::parse(out.line.trim_end()) else {
                        continue;
                    };
                    let id = LineId {
                        author: chat.origin.clone(),
                        incarnation: chat.incarnation,
                        seq: chat.seq,
                    };
                    self.handle(Input::Broadcast(id, Arc::new(Signed { key, chat })));
                }
            }
            ToDriver::Learn(contacts) => self.learn(contacts),
            ToDriver::Join(contact) => {
                if contact != self.setup.me {
                    self.last_rejoin = Some(Instant::now());
                    self.handle(Input::Join(contact));
                }
            }
            ToDriver::Bootstrap(addr) => self.bootstrap(addr),
            ToDriver::Hidden(hidden) => {
                if hidden != self.hidden {
                    self.hidden = hidden;
                    let port = if hidden { 0 } else { self.setup.me.addr.port() };
                    self.setup.endpoint.port.store(port, Ordering::Relaxed);
                    if hidden {
                        info!(
                            "behind a firewall: keeping only the overlay links this servant opens"
                        );
                    } else {
                        info!("reachable again: other servants may open overlay links to this one");
                    }
                }
            }
            ToDriver::View(reply) => {
                let _ = reply.send(self.view());
            }
            ToDriver::Leave => {}
        }
    }

    /// Servants at banned addresses, and servants that cannot be reached (port 0), never
    /// reach the state: a walk that would make one a neighbour ends here, and samples
    /// lose them.
    fn screen(&self, msg: Message<Wire>) -> Option<Message<Wire>> {
        let refuses = &self.setup.refuses;
        let shut = |c: &Contact| c.addr.port() == 0 || refuses(c.addr.ip());
        let keep = |peers: Vec<Contact>| -> Vec<Contact> {
            peers.into_iter().filter(|c| !shut(c)).collect()
        };
        Some(match msg {
            Message::ForwardJoin { peer, .. } if shut(&peer) => return None,
            Message::Shuffle { origin, ttl, peers } => Message::Shuffle {
                origin,
                ttl,
                peers: keep(peers),
            },
            Message::ShuffleReply { peers } => Message::ShuffleReply { peers: keep(peers) },
            other => other,
        })
    }

    /// A link is up: a dial finished, or a neighbour opened one to us.
    fn up(&mut self, contact: Contact, conn: u64, tx: Option<Bell<Arc<str>>>) {
        if contact.id == self.setup.me.id {
            // Ourselves, at another address: never a neighbour.
            self.links.remove(&contact);
            self.bootstrapping.remove(&conn);
            return;
        }
        if let Some(boot) = self.bootstrapping.remove(&conn) {
            let slot = self.links.entry(contact.clone()).or_insert(Slot {
                conns: Vec::new(),
                dialled: None,
                up: true,
            });
            slot.conns.push((conn, boot));
            link::log_up(&contact, true);
            self.last_rejoin = Some(Instant::now());
            return self.handle(Input::Join(contact));
        }
        match tx {
            Some(tx) => {
                if (self.setup.refuses)(contact.addr.ip()) {
                    return;
                }
                let mine_first = self.setup.me.id < contact.id;
                let slot = self.links.entry(contact.clone()).or_insert(Slot {
                    conns: Vec::new(),
                    dialled: None,
                    up: true,
                });
                if let Some(ours) = slot.dialled.take() {
                    // Both dialled at once. Both ends keep the connection the servant with
                    // the smaller id opened and close the other (its queue is written out
                    // first), or each would hold two links, and two threads more, for as
                    // long as the neighbour stays.
                    if mine_first {
                        slot.dialled = Some(ours);
                        return drop(tx);
                    }
                    slot.conns.retain(|(c, _)| *c != ours);
                }
                slot.conns.push((conn, tx));
                slot.up = true;
                link::log_up(&contact, false);
            }
            None => {
                if let Some(slot) = self.links.get_mut(&contact) {
                    if slot.conns.iter().any(|(c, _)| *c == conn) {
                        slot.up = true;
                        link::log_up(&contact, true);
                    }
                }
            }
        }
    }

    /// Forgets one connection to `contact`; true when it was the last one.
    fn drop_conn(&mut self, contact: &Contact, conn: u64) -> bool {
        let Some(slot) = self.links.get_mut(contact) else {
            return false;
        };
        let before = slot.conns.len();
        slot.conns.retain(|(c, _)| *c != conn);
        if slot.dialled == Some(conn) {
            slot.dialled = None;
        }
        if slot.conns.len() == before {
            return false;
        }
        if slot.conns.is_empty() {
            self.links.remove(contact);
            return true;
        }
        false
    }

    fn learn(&mut self, contacts: Vec<Contact>) {
        let fresh: Vec<Contact> = contacts
            .into_iter()
            .filter(|c| c.id != self.setup.me.id && c.addr.port() != 0)
            .filter(|c| !(self.setup.refuses)(c.addr.ip()))
            .filter(|c| self.known.insert(c.clone()))
            .collect();
        if fresh.is_empty() {
            return;
        }
        self.contacts.extend(fresh.iter().cloned());
        if self.contacts.len() > CONTACTS {
            let gone: Vec<Contact> = self
                .contacts
                .drain(..self.contacts.len() - CONTACTS)
                .collect();
            for c in gone {
                self.known.remove(&c);
            }
        }
        let sample = self
            .rng
            .sample(&fresh, crate::overlay::params::bounds::PEERS);
        self.handle(Input::Learn(sample));
    }

    fn bootstrap(&mut self, addr: SocketAddr) {
        let conn = link::next_conn();
        let (tx, rx) = bell::bounded(LINK_QUEUE);
        let ep = Arc::clone(&self.setup.endpoint);
        match link::dial(None, addr, conn, rx, ep) {
            Ok(()) => {
                self.bootstrapping.insert(conn, tx);
            }
            Err(e) => warn!("cannot start a link to {addr}: {e}"),
        }
    }

    fn rejoin_every(&self) -> Duration {
        if self.ever_linked {
            REJOIN_EVERY
        } else {
            REJOIN_FIRST
        }
    }

    /// An isolated servant joins again through a servant it knows (or a `<bootstrap>`),
    /// every `REJOIN_EVERY` (`REJOIN_FIRST` until its first neighbour).
    fn maybe_rejoin(&mut self) {
        if !self.overlay.active().is_empty() {
            self.isolated_since = None;
            return;
        }
        if self.isolated_since.is_none()
            || self
                .last_rejoin
                .is_some_and(|t| t.elapsed() < self.rejoin_every())
        {
            return;
        }
        self.last_rejoin = Some(Instant::now());
        let pick = self.rng.choose(&self.contacts).cloned();
        match pick {
            Some(contact) => {
                debug!(
                    "no neighbour: joining through {} at {}",
                    contact.id, contact.addr
                );
                self.handle(Input::Join(contact));
            }
            None => {
                if let Some(addr) = self.rng.choose(&self.setup.bootstrap).copied() {
                    debug!("no neighbour and nobody known: joining through {addr}");
                    self.bootstrap(addr);
                }
            }
        }
    }

    /// The overlay as `/peers` shows it.
    fn view(&self) -> String {
        let active = self.overlay.active();
        let mut s = format!(
            "overlay: {} neighbour(s) of at most {}, {} servant(s) in reserve, {} line(s) kept, {} shown",
            active.len(),
            self.overlay.params().active,
            self.overlay.passive().len(),
            self.overlay.kept_lines(),
            self.shown
        );
        if self.shown > 0 {
            s.push_str(&format!(
                ", over {:.1} hops on average (at most {})",
                self.hops as f64 / self.shown as f64,
                self.hops_max
            ));
        }
        for peer in active {
            let how = if self.overlay.is_eager(peer) {
                "whole lines"
            } else {
                "ids only"
            };
            let state = match self.links.get(peer) {
                Some(slot) if slot.up => "linked",
                Some(_) => "connecting",
                None => "no link",
            };
            s.push_str(&format!(
                "\n  neighbour {:<16} {:<22} {state}, {how}",
                peer.id, peer.addr
            ));
        }
        s
    }
}
