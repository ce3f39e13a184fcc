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
//!
//! A config may name several managers. The link registers with the first that accepts and
//! answers, and moves on to the next when it is lost. While registered with a later one, a
//! short-lived `manager-look` thread tries every few beats to register with the earlier
//! ones; when one does, the link follows it and closes the other, so servants that share
//! a config end up with the same manager again.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use log::{debug, info, warn};

use crate::lines::{LineError, LineReader};
use crate::protocol::{ManagerCommand, ManagerMessage, PeerEntry, PeerList, PEER_DOC_LINE_LIMIT};

use super::registering::{connect_first, register, Managers, Registration};

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Servants asked for by a quiet link's heartbeat, every `SAMPLE_BEATS`th beat; the
/// other beats say `needs no changes`, which the manager answers in one short line.
/// The overlay's own shuffles keep a servant's reserve fresh; with a sample at every
/// 2 s beat, 1,000 idle servants took in 4,000 sampled servants a second, nearly all of
/// them known already.
const QUIET_SAMPLE: usize = 8;
const SAMPLE_BEATS: u32 = 5;

/// What the link tells the core.
#[derive(Debug)]
pub enum LinkEvent {
    /// (Re)registered; `list` is the whole list at that moment. `another`: with another
    /// manager than the last time (the config names several).
    Up {
        list: PeerList,
        another: bool,
    },
    /// The whole list, after a gap in the changes.
    List(PeerList),
    Join(Vec<PeerEntry>),
    Leave(Vec<PeerEntry>),
    /// The connection to the manager is lost; the link is reconnecting.
    Down(String),
    /// We cannot be reached: pull from this relay (`None`: stop pulling).
    Pull(Option<PeerEntry>),
    /// A few listed servants, the answer to a quiet link's heartbeat (`needs sample`).
    Sample(Vec<PeerEntry>),
}

/// Where the link's events go: straight into the core's channel, each made the core's
/// own kind of event by `wrap`, so no thread stands between the two.
pub struct Events<E> {
    pub tx: Sender<E>,
    pub wrap: fn(LinkEvent) -> E,
}

impl<E> Events<E> {
    /// `Err` once the core is gone.
    fn send(&self, ev: LinkEvent) -> Result<(), ()> {
        self.tx.send((self.wrap)(ev)).map_err(drop)
    }
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
    /// Set by the core once it is in the overlay: the manager is asked for no more
    /// `<join>`/`<leave>` (`needs no changes`), and each heartbeat asks for a sample.
    quiet: AtomicBool,
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

    /// `true`: from now on, and after every reconnection, no pushes of the list's
    /// changes and a sample at each heartbeat. In an overlay of a thousand servants,
    /// each join pushed to everyone costs the manager a million lines and every servant
    /// a thousand. `false`: the changes pushed again, after the whole list.
    pub fn set_quiet(&self, quiet: bool) {
        if self.quiet.swap(quiet, Ordering::SeqCst) == quiet {
            return;
        }
        let cmd = if quiet {
            ManagerCommand::NeedsNoChanges
        } else {
            ManagerCommand::NeedsChanges
        };
        if let Err(e) = self.send(&cmd) {
            debug!(
                "{} not sent now ({e}); the link says it on reconnecting",
                cmd.to_line()
            );
        }
    }

    fn quiet(&self) -> bool {
        self.quiet.load(Ordering::SeqCst)
    }

    fn leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    fn set(&self, stream: Option<TcpStream>) {
        *self.lock() = stream;
    }

    /// The article's complaint: tells the manager we cannot reach the servant with `id`.
    pub fn complain(&self, id: &str) {
        if let Err(e) = self.send(&ManagerCommand::Complain { id: id.to_owned() }) {
            debug!("complaint about {id} not sent: {e}");
        }
    }

    /// Asks the manager for another relay: ours passes on nothing of what others say.
    pub fn replace_relay(&self) -> io::Result<()> {
        self.send(&ManagerCommand::ReplaceRelay)
    }

    /// Says `bye` and closes, so the manager drops us at once.
    pub fn bye(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        let _ = self.send(&ManagerCommand::Bye);
        if let Some(s) = self.lock().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// An open, registered connection to the manager.
pub struct Session {
    /// Which of the config's managers (an index into `Managers`).
    pub manager: usize,
    pub stream: TcpStream,
    pub reader: LineReader<TcpStream>,
    /// The version of the list that answered the registration.
    pub version: u64,
    /// The manager's time-out for silent servants, from that list.
    pub timeout_ms: u64,
}

/// The `manager-link` thread: keeps the list current over `session` and reconnects when
/// it breaks (or first connects, when there is none yet). Runs until the core is gone.
pub fn run<E>(
    managers: Managers,
    me: Registration,
    heartbeat: Duration,
    mut session: Option<Session>,
    writer: &ManagerWriter,
    events: Events<E>,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut failures = 0u32;
    // Which manager we were last registered with, to say so when another one takes over.
    let mut current = session.as_ref().map(|s| s.manager);
    loop {
        if writer.leaving() {
            return;
        }
        let s = match session.take() {
            Some(s) => s,
            None => match reconnect(&managers, &me) {
                Ok((s, list)) => {
                    let another = current.is_some_and(|c| c != s.manager);
                    if another {
                        info!("registered with the connection manager at {}", at(&s));
                    } else if failures > 0 {
                        info!("connection manager is back after {failures} failed tries");
                    }
                    current = Some(s.manager);
                    failures = 0;
                    backoff = BACKOFF_FIRST;
                    if events.send(LinkEvent::Up { list, another }).is_err() {
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
        if writer.quiet() {
            let _ = writer.send(&ManagerCommand::NeedsNoChanges);
        }
        // The managers the config names before this one: the servant goes back to the
        // first of them that registers it again, so servants do not stay split between two.
        let look_back = LookBack {
            earlier: &managers[..s.manager],
            me: &me,
        };
        let was = at(&s);
        let why = follow(
            s.reader,
            s.version,
            s.timeout_ms,
            heartbeat,
            writer,
            &events,
            look_back,
        );
        writer.set(None);
        let _ = s.stream.shutdown(Shutdown::Both);
        match why {
            Some(_) if writer.leaving() => return,
            Some(Ended::Lost(why)) => {
                warn!("lost the connection manager: {why}; keeping the peers we know and reconnecting");
                if events.send(LinkEvent::Down(why)).is_err() {
                    return;
                }
            }
            // Already registered there: the old connection is closed, the new one followed.
            Some(Ended::Moved(new, list)) => {
                info!(
                    "registered with the connection manager at {}, named earlier in the config, which answers again; left the one at {}",
                    at(&new),
                    was
                );
                current = Some(new.manager);
                if events
                    .send(LinkEvent::Up {
                        list,
                        another: true,
                    })
                    .is_err()
                {
                    return;
                }
                session = Some(new);
            }
            None => return,
        }
    }
}

/// Where a session's manager is, for logs.
fn at(s: &Session) -> String {
    s.stream
        .peer_addr()
        .map_or_else(|_| "(unknown)".into(), |a| a.to_string())
}

/// Connects to the first manager in `managers` that registers us again, with the port we
/// already listen on.
fn reconnect(managers: &[Vec<SocketAddr>], me: &Registration) -> io::Result<(Session, PeerList)> {
    let ((stream, reader, list), manager) = connect_first(managers, |stream| {
        let mut reader = LineReader::new(stream.try_clone()?, PEER_DOC_LINE_LIMIT);
        let list = register(&stream, &mut reader, me)?;
        Ok((stream, reader, list))
    })?;
    Ok((
        Session {
            manager,
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
    /// Registered with a manager the config names before the current one.
    Moved(Session, PeerList),
}

/// Heartbeats between two looks at the managers named before the current one. Three beats
/// are at most the manager's time-out (a beat is at most a third of it), so servants that
/// move back one after another all arrive within the grace period in which each keeps the
/// peers the returned manager does not list yet.
const LOOK_BACK_EVERY: u32 = 3;

/// The managers named before the current one, and who we are, to register there again.
struct LookBack<'a> {
    earlier: &'a [Vec<SocketAddr>],
    me: &'a Registration,
}

impl LookBack<'_> {
    /// Tries to register with an earlier manager on a thread of its own (`manager-look`),
    /// so that a manager that is slow to connect or answer never holds up our heartbeat;
    /// the result comes on the returned channel. `None` when there is nothing to look at.
    fn start(&self) -> Option<Receiver<io::Result<(Session, PeerList)>>> {
        if self.earlier.is_empty() {
            return None;
        }
        let (tx, rx) = bounded(1);
        let (earlier, me) = (self.earlier.to_vec(), self.me.clone());
        let spawned = std::thread::Builder::new()
            .name("manager-look".into())
            .spawn(move || {
                let _ = tx.send(reconnect(&earlier, &me));
            });
        match spawned {
            Ok(_) => Some(rx),
            Err(e) => {
                debug!("cannot look for an earlier connection manager now: {e}");
                None
            }
        }
    }
}

/// The article's `Winsock1_DataArrival` and its heartbeat, for the life of one connection:
/// reads pushes and sends heartbeats until the connection fails (`Some(Ended::Lost)`), a
/// manager named earlier in the config registers us again (`Some(Ended::Moved)`), or the
/// core is gone (`None`).
fn follow<E>(
    mut reader: LineReader<TcpStream>,
    mut version: u64,
    timeout_ms: u64,
    heartbeat: Duration,
    writer: &ManagerWriter,
    events: &Events<E>,
    look_back: LookBack,
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
    // A look at the earlier managers under way.
    let mut looking: Option<Receiver<io::Result<(Session, PeerList)>>> = None;
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
                    Ok(ManagerMessage::Sample { peers, .. }) => Some(LinkEvent::Sample(peers)),
                    // Quiet: the list moves on without us; nothing to catch up with.
                    Ok(
                        ManagerMessage::Unchanged { version: v }
                        | ManagerMessage::Join { version: v, .. }
                        | ManagerMessage::Leave { version: v, .. },
                    ) if writer.quiet() => {
                        version = v;
                        None
                    }
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
                        warn!("the connection manager says: {}", crate::escape::Shown(&e));
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
            let beat = match (writer.quiet(), beats.is_multiple_of(SAMPLE_BEATS)) {
                (true, true) => ManagerCommand::NeedsSample {
                    count: QUIET_SAMPLE,
                },
                (true, false) => ManagerCommand::NeedsNoChanges,
                (false, _) => ManagerCommand::NeedsPeerList {
                    since: Some(version),
                },
            };
            if let Err(e) = writer.send(&beat) {
                return Some(Ended::Lost(e.to_string()));
            }
            beats = beats.wrapping_add(1);
            if looking.is_none() && beats.is_multiple_of(LOOK_BACK_EVERY) {
                looking = look_back.start();
            }
        }
        if let Some(rx) = &looking {
            match rx.try_recv() {
                Ok(Ok((session, list))) => return Some(Ended::Moved(session, list)),
                Ok(Err(e)) => {
                    debug!(
                        "the connection managers named earlier in the config do not answer: {e}"
                    );
                    looking = None;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => looking = None,
            }
        }
    }
}
