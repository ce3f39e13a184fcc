//! The connection manager: tells servants where each other are, and nothing more.
//!
//! This is the article's connection manager form: `p2p_ConnectionRequest` (accept a
//! client, give it a slot and a port), `p2p_DataArrival` (answer `needs peer list`) and
//! `p2p_Close` (forget a client). The VB6 form ran all three on one UI thread with Winsock
//! events; here each accepted connection gets two named threads:
//!
//! - `conn-ADDR` reads the client's lines and answers them (`handle_client`);
//! - `push-N` writes everything queued for the client (`push_loop`), so a slow client
//!   delays only itself. When its outbox fills, the client is dropped: it will reconnect
//!   and ask for the whole list, which is cheaper than buffering without bound.
//!
//! One more thread, `publish`, wakes the `push-` threads a moment after the list changes,
//! so that each writes the changes of that moment together (see `outbox`).
//!
//! The files below follow those jobs: `session` serves one connection, `writer` writes
//! to it, `sweeps` holds the `publish` thread and the reachability probes, `console` the
//! table of servants, and `shared` what they all reach the registry through.
//!
//! The registry sits behind one `Mutex`, the article's critical section, taken in short
//! blocks that never include socket I/O (see `registry`).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;

use log::warn;

use self::session::handle_client;
use self::shared::{Shared, PROBE_QUEUE};
use self::sweeps::{probe, publish_loop};
use crate::config::ManagerConfig;
use crate::identity::NetworkKey;
use crate::limits::{accept_loop, Caps, Gate, Limiter};
use crate::protocol::ManagerMessage;
use crate::registry::{Registry, Ticket};

mod console;
mod session;
mod shared;
mod sweeps;
mod writer;

pub use self::console::{format_table, Console};

/// Threads that probe servants (each waits up to `sweeps::PROBE_TIMEOUT` for a firewalled
/// one). A pool, not a thread per join: in a join storm of a thousand, a probe thread per
/// join took about a third of the manager's CPU.
const PROBE_WORKERS: usize = 8;

/// Why the connection manager cannot run.
#[derive(Debug)]
pub enum ManagerError {
    /// The listening socket could not be bound (port busy, or not allowed).
    Bind { addr: SocketAddr, source: io::Error },
    /// The `<networkkey>` file cannot be used.
    NetworkKey(crate::identity::IdentityError),
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::Bind { addr, source } => {
                let hint = match source.kind() {
                    io::ErrorKind::AddrInUse => ": another program listens there; choose another <port>",
                    io::ErrorKind::PermissionDenied => ": ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a <port> above 1023",
                    _ => "",
                };
                write!(f, "cannot listen on {addr}: {source}{hint}")
            }
            ManagerError::NetworkKey(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManagerError::Bind { source, .. } => Some(source),
            ManagerError::NetworkKey(e) => Some(e),
        }
    }
}

/// A bound, not yet running connection manager.
pub struct Manager {
    listener: TcpListener,
    shared: Arc<Shared>,
    /// Tells the `publish` thread that the list changed.
    news: crossbeam_channel::Receiver<()>,
    /// Servants to probe (see `probe`).
    probe_jobs: crossbeam_channel::Receiver<(SocketAddr, Ticket)>,
}

impl Manager {
    /// Binds the manager's port. A busy or forbidden port is an error here, before any
    /// thread starts.
    pub fn bind(mut config: ManagerConfig) -> Result<Manager, ManagerError> {
        let network = match &config.network_key {
            Some(path) => Some(NetworkKey::load(path).map_err(ManagerError::NetworkKey)?),
            None => None,
        };
        // Each client holds three descriptors (its socket, the push thread's and the
        // registry's copies) and two threads.
        let affordable = crate::limits::affordable_connections(config.max_connections, 3, 2);
        if affordable < config.max_connections {
            warn!(
                "<maxconnections> {} is more than this process can hold (descriptors: ulimit -n; threads); holding at most {affordable}",
                config.max_connections
            );
            config.max_connections = affordable;
        }
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = crate::limits::listen(addr, config.max_connections)
            .map_err(|source| ManagerError::Bind { addr, source })?;
        let mut registry = Registry::new(
            config.first_port,
            crate::identity::random_token(),
            config.timeout.as_millis() as u64,
        );
        registry.set_complaint_threshold(config.complaints);
        registry.set_trust(config.trust_after, config.probe);
        // Told (without blocking) when the list changed and writers wait to be woken.
        let (news_tx, news) = crossbeam_channel::bounded::<()>(1);
        registry.on_news(move || {
            let _ = news_tx.try_send(());
        });
        let (probes, probe_jobs) = crossbeam_channel::bounded(PROBE_QUEUE);
        Ok(Manager {
            listener,
            shared: Arc::new(Shared {
                config,
                registry: Mutex::new(registry),
                probes,
                network,
            }),
            news,
            probe_jobs,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle for the console: prints the list of servants on request.
    pub fn console(&self) -> Console {
        Console {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts clients until the process ends (the article's `p2p_ConnectionRequest`).
    pub fn run(self) {
        let shared = self.shared;
        let (news, sh) = (self.news, Arc::clone(&shared));
        let spawned = thread::Builder::new()
            .name("publish".into())
            .spawn(move || publish_loop(&news, &sh));
        if let Err(e) = spawned {
            warn!("cannot start the publish thread: {e}; changes go out one by one");
            shared.registry().wake_writers_at_once();
        }
        if shared.config.probe {
            for k in 1..=PROBE_WORKERS {
                let (jobs, sh) = (self.probe_jobs.clone(), Arc::clone(&shared));
                let spawned = thread::Builder::new()
                    .name(format!("probe-{k}"))
                    .spawn(move || {
                        for (addr, ticket) in jobs {
                            probe(addr, ticket, &sh);
                        }
                    });
                if let Err(e) = spawned {
                    warn!("cannot start probe thread {k}: {e}");
                }
            }
        }
        let gate = Gate {
            thread_prefix: "conn",
            limiter: Limiter::new(Caps {
                total: shared.config.max_connections,
                per_address: shared.config.max_per_address,
                // The manager refuses when full: its clients prove nothing before they
                // are listed, and a listed servant's place is its only connection.
                reserved: 0,
            }),
            screen: Box::new(|_| true),
            refusal_line: Box::new(|r| {
                Some(ManagerMessage::Error(format!("manager {r}")).to_line())
            }),
        };
        accept_loop(self.listener, gate, move |stream, peer, _| {
            handle_client(stream, peer, &shared)
        });
    }
}
