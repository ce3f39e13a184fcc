//! Servant ↔ servant: the handshake that proves both ends' keys, the signed chat line,
//! and the relay's catch-up lines (docs/PROTOCOL.md, section 4).
//!
//! ```text
//! HELLO 2 ID NAME INC KEY EPH        the opener: who it is, this run, an ephemeral key
//! WELCOME ID KEY EPH SIG [NET]       the listener: who it is, signed over both
//! PROOF SIG [NET]                    the opener, signed over both
//! READY LAST                         the listener: the last number it showed from ID
//! TAG MSG ORIGIN INC SEQ NAME SIG TEXT
//! ```
//!
//! `MSG` carries its author's signature over everything a reader is shown or counts
//! (id, run, number, name, text), so any servant can check it whichever way it came. On
//! the sending connection of its own author a line is also prefixed by a tag made with
//! the connection's secret (see `handshake`), which is what the receiver checks there:
//! a keyed hash is a thousand times cheaper than a signature check.
//!
//! Numbers are in their one decimal spelling, keys, signatures and tags in lowercase hex
//! (see `encoding`); fields are separated by one space, and TEXT is the rest of the line.

use super::{check_id, check_token, err, hex_field, number, ProtocolError, TEXT_LIMIT};
use crate::batch::{Node, MAX_DEPTH};
use crate::encoding::{hex, push_hex};

/// The protocol version spoken in `HELLO` and `PULL`.
pub const PEER_PROTOCOL_VERSION: u32 = 2;

/// What a chat line's signature covers starts with this, so that no other signed text
/// (a handshake, a registration) can be taken for a chat line.
pub const MSG_SIGNED_PREFIX: &[u8] = b"genp2p-msg-2 ";

/// Hex digits of a link tag, and the tag with its space.
pub const TAG_HEX: usize = 32;

/// The opening line of a connection: `HELLO` (a sending connection) or `PULL` (a relay
/// connection); the fields are the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub id: String,
    pub name: String,
    /// The opener's run (see `identity`).
    pub incarnation: u64,
    /// The opener's public key (its fingerprint must be `id`).
    pub key: [u8; 32],
    /// A fresh X25519 public key for this connection only.
    pub eph: [u8; 32],
}

/// `WELCOME ID KEY EPH SIG [NET]`: the listener's half of the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub id: String,
    pub key: [u8; 32],
    pub eph: [u8; 32],
    pub sig: [u8; 64],
    /// Proof of the network key, when the network has one.
    pub net: Option<[u8; 16]>,
}

/// `PROOF SIG [NET]`: the opener's signature over the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub sig: [u8; 64],
    pub net: Option<[u8; 16]>,
}

/// A line on a connection between servants (or from a telnet user to a servant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerLine {
    Hello(Hello),
    Pull(Hello),
    /// `LINK ... PORT`: a neighbour link of the overlay, carrying lines both ways (4.10);
    /// PORT is where the opener listens for links (0: it cannot be reached).
    Link(Hello, u16),
    Welcome(Welcome),
    Proof(Proof),
    /// `READY LAST`: the handshake is done; the listener has shown messages up to LAST
    /// (0: none) from the opener's current run, so the opener resends only the rest.
    Ready {
        last: u64,
    },
    /// `MSG ORIGIN INC SEQ NAME SIG TEXT`: a chat message.
    Msg(ChatMessage),
    /// `PING`: keeps an idle connection known to be alive.
    Ping,
    /// `SEEN ORIGIN INC SEQ`: after `PULL`, one per writer: the last message shown from it.
    Seen {
        origin: String,
        incarnation: u64,
        seq: u64,
    },
    /// `SINCE MS`: after `PULL`: for writers not named in a `SEEN` line, send only what
    /// arrived in the last MS milliseconds.
    Since {
        ms: u64,
    },
    /// `END`: the end of the `SEEN` and `SINCE` lines.
    End,
    /// `SAID INC SEQ`: from a listener to the sender connected to it, tagged: the last
    /// line the listener's servant has written itself (run INC, number SEQ), so a relayed
    /// servant can tell whether its relay passes on what others say.
    Said {
        incarnation: u64,
        seq: u64,
    },
}

/// A chat message as it travels between servants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub origin: String,
    pub incarnation: u64,
    pub seq: u64,
    pub name: String,
    /// The author's signature: of this line, or of the root of `batch`'s tree.
    pub sig: [u8; 64],
    pub batch: Option<Batch>,
    pub text: String,
}

/// Where a line signed with others sits in their tree (see `batch`): `SIG/INDEX/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub index: u64,
    /// Sibling hashes from the leaf up: 1 to `MAX_DEPTH` of them.
    pub path: Vec<Node>,
}

/// `Batch`, borrowed from a line without allocating: the path in a fixed array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRef {
    pub index: u64,
    depth: u8,
    nodes: [Node; MAX_DEPTH],
}

impl BatchRef {
    pub fn path(&self) -> &[Node] {
        &self.nodes[..self.depth as usize]
    }
}

impl ChatMessage {
    /// What the author signs, in parts: the prefix, `ORIGIN INC SEQ NAME `, `TEXT`
    /// (`head` is the middle part, from [`msg_head`]).
    pub fn signed_parts<'a>(head: &'a str, text: &'a str) -> [&'a [u8]; 3] {
        [MSG_SIGNED_PREFIX, head.as_bytes(), text.as_bytes()]
    }

    /// What the author signs: the prefix, then `ORIGIN INC SEQ NAME TEXT`.
    pub fn signed_bytes(
        origin: &str,
        incarnation: u64,
        seq: u64,
        name: &str,
        text: &str,
    ) -> Vec<u8> {
        let mut m = Vec::with_capacity(MSG_SIGNED_PREFIX.len() + 64 + name.len() + text.len());
        m.extend_from_slice(MSG_SIGNED_PREFIX);
        m.extend_from_slice(msg_head(origin, incarnation, seq, name).as_bytes());
        m.extend_from_slice(text.as_bytes());
        m
    }
}

/// `ORIGIN INC SEQ NAME ` (with its last space): the signed part of a line before TEXT.
pub fn msg_head(origin: &str, incarnation: u64, seq: u64, name: &str) -> String {
    let (inc, seq) = (incarnation.to_string(), seq.to_string());
    [origin, " ", &inc, " ", &seq, " ", name, " "].concat()
}

/// The `MSG` line (with its `\n`) for a message and its signature (of the line alone,
/// or of the root of its batch).
pub fn msg_line(
    origin: &str,
    incarnation: u64,
    seq: u64,
    name: &str,
    sig: &[u8; 64],
    batch: Option<(u64, &[Node])>,
    text: &str,
) -> String {
    let head = msg_head(origin, incarnation, seq, name);
    let mut line = String::with_capacity(4 + head.len() + 129 + 200 + text.len() + 1);
    line.push_str("MSG ");
    line.push_str(&head);
    push_hex(&mut line, sig);
    if let Some((index, path)) = batch {
        line.push('/');
        line.push_str(&index.to_string());
        line.push('/');
        for n in path {
            push_hex(&mut line, n);
        }
    }
    line.push(' ');
    line.push_str(text);
    line.push('\n');
    line
}

/// A `MSG` line's parts, borrowed from the line: what a receiver needs for each message,
/// without copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgRef<'a> {
    pub origin: &'a str,
    pub incarnation: u64,
    pub seq: u64,
    pub name: &'a str,
    /// The `SIG` field as it stands: read only when the signature is checked (see
    /// [`MsgRef::auth`]), since on its author's own connection a line's tag suffices.
    pub auth_field: &'a str,
    pub text: &'a str,
    /// `ORIGIN INC SEQ NAME ` as it stands in the line (signed with `text`).
    head: &'a str,
}

impl<'a> MsgRef<'a> {
    /// `Some` when `line` is a `MSG` line (valid or not), `None` for any other line.
    pub fn parse(line: &'a str) -> Option<Result<MsgRef<'a>, ProtocolError>> {
        line.strip_prefix("MSG ").map(parse_msg)
    }

    /// The signature, and where the line sits in its batch if it was signed with others.
    pub fn auth(&self) -> Result<([u8; 64], Option<BatchRef>), ProtocolError> {
        parse_auth(self.auth_field)
    }

    /// The three parts of what the author signed (see [`ChatMessage::signed_bytes`]).
    pub fn signed_parts(&self) -> [&'a [u8]; 3] {
        [
            MSG_SIGNED_PREFIX,
            self.head.as_bytes(),
            self.text.as_bytes(),
        ]
    }

    /// The message, its `SIG` field read.
    pub fn to_owned(self) -> Result<ChatMessage, ProtocolError> {
        let (sig, batch) = self.auth()?;
        Ok(ChatMessage {
            origin: self.origin.to_owned(),
            incarnation: self.incarnation,
            seq: self.seq,
            name: self.name.to_owned(),
            sig,
            batch: batch.map(|b| Batch {
                index: b.index,
                path: b.path().to_vec(),
            }),
            text: self.text.to_owned(),
        })
    }
}

/// Splits a tagged line `TAG LINE` into its tag and the line; `None` when it does not
/// start with 32 lowercase hex digits and a space.
pub fn split_tag(line: &str) -> Option<([u8; 16], &str)> {
    let tag = line.get(..TAG_HEX)?;
    let rest = line[TAG_HEX..].strip_prefix(' ')?;
    Some((crate::encoding::parse_hex(tag).ok()?, rest))
}

impl PeerLine {
    /// Parses a line from a peer; `None` when it is not a protocol line at all (plain text
    /// typed by a person, which a servant shows as chat from the connection's address).
    pub fn parse(line: &str) -> Option<Result<PeerLine, ProtocolError>> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some(match word {
            "HELLO" => parse_hello("HELLO", rest).map(PeerLine::Hello),
            "PULL" => parse_hello("PULL", rest).map(PeerLine::Pull),
            "LINK" => parse_link(rest),
            "WELCOME" => parse_welcome(rest),
            "PROOF" => parse_proof(rest),
            "READY" => number("READY: LAST", rest).map(|last| PeerLine::Ready { last }),
            "MSG" => parse_msg(rest)
                .and_then(MsgRef::to_owned)
                .map(PeerLine::Msg),
            "PING" if rest.is_empty() => Ok(PeerLine::Ping),
            "END" if rest.is_empty() => Ok(PeerLine::End),
            "SEEN" => parse_seen(rest),
            "SINCE" => number("SINCE", rest).map(|ms| PeerLine::Since { ms }),
            "SAID" => parse_said(rest),
            _ => return None,
        })
    }

    /// The line, with its `\n`.
    pub fn to_line(&self) -> String {
        let hello = |word: &str, h: &Hello| {
            format!(
                "{word} {PEER_PROTOCOL_VERSION} {} {} {} {} {}\n",
                h.id,
                h.name,
                h.incarnation,
                hex(&h.key),
                hex(&h.eph)
            )
        };
        let net = |n: &Option<[u8; 16]>| n.map_or(String::new(), |n| format!(" {}", hex(&n)));
        match self {
            PeerLine::Hello(h) => hello("HELLO", h),
            PeerLine::Pull(h) => hello("PULL", h),
            PeerLine::Link(h, port) => {
                let mut line = hello("LINK", h);
                line.pop();
                format!("{line} {port}\n")
            }
            PeerLine::Welcome(w) => format!(
                "WELCOME {} {} {} {}{}\n",
                w.id,
                hex(&w.key),
                hex(&w.eph),
                hex(&w.sig),
                net(&w.net)
            ),
            PeerLine::Proof(p) => format!("PROOF {}{}\n", hex(&p.sig), net(&p.net)),
            PeerLine::Ready { last } => format!("READY {last}\n"),
            PeerLine::Msg(m) => msg_line(
                &m.origin,
                m.incarnation,
                m.seq,
                &m.name,
                &m.sig,
                m.batch.as_ref().map(|b| (b.index, b.path.as_slice())),
                &m.text,
            ),
            PeerLine::Ping => "PING\n".to_owned(),
            PeerLine::Said { incarnation, seq } => format!("SAID {incarnation} {seq}\n"),
            PeerLine::Seen {
                origin,
                incarnation,
                seq,
            } => format!("SEEN {origin} {incarnation} {seq}\n"),
            PeerLine::Since { ms } => format!("SINCE {ms}\n"),
            PeerLine::End => "END\n".to_owned(),
        }
    }
}

/// Exactly `n` fields separated by single spaces; `usage` names them in the error.
fn fields<'a, const N: usize>(rest: &'a str, usage: &str) -> Result<[&'a str; N], ProtocolError> {
    let mut out = [""; N];
    let mut words = rest.split(' ');
    for slot in out.iter_mut() {
        match words.next() {
            Some(w) => *slot = w,
            None => return err(format!("expected '{usage}'")),
        }
    }
    if words.next().is_some() {
        return err(format!("expected '{usage}'"));
    }
    Ok(out)
}

fn parse_hello(word: &str, rest: &str) -> Result<Hello, ProtocolError> {
    let usage = format!("{word} {PEER_PROTOCOL_VERSION} ID NAME INC KEY EPH");
    if let Some((version, _)) = rest.split_once(' ') {
        if version != PEER_PROTOCOL_VERSION.to_string() {
            let shown: String = version.chars().take(12).collect();
            return err(format!(
                "{word}: protocol version {:?} is not spoken here (this servant speaks {PEER_PROTOCOL_VERSION})",
                crate::escape::Shown(&shown)
            ));
        }
    }
    let [_, id, name, inc, key, eph] =
        fields::<6>(rest, &usage).map_err(|e| ProtocolError(format!("{word}: {e}")))?;
    let what = |f: &str| format!("{word}: {f}");
    check_id(&what("id"), id)?;
    check_token(&what("name"), name)?;
    Ok(Hello {
        id: id.to_owned(),
        name: name.to_owned(),
        incarnation: number(&what("incarnation"), inc)?,
        key: hex_field(&what("key"), key)?,
        eph: hex_field(&what("ephemeral key"), eph)?,
    })
}

/// `LINK 2 ID NAME INC KEY EPH PORT`: a `HELLO` and the opener's listening port.
fn parse_link(rest: &str) -> Result<PeerLine, ProtocolError> {
    let usage = format!("LINK {PEER_PROTOCOL_VERSION} ID NAME INC KEY EPH PORT");
    let Some((hello, port)) = rest.rsplit_once(' ') else {
        return err(format!("LINK: expected '{usage}'"));
    };
    if hello.split(' ').count() != 6 {
        return err(format!("LINK: expected '{usage}'"));
    }
    let port = number("LINK: port", port)?;
    let Ok(port) = u16::try_from(port) else {
        return err(format!("LINK: port {port} is not a TCP port"));
    };
    Ok(PeerLine::Link(parse_hello("LINK", hello)?, port))
}

/// The optional last field: a network key's proof.
fn net_field(what: &str, n: Option<&str>) -> Result<Option<[u8; 16]>, ProtocolError> {
    n.map(|n| hex_field(what, n)).transpose()
}

fn parse_welcome(rest: &str) -> Result<PeerLine, ProtocolError> {
    let w: Vec<&str> = rest.splitn(6, ' ').collect();
    if !(4..=5).contains(&w.len()) {
        return err("WELCOME: expected 'WELCOME ID KEY EPH SIG [NET]'");
    }
    check_id("WELCOME: id", w[0])?;
    Ok(PeerLine::Welcome(Welcome {
        id: w[0].to_owned(),
        key: hex_field("WELCOME: key", w[1])?,
        eph: hex_field("WELCOME: ephemeral key", w[2])?,
        sig: hex_field("WELCOME: signature", w[3])?,
        net: net_field("WELCOME: network proof", w.get(4).copied())?,
    }))
}

fn parse_proof(rest: &str) -> Result<PeerLine, ProtocolError> {
    let w: Vec<&str> = rest.splitn(3, ' ').collect();
    if !(1..=2).contains(&w.len()) {
        return err("PROOF: expected 'PROOF SIG [NET]'");
    }
    Ok(PeerLine::Proof(Proof {
        sig: hex_field("PROOF: signature", w[0])?,
        net: net_field("PROOF: network proof", w.get(1).copied())?,
    }))
}

fn parse_said(rest: &str) -> Result<PeerLine, ProtocolError> {
    let [inc, seq] =
        fields::<2>(rest, "SAID INC SEQ").map_err(|e| ProtocolError(format!("SAID: {e}")))?;
    Ok(PeerLine::Said {
        incarnation: number("SAID: incarnation", inc)?,
        seq: number("SAID: sequence number", seq)?,
    })
}

fn parse_seen(rest: &str) -> Result<PeerLine, ProtocolError> {
    let [origin, inc, seq] = fields::<3>(rest, "SEEN ORIGIN INC SEQ")
        .map_err(|e| ProtocolError(format!("SEEN: {e}")))?;
    check_id("SEEN: origin", origin)?;
    Ok(PeerLine::Seen {
        origin: origin.to_owned(),
        incarnation: number("SEEN: incarnation", inc)?,
        seq: number("SEEN: sequence number", seq)?,
    })
}

/// Splits off the first `n` space-separated fields of `s` and what follows them (by
/// bytes: a space is one byte in UTF-8, and this runs for every chat line received).
fn split_fields(s: &str, n: usize) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    let mut taken = 0;
    std::iter::from_fn(move || {
        let r = rest?;
        if taken == n {
            rest = None;
            return Some(r);
        }
        taken += 1;
        match memchr::memchr(b' ', r.as_bytes()) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fn parse_msg(rest: &str) -> Result<MsgRef<'_>, ProtocolError> {
    let mut w = split_fields(rest, 5);
    let (Some(origin), Some(inc), Some(seq_field), Some(name), Some(auth_field)) =
        (w.next(), w.next(), w.next(), w.next(), w.next())
    else {
        return err("MSG: expected 'MSG ORIGIN INC SEQ NAME SIG TEXT'");
    };
    let Some(text) = w.next() else {
        return err("MSG: no space after the signature (TEXT, even empty, follows one)");
    };
    check_id("MSG: origin", origin)?;
    check_token("MSG: name", name)?;
    let incarnation = number("MSG: incarnation", inc)?;
    let seq = match number("MSG: sequence number", seq_field)? {
        0 => return err("MSG: sequence number 0 (numbers start at 1)"),
        s => s,
    };
    if auth_field.is_empty() {
        return err("MSG: empty signature");
    }
    if text.len() > TEXT_LIMIT {
        return err(format!("MSG: text longer than {TEXT_LIMIT} bytes"));
    }
    // `ORIGIN INC SEQ NAME `: four fields and their spaces.
    let head_len = origin.len() + inc.len() + seq_field.len() + name.len() + 4;
    Ok(MsgRef {
        origin,
        incarnation,
        seq,
        name,
        auth_field,
        text,
        head: &rest[..head_len],
    })
}

/// `SIG` (128 hex digits) or `SIG/INDEX/PATH` (a line signed with others: its leaf
/// index, and 1 to `MAX_DEPTH` sibling hashes of 32 hex digits each).
fn parse_auth(field: &str) -> Result<([u8; 64], Option<BatchRef>), ProtocolError> {
    let Some((sig, rest)) = field.split_once('/') else {
        return Ok((hex_field("MSG: signature", field)?, None));
    };
    let sig = hex_field("MSG: signature", sig)?;
    let Some((index, path)) = rest.split_once('/') else {
        return err("MSG: a batch signature is 'SIG/INDEX/PATH'");
    };
    let index = number("MSG: batch index", index)?;
    let depth = path.len() / 32;
    if path.len() % 32 != 0 || !(1..=MAX_DEPTH).contains(&depth) {
        return err(format!(
            "MSG: a batch path is 1 to {MAX_DEPTH} hashes of 32 hex digits"
        ));
    }
    if index >> depth != 0 {
        return err(format!(
            "MSG: batch index {index} does not fit a tree of depth {depth}"
        ));
    }
    let mut nodes = [[0u8; 16]; MAX_DEPTH];
    for (i, n) in nodes.iter_mut().take(depth).enumerate() {
        *n = hex_field("MSG: batch path", &path[32 * i..32 * (i + 1)])?;
    }
    Ok((
        sig,
        Some(BatchRef {
            index,
            depth: depth as u8,
            nodes,
        }),
    ))
}

#[cfg(test)]
mod tests;
