//! The servant's listening side: accepts connections from peers (and from people with
//! telnet), refuses banned hosts, and shows what arrives.
//!
//! This is the article's `servants1_ConnectionRequest` (check the bans, accept into a free
//! Winsock control) and `servants1_DataArrival` (append what arrived to the chat box). Each
//! accepted connection gets its own named thread `recv-ADDR`. A connection that opens with
//! `HELLO` is another servant, once the handshake has proved its key (`handshake`): each
//! line it writes carries a tag made with the connection's secret, its `MSG` lines carry
//! the writer's id, run and sequence number, and `Seen` makes sure each is shown once. A
//! line that is not authentic (a wrong tag, a signature that does not verify) is dropped
//! before it can touch that state, so a forged line can never make a genuine one look
//! like a duplicate. Anything else is a person typing: each line is shown as chat from
//! the connection's address, as in the article, never under a servant's name.
//!
//! Everything shown that came from the network goes through `escape::Shown`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, info, warn};

use super::authors::Authors;
use super::bans::Bans;
use super::console::Pipe;
use super::hub::{serve_pull, Hub};
use super::known::{changed_warning, KnownPeers, Standing};
use super::neighbors::{link, Door};
use super::seen::{Seen, Verdict, STRANGERS};
use super::sender::{HANDSHAKE_TIMEOUT, PING_EVERY};
use crate::escape::Shown;
use crate::handshake::{Answered, Link};
use crate::identity::{Identity, NetworkKey, PeerKey};
use crate::limits::{self, Admission, Caps, Gate, Limiter, LogLimiter};
use crate::lines::{LineError, LineReader};
use crate::protocol::{split_tag, Hello, MsgRef, PeerLine, CHAT_LINE_LIMIT};
use crate::transfer::{self, Library};

/// A peer connection that sends nothing (not even a `PING`) for this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(4 * PING_EVERY.as_secs());
/// How often a sender connected to us is told our last line number (`SAID`), at most.
const SAID_EVERY: Duration = Duration::from_secs(2);
/// A connection must say what it is within this time (a servant's `HELLO` comes at once;
/// a person with telnet has this long to type a first line). Until then it holds a place
/// that others may need.
const FIRST_LINE_LIMIT: Duration = Duration::from_secs(10);

/// What every receiving thread shares.
pub struct Inbound {
    /// Who we are, in every handshake.
    pub identity: Arc<Identity>,
    pub name: String,
    /// The network's shared secret, when it has one.
    pub network: Option<NetworkKey>,
    /// Keys of the servants we know of, to check lines not tagged by their author.
    pub authors: Authors,
    /// The key pinned for each name (trust on first use).
    pub known: KnownPeers,
    /// The servants the manager has made us relay to, by id, with when we learnt it:
    /// only they are served a `PULL`, and with nothing older. Written by the core.
    pub relayed: Mutex<HashMap<String, Instant>>,
    /// The ids of the servants listed at a banned address (bans follow the author);
    /// written by the core.
    pub banned_authors: BannedAuthors,
    /// Lines by those authors dropped, for `/bans`.
    pub banned_lines: AtomicU64,
    /// The number of the last line we have written ourselves (set by the typist).
    pub said: AtomicU64,
    /// Refused handshakes, logged once per address a minute.
    pub refusals: Mutex<LogLimiter<IpAddr>>,
    /// Where links that overlay neighbours open are handed (closed in the full mesh).
    pub links: Arc<Door>,
    /// What we relay to servants behind firewalls (empty unless one pulls from us).
    pub hub: Hub,
    /// The files we share, for `FILES`, `MANIFEST` and `GET` requests.
    pub library: Arc<Library>,
    pub bans: Arc<Bans>,
    pub seen: Seen,
    /// Lines for standard output (the article's `txtChat1`).
    pub out: Sender<String>,
    /// Standard output when it is not a terminal: receivers print into it themselves.
    pub pipe: Option<Arc<Pipe>>,
}

/// The ids banned because a ban covers the address they are listed at. Asked for every
/// line received, by every receiving thread: while there are none (the usual case) the
/// answer comes from an atomic, without the lock.
#[derive(Default)]
pub struct BannedAuthors {
    ids: Mutex<HashSet<String>>,
    count: AtomicUsize,
}

impl BannedAuthors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, id: &str) -> bool {
        !self.is_empty() && self.lock().contains(id)
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the whole set.
    pub fn set(&self, ids: HashSet<String>) {
        let mut set = self.lock();
        *set = ids;
        self.count.store(set.len(), Ordering::Relaxed);
    }

    /// Adds `id` to the set, or takes it out.
    pub fn mark(&self, id: &str, banned: bool) {
        let mut set = self.lock();
        if banned {
            set.insert(id.to_owned());
        } else {
            set.remove(id);
        }
        self.count.store(set.len(), Ordering::Relaxed);
    }
}

impl Inbound {
    /// Shows a received line: straight into standard output when it is a pipe (printed
    /// by this thread), through the `stdout` thread when it is a terminal.
    pub fn show(&self, parts: &[&str]) {
        match &self.pipe {
            Some(pipe) => pipe.push_parts(parts),
            None => {
                let _ = self.out.send(parts.concat());
            }
        }
    }

    /// Writes out what this thread has shown, unless another whole line is already
    /// waiting in `reader` (then it is written with that one: one write per burst).
    pub fn flush_unless_more<R: std::io::Read>(&self, reader: &LineReader<R>) {
        if let Some(pipe) = &self.pipe {
            if !reader.has_line() {
                pipe.flush();
            }
        }
    }
}

/// Accepts connections until the process ends (the article's `servants1_ConnectionRequest`):
/// a banned host is closed before anything it sent is read; others get a `recv-ADDR`
/// thread, within the caps of `<maxconnections>` and `<maxperaddress>`.
pub fn accept_loop(listener: TcpListener, inbound: Arc<Inbound>, caps: Caps) {
    let bans = Arc::clone(&inbound.bans);
    let gate = Gate {
        thread_prefix: "recv",
        limiter: Limiter::new(caps),
        screen: Box::new(move |ip| !bans.refuses(ip)),
        refusal_line: Box::new(|_| None),
    };
    limits::accept_loop(listener, gate, move |stream, peer, place| {
        serve_connection(stream, peer, &inbound, place)
    });
}

/// Reads one connection to its end (the article's `servants1_DataArrival`).
fn serve_connection(stream: TcpStream, peer: SocketAddr, inbound: &Inbound, place: &Admission) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(FIRST_LINE_LIMIT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut reader = LineReader::new(&stream, CHAT_LINE_LIMIT);
    let first = match reader.read_line() {
        Ok(Some(line)) => line,
        Ok(None) => return debug!("{peer}: closed without a word"),
        Err(LineError::Idle) => {
            return debug!(
                "{peer}: said nothing for {}s; closed",
                FIRST_LINE_LIMIT.as_secs()
            )
        }
        Err(e) => {
            info!("{peer}: {e}; closed");
            return;
        }
    };
    let why = match PeerLine::parse(&first) {
        Some(Ok(PeerLine::Hello(hello))) => {
            let Some(link) = accept(&stream, &mut reader, peer, &first, &hello, inbound) else {
                return;
            };
            // A listed servant always finds a place (see `limits`); others may be
            // evicted for newcomers when they have been idle longest.
            if inbound.seen.is_listed(&link.peer_id) {
                place.protect();
            }
            place.touch();
            let last = inbound.seen.last_from(&link.peer_id, link.incarnation);
            if let Err(e) = (&stream).write_all(PeerLine::Ready { last }.to_line().as_bytes()) {
                return debug!("{peer} ({}): cannot answer: {e}", Shown(&link.name));
            }
            let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
            debug!(
                "{peer}: servant {} ({}) connected",
                Shown(&link.name),
                link.peer_id
            );
            servant_lines(
                &mut reader,
                peer,
                Source::Author(&link),
                &link.name,
                inbound,
                Some(place),
            )
        }
        _ if transfer::serve::is_file_request(&first) => {
            let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
            // Asked before each request: the request also shows the connection is in use.
            let banned = || {
                place.touch();
                inbound.bans.refuses(peer.ip())
            };
            let listed = inbound.seen.is_listed_address(peer.ip());
            transfer::serve::serve(
                &stream,
                &mut reader,
                first,
                peer,
                &inbound.library,
                listed,
                &banned,
            )
        }
        Some(Ok(PeerLine::Pull(hello))) => {
            let Some(link) = accept(&stream, &mut reader, peer, &first, &hello, inbound) else {
                return;
            };
            if let Err(e) = (&stream).write_all(PeerLine::Ready { last: 0 }.to_line().as_bytes()) {
                return debug!("{peer} ({}): cannot answer: {e}", Shown(&link.name));
            }
            let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
            if inbound.seen.is_listed(&link.peer_id) {
                place.protect();
            }
            match pull_assigned(inbound, peer, &link) {
                Some(assigned) => {
                    serve_pull(&stream, &mut reader, peer, &link, (&inbound.hub, assigned))
                }
                None => "PULL refused: not assigned to this relay".into(),
            }
        }
        Some(Ok(PeerLine::Link(hello, port))) => {
            let Some(ep) = inbound.links.endpoint() else {
                // A servant of an overlay (4.10) asks for a neighbour link; this one
                // links to every servant instead. Said, so the other side falls back to
                // `HELLO`.
                log_refusal(
                    inbound,
                    peer,
                    format!(
                        "{} ({}) asked for an overlay link; this servant links to every servant",
                        Shown(&hello.name),
                        hello.id
                    ),
                );
                let _ = (&stream).write_all(
                    b"ERR LINK: this servant links to every servant and takes no overlay links\n",
                );
                return;
            };
            let Some(link) = accept(&stream, &mut reader, peer, &first, &hello, inbound) else {
                return;
            };
            if let Err(e) = (&stream).write_all(PeerLine::Ready { last: 0 }.to_line().as_bytes()) {
                return debug!("{peer} ({}): cannot answer: {e}", Shown(&link.name));
            }
            if inbound.seen.is_listed(&link.peer_id) {
                place.protect();
            }
            place.touch();
            link::serve_accepted(&stream, &mut reader, peer, &link, port, &ep)
        }
        Some(Err(e)) => {
            info!("{peer}: bad first line: {e}; closed");
            return;
        }
        // A person typing: the article showed whatever arrived, from that address.
        _ => {
            let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
            place.touch();
            show_plain(peer, &first, inbound);
            // Bad lines are logged once per connection: a stream of garbage must not fill the log.
            let mut complained = false;
            loop {
                inbound.flush_unless_more(&reader);
                match reader.read_line() {
                    Ok(Some(_)) if inbound.bans.refuses(peer.ip()) => break "banned".to_owned(),
                    Ok(Some(line)) => {
                        place.touch();
                        show_plain(peer, &line, inbound)
                    }
                    Ok(None) => break "closed".to_owned(),
                    Err(LineError::Io(e)) => break e.to_string(),
                    Err(LineError::Idle) => break format!("silent for {}s", IDLE_LIMIT.as_secs()),
                    Err(e) if complained => debug!("{peer}: {e}; line skipped"),
                    Err(e) => {
                        info!(
                            "{peer}: {e}; line skipped (such lines are logged once per connection)"
                        );
                        complained = true;
                    }
                }
            }
        }
    };
    debug!("{peer}: connection ended: {why}");
}

/// Logs why a connection was refused, once a minute per address (the rest at debug, and
/// counted in the next one): a flood of refused connections cannot fill the log.
fn log_refusal(inbound: &Inbound, peer: SocketAddr, why: String) {
    let allowed = inbound
        .refusals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(&peer.ip());
    match allowed {
        Some(held) if held > 0 => {
            warn!(
                "{peer}: refused: {why} ({held} more refusals from {} not logged)",
                peer.ip()
            )
        }
        Some(_) => warn!("{peer}: refused: {why}"),
        None => debug!("{peer}: refused: {why}"),
    }
}

/// The listener's half of the handshake (see `handshake`): answers `HELLO` or `PULL` with
/// `WELCOME` and checks the `PROOF`. `None` when the other side cannot prove its key (or
/// the network key), which is logged once a minute per address.
fn accept(
    stream: &TcpStream,
    reader: &mut LineReader<&TcpStream>,
    peer: SocketAddr,
    first: &str,
    hello: &Hello,
    inbound: &Inbound,
) -> Option<Link> {
    let refuse = |why: String| log_refusal(inbound, peer, why);
    let net = inbound.network.as_ref();
    let (answered, welcome) = match Answered::new(&inbound.identity, first, hello, net) {
        Ok(a) => a,
        Err(e) => {
            refuse(format!("{} {e}", Shown(&hello.name)));
            return None;
        }
    };
    if let Err(e) = { stream }.write_all(welcome.as_bytes()) {
        debug!("{peer}: cannot answer {}: {e}", Shown(&hello.name));
        return None;
    }
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let proof = match reader.read_line() {
        Ok(Some(line)) => match PeerLine::parse(&line) {
            Some(Ok(PeerLine::Proof(p))) => p,
            Some(Err(e)) => {
                refuse(format!("{}: {e}", Shown(&hello.name)));
                return None;
            }
            _ => {
                let shown: String = line.chars().take(40).collect();
                refuse(format!(
                    "{}: expected PROOF, got {:?}",
                    Shown(&hello.name),
                    Shown(&shown)
                ));
                return None;
            }
        },
        Ok(None) => {
            debug!("{peer}: closed before its PROOF");
            return None;
        }
        Err(e) => {
            refuse(format!("{}: no PROOF: {e}", Shown(&hello.name)));
            return None;
        }
    };
    match answered.finish(&proof, net) {
        Ok(link) => {
            inbound.authors.learn(link.peer);
            Some(link)
        }
        Err(e) => {
            refuse(format!("{} (id {}) {e}", Shown(&hello.name), hello.id));
            None
        }
    }
}

/// `servants1_DataArrival` for a person typing: the line, from the connection's address.
/// When the manager listed `link`'s servant as pulling from us; `None` (logged, within the
/// refusal log's limit) when it has not made us its relay: a relay is not a way for anyone
/// to read all chat.
fn pull_assigned(inbound: &Inbound, peer: SocketAddr, link: &Link) -> Option<Instant> {
    let id = link.peer_id.as_str();
    let assigned = inbound
        .relayed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .copied();
    if assigned.is_none() {
        let allowed = inbound
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(&peer.ip());
        if allowed.is_some() {
            let name = Shown(&link.name);
            warn!("{peer}: refused PULL from {name} ({id}): the manager has not made us its relay");
        }
    }
    assigned
}

fn show_plain(peer: SocketAddr, line: &str, inbound: &Inbound) {
    inbound.show(&["<", &peer.to_string(), "> ", &crate::escape::shown(line)]);
}

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
const BLOCK_BYTES: usize = super::sender::BLOCK_LINES * (CHAT_LINE_LIMIT + 1);

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
        Ok(n) if (2..=super::sender::BLOCK_LINES as u64).contains(&n) => n as usize,
        _ => {
            return bad(format!(
                "a BLOCK of {:?} lines (2 to {} are allowed)",
                Shown(count),
                super::sender::BLOCK_LINES
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
