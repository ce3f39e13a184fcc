//! Fetching pieces: the schedule a download's workers share, and the `get-NAME-K` worker
//! threads. Step 4 of a download.
//!
//! Each worker holds one connection to a source and takes pieces from the schedule in
//! short locked blocks; a piece that fails its hash is fetched again elsewhere and its
//! source is dropped, and a dead, slow or busy source's pieces go back for the others.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::ask::{connect, err, read_line, Peer, BUSY_PAUSE};
use super::progress::Progress;
use super::record::StateFile;
use crate::lines::LineReader;
use crate::transfer::manifest::{hash_piece, Manifest};
use crate::transfer::Pieces;

/// Failures in a row after which a source is given up for this round.
const SOURCE_FAILURES: u32 = 2;

/// The pieces still to fetch and who may send them. Shared by a download's workers, each
/// time in a short block.
pub(super) struct Schedule {
    missing: VecDeque<usize>,
    in_flight: HashSet<usize>,
    pub(super) sources: Vec<SourceState>,
}

pub(super) struct SourceState {
    pub(super) peer: Peer,
    /// Workers using it now.
    busy: usize,
    failures: u32,
    /// Out of this round (dead, slow, or lying).
    out: bool,
    /// Sent a piece that failed its hash: out for the rest of the download.
    pub(super) lied: bool,
    /// Said it is busy (its upload cap): not asked again before this.
    paused_until: Instant,
    /// Pieces it said it does not have (a partial source).
    lacks: HashSet<usize>,
    pub(super) pieces: u64,
}

enum Take {
    Job { piece: usize, source: usize },
    Wait,
    Finished,
    Stuck,
}

impl SourceState {
    /// A source at the start of a round: idle, with no failures.
    pub(super) fn new(peer: Peer) -> SourceState {
        SourceState {
            peer,
            busy: 0,
            failures: 0,
            out: false,
            lied: false,
            paused_until: Instant::now(),
            lacks: HashSet::new(),
            pieces: 0,
        }
    }
}

impl Schedule {
    /// A round's schedule: `missing` to be fetched from `sources`.
    pub(super) fn new(missing: VecDeque<usize>, sources: Vec<SourceState>) -> Schedule {
        Schedule {
            missing,
            in_flight: HashSet::new(),
            sources,
        }
    }

    fn take(&mut self, current: Option<usize>) -> Take {
        if self.missing.is_empty() {
            return if self.in_flight.is_empty() {
                Take::Finished
            } else {
                Take::Wait
            };
        }
        // Prefer the source this worker is connected to unless another is idler.
        let now = Instant::now();
        let mut order: Vec<usize> = (0..self.sources.len())
            .filter(|&s| !self.sources[s].out && self.sources[s].paused_until <= now)
            .collect();
        order.sort_by_key(|&s| (self.sources[s].busy, Some(s) != current));
        for s in order {
            if let Some(pos) = self
                .missing
                .iter()
                .position(|p| !self.sources[s].lacks.contains(p))
            {
                let piece = self.missing.remove(pos).expect("position is in range");
                self.in_flight.insert(piece);
                self.sources[s].busy += 1;
                return Take::Job { piece, source: s };
            }
        }
        let paused = self.sources.iter().any(|s| !s.out && s.paused_until > now);
        if self.in_flight.is_empty() && !paused {
            Take::Stuck
        } else {
            Take::Wait
        }
    }

    fn finish(&mut self, piece: usize, source: usize, ok: bool) {
        self.in_flight.remove(&piece);
        let s = &mut self.sources[source];
        s.busy = s.busy.saturating_sub(1);
        if ok {
            s.failures = 0;
            s.pieces += 1;
        } else {
            self.missing.push_front(piece);
        }
    }
}

pub(super) fn lock(s: &Mutex<Schedule>) -> MutexGuard<'_, Schedule> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// One worker: a connection to one source at a time, a piece at a time.
pub(super) struct Worker<'a> {
    pub(super) id: &'a str,
    pub(super) manifest: &'a Manifest,
    pub(super) file: &'a File,
    pub(super) state: &'a StateFile,
    pub(super) pieces: &'a Pieces,
    pub(super) sched: &'a Mutex<Schedule>,
    pub(super) progress: &'a Progress,
}

/// How fetching one piece went.
enum Fetch {
    Ok,
    /// The source does not have it (a partial source).
    Lacks,
    /// The data did not match the piece's hash: the source lies or is broken.
    Corrupt,
    /// The source serves as many uploads as it will (`ERR busy`): ask it again later.
    Busy,
    Failed(io::Error),
}

impl Worker<'_> {
    pub(super) fn run(self) {
        let mut conn: Option<(usize, TcpStream, LineReader<TcpStream>)> = None;
        let mut buf = Vec::new();
        loop {
            let current = conn.as_ref().map(|c| c.0);
            // Taken in a statement of its own: the schedule's lock must be released
            // before this worker sleeps, or the others cannot report their pieces.
            let next = lock(self.sched).take(current);
            let (piece, source) = match next {
                Take::Job { piece, source } => (piece, source),
                Take::Wait => {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Take::Finished | Take::Stuck => return,
            };
            if current != Some(source) {
                let addr = lock(self.sched).sources[source].peer.addr;
                conn = match connect(addr) {
                    Ok((s, r)) => Some((source, s, r)),
                    Err(e) => {
                        self.failed(piece, source, &e);
                        None
                    }
                };
                if conn.is_none() {
                    continue;
                }
            }
            let (_, stream, reader) = conn.as_mut().expect("connected above");
            match self.fetch(stream, reader, piece, &mut buf) {
                Fetch::Ok => lock(self.sched).finish(piece, source, true),
                Fetch::Lacks => {
                    let mut s = lock(self.sched);
                    s.sources[source].lacks.insert(piece);
                    s.finish(piece, source, false);
                }
                Fetch::Corrupt => {
                    let mut s = lock(self.sched);
                    let label = s.sources[source].peer.label.clone();
                    s.sources[source].out = true;
                    s.sources[source].lied = true;
                    s.finish(piece, source, false);
                    drop(s);
                    warn!("piece {piece} of {} from {label} failed verification; no more pieces from {label}", self.manifest.name);
                    conn = None;
                }
                Fetch::Busy => {
                    let mut s = lock(self.sched);
                    s.sources[source].paused_until = Instant::now() + BUSY_PAUSE;
                    s.finish(piece, source, false);
                    conn = None;
                }
                Fetch::Failed(e) => {
                    self.failed(piece, source, &e);
                    conn = None;
                }
            }
        }
    }

    fn failed(&self, piece: usize, source: usize, e: &io::Error) {
        let mut s = lock(self.sched);
        let src = &mut s.sources[source];
        src.failures += 1;
        if src.failures >= SOURCE_FAILURES && !src.out {
            src.out = true;
            warn!(
                "source {} failed ({e}); its pieces go to the others",
                src.peer.label
            );
        } else {
            debug!("piece {piece} from {}: {e}", src.peer.label);
        }
        s.finish(piece, source, false);
    }

    fn fetch(
        &self,
        stream: &mut TcpStream,
        reader: &mut LineReader<TcpStream>,
        piece: usize,
        buf: &mut Vec<u8>,
    ) -> Fetch {
        if let Err(e) = stream.write_all(format!("GET {} {piece}\n", self.id).as_bytes()) {
            return Fetch::Failed(e);
        }
        let head = match read_line(reader) {
            Ok(h) => h,
            Err(e) => return Fetch::Failed(e),
        };
        if head.starts_with("ERR missing piece") {
            return Fetch::Lacks;
        }
        if head.starts_with("ERR busy") {
            return Fetch::Busy;
        }
        let len = self.manifest.piece_len(piece) as usize;
        if head != format!("DATA {piece} {len}") {
            return Fetch::Failed(err(
                io::ErrorKind::InvalidData,
                format!(
                    "unexpected answer {:?}",
                    head.chars().take(60).collect::<String>()
                ),
            ));
        }
        buf.resize(len, 0);
        if let Err(e) = reader.read_bytes(buf) {
            return Fetch::Failed(e);
        }
        if hash_piece(buf) != self.manifest.pieces[piece] {
            return Fetch::Corrupt;
        }
        // Written in place first, recorded second: a record never names a piece that is
        // not on disk.
        if let Err(e) = self
            .file
            .write_all_at(buf, piece as u64 * self.manifest.piece_size)
        {
            return Fetch::Failed(err(
                io::ErrorKind::Other,
                format!("cannot write piece {piece}: {e}"),
            ));
        }
        if let Err(e) = self.state.record(piece) {
            warn!("cannot record piece {piece}: {e}");
        }
        self.pieces.set(piece);
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        self.progress.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Fetch::Ok
    }
}
