//! The download's crash-safe record of its verified pieces (`.NAME.state`).
//!
//! One job: what a kill -9 leaves on disk must be true. A piece is recorded only after it
//! is written, each record is one whole-line write, and a torn last line is ignored.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

/// The on-disk progress record: `.NAME.state`, a header line naming the manifest, then the
/// number of each verified piece on a line of its own, appended after the piece is written.
pub(super) struct StateFile {
    file: Mutex<File>,
}

impl StateFile {
    fn header(id: &str) -> String {
        format!("genp2p-download 1 {id}\n")
    }

    /// Pieces recorded for manifest `id`; empty when there is no record or it is for
    /// another file. A last line cut short by a crash is ignored.
    pub(super) fn read(path: &Path, id: &str) -> Vec<usize> {
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
    pub(super) fn create(path: &Path, id: &str, have: &[usize]) -> io::Result<StateFile> {
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

    pub(super) fn record(&self, piece: usize) -> io::Result<()> {
        // One write of a whole line: a kill -9 leaves it whole or absent.
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(format!("{piece}\n").as_bytes())
    }
}
