//! Client ↔ connection manager: the commands a client sends, and the `<peers>` document
//! and pushed changes the manager answers with (docs/PROTOCOL.md, section 2).
//!
//! A servant registers with `listening PORT ID NAME KEY` and proves the key by signing the
//! manager's `<challenge>` (`prove SIG`), so nobody can be listed under, or evict, another
//! servant's id; the peer document then carries each servant's key, so a servant can
//! check a peer before it ever connects to it.

use roxmltree::{Document, Node};
use xml_writer::XmlWriter;

use super::{check_id, check_token, err, hex_field, number, ProtocolError};
use crate::encoding::hex;

// ---------------------------------------------------------------------------------------
// Client to connection manager
// ---------------------------------------------------------------------------------------

/// Most servants one `needs sample` asks for.
pub const SAMPLE_LIMIT: usize = 64;

/// A line a client sends to the connection manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerCommand {
    /// `needs peer list`: the article's command, answered with the whole `<peers>` document.
    /// `needs peer list since V` is the heartbeat form: answered with `<unchanged>` when the
    /// list is still at version V.
    NeedsPeerList { since: Option<u64> },
    /// `listening PORT ID NAME KEY`: this servant listens on PORT; list it once it has
    /// proved KEY (answered with a `<challenge>`).
    Listening {
        port: u16,
        id: String,
        name: String,
        /// The public key, 64 hex digits; ID must be its fingerprint.
        key: String,
    },
    /// `prove SIG [NET]`: the signature of the last `<challenge>` (see [`listen_proof`]),
    /// and with a network key, the proof of knowing it.
    Prove {
        sig: [u8; 64],
        net: Option<[u8; 16]>,
    },
    /// `needs sample N`: up to N listed servants chosen at random, never the asker,
    /// answered with a `<sample>` (what an overlay's newcomer needs instead of the list).
    NeedsSample { count: usize },
    /// `needs no changes`: stop pushing `<join>` and `<leave>` to this connection (a
    /// servant in the overlay, which asks for samples instead); answered with
    /// `<unchanged version="V"/>` at the list's current version.
    NeedsNoChanges,
    /// `needs changes`: push the list's changes again (the default), answered with the
    /// whole `<peers>` list as `needs peer list` is.
    NeedsChanges,
    /// `bye`: leaving; the manager drops the client at once.
    Bye,
    /// `complain ID`: this servant could not reach the listed servant with that id.
    Complain { id: String },
    /// `replace relay`: this relayed servant hears nothing through its relay while others
    /// speak; it asks for another.
    ReplaceRelay,
}

impl ManagerCommand {
    pub fn parse(line: &str) -> Result<ManagerCommand, ProtocolError> {
        let line = line.trim();
        if line == "needs peer list" {
            return Ok(ManagerCommand::NeedsPeerList { since: None });
        }
        if let Some(rest) = line.strip_prefix("needs peer list since ") {
            return match crate::encoding::parse_u64(rest.trim()) {
                Ok(v) => Ok(ManagerCommand::NeedsPeerList { since: Some(v) }),
                Err(_) => err(format!(
                    "bad version {:?} in 'needs peer list since'",
                    crate::escape::Shown(&rest.chars().take(40).collect::<String>())
                )),
            };
        }
        if let Some(rest) = line.strip_prefix("needs sample") {
            return match crate::encoding::parse_u64(rest.trim()) {
                Ok(n) if (1..=SAMPLE_LIMIT as u64).contains(&n) => {
                    Ok(ManagerCommand::NeedsSample { count: n as usize })
                }
                _ => err(format!(
                    "needs sample: expected 'needs sample N', N from 1 to {SAMPLE_LIMIT}"
                )),
            };
        }
        if line == "bye" {
            return Ok(ManagerCommand::Bye);
        }
        if line == "needs no changes" {
            return Ok(ManagerCommand::NeedsNoChanges);
        }
        if line == "needs changes" {
            return Ok(ManagerCommand::NeedsChanges);
        }
        if line == "replace relay" {
            return Ok(ManagerCommand::ReplaceRelay);
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("complain") => match (words.next(), words.next()) {
                (Some(id), None) => {
                    check_id("complain: id", id)?;
                    Ok(ManagerCommand::Complain { id: id.to_owned() })
                }
                _ => err("complain: expected 'complain ID'"),
            },
            Some("listening") => {
                let port = match words.next().map(|p| number("listening: port", p)) {
                    Some(Ok(p)) if (1..=65535).contains(&p) => p as u16,
                    Some(_) => return err("listening: port must be a number from 1 to 65535"),
                    None => return err("listening: missing port"),
                };
                let (Some(id), Some(name), Some(key), None) =
                    (words.next(), words.next(), words.next(), words.next())
                else {
                    return err("listening: expected 'listening PORT ID NAME KEY'");
                };
                check_id("listening: id", id)?;
                check_token("listening: name", name)?;
                hex_field::<32>("listening: key", key)?;
                Ok(ManagerCommand::Listening {
                    port,
                    id: id.to_owned(),
                    name: name.to_owned(),
                    key: key.to_owned(),
                })
            }
            Some("prove") => {
                let (Some(sig), net, None) = (words.next(), words.next(), words.next()) else {
                    return err("prove: expected 'prove SIG [NET]'");
                };
                Ok(ManagerCommand::Prove {
                    sig: hex_field("prove: signature", sig)?,
                    net: net
                        .map(|n| hex_field("prove: network proof", n))
                        .transpose()?,
                })
            }
            Some(_) => {
                let shown: String = line.chars().take(40).collect();
                err(format!(
                    "unknown command {:?}",
                    crate::escape::Shown(&shown)
                ))
            }
            None => err("empty line"),
        }
    }

    /// The line for this command, without its line end.
    pub fn to_line(&self) -> String {
        match self {
            ManagerCommand::NeedsPeerList { since: None } => "needs peer list".to_owned(),
            ManagerCommand::NeedsPeerList { since: Some(v) } => {
                format!("needs peer list since {v}")
            }
            ManagerCommand::Listening {
                port,
                id,
                name,
                key,
            } => format!("listening {port} {id} {name} {key}"),
            ManagerCommand::Prove { sig, net } => match net {
                Some(n) => format!("prove {} {}", hex(sig), hex(n)),
                None => format!("prove {}", hex(sig)),
            },
            ManagerCommand::NeedsSample { count } => format!("needs sample {count}"),
            ManagerCommand::NeedsNoChanges => "needs no changes".into(),
            ManagerCommand::NeedsChanges => "needs changes".into(),
            ManagerCommand::Bye => "bye".to_owned(),
            ManagerCommand::Complain { id } => format!("complain {id}"),
            ManagerCommand::ReplaceRelay => "replace relay".to_owned(),
        }
    }
}

/// What a servant signs to prove its key to the manager: the challenge's nonce and the
/// `listening` line it answers, after a label that no other signed text starts with.
pub fn listen_proof(nonce: &[u8; 32], listening: &str) -> Vec<u8> {
    let mut m = b"genp2p-listen-2\n".to_vec();
    m.extend_from_slice(nonce);
    m.extend_from_slice(listening.as_bytes());
    m
}

// ---------------------------------------------------------------------------------------
// Connection manager to client: the peer document and its changes
// ---------------------------------------------------------------------------------------

/// One `<peer>` of the peer document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerEntry {
    /// The address the manager saw the servant connect from.
    pub ip: String,
    /// The port the servant listens on (or, before it listens, the port it was assigned).
    pub port: u16,
    /// The servant's slot in the manager, the article's offset (Winsock control index).
    pub offset: u32,
    /// TRUE only in the copy sent to this servant itself.
    pub me: bool,
    /// The servant's chosen name, if it gave one.
    pub name: Option<String>,
    /// The servant's id (its key's fingerprint); the key a servant files peers by.
    pub id: Option<String>,
    /// The servant's public key, 64 hex digits (every listed servant has proved it).
    pub key: Option<String>,
    /// Set when this servant cannot be reached (behind a firewall): the offset of the peer
    /// that relays to it. Others must not connect to it; it pulls from its relay.
    pub relay: Option<u32>,
}

impl PeerEntry {
    /// The key a servant files this peer under: its id, or its address for a client that
    /// gave none.
    pub fn filing_key(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!("{}:{}", self.ip, self.port),
        }
    }

    /// How this peer is shown: its name, or its address.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}:{}", self.ip, self.port),
        }
    }
}

/// A whole `<peers>` document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerList {
    /// Increases by one with every change to the listed peers.
    pub version: u64,
    /// Random per run of the manager: a new epoch means a restarted manager.
    pub epoch: String,
    /// Milliseconds of silence after which the manager drops a listed servant.
    pub timeout_ms: u64,
    pub peers: Vec<PeerEntry>,
}

impl PeerList {
    /// The asker's own entry.
    pub fn me(&self) -> Option<&PeerEntry> {
        self.peers.iter().find(|p| p.me)
    }
}

/// A line the connection manager sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerMessage {
    /// `<peers>`: the whole list.
    Peers(PeerList),
    /// `<unchanged version="V"/>`: the list is still at version V.
    Unchanged { version: u64 },
    /// `<join version="V">`: these peers were added (or changed) at version V.
    Join { version: u64, peers: Vec<PeerEntry> },
    /// `<leave version="V">`: these peers left at version V.
    Leave { version: u64, peers: Vec<PeerEntry> },
    /// `<error>`: the last line was not understood.
    Error(String),
    /// `<pull>`: the manager found this servant unreachable; pull every message from the
    /// peer inside (its relay). An empty `<pull></pull>` means: stop pulling.
    Pull(Option<PeerEntry>),
    /// `<challenge nonce="HEX">`: the answer to `listening`: sign this to be listed.
    Challenge { nonce: [u8; 32] },
    /// `<sample version="V" total="T">`: the answer to `needs sample`: a few of the T
    /// servants listed at version V, chosen at random.
    Sample {
        version: u64,
        total: u64,
        peers: Vec<PeerEntry>,
    },
}

fn write_peer<W: std::io::Write>(w: &mut XmlWriter<W>, p: &PeerEntry) -> std::io::Result<()> {
    w.begin_elem("peer")?;
    w.elem_text("ip", &p.ip)?;
    w.elem_text("port", &p.port.to_string())?;
    w.elem_text("offset", &p.offset.to_string())?;
    w.elem_text("me", if p.me { "TRUE" } else { "FALSE" })?;
    if let Some(name) = &p.name {
        w.elem_text("name", name)?;
    }
    if let Some(id) = &p.id {
        w.elem_text("id", id)?;
    }
    if let Some(key) = &p.key {
        w.elem_text("key", key)?;
    }
    if let Some(relay) = p.relay {
        w.elem_text("relay", &relay.to_string())?;
    }
    w.end_elem()
}

fn new_writer(buf: &mut Vec<u8>) -> XmlWriter<'static, &mut Vec<u8>> {
    let mut w = XmlWriter::new(buf);
    w.pretty = false;
    w
}

/// Writes one `<peer>` element (the manager caches these per servant).
pub fn peer_xml(p: &PeerEntry) -> String {
    let mut buf = Vec::with_capacity(160);
    let mut w = new_writer(&mut buf);
    write_peer(&mut w, p).expect("writing to a Vec cannot fail");
    drop(w);
    String::from_utf8(buf).expect("xml_writer writes UTF-8")
}

/// The opening tag of a `<peers>` document; the caller appends `<peer>` elements and
/// `</peers>`. Split out so the manager can assemble a list from cached `<peer>` parts.
pub fn peers_open_tag(version: u64, epoch: &str, timeout_ms: u64) -> String {
    format!("<peers version=\"{version}\" epoch=\"{epoch}\" timeout=\"{timeout_ms}\">")
}

impl ManagerMessage {
    /// The message as one line of XML, without its line end.
    pub fn to_line(&self) -> String {
        let mut buf = Vec::with_capacity(256);
        let mut w = new_writer(&mut buf);
        let res: std::io::Result<()> = (|| {
            match self {
                ManagerMessage::Peers(list) => {
                    w.begin_elem("peers")?;
                    w.attr("version", &list.version.to_string())?;
                    w.attr_esc("epoch", &list.epoch)?;
                    w.attr("timeout", &list.timeout_ms.to_string())?;
                    for p in &list.peers {
                        write_peer(&mut w, p)?;
                    }
                    if list.peers.is_empty() {
                        w.text("")?;
                    }
                    w.end_elem()?;
                }
                ManagerMessage::Unchanged { version } => {
                    w.begin_elem("unchanged")?;
                    w.attr("version", &version.to_string())?;
                    w.text("")?;
                    w.end_elem()?;
                }
                ManagerMessage::Join { version, peers }
                | ManagerMessage::Leave { version, peers } => {
                    let tag = if matches!(self, ManagerMessage::Join { .. }) {
                        "join"
                    } else {
                        "leave"
                    };
                    w.begin_elem(tag)?;
                    w.attr("version", &version.to_string())?;
                    for p in peers {
                        write_peer(&mut w, p)?;
                    }
                    w.end_elem()?;
                }
                ManagerMessage::Error(text) => w.elem_text("error", text)?,
                ManagerMessage::Challenge { nonce } => {
                    w.begin_elem("challenge")?;
                    w.attr("nonce", &hex(nonce))?;
                    w.text("")?;
                    w.end_elem()?;
                }
                ManagerMessage::Sample {
                    version,
                    total,
                    peers,
                } => {
                    w.begin_elem("sample")?;
                    w.attr("version", &version.to_string())?;
                    w.attr("total", &total.to_string())?;
                    for p in peers {
                        write_peer(&mut w, p)?;
                    }
                    if peers.is_empty() {
                        w.text("")?;
                    }
                    w.end_elem()?;
                }
                ManagerMessage::Pull(relay) => {
                    w.begin_elem("pull")?;
                    match relay {
                        Some(p) => write_peer(&mut w, p)?,
                        None => w.text("")?,
                    }
                    w.end_elem()?;
                }
            }
            Ok(())
        })();
        res.expect("writing to a Vec cannot fail");
        drop(w);
        String::from_utf8(buf).expect("xml_writer writes UTF-8")
    }

    pub fn parse(line: &str) -> Result<ManagerMessage, ProtocolError> {
        let doc = match Document::parse(line) {
            Ok(d) => d,
            Err(e) => return err(format!("not an XML document: {e}")),
        };
        let root = doc.root_element();
        let version = || -> Result<u64, ProtocolError> {
            match root.attribute("version") {
                Some(v) => canonical(v).ok_or_else(|| {
                    ProtocolError(format!("<{}>: bad version {v:?}", root.tag_name().name()))
                }),
                None => Ok(0),
            }
        };
        match root.tag_name().name() {
            "peers" => {
                let timeout_ms = match root.attribute("timeout") {
                    Some(t) => canonical(t)
                        .ok_or_else(|| ProtocolError(format!("<peers>: bad timeout {t:?}")))?,
                    None => 0,
                };
                Ok(ManagerMessage::Peers(PeerList {
                    version: version()?,
                    epoch: root.attribute("epoch").unwrap_or("").to_owned(),
                    timeout_ms,
                    peers: parse_peers(root)?,
                }))
            }
            "unchanged" => Ok(ManagerMessage::Unchanged {
                version: version()?,
            }),
            "join" => Ok(ManagerMessage::Join {
                version: version()?,
                peers: parse_peers(root)?,
            }),
            "leave" => Ok(ManagerMessage::Leave {
                version: version()?,
                peers: parse_peers(root)?,
            }),
            "error" => Ok(ManagerMessage::Error(root.text().unwrap_or("").to_owned())),
            "pull" => Ok(ManagerMessage::Pull(parse_peers(root)?.into_iter().next())),
            "sample" => Ok(ManagerMessage::Sample {
                version: version()?,
                total: match root.attribute("total") {
                    Some(t) => canonical(t)
                        .ok_or_else(|| ProtocolError(format!("<sample>: bad total {t:?}")))?,
                    None => 0,
                },
                peers: parse_peers(root)?,
            }),
            "challenge" => Ok(ManagerMessage::Challenge {
                nonce: hex_field("<challenge>: nonce", root.attribute("nonce").unwrap_or(""))?,
            }),
            other => err(format!("unknown document <{other}>")),
        }
    }
}

/// A number in a document, in its one spelling (see `encoding`) and within `T`'s range.
fn canonical<T: TryFrom<u64>>(s: &str) -> Option<T> {
    crate::encoding::parse_u64(s)
        .ok()
        .and_then(|v| T::try_from(v).ok())
}

fn child_text<'a>(peer: Node<'a, 'a>, name: &str) -> Option<&'a str> {
    peer.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
        .map(|c| c.text().unwrap_or("").trim())
}

fn parse_peers(root: Node) -> Result<Vec<PeerEntry>, ProtocolError> {
    let mut out = Vec::new();
    for (i, peer) in root
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "peer")
        .enumerate()
    {
        let n = i + 1;
        let need = |name: &str| {
            child_text(peer, name)
                .ok_or_else(|| ProtocolError(format!("<peer> number {n}: missing <{name}>")))
        };
        let ip = need("ip")?.to_owned();
        if ip.parse::<std::net::IpAddr>().is_err() {
            let shown: String = ip.chars().take(40).collect();
            return err(format!(
                "<peer> number {n}: <ip> {:?} is not an IP address",
                crate::escape::Shown(&shown)
            ));
        }
        let port = need("port")?;
        let port = canonical::<u16>(port)
            .ok_or_else(|| ProtocolError(format!("<peer> number {n}: bad <port> {port:?}")))?;
        let offset = need("offset")?;
        let offset = canonical::<u32>(offset)
            .ok_or_else(|| ProtocolError(format!("<peer> number {n}: bad <offset> {offset:?}")))?;
        let me = child_text(peer, "me").is_some_and(|m| m.eq_ignore_ascii_case("TRUE"));
        let field = |what: &str| child_text(peer, what).filter(|s| !s.is_empty());
        let bad = |e: ProtocolError| ProtocolError(format!("<peer> number {n}: {e}"));
        let name = field("name").map(str::to_owned);
        if let Some(name) = &name {
            check_token("<name>", name).map_err(bad)?;
        }
        let id = field("id").map(str::to_owned);
        if let Some(id) = &id {
            check_id("<id>", id).map_err(bad)?;
        }
        let key = field("key").map(str::to_owned);
        if let Some(key) = &key {
            hex_field::<32>("<key>", key).map_err(bad)?;
        }
        let relay =
            match child_text(peer, "relay") {
                None | Some("") => None,
                Some(r) => Some(canonical::<u32>(r).ok_or_else(|| {
                    ProtocolError(format!("<peer> number {n}: bad <relay> {r:?}"))
                })?),
            };
        out.push(PeerEntry {
            ip,
            port,
            offset,
            me,
            name,
            id,
            key,
            relay,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
