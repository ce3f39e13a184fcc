//! The `overlay` thread's state and how it carries out what the protocol asks: send this
//! line to that neighbour (dialling it first), close that link, show this line once.
//!
//! `Driver` owns the protocol's state (`crate::overlay`, the code the simulator runs)
//! and the links to the neighbours; this file is the part every other job of the thread
//! stands on: handing the state an input and acting on its answer, screening what a
//! neighbour sends, dropping a connection, and the `/peers` view. `contacts` adds links
//! coming up and servants to join through; the loop in `neighbors` hands each event to
//! them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use log::{debug, info, warn};

use crate::overlay::{Action, Input, Message, Overlay, Params, Rng, Timer};
use crate::protocol::overlay::{to_line, Contact, Signed, Wire};

use super::bell::{self, Bell, Waiter};
use super::link::{self, Endpoint, ToDriver, LINK_QUEUE};

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

/// The links to one neighbour: one (when both sides dialled at once, see `up`).
pub(super) struct Slot {
    /// Each connection's number and queue; lines go on the first.
    pub(super) conns: Vec<(u64, Bell<Arc<str>>)>,
    /// The connection we dialled, while it is one of them.
    pub(super) dialled: Option<u64>,
    /// Whether a handshake has finished on one of them.
    pub(super) up: bool,
}

pub(super) struct Driver {
    pub(super) overlay: Overlay<Wire>,
    pub(super) rng: Rng,
    pub(super) started: Instant,
    /// Timers by when they fire (and a count, so two at the same instant both stay).
    pub(super) timers: BTreeMap<(Instant, u64), Timer<Wire>>,
    pub(super) timer_count: u64,
    pub(super) links: BTreeMap<Contact, Slot>,
    /// Dials to `<bootstrap>` addresses, whose servant the handshake names.
    pub(super) bootstrapping: HashMap<u64, Bell<Arc<str>>>,
    /// Servants the core told us of, to join through when isolated.
    pub(super) contacts: Vec<Contact>,
    pub(super) known: HashSet<Contact>,
    pub(super) isolated_since: Option<Instant>,
    pub(super) last_rejoin: Option<Instant>,
    /// Whether it has had a neighbour yet (see `REJOIN_FIRST`).
    pub(super) ever_linked: bool,
    pub(super) setup: Setup,
    /// Inputs for the state, from what it asked (a dial that cannot even start).
    pub(super) later: Vec<Input<Wire>>,
    pub(super) shown: u64,
    /// Hops the lines shown came over (summed), and the most: for `/peers`.
    pub(super) hops: u64,
    pub(super) hops_max: u16,
    /// Behind a firewall: `LINK` says port 0 and shuffles leave us out, so nobody
    /// tries to dial us; every link is one we opened.
    pub(super) hidden: bool,
}

impl Driver {
    pub(super) fn new(setup: Setup) -> Driver {
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

    pub(super) fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Hands one input to the state, then does what it asks (and what that leads to).
    pub(super) fn handle(&mut self, input: Input<Wire>) {
        let mut out = Vec::new();
        let now = self.now();
        self.overlay.handle(now, input, &mut self.rng, &mut out);
        self.apply(out);
    }

    pub(super) fn apply(&mut self, mut out: Vec<Action<Wire>>) {
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

    pub(super) fn act(&mut self, action: Action<Wire>) {
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
    pub(super) fn send(&mut self, peer: Contact, msg: &Message<Wire>) {
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

    /// Servants at banned addresses, and servants that cannot be reached (port 0), never
    /// reach the state: a walk that would make one a neighbour ends here, and samples
    /// lose them.
    pub(super) fn screen(&self, msg: Message<Wire>) -> Option<Message<Wire>> {
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

    /// Forgets one connection to `contact`; true when it was the last one.
    pub(super) fn drop_conn(&mut self, contact: &Contact, conn: u64) -> bool {
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

    /// The overlay as `/peers` shows it.
    pub(super) fn view(&self) -> String {
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
