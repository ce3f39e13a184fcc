//! Who a servant's neighbours are: HyParView (Leitão, Pereira and Rodrigues, 2007).
//!
//! The article's servant links to every other servant; past a few dozen that costs two
//! threads per peer and a network of N holds about 2N² threads. Here a servant keeps a
//! small *active* set of neighbours (links that carry lines both ways) and a larger
//! *passive* set of servants it knows of but has no link to. A newcomer's join takes a
//! random walk so it lands in random places; shuffles swap samples of the passive sets
//! so they stay random as servants come and go; a neighbour that fails is replaced from
//! the passive set within a refill period. A neighbour lost to a time-out (a network
//! split, not a close) is asked again for a while, so two halves that lost each other
//! join up again when the split heals.
//!
//! Pure logic: the state is handed the time, a random generator and an output list.

use std::collections::{BTreeMap, VecDeque};

use super::event::{Action, Message, Millis, Timer, Types};
use super::params::{bounds, Params};
use super::rng::Rng;

/// A neighbour lost to a time-out, asked again until `until`.
#[derive(Debug, Clone)]
struct Lost<P> {
    peer: P,
    next: Millis,
    /// The wait before the next request, doubled after each up to `RETRY_MAX`.
    every: Millis,
    until: Millis,
}

/// The longest wait between two requests to a lost neighbour.
const RETRY_MAX: Millis = 16_000;

#[derive(Debug, Clone)]
pub struct Membership<K: Types> {
    me: K::Peer,
    active: Vec<K::Peer>,
    passive: Vec<K::Peer>,
    /// Servants asked to be neighbours: when, and whether with high priority (then the
    /// answer is taken even when the active set has filled meanwhile).
    asked: BTreeMap<K::Peer, (Millis, bool)>,
    lost: Vec<Lost<K::Peer>>,
    /// What our last shuffle offered, replaced first when the answer comes.
    offered: Vec<K::Peer>,
    /// Whether a `Refill` timer is on its way. It is set while there is something to
    /// fill, ask or retry, and not re-armed once the active set is full and quiet: a
    /// hundred thousand simulated servants need not wake every second for nothing.
    refill_set: bool,
    /// When others' requests last pushed a neighbour out (see `may_evict`).
    evicted: VecDeque<Millis>,
}

impl<K: Types> Membership<K> {
    pub fn new(me: K::Peer) -> Membership<K> {
        Membership {
            me,
            active: Vec::new(),
            passive: Vec::new(),
            asked: BTreeMap::new(),
            lost: Vec::new(),
            offered: Vec::new(),
            refill_set: false,
            evicted: VecDeque::new(),
        }
    }

    pub fn me(&self) -> &K::Peer {
        &self.me
    }

    pub fn active(&self) -> &[K::Peer] {
        &self.active
    }

    pub fn passive(&self) -> &[K::Peer] {
        &self.passive
    }

    pub fn is_active(&self, peer: &K::Peer) -> bool {
        self.active.contains(peer)
    }

    /// The timers a fresh state needs; set once by `Overlay::start`.
    pub fn start(&mut self, p: &Params, rng: &mut Rng, out: &mut Vec<Action<K>>) {
        out.push(Action::SetTimer {
            after: rng.jitter(p.shuffle_every),
            timer: Timer::Shuffle,
        });
        self.arm_refill(p, out);
    }

    fn arm_refill(&mut self, p: &Params, out: &mut Vec<Action<K>>) {
        if !self.refill_set {
            self.refill_set = true;
            out.push(Action::SetTimer {
                after: p.refill_every,
                timer: Timer::Refill,
            });
        }
    }

    pub fn join(&mut self, contact: K::Peer, p: &Params, rng: &mut Rng, out: &mut Vec<Action<K>>) {
        if contact == self.me {
            return;
        }
        out.push(Action::Send(contact.clone(), Message::Join));
        self.add_active(contact, p, rng, out);
        self.arm_refill(p, out);
    }

    pub fn learn(&mut self, peers: Vec<K::Peer>, p: &Params, rng: &mut Rng) {
        for peer in peers.into_iter().take(bounds::PEERS) {
            self.add_passive(peer, p, rng);
        }
    }

    pub fn leave(&mut self, out: &mut Vec<Action<K>>) {
        for peer in self.active.drain(..) {
            out.push(Action::Send(
                peer.clone(),
                Message::Disconnect { alive: false },
            ));
            out.push(Action::Close(peer.clone()));
            out.push(Action::NeighborDown(peer));
        }
    }

    /// A membership message from `from`.
    pub fn received(
        &mut self,
        now: Millis,
        from: K::Peer,
        msg: Message<K>,
        p: &Params,
        rng: &mut Rng,
        out: &mut Vec<Action<K>>,
    ) {
        if from == self.me {
            return;
        }
        match msg {
            Message::Join => {
                if self.active.contains(&from) || self.may_evict(now, p) {
                    self.add_active(from.clone(), p, rng, out);
                } else {
                    // Full, and taken enough strangers lately: the newcomer gets its links
                    // where its walks end.
                    out.push(Action::Send(
                        from.clone(),
                        Message::Disconnect { alive: true },
                    ));
                    out.push(Action::Close(from.clone()));
                    self.add_passive(from.clone(), p, rng);
                }
                for n in self.active.clone() {
                    if n != from {
                        let fwd = Message::ForwardJoin {
                            peer: from.clone(),
                            ttl: p.active_walk,
                        };
                        out.push(Action::Send(n, fwd));
                    }
                }
            }
            Message::ForwardJoin { peer, ttl } => {
                if peer == self.me || self.active.contains(&peer) {
                    return;
                }
                let ttl = ttl.min(p.active_walk);
                if ttl == 0 || self.active.len() <= 1 {
                    self.end_walk(now, peer, p, rng, out);
                    return;
                }
                if ttl == p.passive_walk {
                    self.add_passive(peer.clone(), p, rng);
                }
                let next: Vec<K::Peer> = self
                    .active
                    .iter()
                    .filter(|n| **n != from && **n != peer)
                    .cloned()
                    .collect();
                match rng.choose(&next) {
                    Some(n) => out.push(Action::Send(
                        n.clone(),
                        Message::ForwardJoin { peer, ttl: ttl - 1 },
                    )),
                    None => self.end_walk(now, peer, p, rng, out),
                }
            }
            Message::Neighbor { high } => {
                let accepted = self.active.contains(&from)
                    || self.active.len() < p.active
                    || (high && self.may_evict(now, p));
                if accepted {
                    self.add_active(from.clone(), p, rng, out);
                } else {
                    self.add_passive(from.clone(), p, rng);
                }
                out.push(Action::Send(
                    from.clone(),
                    Message::NeighborReply { accepted },
                ));
                if !accepted {
                    out.push(Action::Close(from));
                }
            }
            Message::NeighborReply { accepted } => {
                let asked = self.asked.remove(&from);
                if !accepted {
                    // Refused, also by a servant we had already taken in (a join's walk
                    // ended here): there is no link, on either side.
                    self.add_passive_after_refusal(now, from, p, rng, out);
                    return;
                }
                self.lost.retain(|l| l.peer != from);
                if self.active.contains(&from) {
                    return;
                }
                let wanted = match asked {
                    Some((_, high)) => high || self.active.len() < p.active,
                    None => false,
                };
                if wanted {
                    self.add_active(from, p, rng, out);
                } else {
                    // Full meanwhile, or an answer nobody asked for: decline politely.
                    out.push(Action::Send(
                        from.clone(),
                        Message::Disconnect { alive: true },
                    ));
                    out.push(Action::Close(from.clone()));
                    self.add_passive(from, p, rng);
                }
            }
            Message::Disconnect { alive } => {
                self.asked.remove(&from);
                if self.remove_active(&from, p, out) {
                    out.push(Action::Close(from.clone()));
                    self.refill(now, p, rng, out);
                }
                if alive {
                    self.add_passive(from, p, rng);
                } else {
                    self.passive.retain(|x| *x != from);
                    self.lost.retain(|l| l.peer != from);
                }
            }
            Message::Shuffle {
                origin,
                ttl,
                mut peers,
            } => {
                peers.truncate(bounds::PEERS);
                if origin == self.me {
                    return;
                }
                let next: Vec<K::Peer> = self
                    .active
                    .iter()
                    .filter(|n| **n != from && **n != origin)
                    .cloned()
                    .collect();
                if ttl > 0 && !next.is_empty() {
                    if let Some(n) = rng.choose(&next) {
                        let fwd = Message::Shuffle {
                            origin,
                            ttl: (ttl - 1).min(p.shuffle_walk),
                            peers,
                        };
                        out.push(Action::Send(n.clone(), fwd));
                    }
                    return;
                }
                let answer = rng.sample(&self.passive, peers.len());
                out.push(Action::Send(
                    origin,
                    Message::ShuffleReply {
                        peers: answer.clone(),
                    },
                ));
                self.integrate(peers, &answer, p, rng);
            }
            Message::ShuffleReply { mut peers } => {
                peers.truncate(bounds::PEERS);
                let offered = std::mem::take(&mut self.offered);
                self.integrate(peers, &offered, p, rng);
                if !self.active.contains(&from) {
                    out.push(Action::Close(from));
                }
            }
            _ => {}
        }
    }

    /// The link to `peer` closed, or fell silent past the time-out.
    pub fn link_down(
        &mut self,
        now: Millis,
        peer: K::Peer,
        p: &Params,
        rng: &mut Rng,
        out: &mut Vec<Action<K>>,
    ) {
        self.asked.remove(&peer);
        if self.remove_active(&peer, p, out) {
            if self.lost.len() >= bounds::LOST {
                self.lost.remove(0);
            }
            let every = p.retry_every;
            self.lost.push(Lost {
                peer,
                next: now + every,
                every,
                until: now + p.retry_for,
            });
            self.refill(now, p, rng, out);
        }
    }

    /// `peer` could not be reached: it is forgotten, except as a lost neighbour that is
    /// asked again until its time is up.
    pub fn unreachable(
        &mut self,
        now: Millis,
        peer: K::Peer,
        p: &Params,
        rng: &mut Rng,
        out: &mut Vec<Action<K>>,
    ) {
        self.asked.remove(&peer);
        self.passive.retain(|x| *x != peer);
        if self.remove_active(&peer, p, out) {
            // Whatever link the other side may have opened meanwhile goes too, so both
            // ends agree that there is none.
            out.push(Action::Close(peer));
            self.refill(now, p, rng, out);
        }
    }

    pub fn timer(
        &mut self,
        now: Millis,
        timer: &Timer<K>,
        p: &Params,
        rng: &mut Rng,
        out: &mut Vec<Action<K>>,
    ) {
        match timer {
            Timer::Shuffle => {
                self.shuffle(p, rng, out);
                out.push(Action::SetTimer {
                    after: rng.jitter(p.shuffle_every),
                    timer: Timer::Shuffle,
                });
            }
            Timer::Refill => {
                self.refill_set = false;
                self.asked
                    .retain(|_, (at, _)| now.saturating_sub(*at) < p.neighbor_timeout);
                self.retry_lost(now, out);
                self.refill(now, p, rng, out);
                if self.active.len() < p.active || !self.asked.is_empty() || !self.lost.is_empty() {
                    self.arm_refill(p, out);
                }
            }
            _ => {}
        }
    }

    fn shuffle(&mut self, p: &Params, rng: &mut Rng, out: &mut Vec<Action<K>>) {
        let Some(target) = rng.choose(&self.active).cloned() else {
            return;
        };
        let others: Vec<K::Peer> = self
            .active
            .iter()
            .filter(|n| **n != target)
            .cloned()
            .collect();
        let mut peers = vec![self.me.clone()];
        peers.extend(rng.sample(&others, p.shuffle_active));
        peers.extend(rng.sample(&self.passive, p.shuffle_passive));
        self.offered = peers[1..].to_vec();
        out.push(Action::Send(
            target,
            Message::Shuffle {
                origin: self.me.clone(),
                ttl: p.shuffle_walk,
                peers,
            },
        ));
    }

    /// Asks lost neighbours again whose time has come (high priority: they were ours, and
    /// after a split both halves have refilled, so a polite request would be declined).
    fn retry_lost(&mut self, now: Millis, out: &mut Vec<Action<K>>) {
        self.lost.retain(|l| l.until > now);
        for l in &mut self.lost {
            if l.next > now {
                continue;
            }
            l.next = now + l.every;
            l.every = (l.every * 2).min(RETRY_MAX);
            if !self.asked.contains_key(&l.peer) && !self.active.contains(&l.peer) {
                self.asked.insert(l.peer.clone(), (now, true));
                out.push(Action::Send(
                    l.peer.clone(),
                    Message::Neighbor { high: true },
                ));
            }
        }
    }

    /// Asks passive servants to fill empty active places, one request per place.
    fn refill(&mut self, now: Millis, p: &Params, rng: &mut Rng, out: &mut Vec<Action<K>>) {
        let wanted = p
            .active
            .saturating_sub(self.active.len() + self.asked.len());
        if wanted == 0 {
            return;
        }
        let candidates: Vec<K::Peer> = self
            .passive
            .iter()
            .filter(|x| !self.asked.contains_key(*x))
            .cloned()
            .collect();
        if candidates.is_empty() && self.active.is_empty() && self.asked.is_empty() {
            out.push(Action::Isolated);
            return;
        }
        let high = self.active.is_empty();
        for peer in rng.sample(&candidates, wanted) {
            self.asked.insert(peer.clone(), (now, high));
            out.push(Action::Send(peer, Message::Neighbor { high }));
        }
    }

    fn add_passive_after_refusal(
        &mut self,
        now: Millis,
        from: K::Peer,
        p: &Params,
        rng: &mut Rng,
        out: &mut Vec<Action<K>>,
    ) {
        if self.remove_active(&from, p, out) {
            self.refill(now, p, rng, out);
        }
        out.push(Action::Close(from.clone()));
        self.add_passive(from, p, rng);
    }

    /// A join's walk ends here: the newcomer becomes a neighbour (if a place can be made).
    fn end_walk(
        &mut self,
        now: Millis,
        peer: K::Peer,
        p: &Params,
        rng: &mut Rng,
        out: &mut Vec<Action<K>>,
    ) {
        if self.may_evict(now, p) {
            self.add_active(peer.clone(), p, rng, out);
            out.push(Action::Send(peer, Message::Neighbor { high: true }));
        } else {
            self.add_passive(peer, p, rng);
        }
    }

    /// Whether a request from another servant may take a place: there is one free, or a
    /// neighbour may be pushed out, which others' requests may do at most
    /// `bounds::EVICTIONS` times per `evict_window`. Without the cap, a stranger with
    /// many keys could push out every neighbour in a moment with joins or
    /// high-priority requests and stand in their place.
    fn may_evict(&mut self, now: Millis, p: &Params) -> bool {
        if self.active.len() < p.active {
            return true;
        }
        while self
            .evicted
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= p.evict_window)
        {
            self.evicted.pop_front();
        }
        if self.evicted.len() >= bounds::EVICTIONS {
            return false;
        }
        self.evicted.push_back(now);
        true
    }

    fn add_active(&mut self, peer: K::Peer, p: &Params, rng: &mut Rng, out: &mut Vec<Action<K>>) {
        if peer == self.me || self.active.contains(&peer) {
            return;
        }
        if self.active.len() >= p.active {
            let victim = self.active.swap_remove(rng.below(self.active.len()));
            out.push(Action::Send(
                victim.clone(),
                Message::Disconnect { alive: true },
            ));
            out.push(Action::Close(victim.clone()));
            out.push(Action::NeighborDown(victim.clone()));
            self.add_passive(victim, p, rng);
        }
        self.passive.retain(|x| *x != peer);
        self.lost.retain(|l| l.peer != peer);
        self.asked.remove(&peer);
        self.active.push(peer.clone());
        out.push(Action::NeighborUp(peer));
    }

    fn remove_active(&mut self, peer: &K::Peer, p: &Params, out: &mut Vec<Action<K>>) -> bool {
        let Some(i) = self.active.iter().position(|x| x == peer) else {
            return false;
        };
        self.active.swap_remove(i);
        out.push(Action::NeighborDown(peer.clone()));
        self.arm_refill(p, out);
        true
    }

    fn add_passive(&mut self, peer: K::Peer, p: &Params, rng: &mut Rng) {
        if peer == self.me
            || self.active.contains(&peer)
            || self.passive.contains(&peer)
            || p.passive == 0
        {
            return;
        }
        if self.passive.len() >= p.passive {
            self.passive.swap_remove(rng.below(self.passive.len()));
        }
        self.passive.push(peer);
    }

    /// Takes a shuffle's servants into the passive set, making room by dropping first
    /// the ones we offered (they now live in the other side's set).
    fn integrate(&mut self, received: Vec<K::Peer>, sent: &[K::Peer], p: &Params, rng: &mut Rng) {
        let mut sent: Vec<K::Peer> = sent.to_vec();
        for peer in received {
            if peer == self.me || self.active.contains(&peer) || self.passive.contains(&peer) {
                continue;
            }
            if self.passive.len() >= p.passive {
                match sent.iter().position(|s| self.passive.contains(s)) {
                    Some(i) => {
                        let s = sent.swap_remove(i);
                        self.passive.retain(|x| *x != s);
                    }
                    None => {
                        self.passive.swap_remove(rng.below(self.passive.len()));
                    }
                }
            }
            self.add_passive(peer, p, rng);
        }
    }
}
