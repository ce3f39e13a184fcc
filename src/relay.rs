//! Servants behind firewalls: who is unreachable, and who relays to them.
//!
//! The article's last section sketches this: servants report the peers they cannot
//! contact; the manager concludes that a servant is behind a port-blocking router when
//! most peers complain about it while it keeps heartbeating, and then tells it to pull from
//! a chosen peer that is not itself blocked. It warns against acting on the first
//! complaint and suggests a threshold of 2 or 3 complaints from each peer.
//!
//! This module is that decision, kept free of sockets and locks so its rule can be tested
//! on its own (`Suspicion`), and the choice of a relay (`choose_relay`). The registry
//! calls both while it holds the manager's lock.
//!
//! The rule, made precise:
//! - a complaint counts against a suspect only from a listed servant other than the suspect;
//! - a complainer *backs* the suspicion once it has complained at least `threshold` times;
//! - a complainer that backs complaints against every other servant (two or more) has
//!   trouble of its own reaching out, and its complaints count against nobody;
//! - a suspect is condemned when more than half of the other servants that count back it.
//!   The suspect is listed, so it is still heartbeating (the manager drops silent ones).

use std::collections::{BTreeSet, HashMap};

/// Complaint counts: `counts[suspect][complainer]`, by slot offset.
#[derive(Debug, Default)]
pub struct Suspicion {
    counts: HashMap<u32, HashMap<u32, u32>>,
    pub threshold: u32,
}

/// What the rule concluded about a suspect after a complaint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not (yet) enough: `backing` of the `needed` complainers that count back it.
    Suspected { backing: usize, needed: usize },
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

    /// Records that `complainer` could not reach `suspect`, and judges the suspect.
    /// `listed` are the offsets of every listed servant (the suspect among them).
    pub fn complain(&mut self, complainer: u32, suspect: u32, listed: &BTreeSet<u32>) -> Verdict {
        if complainer != suspect && listed.contains(&complainer) && listed.contains(&suspect) {
            *self
                .counts
                .entry(suspect)
                .or_default()
                .entry(complainer)
                .or_default() += 1;
        }
        self.judge(suspect, listed)
    }

    fn backs(&self, complainer: u32, suspect: u32) -> bool {
        self.counts
            .get(&suspect)
            .and_then(|c| c.get(&complainer))
            .is_some_and(|&n| n >= self.threshold)
    }

    /// A complainer that backs complaints against every other listed servant (at least
    /// two): the trouble is on its side.
    pub fn is_troubled(&self, complainer: u32, listed: &BTreeSet<u32>) -> bool {
        let others: Vec<u32> = listed
            .iter()
            .copied()
            .filter(|&o| o != complainer)
            .collect();
        others.len() >= 2 && others.iter().all(|&s| self.backs(complainer, s))
    }

    /// Judges `suspect` against the current counts.
    pub fn judge(&self, suspect: u32, listed: &BTreeSet<u32>) -> Verdict {
        let voters: Vec<u32> = listed
            .iter()
            .copied()
            .filter(|&o| o != suspect && !self.is_troubled(o, listed))
            .collect();
        let backing = voters.iter().filter(|&&v| self.backs(v, suspect)).count();
        let needed = voters.len() / 2 + 1;
        if !voters.is_empty() && backing >= needed {
            Verdict::Unreachable {
                backing,
                of: voters.len(),
            }
        } else {
            Verdict::Suspected { backing, needed }
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
/// client itself, relayed servants and troubled ones.
pub fn choose_relay(candidates: &[(u32, usize)]) -> Option<u32> {
    candidates
        .iter()
        .min_by_key(|&&(offset, load)| (load, offset))
        .map(|&(o, _)| o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(n: u32) -> BTreeSet<u32> {
        (1..=n).collect()
    }

    fn complain_times(
        s: &mut Suspicion,
        from: u32,
        about: u32,
        times: u32,
        l: &BTreeSet<u32>,
    ) -> Verdict {
        let mut v = s.judge(about, l);
        for _ in 0..times {
            v = s.complain(from, about, l);
        }
        v
    }

    #[test]
    fn one_complaint_never_condemns() {
        let l = listed(2);
        let mut s = Suspicion::new(2);
        assert_eq!(
            s.complain(1, 2, &l),
            Verdict::Suspected {
                backing: 0,
                needed: 1
            }
        );
        assert_eq!(
            s.complain(1, 2, &l),
            Verdict::Unreachable { backing: 1, of: 1 }
        );
    }

    #[test]
    fn most_peers_must_back_it_each_past_the_threshold() {
        let l = listed(5); // suspect 5; voters 1..4, needed 3
        let mut s = Suspicion::new(3);
        complain_times(&mut s, 1, 5, 3, &l);
        complain_times(&mut s, 2, 5, 3, &l);
        assert_eq!(
            complain_times(&mut s, 3, 5, 2, &l),
            Verdict::Suspected {
                backing: 2,
                needed: 3
            }
        );
        assert_eq!(
            s.complain(3, 5, &l),
            Verdict::Unreachable { backing: 3, of: 4 }
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
        // Its complaints do not count, but it is still counted as a peer for nobody:
        // the others can still condemn a real firewalled servant among them.
        complain_times(&mut s, 1, 3, 2, &l);
        assert_eq!(
            s.complain(2, 3, &l),
            Verdict::Suspected {
                backing: 1,
                needed: 2
            }
        );
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
                needed: 2
            }
        ));
        // Complaints about itself, from strangers, or about strangers, count for nothing.
        s.complain(2, 2, &l);
        s.complain(99, 2, &l);
        s.complain(3, 99, &l);
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
