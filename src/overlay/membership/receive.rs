//! Answering the other servants' membership messages: joins and their walks, requests to
//! be neighbours and their answers, disconnects and shuffles.
//!
//! One `impl` block of `Membership` of one job, apart from the timers and repairs
//! (`repair`) and from the view's own bookkeeping (in `membership.rs`), which both sides
//! call.

use super::Membership;
use crate::overlay::event::{Action, Message, Millis, Types};
use crate::overlay::params::{bounds, Params};
use crate::overlay::rng::Rng;

impl<K: Types> Membership<K> {
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
}
