//! One link of the overlay: a TCP connection to a neighbour, opened with `LINK` (section
//! 4.10 of docs/PROTOCOL.md), carrying overlay lines both ways.
//!
//! A link is two threads, as every connection of the full mesh is: `nrecv-ID` reads the
//! neighbour's lines and hands them to the `overlay` thread, `nsend-ID` writes what the
//! `overlay` thread queues for it. Each direction is tagged with a key of its own from
//! the handshake (`handshake::Link`), so an injected line, or one of ours sent back to
//! us, is refused at the cost of a hash. A `GOSSIP`'s chat line is checked against its
//! author's signature here, on the link's own thread, before the overlay sees it: a line
//! that does not verify is dropped and logged, never passed on, and it changes nothing.
//! A copy of a line already shown here (`Delivered`) is not checked at all: only its id
//! reaches the overlay, which believes nothing else of it (a Plumtree tree forming
//! sends each servant several copies of a line, and each check costs 60 µs).
//!
//! The `overlay` thread owns the links: it drops a link's queue to close it, and the
//! sending thread then writes what it still holds and shuts the socket, which ends the
//! reading thread. Either thread ending tells the `overlay` thread once.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::bell::{self, Bell, Waiter};
use log::{debug, info, warn};

use crate::escape::Shown;
use crate::handshake::{Link, Mode, Tags};
use crate::identity::{Identity, NetworkKey, PeerKey};
use crate::limits::LogLimiter;
use crate::lines::{LineError, LineReader};
use crate::overlay::LineId;
use crate::protocol::overlay::{self, Contact, OverlayMessage, OVERLAY_LINE_LIMIT};
use crate::protocol::{split_tag, MsgRef, CHAT_LINE_LIMIT};

use super::super::linking::{open_link, PING_EVERY};
use super::super::wire::Outgoing;

/// Lines queued for one neighbour at most. A neighbour that lets this many pile up is
/// not reading: its link is closed, and the tree repairs around it.
pub const LINK_QUEUE: usize = 1024;

/// How long a dial may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A link that carries nothing, not even a `PING`, for this long is closed: the
/// neighbour is gone (HyParView's failure detector is the connection itself).
const IDLE_LIMIT: Duration = Duration::from_secs(3 * PING_EVERY.as_secs());
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes written in one go at most, when lines have piled up.
const WRITE_RUN: usize = 64 * 1024;

/// Whether a chat line may travel: `key` (its `GOSSIP`'s, in hex) is its author's, its
/// signature verifies by it, and its author is not banned. `Ok` is the key; `Err` says
/// why not, for the log.
pub type Check = dyn Fn(&str, &MsgRef) -> Result<PeerKey, String> + Send + Sync;

/// Authors whose last shown line is recorded at most; past it the record starts over
/// (and copies are checked as new lines are until it fills again).
const DELIVERED_AUTHORS: usize = 4096;

/// The last line shown here of each author's current run, written by the `overlay`
/// thread as it shows them and read by every link: a `GOSSIP` at or below it is a copy.
#[derive(Default)]
pub struct Delivered(Mutex<HashMap<String, (u64, u64)>>);

impl Delivered {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Line `seq` of `author`'s run `incarnation` is shown (lines are shown in order).
    pub fn note(&self, author: &str, incarnation: u64, seq: u64) {
        let mut map = self.lock();
        if let Some(last) = map.get_mut(author) {
            if (incarnation, seq) > *last {
                *last = (incarnation, seq);
            }
            return;
        }
        if map.len() >= DELIVERED_AUTHORS {
            map.clear();
        }
        map.insert(author.to_owned(), (incarnation, seq));
    }

    /// Whether that line was shown here.
    pub fn has(&self, author: &str, incarnation: u64, seq: u64) -> bool {
        self.lock()
            .get(author)
            .is_some_and(|&(i, s)| i == incarnation && seq <= s)
    }
}

/// What the `overlay` thread is told, by the links and by the core.
pub enum ToDriver {
    /// A link is up: one we dialled (its queue is already ours) or one a neighbour
    /// opened to us (`tx` is its queue). `contact` is the neighbour as proved by the
    /// handshake.
    Up {
        contact: Contact,
        conn: u64,
        tx: Option<Bell<Arc<str>>>,
    },
    /// A line from a neighbour, checked.
    Received {
        contact: Contact,
        msg: OverlayMessage,
    },
    /// A copy of a line already shown here, unchecked: its id alone.
    Copy {
        contact: Contact,
        id: LineId<String>,
    },
    /// The link ended.
    Down {
        contact: Contact,
        conn: u64,
        why: String,
    },
    /// A dial failed: nobody there, or not the servant meant.
    Unreachable {
        contact: Option<Contact>,
        addr: SocketAddr,
        conn: u64,
        why: String,
    },
    /// The typist's word: our own signed lines, to broadcast.
    Typed(Vec<Arc<Outgoing>>),
    /// The core's word: servants worth knowing.
    Learn(Vec<Contact>),
    /// The core's word: join through this servant, or through whoever listens at this
    /// address (a `<bootstrap>`, whose id the handshake tells).
    Join(Contact),
    Bootstrap(SocketAddr),
    /// The core's word: the manager finds us unreachable (`true`), or reachable again.
    Hidden(bool),
    /// The core's word: what the overlay looks like now, for `/peers`.
    View(Sender<String>),
    /// The core's word: say goodbye to every neighbour and stop.
    Leave,
}

/// What every link's threads share: who we are, and where lines go.
pub struct Endpoint {
    pub identity: Arc<Identity>,
    pub name: String,
    pub network: Option<NetworkKey>,
    /// Where we listen for links, said in `LINK` (0: we cannot be reached).
    pub port: AtomicU16,
    pub check: Box<Check>,
    pub delivered: Delivered,
    pub events: Bell<ToDriver>,
}

static CONNS: AtomicU64 = AtomicU64::new(1);

/// A number for a new connection, so that the end of an old link to a neighbour is not
/// taken for the end of its new one.
pub fn next_conn() -> u64 {
    CONNS.fetch_add(1, Ordering::Relaxed)
}

fn short(id: &str) -> &str {
    id.get(..6).unwrap_or(id)
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new().name(name).spawn(f).map(drop)
}

/// Dials `addr` (the servant `contact`, or whoever listens there when `None`) on a new
/// `nsend-` thread that then writes what `rx` holds. Lines queued before the handshake
/// ends wait in `rx`.
pub fn dial(
    contact: Option<Contact>,
    addr: SocketAddr,
    conn: u64,
    rx: Waiter<Arc<str>>,
    ep: Arc<Endpoint>,
) -> io::Result<()> {
    let name = format!("nsend-{}", contact.as_ref().map_or("new", |c| short(&c.id)));
    spawn(name, move || {
        let unreachable = |why: String| {
            let _ = ep.events.send(ToDriver::Unreachable {
                contact: contact.clone(),
                addr,
                conn,
                why,
            });
        };
        let stream = match crate::dial::connect(&addr, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => return unreachable(e.to_string()),
        };
        let link = match handshake(&stream, &ep) {
            Ok(link) => link,
            Err(e) => return unreachable(e.to_string()),
        };
        if let Some(c) = contact.as_ref().filter(|c| c.id != link.peer_id) {
            return unreachable(format!(
                "the servant there is {}, not {}",
                link.peer_id, c.id
            ));
        }
        let proved = Contact {
            id: link.peer_id.clone(),
            addr,
        };
        let reading = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => return unreachable(e.to_string()),
        };
        let (tags, back) = (link.tags.clone(), link.back.clone());
        let (c, e) = (proved.clone(), Arc::clone(&ep));
        let recv_name = format!("nrecv-{}", short(&proved.id));
        let started = spawn(recv_name, move || {
            let mut reader = LineReader::new(&reading, OVERLAY_LINE_LIMIT);
            read_and_end(&mut reader, &back, &c, conn, &e);
        });
        if let Err(e) = started {
            return unreachable(format!("cannot start its reading thread: {e}"));
        }
        let _ = ep.events.send(ToDriver::Up {
            contact: proved.clone(),
            conn,
            tx: None,
        });
        let why = write_lines(&stream, &tags, &rx);
        debug!("link to {} at {addr} closed: {why}", proved.id);
        let _ = stream.shutdown(Shutdown::Both);
    })
}

/// The opener's handshake, with our listening port in `LINK`.
fn handshake(stream: &TcpStream, ep: &Endpoint) -> io::Result<Link> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = LineReader::new(stream, CHAT_LINE_LIMIT);
    let (link, _) = open_link(
        stream,
        &mut reader,
        (&ep.identity, &ep.name),
        Mode::Link(ep.port.load(Ordering::Relaxed)),
        None,
        ep.network.as_ref(),
    )?;
    stream.set_read_timeout(Some(IDLE_LIMIT))?;
    Ok(link)
}

/// A link a neighbour opened to us, after the handshake (`READY` written): starts its
/// `nsend-` thread and reads its lines on this thread until it ends. `port` is where it
/// said it listens.
pub fn serve_accepted(
    stream: &TcpStream,
    reader: &mut LineReader<&TcpStream>,
    peer: SocketAddr,
    link: &Link,
    port: u16,
    ep: &Arc<Endpoint>,
) -> String {
    let contact = Contact {
        id: link.peer_id.clone(),
        addr: SocketAddr::new(peer.ip(), port),
    };
    let conn = next_conn();
    let writing = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let (tx, rx) = bell::bounded::<Arc<str>>(LINK_QUEUE);
    let back = link.back.clone();
    let name = format!("nsend-{}", short(&contact.id));
    let started = spawn(name, move || {
        let _ = writing.set_write_timeout(Some(WRITE_TIMEOUT));
        let why = write_lines(&writing, &back, &rx);
        debug!("link from {peer} closed: {why}");
        let _ = writing.shutdown(Shutdown::Both);
    });
    if let Err(e) = started {
        return format!("cannot start its sending thread: {e}");
    }
    let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
    reader.set_limit(OVERLAY_LINE_LIMIT);
    let up = ToDriver::Up {
        contact: contact.clone(),
        conn,
        tx: Some(tx),
    };
    if ep.events.send(up).is_err() {
        return "the overlay has stopped".into();
    }
    read_and_end(reader, &link.tags, &contact, conn, ep)
}

/// Reads a link to its end, then tells the `overlay` thread and shuts the socket (which
/// ends its sending thread).
fn read_and_end(
    reader: &mut LineReader<&TcpStream>,
    tags: &Tags,
    contact: &Contact,
    conn: u64,
    ep: &Endpoint,
) -> String {
    let why = read_lines(reader, tags, contact, ep);
    let _ = reader.get_ref().shutdown(Shutdown::Both);
    let _ = ep.events.send(ToDriver::Down {
        contact: contact.clone(),
        conn,
        why: why.clone(),
    });
    why
}

/// Writes each queued line under its tag, several at once when they have piled up, and
/// a `PING` when there has been nothing to say for a while. Ends when the queue is
/// dropped (after writing what it holds) or the socket fails.
fn write_lines(stream: &TcpStream, tags: &Tags, rx: &Waiter<Arc<str>>) -> String {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let first = match rx.recv_timeout(PING_EVERY) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => Arc::from("PING\n"),
            Err(RecvTimeoutError::Disconnected) => return "closed here".into(),
        };
        buf.clear();
        buf.extend_from_slice(&tags.tagged(&first));
        while buf.len() < WRITE_RUN {
            match rx.try_recv() {
                Ok(line) => buf.extend_from_slice(&tags.tagged(&line)),
                Err(_) => break,
            }
        }
        if let Err(e) = { stream }.write_all(&buf) {
            return e.to_string();
        }
        // A burst grew it towards `WRITE_RUN`; an idle link keeps a few lines' worth
        // (six links holding 64 KiB each would be 384 KiB of a servant's 5 MiB).
        if buf.capacity() > 4 * 4096 {
            buf = Vec::with_capacity(4096);
        }
    }
}

/// Lines that could not be taken, logged at most once a minute per link.
struct Drops(LogLimiter<()>);

impl Drops {
    fn note(&mut self, contact: &Contact, what: &str) {
        match self.0.allow(&()) {
            None => debug!(
                "neighbour {} at {}: {what}; dropped",
                contact.id, contact.addr
            ),
            Some(held) => {
                let more = match held {
                    0 => String::new(),
                    n => format!("; {n} more dropped since the last such line"),
                };
                warn!(
                    "neighbour {} at {}: {what}; dropped (logged once a minute per link{more})",
                    contact.id, contact.addr
                );
            }
        }
    }
}

/// Reads the neighbour's lines: each checked by its tag, parsed, and a `GOSSIP`'s chat
/// line by its author's signature, then handed to the `overlay` thread.
fn read_lines(
    reader: &mut LineReader<&TcpStream>,
    tags: &Tags,
    contact: &Contact,
    ep: &Endpoint,
) -> String {
    let mut drops = Drops(LogLimiter::new(Duration::from_secs(60)));
    loop {
        let raw = match reader.read_line_ref() {
            Ok(Some(line)) => line,
            Ok(None) => return "closed".into(),
            Err(LineError::Io(e)) => return e.to_string(),
            Err(LineError::Idle) => return format!("silent for {}s", IDLE_LIMIT.as_secs()),
            Err(e) => {
                drops.note(contact, &e.to_string());
                continue;
            }
        };
        let line = match split_tag(raw) {
            Some((tag, line)) if tags.checks(&tag, line.as_bytes()) => line,
            Some(_) => {
                drops.note(contact, "a line whose tag does not match");
                continue;
            }
            None => {
                drops.note(contact, "a line without its tag");
                continue;
            }
        };
        if line == "PING" {
            continue;
        }
        let msg = match line.strip_prefix("GOSSIP ") {
            Some(rest) => match read_gossip(rest, ep) {
                Ok(Gossip::New(msg)) => Ok(msg),
                Ok(Gossip::Copy(id)) => {
                    let copy = ToDriver::Copy {
                        contact: contact.clone(),
                        id,
                    };
                    if ep.events.send(copy).is_err() {
                        return "the overlay has stopped".into();
                    }
                    continue;
                }
                Err(why) => Err(why),
            },
            None => match overlay::parse(line) {
                Some(Ok(msg)) => Ok(msg),
                Some(Err(e)) => Err(e.to_string()),
                None => Err(format!(
                    "an unexpected line {:?}",
                    Shown(&line.chars().take(40).collect::<String>())
                )),
            },
        };
        match msg {
            Ok(msg) => {
                let received = ToDriver::Received {
                    contact: contact.clone(),
                    msg,
                };
                // Waits while the `overlay` thread is behind: the neighbour is slowed
                // by TCP, and nothing piles up here.
                if ep.events.send(received).is_err() {
                    return "the overlay has stopped".into();
                }
            }
            Err(why) => drops.note(contact, &why),
        }
    }
}

/// A `GOSSIP` as read.
enum Gossip {
    /// Checked: its key is its author's, and its signature verifies by it.
    New(OverlayMessage),
    /// A line already shown here.
    Copy(LineId<String>),
}

/// A `GOSSIP` (after `GOSSIP `), read once: a copy of a line shown here by its id alone,
/// any other checked by its author's key and signature.
fn read_gossip(rest: &str, ep: &Endpoint) -> Result<Gossip, String> {
    let gossip = overlay::GossipRef::parse(rest).map_err(|e| e.to_string())?;
    let m = &gossip.chat;
    if ep.delivered.has(m.origin, m.incarnation, m.seq) {
        return Ok(Gossip::Copy(gossip.id()));
    }
    let key = (ep.check)(gossip.key, m).map_err(|why| format!("a forwarded line {why}"))?;
    gossip
        .into_message(key)
        .map(Gossip::New)
        .map_err(|e| e.to_string())
}

/// Logged once per link when it comes up.
pub fn log_up(contact: &Contact, dialled: bool) {
    let how = if dialled { "to" } else { "from" };
    info!("overlay link {how} {} at {}", contact.id, contact.addr);
}
