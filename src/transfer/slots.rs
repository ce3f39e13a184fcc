//! Upload slots that cannot be squatted.
//!
//! `<uploads>` bounds how many file connections a servant serves at once. A slot held by
//! a client that never reads, or asks nothing more, would keep honest downloads out for
//! as long as it likes, so a slot is held only by a connection that makes progress:
//! - one address holds at most half the slots (`per_address`): a downloader's workers
//!   (4 by default) fit, a crowd from one host does not take them all;
//! - half the slots (`reserved`) are for connections from the address of a servant in the
//!   peer document: a file connection proves nothing, but a genp2p download comes from a
//!   listed servant, and a crowd from elsewhere holds at most the other half;
//! - each slot records when its connection last moved `STEP` bytes; a slot that has not
//!   for `PREEMPT_AFTER` is given to the next newcomer that finds the slots full (its
//!   connection is shut down), and the serving thread itself gives up a client that
//!   takes less than `MIN_RATE` (64 KiB/s) over `SLOW_LIMIT` (10 s) of writing to it, or
//!   asks for nothing in that time.
//!
//! An honest download keeps its slots, since it moves many `STEP`s a second; a squatter
//! keeps one for at most `PREEMPT_AFTER` once someone else wants it, and one whose slot
//! was taken over may not take another over for `PENALTY`.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::limits::LogLimiter;

/// Progress is counted in steps of this many bytes.
pub const STEP: u64 = 64 * 1024;
/// A slot that has not moved a step for this long goes to a newcomer who needs it. An
/// honest download moves a step every few milliseconds; a TCP stall of a second is rare.
pub const PREEMPT_AFTER: Duration = Duration::from_secs(1);
/// How long an address whose slot was taken over may not take one over in turn.
pub const PENALTY: Duration = Duration::from_secs(10);
/// Addresses remembered in `Table::lost` at most.
const LOST: usize = 4096;
/// A client that has sent no request for this long is cut, and so is one that, over
/// this much time spent writing to it, took less than `MIN_RATE` bytes a second.
pub const SLOW_LIMIT: Duration = Duration::from_secs(10);
/// The slowest a client may take an answer, averaged over `SLOW_LIMIT` of writing.
pub const MIN_RATE: u64 = 64 * 1024;

struct Held {
    id: u64,
    ip: IpAddr,
    /// From the address of a servant in the peer document.
    listed: bool,
    /// Milliseconds since `UploadSlots::base` when the connection last took a step.
    moved: Arc<AtomicU64>,
    closer: Option<TcpStream>,
}

struct Table {
    held: Vec<Held>,
    next: u64,
    /// Addresses whose slot was taken over, and when: for `PENALTY` they may not take
    /// one over themselves (or squatters would take each other's in a chain, and keep
    /// every slot fresh).
    lost: HashMap<IpAddr, Instant>,
    /// Take-overs, logged once a minute per address.
    log: LogLimiter<IpAddr>,
}

/// The upload slots of one servant.
pub struct UploadSlots {
    pub max: usize,
    table: Mutex<Table>,
    base: Instant,
}

/// Why no slot was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    /// Every slot is taken and moving.
    Full(usize),
    /// This address holds its share already.
    Address(usize),
    /// Connections from addresses no listed servant has hold their half already.
    Strangers(usize),
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Full(n) => write!(f, "{n} uploads at once"),
            Busy::Address(n) => write!(f, "{n} uploads at once to one address"),
            Busy::Strangers(n) => write!(
                f,
                "{n} uploads at once to addresses where no listed servant is"
            ),
        }
    }
}

/// A slot held by one connection; dropping it frees the slot.
pub struct UploadSlot<'a> {
    id: u64,
    slots: &'a UploadSlots,
    moved: Arc<AtomicU64>,
    /// Bytes moved since the last step.
    partial: u64,
    /// Time spent writing to the client and bytes it took, in the current window.
    writing: (Duration, u64),
}

impl UploadSlot<'_> {
    /// Counts `n` bytes written to the client (or a request read, `n` = `STEP`).
    pub fn moved(&mut self, n: u64) {
        self.partial += n;
        if self.partial >= STEP {
            self.partial %= STEP;
            self.moved.store(self.slots.now_ms(), Ordering::Relaxed);
        }
    }

    /// Counts a write that took `took` and moved `n` bytes; false when the client has
    /// taken less than `MIN_RATE` over the last `SLOW_LIMIT` of writing.
    pub fn wrote(&mut self, n: u64, took: Duration) -> bool {
        self.moved(n);
        let (time, bytes) = &mut self.writing;
        *time += took;
        *bytes += n;
        if *time < SLOW_LIMIT {
            return true;
        }
        let fast_enough = *bytes >= MIN_RATE * SLOW_LIMIT.as_secs();
        self.writing = (Duration::ZERO, 0);
        fast_enough
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        self.slots.lock().held.retain(|h| h.id != self.id);
    }
}

impl UploadSlots {
    pub fn new(max: usize) -> UploadSlots {
        UploadSlots {
            max,
            table: Mutex::new(Table {
                held: Vec::new(),
                next: 0,
                lost: HashMap::new(),
                log: LogLimiter::new(Duration::from_secs(60)),
            }),
            base: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Slots one address may hold: half of them, at least one.
    pub fn per_address(&self) -> usize {
        (self.max / 2).max(1)
    }

    /// Slots only connections from listed servants' addresses may take: half of them.
    pub fn reserved(&self) -> usize {
        self.max / 2
    }

    /// A slot for a connection from `ip` (`closer`: a handle to shut it down if it is
    /// preempted later). When all are taken, the one that has not moved for longest is
    /// taken over if it has not for `PREEMPT_AFTER`.
    pub fn take(
        &self,
        ip: IpAddr,
        listed: bool,
        closer: Option<TcpStream>,
    ) -> Result<UploadSlot<'_>, Busy> {
        let now = self.now_ms();
        let mut t = self.lock();
        if t.held.iter().filter(|h| h.ip == ip).count() >= self.per_address() {
            return Err(Busy::Address(self.per_address()));
        }
        let unlisted = t.held.iter().filter(|h| !h.listed).count();
        let room = t.held.len() < self.max && (listed || unlisted < self.max - self.reserved());
        let mut preempted = None;
        if !room {
            let penalized = t.lost.get(&ip).is_some_and(|at| at.elapsed() < PENALTY);
            if penalized {
                return Err(Busy::Full(self.max));
            }
            // An unlisted newcomer may only take over another unlisted connection's slot.
            let stale = t
                .held
                .iter()
                .enumerate()
                .filter(|(_, h)| listed || !h.listed)
                .min_by_key(|(_, h)| h.moved.load(Ordering::Relaxed))
                .filter(|(_, h)| {
                    now.saturating_sub(h.moved.load(Ordering::Relaxed))
                        >= PREEMPT_AFTER.as_millis() as u64
                })
                .map(|(i, _)| i);
            let Some(i) = stale else {
                let busy = if t.held.len() < self.max {
                    Busy::Strangers(self.max - self.reserved())
                } else {
                    Busy::Full(self.max)
                };
                log::debug!(
                    "no slot for {ip}: {:?}",
                    t.held
                        .iter()
                        .map(|h| (
                            h.ip,
                            h.listed,
                            now.saturating_sub(h.moved.load(Ordering::Relaxed))
                        ))
                        .collect::<Vec<_>>()
                );
                return Err(busy);
            };
            let h = t.held.swap_remove(i);
            if t.lost.len() >= LOST {
                t.lost.retain(|_, at| at.elapsed() < PENALTY);
                if t.lost.len() >= LOST {
                    t.lost.clear();
                }
            }
            t.lost.insert(h.ip, Instant::now());
            preempted = Some(h);
        }
        t.next += 1;
        let id = t.next;
        let moved = Arc::new(AtomicU64::new(now));
        t.held.push(Held {
            id,
            ip,
            listed,
            moved: Arc::clone(&moved),
            closer,
        });
        let logged = preempted.as_ref().and_then(|h| t.log.allow(&h.ip));
        drop(t);
        if let Some(h) = preempted {
            if let Some(held) = logged {
                let more = match held {
                    0 => String::new(),
                    n => format!(" ({n} more since the last such line)"),
                };
                log::info!(
                    "upload slot of {} taken over: it moved nothing for {} s{more}",
                    h.ip,
                    PREEMPT_AFTER.as_secs()
                );
            }
            if let Some(s) = h.closer {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        Ok(UploadSlot {
            id,
            slots: self,
            moved,
            partial: 0,
            writing: (Duration::ZERO, 0),
        })
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_half_and_a_still_slot_goes_to_a_newcomer() {
        let slots = UploadSlots::new(4);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let _a1 = slots.take(a, true, None).unwrap();
        let _a2 = slots.take(a, true, None).unwrap();
        assert_eq!(slots.take(a, true, None).err(), Some(Busy::Address(2)));
        let mut b1 = slots.take(b, true, None).unwrap();
        let _b2 = slots.take(b, true, None).unwrap();
        assert_eq!(
            slots.take(IpAddr::from([10, 0, 0, 3]), true, None).err(),
            Some(Busy::Full(4))
        );
        // A client taking 64 KiB/s keeps its slot; one taking less is given up.
        for _ in 0..10 {
            assert!(b1.wrote(MIN_RATE, Duration::from_secs(1)));
        }
        for _ in 0..9 {
            assert!(b1.wrote(MIN_RATE / 2, Duration::from_secs(1)));
        }
        assert!(!b1.wrote(MIN_RATE / 2, Duration::from_secs(1)));
        drop(b1);
        assert_eq!(slots.held(), 3);
        assert!(slots.take(IpAddr::from([10, 0, 0, 3]), true, None).is_ok());
        assert_eq!(
            slots.held(),
            3,
            "the slot is freed when its holder is dropped"
        );
    }
}
