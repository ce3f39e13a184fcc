//! The words genp2p programs say to each other: commands to the connection manager, the
//! peer document it answers with, and the chat lines servants send one another.
//!
//! The original sent bare strings (`needs peer list`) and MSXML documents over Winsock.
//! We keep the article's literal command and its `<peers>` document, and add only what a
//! real network needs: a version on every list so a servant can tell a fresh list from a
//! stale one, small `<join>`/`<leave>` documents so a change costs bytes in proportion to
//! the change rather than to the whole network, and a sender id with a sequence number on
//! every chat line so a receiver drops duplicates and notices gaps. Every message is one
//! line of UTF-8 (see `lines`), so `telnet` and `nc` remain usable clients.
//!
//! docs/PROTOCOL.md is the specification; this module is its implementation, and the
//! tests at the bottom pin the two together.

use std::fmt;

use roxmltree::{Document, Node};
use xml_writer::XmlWriter;

/// Longest line a connection manager accepts from a client.
pub const MANAGER_LINE_LIMIT: usize = 4 * 1024;
/// Longest line a servant accepts from the manager: a whole peer document of a large network.
pub const PEER_DOC_LINE_LIMIT: usize = 16 * 1024 * 1024;
/// Longest chat text a servant sends, in bytes.
pub const TEXT_LIMIT: usize = 8 * 1024;
/// Longest line a servant accepts from a peer: a chat text and its header.
pub const CHAT_LINE_LIMIT: usize = TEXT_LIMIT + 256;
/// Longest servant name and id, in bytes.
pub const NAME_LIMIT: usize = 32;

/// Why a line could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

/// Names and ids travel inside space-separated lines and XML text, so they are short and
/// hold no white space, no control characters and none of `<>&"'`; nor U+FFFE or U+FFFF,
/// the only characters besides controls that XML 1.0 cannot hold at all: one such name in
/// the manager's `<peers>` would make the whole list unreadable for every servant.
pub fn check_token(what: &str, value: &str) -> Result<(), ProtocolError> {
    if value.is_empty() {
        return err(format!("{what} is empty"));
    }
    if value.len() > NAME_LIMIT {
        return err(format!(
            "{what} {value:?} is longer than {NAME_LIMIT} bytes"
        ));
    }
    // Names and ids are nearly always ASCII: check bytes, and fall back to characters
    // only when there is something else.
    let plain = |b: &u8| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'&' | b'"' | b'\'');
    if value.bytes().all(|b| plain(&b)) {
        return Ok(());
    }
    if let Some(c) = value.chars().find(|&c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '<' | '>' | '&' | '"' | '\'' | '\u{fffe}' | '\u{ffff}')
    }) {
        return err(format!("{what} {value:?} contains {c:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Client to connection manager
// ---------------------------------------------------------------------------------------

/// A line a client sends to the connection manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerCommand {
    /// `needs peer list`: the article's command, answered with the whole `<peers>` document.
    /// `needs peer list since V` is the heartbeat form: answered with `<unchanged>` when the
    /// list is still at version V.
    NeedsPeerList { since: Option<u64> },
    /// `listening PORT [ID [NAME]]`: this client now listens on PORT and may be listed.
    Listening {
        port: u16,
        id: Option<String>,
        name: Option<String>,
    },
    /// `bye`: leaving; the manager drops the client at once.
    Bye,
    /// `complain ID`: this servant could not reach the listed servant with that id.
    Complain { id: String },
}

impl ManagerCommand {
    pub fn parse(line: &str) -> Result<ManagerCommand, ProtocolError> {
        let line = line.trim();
        if line == "needs peer list" {
            return Ok(ManagerCommand::NeedsPeerList { since: None });
        }
        if let Some(rest) = line.strip_prefix("needs peer list since ") {
            return match rest.trim().parse::<u64>() {
                Ok(v) => Ok(ManagerCommand::NeedsPeerList { since: Some(v) }),
                Err(_) => err(format!("bad version {rest:?} in 'needs peer list since'")),
            };
        }
        if line == "bye" {
            return Ok(ManagerCommand::Bye);
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("complain") => match (words.next(), words.next()) {
                (Some(id), None) => {
                    check_token("complain: id", id)?;
                    Ok(ManagerCommand::Complain { id: id.to_owned() })
                }
                _ => err("complain: expected 'complain ID'"),
            },
            Some("listening") => {
                let port = match words.next().map(str::parse::<u16>) {
                    Some(Ok(p)) if p != 0 => p,
                    Some(_) => return err("listening: port must be a number from 1 to 65535"),
                    None => return err("listening: missing port"),
                };
                let id = words.next().map(str::to_owned);
                let name = words.next().map(str::to_owned);
                if words.next().is_some() {
                    return err("listening: too many words (listening PORT [ID [NAME]])");
                }
                if let Some(id) = &id {
                    check_token("listening: id", id)?;
                }
                if let Some(name) = &name {
                    check_token("listening: name", name)?;
                }
                Ok(ManagerCommand::Listening { port, id, name })
            }
            Some(_) => {
                let shown: String = line.chars().take(40).collect();
                err(format!("unknown command {shown:?}"))
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
            ManagerCommand::Listening { port, id, name } => {
                let mut s = format!("listening {port}");
                if let Some(id) = id {
                    s.push(' ');
                    s.push_str(id);
                    if let Some(name) = name {
                        s.push(' ');
                        s.push_str(name);
                    }
                }
                s
            }
            ManagerCommand::Bye => "bye".to_owned(),
            ManagerCommand::Complain { id } => format!("complain {id}"),
        }
    }
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
    /// The servant's id (random per run), if it gave one; the key a servant files peers by.
    pub id: Option<String>,
    /// Set when this servant cannot be reached (behind a firewall): the offset of the peer
    /// that relays to it. Others must not connect to it; it pulls from its relay.
    pub relay: Option<u32>,
}

impl PeerEntry {
    /// The key a servant files this peer under: its id, or its address for a client that
    /// gave none.
    pub fn key(&self) -> String {
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
                Some(v) => v.parse().map_err(|_| {
                    ProtocolError(format!("<{}>: bad version {v:?}", root.tag_name().name()))
                }),
                None => Ok(0),
            }
        };
        match root.tag_name().name() {
            "peers" => {
                let timeout_ms = match root.attribute("timeout") {
                    Some(t) => t
                        .parse()
                        .map_err(|_| ProtocolError(format!("<peers>: bad timeout {t:?}")))?,
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
            other => err(format!("unknown document <{other}>")),
        }
    }
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
        let port = need("port")?;
        let port = port
            .parse::<u16>()
            .map_err(|_| ProtocolError(format!("<peer> number {n}: bad <port> {port:?}")))?;
        let offset = need("offset")?;
        let offset = offset
            .parse::<u32>()
            .map_err(|_| ProtocolError(format!("<peer> number {n}: bad <offset> {offset:?}")))?;
        let me = child_text(peer, "me").is_some_and(|m| m.eq_ignore_ascii_case("TRUE"));
        let name = child_text(peer, "name")
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let id = child_text(peer, "id")
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let relay = match child_text(peer, "relay") {
            None | Some("") => None,
            Some(r) => Some(
                r.parse::<u32>()
                    .map_err(|_| ProtocolError(format!("<peer> number {n}: bad <relay> {r:?}")))?,
            ),
        };
        out.push(PeerEntry {
            ip,
            port,
            offset,
            me,
            name,
            id,
            relay,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Servant to servant
// ---------------------------------------------------------------------------------------

/// A line on a connection between servants (or from a telnet user to a servant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerLine {
    /// `HELLO 1 ID NAME`: the first line of a servant's sending connection.
    Hello { id: String, name: String },
    /// `WELCOME ID LAST`: the receiver's answer: its id, and the last sequence number it
    /// has shown from the sender (0 for none), so the sender resends only what is missing.
    Welcome { id: String, last_seq: u64 },
    /// `MSG ORIGIN SEQ NAME TEXT`: a chat message: the id and name of the servant that
    /// wrote it, its sequence number at that servant (1, 2, …), and the text as typed.
    Msg(ChatMessage),
    /// `PING`: keeps an idle connection known to be alive.
    Ping,
    /// `PULL 1 ID NAME`: the first line of a firewalled servant's connection to its relay:
    /// send me every message you receive or write, for as long as this connection lasts.
    Pull { id: String, name: String },
    /// `SEEN ORIGIN SEQ`: after `PULL`, one per writer: the last message shown from it, so
    /// the relay first sends what was missed (writers not named are not caught up).
    Seen { origin: String, seq: u64 },
    /// `SINCE MS`: after `PULL`: for writers not named in a `SEEN` line, send only what
    /// arrived in the last MS milliseconds (the time the puller has been on the network),
    /// so a newcomer is not shown what was said before it came.
    Since { ms: u64 },
    /// `END`: the end of the `SEEN` and `SINCE` lines.
    End,
}

/// A chat message as it travels between servants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub origin: String,
    pub seq: u64,
    pub name: String,
    pub text: String,
}

/// A `MSG` line's parts, borrowed from the line: what a receiver needs for each message,
/// without copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgRef<'a> {
    pub origin: &'a str,
    pub seq: u64,
    pub name: &'a str,
    pub text: &'a str,
}

impl MsgRef<'_> {
    /// `Some` when `line` is a `MSG` line (valid or not), `None` for any other line.
    pub fn parse(line: &str) -> Option<Result<MsgRef<'_>, ProtocolError>> {
        line.strip_prefix("MSG ").map(parse_msg)
    }

    pub fn to_owned(self) -> ChatMessage {
        ChatMessage {
            origin: self.origin.to_owned(),
            seq: self.seq,
            name: self.name.to_owned(),
            text: self.text.to_owned(),
        }
    }
}

/// The protocol version spoken in `HELLO`.
pub const PEER_PROTOCOL_VERSION: u32 = 1;

impl PeerLine {
    /// Parses a line from a peer; `None` when it is not a protocol line at all (plain text
    /// typed by a person, which a servant shows as chat from the connection's address).
    pub fn parse(line: &str) -> Option<Result<PeerLine, ProtocolError>> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some(match word {
            "HELLO" => parse_hello(rest),
            "WELCOME" => parse_welcome(rest),
            "MSG" => parse_msg(rest).map(|m| PeerLine::Msg(m.to_owned())),
            "PING" if rest.is_empty() => Ok(PeerLine::Ping),
            "END" if rest.is_empty() => Ok(PeerLine::End),
            "PULL" => parse_hello(rest)
                .map(|hello| match hello {
                    PeerLine::Hello { id, name } => PeerLine::Pull { id, name },
                    other => other,
                })
                .map_err(|e| ProtocolError(e.0.replace("HELLO", "PULL"))),
            "SEEN" => parse_seen(rest),
            "SINCE" => rest
                .parse()
                .map(|ms| PeerLine::Since { ms })
                .map_err(|_| ProtocolError(format!("SINCE: bad number {rest:?}"))),
            _ => return None,
        })
    }

    /// The line, with its `\n`.
    pub fn to_line(&self) -> String {
        match self {
            PeerLine::Hello { id, name } => format!("HELLO {PEER_PROTOCOL_VERSION} {id} {name}\n"),
            PeerLine::Welcome { id, last_seq } => format!("WELCOME {id} {last_seq}\n"),
            // Written on every message to every peer: built without the formatting machinery.
            PeerLine::Msg(m) => {
                let seq = m.seq.to_string();
                let parts = [
                    "MSG ", &m.origin, " ", &seq, " ", &m.name, " ", &m.text, "\n",
                ];
                parts.concat()
            }
            PeerLine::Ping => "PING\n".to_owned(),
            PeerLine::Pull { id, name } => format!("PULL {PEER_PROTOCOL_VERSION} {id} {name}\n"),
            PeerLine::Seen { origin, seq } => format!("SEEN {origin} {seq}\n"),
            PeerLine::Since { ms } => format!("SINCE {ms}\n"),
            PeerLine::End => "END\n".to_owned(),
        }
    }
}

fn parse_hello(rest: &str) -> Result<PeerLine, ProtocolError> {
    let mut w = rest.split(' ');
    let (Some(version), Some(id), Some(name), None) = (w.next(), w.next(), w.next(), w.next())
    else {
        return err("HELLO: expected 'HELLO 1 ID NAME'");
    };
    if version != PEER_PROTOCOL_VERSION.to_string() {
        return err(format!("HELLO: unsupported protocol version {version:?}"));
    }
    check_token("HELLO: id", id)?;
    check_token("HELLO: name", name)?;
    Ok(PeerLine::Hello {
        id: id.to_owned(),
        name: name.to_owned(),
    })
}

fn parse_welcome(rest: &str) -> Result<PeerLine, ProtocolError> {
    let mut w = rest.split(' ');
    let (Some(id), Some(last), None) = (w.next(), w.next(), w.next()) else {
        return err("WELCOME: expected 'WELCOME ID LAST'");
    };
    check_token("WELCOME: id", id)?;
    let last_seq = last
        .parse()
        .map_err(|_| ProtocolError(format!("WELCOME: bad sequence number {last:?}")))?;
    Ok(PeerLine::Welcome {
        id: id.to_owned(),
        last_seq,
    })
}

fn parse_seen(rest: &str) -> Result<PeerLine, ProtocolError> {
    let mut w = rest.split(' ');
    let (Some(origin), Some(seq), None) = (w.next(), w.next(), w.next()) else {
        return err("SEEN: expected 'SEEN ORIGIN SEQ'");
    };
    check_token("SEEN: origin", origin)?;
    let seq = seq
        .parse()
        .map_err(|_| ProtocolError(format!("SEEN: bad sequence number {seq:?}")))?;
    Ok(PeerLine::Seen {
        origin: origin.to_owned(),
        seq,
    })
}

fn parse_msg(rest: &str) -> Result<MsgRef<'_>, ProtocolError> {
    let mut w = rest.splitn(4, ' ');
    let (Some(origin), Some(seq), Some(name)) = (w.next(), w.next(), w.next()) else {
        return err("MSG: expected 'MSG ORIGIN SEQ NAME TEXT'");
    };
    let text = w.next().unwrap_or("");
    check_token("MSG: origin", origin)?;
    check_token("MSG: name", name)?;
    let seq = match seq.parse::<u64>() {
        Ok(s) if s > 0 => s,
        _ => return err(format!("MSG: bad sequence number {seq:?}")),
    };
    if text.len() > TEXT_LIMIT {
        return err(format!("MSG: text longer than {TEXT_LIMIT} bytes"));
    }
    Ok(MsgRef {
        origin,
        seq,
        name,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u32, me: bool) -> PeerEntry {
        PeerEntry {
            ip: "10.0.0.4".into(),
            port: 2224 + offset as u16,
            offset,
            me,
            name: Some(format!("n{offset}")),
            id: Some(format!("id{offset}")),
            relay: None,
        }
    }

    #[test]
    fn peer_document_keeps_the_articles_shape() {
        let list = PeerList {
            version: 7,
            epoch: "e1".into(),
            timeout_ms: 6000,
            peers: vec![entry(1, false), entry(2, true)],
        };
        let line = ManagerMessage::Peers(list.clone()).to_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with(
            "<peers version=\"7\" epoch=\"e1\" timeout=\"6000\"><peer><ip>10.0.0.4</ip><port>2225</port><offset>1</offset><me>FALSE</me>"
        ));
        let doc = Document::parse(&line).unwrap();
        let me_port = doc
            .descendants()
            .filter(|n| n.has_tag_name("peer"))
            .find(|p| child_text(*p, "me") == Some("TRUE"))
            .and_then(|p| child_text(p, "port"));
        assert_eq!(me_port, Some("2226"));
        assert_eq!(
            ManagerMessage::parse(&line),
            Ok(ManagerMessage::Peers(list))
        );
    }

    #[test]
    fn deltas_round_trip() {
        for m in [
            ManagerMessage::Join {
                version: 3,
                peers: vec![entry(4, false)],
            },
            ManagerMessage::Leave {
                version: 4,
                peers: vec![entry(4, false)],
            },
            ManagerMessage::Unchanged { version: 9 },
            ManagerMessage::Error("unknown command \"x<y\"".into()),
            ManagerMessage::Peers(PeerList::default()),
            ManagerMessage::Pull(Some(PeerEntry {
                relay: Some(3),
                ..entry(5, false)
            })),
            ManagerMessage::Pull(None),
        ] {
            assert_eq!(ManagerMessage::parse(&m.to_line()), Ok(m));
        }
    }

    #[test]
    fn commands_parse_and_print() {
        for (line, cmd) in [
            (
                "needs peer list",
                ManagerCommand::NeedsPeerList { since: None },
            ),
            (
                "needs peer list since 12",
                ManagerCommand::NeedsPeerList { since: Some(12) },
            ),
            ("bye", ManagerCommand::Bye),
            (
                "listening 2230 ab12 alice",
                ManagerCommand::Listening {
                    port: 2230,
                    id: Some("ab12".into()),
                    name: Some("alice".into()),
                },
            ),
            (
                "complain ab12",
                ManagerCommand::Complain { id: "ab12".into() },
            ),
            (
                "listening 9",
                ManagerCommand::Listening {
                    port: 9,
                    id: None,
                    name: None,
                },
            ),
        ] {
            assert_eq!(ManagerCommand::parse(line), Ok(cmd.clone()));
            assert_eq!(cmd.to_line(), line);
        }
        assert_eq!(
            ManagerCommand::parse("needs peer list\r  "),
            Ok(ManagerCommand::NeedsPeerList { since: None })
        );
        assert!(ManagerCommand::parse("listening 0").is_err());
        assert!(ManagerCommand::parse("listening 70000").is_err());
        assert!(ManagerCommand::parse("listening 5 id name extra").is_err());
        assert!(ManagerCommand::parse("listening 5 id <b>").is_err());
        assert!(ManagerCommand::parse("gimme").is_err());
    }

    #[test]
    fn chat_lines_round_trip_and_text_is_kept_exactly() {
        let m = ChatMessage {
            origin: "ab".into(),
            seq: 42,
            name: "bob".into(),
            text: "  two  spaces, <tags> & ünïcödé  ".into(),
        };
        let line = PeerLine::Msg(m.clone()).to_line();
        let parsed = PeerLine::parse(line.trim_end_matches('\n'))
            .unwrap()
            .unwrap();
        assert_eq!(parsed, PeerLine::Msg(m));
        assert_eq!(PeerLine::parse("hello there"), None);
        assert_eq!(
            PeerLine::parse("MSG a 0 b c"),
            Some(Err(ProtocolError("MSG: bad sequence number \"0\"".into())))
        );
        assert_eq!(
            PeerLine::parse("HELLO 1 id1 carol"),
            Some(Ok(PeerLine::Hello {
                id: "id1".into(),
                name: "carol".into()
            }))
        );
        assert!(PeerLine::parse("HELLO 2 id1 carol").unwrap().is_err());
        assert_eq!(
            PeerLine::parse("WELCOME x 5"),
            Some(Ok(PeerLine::Welcome {
                id: "x".into(),
                last_seq: 5
            }))
        );
    }
}
