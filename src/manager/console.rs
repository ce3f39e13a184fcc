//! The manager's console view: the listed servants as a table.
//!
//! The article's manager form showed its peers in a list box; the binary's console prints
//! this table on request. It only reads the registry, in one short block.

use std::sync::Arc;

use super::shared::Shared;
use crate::protocol::PeerEntry;

/// The manager's window onto the network, for its console (the article's manager form
/// showed its peers in a list box).
pub struct Console {
    pub(super) shared: Arc<Shared>,
}

impl Console {
    pub fn peers(&self) -> Vec<PeerEntry> {
        self.shared.registry().listed()
    }

    /// The list as an aligned table.
    pub fn table(&self) -> String {
        format_table(&self.peers())
    }
}

pub fn format_table(peers: &[PeerEntry]) -> String {
    let mut out = format!("{} servant(s) on the network\n", peers.len());
    if !peers.is_empty() {
        out.push_str(&format!(
            "{:>6}  {:<40}  {:>5}  {:<20}  {}\n",
            "offset", "ip", "port", "name", "id"
        ));
    }
    for p in peers {
        out.push_str(&format!(
            "{:>6}  {:<40}  {:>5}  {:<20}  {}\n",
            p.offset,
            p.ip,
            p.port,
            p.name.as_deref().unwrap_or("-"),
            p.id.as_deref().unwrap_or("-")
        ));
    }
    out
}
