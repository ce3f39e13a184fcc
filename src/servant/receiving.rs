//! Reading a servant's lines, wherever they come from: its own sending connection (each
//! line under the link's tag, or a `BLOCK` of them), a relay we pull from, or the overlay
//! (lines already checked on their link).
//!
//! A line that is not authentic (a wrong tag, a signature that does not verify, an author
//! banned by address) is dropped before it can touch the sequence state in `Seen`, so a
//! forged line can never make a genuine one look like a duplicate; drops are logged once a
//! minute per connection. What is left is shown once, in order, under its author's pinned
//! name, and recorded for the servants we relay to.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::inbound::Inbound;
use super::known::{changed_warning, Standing};
use super::linking::PING_EVERY;
use super::seen::{Verdict, STRANGERS};
use crate::escape::Shown;
use crate::handshake::Link;
use crate::identity::PeerKey;
use crate::limits::Admission;
use crate::lines::{LineError, LineReader};
use crate::protocol::{split_tag, MsgRef, PeerLine, CHAT_LINE_LIMIT};

/// A peer connection that sends nothing (not even a `PING`) for this long is closed.
pub(super) const IDLE_LIMIT: Duration = Duration::from_secs(4 * PING_EVERY.as_secs());
/// How often a sender connected to us is told our last line number (`SAID`), at most.
const SAID_EVERY: Duration = Duration::from_secs(2);

/// Where a servant connection's lines come from, which decides how each is checked.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    /// The sending connection of the servant `link` proved: every line carries its tag,
    /// and that servant's own lines need no more; others' lines are checked by signature.
    Author(&'a Link),
    /// A relay connection: every line is checked by its author's signature.
    Relay,
}

/// Drops of lines that are not authentic, logged at most once a minute per connection;
/// and the last author found pinned on it, with `KnownPeers::trusts` then (a connection
/// carries one author's lines, so its pin is looked up once).
struct Drops {
    last: Option<Instant>,
    held: u64,
    pinned: Option<(String, PeerKey, u64)>,
}

impl Drops {
    fn note(&mut self, peer: SocketAddr, name: &str, what: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            self.held += 1;
            return debug!("{peer} ({}): {what}; dropped", Shown(name));
        }
        let more = match std::mem::take(&mut self.held) {
            0 => String::new(),
            n => format!("; {n} more dropped since the last such line"),
        };
        warn!(
            "{peer} ({}): {what}; dropped (logged once a minute per connection{more})",
            Shown(name)
        );
        self.last = Some(now);
    }
}

/// `servants1_DataArrival` for another servant: reads its lines, checks each, and shows
/// each message once. `name` is the servant at the other end, for logs.
pub(super) fn servant_lines(
    reader: &mut LineReader<&TcpStream>,
    peer: SocketAddr,
    source: Source,
    name: &str,
    inbound: &Inbound,
    place: Option<&Admission>,
) -> String {
    let mut conn = Conn {
        peer,
        name,
        complained: false,
        drops: Drops {
            last: None,
            held: 0,
            pinned: None,
        },
    };
    let mut bad_bytes_logged = false;
    let mut said_at = None;
    let stream: &TcpStream = reader.get_ref();
    loop {
        inbound.flush_unless_more(reader);
        let raw = match reader.read_line_ref() {
            Ok(Some(line)) => line,
            Ok(None) => return "closed".into(),
            Err(LineError::Io(e)) => return e.to_string(),
            Err(LineError::Idle) => return format!("silent for {}s", IDLE_LIMIT.as_secs()),
            Err(e) if bad_bytes_logged => {
                debug!("{peer} ({}): {e}; line skipped", Shown(name));
                continue;
            }
            Err(e) => {
                info!(
                    "{peer} ({}): {e}; line skipped (logged once per connection)",
                    Shown(name)
                );
                bad_bytes_logged = true;
                continue;
            }
        };
        if let Some(p) = place {
            p.touch();
        }
        // A host banned (with /ban) while connected is cut off at its next line.
        if inbound.bans.refuses(peer.ip()) {
            return "banned".into();
        }
        // On an author's connection, the tag first: it costs a hash.
        let link = match source {
            Source::Relay => {
                conn.line(raw, None, inbound);
                continue;
            }
            Source::Author(link) => link,
        };
        // Now and then, our own last line number back to the sender (see `relay_watch`).
        if said_at.is_none_or(|t: Instant| t.elapsed() >= SAID_EVERY) {
            said_at = Some(Instant::now());
            let said = PeerLine::Said {
                incarnation: inbound.identity.incarnation,
                seq: inbound.said.load(Ordering::Relaxed),
            }
            .to_line();
            let _ = (&mut &*stream).write_all(&link.tags.tagged(&said));
        }
        if let Some(header) = raw.strip_prefix("BLOCK ") {
            let header = header.to_owned();
            match read_block(reader, &header, link) {
                Ok(block) => {
                    for line in block.split_terminator('\n') {
                        conn.line(line, Some(link), inbound);
                    }
                }
                Err(Block::Bad(why)) => conn.drops.note(peer, name, &why),
                Err(Block::Ended(why)) => return why,
            }
            continue;
        }
        match split_tag(raw) {
            Some((tag, line)) if link.tags.checks(&tag, line.as_bytes()) => {
                conn.line(line, Some(link), inbound)
            }
            Some(_) => conn
                .drops
                .note(peer, name, "a line whose tag does not match"),
            None => conn.drops.note(peer, name, "a line without its tag"),
        }
    }
}

/// Bytes of one block at most: `BLOCK_LINES` lines of the longest kind.
const BLOCK_BYTES: usize = super::linking::BLOCK_LINES * (CHAT_LINE_LIMIT + 1);

/// Why a block was not taken.
enum Block {
    /// Not a valid block (dropped, the connection goes on).
    Bad(String),
    /// The connection ended inside it.
    Ended(String),
}

/// After `BLOCK TAG COUNT` (`header` is `TAG COUNT`): its COUNT lines, each with its
/// `\n`, checked against TAG. At most `BLOCK_LINES` lines and `BLOCK_BYTES` bytes.
fn read_block(
    reader: &mut LineReader<&TcpStream>,
    header: &str,
    link: &Link,
) -> Result<String, Block> {
    let bad = |why: String| Err(Block::Bad(why));
    let Some((tag, count)) = header.split_once(' ') else {
        return bad("a BLOCK line is 'BLOCK TAG COUNT'".into());
    };
    let Ok(tag) = crate::encoding::parse_hex::<16>(tag) else {
        return bad("a BLOCK whose tag is not 32 hex digits".into());
    };
    let count = match crate::encoding::parse_u64(count) {
        Ok(n) if (2..=super::linking::BLOCK_LINES as u64).contains(&n) => n as usize,
        _ => {
            return bad(format!(
                "a BLOCK of {:?} lines (2 to {} are allowed)",
                Shown(count),
                super::linking::BLOCK_LINES
            ))
        }
    };
    let mut block = String::new();
    for _ in 0..count {
        match reader.read_line_ref() {
            Ok(Some(line)) if block.len() + line.len() < BLOCK_BYTES => {
                block.push_str(line);
                block.push('\n');
            }
            Ok(Some(_)) => return bad("a BLOCK longer than its limit".into()),
            Ok(None) => return Err(Block::Ended("closed inside a BLOCK".into())),
            Err(LineError::Io(e)) => return Err(Block::Ended(e.to_string())),
            Err(LineError::Idle) => return Err(Block::Ended("silent inside a BLOCK".into())),
            Err(e) => return bad(format!("a BLOCK with a bad line: {e}")),
        }
    }
    if !link.tags.checks_block(&tag, block.as_bytes()) {
        return bad("a BLOCK whose tag does not match".into());
    }
    Ok(block)
}

/// One servant connection's reading state.
struct Conn<'a> {
    peer: SocketAddr,
    /// The servant at the other end, for logs.
    name: &'a str,
    /// A line that is neither `MSG` nor `PING` has been logged.
    complained: bool,
    drops: Drops,
}

impl Conn<'_> {
    /// A line that came on the author's own connection under its tag (`link`), or on a
    /// relay connection (`None`).
    fn line(&mut self, line: &str, link: Option<&Link>, inbound: &Inbound) {
        let (peer, name) = (self.peer, self.name);
        // Every chat line is a MSG: read it in place, without copying its parts.
        if let Some(parsed) = MsgRef::parse(line) {
            match parsed {
                Ok(m) => {
                    // The author's own tagged line needs no signature check.
                    let checked = link.filter(|l| l.peer_id == m.origin).map(|l| l.peer);
                    receive(m, line, checked, peer, name, inbound, &mut self.drops)
                }
                Err(e) => self.drops.note(peer, name, &e.to_string()),
            }
            return;
        }
        match PeerLine::parse(line) {
            Some(Ok(PeerLine::Ping)) => {}
            _ if self.complained => {}
            other => {
                let what = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => format!(
                        "unexpected line {:?}",
                        Shown(&line.chars().take(40).collect::<String>())
                    ),
                };
                info!(
                    "{peer} ({}): {what}; such lines are skipped (logged once per connection)",
                    Shown(name)
                );
                self.complained = true;
            }
        }
    }
}

/// Lines the overlay passed on to us (each already checked on its link): shown as a
/// servant connection's are, once, with their author's pin.
pub(super) struct Forwarded {
    drops: Drops,
}

impl Default for Forwarded {
    fn default() -> Forwarded {
        Forwarded {
            drops: Drops {
                last: None,
                held: 0,
                pinned: None,
            },
        }
    }
}

impl Forwarded {
    /// `signed` was checked on its link: its key is its author's and its signature
    /// verifies, so it is not checked again.
    pub(super) fn show(&mut self, signed: &crate::protocol::overlay::Signed, inbound: &Inbound) {
        let line = PeerLine::Msg(signed.chat.clone()).to_line();
        let line = line.trim_end_matches('\n');
        if let Some(Ok(m)) = MsgRef::parse(line) {
            let here = SocketAddr::from(([0, 0, 0, 0], 0));
            let key = Some(signed.key);
            receive(m, line, key, here, "overlay", inbound, &mut self.drops);
        }
        if let Some(pipe) = &inbound.pipe {
            pipe.flush();
        }
    }
}

/// One `MSG` from a servant connection: checked by its author's signature unless
/// `checked` already holds the author's key (the author's own tagged line, or a line
/// checked on an overlay link), then shown once and recorded for the servants we relay to.
fn receive(
    m: MsgRef,
    line: &str,
    checked: Option<PeerKey>,
    peer: SocketAddr,
    name: &str,
    inbound: &Inbound,
    drops: &mut Drops,
) {
    // A ban on an address holds for its servants' lines on any path (a relay, a
    // forwarder, or their own link opened from another address), not only for
    // connections from it.
    if inbound.banned_authors.contains(m.origin) {
        inbound.banned_lines.fetch_add(1, Ordering::Relaxed);
        return drops.note(
            peer,
            name,
            &format!("a line by {}, listed at a banned address", m.origin),
        );
    }
    let key = match checked {
        Some(key) => key,
        None => match inbound.authors.verify(&m) {
            Ok(key) => key,
            Err(why) => {
                return drops.note(peer, name, &format!("a line by {} {why}", m.origin));
            }
        },
    };
    // A name seen before with another key is shown as such (see `known`).
    let trusts = inbound.known.trusts();
    let known = drops
        .pinned
        .as_ref()
        .is_some_and(|(n, k, t)| n == m.name && *k == key && *t == trusts);
    let standing = if known {
        Standing::Pinned
    } else {
        inbound.known.check(m.name, &key)
    };
    if standing == Standing::Pinned && !known {
        drops.pinned = Some((m.name.to_owned(), key, trusts));
    }
    let marker = match standing {
        Standing::Pinned => "",
        Standing::Changed { pinned, first } => {
            if first {
                let warning = changed_warning(m.name, &pinned, &key);
                warn!("{warning}");
                inbound.show(&[&warning]);
            }
            " (key changed)"
        }
    };
    let evicted = inbound
        .seen
        .deliver(m.origin, m.incarnation, m.seq, |verdict| match verdict {
            Verdict::Duplicate => debug!(
                "{peer}: duplicate of message {} from {}; dropped",
                m.seq,
                Shown(m.name)
            ),
            Verdict::OldRun => debug!(
                "{peer}: message {} from an earlier run of {}; dropped",
                m.seq,
                Shown(m.name)
            ),
            v => {
                if let Verdict::ShowAfterGap { missed } = v {
                    warn!(
                        "{missed} message(s) from {} before number {} never arrived",
                        Shown(m.name),
                        m.seq
                    );
                }
                inbound.show(&[
                    "<",
                    &crate::escape::shown(m.name),
                    marker,
                    "> ",
                    &crate::escape::shown(m.text),
                ]);
                inbound.hub.record(m.origin, m.incarnation, m.seq, line);
            }
        });
    if !evicted.is_empty() {
        static TOLD: std::sync::Once = std::sync::Once::new();
        TOLD.call_once(|| {
            info!("{STRANGERS} authors that are not listed are remembered at most; the least recently heard are forgotten (logged once)")
        });
        debug!(
            "{} authors that are not listed forgotten (at most {STRANGERS} are kept)",
            evicted.len()
        );
        inbound.authors.forget(&evicted);
    }
}
