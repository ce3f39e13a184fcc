//! How a line reaches every servant once: Plumtree (Leitão, Pereira and Rodrigues, 2007)
//! over the active set, and each author's lines shown in order.
//!
//! A line is pushed whole to the *eager* neighbours and announced by id to the *lazy*
//! ones. A servant that gets a line it already has tells the sender to prune it (that
//! link goes lazy), so after the first lines the eager links form a spanning tree and
//! each servant receives each line about once. When a link of the tree fails, the ids
//! still arrive on lazy links: a line announced but not received within a round trip
//! is grafted from an announcer, which also makes that link eager again and mends the
//! tree. The flooding the issue also names is this with every link eager; Plumtree keeps
//! its reliability and sends each line's bytes about once per servant instead of D times.
//!
//! Lines of one author are shown in order (`order`); a gap is grafted from the
//! neighbour that sent the later line, if it does not come by its own path first. When
//! two servants link, each sends a summary of the last line it showed per author, and the
//! other announces what it has after those: two halves of a healed split swap what they
//! missed.
//!
//! Every list from a neighbour is cut to `params::bounds`; the state holds at most
//! `keep_lines` lines and `MISSING` awaited ids.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::event::{Action, LineId, Message, Millis, Timer, Types};
use super::order::Order;
use super::params::{bounds, Params};

mod keeping;

/// A line kept to answer grafts and summaries.
#[derive(Debug, Clone)]
struct Kept<T> {
    line: T,
    hops: u16,
    /// When it came.
    at: Millis,
}

/// A line announced but not yet received: who announced it, first come first asked.
#[derive(Debug, Clone)]
struct Missing<P> {
    announcers: VecDeque<P>,
    /// When it is next grafted (a timer firing before that is an older one's).
    due: Millis,
}

/// Ids waiting to be announced to one lazy neighbour, with their hops.
type Queued<K> = (<K as Types>::Peer, Vec<(LineId<<K as Types>::Author>, u16)>);

/// A few neighbours (at most the active set's size): a vector beats a tree at this size.
#[derive(Debug, Clone)]
struct PeerSet<P>(Vec<P>);

impl<P> Default for PeerSet<P> {
    fn default() -> Self {
        PeerSet(Vec::new())
    }
}

impl<P: PartialEq> PeerSet<P> {
    fn contains(&self, peer: &P) -> bool {
        self.0.contains(peer)
    }

    fn insert(&mut self, peer: P) {
        if !self.0.contains(&peer) {
            self.0.push(peer);
        }
    }

    fn remove(&mut self, peer: &P) -> bool {
        let Some(i) = self.0.iter().position(|x| x == peer) else {
            return false;
        };
        self.0.swap_remove(i);
        true
    }

    fn iter(&self) -> std::slice::Iter<'_, P> {
        self.0.iter()
    }
}

#[derive(Debug, Clone)]
pub struct Broadcast<K: Types> {
    eager: PeerSet<K::Peer>,
    lazy: PeerSet<K::Peer>,
    kept: BTreeMap<LineId<K::Author>, Kept<K::Line>>,
    /// `kept` in the order it was filled, with when, to let lines go after `keep`.
    kept_order: VecDeque<(Millis, LineId<K::Author>)>,
    missing: BTreeMap<LineId<K::Author>, Missing<K::Peer>>,
    order: Order<K>,
    /// I-have announcements waiting for the next `Announce` timer, per neighbour.
    queued: Vec<Queued<K>>,
    announce_set: bool,
    /// Per neighbour: since when, and how many lines its grafts have had this second.
    grafted: Vec<(K::Peer, Millis, usize)>,
    /// When the first neighbour came (what a summary says of how long we have been in).
    member_since: Option<Millis>,
    /// Whether a summary has set where authors' lines start for us (the first one only).
    started_orders: bool,
}

impl<K: Types> Default for Broadcast<K> {
    fn default() -> Self {
        Broadcast {
            eager: PeerSet::default(),
            lazy: PeerSet::default(),
            kept: BTreeMap::new(),
            kept_order: VecDeque::new(),
            missing: BTreeMap::new(),
            order: Order::default(),
            queued: Vec::new(),
            announce_set: false,
            grafted: Vec::new(),
            member_since: None,
            started_orders: false,
        }
    }
}

impl<K: Types> Broadcast<K> {
    pub fn eager(&self) -> impl Iterator<Item = &K::Peer> {
        self.eager.iter()
    }

    pub fn is_eager(&self, peer: &K::Peer) -> bool {
        self.eager.contains(peer)
    }

    /// Lines kept now (for the view request and the simulator's memory figure).
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    pub fn neighbor_up(&mut self, now: Millis, peer: K::Peer, out: &mut Vec<Action<K>>) {
        self.lazy.remove(&peer);
        self.eager.insert(peer.clone());
        let member_for = now - *self.member_since.get_or_insert(now);
        let last = self.order.last_shown();
        out.push(Action::Send(peer, Message::Summary { member_for, last }));
    }

    pub fn neighbor_down(&mut self, peer: &K::Peer) {
        self.eager.remove(peer);
        self.lazy.remove(peer);
        self.queued.retain(|(q, _)| q != peer);
        self.grafted.retain(|(q, _, _)| q != peer);
    }

    /// A line of our own, typed by the user.
    pub fn broadcast(
        &mut self,
        now: Millis,
        id: LineId<K::Author>,
        line: K::Line,
        p: &Params,
        out: &mut Vec<Action<K>>,
    ) {
        self.accept(now, None, id, line, 0, p, out);
    }

    pub fn received(
        &mut self,
        now: Millis,
        from: K::Peer,
        msg: Message<K>,
        p: &Params,
        out: &mut Vec<Action<K>>,
    ) {
        match msg {
            Message::Gossip { id, hops, line } => {
                if self.has(&id) {
                    return self.copy(from, &id, p, out);
                }
                if self.lazy.remove(&from) {
                    self.eager.insert(from.clone());
                }
                self.accept(now, Some(from), id, line, hops, p, out);
            }
            Message::IHave(ids) => {
                for (id, _hops) in ids.into_iter().take(bounds::IDS) {
                    self.announced(now, id, &from, p.graft_after, out);
                }
            }
            Message::Graft(ids) => {
                if self.lazy.remove(&from) {
                    self.eager.insert(from.clone());
                }
                let served = match self.grafted.iter_mut().find(|(q, _, _)| *q == from) {
                    Some(entry) => entry,
                    None => {
                        self.grafted.push((from.clone(), now, 0));
                        self.grafted.last_mut().expect("just pushed")
                    }
                };
                if now.saturating_sub(served.1) >= 1_000 {
                    (served.1, served.2) = (now, 0);
                }
                for id in ids.into_iter().take(bounds::IDS) {
                    if served.2 >= bounds::GRAFTED_PER_SECOND {
                        break;
                    }
                    if let Some(k) = self.kept.get(&id) {
                        served.2 += 1;
                        let msg = Message::Gossip {
                            id,
                            hops: k.hops.saturating_add(1),
                            line: k.line.clone(),
                        };
                        out.push(Action::Send(from.clone(), msg));
                    }
                }
            }
            Message::Prune if self.eager.remove(&from) => self.lazy.insert(from),
            Message::Summary {
                member_for,
                last: entries,
            } => {
                let mut offer = Vec::new();
                let entries: Vec<_> = entries.into_iter().take(bounds::AUTHORS).collect();
                // Authors it has not heard of: what came here since it has been a member.
                // (A set, not a search of the list per kept line: 4,096 lines times 256
                // names would be a million comparisons per summary a neighbour sends.)
                let since = now.saturating_sub(member_for);
                let named: BTreeSet<&K::Author> = entries.iter().map(|(a, _, _)| a).collect();
                for (id, k) in &self.kept {
                    if offer.len() >= bounds::IDS {
                        break;
                    }
                    if k.at >= since && !named.contains(&id.author) {
                        offer.push((id.clone(), k.hops));
                    }
                }
                // Where the first neighbour stands on an author a newcomer has not heard
                // of is where its order starts: it waits for nothing written before it
                // came. Only the first: by a later summary, lines written since we came
                // may still be on their way to us along the first links, and starting
                // after them would skip them (`make stress`'s churn found three lost so).
                // Those later neighbours offer what came since instead (above).
                let newcomer = !self.started_orders
                    && self
                        .member_since
                        .is_some_and(|t| now.saturating_sub(t) < p.newcomer_for);
                self.started_orders = true;
                for (author, incarnation, last) in entries.iter().filter(|_| newcomer) {
                    self.order.start_after(now, author, *incarnation, *last);
                }
                for (author, incarnation, last) in entries {
                    // What we kept of this run after `last` (nothing after the highest
                    // number; and a range that can never end before it starts).
                    let Some(first) = last.checked_add(1) else {
                        continue;
                    };
                    let from_id = LineId {
                        author: author.clone(),
                        incarnation,
                        seq: first,
                    };
                    let to_id = LineId {
                        author,
                        incarnation,
                        seq: u64::MAX,
                    };
                    for (id, k) in self.kept.range(from_id..=to_id) {
                        if offer.len() >= bounds::IDS {
                            break;
                        }
                        offer.push((id.clone(), k.hops));
                    }
                }
                if !offer.is_empty() {
                    out.push(Action::Send(from, Message::IHave(offer)));
                }
            }
            _ => {}
        }
    }

    pub fn timer(&mut self, now: Millis, timer: Timer<K>, p: &Params, out: &mut Vec<Action<K>>) {
        match timer {
            Timer::Announce => {
                self.announce_set = false;
                for (peer, mut ids) in std::mem::take(&mut self.queued) {
                    while ids.len() > bounds::IDS {
                        let rest = ids.split_off(bounds::IDS);
                        out.push(Action::Send(peer.clone(), Message::IHave(ids)));
                        ids = rest;
                    }
                    out.push(Action::Send(peer, Message::IHave(ids)));
                }
            }
            Timer::Graft(id) => {
                if self.has(&id) {
                    self.missing.remove(&id);
                    return;
                }
                let Some(m) = self.missing.get_mut(&id) else {
                    return;
                };
                if now < m.due {
                    return;
                }
                match m.announcers.pop_front() {
                    Some(peer) => {
                        m.due = now + p.graft_again;
                        self.lazy.remove(&peer);
                        self.eager.insert(peer.clone());
                        out.push(Action::Send(peer, Message::Graft(vec![id.clone()])));
                        out.push(Action::SetTimer {
                            after: p.graft_again,
                            timer: Timer::Graft(id),
                        });
                    }
                    None => {
                        self.missing.remove(&id);
                    }
                }
            }
            Timer::Gap(author) => self.order.gap_timer(now, author, p, out),
            _ => {}
        }
        self.forget_old(now, p);
    }
}
