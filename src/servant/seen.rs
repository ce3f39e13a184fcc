//! What each author has had shown: the run and the last sequence number, per author, to
//! drop duplicates and notice gaps (the delivery rules of docs/PROTOCOL.md 4.6).
//!
//! Every receiving thread shares one `Seen`; so does the relay side (the `SEEN` lines a
//! puller sends come from it) and the relay watch. Only lines that passed the tag or
//! signature checks reach it, so a forged line can never make a genuine one look like a
//! duplicate; and it is bounded, so keys made by the thousand cannot grow it for ever.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

/// Authors remembered at most beyond those listed (see `Seen`).
pub const STRANGERS: usize = 4096;

/// The run and the last sequence number shown from each writer, to drop duplicates and
/// notice gaps. Only authentic lines reach it (see the module docs), so an entry costs
/// its author a key and a handshake, never a forged origin.
///
/// It is bounded all the same: an outsider can make keys by the thousand. Authors the
/// peer document lists are always kept; the others, at most `STRANGERS`, least recently
/// heard first out. What eviction cannot do is make an evicted author's next line look
/// like a duplicate: with no entry, its next line is shown as a first one. Nor can it let
/// a replay through: the evicted author's key is forgotten with it (`deliver` returns the
/// ids, and `Authors::forget` drops their keys), so old lines of its that others pass on
/// no longer verify, and only the author's own link, proved by a fresh handshake, can
/// bring its lines again.
#[derive(Default)]
pub struct Seen {
    /// Written and read by every `recv-` thread, in short blocks.
    table: Mutex<SeenTable>,
}

#[derive(Default)]
struct SeenTable {
    /// Id → (run, last shown, when last heard on `clock`).
    last: HashMap<String, (u64, u64, u64)>,
    /// Ids of the listed servants: never evicted (set by the core).
    listed: HashSet<String>,
    /// Their addresses (file connections from them may use the reserved upload slots).
    addresses: HashSet<IpAddr>,
    clock: u64,
}

/// What `Seen::deliver` concluded about a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Show,
    /// Show it; `missed` messages before it never arrived.
    ShowAfterGap {
        missed: u64,
    },
    /// The first message of a new run of its writer (it restarted): show it.
    NewRun,
    Duplicate,
    /// From an earlier run of its writer than one already heard: a replay, dropped.
    OldRun,
}

impl Seen {
    /// Every writer heard from: its id, run, and the last sequence number shown.
    pub fn snapshot(&self) -> Vec<(String, u64, u64)> {
        self.lock()
            .last
            .iter()
            .map(|(k, &(inc, seq, _))| (k.clone(), inc, seq))
            .collect()
    }

    /// How many writers are remembered.
    pub fn remembered(&self) -> usize {
        self.lock().last.len()
    }

    /// The last number shown from `origin` in its run `incarnation` (0: none).
    pub fn last_from(&self, origin: &str, incarnation: u64) -> u64 {
        match self.lock().last.get(origin) {
            Some(&(inc, seq, _)) if inc == incarnation => seq,
            _ => 0,
        }
    }

    /// The ids of the servants listed now: their entries are never evicted.
    pub fn keep(&self, listed: HashSet<String>) {
        self.lock().listed = listed;
    }

    /// Whether `id` is listed now (as far as the core has told).
    pub fn is_listed(&self, id: &str) -> bool {
        self.lock().listed.contains(id)
    }

    /// Whether a listed servant is at `ip`.
    pub fn is_listed_address(&self, ip: IpAddr) -> bool {
        self.lock().addresses.contains(&ip)
    }

    /// The addresses of the servants listed now (set by the core with `keep`).
    pub fn keep_addresses(&self, addresses: HashSet<IpAddr>) {
        self.lock().addresses = addresses;
    }

    /// Also keeps `id`, at `ip` (listed since the last `keep`).
    pub fn keep_one(&self, id: &str, ip: Option<IpAddr>) {
        let mut t = self.lock();
        t.listed.insert(id.to_owned());
        t.addresses.extend(ip);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeenTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records message `seq` of run `inc` from `origin` and says whether to show it.
    /// `show` is called under the lock, so two connections carrying the same writer's
    /// messages cannot reorder them. Returns the authors evicted to make room (most
    /// often none), whose keys the caller forgets.
    pub fn deliver(
        &self,
        origin: &str,
        inc: u64,
        seq: u64,
        show: impl FnOnce(Verdict),
    ) -> Vec<String> {
        let mut t = self.lock();
        t.clock += 1;
        let now = t.clock;
        let verdict = match t.last.get_mut(origin) {
            Some((i, _, _)) if inc < *i => Verdict::OldRun,
            Some((i, l, used)) if inc > *i => {
                (*i, *l, *used) = (inc, seq, now);
                Verdict::NewRun
            }
            Some((_, l, _)) if seq <= *l => Verdict::Duplicate,
            Some((_, l, used)) => {
                let gap = seq - *l - 1;
                (*l, *used) = (seq, now);
                match gap {
                    0 => Verdict::Show,
                    missed => Verdict::ShowAfterGap { missed },
                }
            }
            // First message from this writer: whatever came before was not meant for us.
            None => {
                t.last.insert(origin.to_owned(), (inc, seq, now));
                Verdict::Show
            }
        };
        show(verdict);
        t.evict()
    }
}

impl SeenTable {
    /// Past the bound, forgets the least recently heard quarter of the authors that are
    /// not listed: one sort every `STRANGERS / 4` new authors, not one per line.
    fn evict(&mut self) -> Vec<String> {
        let kept = self.listed.len();
        if self.last.len() <= kept + STRANGERS {
            return Vec::new();
        }
        let mut strangers: Vec<(u64, &String)> = self
            .last
            .iter()
            .filter(|(id, _)| !self.listed.contains(*id))
            .map(|(id, &(_, _, used))| (used, id))
            .collect();
        strangers.sort_unstable();
        let out: Vec<String> = strangers
            .iter()
            .take(STRANGERS / 4)
            .map(|(_, id)| (*id).clone())
            .collect();
        for id in &out {
            self.last.remove(id);
        }
        self.last.shrink_to(kept + STRANGERS);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_gaps_noticed_and_runs_ordered() {
        let seen = Seen::default();
        let mut verdicts = Vec::new();
        for (o, i, s) in [
            ("a", 1, 5),
            ("a", 1, 6),
            ("a", 1, 6),
            ("a", 1, 4),
            ("b", 1, 1),
            ("a", 1, 9),
            ("a", 2, 1),
            ("a", 1, 10),
            ("a", 2, 2),
        ] {
            seen.deliver(o, i, s, |v| verdicts.push(v));
        }
        assert_eq!(
            verdicts,
            vec![
                Verdict::Show,
                Verdict::Show,
                Verdict::Duplicate,
                Verdict::Duplicate,
                Verdict::Show,
                Verdict::ShowAfterGap { missed: 2 },
                Verdict::NewRun,
                Verdict::OldRun,
                Verdict::Show,
            ]
        );
        assert_eq!(seen.last_from("a", 2), 2);
        assert_eq!(seen.last_from("a", 1), 0);
        assert_eq!(seen.last_from("zz", 1), 0);
    }

    #[test]
    fn strangers_are_bounded_listed_authors_kept_and_the_evicted_shown_afresh() {
        let seen = Seen::default();
        seen.keep(["listed".to_owned()].into_iter().collect());
        let mut shown = 0;
        seen.deliver("listed", 1, 1, |_| ());
        let mut evicted = Vec::new();
        for k in 0..200_000u64 {
            evicted.extend(seen.deliver(&format!("{k:020x}"), 1, 1, |v| {
                shown += usize::from(v == Verdict::Show)
            }));
            assert!(seen.remembered() <= 1 + STRANGERS + 1);
        }
        assert_eq!(shown, 200_000);
        assert!(evicted.len() > 190_000, "{}", evicted.len());
        assert!(!evicted.contains(&"listed".to_owned()));
        // The listed author is still remembered: its old line is a duplicate.
        let mut v = None;
        seen.deliver("listed", 1, 1, |x| v = Some(x));
        assert_eq!(v, Some(Verdict::Duplicate));
        // An evicted author's next line is shown, never taken for a duplicate.
        seen.deliver(&format!("{:020x}", 0), 1, 2, |x| v = Some(x));
        assert_eq!(v, Some(Verdict::Show));
    }
}
