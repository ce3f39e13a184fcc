//! Downloading a file from every peer that has it, several pieces at a time, verified,
//! resumable.
//!
//! `/get NAME` starts a `get-NAME` thread (`start`), which:
//! 1. asks every peer what it shares (`FILES`) and picks the file by that name that most
//!    peers offer (a file is its manifest id, so peers offering other content under the same
//!    name do not mix in);
//! 2. fetches the manifest from a source and checks that it hashes to the id;
//! 3. opens `.NAME.part` (the file being filled in place) and `.NAME.state` (the verified
//!    pieces, one number a line, appended after each piece is written); on a resume the
//!    pieces listed there are checked against the manifest again, so the state is true
//!    whatever a kill -9 interrupted;
//! 4. runs `<workers>` threads (`get-NAME-K`), each holding one connection to a source and
//!    taking pieces from a shared schedule: a piece that fails its hash is fetched again
//!    from another source and the source that sent it is dropped; a dead or slow source's
//!    pieces go back to the schedule for the others;
//! 5. when every piece is in, checks the whole-file hash and only then renames the file to
//!    NAME. It then serves the file whole; while downloading it serves its verified pieces.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, info, warn};

use super::manifest::{hash_piece, hex, parse_hex, Manifest};
use super::{valid_name, Library, Pieces};
use crate::lines::{LineError, LineReader};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A piece not received within this time counts as a failure of its source.
const PIECE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest line in a file conversation (a `FILE` line with a long name, a manifest header).
const LINE_LIMIT: usize = 1024;
/// Failures in a row after which a source is given up for this round.
const SOURCE_FAILURES: u32 = 2;
/// How long a source that said it is busy is left alone.
const BUSY_PAUSE: Duration = Duration::from_millis(300);
/// Rounds of asking the peers again when every source has failed.
const ROUNDS: u32 = 4;

/// A peer to ask.
#[derive(Debug, Clone)]
pub struct Peer {
    pub label: String,
    pub addr: SocketAddr,
}

/// A file as a peer offers it (`FILE ID SIZE STATE NAME`).
#[derive(Debug, Clone)]
pub struct Offer {
    pub peer: Peer,
    pub id: String,
    pub size: u64,
    pub complete: bool,
    pub name: String,
}

fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

fn read_line(r: &mut LineReader<TcpStream>) -> io::Result<String> {
    match r.read_line() {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(err(io::ErrorKind::UnexpectedEof, "closed")),
        Err(LineError::Idle) => Err(err(io::ErrorKind::TimedOut, "no answer in time")),
        Err(LineError::Io(e)) => Err(e),
        Err(e) => Err(err(io::ErrorKind::InvalidData, e.to_string())),
    }
}

fn connect(addr: SocketAddr) -> io::Result<(TcpStream, LineReader<TcpStream>)> {
    let s = crate::dial::connect(&addr, CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(PIECE_TIMEOUT))?;
    s.set_write_timeout(Some(PIECE_TIMEOUT))?;
    let r = LineReader::new(s.try_clone()?, LINE_LIMIT);
    Ok((s, r))
}

/// Asks one peer what it shares.
pub fn list_files(peer: &Peer) -> io::Result<Vec<Offer>> {
    when_not_busy(|| list_files_once(peer))
}

/// Runs `ask` again while the source answers `ERR busy`, for a few seconds: a source's
/// slots held by clients that take nothing are freed for a newcomer within about 2 s
/// (see `slots`), so being told "busy" once is no reason to think it shares nothing.
fn when_not_busy<T>(mut ask: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut pause = BUSY_PAUSE;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match ask() {
            Err(e)
                if e.kind() == io::ErrorKind::ResourceBusy
                    && std::time::Instant::now() < deadline =>
            {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// A source's `ERR REASON` as an error; `busy` (its upload slots) is `ResourceBusy`, which
/// `when_not_busy` asks again after.
fn refusal(reason: &str) -> io::Error {
    let kind = if reason.starts_with("busy") {
        io::ErrorKind::ResourceBusy
    } else {
        io::ErrorKind::Other
    };
    err(kind, reason)
}

fn list_files_once(peer: &Peer) -> io::Result<Vec<Offer>> {
    let (mut s, mut r) = connect(peer.addr)?;
    s.write_all(b"FILES\n")?;
    let mut out = Vec::new();
    loop {
        let line = read_line(&mut r)?;
        if line == "END" {
            return Ok(out);
        }
        if let Some(e) = line.strip_prefix("ERR ") {
            return Err(refusal(e));
        }
        let mut w = line.splitn(5, ' ');
        if let (Some("FILE"), Some(id), Some(size), Some(state), Some(name)) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        {
            if let (Ok(size), true) = (crate::encoding::parse_u64(size), valid_name(name)) {
                out.push(Offer {
                    peer: peer.clone(),
                    id: id.to_owned(),
                    size,
                    complete: state == "complete",
                    name: name.to_owned(),
                });
            }
        }
        if out.len() > 100_000 {
            return Err(err(io::ErrorKind::InvalidData, "too many files listed"));
        }
    }
}

/// Asks every peer at once (one thread each), for at most a few seconds.
pub fn list_all(peers: &[Peer]) -> Vec<Result<Vec<Offer>, (Peer, io::Error)>> {
    thread::scope(|scope| {
        let handles: Vec<_> = peers
            .iter()
            .map(|p| {
                let p2 = p.clone();
                thread::Builder::new()
                    .name(format!("files-{}", p.label))
                    .spawn_scoped(scope, move || list_files(&p2).map_err(|e| (p2.clone(), e)))
            })
            .collect();
        handles
            .into_iter()
            .zip(peers)
            .map(|(h, p)| match h {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err((p.clone(), err(io::ErrorKind::Other, "lister failed")))
                }),
                Err(e) => Err((p.clone(), e)),
            })
            .collect()
    })
}

/// Fetches and checks a manifest: it must hash to `id`.
fn fetch_manifest(peer: &Peer, id: &str) -> io::Result<Manifest> {
    when_not_busy(|| fetch_manifest_once(peer, id))
}

fn fetch_manifest_once(peer: &Peer, id: &str) -> io::Result<Manifest> {
    let (mut s, mut r) = connect(peer.addr)?;
    s.write_all(format!("MANIFEST {id}\n").as_bytes())?;
    let head = read_line(&mut r)?;
    if let Some(e) = head.strip_prefix("ERR ") {
        return Err(refusal(e));
    }
    let Some(rest) = head.strip_prefix("MANIFEST ") else {
        return Err(err(
            io::ErrorKind::InvalidData,
            format!("{}: {head}", peer.label),
        ));
    };
    let (said, mut m) =
        Manifest::parse_header(rest).map_err(|e| err(io::ErrorKind::InvalidData, e))?;
    for _ in 0..m.expected_pieces() {
        let line = read_line(&mut r)?;
        let h = line
            .strip_prefix("PIECE ")
            .and_then(parse_hex)
            .ok_or_else(|| err(io::ErrorKind::InvalidData, "bad PIECE line"))?;
        m.pieces.push(h);
    }
    if read_line(&mut r)? != "END" {
        return Err(err(io::ErrorKind::InvalidData, "manifest without END"));
    }
    if said != id || m.id() != id {
        return Err(err(
            io::ErrorKind::InvalidData,
            format!(
                "{}'s manifest does not match id {}",
                peer.label,
                &id[..16.min(id.len())]
            ),
        ));
    }
    Ok(m)
}

/// One download, as `/downloads` shows it. Written by the download's threads.
pub struct Progress {
    pub name: String,
    pub total: AtomicUsize,
    pub done: AtomicUsize,
    pub bytes: AtomicU64,
    pub state: Mutex<String>,
    pub started: Instant,
    /// How long it took, once it has ended.
    pub took: Mutex<Option<Duration>>,
}

impl Progress {
    fn end(&self, s: impl Into<String>) {
        *self.took.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.started.elapsed());
        self.set_state(s);
    }

    fn set_state(&self, s: impl Into<String>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s.into();
    }

    pub fn line(&self) -> String {
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let took = *self.took.lock().unwrap_or_else(|p| p.into_inner());
        let secs = took
            .unwrap_or(self.started.elapsed())
            .as_secs_f64()
            .max(0.001);
        let mib = self.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64;
        format!(
            "{:<24} {done}/{total} pieces {pct:>3}%  {:.1} MiB/s  {}",
            self.name,
            mib / secs,
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        )
    }
}

/// Every download of this run.
#[derive(Default)]
pub struct Downloads {
    list: Mutex<Vec<Arc<Progress>>>,
}

impl Downloads {
    pub fn lines(&self) -> Vec<String> {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.line())
            .collect()
    }

    fn running(&self, name: &str) -> bool {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|p| {
                p.name == name
                    && p.state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .starts_with("downloading")
            })
    }
}

/// What a download needs.
pub struct Job {
    pub name: String,
    pub peers: Vec<Peer>,
    pub library: Arc<Library>,
    pub workers: usize,
    /// Lines for standard output.
    pub out: Sender<String>,
    pub downloads: Arc<Downloads>,
}

/// Starts downloading `job.name` on a `get-NAME` thread.
pub fn start(job: Job) -> io::Result<()> {
    if job.downloads.running(&job.name) {
        let _ = job.out.send(format!(
            "{} is already downloading; /downloads shows it",
            job.name
        ));
        return Ok(());
    }
    let progress = Arc::new(Progress {
        name: job.name.clone(),
        total: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        bytes: AtomicU64::new(0),
        state: Mutex::new("downloading: looking for sources".into()),
        started: Instant::now(),
        took: Mutex::new(None),
    });
    job.downloads
        .list
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::clone(&progress));
    thread::Builder::new()
        .name(format!("get-{}", job.name))
        .spawn(move || {
            let out = job.out.clone();
            match run(&job, &progress) {
                Ok(done) => {
                    progress.end("done");
                    info!("{done}");
                    let _ = out.send(done);
                }
                Err(e) => {
                    progress.end(format!("stopped: {e}"));
                    warn!("download of {} stopped: {e}", job.name);
                    let part = job
                        .library
                        .downloads
                        .as_ref()
                        .map(|d| d.join(format!(".{}.part", job.name)));
                    let resumable = part.is_some_and(|p| p.exists());
                    let hint = if resumable {
                        format!("; /get {} resumes it", job.name)
                    } else {
                        String::new()
                    };
                    let _ = out.send(format!("download of {} stopped: {e}{hint}", job.name));
                }
            }
        })?;
    Ok(())
}

/// The pieces still to fetch and who may send them. Shared by a download's workers, each
/// time in a short block.
struct Schedule {
    missing: VecDeque<usize>,
    in_flight: HashSet<usize>,
    sources: Vec<SourceState>,
}

struct SourceState {
    peer: Peer,
    /// Workers using it now.
    busy: usize,
    failures: u32,
    /// Out of this round (dead, slow, or lying).
    out: bool,
    /// Sent a piece that failed its hash: out for the rest of the download.
    lied: bool,
    /// Said it is busy (its upload cap): not asked again before this.
    paused_until: Instant,
    /// Pieces it said it does not have (a partial source).
    lacks: HashSet<usize>,
    pieces: u64,
}

enum Take {
    Job { piece: usize, source: usize },
    Wait,
    Finished,
    Stuck,
}

impl Schedule {
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

fn lock(s: &Mutex<Schedule>) -> MutexGuard<'_, Schedule> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The on-disk progress record: `.NAME.state`, a header line naming the manifest, then the
/// number of each verified piece on a line of its own, appended after the piece is written.
struct StateFile {
    file: Mutex<File>,
}

impl StateFile {
    fn header(id: &str) -> String {
        format!("genp2p-download 1 {id}\n")
    }

    /// Pieces recorded for manifest `id`; empty when there is no record or it is for
    /// another file. A last line cut short by a crash is ignored.
    fn read(path: &Path, id: &str) -> Vec<usize> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        let Some(rest) = text.strip_prefix(&Self::header(id)) else {
            return Vec::new();
        };
        let complete = match rest.rfind('\n') {
            Some(i) => &rest[..=i],
            None => "",
        };
        complete.lines().filter_map(|l| l.parse().ok()).collect()
    }

    /// Starts a fresh record (atomically), then appends to it.
    fn create(path: &Path, id: &str, have: &[usize]) -> io::Result<StateFile> {
        let mut text = Self::header(id);
        for i in have {
            text.push_str(&format!("{i}\n"));
        }
        crate::files::write_atomically(path, text.as_bytes(), crate::files::Access::AsBefore)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(StateFile {
            file: Mutex::new(file),
        })
    }

    fn record(&self, piece: usize) -> io::Result<()> {
        // One write of a whole line: a kill -9 leaves it whole or absent.
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(format!("{piece}\n").as_bytes())
    }
}

fn run(job: &Job, progress: &Progress) -> Result<String, String> {
    let Some(dir) = job.library.downloads.clone() else {
        return Err("no <downloads> folder in the config".into());
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = &job.name;
    if !valid_name(name) {
        return Err(format!("{name:?} is not a file name that can be shared"));
    }
    let target = dir.join(name);
    if target.exists() {
        return Err(format!("{} already exists", target.display()));
    }

    // 1, 2: sources and manifest.
    let (offers, manifest) = find(job)?;
    let manifest = Arc::new(manifest);
    let id = manifest.id();
    let count = manifest.piece_count();
    progress.total.store(count, Ordering::Relaxed);

    // 3: the part file and the record, resumed when they are for this file.
    let part = dir.join(format!(".{name}.part"));
    let state_path = dir.join(format!(".{name}.state"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&part)
        .map_err(|e| format!("cannot open {}: {e}", part.display()))?;
    let pieces = Arc::new(Pieces::new(count));
    let recorded = StateFile::read(&state_path, &id);
    let mut verified = Vec::new();
    if !recorded.is_empty() {
        let mut buf = vec![0u8; manifest.piece_size as usize];
        for i in recorded.into_iter().filter(|&i| i < count) {
            let len = manifest.piece_len(i) as usize;
            if file
                .read_exact_at(&mut buf[..len], i as u64 * manifest.piece_size)
                .is_ok()
                && hash_piece(&buf[..len]) == manifest.pieces[i]
                && !pieces.has(i)
            {
                pieces.set(i);
                verified.push(i);
            }
        }
        let msg = format!(
            "resuming {name}: {} of {count} pieces already here and verified",
            verified.len()
        );
        info!("{msg}");
        let _ = job.out.send(msg);
    }
    file.set_len(manifest.size)
        .map_err(|e| format!("cannot size {}: {e}", part.display()))?;
    let state = StateFile::create(&state_path, &id, &verified)
        .map_err(|e| format!("cannot write {}: {e}", state_path.display()))?;
    progress.done.store(verified.len(), Ordering::Relaxed);
    job.library
        .add_partial(Arc::clone(&manifest), part.clone(), Arc::clone(&pieces));

    // 4: the workers, in rounds until every piece is in or no source is left.
    let mut offers = offers;
    let mut fetched_from: HashMap<String, u64> = HashMap::new();
    // Sources that sent a piece failing its hash: never asked again in this download.
    let mut liars: HashSet<SocketAddr> = HashSet::new();
    for round in 1..=ROUNDS {
        let missing: VecDeque<usize> = (0..count).filter(|&i| !pieces.has(i)).collect();
        if missing.is_empty() {
            break;
        }
        let sources: Vec<SourceState> = offers
            .iter()
            .filter(|o| !liars.contains(&o.peer.addr))
            .map(|o| SourceState {
                peer: o.peer.clone(),
                busy: 0,
                failures: 0,
                out: false,
                lied: false,
                paused_until: Instant::now(),
                lacks: HashSet::new(),
                pieces: 0,
            })
            .collect();
        let labels: Vec<String> = sources.iter().map(|s| s.peer.label.clone()).collect();
        progress.set_state(format!("downloading from {}", labels.join(", ")));
        let sched = Mutex::new(Schedule {
            missing,
            in_flight: HashSet::new(),
            sources,
        });
        let workers = job.workers.clamp(1, 32).min(count);
        let working = std::sync::atomic::AtomicBool::new(true);
        thread::scope(|scope| {
            let mut handles = Vec::new();
            for k in 0..workers {
                let w = Worker {
                    id: &id,
                    manifest: &manifest,
                    file: &file,
                    state: &state,
                    pieces: &pieces,
                    sched: &sched,
                    progress,
                };
                match thread::Builder::new()
                    .name(format!("get-{name}-{k}"))
                    .spawn_scoped(scope, move || w.run())
                {
                    Ok(h) => handles.push(h),
                    Err(e) => warn!("cannot start download worker {k}: {e}"),
                }
            }
            let reporter = thread::Builder::new()
                .name(format!("get-{name}-progress"))
                .spawn_scoped(scope, || report(progress, &working, &job.out));
            for h in handles {
                let _ = h.join();
            }
            working.store(false, Ordering::Release);
            if let Ok(r) = reporter {
                let _ = r.join();
            }
        });
        for s in &lock(&sched).sources {
            *fetched_from.entry(s.peer.label.clone()).or_default() += s.pieces;
            if s.lied {
                liars.insert(s.peer.addr);
            }
        }
        if pieces.count() == count {
            break;
        }
        if round == ROUNDS {
            break;
        }
        // Every source failed: ask the peers again (a downloader may have become a source).
        thread::sleep(Duration::from_millis(500 * round as u64));
        if let Ok((o, _)) = find_offers(job, &id) {
            offers = o;
        }
    }
    let have = pieces.count();
    if have < count {
        job.library.drop_partial(&id);
        return Err(format!(
            "{have} of {count} pieces; no source has the rest now"
        ));
    }

    // 5: the whole file, checked, then published under its name.
    let _ = file.sync_all();
    progress.set_state("checking the whole file");
    let whole = hash_file(&part).map_err(|e| format!("cannot read {}: {e}", part.display()))?;
    if whole != manifest.file_hash {
        job.library.drop_partial(&id);
        let _ = std::fs::remove_file(&state_path);
        return Err(format!(
            "whole-file hash {} does not match the manifest; the download starts over next time",
            &hex(&whole)[..16]
        ));
    }
    std::fs::rename(&part, &target)
        .map_err(|e| format!("cannot rename to {}: {e}", target.display()))?;
    let _ = std::fs::remove_file(&state_path);
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    job.library.drop_partial(&id);
    job.library.finish(Arc::clone(&manifest), &target);
    let secs = progress.started.elapsed().as_secs_f64().max(0.001);
    let got = progress.bytes.load(Ordering::Relaxed);
    let mut from: Vec<String> = fetched_from
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(l, n)| format!("{l} {n}"))
        .collect();
    from.sort();
    Ok(format!(
        "downloaded {name}: {} bytes, whole-file hash verified, in {secs:.1}s ({:.1} MiB/s); pieces from {}",
        manifest.size,
        got as f64 / (1 << 20) as f64 / secs,
        if from.is_empty() { "none needed".to_owned() } else { from.join(", ") }
    ))
}

/// Shows a download's progress while `working`: a bar redrawn four times a second on a
/// terminal, a plain line at every tenth otherwise.
fn report(progress: &Progress, working: &std::sync::atomic::AtomicBool, out: &Sender<String>) {
    use super::STATUS;
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal();
    let mut last_tenth = usize::MAX;
    while working.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(250));
        let done = progress.done.load(Ordering::Relaxed);
        let total = progress.total.load(Ordering::Relaxed).max(1);
        let secs = progress.started.elapsed().as_secs_f64().max(0.001);
        let rate = progress.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64 / secs;
        let pct = done * 100 / total;
        if terminal {
            let filled = done * 30 / total;
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(30 - filled));
            let name = &progress.name;
            let line = format!("[{bar}] {pct:>3}% {name} {done}/{total} pieces {rate:.1} MiB/s");
            let _ = out.send(format!("{STATUS}{line}"));
        } else if done * 10 / total != last_tenth {
            last_tenth = done * 10 / total;
            let name = &progress.name;
            let line = format!("{name}: {pct}% ({done}/{total} pieces, {rate:.1} MiB/s)");
            let _ = out.send(format!("{STATUS}{line}"));
        }
    }
    if terminal {
        let _ = out.send(STATUS.to_string());
    }
}

/// Finds the offers of `job.name` and a checked manifest.
fn find(job: &Job) -> Result<(Vec<Offer>, Manifest), String> {
    let mut all: Vec<Offer> = Vec::new();
    for r in list_all(&job.peers) {
        match r {
            Ok(offers) => all.extend(offers.into_iter().filter(|o| o.name == job.name)),
            Err((p, e)) => debug!("{} did not list its files: {e}", p.label),
        }
    }
    // The file most peers have whole, then most peers at all.
    let mut by_id: HashMap<&str, (usize, usize)> = HashMap::new();
    for o in &all {
        let e = by_id.entry(&o.id).or_default();
        e.0 += o.complete as usize;
        e.1 += 1;
    }
    let Some((id, _)) = by_id.iter().max_by_key(|(_, &n)| n) else {
        return Err(format!("no peer shares {}", job.name));
    };
    if by_id.len() > 1 {
        warn!(
            "peers offer {} different files named {}; taking the most common",
            by_id.len(),
            job.name
        );
    }
    let id = id.to_string();
    let offers: Vec<Offer> = all.into_iter().filter(|o| o.id == id).collect();
    for o in offers
        .iter()
        .filter(|o| o.complete)
        .chain(offers.iter().filter(|o| !o.complete))
    {
        match fetch_manifest(&o.peer, &id) {
            Ok(m) => return Ok((offers, m)),
            Err(e) => warn!("manifest from {}: {e}", o.peer.label),
        }
    }
    Err(format!("no source gave a valid manifest for {}", job.name))
}

fn find_offers(job: &Job, id: &str) -> Result<(Vec<Offer>, ()), String> {
    let mut offers = Vec::new();
    for r in list_all(&job.peers).into_iter().flatten() {
        offers.extend(r.into_iter().filter(|o| o.id == id));
    }
    Ok((offers, ()))
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

/// One worker: a connection to one source at a time, a piece at a time.
struct Worker<'a> {
    id: &'a str,
    manifest: &'a Manifest,
    file: &'a File,
    state: &'a StateFile,
    pieces: &'a Pieces,
    sched: &'a Mutex<Schedule>,
    progress: &'a Progress,
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
    fn run(self) {
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
