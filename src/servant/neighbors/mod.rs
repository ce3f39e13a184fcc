//! The servant in an overlay: a few neighbours instead of a link to every servant.
//!
//! Past `<fullmesh>` servants, the article's "send to every servant" costs two threads
//! per servant on every servant. Here one thread, `overlay`, owns the protocol's state
//! (`crate::overlay`, HyParView and Plumtree, the code the simulator runs) and the links
//! to its neighbours (`link`): it hands the state what arrives, the time and its timers,
//! and does what the state asks (send this line to that neighbour, dialling it first;
//! close that link; show this line). Every thread that talks to it does so through one
//! bounded channel, so the state needs no lock and a flood of lines slows its senders'
//! sockets instead of filling memory.
//!
//! ```text
//!   nrecv-ID ──┐                                   ┌──> nsend-ID ──> neighbour
//!   nrecv-ID ──┼──> overlay (Overlay<Wire>, timers) ┼──> nsend-ID ──> neighbour
//!   core, stdin┘        │ shows each line once       └──> ...
//!                       └──> receiving::Forwarded ──> stdout
//! ```
//!
//! A servant holds at most `<degree>` neighbours and a few links being tried, so about
//! twice as many threads, whatever the size of the network.

pub mod bell;
mod contacts;
mod driver;
pub mod link;

pub use driver::Setup;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError};
use log::{debug, info, warn};

use crate::overlay::{Input, LineId};
use crate::protocol::overlay::Signed;
use crate::protocol::PeerLine;
use bell::Bell;
use driver::Driver;
use link::{Endpoint, ToDriver};

/// Messages waiting for the `overlay` thread at most; past it, links wait to hand theirs
/// (and TCP slows their neighbours). 1,024, not more: a bounded channel allocates and
/// touches every slot when it is made, and 4,096 messages of 150 bytes were 600 KiB of
/// a servant's resident memory, most of it never used.
pub const EVENTS: usize = 1024;

/// Where the listener hands the links that neighbours open: open while the servant is
/// in an overlay, closed (a `LINK` is refused) while it links to every servant.
#[derive(Default)]
pub struct Door(Mutex<Option<Arc<Endpoint>>>);

impl Door {
    pub fn endpoint(&self) -> Option<Arc<Endpoint>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, ep: Option<Arc<Endpoint>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = ep;
    }
}

/// The running `overlay` thread.
pub struct Neighbors {
    pub tx: Bell<ToDriver>,
    thread: JoinHandle<()>,
    door: Arc<Door>,
}

impl Neighbors {
    /// Starts the `overlay` thread and opens the door to links.
    pub fn start(setup: Setup, door: Arc<Door>) -> std::io::Result<Neighbors> {
        let tx = setup.endpoint.events.clone();
        door.set(Some(Arc::clone(&setup.endpoint)));
        let thread = thread::Builder::new()
            .name("overlay".into())
            .spawn(move || Driver::new(setup).run())?;
        Ok(Neighbors { tx, thread, door })
    }

    /// Says goodbye to the neighbours and waits (up to `linger`) for the thread to end.
    pub fn leave(self, linger: Duration) {
        self.door.set(None);
        let _ = self.tx.send(ToDriver::Leave);
        let deadline = Instant::now() + linger;
        while Instant::now() < deadline && !self.thread.is_finished() {
            thread::sleep(Duration::from_millis(10));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }

    /// `/peers`: the overlay's lines, or `None` when it does not answer within a second.
    pub fn view(&self) -> Option<String> {
        let (tx, rx) = bounded(1);
        self.tx.send(ToDriver::View(tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(1)).ok()
    }
}

impl Driver {
    fn run(mut self) {
        let mut out = Vec::new();
        self.overlay.start(&mut self.rng, &mut out);
        self.apply(out);
        info!(
            "in the overlay as {} (at most {} neighbours)",
            self.setup.me.addr,
            self.overlay.params().active
        );
        loop {
            self.fire_timers();
            self.maybe_rejoin();
            let wait = self
                .timers
                .keys()
                .next()
                .map_or(self.rejoin_every(), |(t, _)| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(self.rejoin_every());
            match self.setup.events.recv_timeout(wait) {
                Ok(ToDriver::Leave) => break,
                Ok(ev) => self.on(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.handle(Input::Leave);
        // Dropping the queues ends each `nsend-` thread once it has written the goodbyes.
        self.links.clear();
        self.bootstrapping.clear();
        info!("left the overlay");
    }

    fn fire_timers(&mut self) {
        loop {
            let now = Instant::now();
            let Some(entry) = self.timers.first_entry() else {
                return;
            };
            if entry.key().0 > now {
                return;
            }
            let timer = entry.remove();
            self.handle(Input::Timer(timer));
        }
    }

    fn on(&mut self, ev: ToDriver) {
        match ev {
            ToDriver::Up { contact, conn, tx } => self.up(contact, conn, tx),
            ToDriver::Received { contact, msg } => {
                if !self.links.contains_key(&contact) {
                    return;
                }
                if let Some(msg) = self.screen(msg) {
                    self.handle(Input::Received(contact, msg));
                }
            }
            ToDriver::Copy { contact, id } => {
                if self.links.contains_key(&contact) {
                    self.handle(Input::Copy(contact, id));
                }
            }
            ToDriver::Down { contact, conn, why } => {
                if self.drop_conn(&contact, conn) {
                    debug!("link to {} at {} ended: {why}", contact.id, contact.addr);
                    self.handle(Input::LinkDown(contact));
                }
            }
            ToDriver::Unreachable {
                contact,
                addr,
                conn,
                why,
            } => {
                if self.bootstrapping.remove(&conn).is_some() {
                    return warn!("cannot join the overlay through {addr}: {why}");
                }
                let Some(contact) = contact else { return };
                if self.drop_conn(&contact, conn) {
                    debug!("cannot reach {} at {addr}: {why}", contact.id);
                    self.handle(Input::Unreachable(contact));
                }
            }
            ToDriver::Typed(lines) => {
                let key = self.setup.endpoint.identity.key;
                for out in lines {
                    let Some(Ok(PeerLine::Msg(chat))) = PeerLine::parse(out.line.trim_end()) else {
                        continue;
                    };
                    let id = LineId {
                        author: chat.origin.clone(),
                        incarnation: chat.incarnation,
                        seq: chat.seq,
                    };
                    self.handle(Input::Broadcast(id, Arc::new(Signed { key, chat })));
                }
            }
            ToDriver::Learn(contacts) => self.learn(contacts),
            ToDriver::Join(contact) => {
                if contact != self.setup.me {
                    self.last_rejoin = Some(Instant::now());
                    self.handle(Input::Join(contact));
                }
            }
            ToDriver::Bootstrap(addr) => self.bootstrap(addr),
            ToDriver::Hidden(hidden) => {
                if hidden != self.hidden {
                    self.hidden = hidden;
                    let port = if hidden { 0 } else { self.setup.me.addr.port() };
                    self.setup.endpoint.port.store(port, Ordering::Relaxed);
                    if hidden {
                        info!(
                            "behind a firewall: keeping only the overlay links this servant opens"
                        );
                    } else {
                        info!("reachable again: other servants may open overlay links to this one");
                    }
                }
            }
            ToDriver::View(reply) => {
                let _ = reply.send(self.view());
            }
            ToDriver::Leave => {}
        }
    }
}
