//! The core's state: the peers it sends to, what the manager lists, and the handles of
//! every part the core steers (the typist's queues, the listener's shared state, the relay
//! it pulls from, the overlay).
//!
//! The core thread alone owns it, so none of it is locked; the files above this one each
//! add the core's work of one job (`banning`, `relays`, `outgrowing`, `membership`,
//! `commands`) and `events` is the loop that hands each event to them. What is here is
//! the little they all use: printing, looking a peer up, stopping a sender.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{info, warn};

use crate::config::ServantConfig;
use crate::identity::PeerKey;
use crate::protocol::PeerEntry;
use crate::transfer::download::Downloads;

use super::dispatch::Dispatch;
use super::inbound::Inbound;
use super::known;
use super::link::ManagerWriter;
use super::neighbors::Neighbors;
use super::puller::Puller;
use super::relay_watch;
use super::wire::{Outgoing, Wire};

/// How often the core looks around on its own: the authors banned by address (host names
/// in the bans are resolved every 30 s), and whether our relay brings what others say.
pub(super) const TICK: Duration = Duration::from_secs(5);

/// A peer we send to.
pub(super) struct Peer {
    pub(super) entry: PeerEntry,
    pub(super) addr: SocketAddr,
    /// Dropping it (with `drain`) stops the sender thread.
    pub(super) tx: Sender<Arc<Outgoing>>,
    /// The core's handle on the same queue, to drop the oldest message when it is full.
    pub(super) drain: Receiver<Arc<Outgoing>>,
    pub(super) wire: Arc<Wire>,
    pub(super) thread: JoinHandle<()>,
}

/// A peer whose sender was stopped.
pub(super) struct PeerEntryAddr {
    pub(super) entry: PeerEntry,
    pub(super) addr: SocketAddr,
}

/// The core's state.
pub(super) struct Core {
    pub(super) config: ServantConfig,
    /// Where `/ban` and `/unban` are saved.
    pub(super) config_path: Option<std::path::PathBuf>,
    pub(super) id: String,
    pub(super) name: String,
    /// Every peer's queue, for what the user types (see `dispatch`).
    pub(super) dispatch: Arc<Dispatch>,
    pub(super) peers: HashMap<String, Peer>,
    /// The peers the manager lists now, by key, relayed ones included. After reconnecting
    /// to a restarted manager, peers it does not list yet are kept until `grace_until`
    /// (they are re-registering too).
    pub(super) listed: HashMap<String, PeerEntry>,
    pub(super) grace_until: Option<Instant>,
    /// How long a grace period lasts with the current manager (`grace_for`).
    pub(super) grace: Duration,
    pub(super) epoch: String,
    pub(super) manager_up: bool,
    pub(super) out: Sender<String>,
    /// Senders stopped while running, joined at shutdown if still running.
    pub(super) stopping: Vec<JoinHandle<()>>,
    /// Our line to the manager, for complaints.
    pub(super) writer: Arc<ManagerWriter>,
    pub(super) inbound: Arc<Inbound>,
    /// Set while we cannot be reached: the thread pulling our messages from a relay.
    pub(super) puller: Option<Puller>,
    /// Since when we pull from the current relay, and whether we gave it up already.
    pub(super) relay_watch: Option<(Instant, bool)>,
    /// What the servants we send to say they wrote (see `relay_watch`).
    pub(super) said: Arc<relay_watch::Said>,
    /// Set while we pull from a relay, for the senders (`Target::relayed`).
    pub(super) relayed: Arc<std::sync::atomic::AtomicBool>,
    /// When the core next looks around on its own (`TICK`).
    pub(super) next_tick: Instant,
    /// This run's downloads, for `/downloads`.
    pub(super) downloads: Arc<Downloads>,
    /// When we joined the network: a relay catches us up on what was said since.
    pub(super) joined: Instant,
    /// When each listed servant was first listed here, by id.
    pub(super) listed_since: HashMap<String, Instant>,
    /// Our slot at the manager, from the last whole list (`<me>TRUE</me>`): `/peers` on a
    /// relay names itself, not "slot N", as the relay of the servants it serves.
    pub(super) my_offset: Option<u32>,
    /// Our address as the manager sees it, from the last whole list: where the overlay's
    /// servants dial us.
    pub(super) my_ip: Option<IpAddr>,
    /// The port we are listed at (`<publicport>` or the one we listen on).
    pub(super) port: u16,
    /// Set once the network has outgrown `<fullmesh>` (see `switch`).
    pub(super) overlay: Option<Neighbors>,
    /// When the links to every servant close, after joining the overlay.
    pub(super) mesh_until: Option<Instant>,
    /// The manager finds us unreachable (it named a relay for us).
    pub(super) hidden: bool,
}

/// The grace period after a manager change: the manager's time-out (at least 3 s) and 2 s
/// more, time for every servant to beat and re-register.
pub(super) fn grace_for(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms.max(3000)) + Duration::from_secs(2)
}

impl Core {
    pub(super) fn print(&self, line: String) {
        let _ = self.out.send(line);
    }

    pub(super) fn relayed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.inbound
            .relayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_me(&self, e: &PeerEntry) -> bool {
        e.me || e.id.as_deref() == Some(self.id.as_str())
    }

    /// The key the manager lists for `e`, checked to be the key of `e`'s id, and
    /// remembered for checking its lines; `None` (and a warning) when it is missing or
    /// does not prove the id.
    pub(super) fn key_of(&self, e: &PeerEntry) -> Option<PeerKey> {
        let (Some(id), Some(key)) = (&e.id, &e.key) else {
            warn!(
                "the manager lists {} without an id and key; not connecting to it",
                e.label()
            );
            return None;
        };
        match PeerKey::from_hex(key) {
            Ok(k) if k.id() == *id => {
                self.inbound.authors.learn(k);
                if let Some(name) = &e.name {
                    if let known::Standing::Changed {
                        pinned,
                        first: true,
                    } = self.inbound.known.check(name, &k)
                    {
                        let warning = known::changed_warning(name, &pinned, &k);
                        warn!("{warning}");
                        self.print(warning);
                    }
                }
                Some(k)
            }
            Ok(k) => {
                warn!(
                    "the manager lists {} under id {id} with the key of id {}; not connecting to it",
                    e.label(),
                    k.id()
                );
                None
            }
            Err(err) => {
                warn!(
                    "the manager lists {} with a {err}; not connecting to it",
                    e.label()
                );
                None
            }
        }
    }

    /// The article's "discontinue attempting to communicate with the servant who left":
    /// dropping the channel ends the sender thread.
    pub(super) fn remove(&mut self, key: &str, why: &str) {
        if let Some(p) = self.stop_sender(key) {
            info!("peer left: {} at {} ({why})", p.entry.label(), p.addr);
        }
    }

    /// Ends the sender thread for `key`, if there is one; returns what is left of the peer.
    pub(super) fn stop_sender(&mut self, key: &str) -> Option<PeerEntryAddr> {
        let p = self.peers.remove(key)?;
        self.dispatch.remove(key);
        drop(p.tx);
        drop(p.drain);
        self.stopping.retain(|h| !h.is_finished());
        self.stopping.push(p.thread);
        Some(PeerEntryAddr {
            entry: p.entry,
            addr: p.addr,
        })
    }
}
