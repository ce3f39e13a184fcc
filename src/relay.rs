//! Servants behind firewalls: who is unreachable, and who relays to them.
//!
//! The article's last section sketches this: servants report the peers they cannot
//! contact; the manager concludes that a servant is behind a port-blocking router when
//! most peers complain about it while it keeps heartbeating, and then tells it to pull from
//! a chosen peer that is not itself blocked. It warns against acting on the first
//! complaint and suggests a threshold of 2 or 3 complaints from each peer.
//!
//! The article trusted every complainer. Here a handful of newcomers must not be able to
//! cut a servant off and become its relay, so only *voters* count: servants that proved
//! their key, have been listed long enough to have tried everyone they were told about,
//! and are not relayed themselves. The registry decides who the voters are (it knows the
//! times and the dial-backs); this module is the rule over them, kept free of sockets,
//! clocks and locks so it can be tested on its own (`Suspicion`), and the choice of a
//! relay (`choose_relay`). The registry calls both while it holds the manager's lock.
//!
//! The rule, made precise:
//! - a complaint counts against a suspect only from a voter other than the suspect;
//! - a voter *backs* the suspicion once it has complained at least `threshold` times;
//! - a voter that backs complaints against every other voter (two or more) has trouble of
//!   its own reaching out, and its complaints count against nobody;
//! - a suspect is condemned when more than half of the other voters that count back it,
//!   and those backing it are listed at `MIN_ADDRESSES` distinct addresses or more (one
//!   host cannot outvote the rest by opening many connections). The suspect is listed, so
//!   it is still heartbeating (the manager drops silent ones).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// Distinct addresses the backers of a verdict must be listed at.
pub const MIN_ADDRESSES: usize = 2;

/// The servants whose complaints count, by slot offset, with the address each is listed at.
pub type Voters = BTreeMap<u32, IpAddr>;

/// Complaint counts: `counts[suspect][complainer]`, by slot offset.
#[derive(Debug, Default)]
pub struct Suspicion {
    counts: HashMap<u32, HashMap<u32, u32>>,
    pub threshold: u32,
}

/// What the rule concluded about a suspect after a complaint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not (yet) enough: `backing` of the `needed` voters back it, from `addresses`
    /// distinct addresses.
    Suspected {
        backing: usize,
        needed: usize,
        addresses: usize,
    },
    /// Most peers cannot reach it: relay to it.
    Unreachable { backing: usize, of: usize },
}

impl Suspicion {
    pub fn new(threshold: u32) -> Suspicion {
        Suspicion {
            counts: HashMap::new(),
            threshold: threshold.max(1),
        }
    }

    /// Records that `complainer` could not reach `suspect`, and judges the suspect. A
    /// complaint from someone who is not a voter, or about itself, is not counted.
    pub fn complain(&mut self, complainer: u32, suspect: u32, voters: &Voters) -> Verdict {
        if complainer != suspect && voters.contains_key(&complainer) {
            *self
                .counts
                .entry(suspect)
                .or_default()
                .entry(complainer)
                .or_default() += 1;
        }
        self.judge(suspect, voters)
    }

    /// How many times `complainer` has complained about `suspect` (as counted).
    pub fn count(&self, complainer: u32, suspect: u32) -> u32 {
        self.counts
            .get(&suspect)
            .and_then(|c| c.get(&complainer))
            .copied()
            .unwrap_or(0)
    }

    fn backs(&self, complainer: u32, suspect: u32) -> bool {
        self.counts
            .get(&suspect)
            .and_then(|c| c.get(&complainer))
            .is_some_and(|&n| n >= self.threshold)
    }

    /// The voters that back complaints against every other voter (at least two): the
    /// trouble is on their side. One pass over the counts, not one per voter: the manager
    /// asks under its lock, with a thousand servants listed.
    pub fn troubled(&self, voters: &Voters) -> BTreeSet<u32> {
        let others = voters.len().saturating_sub(1);
        if others < 2 {
            return BTreeSet::new();
        }
        let mut backed: HashMap<u32, usize> = HashMap::new();
        for (suspect, by) in &self.counts {
            if !voters.contains_key(suspect) {
                continue;
            }
            for (&c, &n) in by {
                if c != *suspect && n >= self.threshold && voters.contains_key(&c) {
                    *backed.entry(c).or_default() += 1;
                }
            }
        }
        backed
            .into_iter()
            .filter(|&(_, n)| n == others)
            .map(|(c, _)| c)
            .collect()
    }

    /// Whether `complainer` is one of the `troubled` voters.
    pub fn is_troubled(&self, complainer: u32, voters: &Voters) -> bool {
        self.troubled(voters).contains(&complainer)
    }

    /// Judges `suspect` against the current counts.
    pub fn judge(&self, suspect: u32, voters: &Voters) -> Verdict {
        let troubled = self.troubled(voters);
        let counted: Vec<u32> = voters
            .keys()
            .copied()
            .filter(|&o| o != suspect && !troubled.contains(&o))
            .collect();
        let backers: Vec<u32> = counted
            .iter()
            .copied()
            .filter(|&v| self.backs(v, suspect))
            .collect();
        let addresses = backers
            .iter()
            .filter_map(|o| voters.get(o))
            .collect::<BTreeSet<_>>()
            .len();
        let (backing, needed) = (backers.len(), counted.len() / 2 + 1);
        if !counted.is_empty() && backing >= needed && addresses >= MIN_ADDRESSES {
            Verdict::Unreachable {
                backing,
                of: counted.len(),
            }
        } else {
            Verdict::Suspected {
                backing,
                needed,
                addresses,
            }
        }
    }

    /// Forgets a servant that left: complaints about it and complaints it made.
    pub fn forget(&mut self, offset: u32) {
        self.counts.remove(&offset);
        for c in self.counts.values_mut() {
            c.remove(&offset);
        }
    }

    /// Forgets complaints about `suspect` (it is relayed now, or it was re-registered).
    pub fn clear(&mut self, suspect: u32) {
        self.counts.remove(&suspect);
    }
}

/// Picks a relay for `client` among `candidates` (offset, relayed clients it serves):
/// the one serving fewest, then the lowest offset. Candidates must already exclude the
/// client itself and every servant not trusted to relay (see the registry).
pub fn choose_relay(candidates: &[(u32, usize)]) -> Option<u32> {
    candidates
        .iter()
        .min_by_key(|&&(offset, load)| (load, offset))
        .map(|&(o, _)| o)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Voters 1..=n, each at an address of its own.
    fn listed(n: u32) -> Voters {
        (1..=n)
            .map(|o| (o, IpAddr::from([10, 0, 0, o as u8])))
            .collect()
    }

    fn complain_times(s: &mut Suspicion, from: u32, about: u32, times: u32, l: &Voters) -> Verdict {
        let mut v = s.judge(about, l);
        for _ in 0..times {
            v = s.complain(from, about, l);
        }
        v
    }

    #[test]
    fn one_voter_never_condemns_even_when_it_is_the_only_one() {
        let l = listed(2);
        let mut s = Suspicion::new(2);
        assert_eq!(
            complain_times(&mut s, 1, 2, 10, &l),
            Verdict::Suspected {
                backing: 1,
                needed: 1,
                addresses: 1
            }
        );
    }

    #[test]
    fn most_voters_must_back_it_each_past_the_threshold() {
        let l = listed(5); // suspect 5; voters 1..4, needed 3
        let mut s = Suspicion::new(3);
        complain_times(&mut s, 1, 5, 3, &l);
        complain_times(&mut s, 2, 5, 3, &l);
        assert_eq!(
            complain_times(&mut s, 3, 5, 2, &l),
            Verdict::Suspected {
                backing: 2,
                needed: 3,
                addresses: 2
            }
        );
        assert_eq!(
            s.complain(3, 5, &l),
            Verdict::Unreachable { backing: 3, of: 4 }
        );
    }

    #[test]
    fn backers_at_one_address_are_not_enough() {
        // Five voters, four of them (the attackers) at one address.
        let mut l = listed(5);
        for o in 2..=5 {
            l.insert(o, IpAddr::from([10, 0, 0, 99]));
        }
        let mut s = Suspicion::new(1);
        for o in 2..=5 {
            s.complain(o, 1, &l);
        }
        assert_eq!(
            s.judge(1, &l),
            Verdict::Suspected {
                backing: 4,
                needed: 3,
                addresses: 1
            }
        );
    }

    #[test]
    fn a_servant_that_cannot_reach_anyone_condemns_nobody() {
        let l = listed(4);
        let mut s = Suspicion::new(2);
        for suspect in [1, 2, 3] {
            complain_times(&mut s, 4, suspect, 10, &l);
        }
        assert!(s.is_troubled(4, &l));
        for suspect in [1, 2, 3] {
            assert!(matches!(
                s.judge(suspect, &l),
                Verdict::Suspected { backing: 0, .. }
            ));
        }
        // Its complaints do not count, but the others can still condemn a real
        // firewalled servant among them.
        complain_times(&mut s, 1, 3, 2, &l);
        assert!(matches!(
            complain_times(&mut s, 2, 3, 1, &l),
            Verdict::Suspected {
                backing: 1,
                needed: 2,
                ..
            }
        ));
        assert_eq!(
            s.complain(2, 3, &l),
            Verdict::Unreachable { backing: 2, of: 2 }
        );
    }

    #[test]
    fn a_lying_or_broken_complainer_alone_is_not_enough() {
        let l = listed(4);
        let mut s = Suspicion::new(2);
        assert!(matches!(
            complain_times(&mut s, 1, 2, 50, &l),
            Verdict::Suspected {
                backing: 1,
                needed: 2,
                ..
            }
        ));
        // Complaints about itself and from those who are not voters count for nothing.
        s.complain(2, 2, &l);
        s.complain(99, 2, &l);
        assert!(matches!(
            s.judge(2, &l),
            Verdict::Suspected { backing: 1, .. }
        ));
        s.forget(1);
        assert!(matches!(
            s.judge(2, &l),
            Verdict::Suspected { backing: 0, .. }
        ));
    }

    #[test]
    fn relays_are_spread() {
        assert_eq!(choose_relay(&[(3, 1), (1, 2), (2, 1)]), Some(2));
        assert_eq!(choose_relay(&[]), None);
    }
}
