//! Caps on connections, and logs that do not flood.
//!
//! A thread per connection is simple and clear, and it is also easy to exhaust: each
//! connection costs a thread (about 10 KiB here) and a file descriptor, and a Rust process
//! aborts at about 16,000 threads. So both binaries admit a connection only while the total
//! and the count from its address are under their caps, and hand back the place when the
//! connection ends (`Admission` is dropped). The per-address cap is what keeps one host
//! opening a thousand idle sockets from locking everyone else out.
//!
//! `LogLimiter` keeps a refused or misbehaving source from filling the log: one line per
//! source per interval, with a count of what was not logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The caps (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub total: usize,
    pub per_address: usize,
    /// Places only protected connections may take (see `Admission::protect`). With
    /// some reserved, a newcomer that finds the other places taken closes the connection
    /// that has been idle longest among the unprotected, instead of being refused; with
    /// none, it is refused.
    pub reserved: usize,
}

/// One admitted connection, as the limiter sees it.
struct Place {
    ip: IpAddr,
    /// Shut down to evict it (its thread then ends on its next read or write).
    closer: Option<std::net::TcpStream>,
    protected: bool,
    /// Milliseconds since `Limiter::base` of its last line (`Admission::touch`).
    last: Arc<AtomicU64>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    protected: usize,
    by_address: HashMap<IpAddr, usize>,
    places: HashMap<u64, Place>,
    next: u64,
}

impl Counts {
    /// Frees place `id`; false if it was already freed (evicted).
    fn free(&mut self, id: u64) -> Option<Place> {
        let place = self.places.remove(&id)?;
        self.total -= 1;
        if place.protected {
            self.protected -= 1;
        }
        if let Some(n) = self.by_address.get_mut(&place.ip) {
            *n -= 1;
            if *n == 0 {
                self.by_address.remove(&place.ip);
            }
        }
        Some(place)
    }
}

/// Counts open connections. Shared by the accept loop (admits) and every connection
/// thread (its `Admission`, dropped when the connection ends).
#[derive(Clone)]
pub struct Limiter {
    caps: Caps,
    counts: Arc<Mutex<Counts>>,
    base: Instant,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Full {
        total: usize,
    },
    TooManyFromAddress {
        address: IpAddr,
        cap: usize,
    },
    /// No thread could be started for it (the process is at its thread limit).
    NoThread(String),
    /// The socket could not be used.
    Unusable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Full { total } => write!(f, "full: {total} connections"),
            Refusal::TooManyFromAddress { address, cap } => {
                write!(f, "too many connections from {address} (at most {cap})")
            }
            Refusal::NoThread(e) => write!(f, "cannot start a thread: {e}"),
            Refusal::Unusable(e) => write!(f, "cannot use the connection: {e}"),
        }
    }
}

/// A place taken by one connection; dropping it frees the place.
pub struct Admission {
    id: u64,
    counts: Arc<Mutex<Counts>>,
    last: Arc<AtomicU64>,
    base: Instant,
}

impl Admission {
    /// The connection was heard from: it is not idle.
    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// The connection proved it is one that must always find a place (a listed peer):
    /// it is never evicted, and may take the reserved places.
    pub fn protect(&self) {
        let mut c = lock(&self.counts);
        let counts = &mut *c;
        if let Some(p) = counts.places.get_mut(&self.id).filter(|p| !p.protected) {
            p.protected = true;
            counts.protected += 1;
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        lock(&self.counts).free(self.id);
    }
}

fn lock(m: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `Limiter::admit` did to make room.
pub struct Evicted {
    pub ip: IpAddr,
    pub idle: Duration,
}

impl Limiter {
    pub fn new(caps: Caps) -> Limiter {
        Limiter {
            caps,
            counts: Arc::new(Mutex::new(Counts::default())),
            base: Instant::now(),
        }
    }

    /// Takes a place for a connection from `ip`, or says why not. `closer` (a handle on
    /// the connection) lets a later newcomer evict it. When the unreserved places are
    /// taken, the unprotected connection idle longest is shut down to make room, and
    /// returned.
    pub fn admit(
        &self,
        ip: IpAddr,
        closer: Option<std::net::TcpStream>,
    ) -> Result<(Admission, Option<Evicted>), Refusal> {
        let mut c = lock(&self.counts);
        if c.by_address.get(&ip).copied().unwrap_or(0) >= self.caps.per_address {
            return Err(Refusal::TooManyFromAddress {
                address: ip,
                cap: self.caps.per_address,
            });
        }
        let unprotected = c.total - c.protected;
        let open_to_all = self.caps.total.saturating_sub(self.caps.reserved);
        let mut evicted = None;
        if c.total >= self.caps.total || (self.caps.reserved > 0 && unprotected >= open_to_all) {
            if self.caps.reserved == 0 {
                return Err(Refusal::Full {
                    total: self.caps.total,
                });
            }
            let victim = c
                .places
                .iter()
                .filter(|(_, p)| !p.protected)
                .min_by_key(|(_, p)| p.last.load(Ordering::Relaxed))
                .map(|(&id, _)| id);
            let Some(place) = victim.and_then(|id| c.free(id)) else {
                return Err(Refusal::Full {
                    total: self.caps.total,
                });
            };
            let now = self.base.elapsed().as_millis() as u64;
            let idle = now.saturating_sub(place.last.load(Ordering::Relaxed));
            evicted = Some((place, Duration::from_millis(idle)));
        }
        c.next += 1;
        let id = c.next;
        let last = Arc::new(AtomicU64::new(self.base.elapsed().as_millis() as u64));
        c.places.insert(
            id,
            Place {
                ip,
                closer,
                protected: false,
                last: Arc::clone(&last),
            },
        );
        *c.by_address.entry(ip).or_insert(0) += 1;
        c.total += 1;
        drop(c);
        // Shut outside the lock: it is a system call.
        let evicted = evicted.map(|(place, idle)| {
            if let Some(s) = &place.closer {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            Evicted { ip: place.ip, idle }
        });
        Ok((
            Admission {
                id,
                counts: Arc::clone(&self.counts),
                last,
                base: self.base,
            },
            evicted,
        ))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        lock(&self.counts).total
    }
}

/// Lets one log line through per key per interval, and counts the rest.
pub struct LogLimiter<K> {
    interval: Duration,
    /// Last line logged per key, and how many were held back since.
    last: HashMap<K, (Instant, u64)>,
}

/// Keys remembered at most; past this the oldest are forgotten (so memory stays bounded
/// whatever the number of sources).
const KEYS: usize = 4096;

impl<K: std::hash::Hash + Eq + Clone> LogLimiter<K> {
    pub fn new(interval: Duration) -> LogLimiter<K> {
        LogLimiter {
            interval,
            last: HashMap::new(),
        }
    }

    /// `Some(held_back)` when a line for `key` may be logged now (`held_back` lines were
    /// suppressed since the last one), `None` when it must be held back.
    pub fn allow(&mut self, key: &K) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(key) {
            Some((at, held)) if now.duration_since(*at) < self.interval => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = *held;
                *at = now;
                *held = 0;
                Some(n)
            }
            None => {
                if self.last.len() >= KEYS {
                    let interval = self.interval;
                    self.last
                        .retain(|_, (at, _)| now.duration_since(*at) < interval);
                    if self.last.len() >= KEYS {
                        self.last.clear();
                    }
                }
                self.last.insert(key.clone(), (now, 0));
                Some(0)
            }
        }
    }
}

/// Makes the line sent to a refused connection, if any.
pub type RefusalLine = Box<dyn Fn(&Refusal) -> Option<String> + Send>;

/// File descriptors this process may open (the soft `ulimit -n`), from /proc/self/limits.
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The most connections a thread-per-connection server can really hold: each costs
/// `fds_each` descriptors and `threads_each` threads, and a Rust process aborts at about
/// 16,000 threads here (the kernel's map-count limit), so stay well below both.
pub fn affordable_connections(wanted: usize, fds_each: usize, threads_each: usize) -> usize {
    let by_threads = 14_000 / threads_each.max(1);
    let by_fds = open_files_limit().map_or(usize::MAX, |n| n.saturating_sub(64) / fds_each.max(1));
    wanted.min(by_threads).min(by_fds).max(1)
}

/// Binds and listens on `addr` with room for `backlog` connections waiting to be accepted
/// (the kernel caps it at net.core.somaxconn).
pub fn listen(
    addr: std::net::SocketAddr,
    backlog: usize,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std does: a restarted manager can listen again at once on its port.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.clamp(128, i32::MAX as usize) as i32)?;
    Ok(socket.into())
}

/// How an accept loop treats what arrives.
pub struct Gate {
    /// Names the threads: `PREFIX-ADDR`.
    pub thread_prefix: &'static str,
    pub limiter: Limiter,
    /// A connection for which this returns false is closed at once, unread (bans).
    pub screen: Box<dyn Fn(IpAddr) -> bool + Send>,
    /// The line (without its end) sent to a refused connection, if any.
    pub refusal_line: RefusalLine,
}

/// Accepts connections until the process ends, each on its own named thread running
/// `handle`, within the caps. A refused connection (over a cap, or no thread to be had)
/// gets the refusal line and is closed; it is logged once per source per ten seconds.
pub fn accept_loop<H>(listener: std::net::TcpListener, gate: Gate, handle: H)
where
    H: Fn(std::net::TcpStream, std::net::SocketAddr, &Admission) + Send + Sync + 'static,
{
    use std::io::Write;
    let handle = Arc::new(handle);
    let mut log = LogLimiter::new(Duration::from_secs(10));
    let mut evictions = LogLimiter::new(Duration::from_secs(60));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                if log.allow(&None).is_some() {
                    log::warn!("accept failed: {e}");
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if !(gate.screen)(peer.ip()) {
            continue;
        }
        // Only needed when places can be reclaimed.
        let closer = (gate.limiter.caps.reserved > 0)
            .then(|| stream.try_clone().ok())
            .flatten();
        let refusal = match gate.limiter.admit(peer.ip(), closer) {
            Err(r) => Some(r),
            Ok((admission, evicted)) => {
                if let Some(ev) = evicted {
                    if evictions.allow(&ev.ip).is_some() {
                        log::info!(
                            "all places taken: closed a connection from {} idle for {:.1} s to admit {peer} (logged once a minute per address)",
                            ev.ip,
                            ev.idle.as_secs_f64()
                        );
                    }
                }
                let (h, s) = (Arc::clone(&handle), stream.try_clone());
                match s {
                    Err(e) => Some(Refusal::Unusable(e.to_string())),
                    Ok(s) => std::thread::Builder::new()
                        .name(format!("{}-{peer}", gate.thread_prefix))
                        .spawn(move || h(s, peer, &admission))
                        .err()
                        .map(|e| Refusal::NoThread(e.to_string())),
                }
            }
        };
        if let Some(r) = refusal {
            if let Some(held) = log.allow(&Some(peer.ip())) {
                let also = if held > 0 {
                    format!(" ({held} more refused since the last report)")
                } else {
                    String::new()
                };
                log::warn!("refused {peer}: {r}{also}");
            }
            if let Some(line) = (gate.refusal_line)(&r) {
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                let _ = (&stream).write_all(format!("{line}\n").as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_places_come_back() {
        let l = Limiter::new(Caps {
            total: 3,
            per_address: 2,
            reserved: 0,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.admit(a, None).unwrap();
        let _a2 = l.admit(a, None).unwrap();
        assert_eq!(
            l.admit(a, None).err().map(|e| e.to_string()),
            Some(Refusal::TooManyFromAddress { address: a, cap: 2 }.to_string())
        );
        let _b1 = l.admit(b, None).unwrap();
        assert_eq!(
            l.admit(b, None).err().map(|e| e.to_string()),
            Some(Refusal::Full { total: 3 }.to_string())
        );
        drop(a1);
        assert_eq!(l.open(), 2);
        assert!(l.admit(b, None).is_ok());
    }

    #[test]
    fn newcomers_evict_the_longest_idle_unprotected_and_the_reserve_is_kept() {
        let l = Limiter::new(Caps {
            total: 4,
            per_address: 10,
            reserved: 2,
        });
        let ip = |k: u8| IpAddr::from([10, 0, 0, k]);
        let (listed, _) = l.admit(ip(1), None).unwrap();
        listed.protect();
        let (old, _) = l.admit(ip(2), None).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let (young, _) = l.admit(ip(3), None).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        old.touch(); // heard from: now `young` has been idle longest
                     // Two unprotected places (4 - 2 reserved) are taken: the next evicts `young`.
        let (third, ev) = l.admit(ip(4), None).unwrap();
        assert_eq!(ev.map(|e| e.ip), Some(ip(3)));
        assert_eq!(l.open(), 3);
        drop(young); // its thread ends later: nothing is freed twice
        assert_eq!(l.open(), 3);
        // Once `third` is protected, one unprotected place is free again.
        third.protect();
        let (fourth, ev) = l.admit(ip(5), None).unwrap();
        assert!(ev.is_none());
        assert_eq!(l.open(), 4);
        // All four places taken: a newcomer evicts an unprotected one.
        let (fifth, ev) = l.admit(ip(6), None).unwrap();
        assert!(ev.is_some_and(|e| e.ip == ip(2) || e.ip == ip(5)));
        assert_eq!(l.open(), 4);
        // Everyone protected and all places taken: refused.
        for a in [&old, &fourth, &fifth] {
            a.protect();
        }
        assert!(l.admit(ip(7), None).is_err());
        drop(listed);
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn one_line_per_key_per_interval() {
        let mut log = LogLimiter::new(Duration::from_millis(50));
        assert_eq!(log.allow(&"x"), Some(0));
        assert_eq!(log.allow(&"x"), None);
        assert_eq!(log.allow(&"x"), None);
        assert_eq!(log.allow(&"y"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(log.allow(&"x"), Some(2));
    }
}
