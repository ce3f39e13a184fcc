//! What a servant has of the lines in flight: the lines it keeps to answer grafts and
//! summaries, and the ids announced to it that it still awaits. `accept` is the one way
//! in for a line (from its author, a neighbour or a graft): kept, put in order, announced
//! to the lazy neighbours.

use std::collections::VecDeque;

use super::{Broadcast, Kept, Missing};
use crate::overlay::event::{Action, LineId, Message, Millis, Timer, Types};
use crate::overlay::params::{bounds, Params};

impl<K: Types> Broadcast<K> {
    /// Whether this line was seen: kept, shown, or of an incarnation since replaced.
    pub(super) fn has(&self, id: &LineId<K::Author>) -> bool {
        // The author's order first: it answers for nearly every id, from a smaller map.
        self.order.has(id) || self.kept.contains_key(id)
    }

    /// A second copy of line `id` from `from`: the link it came on is not needed for
    /// whole lines. (A line older than what its author's order has reached here, shown
    /// long ago or from before we first heard of the author, is no sign of a redundant
    /// link.)
    pub fn copy(
        &mut self,
        from: K::Peer,
        id: &LineId<K::Author>,
        p: &Params,
        out: &mut Vec<Action<K>>,
    ) {
        // (Never a line unseen here: the driver reads a copy's id alone, and believes
        // nothing else of it.)
        if self.kept.contains_key(id) && p.plumtree && self.eager.remove(&from) {
            self.lazy.insert(from.clone());
            out.push(Action::Send(from, Message::Prune));
        }
    }

    pub(super) fn keep(
        &mut self,
        now: Millis,
        id: LineId<K::Author>,
        kept: Kept<K::Line>,
        p: &Params,
    ) {
        self.kept.insert(id.clone(), kept);
        self.kept_order.push_back((now, id));
        self.forget_old(now, p);
    }

    pub(super) fn forget_old(&mut self, now: Millis, p: &Params) {
        while let Some((at, _)) = self.kept_order.front() {
            if now.saturating_sub(*at) < p.keep && self.kept_order.len() <= p.keep_lines {
                break;
            }
            if let Some((_, id)) = self.kept_order.pop_front() {
                self.kept.remove(&id);
            }
        }
    }

    /// `from` has line `id` (it announced it, or sent a later one of its author): it is
    /// grafted from `from` if it has not come `after` ms from now.
    pub(super) fn announced(
        &mut self,
        now: Millis,
        id: LineId<K::Author>,
        from: &K::Peer,
        after: Millis,
        out: &mut Vec<Action<K>>,
    ) {
        if self.has(&id) {
            return;
        }
        let due = now + after;
        match self.missing.get_mut(&id) {
            Some(m) => {
                if m.announcers.len() < bounds::ANNOUNCERS && !m.announcers.contains(from) {
                    m.announcers.push_back(from.clone());
                }
                if due < m.due {
                    m.due = due;
                    out.push(Action::SetTimer {
                        after,
                        timer: Timer::Graft(id),
                    });
                }
            }
            None => {
                if self.missing.len() >= bounds::MISSING {
                    return;
                }
                let announcers = VecDeque::from([from.clone()]);
                self.missing.insert(id.clone(), Missing { announcers, due });
                out.push(Action::SetTimer {
                    after,
                    timer: Timer::Graft(id),
                });
            }
        }
    }

    /// A line seen for the first time: kept, passed on, and shown in its author's order.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accept(
        &mut self,
        now: Millis,
        from: Option<K::Peer>,
        id: LineId<K::Author>,
        line: K::Line,
        hops: u16,
        p: &Params,
        out: &mut Vec<Action<K>>,
    ) {
        self.missing.remove(&id);
        for peer in self.eager.iter() {
            if Some(peer) != from.as_ref() {
                let msg = Message::Gossip {
                    id: id.clone(),
                    hops: hops.saturating_add(1),
                    line: line.clone(),
                };
                out.push(Action::Send(peer.clone(), msg));
            }
        }
        for peer in self.lazy.iter().filter(|_| p.plumtree) {
            if Some(peer) != from.as_ref() {
                match self.queued.iter_mut().find(|(q, _)| q == peer) {
                    Some((_, ids)) => ids.push((id.clone(), hops)),
                    None => self.queued.push((peer.clone(), vec![(id.clone(), hops)])),
                }
            }
        }
        if !self.queued.is_empty() && !self.announce_set {
            self.announce_set = true;
            out.push(Action::SetTimer {
                after: p.announce_every,
                timer: Timer::Announce,
            });
        }
        self.keep(
            now,
            id.clone(),
            Kept {
                line: line.clone(),
                hops,
                at: now,
            },
            p,
        );
        let author = id.author.clone();
        let Some(gap) = self.order.place(now, id, line, hops, p, out) else {
            return;
        };
        // The earlier lines are most likely on their way by another path (the tree changed
        // between them); they are asked for only if they do not come.
        if let Some(from) = from {
            for seq in gap.seqs {
                let missing = LineId {
                    author: author.clone(),
                    incarnation: gap.incarnation,
                    seq,
                };
                self.announced(now, missing, &from, p.graft_after, out);
            }
        }
    }
}
