//! File sharing between servants: segmented, multi-threaded, resumable, verified and
//! multi-source.
//!
//! Two of the source documents meet here. One describes a multi-threaded download with
//! resume: the server answers "file list" and "send this range"; the client cuts the file
//! into ranges, one thread each, and keeps a progress record so an interrupted download
//! carries on where it stopped. The other describes BitTorrent: the file is cut into
//! pieces, peers fetch pieces from many others, and whoever has every piece becomes a source.
//!
//! genp2p does both on its thread-per-connection design:
//! - a servant shares the files of its `<share>` folder (and what it has downloaded); each
//!   has a **manifest** (`manifest`): size, piece size, a BLAKE3 hash per piece and for the
//!   whole file, named by the hash of the manifest itself, so a file is the same file
//!   whichever peer offers it;
//! - peers ask over the servant's own port (`FILES`, `MANIFEST`, `GET`; see `serve`);
//! - `download` fetches the missing pieces with several worker threads from every source
//!   at once, verifies each piece before writing it in place, records progress crash-safely
//!   and publishes the whole file under its name only once its hash matches.
//!
//! `Library` is what this servant can serve: complete files and the verified pieces of
//! downloads in progress.

pub mod download;
pub mod manifest;
pub mod serve;
pub mod slots;

/// Marks a line a download hands its printer as a status (progress) line: the console
/// draws it in place on a terminal and prints it as a plain line otherwise. Chat lines
/// never start with it (they start with `<`). Defined here, by the side that writes such
/// lines; the console, which stands above, reads it.
pub const STATUS: char = '\u{1}';

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use log::{debug, info, warn};

pub use manifest::Manifest;

/// Longest file name shared, in bytes.
pub const NAME_LIMIT: usize = 255;

/// A name that may be shared and asked for: one path component, no hidden files (our
/// partial downloads start with a dot), nothing that could climb out of a folder or break
/// a line, and no bidirectional controls (a name is shown in `/files`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_LIMIT
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && !name
            .chars()
            .any(|c| c.is_control() || crate::escape::needs_escape(c))
        && name.trim() == name
}

/// Opens a shared file for reading only if it is a regular file at the moment it is
/// opened: a symbolic link in its place is not followed (`O_NOFOLLOW`), and the type is
/// checked on the handle itself, not on the path again, so swapping the file for a link
/// between a check and the open cannot send out what the link points to. (`O_NONBLOCK`
/// keeps a FIFO put in its place from holding the thread; it has no effect on a regular
/// file.) The share folder's own path is taken as configured.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if f.metadata()?.file_type().is_file() {
        Ok(f)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// Which pieces of a file are verified here. Written by a download's workers, read by
/// upload threads serving the partial file.
#[derive(Debug)]
pub struct Pieces {
    have: Vec<AtomicBool>,
}

impl Pieces {
    pub fn new(count: usize) -> Pieces {
        Pieces {
            have: (0..count).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    pub fn has(&self, i: usize) -> bool {
        self.have.get(i).is_some_and(|b| b.load(Ordering::Acquire))
    }

    pub fn set(&self, i: usize) {
        if let Some(b) = self.have.get(i) {
            b.store(true, Ordering::Release);
        }
    }

    pub fn count(&self) -> usize {
        self.have
            .iter()
            .filter(|b| b.load(Ordering::Relaxed))
            .count()
    }
}

/// A file this servant can serve.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: Arc<Manifest>,
    pub path: PathBuf,
    /// `None` for a complete file; the verified pieces of a download in progress.
    pub partial: Option<Arc<Pieces>>,
}

impl Entry {
    pub fn has_piece(&self, i: usize) -> bool {
        match &self.partial {
            None => i < self.manifest.piece_count(),
            Some(p) => p.has(i),
        }
    }
}

/// Complete files found by scanning, cached so a file is hashed once while its size and
/// modification time stay the same.
struct Scanned {
    size: u64,
    modified: SystemTime,
    manifest: Arc<Manifest>,
}

#[derive(Default)]
struct Index {
    /// By manifest id and name: the same content under two names is offered under both.
    files: HashMap<(String, String), Entry>,
    /// The scan cache, by path.
    scanned: HashMap<PathBuf, Scanned>,
    /// The scan under way, while it has files to hash.
    hashing: Option<Hashing>,
    /// Whether a whole scan has finished since the start.
    scanned_once: bool,
}

/// How far a scan has come with the files it found new or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hashing {
    pub files_done: usize,
    pub files: usize,
    pub bytes_done: u64,
    pub bytes: u64,
    /// The file being hashed now.
    pub current: String,
}

/// What this servant shares. Written by the `share-index` thread (scans) and by downloads
/// (partial and finished files); read by every upload thread and `/files`.
pub struct Library {
    pub share: Option<PathBuf>,
    pub downloads: Option<PathBuf>,
    index: Mutex<Index>,
    /// The upload slots (`<uploads>`).
    pub uploads: slots::UploadSlots,
}

/// How often the share folder is looked at again for new or changed files.
const RESCAN: Duration = Duration::from_secs(10);

impl Library {
    pub fn new(share: Option<PathBuf>, downloads: Option<PathBuf>, max_uploads: usize) -> Library {
        Library {
            share,
            downloads,
            index: Mutex::new(Index::default()),
            uploads: slots::UploadSlots::new(max_uploads),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Scans on the `share-index` thread at once, then every few seconds. The servant
    /// does not wait for it: it joins and chats while a large share is hashed, and each
    /// file is offered as soon as it is hashed (`/shares` shows how far it has come).
    pub fn start_indexing(self: &Arc<Self>) -> std::io::Result<()> {
        if self.share.is_none() && self.downloads.is_none() {
            return Ok(());
        }
        let lib = Arc::clone(self);
        std::thread::Builder::new()
            .name("share-index".into())
            .spawn(move || loop {
                lib.rescan();
                std::thread::sleep(RESCAN);
            })?;
        Ok(())
    }

    /// The scan under way, if it still has files to hash; `None` once they all are.
    pub fn hashing(&self) -> Option<Hashing> {
        let idx = self.lock();
        match (&idx.hashing, idx.scanned_once) {
            (Some(h), _) => Some(h.clone()),
            // Not scanned yet: the first scan has not even listed the folder.
            (None, false) if self.share.is_some() || self.downloads.is_some() => {
                Some(Hashing::default())
            }
            (None, _) => None,
        }
    }

    /// Forgets what was hashed of `path`, so the next scan hashes it again (its content
    /// no longer matches what was hashed), and stops offering it meanwhile.
    pub fn forget(&self, path: &Path) {
        let mut idx = self.lock();
        idx.scanned.remove(path);
        idx.files
            .retain(|_, e| e.partial.is_some() || e.path != path);
    }

    /// Looks at the share folder and the downloads folder for complete files, hashing new
    /// or changed ones (outside the lock: hashing a large file takes a while).
    pub fn rescan(&self) {
        let mut found: Vec<(PathBuf, String, u64, SystemTime)> = Vec::new();
        for dir in [&self.share, &self.downloads].into_iter().flatten() {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    debug!("cannot read {}: {e}", dir.display());
                    continue;
                }
            };
            for e in entries.flatten() {
                let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !valid_name(&name) {
                    continue;
                }
                // Only regular files: a symlink could point outside the folder.
                let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                    continue;
                };
                if !meta.file_type().is_file() {
                    continue;
                }
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((e.path(), name, meta.len(), modified));
            }
        }
        let mut fresh = Vec::new();
        {
            let idx = self.lock();
            for (path, name, size, modified) in &found {
                match idx.scanned.get(path) {
                    Some(s) if s.size == *size && s.modified == *modified => {}
                    _ => fresh.push((path.clone(), name.clone(), *size, *modified)),
                }
            }
        }
        let started = std::time::Instant::now();
        let (count, bytes) = (fresh.len(), fresh.iter().map(|f| f.2).sum::<u64>());
        if count > 0 {
            self.lock().hashing = Some(Hashing {
                files: count,
                bytes,
                ..Hashing::default()
            });
        }
        for (path, name, size, modified) in fresh {
            if let Some(h) = &mut self.lock().hashing {
                h.current = name.clone();
            }
            let hashed = Manifest::of_file(&path, &name, manifest::PIECE_SIZE);
            let mut idx = self.lock();
            if let Some(h) = &mut idx.hashing {
                h.files_done += 1;
                h.bytes_done += size;
            }
            match hashed {
                Ok(m) => {
                    info!(
                        "sharing {name} ({size} bytes, {} pieces, id {})",
                        m.piece_count(),
                        &m.id()[..16]
                    );
                    // Offered at once: a large share is served file by file as it is hashed,
                    // and a changed file no longer under the id of what it held before.
                    let manifest = Arc::new(m);
                    if let Some(old) = idx.scanned.get(&path) {
                        let key = (old.manifest.id(), old.manifest.name.clone());
                        if idx
                            .files
                            .get(&key)
                            .is_some_and(|e| e.partial.is_none() && e.path == path)
                        {
                            idx.files.remove(&key);
                        }
                    }
                    idx.files.insert(
                        (manifest.id(), manifest.name.clone()),
                        Entry {
                            manifest: Arc::clone(&manifest),
                            path: path.clone(),
                            partial: None,
                        },
                    );
                    idx.scanned.insert(
                        path,
                        Scanned {
                            size,
                            modified,
                            manifest,
                        },
                    );
                }
                Err(e) => warn!("cannot share {}: {e}", path.display()),
            }
        }
        if count > 0 {
            info!(
                "hashed {count} shared file(s), {bytes} bytes, in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let mut idx = self.lock();
        idx.hashing = None;
        idx.scanned_once = true;
        let present: std::collections::HashSet<&PathBuf> = found.iter().map(|f| &f.0).collect();
        idx.scanned.retain(|p, _| present.contains(p));
        // Complete entries are rebuilt from the scan; partial ones (downloads) are kept.
        idx.files.retain(|_, e| e.partial.is_some());
        let complete: Vec<Entry> = idx
            .scanned
            .iter()
            .map(|(path, s)| Entry {
                manifest: Arc::clone(&s.manifest),
                path: path.clone(),
                partial: None,
            })
            .collect();
        for e in complete {
            idx.files
                .insert((e.manifest.id(), e.manifest.name.clone()), e);
        }
    }

    /// Every file offered: complete ones, and downloads in progress.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self.lock().files.values().cloned().collect();
        v.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        v
    }

    /// A file with this id, a complete one if there is one.
    pub fn get(&self, id: &str) -> Option<Entry> {
        let idx = self.lock();
        let mut with_id = idx
            .files
            .iter()
            .filter(|((i, _), _)| i == id)
            .map(|(_, e)| e);
        let first = with_id.next()?;
        Some(
            std::iter::once(first)
                .chain(with_id)
                .find(|e| e.partial.is_none())
                .unwrap_or(first)
                .clone(),
        )
    }

    /// A download has started (or resumed): serve its verified pieces from now on.
    pub fn add_partial(&self, manifest: Arc<Manifest>, path: PathBuf, pieces: Arc<Pieces>) {
        let key = (manifest.id(), manifest.name.clone());
        let mut idx = self.lock();
        if idx.files.get(&key).is_none_or(|e| e.partial.is_some()) {
            idx.files.insert(
                key,
                Entry {
                    manifest,
                    path,
                    partial: Some(pieces),
                },
            );
        }
    }

    /// A download has finished at `path`: serve it whole.
    pub fn finish(&self, manifest: Arc<Manifest>, path: &Path) {
        let mut idx = self.lock();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            idx.scanned.insert(
                path.to_owned(),
                Scanned {
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    manifest: Arc::clone(&manifest),
                },
            );
        }
        idx.files.insert(
            (manifest.id(), manifest.name.clone()),
            Entry {
                manifest,
                path: path.to_owned(),
                partial: None,
            },
        );
    }

    /// A download stopped without finishing: stop offering it.
    pub fn drop_partial(&self, id: &str) {
        let mut idx = self.lock();
        idx.files.retain(|(i, _), e| i != id || e.partial.is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_or_break_lines_are_refused() {
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "a\nb",
            "a\\b",
            " lead",
            "x\0",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["report.pdf", "with space.txt", "ünïcödé", "a..b"] {
            assert!(valid_name(good), "{good:?}");
        }
    }
}
