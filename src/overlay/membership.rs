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
//!
//! The type and its view's bookkeeping (adding and dropping neighbours, taking in a
//! shuffle) are here; answering messages is in `receive`, and failures and timers in
//! `repair`, each an `impl` block of its own.

use std::collections::{BTreeMap, VecDeque};

use super::event::{Action, Message, Millis, Timer, Types};
use super::params::{bounds, Params};
use super::rng::Rng;

mod receive;
mod repair;

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
