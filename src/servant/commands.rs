//! The console's commands answered by the core: `/peers`, `/files`, `/get`, `/downloads`,
//! `/bans`, `/trust`. Each reads the core's state and prints its answer through the
//! `stdout` thread, as the article's form appended to its chat box.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use log::{info, warn};

use crate::config::BanEdit;
use crate::escape::Shown;
use crate::identity::PeerKey;
use crate::protocol::PeerEntry;
use crate::transfer::download;

use super::console::{Input, HELP};
use super::neighbors::Neighbors;
use super::state::Core;
use super::switch;

impl Core {
    /// Answers what was typed: sends a line, or runs a command. `/quit` never reaches it
    /// (the loop leaves).
    pub(super) fn command(&mut self, input: Input) {
        match input {
            Input::Say(text) => self.dispatch.say(text, false),
            Input::Peers => self.show_peers(),
            Input::Help => self.print(HELP.to_owned()),
            Input::Unknown(cmd) => {
                self.print(format!("unknown command {cmd}; /help lists the commands"))
            }
            Input::Ban(t) => self.edit_bans(BanEdit::Add(&t)),
            Input::Unban(t) => self.edit_bans(BanEdit::Remove(&t)),
            Input::Files => self.list_files(),
            Input::Get(name) => self.get(name),
            Input::Downloads => {
                let lines = self.downloads.lines();
                if lines.is_empty() {
                    self.print("no downloads".into());
                }
                for l in lines {
                    self.print(l);
                }
            }
            Input::Trust(name) => {
                let answer = self.inbound.known.trust(&name);
                self.inbound.known.flush();
                info!("{answer}");
                self.print(answer);
            }
            Input::Bans => {
                let bans = self.inbound.bans.targets();
                let dropped = self.inbound.banned_lines.load(Ordering::Relaxed);
                let authors = self.inbound.banned_authors.len();
                if bans.is_empty() {
                    self.print("no bans".to_owned());
                } else {
                    self.print(format!("banned: {}", bans.join(", ")));
                    self.print(format!(
                        "  {authors} servant(s) listed at banned addresses; {dropped} line(s) by them dropped"
                    ));
                }
            }
            Input::Shares => self.show_shares(),
            Input::Quit => {}
        }
    }

    /// `/shares`: what this servant offers, and how far the hashing of its share has come
    /// (a file is offered once hashed; a large share is hashed after joining).
    pub(super) fn show_shares(&self) {
        let lib = &self.inbound.library;
        if lib.share.is_none() && lib.downloads.is_none() {
            return self.print("no share folder: <share> in the configuration offers one".into());
        }
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let entries = lib.entries();
        match lib.hashing() {
            Some(h) if h.files == 0 => self.print("looking through the share folder".into()),
            Some(h) => self.print(format!(
                "hashing the shared files: {} of {} file(s), {:.1} of {:.1} MiB; now {}",
                h.files_done,
                h.files,
                mib(h.bytes_done),
                mib(h.bytes),
                crate::escape::shown(&h.current)
            )),
            None => self.print(format!(
                "every shared file is hashed: {} offered, {:.1} MiB",
                entries.len(),
                mib(entries.iter().map(|e| e.manifest.size).sum())
            )),
        }
        for e in entries {
            let state = if e.partial.is_some() {
                "partial"
            } else {
                "complete"
            };
            self.print(format!(
                "  {}  {:.1} MiB  {state}  id {}",
                crate::escape::shown(&e.manifest.name),
                mib(e.manifest.size),
                &e.manifest.id()[..16]
            ));
        }
    }

    /// Peers we can connect to (relayed ones cannot be reached), for file requests.
    pub(super) fn file_peers(&self) -> Vec<download::Peer> {
        if self.overlay.is_some() {
            // No link to every servant: every listed servant that can be dialled.
            return self
                .listed
                .values()
                .filter_map(|e| {
                    switch::contact_of(e).map(|c| download::Peer {
                        label: e.label(),
                        addr: c.addr,
                    })
                })
                .collect();
        }
        self.peers
            .values()
            .map(|p| download::Peer {
                label: p.entry.label(),
                addr: p.addr,
            })
            .collect()
    }

    /// `/files`: asks every peer what it shares, on a `files` thread, and prints a table.
    pub(super) fn list_files(&self) {
        let (peers, out) = (self.file_peers(), self.out.clone());
        let spawned = thread::Builder::new().name("files".into()).spawn(move || {
            let mut rows: std::collections::BTreeMap<(String, String), (u64, Vec<String>)> =
                Default::default();
            let mut silent = Vec::new();
            for r in download::list_all(&peers) {
                match r {
                    Ok(offers) => {
                        for o in offers {
                            let who = if o.complete {
                                o.peer.label.clone()
                            } else {
                                format!("{} (partial)", o.peer.label)
                            };
                            let row = rows.entry((o.name, o.id)).or_insert((o.size, Vec::new()));
                            row.1.push(who);
                        }
                    }
                    Err((p, e)) => silent.push(format!("{} ({e})", p.label)),
                }
            }
            let _ = out.send(format!("{} file(s) on the network", rows.len()));
            for ((name, _), (size, who)) in rows {
                let _ = out.send(format!("  {name:<32} {size:>12} bytes  {}", who.join(", ")));
            }
            if !silent.is_empty() {
                let _ = out.send(format!("  no answer from: {}", silent.join(", ")));
            }
        });
        if let Err(e) = spawned {
            warn!("cannot start /files: {e}");
        }
    }

    /// `/get NAME`: downloads from every peer that has it.
    pub(super) fn get(&self, name: String) {
        let job = download::Job {
            name,
            peers: self.file_peers(),
            library: Arc::clone(&self.inbound.library),
            workers: self.config.workers,
            out: self.out.clone(),
            downloads: Arc::clone(&self.downloads),
        };
        if let Err(e) = download::start(job) {
            warn!("cannot start the download: {e}");
        }
    }

    /// `/peers`: the article's `userList1`, with each peer's state.
    pub(super) fn show_peers(&self) {
        if let Some(n) = &self.overlay {
            return self.show_overlay(n);
        }
        let mut lines = vec![format!(
            "{} peer(s); manager {}",
            self.listed.len().max(self.peers.len()),
            if self.manager_up {
                "connected"
            } else {
                "unreachable, reconnecting"
            }
        )];
        let label_of = |offset: u32| {
            if self.my_offset == Some(offset) {
                return format!("{} (this servant)", self.name);
            }
            self.listed
                .values()
                .find(|e| e.offset == offset)
                .map_or(format!("slot {offset}"), PeerEntry::label)
        };
        let mut keys: Vec<&String> = self.listed.keys().chain(self.peers.keys()).collect();
        keys.sort_by_key(|k| {
            self.peers
                .get(*k)
                .map(|p| p.entry.offset)
                .or(self.listed.get(*k).map(|e| e.offset))
        });
        keys.dedup();
        for key in keys {
            let (entry, state) = match (self.peers.get(key), self.listed.get(key)) {
                (Some(p), listed) => {
                    let mut state = if p.wire.connected.load(Ordering::Relaxed) {
                        "connected".to_owned()
                    } else {
                        match p.wire.failures.load(Ordering::Relaxed) {
                            0 => "connecting".to_owned(),
                            n => format!("unreachable ({n} tries)"),
                        }
                    };
                    state.push_str(&format!(", {} queued", p.tx.len()));
                    if listed.is_none() {
                        state.push_str(" [kept while the manager recovers]");
                    }
                    (&p.entry, state)
                }
                (None, Some(e)) => match e.relay {
                    Some(r) => (
                        e,
                        format!("behind a firewall, relayed through {}", label_of(r)),
                    ),
                    None => (e, "not reached".to_owned()),
                },
                (None, None) => continue,
            };
            let key = entry.key.as_deref().and_then(|k| PeerKey::from_hex(k).ok());
            let standing = match (&entry.name, &key) {
                (Some(name), Some(key)) => self.inbound.known.standing(name, key),
                _ => "no key",
            };
            lines.push(format!(
                "  {:<20} {:<24} slot {:<4} {} {standing:<11} {state}",
                entry.label(),
                format!("{}:{}", Shown(&entry.ip), entry.port),
                entry.offset,
                entry.id.as_deref().unwrap_or("-"),
            ));
        }
        let mut me = format!("  {:<20} (this servant) id {}", self.name, self.id);
        if let Some(p) = &self.puller {
            me.push_str(&format!(
                "; behind a firewall, pulling from {} at {}",
                p.relay_label, p.addr
            ));
        }
        let relayed = self.inbound.hub.pullers();
        if !relayed.is_empty() {
            let names: Vec<String> = relayed
                .iter()
                .map(|id| self.listed.get(id).map_or(id.clone(), PeerEntry::label))
                .collect();
            me.push_str(&format!("; relaying to {}", names.join(", ")));
        }
        lines.push(me);
        for l in lines {
            self.print(l);
        }
    }

    /// `/peers` in the overlay: the neighbours, not every listed servant.
    pub(super) fn show_overlay(&self, n: &Neighbors) {
        self.print(format!(
            "{} servant(s) listed; manager {}",
            self.listed.len() + 1,
            if self.manager_up {
                "connected"
            } else {
                "unreachable, reconnecting"
            }
        ));
        match n.view() {
            Some(view) => {
                for line in view.lines() {
                    let line = match line.strip_prefix("  neighbour ") {
                        Some(rest) => {
                            let id = rest.split_whitespace().next().unwrap_or("");
                            let name = self.listed.get(id).map_or("?".to_owned(), PeerEntry::label);
                            format!("  {name:<20} {rest}")
                        }
                        None => line.to_owned(),
                    };
                    self.print(line);
                }
            }
            None => self.print("overlay: no answer".into()),
        }
        self.print(format!("  {:<20} (this servant) id {}", self.name, self.id));
    }
}
