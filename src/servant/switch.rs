//! When a servant stops linking to every servant and joins the overlay, and what it
//! hands the `overlay` thread then.
//!
//! While the network has at most `<fullmesh>` servants, a servant links to each of them
//! as the article's servant does, and nothing in its protocol changes. Once the
//! manager's list grows past that, it joins the overlay (`neighbors`) through a listed
//! servant picked at random, and keeps its links to every servant a moment longer
//! (`MESH_LINGER`), so that servants that have not yet seen the list grow still hear it.
//! The move is one way for the rest of the run: a network that shrinks below
//! `<fullmesh>` again stays in the overlay, which serves a small network as well, rather
//! than flapping between the two.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use log::warn;

use super::inbound::Inbound;
use super::neighbors::link::{Endpoint, ToDriver};
use super::neighbors::{Neighbors, Setup, EVENTS};
use super::receiving::Forwarded;
use crate::config::ServantConfig;
use crate::encoding::parse_hex;
use crate::overlay::Params;
use crate::protocol::overlay::{gossip_key, Contact};
use crate::protocol::{MsgRef, PeerEntry};

/// How long the links to every servant stay after joining the overlay.
pub const MESH_LINGER: Duration = Duration::from_secs(10);

/// Whether a network of `servants` (ourselves included) is past `<fullmesh>`.
pub fn wants_overlay(servants: usize, full_mesh: usize) -> bool {
    servants > full_mesh
}

/// A listed servant as the overlay dials it; `None` for one behind a firewall (it
/// cannot be dialled) or without an id.
pub fn contact_of(e: &PeerEntry) -> Option<Contact> {
    if e.relay.is_some() || e.port == 0 {
        return None;
    }
    Some(Contact {
        id: e.id.clone()?,
        addr: SocketAddr::new(e.ip.parse::<IpAddr>().ok()?, e.port),
    })
}

/// `<bootstrap>`'s addresses, resolved now; a name that does not resolve is said once.
pub fn bootstrap_addrs(config: &ServantConfig) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for b in &config.bootstrap {
        match b.to_socket_addrs() {
            Ok(addrs) => out.extend(addrs),
            Err(e) => warn!("<bootstrap> {b} is unknown: {e}; skipped"),
        }
    }
    out
}

/// This host's address as the `<bootstrap>` servants will see it, for a servant that
/// has no manager to tell it: `<bind>` when it names one, else the source address the
/// system picks towards the first of them (a UDP `connect` sends nothing).
pub fn own_ip(config: &ServantConfig, bootstrap: &[SocketAddr]) -> Option<IpAddr> {
    if !config.bind.is_unspecified() {
        return Some(config.bind);
    }
    let to = *bootstrap.first()?;
    let any = SocketAddr::new(
        if to.is_ipv4() {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    );
    let probe = UdpSocket::bind(any).ok()?;
    probe.connect(to).ok()?;
    Some(probe.local_addr().ok()?.ip())
}

/// Starts the `overlay` thread for the servant `me`, listening for links on `port`.
pub fn start(
    inbound: &Arc<Inbound>,
    me: Contact,
    config: &ServantConfig,
    port: u16,
    bootstrap: Vec<SocketAddr>,
) -> std::io::Result<Neighbors> {
    let (events_tx, events) = super::neighbors::bell::bounded::<ToDriver>(EVENTS);
    let checker = Arc::clone(inbound);
    let check = Box::new(move |key: &str, m: &MsgRef| {
        // Bans follow the author on every path (see `Core::refresh_banned_authors`).
        if checker.banned_authors.contains(m.origin) {
            checker.banned_lines.fetch_add(1, Ordering::Relaxed);
            return Err(format!("by {}, listed at a banned address", m.origin));
        }
        // The key proves the author's id (its fingerprint): a servant that has never
        // heard of the author learns it here. A key known already is compared byte for
        // byte, not decoded again (a curve point's decoding costs a third of a check).
        let known = checker.authors.key_of(m.origin);
        if known.is_none_or(|k| parse_hex::<32>(key).ok() != Some(*k.bytes())) {
            let k = gossip_key(key, m).map_err(|e| e.to_string())?;
            checker.authors.learn(k);
        }
        checker
            .authors
            .verify(m)
            .map_err(|why| format!("by {} {why}", m.origin))
    });
    let endpoint = Arc::new(Endpoint {
        identity: Arc::clone(&inbound.identity),
        name: inbound.name.clone(),
        network: inbound.network.clone(),
        port: port.into(),
        check,
        delivered: Default::default(),
        events: events_tx,
    });
    let shower = Arc::clone(inbound);
    let mut forwarded = Forwarded::default();
    let bans = Arc::clone(&inbound.bans);
    let params = Params {
        active: config.degree,
        ..Params::default()
    };
    let setup = Setup {
        me,
        params,
        endpoint,
        events,
        show: Box::new(move |chat| forwarded.show(chat, &shower)),
        refuses: Box::new(move |ip| bans.refuses(ip)),
        bootstrap,
    };
    Neighbors::start(setup, Arc::clone(&inbound.links))
}
