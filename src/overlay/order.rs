//! Each author's lines shown in order, once: what the article's servant got for free from
//! one TCP link per author, and what lines that come by many paths need written down.
//!
//! Per author we keep its incarnation (a restarted servant counts again from 1 under a
//! higher one), the next number to show and the lines held back past a gap. A gap is
//! asked for (the caller grafts it, as the relays' `SINCE` asks for what was missed), and
//! after `lost_after` the missing numbers are reported lost and the held lines shown, so
//! one lost line never holds back an author for good.
//!
//! At most `AUTHORS_KEPT` authors and `HELD` lines per author are kept; the author heard
//! from longest ago is forgotten first.

use std::collections::BTreeMap;
use std::ops::Range;

use super::event::{Action, LineId, Millis, Timer, Types};
use super::params::{bounds, Params};

/// Where an author's lines stand.
#[derive(Debug, Clone)]
struct Author<T> {
    incarnation: u64,
    /// The next number to show.
    next: u64,
    /// Lines past a gap, waiting for it.
    held: BTreeMap<u64, (T, u16)>,
    /// When we last heard from this author.
    heard: Millis,
    /// Since when the first of `held` has waited for the gap before it.
    gap_since: Millis,
}

impl<T> Author<T> {
    fn new(incarnation: u64, next: u64, now: Millis) -> Author<T> {
        Author {
            incarnation,
            next,
            held: BTreeMap::new(),
            heard: now,
            gap_since: now,
        }
    }
}

/// A gap just found before a held line: these numbers of this incarnation are missing.
pub struct Gap {
    pub incarnation: u64,
    pub seqs: Range<u64>,
}

/// A map kept as two vectors, the keys sorted: looking an author up (done for nearly
/// every id that arrives) reads one short run of keys, where a B-tree chases a node per
/// level. Authors are added rarely and there are at most `AUTHORS_KEPT` of them.
#[derive(Debug, Clone)]
struct Sorted<A, V> {
    keys: Vec<A>,
    values: Vec<V>,
}

impl<A: Ord, V> Sorted<A, V> {
    fn get(&self, key: &A) -> Option<&V> {
        self.keys.binary_search(key).ok().map(|i| &self.values[i])
    }

    fn get_mut(&mut self, key: &A) -> Option<&mut V> {
        self.keys
            .binary_search(key)
            .ok()
            .map(|i| &mut self.values[i])
    }

    fn contains_key(&self, key: &A) -> bool {
        self.keys.binary_search(key).is_ok()
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&A, &V)> {
        self.keys.iter().zip(self.values.iter())
    }

    fn get_or_insert_with(&mut self, key: A, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.keys.binary_search(&key) {
            Ok(i) => i,
            Err(i) => {
                self.keys.insert(i, key);
                self.values.insert(i, make());
                i
            }
        };
        &mut self.values[i]
    }

    fn remove_at(&mut self, i: usize) {
        self.keys.remove(i);
        self.values.remove(i);
    }
}

#[derive(Debug, Clone)]
pub struct Order<K: Types> {
    authors: Sorted<K::Author, Author<K::Line>>,
}

impl<K: Types> Default for Order<K> {
    fn default() -> Self {
        Order {
            authors: Sorted {
                keys: Vec::new(),
                values: Vec::new(),
            },
        }
    }
}

impl<K: Types> Order<K> {
    /// Whether this line was shown or is held, or belongs to an incarnation since replaced.
    pub fn has(&self, id: &LineId<K::Author>) -> bool {
        match self.authors.get(&id.author) {
            Some(a) => {
                id.incarnation < a.incarnation
                    || (id.incarnation == a.incarnation
                        && (id.seq < a.next || a.held.contains_key(&id.seq)))
            }
            None => false,
        }
    }

    /// The last line shown of the authors heard from most recently: (author,
    /// incarnation, number), at most `bounds::AUTHORS` of them.
    pub fn last_shown(&self) -> Vec<(K::Author, u64, u64)> {
        let mut recent: Vec<(&K::Author, &Author<K::Line>)> = self.authors.iter().collect();
        recent.sort_by_key(|(_, st)| std::cmp::Reverse(st.heard));
        recent
            .into_iter()
            .take(bounds::AUTHORS)
            .map(|(a, st)| (a.clone(), st.incarnation, st.next.saturating_sub(1)))
            .collect()
    }

    /// A newcomer learns where a neighbour stands on an author it has not heard of: its
    /// order starts after `last`, and it waits for nothing written before it came.
    pub fn start_after(&mut self, now: Millis, author: &K::Author, incarnation: u64, last: u64) {
        if !self.authors.contains_key(author) && self.authors.len() < bounds::AUTHORS_KEPT {
            self.authors.get_or_insert_with(author.clone(), || {
                Author::new(incarnation, last.saturating_add(1), now)
            });
        }
    }

    /// A line seen for the first time: shown now with any held lines it unblocks, or held
    /// back. Returns the gap to ask for when it opens one.
    pub fn place(
        &mut self,
        now: Millis,
        id: LineId<K::Author>,
        line: K::Line,
        hops: u16,
        p: &Params,
        out: &mut Vec<Action<K>>,
    ) -> Option<Gap> {
        if !self.authors.contains_key(&id.author) && self.authors.len() >= bounds::AUTHORS_KEPT {
            let oldest = self
                .authors
                .values
                .iter()
                .enumerate()
                .min_by_key(|(_, a)| a.heard);
            if let Some((i, _)) = oldest {
                self.authors.remove_at(i);
            }
        }
        // At first sight of an author (our neighbours' summaries did not name it, so it
        // began after we joined): its order starts at its first line, fetched as any gap
        // is. An author already far along is taken from this line on.
        let start = if id.seq <= bounds::IDS as u64 {
            1
        } else {
            id.seq
        };
        let a = self.authors.get_or_insert_with(id.author.clone(), || {
            Author::new(id.incarnation, start, now)
        });
        a.heard = now;
        if id.incarnation > a.incarnation {
            // A restart: its numbers begin again at 1; what the old run still owed is let go.
            a.incarnation = id.incarnation;
            a.next = 1;
            a.held.clear();
        }
        if id.seq != a.next {
            if a.held.len() >= bounds::HELD {
                let author = id.author.clone();
                a.held.insert(id.seq, (line, hops));
                self.give_up(now, &author, p, out);
                return None;
            }
            let first_gap = a.held.is_empty();
            if first_gap {
                a.gap_since = now;
            }
            let gap = Gap {
                incarnation: a.incarnation,
                seqs: a.next..id.seq.min(a.next.saturating_add(bounds::IDS as u64)),
            };
            a.held.insert(id.seq, (line, hops));
            if first_gap {
                out.push(Action::SetTimer {
                    after: p.lost_after,
                    timer: Timer::Gap(id.author),
                });
            }
            return Some(gap);
        }
        out.push(Action::Show {
            id: id.clone(),
            line,
            hops,
        });
        a.next = a.next.saturating_add(1);
        Self::show_held(&id.author, a, out);
        if !a.held.is_empty() {
            a.gap_since = now;
            out.push(Action::SetTimer {
                after: p.lost_after,
                timer: Timer::Gap(id.author),
            });
        }
        None
    }

    /// The `Gap` timer of an author fired: report the gap if it has waited long enough.
    pub fn gap_timer(
        &mut self,
        now: Millis,
        author: K::Author,
        p: &Params,
        out: &mut Vec<Action<K>>,
    ) {
        let waited = match self.authors.get(&author) {
            Some(a) if !a.held.is_empty() => now.saturating_sub(a.gap_since),
            _ => return,
        };
        if waited >= p.lost_after {
            self.give_up(now, &author, p, out);
        } else {
            out.push(Action::SetTimer {
                after: p.lost_after - waited,
                timer: Timer::Gap(author),
            });
        }
    }

    /// Shows the held lines that follow on from `next`.
    fn show_held(author: &K::Author, a: &mut Author<K::Line>, out: &mut Vec<Action<K>>) {
        while let Some((line, hops)) = a.held.remove(&a.next) {
            let id = LineId {
                author: author.clone(),
                incarnation: a.incarnation,
                seq: a.next,
            };
            out.push(Action::Show { id, line, hops });
            a.next = a.next.saturating_add(1);
        }
    }

    /// The gap before an author's held lines has waited long enough: report it, show on.
    fn give_up(&mut self, now: Millis, author: &K::Author, p: &Params, out: &mut Vec<Action<K>>) {
        let Some(a) = self.authors.get_mut(author) else {
            return;
        };
        let Some((&first_held, _)) = a.held.iter().next() else {
            return;
        };
        if first_held > a.next {
            out.push(Action::Lost {
                author: author.clone(),
                incarnation: a.incarnation,
                first: a.next,
                last: first_held - 1,
            });
        }
        a.next = first_held;
        Self::show_held(author, a, out);
        if !a.held.is_empty() {
            // Another gap further on: it gets its own wait.
            a.gap_since = now;
            out.push(Action::SetTimer {
                after: p.lost_after,
                timer: Timer::Gap(author.clone()),
            });
        }
    }
}
