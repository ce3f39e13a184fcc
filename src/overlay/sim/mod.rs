//! A deterministic discrete-event simulator for the overlay: the servant's own state
//! machine (`state::Overlay`), run for 100,000 servants in one process, with simulated
//! latencies, a seeded random generator and no sockets, in the manner of iroh-gossip's
//! `proto/sim.rs` and the Plumtree paper's evaluation.
//!
//! The network model: each pair of servants has a fixed latency (so each link delivers in
//! order, as TCP does); a killed servant's links close at once on its neighbours' side
//! (its kernel resets them), and whatever is sent to it fails; during a split, lines
//! across it vanish, links across it are found dead after `silence` (the servant's
//! time-out), and dialling across it fails after `connect_timeout`.
//!
//! It reports the paper's measures per phase: reliability (the share of the servants up
//! from the line's sending to the end that showed it), relative message redundancy
//! (whole-line messages received per servant per line, minus one), the last delivery's
//! hop count, and time to heal (until every servant that is up links only to servants
//! that are up and the links join them all).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

mod report;
mod scenario;

use super::event::{Action, Input, LineId, Message, Millis, Timer, Types};
use super::params::Params;
use super::rng::Rng;
use super::state::Overlay;
use report::LineStat;
pub use report::{PhaseReport, Report};

/// Servants are numbers; lines carry nothing (the simulator pays for no cryptography).
#[derive(Debug, Clone)]
pub struct Sim32;

impl Types for Sim32 {
    type Peer = u32;
    type Author = u32;
    type Line = ();
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub servants: usize,
    pub seed: u64,
    pub params: Params,
    /// One-way latency of a link, drawn once per pair in this range.
    pub latency: (Millis, Millis),
    /// How long a link across a split stays up before its ends find it dead.
    pub silence: Millis,
    pub connect_timeout: Millis,
    /// Over how long the servants join.
    pub join_over: Millis,
    /// Every whole line eager (flooding), for comparison with Plumtree.
    pub flood: bool,
    /// Say on standard error when each phase starts (a long run's sign of life).
    pub progress: bool,
}

impl SimConfig {
    pub fn new(servants: usize, seed: u64) -> SimConfig {
        SimConfig {
            servants,
            seed,
            params: Params::default(),
            latency: (5, 50),
            silence: 3_000,
            connect_timeout: 1_000,
            join_over: 10_000,
            flood: false,
            progress: false,
        }
    }
}

enum Ev {
    Deliver {
        to: u32,
        from: u32,
        msg: Message<Sim32>,
    },
    Timer {
        node: u32,
        timer: Timer<Sim32>,
    },
    LinkDown {
        node: u32,
        peer: u32,
    },
    Unreachable {
        node: u32,
        peer: u32,
    },
    Join {
        node: u32,
    },
}

struct Node {
    overlay: Overlay<Sim32>,
    rng: Rng,
    alive: bool,
    joined: bool,
    side: bool,
    next_seq: u64,
}

pub struct Sim {
    cfg: SimConfig,
    now: Millis,
    /// Events by the millisecond they happen in, each millisecond's in the order they
    /// were made (a binary heap of millions of events was a third of the run time).
    queue: BTreeMap<Millis, Vec<Ev>>,
    nodes: Vec<Node>,
    split: bool,
    /// Links across the split whose end has been told (once) that it fell silent.
    cut: HashSet<(u32, u32)>,
    rng: Rng,
    out: Vec<Action<Sim32>>,
    lines: Vec<LineStat>,
    /// Each author's lines by number (from 1): where they are in `lines`.
    lines_of: Vec<Vec<usize>>,
    phase_names: Vec<String>,
    report: Report,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let servants = cfg.servants;
        let mut rng = Rng::seeded(cfg.seed);
        let mut params = cfg.params.clone();
        params.plumtree = !cfg.flood;
        let params = Arc::new(params);
        let nodes = (0..cfg.servants as u32)
            .map(|i| Node {
                overlay: Overlay::new(i, Arc::clone(&params)),
                rng: Rng::seeded(rng.next_u64()),
                alive: true,
                joined: false,
                side: false,
                next_seq: 1,
            })
            .collect();
        let report = Report {
            servants: cfg.servants,
            flood: cfg.flood,
            ..Report::default()
        };
        Sim {
            cfg,
            now: 0,
            queue: BTreeMap::new(),
            nodes,
            split: false,
            cut: HashSet::new(),
            rng,
            out: Vec::new(),
            lines: Vec::new(),
            lines_of: vec![Vec::new(); servants],
            phase_names: Vec::new(),
            report,
        }
    }

    fn push(&mut self, after: Millis, ev: Ev) {
        self.queue
            .entry(self.now.saturating_add(after))
            .or_default()
            .push(ev);
    }

    fn latency(&self, a: u32, b: u32) -> Millis {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let mut h = Rng::seeded((lo << 32 | hi) ^ self.cfg.seed);
        let (min, max) = self.cfg.latency;
        min + h.next_u64() % (max - min).max(1)
    }

    fn line_of(&self, id: &LineId<u32>) -> Option<usize> {
        let seq = usize::try_from(id.seq).ok()?.checked_sub(1)?;
        self.lines_of.get(id.author as usize)?.get(seq).copied()
    }

    /// Runs the events until `until`.
    pub fn run_until(&mut self, until: Millis) {
        while self
            .queue
            .first_key_value()
            .is_some_and(|(&at, _)| at <= until)
        {
            let Some((at, events)) = self.queue.pop_first() else {
                break;
            };
            self.now = at;
            for ev in events {
                self.event(ev);
            }
        }
        self.now = until;
    }

    fn event(&mut self, ev: Ev) {
        self.report.events += 1;
        let (node, input) = match ev {
            Ev::Deliver { to, from, msg } => {
                if !self.nodes[from as usize].alive {
                    // Sent just before its sender failed: what a kernel does with such a
                    // link is reset it, and the receiver sees the link go.
                    return self.push(
                        0,
                        Ev::LinkDown {
                            node: to,
                            peer: from,
                        },
                    );
                }
                if let Message::Gossip { id, .. } = &msg {
                    if let Some(i) = self.line_of(id) {
                        if self.nodes[to as usize].alive {
                            self.lines[i].gossip += 1;
                        }
                    }
                }
                (to, Input::Received(from, msg))
            }
            Ev::Timer { node, timer } => (node, Input::Timer(timer)),
            Ev::LinkDown { node, peer } => (node, Input::LinkDown(peer)),
            Ev::Unreachable { node, peer } => {
                // The other side dialled in meanwhile: there is a link, whatever became
                // of our own attempt.
                if self.nodes[peer as usize].alive
                    && self.nodes[peer as usize].overlay.active().contains(&node)
                    && self.nodes[node as usize].overlay.active().contains(&peer)
                    && !(self.split
                        && self.nodes[node as usize].side != self.nodes[peer as usize].side)
                {
                    return;
                }
                (node, Input::Unreachable(peer))
            }
            Ev::Join { node } => return self.join(node),
        };
        if self.nodes[node as usize].alive {
            self.input(node, input);
        }
    }

    fn input(&mut self, node: u32, input: Input<Sim32>) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        {
            let n = &mut self.nodes[node as usize];
            n.overlay.handle(self.now, input, &mut n.rng, &mut out);
        }
        // A close right after a message that ends the link (a disconnect, a refusal, a
        // shuffle's answer) tells the other end nothing new; only a bare close is
        // delivered as the link going down (sparing a few million events at 100,000).
        let told: Vec<u32> = out
            .iter()
            .filter_map(|a| match a {
                Action::Send(
                    to,
                    Message::Disconnect { .. }
                    | Message::NeighborReply { accepted: false }
                    | Message::ShuffleReply { .. },
                ) => Some(*to),
                _ => None,
            })
            .collect();
        for action in out.drain(..) {
            match action {
                Action::Close(peer) if told.contains(&peer) => {}
                action => self.act(node, action),
            }
        }
        self.out = out;
    }

    fn act(&mut self, node: u32, action: Action<Sim32>) {
        match action {
            Action::Send(to, msg) => self.send(node, to, msg),
            Action::SetTimer { after, timer } => self.push(after, Ev::Timer { node, timer }),
            Action::Show { id, hops, .. } => {
                let Some(i) = self.line_of(&id) else { return };
                let now = self.now;
                let l = &mut self.lines[i];
                if l.shown.set(node) {
                    l.doubled += 1;
                } else {
                    l.shown_count += 1;
                    l.max_hops = l.max_hops.max(hops);
                    l.last_at = l.last_at.max(now);
                }
            }
            Action::Lost { first, last, .. } => self.report.lost_reported += last - first + 1,
            Action::Isolated => {
                let after = 1_000 + self.rng.below(1_000) as Millis;
                self.push(after, Ev::Join { node });
            }
            Action::Close(peer) => {
                // The other end sees its link close, after what was sent before.
                let after = self.latency(node, peer);
                self.push(
                    after,
                    Ev::LinkDown {
                        node: peer,
                        peer: node,
                    },
                );
            }
            Action::NeighborUp(_) | Action::NeighborDown(_) => {}
        }
    }

    fn send(&mut self, from: u32, to: u32, msg: Message<Sim32>) {
        self.report.messages[msg.kind_index()] += 1;
        if let Message::IHave(ids) = &msg {
            for (id, _) in ids {
                if let Some(i) = self.line_of(id) {
                    self.lines[i].control += 1;
                }
            }
        }
        if let Message::Graft(ids) = &msg {
            for id in ids {
                if let Some(i) = self.line_of(id) {
                    self.lines[i].control += 1;
                }
            }
        }
        let linked = self.nodes[from as usize].overlay.active().contains(&to);
        if !self.nodes[to as usize].alive {
            let after = self.latency(from, to);
            self.push(
                after,
                Ev::Unreachable {
                    node: from,
                    peer: to,
                },
            );
            return;
        }
        if self.split && self.nodes[from as usize].side != self.nodes[to as usize].side {
            if !linked {
                let after = self.cfg.connect_timeout;
                self.push(
                    after,
                    Ev::Unreachable {
                        node: from,
                        peer: to,
                    },
                );
            } else if self.cut.insert((from, to)) {
                // A link that came up across the split as it began (a request already on
                // its way): its end falls silent like the others.
                self.push(
                    self.cfg.silence,
                    Ev::LinkDown {
                        node: from,
                        peer: to,
                    },
                );
            }
            return;
        }
        let after = self.latency(from, to);
        self.push(after, Ev::Deliver { to, from, msg });
    }

    /// A servant joins through a random servant already in (what a manager's sample
    /// gives it), and learns a few more.
    fn join(&mut self, node: u32) {
        if !self.nodes[node as usize].alive {
            return;
        }
        let first = !self.nodes[node as usize].joined;
        if first {
            self.nodes[node as usize].joined = true;
            let mut out = Vec::new();
            let n = &mut self.nodes[node as usize];
            n.overlay.start(&mut n.rng, &mut out);
            for a in out {
                self.act(node, a);
            }
        }
        let sample: Vec<u32> = (0..8).filter_map(|_| self.random_member(node)).collect();
        if let Some(&contact) = sample.first() {
            self.input(node, Input::Learn(sample[1..].to_vec()));
            self.input(node, Input::Join(contact));
        }
    }

    fn random_member(&mut self, not: u32) -> Option<u32> {
        for _ in 0..64 {
            let i = self.rng.below(self.nodes.len()) as u32;
            let n = &self.nodes[i as usize];
            let same_side = match self.nodes.get(not as usize) {
                Some(asker) => !self.split || n.side == asker.side,
                None => true,
            };
            if i != not && n.alive && n.joined && same_side {
                return Some(i);
            }
        }
        None
    }
}
