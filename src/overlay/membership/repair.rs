//! Keeping the active set full: lost links, unreachable servants, and the `Shuffle` and
//! `Refill` timers.
//!
//! One `impl` block of `Membership` of one job: what happens when a link fails or a timer
//! fires, apart from answering messages (`receive`). A neighbour lost to a time-out is
//! asked again with a doubling wait (`retry_lost`), so two halves of a split join up
//! again when it heals.

use super::Membership;
use super::{Lost, RETRY_MAX};
use crate::overlay::event::{Action, Message, Millis, Timer, Types};
use crate::overlay::params::{bounds, Params};
use crate::overlay::rng::Rng;

impl<K: Types> Membership<K> {
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
    pub(super) fn refill(
        &mut self,
        now: Millis,
        p: &Params,
        rng: &mut Rng,
        out: &mut Vec<Action<K>>,
    ) {
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
}
