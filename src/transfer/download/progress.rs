//! What `/downloads` and the console show of a download: its progress, the list of this
//! run's downloads, and the status line redrawn while it runs.
//!
//! Written by the download's threads through atomics and short locks, read by the
//! console; it knows nothing of sources or pieces beyond their counts.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::transfer::STATUS;

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
    /// A download of `name` that has just started looking for sources.
    pub(super) fn new(name: String) -> Progress {
        Progress {
            name,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            state: Mutex::new("downloading: looking for sources".into()),
            started: Instant::now(),
            took: Mutex::new(None),
        }
    }

    pub(super) fn end(&self, s: impl Into<String>) {
        *self.took.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.started.elapsed());
        self.set_state(s);
    }

    pub(super) fn set_state(&self, s: impl Into<String>) {
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

    /// Lists a download that has just started.
    pub(super) fn add(&self, progress: Arc<Progress>) {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(progress);
    }

    pub(super) fn running(&self, name: &str) -> bool {
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

/// Shows a download's progress while `working`: a bar redrawn four times a second on a
/// terminal, a plain line at every tenth otherwise.
pub(super) fn report(progress: &Progress, working: &AtomicBool, out: &Sender<String>) {
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
