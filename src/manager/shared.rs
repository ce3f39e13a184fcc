//! What every manager thread shares, and how a change's effects are carried out.
//!
//! The connection threads, the `publish` thread, the probes and the console all reach the
//! registry through `Shared`; what the registry decided under its lock (notes to log,
//! clients to drop) is carried out here, after the lock is released. It is the lowest
//! file of the manager: the others import it, it imports none of them.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};

use log::info;

use crate::config::ManagerConfig;
use crate::identity::NetworkKey;
use crate::protocol::PeerEntry;
use crate::registry::{Change, Effects, Registry, Ticket};

/// Probes waiting for a worker; beyond this a servant is not probed (complaints still
/// find it if it cannot be reached).
pub(super) const PROBE_QUEUE: usize = 4096;

/// State shared by every connection thread.
pub(super) struct Shared {
    pub(super) config: ManagerConfig,
    /// The article's `pDoc` and `iPortMax` behind its critical section. Written and read
    /// by every `conn-` thread and the console, each time in one short block.
    pub(super) registry: Mutex<Registry<TcpStream>>,
    /// Servants to probe, for the `probe-K` threads.
    pub(super) probes: crossbeam_channel::Sender<(SocketAddr, Ticket)>,
    /// The network's shared secret, when `<networkkey>` names one.
    pub(super) network: Option<NetworkKey>,
}

impl Shared {
    pub(super) fn registry(&self) -> MutexGuard<'_, Registry<TcpStream>> {
        // A panic while holding the lock cannot leave the table half-changed in a way that
        // matters more than stopping the whole network would, so keep serving.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(super) fn describe(e: &PeerEntry) -> String {
    format!("{} {}:{} (slot {})", e.label(), e.ip, e.port, e.offset)
}

/// Logs what a change did and closes the connections of clients it dropped. Called after
/// the registry lock is released, because shutting a socket is I/O.
pub(super) fn after_change(
    change: Option<Change<TcpStream>>,
    verb: &str,
    why: &str,
    shared: &Shared,
) {
    let Some(change) = change else { return };
    let count = shared.registry().listed_count();
    info!(
        "peer {verb}: {}{why}; {count} on the network",
        describe(&change.entry)
    );
    apply_effects(change.effects, shared);
}

/// Logs the registry's decisions and closes the connections of clients it dropped. Called
/// after the registry lock is released, because logging and shutting sockets are I/O.
pub(super) fn apply_effects(fx: Effects<TcpStream>, shared: &Shared) {
    for note in fx.notes {
        info!("{note}");
    }
    if fx.dropped.is_empty() {
        return;
    }
    let count = shared.registry().listed_count();
    for (entry, socket, reason) in fx.dropped {
        info!(
            "peer left: {}: {reason}; {count} on the network",
            describe(&entry)
        );
        let _ = socket.shutdown(Shutdown::Both);
    }
}
