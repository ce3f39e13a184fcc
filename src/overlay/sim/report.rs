//! What the simulator measures: per line, who showed it and how many copies and ids it
//! cost; per phase, the Plumtree paper's measures over those lines; per run, how the
//! overlay healed.

use super::{Node, Sim};
use crate::overlay::event::Millis;

/// Bits, one per servant.
#[derive(Clone)]
pub(super) struct Bits(Vec<u64>);

impl Bits {
    pub(super) fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    /// Sets bit `i`; whether it was set already.
    pub(super) fn set(&mut self, i: u32) -> bool {
        let (w, b) = (i as usize / 64, 1u64 << (i % 64));
        let was = self.0[w] & b != 0;
        self.0[w] |= b;
        was
    }
    pub(super) fn get(&self, i: u32) -> bool {
        self.0[i as usize / 64] & (1u64 << (i % 64)) != 0
    }
}

/// What became of one line written in the simulation.
pub(super) struct LineStat {
    pub(super) phase: usize,
    pub(super) sent_at: Millis,
    /// Servants up and joined when it was sent.
    pub(super) eligible: Bits,
    pub(super) shown: Bits,
    pub(super) shown_count: u64,
    pub(super) gossip: u64,
    /// Ids announced and grafted for it.
    pub(super) control: u64,
    pub(super) doubled: u64,
    pub(super) max_hops: u16,
    pub(super) last_at: Millis,
}

/// One phase's measures.
#[derive(Debug, Clone, Default)]
pub struct PhaseReport {
    pub name: String,
    pub lines: usize,
    /// Mean and lowest, over lines, of the share of eligible survivors that showed it.
    pub reliability: f64,
    pub reliability_min: f64,
    /// Whole-line messages received per servant that showed a line, minus one.
    pub redundancy: f64,
    /// Ids announced (i-have) or grafted per servant per line.
    pub control: f64,
    /// Hops of each line's last delivery: mean and highest.
    pub last_hop: f64,
    pub last_hop_max: u16,
    /// Milliseconds from sending to the last servant's showing: median over lines.
    pub last_delivery_p50: Millis,
    pub doubled: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub servants: usize,
    pub flood: bool,
    pub phases: Vec<PhaseReport>,
    /// Milliseconds from the failure of a fifth to a healed overlay, and from the end of
    /// the split (None: not healed within the phase).
    pub heal_after_failure: Option<Millis>,
    pub heal_after_split: Option<Millis>,
    pub lost_reported: u64,
    pub events: u64,
    /// Messages sent, by kind (`Message::KINDS`).
    pub messages: [u64; 12],
    /// Active links per servant at the end: mean, and fewest.
    pub degree_mean: f64,
    pub degree_min: usize,
    /// Links at the end that only one end counts as active.
    pub one_sided: usize,
    /// The stable overlay (after its lines, before anyone fails), for a picture: each
    /// active link once (lower number first), and how many of its ends push whole lines
    /// on it (2: a link of Plumtree's tree; 1: one end has pruned it; 0: ids only).
    pub links: Vec<(u32, u32, u8)>,
}

impl Sim {
    pub(super) fn finish(mut self) -> Report {
        let mut phases = Vec::new();
        for (pi, name) in self.phase_names.iter().enumerate() {
            let mut rel = Vec::new();
            let (mut rmr, mut ctl, mut hops, mut hop_max, mut delays, mut doubled) =
                (0.0, 0.0, 0.0, 0u16, Vec::new(), 0u64);
            // (ctl: ids announced or grafted per servant that showed the line)
            let lines: Vec<&LineStat> = self.lines.iter().filter(|l| l.phase == pi).collect();
            for l in &lines {
                let mut eligible = 0u64;
                let mut shown = 0u64;
                for i in 0..self.nodes.len() as u32 {
                    if l.eligible.get(i) && self.nodes[i as usize].alive {
                        eligible += 1;
                        if l.shown.get(i) {
                            shown += 1;
                        }
                    }
                }
                rel.push(if eligible == 0 {
                    1.0
                } else {
                    shown as f64 / eligible as f64
                });
                let others = l.shown_count.saturating_sub(1).max(1) as f64;
                rmr += l.gossip as f64 / others - 1.0;
                ctl += l.control as f64 / l.shown_count.max(1) as f64;
                hops += f64::from(l.max_hops);
                hop_max = hop_max.max(l.max_hops);
                delays.push(l.last_at - l.sent_at);
                doubled += l.doubled;
            }
            let k = lines.len().max(1) as f64;
            delays.sort_unstable();
            phases.push(PhaseReport {
                name: name.clone(),
                lines: lines.len(),
                reliability: rel.iter().sum::<f64>() / k,
                reliability_min: rel.iter().copied().fold(1.0, f64::min),
                redundancy: rmr / k,
                control: ctl / k,
                last_hop: hops / k,
                last_hop_max: hop_max,
                last_delivery_p50: delays.get(delays.len() / 2).copied().unwrap_or(0),
                doubled,
            });
        }
        let up: Vec<&Node> = self.nodes.iter().filter(|n| n.alive).collect();
        self.report.degree_mean = up.iter().map(|n| n.overlay.active().len()).sum::<usize>() as f64
            / up.len().max(1) as f64;
        self.report.degree_min = up
            .iter()
            .map(|n| n.overlay.active().len())
            .min()
            .unwrap_or(0);
        let mut one_sided = 0;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                continue;
            }
            for &p in n.overlay.active() {
                if !self.nodes[p as usize]
                    .overlay
                    .active()
                    .contains(&(i as u32))
                {
                    one_sided += 1;
                }
            }
        }
        self.report.one_sided = one_sided;
        self.report.phases = phases;
        self.report
    }
}
