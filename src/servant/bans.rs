//! The ban list: addresses and host names whose connections a servant refuses.
//!
//! The article's `servants1_ConnectionRequest` looked the caller up in config.xml twice,
//! by `RemoteHostIP` and by `RemoteHost` (its reverse-resolved name), with XPath on every
//! connection. We resolve the other way round: every `<target>` that is a host name is
//! resolved to its addresses (through /etc/hosts and DNS, so `localhost` bans 127.0.0.1),
//! ahead of time and again every half minute by a background thread (started once there
//! is a host name to resolve: a servant that bans none, or only addresses, runs one
//! thread less, out of the 20 that an overlay servant holds). The accept loop then
//! decides with one set look-up and no name service call, so a slow resolver can never
//! hold up a connection, and a banned host is refused before a byte it sent is read.

use std::collections::HashSet;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use log::{debug, info, warn};

/// How often host-name targets are resolved again.
const REFRESH: Duration = Duration::from_secs(30);
/// Refused addresses remembered so each is logged once; past this the log says so once.
const LOGGED_LIMIT: usize = 4096;

pub struct Bans {
    /// Written by `/ban` and `/unban` (the core); read by the refresh thread.
    targets: RwLock<Vec<String>>,
    /// Written by the refresh thread; read by the accept loop on every connection.
    addresses: RwLock<HashSet<IpAddr>>,
    /// Addresses already logged as refused. Written and read by the accept loop only.
    logged: Mutex<HashSet<IpAddr>>,
    /// Whether the `bans` thread has been started.
    resolving: AtomicBool,
}

/// Treats ::ffff:a.b.c.d as a.b.c.d, so a ban on an IPv4 address holds on a dual-stack socket.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Bans {
    /// Resolves the targets once now; the `bans` thread resolves host names again every
    /// half minute.
    pub fn start(targets: Vec<String>) -> Arc<Bans> {
        let bans = Arc::new(Bans {
            targets: RwLock::new(targets),
            addresses: RwLock::new(HashSet::new()),
            logged: Mutex::new(HashSet::new()),
            resolving: AtomicBool::new(false),
        });
        bans.refresh(true);
        bans.resolve_names();
        bans
    }

    /// Starts the `bans` thread, once, when a target is a host name.
    fn resolve_names(self: &Arc<Self>) {
        let names = self
            .targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t.parse::<IpAddr>().is_err());
        if !names || self.resolving.swap(true, Ordering::SeqCst) {
            return;
        }
        let b = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("bans".into())
            .spawn(move || loop {
                thread::sleep(REFRESH);
                b.refresh(false);
            });
        if let Err(e) = spawned {
            warn!("bans: host names will not be resolved again: cannot start a thread: {e}");
        }
    }

    /// Replaces the targets (after `/ban` or `/unban`) and applies them at once.
    pub fn set_targets(self: &Arc<Self>, targets: Vec<String>) {
        *self.targets.write().unwrap_or_else(|p| p.into_inner()) = targets;
        self.logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.refresh(true);
        self.resolve_names();
    }

    fn refresh(&self, first: bool) {
        let targets = self
            .targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut set = HashSet::new();
        for target in &targets {
            if let Ok(ip) = target.parse::<IpAddr>() {
                set.insert(canonical(ip));
                continue;
            }
            match (target.as_str(), 0).to_socket_addrs() {
                Ok(addrs) => {
                    let ips: Vec<IpAddr> = addrs.map(|a| canonical(a.ip())).collect();
                    if first {
                        info!(
                            "ban: {target} is {}",
                            ips.iter()
                                .map(|i| i.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    set.extend(ips);
                }
                Err(e) if first => {
                    warn!("ban: cannot resolve {target}: {e}; it bans nothing until it resolves")
                }
                Err(e) => debug!("ban: cannot resolve {target}: {e}"),
            }
        }
        *self.addresses.write().unwrap_or_else(|p| p.into_inner()) = set;
    }

    /// The ban test of the article's `servants1_ConnectionRequest`: true when connections
    /// from `ip` must be refused. Logs the first refusal of each address.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if !self
            .addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&ip)
        {
            return false;
        }
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() < LOGGED_LIMIT && logged.insert(ip) {
            info!("refused a connection from banned {ip} (logged once per address)");
        } else if logged.len() == LOGGED_LIMIT && logged.insert(IpAddr::from([0, 0, 0, 0])) {
            info!("refusing banned connections from more addresses than are logged");
        }
        true
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_resolved_names_are_refused() {
        let bans = Bans::start(vec!["10.1.2.3".into(), "localhost".into()]);
        assert!(bans.refuses("10.1.2.3".parse().unwrap()));
        assert!(
            bans.refuses("127.0.0.1".parse().unwrap()),
            "localhost resolves to 127.0.0.1"
        );
        assert!(bans.refuses("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!bans.refuses("10.1.2.4".parse().unwrap()));
    }
}
