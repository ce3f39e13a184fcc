//! When the network outgrows `<fullmesh>`: the core starts the overlay (`neighbors`),
//! through a listed servant or `<bootstrap>`, and closes its links to every servant a moment
//! later (`switch` decides the when and the what).

use std::net::SocketAddr;
use std::time::Instant;

use log::{info, warn};

use super::neighbors::link::ToDriver;
use super::state::Core;
use super::switch;

impl Core {
    /// Joins the overlay once the network has outgrown `<fullmesh>` (see `switch`).
    pub(super) fn consider_overlay(&mut self) {
        let servants = self.listed.len() + 1;
        if self.overlay.is_some() || !switch::wants_overlay(servants, self.config.full_mesh) {
            return;
        }
        if self.my_ip.is_none() {
            return;
        }
        let why = format!(
            "{servants} servants on the network, more than <fullmesh> {}: joining the overlay; the links to every servant close in {} s",
            self.config.full_mesh,
            switch::MESH_LINGER.as_secs()
        );
        self.start_overlay(&why);
    }

    /// Started without a manager: the overlay through `<bootstrap>` is the only way in.
    pub(super) fn bootstrap_overlay(&mut self) {
        self.start_overlay("no connection manager: joining the overlay through <bootstrap>");
    }

    /// Starts the overlay at our address: the list's, or else the one towards
    /// `<bootstrap>` (resolved here once, for both).
    pub(super) fn start_overlay(&mut self, why: &str) {
        let bootstrap = switch::bootstrap_addrs(&self.config);
        let Some(ip) = self
            .my_ip
            .or_else(|| switch::own_ip(&self.config, &bootstrap))
        else {
            return warn!(
                "cannot tell this host's address towards <bootstrap>; waiting for the manager"
            );
        };
        self.my_ip = Some(ip);
        let me = crate::protocol::overlay::Contact {
            id: self.id.clone(),
            addr: SocketAddr::new(ip, self.port),
        };
        let n = match switch::start(&self.inbound, me, &self.config, self.port, bootstrap) {
            Ok(n) => n,
            Err(e) => return warn!("cannot start the overlay: {e}; linking to every servant"),
        };
        info!("{why}");
        self.quiet_when_no_bans();
        if self.hidden {
            let _ = n.tx.send(ToDriver::Hidden(true));
            self.relay_watch = None;
            if let Some(p) = self.puller.take() {
                info!(
                    "no longer pulling from {}: the overlay links carry everything",
                    p.relay_label
                );
            }
        }
        let contacts: Vec<_> = self
            .listed
            .values()
            .filter_map(switch::contact_of)
            .collect();
        let first = crate::overlay::Rng::from_os().choose(&contacts).cloned();
        let _ = n.tx.send(ToDriver::Learn(contacts));
        if let Some(c) = first {
            let _ = n.tx.send(ToDriver::Join(c));
        }
        self.dispatch.set_overlay(n.tx.clone());
        self.overlay = Some(n);
        self.mesh_until = Some(Instant::now() + switch::MESH_LINGER);
    }

    /// After `MESH_LINGER` in the overlay, the links to every servant close.
    pub(super) fn end_mesh(&mut self, now: Instant) {
        if self.mesh_until.is_none_or(|t| now < t) {
            return;
        }
        self.mesh_until = None;
        let keys: Vec<String> = self.peers.keys().cloned().collect();
        for key in &keys {
            self.stop_sender(key);
        }
        info!(
            "closed the links to {} servant(s); the overlay carries the chat",
            keys.len()
        );
    }
}
