//! One row of the peer table: what the registry keeps about one connected client.
//!
//! The row is its own file because every other part of the registry reads it: the list
//! (`document`), the pushes (`pushes`) and the reachability rules (`reach`). It sits
//! below them all and imports none of them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::protocol::PeerEntry;

/// Where lines for one client's writer thread are queued.
pub type Outbox = Arc<crate::outbox::Outbox>;

/// Names one connection for its whole life. Offsets are reused (lowest free first, as in
/// the article), so a thread that outlives its slot must not remove the slot's next owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub offset: u32,
    pub(super) serial: u64,
}

/// One connected client: a servant, or a person with telnet.
pub(super) struct Slot<C> {
    pub(super) serial: u64,
    /// Closes this client's connection (the manager's socket); handed back to the caller
    /// when the registry drops a client, so the socket is shut outside the lock.
    pub(super) closer: C,
    pub(super) ip: IpAddr,
    /// The assigned port until the client says `listening`, then the port it listens on.
    pub(super) port: u16,
    pub(super) name: Option<String>,
    pub(super) id: Option<String>,
    /// The public key it proved (hex), once listed.
    pub(super) key: Option<String>,
    /// Listed to others only once it listens (`listening`).
    pub(super) listed: bool,
    /// Asked for no `<join>`/`<leave>` pushes (`needs no changes`).
    pub(super) quiet: bool,
    /// Written by `publish` under the lock; read by this client's writer thread.
    pub(super) outbox: Outbox,
    /// This peer's `<peer>` element as others see it (me FALSE), cached while listed.
    pub(super) xml: Arc<str>,
    /// Found unreachable: it needs a relay (and has one when `relay` is set).
    pub(super) unreachable: bool,
    /// The offset of the servant relaying to it.
    pub(super) relay: Option<u32>,
    /// When it was listed (a newcomer's complaints do not count and it relays to nobody).
    pub(super) listed_at: Option<Instant>,
    /// The manager's dial-back reached it: complaints cannot condemn it, and it may relay.
    pub(super) dialed_back: bool,
    /// Found unreachable with no relay to be had, and logged so once.
    pub(super) waiting_noted: bool,
    /// The ids of the relays this (relayed) servant gave up, never chosen for it again.
    pub(super) abandoned: Vec<String>,
    /// The addresses of the relayed servants that gave this relay up.
    pub(super) abandoned_by: BTreeSet<IpAddr>,
    /// When this (relayed) servant last gave up a relay.
    pub(super) replaced_at: Option<Instant>,
}

impl<C> Slot<C> {
    /// A client that just connected from `ip` and was assigned `port`: not listed yet.
    pub(super) fn new(serial: u64, closer: C, ip: IpAddr, port: u16, outbox: Outbox) -> Slot<C> {
        Slot {
            serial,
            closer,
            ip,
            port,
            name: None,
            id: None,
            key: None,
            listed: false,
            quiet: false,
            outbox,
            xml: Arc::from(""),
            unreachable: false,
            relay: None,
            listed_at: None,
            dialed_back: false,
            waiting_noted: false,
            abandoned: Vec::new(),
            abandoned_by: BTreeSet::new(),
            replaced_at: None,
        }
    }

    /// Whether `t` is this slot's ticket (and not that of an earlier owner of the offset).
    pub(super) fn held_by(&self, t: &Ticket) -> bool {
        self.serial == t.serial
    }

    /// The ticket of this slot's owner, which sits at `offset`.
    pub(super) fn ticket(&self, offset: u32) -> Ticket {
        Ticket {
            offset,
            serial: self.serial,
        }
    }

    pub(super) fn entry(&self, offset: u32, me: bool) -> PeerEntry {
        PeerEntry {
            ip: self.ip.to_string(),
            port: self.port,
            offset,
            me,
            name: self.name.clone(),
            id: self.id.clone(),
            key: self.key.clone(),
            relay: self.relay,
        }
    }
}
