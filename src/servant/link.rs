//! The servant's connection to the connection manager.
//!
//! This is the article's `Winsock1` control and its `Winsock1_DataArrival`: ask for the peer
//! list, learn our assigned port from the `<me>TRUE</me>` entry, listen on it, and keep the
//! list current. Unlike the article, where each heartbeat fetched the whole list, the
//! manager pushes each change (`<join>`/`<leave>`) as it happens, and the heartbeat
//! (`needs peer list since V`) costs a few bytes while nothing changes. Versions make this
//! safe: a change that does not follow the version we hold means we missed something, and
//! we ask for the whole list again.
//!
//! The thread `manager-link` owns the reading side. When the manager goes away it reports
//! `Down` and reconnects with backoff; the core keeps chatting with the peers it knows
//! meanwhile, and the link registers again (`listening PORT ID NAME`) when it is back.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, info, warn};

use crate::lines::{LineError, LineReader};
use crate::protocol::{ManagerCommand, ManagerMessage, PeerEntry, PeerList, PEER_DOC_LINE_LIMIT};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the link tells the core.
#[derive(Debug)]
pub enum LinkEvent {
    /// (Re)registered; `list` is the whole list at that moment.
    Up {
        list: PeerList,
    },
    /// The whole list, after a gap in the changes.
    List(PeerList),
    Join(Vec<PeerEntry>),
    Leave(Vec<PeerEntry>),
    /// The connection to the manager is lost; the link is reconnecting.
    Down(String),
    /// We cannot be reached: pull from this relay (`None`: stop pulling).
    Pull(Option<PeerEntry>),
}

/// Who we are, as the manager should list us.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    pub name: String,
    pub port: u16,
}

/// The writing side of the manager connection, shared by the link thread (heartbeats) and
/// the core (`bye`). The mutex serializes whole lines on one socket and guards nothing
/// else; writes have a time-out.
#[derive(Default)]
pub struct ManagerWriter {
    stream: Mutex<Option<TcpStream>>,
    /// Set by the core when it says `bye`; read by the link thread, which then stops
    /// instead of reconnecting (the manager closing after our `bye` is no reason to rejoin).
    leaving: AtomicBool,
}

impl ManagerWriter {
    fn lock(&self) -> MutexGuard<'_, Option<TcpStream>> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn send(&self, cmd: &ManagerCommand) -> io::Result<()> {
        let mut line = cmd.to_line();
        line.push('\n');
        match &*self.lock() {
            Some(s) => (&*s).write_all(line.as_bytes()),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "not connected to the manager",
            )),
        }
    }

    fn leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    fn set(&self, stream: Option<TcpStream>) {
        *self.lock() = stream;
    }

    /// Says `bye` and closes, so the manager drops us at once.
    /// The article's complaint: tells the manager we cannot reach the servant with `id`.
    pub fn complain(&self, id: &str) {
        if let Err(e) = self.send(&ManagerCommand::Complain { id: id.to_owned() }) {
            debug!("complaint about {id} not sent: {e}");
        }
    }

    pub fn bye(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        let _ = self.send(&ManagerCommand::Bye);
        if let Some(s) = self.lock().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Connects to the first of `addrs` that answers.
pub fn connect(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads lines until one is a whole `<peers>` list (pushes before it are stale).
fn read_list(reader: &mut LineReader<TcpStream>) -> io::Result<PeerList> {
    loop {
        let line = match reader.read_line() {
            Ok(Some(l)) => l,
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the manager closed the connection",
                ))
            }
            Err(LineError::Idle) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the manager",
                ))
            }
            Err(LineError::Io(e)) => return Err(e),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        match ManagerMessage::parse(&line) {
            Ok(ManagerMessage::Peers(list)) => return Ok(list),
            Ok(ManagerMessage::Error(e)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the manager says: {e}"),
                ))
            }
            Ok(_) => continue,
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("from the manager: {e}"),
                ))
            }
        }
    }
}

/// The first half of the article's `Winsock1_DataArrival`: ask for the list and read our
/// assigned port from the `<me>TRUE</me>` entry.
pub fn ask_assigned_port(stream: &TcpStream) -> io::Result<(LineReader<TcpStream>, u16)> {
    (&*stream).write_all(b"needs peer list\n")?;
    let mut reader = LineReader::new(stream.try_clone()?, PEER_DOC_LINE_LIMIT);
    let list = read_list(&mut reader)?;
    match list.me() {
        Some(me) => Ok((reader, me.port)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the manager's list has no <me>TRUE</me> entry",
        )),
    }
}

/// Says `listening PORT ID NAME` and reads the whole list that answers it.
pub fn register(
    stream: &TcpStream,
    reader: &mut LineReader<TcpStream>,
    me: &Registration,
) -> io::Result<PeerList> {
    let cmd = ManagerCommand::Listening {
        port: me.port,
        id: Some(me.id.clone()),
        name: Some(me.name.clone()),
    };
    (&*stream).write_all(format!("{}\n", cmd.to_line()).as_bytes())?;
    read_list(reader)
}

/// An open, registered connection to the manager.
pub struct Session {
    pub stream: TcpStream,
    pub reader: LineReader<TcpStream>,
    /// The version of the list that answered the registration.
    pub version: u64,
    /// The manager's time-out for silent servants, from that list.
    pub timeout_ms: u64,
}

/// The `manager-link` thread: keeps the list current over `session` and reconnects when
/// it breaks (or first connects, when there is none yet). Runs until the core is gone.
pub fn run(
    addrs: Vec<SocketAddr>,
    me: Registration,
    heartbeat: Duration,
    mut session: Option<Session>,
    writer: &ManagerWriter,
    events: Sender<LinkEvent>,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut failures = 0u32;
    // Which manager we are registered with, to say so when another one takes over.
    let mut current = session.as_ref().and_then(|s| s.stream.peer_addr().ok());
    loop {
        if writer.leaving() {
            return;
        }
        let s = match session.take() {
            Some(s) => s,
            None => match reconnect(&addrs, &me) {
                Ok((s, list)) => {
                    let now = s.stream.peer_addr().ok();
                    match (current, now) {
                        (Some(was), Some(is)) if was != is => {
                            info!("registered with the connection manager at {is} (was {was})")
                        }
                        _ if failures > 0 => {
                            info!("connection manager is back after {failures} failed tries")
                        }
                        _ => {}
                    }
                    current = now.or(current);
                    failures = 0;
                    backoff = BACKOFF_FIRST;
                    if events.send(LinkEvent::Up { list }).is_err() {
                        return;
                    }
                    s
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        warn!("cannot reach the connection manager: {e}; retrying with backoff");
                    } else {
                        debug!("cannot reach the connection manager (try {failures}): {e}");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        writer.set(s.stream.try_clone().ok());
        // The managers the config names before this one: the servant goes back to the
        // first of them that answers again, so servants do not stay split between two.
        let earlier = match current.and_then(|c| addrs.iter().position(|a| *a == c)) {
            Some(i) => &addrs[..i],
            None => &[],
        };
        let why = follow(
            s.reader,
            s.version,
            s.timeout_ms,
            heartbeat,
            writer,
            &events,
            earlier,
        );
        writer.set(None);
        let _ = s.stream.shutdown(Shutdown::Both);
        let why = match why {
            Some(_) if writer.leaving() => return,
            Some(Ended::Lost(why)) => {
                warn!("lost the connection manager: {why}; keeping the peers we know and reconnecting");
                why
            }
            Some(Ended::EarlierAnswers(a)) => {
                info!("the connection manager at {a}, named earlier in the config, answers again; moving back to it");
                format!("moving back to the connection manager at {a}")
            }
            None => return,
        };
        if events.send(LinkEvent::Down(why)).is_err() {
            return;
        }
    }
}

/// Connects and registers again, with the port we already listen on.
fn reconnect(addrs: &[SocketAddr], me: &Registration) -> io::Result<(Session, PeerList)> {
    let stream = connect(addrs)?;
    let mut reader = LineReader::new(stream.try_clone()?, PEER_DOC_LINE_LIMIT);
    let list = register(&stream, &mut reader, me)?;
    Ok((
        Session {
            stream,
            reader,
            version: list.version,
            timeout_ms: list.timeout_ms,
        },
        list,
    ))
}

/// Why `follow` gave up its connection.
enum Ended {
    Lost(String),
    /// A manager the config names before the current one accepts connections again.
    EarlierAnswers(SocketAddr),
}

/// Heartbeats between two looks at the managers named before the current one. Three beats
/// are at most the manager's time-out (a beat is at most a third of it), so servants that
/// move back one after another all arrive within the grace period in which each keeps the
/// peers the returned manager does not list yet.
const LOOK_BACK_EVERY: u32 = 3;

/// The article's `Winsock1_DataArrival` and its heartbeat, for the life of one connection:
/// reads pushes and sends heartbeats until the connection fails (`Some(Ended::Lost)`), one
/// of the `earlier` managers answers again, or the core is gone (`None`).
fn follow(
    mut reader: LineReader<TcpStream>,
    mut version: u64,
    timeout_ms: u64,
    heartbeat: Duration,
    writer: &ManagerWriter,
    events: &Sender<LinkEvent>,
    earlier: &[SocketAddr],
) -> Option<Ended> {
    // Beat at least three times per manager time-out, whatever the config says.
    let beat = match timeout_ms {
        0 => heartbeat,
        t => heartbeat.min(Duration::from_millis(t / 3)),
    }
    .max(Duration::from_millis(50));
    // Each beat is answered; this much silence means the manager (or the path) is dead.
    let silence_limit = (beat * 3).max(Duration::from_secs(3));
    let _ = reader.get_ref().set_read_timeout(Some(beat));
    let mut last_beat = Instant::now();
    let mut last_heard = Instant::now();
    let mut beats = 0u32;
    loop {
        let event = match reader.read_line() {
            Ok(Some(line)) => {
                last_heard = Instant::now();
                match ManagerMessage::parse(&line) {
                    Ok(ManagerMessage::Peers(list)) => {
                        version = list.version;
                        Some(LinkEvent::List(list))
                    }
                    Ok(ManagerMessage::Unchanged { version: v }) if v == version => None,
                    Ok(ManagerMessage::Join { version: v, peers }) if v == version + 1 => {
                        version = v;
                        Some(LinkEvent::Join(peers))
                    }
                    Ok(ManagerMessage::Leave { version: v, peers }) if v == version + 1 => {
                        version = v;
                        Some(LinkEvent::Leave(peers))
                    }
                    Ok(
                        ManagerMessage::Join { version: v, .. }
                        | ManagerMessage::Leave { version: v, .. },
                    ) if v <= version => None,
                    Ok(ManagerMessage::Error(e)) => {
                        warn!("the connection manager says: {e}");
                        None
                    }
                    Ok(ManagerMessage::Pull(relay)) => Some(LinkEvent::Pull(relay)),
                    Ok(other) => {
                        debug!("list out of step ({other:?} after version {version}); asking for the whole list");
                        if let Err(e) = writer.send(&ManagerCommand::NeedsPeerList { since: None })
                        {
                            return Some(Ended::Lost(e.to_string()));
                        }
                        None
                    }
                    Err(e) => {
                        warn!("from the connection manager: {e}; line skipped");
                        None
                    }
                }
            }
            Ok(None) => return Some(Ended::Lost("the manager closed the connection".into())),
            Err(LineError::Idle) => None,
            Err(LineError::Io(e)) => return Some(Ended::Lost(e.to_string())),
            Err(e) => {
                warn!("from the connection manager: {e}; line skipped");
                None
            }
        };
        if let Some(ev) = event {
            if events.send(ev).is_err() {
                return None;
            }
        }
        if last_heard.elapsed() > silence_limit {
            return Some(Ended::Lost(format!(
                "no answer for {:.1}s",
                last_heard.elapsed().as_secs_f64()
            )));
        }
        if last_beat.elapsed() >= beat {
            last_beat = Instant::now();
            if let Err(e) = writer.send(&ManagerCommand::NeedsPeerList {
                since: Some(version),
            }) {
                return Some(Ended::Lost(e.to_string()));
            }
            beats = beats.wrapping_add(1);
            if !earlier.is_empty() && beats.is_multiple_of(LOOK_BACK_EVERY) {
                // A bare connection, closed at once: the manager takes it for nothing.
                let wait = beat.min(Duration::from_secs(1));
                if let Some(a) = earlier
                    .iter()
                    .find(|a| TcpStream::connect_timeout(a, wait).is_ok())
                {
                    return Some(Ended::EarlierAnswers(*a));
                }
            }
        }
    }
}
