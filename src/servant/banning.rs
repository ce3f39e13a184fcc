//! What the core does about bans: the servants listed at banned addresses (their lines are
//! dropped however they arrive), `/ban` and `/unban` saved to the configuration file, and
//! the bans thread left idle when no ban names a host.

use std::collections::HashSet;
use std::net::IpAddr;

use log::{info, warn};

use crate::config::{edit_bans, is_ban_target, BanEdit};
use crate::protocol::PeerEntry;

use super::state::Core;

impl Core {
    /// `/ban` and `/unban`: saved to the config file (atomically, keeping the rest of
    /// it), then applied at once.
    pub(super) fn edit_bans(&mut self, edit: BanEdit) {
        let target = match edit {
            BanEdit::Add(t) | BanEdit::Remove(t) => t,
        };
        if !is_ban_target(target) {
            return self.print(format!("{target:?} is not an IP address or host name"));
        }
        let bans = match &self.config_path {
            Some(path) => match edit_bans(path, edit) {
                Ok(bans) => bans,
                Err(e) => {
                    warn!("{e}");
                    return self.print(format!("not changed: {e}"));
                }
            },
            None => {
                let mut bans = self.inbound.bans.targets();
                bans.retain(|b| b != target);
                if let BanEdit::Add(t) = edit {
                    bans.push(t.to_owned());
                }
                bans
            }
        };
        self.inbound.bans.set_targets(bans);
        self.refresh_banned_authors();
        let verb = if matches!(edit, BanEdit::Add(_)) {
            "banned"
        } else {
            "unbanned"
        };
        let saved = match &self.config_path {
            Some(p) => format!(" (saved to {})", p.display()),
            None => " (for this run only: no config file)".to_owned(),
        };
        info!("{verb} {target}{saved}");
        self.print(format!("{verb} {target}{saved}"));
    }

    /// Bans follow the author: the servants the list has at a banned address are banned
    /// by id too, so their lines are dropped wherever they come from (a relay passes on
    /// what it hears; see `receiving::receive`).
    pub(super) fn refresh_banned_authors(&self) {
        let banned: HashSet<String> = self
            .listed
            .values()
            .filter(|e| self.at_banned_address(e))
            .filter_map(|e| e.id.clone())
            .collect();
        self.inbound.banned_authors.set(banned);
    }

    pub(super) fn at_banned_address(&self, e: &PeerEntry) -> bool {
        e.ip.parse::<IpAddr>()
            .is_ok_and(|ip| self.inbound.bans.refuses(ip))
    }

    pub(super) fn note_banned(&self, e: &PeerEntry) {
        if let Some(id) = &e.id {
            self.inbound
                .banned_authors
                .mark(id, self.at_banned_address(e));
        }
    }

    /// In the overlay, each servant's join no longer concerns us, and the manager is
    /// asked for samples at each heartbeat instead, unless we ban someone: a ban follows
    /// the servants the list places at the banned address, so every join must be seen.
    /// Checked again at every tick, as `/ban` and edits of the bans file change it.
    pub(super) fn quiet_when_no_bans(&self) {
        self.writer
            .set_quiet(self.inbound.bans.targets().is_empty());
    }
}
