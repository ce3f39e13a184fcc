//! The manager's work that no client asked for: waking writers, relays for the waiting,
//! and probing newcomers.
//!
//! The `publish` thread wakes the writers a moment after the list changes (so a join
//! storm's changes go out together) and, once a second, gives servants waiting for a
//! relay one if a trusted servant can now be had. The `probe-K` threads dial back each
//! servant that listed itself, to find the unreachable ones at once.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use log::{debug, warn};

use super::shared::{apply_effects, Shared};
use crate::registry::{Effects, Ticket};

/// How long a change waits for more to go out with it.
const PUSH_GATHER: Duration = Duration::from_millis(50);
/// How often servants waiting for a relay are looked at again (see `publish_loop`).
const TRUST_TICK: Duration = Duration::from_secs(1);
/// How long a reachability probe waits for a servant to accept.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Beyond the article (as libp2p's AutoNAT does): connect back to a servant that has just
/// listed itself. If nothing answers, it is behind a firewall: relay to it at once rather
/// than wait for complaints. Runs on one of the `probe-K` threads.
pub(super) fn probe(addr: SocketAddr, ticket: Ticket, shared: &Shared) {
    match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(s) => {
            debug!("probe of {addr}: reachable");
            let _ = s.shutdown(Shutdown::Both);
            let fx = shared.registry().reached_by_probe(&ticket, addr.port());
            apply_effects(fx, shared);
        }
        // Only what the network answered says the servant cannot be reached; a failure
        // here (out of descriptors or ports) says nothing about it.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
            ) =>
        {
            let fx = shared
                .registry()
                .unreachable_by_probe(&ticket, addr.port(), &e.to_string());
            apply_effects(fx, shared);
        }
        Err(e) => warn!("probe of {addr} not made: {e}"),
    }
}

/// The `publish` thread: once the list has changed, waits a moment for more changes, then
/// wakes the writer of every client that has changes queued. In a join storm each writer
/// then wakes once for many joins, instead of once for each.
pub(super) fn publish_loop(news: &crossbeam_channel::Receiver<()>, shared: &Shared) {
    loop {
        match news.recv_timeout(TRUST_TICK) {
            Ok(()) => {
                thread::sleep(PUSH_GATHER);
                let due = shared.registry().take_nudges();
                for outbox in due {
                    outbox.nudge();
                }
            }
            // Newcomers become trusted with time: a servant waiting for a relay may
            // have one now.
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let mut fx = Effects::default();
                shared.registry().assign_waiting_relays(&mut fx);
                apply_effects(fx, shared);
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}
