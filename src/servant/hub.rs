//! The relay's side of a relayed pull: what this servant sends to the servants that pull
//! from it.
//!
//! The article's closing section: when the manager concludes that a servant cannot be
//! reached, it tells it to pull from a chosen peer, which publishes to it all the data it
//! gets, for the life of that servant. `Hub` is that publishing: every message this
//! servant shows or writes is recorded in a bounded history and handed to each attached
//! puller's `relay-NAME` writer thread. A new puller first gets, from the history,
//! everything newer than what it says it has seen (`SEEN`), so nothing is lost when a
//! puller changes relays. The pulling side is `puller`; the listener hands a `PULL`
//! connection here once its handshake has proved who it is and the manager has assigned
//! it to us.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use log::{debug, info, warn};

use super::linking::PING_EVERY;
use crate::escape::Shown;
use crate::handshake::Link;
use crate::lines::{LineError, LineReader};
use crate::protocol::PeerLine;

/// Messages kept to catch a new puller up, and the most bytes they may take.
const HISTORY: usize = 4096;
const HISTORY_BYTES: usize = 4 << 20;
/// Lines queued for one puller before it counts as too slow and is disconnected (it
/// reconnects and is caught up from the history).
const PULL_QUEUE: usize = 4096;
/// `SEEN` lines accepted after one `PULL`.
const MAX_SEEN: usize = 100_000;
/// How long before a servant was first listed here its relay may catch it up from.
const LIST_SLACK: Duration = Duration::from_secs(5);

/// One message in the history: its `MSG` line as sent or received (with or without its
/// `\n`), one allocation per message.
struct Recorded {
    /// The writer's id is `line[4..4 + origin_len]` (`MSG ORIGIN ...`).
    origin_len: usize,
    incarnation: u64,
    seq: u64,
    line: Arc<str>,
    /// When it was recorded here, for `SINCE`.
    at: Instant,
}

impl Recorded {
    fn origin(&self) -> &str {
        &self.line[4..4 + self.origin_len]
    }
}

struct Attached {
    serial: u64,
    /// The puller's id: its own messages are not sent back to it.
    id: String,
    tx: Sender<Arc<str>>,
    socket: TcpStream,
}

#[derive(Default)]
struct HubState {
    history: VecDeque<Recorded>,
    history_bytes: usize,
    pullers: Vec<Attached>,
    serial: u64,
}

/// The relay side. Written by every `recv-` thread and the core (`record`) and by the
/// `recv-` thread of each pull connection (`attach`, `detach`), each in a short block.
#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a message this servant showed or wrote, and passes it to every puller but
    /// its writer. History and hand-over happen under one lock, so a puller attaching at
    /// the same moment gets the message exactly once: from the history or live.
    ///
    /// `line` is the message's `MSG` line as it was sent or received (with or without its
    /// `\n`): relayed as it is, rather than printed again for every message.
    pub fn record(&self, origin: &str, incarnation: u64, seq: u64, line: &str) {
        if line.get(..4) != Some("MSG ") || line.get(4..4 + origin.len()) != Some(origin) {
            warn!("not relaying message {seq} from {origin}: not a MSG line of its own");
            return;
        }
        let line: Arc<str> = Arc::from(line);
        let mut st = self.lock();
        st.history_bytes += line.len();
        st.history.push_back(Recorded {
            origin_len: origin.len(),
            incarnation,
            seq,
            line: Arc::clone(&line),
            at: Instant::now(),
        });
        while st.history.len() > HISTORY || st.history_bytes > HISTORY_BYTES {
            match st.history.pop_front() {
                Some(old) => st.history_bytes -= old.line.len(),
                None => break,
            }
        }
        let mut slow = Vec::new();
        for p in &st.pullers {
            if p.id == origin {
                continue;
            }
            if let Err(TrySendError::Full(_)) = p.tx.try_send(Arc::clone(&line)) {
                slow.push(p.serial);
            }
        }
        // A puller that cannot keep up is cut off; it reconnects and is caught up from the
        // history, which is cheaper than an unbounded queue.
        let closing: Vec<TcpStream> = st
            .pullers
            .iter()
            .filter(|p| slow.contains(&p.serial))
            .filter_map(|p| p.socket.try_clone().ok())
            .collect();
        st.pullers.retain(|p| !slow.contains(&p.serial));
        drop(st);
        for s in closing {
            warn!("a relayed servant is not keeping up; disconnected it (it will be caught up)");
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Attaches a puller that has seen `seen`: queues what it missed from the history, then
    /// everything new. Returns the serial to detach with and how many were caught up.
    fn attach(
        &self,
        id: &str,
        seen: &HashMap<String, (u64, u64)>,
        (since, not_before): (Option<Instant>, Instant),
        tx: Sender<Arc<str>>,
        socket: TcpStream,
    ) -> (u64, usize) {
        let mut st = self.lock();
        let mut caught_up = 0;
        for r in &st.history {
            // Nothing from before the manager made us its relay.
            if r.origin() == id || r.at < not_before {
                continue;
            }
            let missed = match seen.get(r.origin()) {
                Some(&s) => (r.incarnation, r.seq) > s,
                None => since.is_some_and(|t| r.at >= t),
            };
            if missed && tx.try_send(Arc::clone(&r.line)).is_ok() {
                caught_up += 1;
            }
        }
        st.serial += 1;
        let serial = st.serial;
        st.pullers.push(Attached {
            serial,
            id: id.to_owned(),
            tx,
            socket,
        });
        (serial, caught_up)
    }

    fn detach(&self, serial: u64) {
        self.lock().pullers.retain(|p| p.serial != serial);
    }

    /// The ids of the servants pulling from us, for `/peers`.
    pub fn pullers(&self) -> Vec<String> {
        self.lock().pullers.iter().map(|p| p.id.clone()).collect()
    }
}

/// Serves a `PULL` connection on the relay: reads the `SEEN` lines up to `END`, catches the
/// puller up, then forwards everything until the connection ends. `assigned` is when the
/// manager listed this servant as pulling from us: only what we recorded since then is sent
/// (a relay is not a way for anyone to read all chat).
pub fn serve_pull(
    stream: &TcpStream,
    reader: &mut LineReader<&TcpStream>,
    peer: SocketAddr,
    link: &Link,
    (hub, assigned): (&Hub, Instant),
) -> String {
    let (id, name) = (link.peer_id.as_str(), Shown(&link.name).to_string());
    let name = name.as_str();
    let mut seen = HashMap::new();
    let mut since = None;
    loop {
        let line = match reader.read_line() {
            Ok(Some(line)) => line,
            Ok(None) => return "closed before END".into(),
            Err(LineError::Idle) => return "no END in time".into(),
            Err(e) => return e.to_string(),
        };
        match PeerLine::parse(&line) {
            Some(Ok(PeerLine::Seen {
                origin,
                incarnation,
                seq,
            })) if seen.len() < MAX_SEEN => {
                seen.insert(origin, (incarnation, seq));
            }
            Some(Ok(PeerLine::Since { ms })) => {
                since = Instant::now().checked_sub(Duration::from_millis(ms));
            }
            Some(Ok(PeerLine::End)) => break,
            _ => {
                return format!(
                    "expected SEEN or END after PULL, got {:?}",
                    Shown(&line.chars().take(40).collect::<String>())
                )
            }
        }
    }
    let (tx, rx) = bounded::<Arc<str>>(PULL_QUEUE);
    let (Ok(writer), Ok(closer)) = (stream.try_clone(), stream.try_clone()) else {
        return "cannot use the connection".into();
    };
    let spawned = thread::Builder::new()
        .name(format!("relay-{name}"))
        .spawn(move || forward(writer, rx));
    if let Err(e) = spawned {
        return format!("cannot start a thread: {e}");
    }
    // A change reaches us a moment after the manager makes it (it gathers changes for
    // 50 ms, and we may be busy): allow that much before the servant was listed here.
    let not_before = assigned.checked_sub(LIST_SLACK).unwrap_or(assigned);
    let (serial, caught_up) = hub.attach(id, &seen, (since, not_before), tx, closer);
    info!("relaying to {name} at {peer} ({caught_up} missed message(s) sent first)");
    // The puller sends nothing more but PINGs; its closing ends the relay.
    let _ = stream.set_read_timeout(None);
    let why = loop {
        match reader.read_line() {
            Ok(Some(_)) => continue,
            Ok(None) => break "closed".to_owned(),
            Err(LineError::Idle) => continue,
            Err(e) => break e.to_string(),
        }
    };
    hub.detach(serial);
    info!("stopped relaying to {name}: {why}");
    why
}

/// The `relay-NAME` thread: writes forwarded lines, everything queued in one write, and a
/// `PING` when idle (so a dead puller is noticed). Ends when the hub detaches it.
fn forward(mut stream: TcpStream, rx: Receiver<Arc<str>>) {
    let mut buf = Vec::new();
    loop {
        let first = match rx.recv_timeout(PING_EVERY) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => Arc::from(PeerLine::Ping.to_line()),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        buf.clear();
        push_line(&mut buf, &first);
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => push_line(&mut buf, &more),
                Err(_) => break,
            }
        }
        if let Err(e) = stream.write_all(&buf) {
            debug!("relay write failed: {e}");
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Appends a line to what is written next, with its `\n` (recorded lines may lack it).
fn push_line(buf: &mut Vec<u8>, line: &str) {
    buf.extend_from_slice(line.as_bytes());
    if !line.ends_with('\n') {
        buf.push(b'\n');
    }
}
