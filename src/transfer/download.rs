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
//!
//! The steps live below this file, each in its own: asking peers what they share and for
//! a manifest (`ask`), the worker threads and their schedule (`worker`), the record of
//! verified pieces (`record`) and what `/downloads` shows (`progress`). This file runs the
//! steps in order (`run`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use log::{info, warn};

use self::ask::{find, find_offers};
use self::progress::report;
use self::record::StateFile;
use self::worker::{lock, Schedule, SourceState, Worker};
use super::manifest::{hash_piece, hex};
use super::{valid_name, Library, Pieces};

mod ask;
mod progress;
mod record;
mod worker;

pub use self::ask::{list_all, list_files, Offer, Peer};
pub use self::progress::{Downloads, Progress};

/// Rounds of asking the peers again when every source has failed.
const ROUNDS: u32 = 4;

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
    let progress = Arc::new(Progress::new(job.name.clone()));
    job.downloads.add(Arc::clone(&progress));
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
    let (offers, manifest) = find(&job.peers, &job.name)?;
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
            .map(|o| SourceState::new(o.peer.clone()))
            .collect();
        let labels: Vec<String> = sources.iter().map(|s| s.peer.label.clone()).collect();
        progress.set_state(format!("downloading from {}", labels.join(", ")));
        let sched = Mutex::new(Schedule::new(missing, sources));
        let workers = job.workers.clamp(1, 32).min(count);
        let working = AtomicBool::new(true);
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
        offers = find_offers(&job.peers, &id);
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
