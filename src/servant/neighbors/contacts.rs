//! Whom the `overlay` thread links to: a handshake finished (a neighbour up, and which of
//! two simultaneous links stays), servants the core or a shuffle told us of, `<bootstrap>`
//! addresses, and joining again when the overlay has lost every neighbour.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::overlay::Input;
use crate::protocol::overlay::Contact;

use super::bell::{self, Bell};
use super::driver::{Driver, Slot};
use super::link;
use super::link::LINK_QUEUE;

/// Known servants kept to rejoin through when the overlay loses every neighbour.
const CONTACTS: usize = 4096;
/// How often an isolated servant tries to join again.
const REJOIN_EVERY: Duration = Duration::from_secs(2);
/// As often, until the first neighbour: a newcomer that picked a servant killed a moment
/// ago (still listed until the manager's time-out) hears nothing until it tries again,
/// and lines written meanwhile are not fetched for it (it counts as new from its first
/// neighbour). `make stress`'s churn, a servant killed every other second, found it.
pub(super) const REJOIN_FIRST: Duration = Duration::from_millis(200);

impl Driver {
    /// A link is up: a dial finished, or a neighbour opened one to us.
    pub(super) fn up(&mut self, contact: Contact, conn: u64, tx: Option<Bell<Arc<str>>>) {
        if contact.id == self.setup.me.id {
            // Ourselves, at another address: never a neighbour.
            self.links.remove(&contact);
            self.bootstrapping.remove(&conn);
            return;
        }
        if let Some(boot) = self.bootstrapping.remove(&conn) {
            let slot = self.links.entry(contact.clone()).or_insert(Slot {
                conns: Vec::new(),
                dialled: None,
                up: true,
            });
            slot.conns.push((conn, boot));
            link::log_up(&contact, true);
            self.last_rejoin = Some(Instant::now());
            return self.handle(Input::Join(contact));
        }
        match tx {
            Some(tx) => {
                if (self.setup.refuses)(contact.addr.ip()) {
                    return;
                }
                let mine_first = self.setup.me.id < contact.id;
                let slot = self.links.entry(contact.clone()).or_insert(Slot {
                    conns: Vec::new(),
                    dialled: None,
                    up: true,
                });
                if let Some(ours) = slot.dialled.take() {
                    // Both dialled at once. Both ends keep the connection the servant with
                    // the smaller id opened and close the other (its queue is written out
                    // first), or each would hold two links, and two threads more, for as
                    // long as the neighbour stays.
                    if mine_first {
                        slot.dialled = Some(ours);
                        return drop(tx);
                    }
                    slot.conns.retain(|(c, _)| *c != ours);
                }
                slot.conns.push((conn, tx));
                slot.up = true;
                link::log_up(&contact, false);
            }
            None => {
                if let Some(slot) = self.links.get_mut(&contact) {
                    if slot.conns.iter().any(|(c, _)| *c == conn) {
                        slot.up = true;
                        link::log_up(&contact, true);
                    }
                }
            }
        }
    }

    pub(super) fn learn(&mut self, contacts: Vec<Contact>) {
        let fresh: Vec<Contact> = contacts
            .into_iter()
            .filter(|c| c.id != self.setup.me.id && c.addr.port() != 0)
            .filter(|c| !(self.setup.refuses)(c.addr.ip()))
            .filter(|c| self.known.insert(c.clone()))
            .collect();
        if fresh.is_empty() {
            return;
        }
        self.contacts.extend(fresh.iter().cloned());
        if self.contacts.len() > CONTACTS {
            let gone: Vec<Contact> = self
                .contacts
                .drain(..self.contacts.len() - CONTACTS)
                .collect();
            for c in gone {
                self.known.remove(&c);
            }
        }
        let sample = self
            .rng
            .sample(&fresh, crate::overlay::params::bounds::PEERS);
        self.handle(Input::Learn(sample));
    }

    pub(super) fn bootstrap(&mut self, addr: SocketAddr) {
        let conn = link::next_conn();
        let (tx, rx) = bell::bounded(LINK_QUEUE);
        let ep = Arc::clone(&self.setup.endpoint);
        match link::dial(None, addr, conn, rx, ep) {
            Ok(()) => {
                self.bootstrapping.insert(conn, tx);
            }
            Err(e) => warn!("cannot start a link to {addr}: {e}"),
        }
    }

    pub(super) fn rejoin_every(&self) -> Duration {
        if self.ever_linked {
            REJOIN_EVERY
        } else {
            REJOIN_FIRST
        }
    }

    /// An isolated servant joins again through a servant it knows (or a `<bootstrap>`),
    /// every `REJOIN_EVERY` (`REJOIN_FIRST` until its first neighbour).
    pub(super) fn maybe_rejoin(&mut self) {
        if !self.overlay.active().is_empty() {
            self.isolated_since = None;
            return;
        }
        if self.isolated_since.is_none()
            || self
                .last_rejoin
                .is_some_and(|t| t.elapsed() < self.rejoin_every())
        {
            return;
        }
        self.last_rejoin = Some(Instant::now());
        let pick = self.rng.choose(&self.contacts).cloned();
        match pick {
            Some(contact) => {
                debug!(
                    "no neighbour: joining through {} at {}",
                    contact.id, contact.addr
                );
                self.handle(Input::Join(contact));
            }
            None => {
                if let Some(addr) = self.rng.choose(&self.setup.bootstrap).copied() {
                    debug!("no neighbour and nobody known: joining through {addr}");
                    self.bootstrap(addr);
                }
            }
        }
    }
}
