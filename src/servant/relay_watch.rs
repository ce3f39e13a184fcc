//! Is our relay passing on what the others say?
//!
//! A servant behind a firewall hears everything through one relay (`puller`, `hub`), and a
//! relay that drops lines cannot be caught by signatures: it forges nothing, it only
//! stays silent. So the servant checks it against the others' own word. Each servant it
//! sends to answers on that link, now and then, with `SAID INC SEQ`: the last line it has
//! written itself (tagged with the link's key, so nobody else can say it in its place).
//! When a peer said line SEQ some time ago and the relay has still not brought it, the
//! relay may be failing us. A peer could lie about what it wrote, or never send it to
//! the relay, to get a good relay given up; so one peer's word is enough only when it is
//! the relay's own (it would not frame itself) or when there is nobody else to ask.
//! Otherwise two peers must be owed lines (`verdict`). Then the core asks the manager for
//! another relay (`replace relay`), once per relay.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::seen::Seen;

/// A line a peer said must have come through the relay this long after we learnt of it.
pub const GRACE: Duration = Duration::from_secs(15);
/// What peers said longer ago than this is forgotten (a peer that left, say).
const FORGET: Duration = Duration::from_secs(120);

/// The last line each peer said it wrote, by id, with when we heard so.
#[derive(Default)]
pub struct Said {
    table: Mutex<HashMap<String, (u64, u64, Instant)>>,
}

/// A peer's line the relay has not brought in time.
#[derive(Debug, PartialEq, Eq)]
pub struct Overdue {
    pub id: String,
    pub seq: u64,
    /// The last of its lines we have shown from that run.
    pub shown: u64,
}

impl Said {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (u64, u64, Instant)>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Peer `id` says its last line is number `seq` of its run `incarnation`. Kept only
    /// while the id is one we send to (the sender knows), so the table is bounded by the
    /// list.
    pub fn note(&self, id: &str, incarnation: u64, seq: u64) {
        let mut t = self.lock();
        match t.get_mut(id) {
            // The time is when this number was first heard: later reports of the same
            // number must not push its deadline back.
            Some((i, s, _)) if (*i, *s) == (incarnation, seq) => {}
            Some(v) => *v = (incarnation, seq, Instant::now()),
            None => {
                t.insert(id.to_owned(), (incarnation, seq, Instant::now()));
            }
        }
    }

    /// The peers' lines, said at least `GRACE` before `now` and after `since` (when the
    /// relay started), that `seen` has not shown; `skip` are authors whose lines we drop
    /// on purpose (bans).
    pub fn overdue(
        &self,
        seen: &Seen,
        since: Instant,
        now: Instant,
        skip: &dyn Fn(&str) -> bool,
    ) -> Vec<Overdue> {
        let mut t = self.lock();
        t.retain(|_, &mut (_, _, at)| now.saturating_duration_since(at) < FORGET);
        let mut late: Vec<Overdue> = t
            .iter()
            .filter(|(id, &(_, seq, at))| {
                seq > 0 && at >= since && now.saturating_duration_since(at) >= GRACE && !skip(id)
            })
            .filter_map(|(id, &(inc, seq, _))| {
                let shown = seen.last_from(id, inc);
                (shown < seq).then(|| Overdue {
                    id: id.clone(),
                    seq,
                    shown,
                })
            })
            .collect();
        late.sort_by(|a, b| a.id.cmp(&b.id));
        late
    }
}

/// Whether `late` convicts the relay with id `relay`: a line of its own it did not pass
/// on, or lines of two peers, or of one when `others` (the servants we could hear from
/// besides the relay) is one. Returns the line to name.
pub fn verdict<'a>(late: &'a [Overdue], relay: Option<&str>, others: usize) -> Option<&'a Overdue> {
    if let Some(own) = late.iter().find(|o| Some(o.id.as_str()) == relay) {
        return Some(own);
    }
    let needed = if others >= 2 { 2 } else { 1 };
    (late.len() >= needed).then(|| &late[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_said_long_enough_ago_and_not_shown_is_overdue() {
        let (said, seen) = (Said::default(), Seen::default());
        let start = Instant::now();
        said.note("a", 1, 3);
        said.note("b", 1, 2);
        seen.deliver("a", 1, 3, |_| ());
        let none = |_: &str| false;
        assert_eq!(said.overdue(&seen, start, Instant::now(), &none), vec![]);
        let later = Instant::now() + GRACE;
        let late = said.overdue(&seen, start, later, &none);
        assert_eq!(
            late,
            vec![Overdue {
                id: "b".into(),
                seq: 2,
                shown: 0
            }]
        );
        // One peer's word: enough when it is the relay's own, or nobody else can speak.
        assert_eq!(verdict(&late, Some("b"), 5), Some(&late[0]));
        assert_eq!(verdict(&late, Some("r"), 1), Some(&late[0]));
        assert_eq!(verdict(&late, Some("r"), 2), None);
        // Dropped on purpose, or said before this relay started: not the relay's fault.
        assert_eq!(said.overdue(&seen, start, later, &|id| id == "b"), vec![]);
        assert_eq!(said.overdue(&seen, later, later, &none), vec![]);
        seen.deliver("b", 1, 2, |_| ());
        assert_eq!(said.overdue(&seen, start, later, &none), vec![]);
    }
}
