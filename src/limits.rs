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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The caps (both from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub total: usize,
    pub per_address: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Counts open connections. Shared by the accept loop (admits) and every connection
/// thread (its `Admission`, dropped when the connection ends).
#[derive(Clone)]
pub struct Limiter {
    caps: Caps,
    counts: Arc<Mutex<Counts>>,
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
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        c.total -= 1;
        if let Some(n) = c.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_address.remove(&self.ip);
            }
        }
    }
}

fn lock(m: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limiter {
    pub fn new(caps: Caps) -> Limiter {
        Limiter {
            caps,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// Takes a place for a connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        let mut c = lock(&self.counts);
        if c.total >= self.caps.total {
            return Err(Refusal::Full {
                total: self.caps.total,
            });
        }
        let from = c.by_address.entry(ip).or_insert(0);
        if *from >= self.caps.per_address {
            return Err(Refusal::TooManyFromAddress {
                address: ip,
                cap: self.caps.per_address,
            });
        }
        *from += 1;
        c.total += 1;
        Ok(Admission {
            ip,
            counts: Arc::clone(&self.counts),
        })
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
    H: Fn(std::net::TcpStream, std::net::SocketAddr) + Send + Sync + 'static,
{
    use std::io::Write;
    let handle = Arc::new(handle);
    let mut log = LogLimiter::new(Duration::from_secs(10));
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
        let refusal = match gate.limiter.admit(peer.ip()) {
            Err(r) => Some(r),
            Ok(admission) => {
                let (h, s) = (Arc::clone(&handle), stream.try_clone());
                match s {
                    Err(e) => Some(Refusal::Unusable(e.to_string())),
                    Ok(s) => std::thread::Builder::new()
                        .name(format!("{}-{peer}", gate.thread_prefix))
                        .spawn(move || {
                            let _admission = admission;
                            h(s, peer)
                        })
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
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(
            l.admit(a).err(),
            Some(Refusal::TooManyFromAddress { address: a, cap: 2 })
        );
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(Refusal::Full { total: 3 }));
        drop(a1);
        assert_eq!(l.open(), 2);
        assert!(l.admit(b).is_ok());
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
