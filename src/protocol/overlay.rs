//! Servant ↔ servant in the overlay: the messages of `overlay::event::Message` as lines
//! (docs/PROTOCOL.md, section 4.10), for the link a servant keeps with each neighbour.
//!
//! ```text
//! JOIN                                   take me in (HyParView's join)
//! FORWARDJOIN TTL CONTACT                a newcomer, on a random walk of TTL more steps
//! NEIGHBOR HIGH|LOW                      be my neighbour (HIGH: I have none, or lost you)
//! NEIGHBOR-REPLY ACCEPTED|DECLINED
//! DISCONNECT ALIVE|LEAVING               the link is dropped; ALIVE: ask me again later
//! SHUFFLE TTL ORIGIN CONTACT...          a sample of known servants, on a random walk
//! SHUFFLE-REPLY CONTACT...               as many back, to ORIGIN
//! GOSSIP HOPS KEY MSG ORIGIN INC SEQ NAME SIG TEXT   a whole line: its author's key and MSG
//! IHAVE ORIGIN/INC/SEQ/HOPS...           ids of lines the sender has (Plumtree's lazy push)
//! GRAFT ORIGIN/INC/SEQ...                send me these, and whole lines from now on
//! PRUNE                                  only ids from now on
//! SUMMARY MEMBER-FOR ORIGIN/INC/LAST...  on a new link: the last line shown per author
//! ```
//!
//! A CONTACT is `ID@IP:PORT` (`ID@[IPV6]:PORT`): a servant's id and where it listens.
//! The author's `MSG` travels inside `GOSSIP` exactly as it was signed, so a forwarder
//! can pass it on but not alter it, and with its author's public key (whose fingerprint
//! is the author's id), so a servant that has never heard of the author can check it. Every list is held to `overlay::params::bounds`
//! when it is read: a longer one is an error naming the count, never a cut made quietly.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{check_id, err, number, ChatMessage, MsgRef, PeerLine, ProtocolError};
use crate::identity::PeerKey;
use crate::overlay::event::{LineId, Message, Types};
use crate::overlay::params::bounds;

/// Longest overlay line a servant accepts: an `IHAVE` or `SUMMARY` of 256 entries at
/// their longest (about 18 KiB), or a `GOSSIP` around the longest chat line.
pub const OVERLAY_LINE_LIMIT: usize = 24 * 1024;

/// A servant as the overlay knows it: its id and the address it listens on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Contact {
    pub id: String,
    pub addr: SocketAddr,
}

impl Contact {
    fn push(&self, line: &mut String) {
        let _ = write!(line, "{}@{}", self.id, self.addr);
    }

    fn parse(what: &str, field: &str) -> Result<Contact, ProtocolError> {
        let Some((id, addr)) = field.split_once('@') else {
            return err(format!("{what} {:?} is not ID@IP:PORT", shown(field)));
        };
        check_id(what, id)?;
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            return err(format!("{what} {:?}: not an IP:PORT address", shown(addr)));
        };
        Ok(Contact {
            id: id.to_string(),
            addr,
        })
    }
}

/// A chat line as the overlay carries it: signed, with the key that checks it.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The author's key; its fingerprint is `chat.origin` (checked when read).
    pub key: PeerKey,
    pub chat: ChatMessage,
}

/// What the overlay carries between servants: contacts, ids, and signed chat lines.
#[derive(Debug, Clone)]
pub struct Wire;

impl Types for Wire {
    type Peer = Contact;
    type Author = String;
    // Shared: a kept line is sent again on grafts without copying it, and a message
    // stays small in the queues that hold thousands of them.
    type Line = Arc<Signed>;
}

/// An overlay message on the wire.
pub type OverlayMessage = Message<Wire>;

/// The line for a message, with its `\n`.
pub fn to_line(msg: &OverlayMessage) -> String {
    let mut line = String::from(msg_word(msg));
    match msg {
        Message::Join | Message::Prune => {}
        Message::ForwardJoin { peer, ttl } => {
            let _ = write!(line, " {ttl} ");
            peer.push(&mut line);
        }
        Message::Neighbor { high } => push_either(&mut line, PRIORITY, *high),
        Message::NeighborReply { accepted } => push_either(&mut line, ANSWER, *accepted),
        Message::Disconnect { alive } => push_either(&mut line, STAYING, *alive),
        Message::Shuffle { origin, ttl, peers } => {
            let _ = write!(line, " {ttl} ");
            origin.push(&mut line);
            push_contacts(&mut line, peers);
        }
        Message::ShuffleReply { peers } => push_contacts(&mut line, peers),
        Message::Gossip {
            hops, line: signed, ..
        } => {
            let _ = write!(line, " {hops} {} ", signed.key.hex());
            let msg = PeerLine::Msg(signed.chat.clone()).to_line();
            line.push_str(msg.trim_end_matches('\n'));
        }
        Message::IHave(ids) => {
            for (id, hops) in ids {
                let _ = write!(line, " {}/{}/{}/{hops}", id.author, id.incarnation, id.seq);
            }
        }
        Message::Graft(ids) => {
            for id in ids {
                let _ = write!(line, " {}/{}/{}", id.author, id.incarnation, id.seq);
            }
        }
        Message::Summary { member_for, last } => {
            let _ = write!(line, " {member_for}");
            for (author, incarnation, seq) in last {
                let _ = write!(line, " {author}/{incarnation}/{seq}");
            }
        }
    }
    line.push('\n');
    line
}

fn push_contacts(line: &mut String, peers: &[Contact]) {
    for peer in peers {
        line.push(' ');
        peer.push(line);
    }
}

fn msg_word(msg: &OverlayMessage) -> &'static str {
    match msg {
        Message::Join => "JOIN",
        Message::ForwardJoin { .. } => "FORWARDJOIN",
        Message::Neighbor { .. } => "NEIGHBOR",
        Message::NeighborReply { .. } => "NEIGHBOR-REPLY",
        Message::Disconnect { .. } => "DISCONNECT",
        Message::Shuffle { .. } => "SHUFFLE",
        Message::ShuffleReply { .. } => "SHUFFLE-REPLY",
        Message::Gossip { .. } => "GOSSIP",
        Message::IHave(_) => "IHAVE",
        Message::Graft(_) => "GRAFT",
        Message::Prune => "PRUNE",
        Message::Summary { .. } => "SUMMARY",
    }
}

/// Parses an overlay line (without its `\n`); `None` when it is not one.
pub fn parse(line: &str) -> Option<Result<OverlayMessage, ProtocolError>> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let fields = || rest.split(' ').filter(|f| !f.is_empty());
    Some(match word {
        "JOIN" => no_fields("JOIN", rest).map(|()| Message::Join),
        "PRUNE" => no_fields("PRUNE", rest).map(|()| Message::Prune),
        "FORWARDJOIN" => parse_forward_join(rest),
        "NEIGHBOR" => either("NEIGHBOR", PRIORITY, rest).map(|high| Message::Neighbor { high }),
        "NEIGHBOR-REPLY" => either("NEIGHBOR-REPLY", ANSWER, rest)
            .map(|accepted| Message::NeighborReply { accepted }),
        "DISCONNECT" => {
            either("DISCONNECT", STAYING, rest).map(|alive| Message::Disconnect { alive })
        }
        "SHUFFLE" => parse_shuffle(rest),
        "SHUFFLE-REPLY" => {
            contacts("SHUFFLE-REPLY", fields()).map(|peers| Message::ShuffleReply { peers })
        }
        "GOSSIP" => parse_gossip(rest),
        "IHAVE" => listed("IHAVE", fields(), bounds::IDS, |f| {
            let [author, inc, seq, hops] = parts::<4>("IHAVE", f)?;
            Ok((
                line_id("IHAVE", author, inc, seq)?,
                small("IHAVE: HOPS", hops)?,
            ))
        })
        .map(Message::IHave),
        "GRAFT" => listed("GRAFT", fields(), bounds::IDS, |f| {
            let [author, inc, seq] = parts::<3>("GRAFT", f)?;
            line_id("GRAFT", author, inc, seq)
        })
        .map(Message::Graft),
        "SUMMARY" => parse_summary(fields()),
        _ => return None,
    })
}

/// The two words a yes-or-no field is spelled with: for `true`, for `false`.
type Either = (&'static str, &'static str);
const PRIORITY: Either = ("HIGH", "LOW");
const ANSWER: Either = ("ACCEPTED", "DECLINED");
const STAYING: Either = ("ALIVE", "LEAVING");

fn push_either(line: &mut String, words: Either, yes: bool) {
    line.push(' ');
    line.push_str(if yes { words.0 } else { words.1 });
}

fn either(word: &str, words: Either, rest: &str) -> Result<bool, ProtocolError> {
    match rest {
        r if r == words.0 => Ok(true),
        r if r == words.1 => Ok(false),
        _ => err(format!(
            "{word} {:?}: expected {} or {}",
            shown(rest),
            words.0,
            words.1
        )),
    }
}

fn no_fields(word: &str, rest: &str) -> Result<(), ProtocolError> {
    if rest.is_empty() {
        Ok(())
    } else {
        err(format!(
            "{word} takes nothing after it, not {:?}",
            shown(rest)
        ))
    }
}

fn parse_forward_join(rest: &str) -> Result<OverlayMessage, ProtocolError> {
    let Some((ttl, contact)) = rest.split_once(' ') else {
        return err("FORWARDJOIN needs TTL CONTACT");
    };
    let ttl = small("FORWARDJOIN: TTL", ttl)?;
    Ok(Message::ForwardJoin {
        peer: Contact::parse("FORWARDJOIN: CONTACT", contact)?,
        ttl,
    })
}

fn parse_shuffle(rest: &str) -> Result<OverlayMessage, ProtocolError> {
    let mut fields = rest.split(' ').filter(|f| !f.is_empty());
    let (Some(ttl), Some(origin)) = (fields.next(), fields.next()) else {
        return err("SHUFFLE needs TTL ORIGIN CONTACT...");
    };
    let ttl = small("SHUFFLE: TTL", ttl)?;
    let origin = Contact::parse("SHUFFLE: ORIGIN", origin)?;
    Ok(Message::Shuffle {
        origin,
        ttl,
        peers: contacts("SHUFFLE", fields)?,
    })
}

/// The author's key in a `GOSSIP`, checked to be the key of the line's author.
pub fn gossip_key(key: &str, chat: &MsgRef) -> Result<PeerKey, ProtocolError> {
    let key = PeerKey::from_hex(key).map_err(|e| ProtocolError(format!("GOSSIP: KEY: {e}")))?;
    if key.id() != chat.origin {
        return err(format!(
            "GOSSIP: KEY is the key of {}, not of the line's author {}",
            key.id(),
            chat.origin
        ));
    }
    Ok(key)
}

/// A `GOSSIP` read but not yet believed (after `GOSSIP `): its hop count, its author's
/// key as written, and its chat line, borrowed. A servant reads a forwarded line once:
/// its id first (a copy of a line already shown needs no more), then its key and
/// signature, then `into_message`.
pub struct GossipRef<'a> {
    pub hops: u16,
    pub key: &'a str,
    pub chat: MsgRef<'a>,
}

impl<'a> GossipRef<'a> {
    pub fn parse(rest: &'a str) -> Result<GossipRef<'a>, ProtocolError> {
        let mut parts = rest.splitn(3, ' ');
        let (Some(hops), Some(key), Some(msg)) = (parts.next(), parts.next(), parts.next()) else {
            return err("GOSSIP needs HOPS KEY MSG...");
        };
        let hops = small("GOSSIP: HOPS", hops)?;
        let Some(chat) = MsgRef::parse(msg) else {
            return err("GOSSIP: KEY must be followed by a MSG line");
        };
        Ok(GossipRef {
            hops,
            key,
            chat: chat?,
        })
    }

    /// The line's id: its author, run and number.
    pub fn id(&self) -> LineId<String> {
        LineId {
            author: self.chat.origin.to_owned(),
            incarnation: self.chat.incarnation,
            seq: self.chat.seq,
        }
    }

    /// The message, with `key`: the line's `KEY`, checked to be its author's.
    pub fn into_message(self, key: PeerKey) -> Result<OverlayMessage, ProtocolError> {
        let id = self.id();
        let chat = self.chat.to_owned()?;
        Ok(Message::Gossip {
            id,
            hops: self.hops,
            line: Arc::new(Signed { key, chat }),
        })
    }
}

fn parse_gossip(rest: &str) -> Result<OverlayMessage, ProtocolError> {
    let gossip = GossipRef::parse(rest)?;
    let key = gossip_key(gossip.key, &gossip.chat)?;
    gossip.into_message(key)
}

fn parse_summary<'a>(
    mut fields: impl Iterator<Item = &'a str>,
) -> Result<OverlayMessage, ProtocolError> {
    let Some(member_for) = fields.next() else {
        return err("SUMMARY needs MEMBER-FOR");
    };
    let member_for = number("SUMMARY: MEMBER-FOR", member_for)?;
    let last = listed("SUMMARY", fields, bounds::AUTHORS, |f| {
        let [author, inc, last] = parts::<3>("SUMMARY", f)?;
        check_id("SUMMARY: ORIGIN", author)?;
        Ok((
            author.to_string(),
            number("SUMMARY: INC", inc)?,
            number("SUMMARY: LAST", last)?,
        ))
    })?;
    Ok(Message::Summary { member_for, last })
}

fn contacts<'a>(
    word: &str,
    fields: impl Iterator<Item = &'a str>,
) -> Result<Vec<Contact>, ProtocolError> {
    listed(word, fields, bounds::PEERS, |f| {
        Contact::parse(&format!("{word}: CONTACT"), f)
    })
}

/// The fields of a list, each read by `one`; more than `max` of them is an error.
fn listed<'a, T>(
    word: &str,
    fields: impl Iterator<Item = &'a str>,
    max: usize,
    one: impl Fn(&str) -> Result<T, ProtocolError>,
) -> Result<Vec<T>, ProtocolError> {
    let mut out = Vec::new();
    for (i, f) in fields.enumerate() {
        if i >= max {
            return err(format!("{word} lists more than {max} entries"));
        }
        out.push(one(f)?);
    }
    Ok(out)
}

/// `A/B/C...`: exactly `N` parts.
fn parts<'a, const N: usize>(word: &str, field: &'a str) -> Result<[&'a str; N], ProtocolError> {
    let mut out = [""; N];
    let mut it = field.split('/');
    for slot in &mut out {
        match it.next() {
            Some(p) => *slot = p,
            None => {
                return err(format!(
                    "{word} entry {:?} has fewer than {N} parts",
                    shown(field)
                ))
            }
        }
    }
    if it.next().is_some() {
        return err(format!(
            "{word} entry {:?} has more than {N} parts",
            shown(field)
        ));
    }
    Ok(out)
}

fn line_id(
    word: &str,
    author: &str,
    inc: &str,
    seq: &str,
) -> Result<LineId<String>, ProtocolError> {
    check_id(&format!("{word}: ORIGIN"), author)?;
    Ok(LineId {
        author: author.to_string(),
        incarnation: number(&format!("{word}: INC"), inc)?,
        seq: number(&format!("{word}: SEQ"), seq)?,
    })
}

/// A number that must fit a small type (a TTL, a hop count).
fn small<T: TryFrom<u64>>(what: &str, field: &str) -> Result<T, ProtocolError> {
    let n = number(what, field)?;
    T::try_from(n).or_else(|_| err(format!("{what} {n} is too large")))
}

/// A hostile field in an error: its first 40 characters, quoted and escaped as every
/// other protocol error shows it (`escape::Shown`).
fn shown(s: &str) -> Cut {
    Cut(s.chars().take(40).collect())
}

struct Cut(String);

impl std::fmt::Debug for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&crate::escape::Shown(&self.0), f)
    }
}
