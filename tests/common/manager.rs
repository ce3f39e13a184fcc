//! A connection manager for a test: started on an OS-chosen port, and its list read as a
//! client would (`needs peer list`).

#![allow(dead_code)]

use super::process::*;
use super::raw::*;

pub struct Manager {
    pub proc: Proc,
    /// The port it listens on, read from its log.
    pub port: u16,
}

/// Writes a manager configuration and starts a manager on it, without waiting.
pub fn spawn_manager(dir: &TestDir, label: &str, port: u16, settings: &str) -> Proc {
    let cfg = dir.write(
        &format!("{label}.xml"),
        &format!("<manager>\n  <port>{port}</port>\n  {settings}\n</manager>\n"),
    );
    Proc::spawn(
        label,
        MANAGER_BIN,
        &["--config".into(), cfg.into_os_string()],
        "info",
        &dir.path,
    )
}

/// Starts a manager on an OS-chosen port (or `port`, when not 0) and waits until it listens.
pub fn start_manager_on(dir: &TestDir, port: u16, settings: &str) -> Manager {
    start_labelled_manager(dir, "manager", port, settings)
}

/// `start_manager_on` for a test with more than one manager: `label` names its config
/// file and its lines in `dump()`.
pub fn start_labelled_manager(dir: &TestDir, label: &str, port: u16, settings: &str) -> Manager {
    let proc = spawn_manager(dir, label, port, settings);
    let line = proc.wait_log("connection manager listening on ");
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or_else(|| fail(&format!("no port in {line:?}")));
    Manager { proc, port }
}

pub fn start_manager(dir: &TestDir, settings: &str) -> Manager {
    start_manager_on(dir, 0, settings)
}

/// One `<peer>` of the manager's peer document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub ip: String,
    pub port: u16,
    pub offset: u32,
    pub me: bool,
    pub name: Option<String>,
    pub id: Option<String>,
}

/// Parses a `<peers>` (or `<join>`/`<leave>`) line with roxmltree, checking the article's
/// shape: each `<peer>` opens with `<ip>`, `<port>`, `<offset>` and `<me>`, in that order.
pub fn parse_peers(line: &str, root: &str) -> Result<Vec<PeerInfo>, String> {
    let doc = roxmltree::Document::parse(line).map_err(|e| format!("not XML: {e}: {line}"))?;
    let r = doc.root_element();
    if r.tag_name().name() != root {
        return Err(format!("expected <{root}>, got {line}"));
    }
    let mut out = Vec::new();
    for peer in r.children().filter(|c| c.is_element()) {
        if peer.tag_name().name() != "peer" {
            return Err(format!(
                "<{root}> holds <{}>: {line}",
                peer.tag_name().name()
            ));
        }
        let kids: Vec<_> = peer.children().filter(|c| c.is_element()).collect();
        let names: Vec<&str> = kids.iter().map(|k| k.tag_name().name()).collect();
        if names.len() < 4 || names[..4] != ["ip", "port", "offset", "me"] {
            return Err(format!("<peer> children are {names:?}: {line}"));
        }
        let text = |n: &str| {
            kids.iter()
                .find(|k| k.tag_name().name() == n)
                .map(|k| k.text().unwrap_or("").to_owned())
        };
        let me = text("me").unwrap_or_default();
        if me != "TRUE" && me != "FALSE" {
            return Err(format!("<me> is {me:?}: {line}"));
        }
        out.push(PeerInfo {
            ip: text("ip").unwrap_or_default(),
            port: text("port")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("bad <port>: {line}"))?,
            offset: text("offset")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("bad <offset>: {line}"))?,
            me: me == "TRUE",
            name: text("name"),
            id: text("id"),
        });
    }
    Ok(out)
}

/// Asks the manager for its list on a fresh connection and returns the servants listed
/// (the asker's own `me` entry left out).
pub fn listed(manager_port: u16) -> Vec<PeerInfo> {
    let mut c = Raw::connect(manager_port);
    c.send("needs peer list");
    let line = c.expect_line("the peer list");
    match parse_peers(&line, "peers") {
        Ok(peers) => peers.into_iter().filter(|p| !p.me).collect(),
        Err(e) => fail(&e),
    }
}

/// The names the manager lists.
pub fn listed_names(manager_port: u16) -> Vec<String> {
    let mut names: Vec<String> = listed(manager_port)
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    names.sort();
    names
}

/// Waits until the manager lists exactly `names` (in any order).
pub fn wait_listed(manager_port: u16, names: &[&str]) {
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_for(&format!("the manager to list exactly {want:?}"), || {
        (listed_names(manager_port) == want).then_some(())
    });
}

// ---------------------------------------------------------------------------------------
// Servants
// ---------------------------------------------------------------------------------------
