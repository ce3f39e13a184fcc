//! One servant's overlay: membership and broadcast as one state machine, with the shape
//! quinn-proto and iroh-gossip's `proto` gave such code. `handle` takes the time, an
//! input and the caller's random generator, and appends actions; it never touches a
//! socket, a clock or a thread, so the servant's threads and the simulator drive the
//! very same code.

use super::broadcast::Broadcast;
use super::event::{Action, Input, Message, Millis, Types};
use super::membership::Membership;
use std::sync::Arc;

use super::params::Params;
use super::rng::Rng;

#[derive(Debug, Clone)]
pub struct Overlay<K: Types> {
    /// Shared: every servant of a simulation runs by the same numbers.
    params: Arc<Params>,
    members: Membership<K>,
    cast: Broadcast<K>,
}

impl<K: Types> Overlay<K> {
    pub fn new(me: K::Peer, params: impl Into<Arc<Params>>) -> Overlay<K> {
        Overlay {
            params: params.into(),
            members: Membership::new(me),
            cast: Broadcast::default(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn me(&self) -> &K::Peer {
        self.members.me()
    }

    pub fn active(&self) -> &[K::Peer] {
        self.members.active()
    }

    pub fn passive(&self) -> &[K::Peer] {
        self.members.passive()
    }

    /// Whether whole lines go to this neighbour (else only their ids).
    pub fn is_eager(&self, peer: &K::Peer) -> bool {
        self.cast.is_eager(peer)
    }

    pub fn kept_lines(&self) -> usize {
        self.cast.kept()
    }

    /// The timers every servant runs; call once before the first input.
    pub fn start(&mut self, rng: &mut Rng, out: &mut Vec<Action<K>>) {
        self.members.start(&self.params, rng, out);
    }

    pub fn handle(
        &mut self,
        now: Millis,
        input: Input<K>,
        rng: &mut Rng,
        out: &mut Vec<Action<K>>,
    ) {
        let first = out.len();
        let p = &self.params;
        match input {
            Input::Join(contact) => self.members.join(contact, p, rng, out),
            Input::Learn(peers) => self.members.learn(peers, p, rng),
            Input::Received(from, msg) => match msg {
                Message::Gossip { .. }
                | Message::IHave(_)
                | Message::Graft(_)
                | Message::Prune
                | Message::Summary { .. } => {
                    // Only neighbours take part in the tree; anyone else's word on it is
                    // a stale link's or a stranger's.
                    if self.members.is_active(&from) {
                        self.cast.received(now, from, msg, p, out);
                    }
                }
                _ => self.members.received(now, from, msg, p, rng, out),
            },
            Input::Copy(from, id) => {
                if self.members.is_active(&from) {
                    self.cast.copy(from, &id, p, out);
                }
            }
            Input::LinkDown(peer) => self.members.link_down(now, peer, p, rng, out),
            Input::Unreachable(peer) => self.members.unreachable(now, peer, p, rng, out),
            Input::Timer(timer) => {
                self.members.timer(now, &timer, p, rng, out);
                self.cast.timer(now, timer, p, out);
            }
            Input::Broadcast(id, line) => self.cast.broadcast(now, id, line, p, out),
            Input::Leave => self.members.leave(out),
        }
        // Membership changes reach the tree: a new neighbour starts eager (Plumtree), a
        // lost one is gone from both sets.
        let mut i = first;
        while i < out.len() {
            match &out[i] {
                Action::NeighborUp(peer) => {
                    let peer = peer.clone();
                    self.cast.neighbor_up(now, peer, out);
                }
                Action::NeighborDown(peer) => {
                    let peer = peer.clone();
                    self.cast.neighbor_down(&peer);
                }
                _ => {}
            }
            i += 1;
        }
    }
}
