//! The overlay's numbers, with HyParView's and Plumtree's published values where they
//! fit and ours where genp2p differs (a chat of a few hundred lines a minute, not a
//! firehose). Every time is in milliseconds.

use super::event::Millis;

#[derive(Debug, Clone)]
pub struct Params {
    /// Active neighbours kept (`<degree>`): links that carry lines both ways. Gossipsub
    /// keeps 6, HyParView's paper 5 for 10,000 nodes: 6 survives a fifth of the network
    /// failing at once with a margin.
    pub active: usize,
    /// Known servants kept in reserve to replace neighbours that fail (HyParView: 30).
    pub passive: usize,
    /// Steps a join's random walk takes before it ends in an active link (ARWL).
    pub active_walk: u8,
    /// The step of that walk at which the newcomer is kept in the passive set (PRWL).
    pub passive_walk: u8,
    /// Steps a shuffle's walk takes.
    pub shuffle_walk: u8,
    /// Active and passive servants offered in a shuffle (besides ourselves).
    pub shuffle_active: usize,
    pub shuffle_passive: usize,
    /// How often a servant shuffles.
    pub shuffle_every: Millis,
    /// How often empty active places are filled from the passive set.
    pub refill_every: Millis,
    /// How long an asked neighbour may take to answer before it is asked no more.
    pub neighbor_timeout: Millis,
    /// How long i-have announcements wait to be sent together. 200 ms, not Plumtree's
    /// immediate announcements: in `make sim` at 10,000 servants, announcing every 50 ms
    /// made spurious grafts (a slow path of the tree overtaken by an id), and stable
    /// redundancy was 0.19-0.26; 0.10 at 100 ms, 0.005 at 200 ms, with 40 % fewer i-have
    /// messages.
    pub announce_every: Millis,
    /// How long after an announcement a missing line is grafted (Plumtree: about one
    /// round trip), and then from the next announcer. A line missing before a later
    /// one of its author waits as long (waiting 1 s instead was measured no better).
    pub graft_after: Millis,
    pub graft_again: Millis,
    /// How long a gap in an author's lines is waited on before they are reported lost.
    /// 30 s: with 1,000 real servants on a 2-core machine, a burst of 500 lines took up
    /// to 28 s to reach the last servant, and with 10 s a few hundred of 449,000
    /// deliveries were reported lost while still on their way (`make lan-scale N=1000`).
    pub lost_after: Millis,
    /// How long after its first neighbour a servant counts as new: the first summary,
    /// if it reaches it within this time, sets where each author's lines start for it
    /// (it waits for nothing written before it came). Later summaries, after a split
    /// heals, do not: what was written meanwhile is fetched instead.
    pub newcomer_for: Millis,
    /// How long lines are kept to answer grafts and summaries.
    pub keep: Millis,
    /// Lines kept at most, whatever their age.
    pub keep_lines: usize,
    /// The window of `bounds::EVICTIONS`.
    pub evict_window: Millis,
    /// How often a neighbour lost to a time-out is asked again, and for how long.
    pub retry_every: Millis,
    pub retry_for: Millis,
    /// Plumtree (prune duplicate links, announce ids on the others); `false` floods
    /// every line whole on every link, for comparison.
    pub plumtree: bool,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            active: 6,
            passive: 30,
            active_walk: 6,
            passive_walk: 3,
            shuffle_walk: 3,
            shuffle_active: 3,
            shuffle_passive: 4,
            shuffle_every: 30_000,
            refill_every: 1_000,
            neighbor_timeout: 2_000,
            announce_every: 200,
            graft_after: 150,
            graft_again: 100,
            lost_after: 30_000,
            newcomer_for: 5_000,
            keep: 60_000,
            keep_lines: 4_096,
            evict_window: 10_000,
            retry_every: 2_000,
            retry_for: 60_000,
            plumtree: true,
        }
    }
}

/// Bounds on what a neighbour may send, whatever it claims: a message past them is cut.
pub mod bounds {
    /// Servants in one shuffle or sample.
    pub const PEERS: usize = 16;
    /// Ids in one i-have or graft.
    pub const IDS: usize = 256;
    /// Authors in one summary.
    pub const AUTHORS: usize = 256;
    /// Announcers remembered for one missing line.
    pub const ANNOUNCERS: usize = 8;
    /// Missing lines waited on at once; later announcements are ignored until some come.
    pub const MISSING: usize = 8_192;
    /// Lines held back per author while an earlier one is awaited.
    pub const HELD: usize = 1_024;
    /// Authors whose order is kept; the one heard from longest ago is forgotten first.
    pub const AUTHORS_KEPT: usize = 4_096;
    /// Lines sent whole to one neighbour in answer to its grafts, per second: a graft is
    /// a few bytes per id and its answer a whole line, so grafts past this are let go
    /// (an honest neighbour grafts a line once, and again only if it did not come).
    pub const GRAFTED_PER_SECOND: usize = 256;
    /// Neighbours pushed out by others' joins and high-priority requests, at most, per
    /// `Params::evict_window`.
    pub const EVICTIONS: usize = 6;
    /// Neighbours lost to a time-out that are asked again.
    pub const LOST: usize = 8;
}
