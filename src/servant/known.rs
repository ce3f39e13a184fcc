//! Known peers: the key first seen with each name, pinned in a file beside the
//! configuration (trust on first use, as ssh's `known_hosts`).
//!
//! A signature proves which key wrote a line, not which person: anyone may make a key
//! and call it `bob`. So the first key seen with a name is pinned (`alice.known`, or the
//! file `<knownpeers>` names), and from then on a `bob` with another key is shown as
//! such: one warning line naming him, with both fingerprints, and every line of his
//! marked `(key changed)`, until the user accepts the new key with `/trust bob`.
//!
//! ```text
//! # genp2p known peers: the key first seen with each name (trust on first use).
//! # NAME KEY FIRST-SEEN; /trust NAME in the servant replaces a line.
//! bob 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29 2026-12-06T20:01:02Z
//! ```
//!
//! Pins are learnt from the manager's peer document (before any connection) and from
//! the lines shown. The core writes the file at its next tick after a change (every 5 s
//! at most), atomically, so a network of a thousand joining at once costs a few writes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::warn;

use crate::clock;
use crate::escape::Shown;
use crate::files::{write_atomically, Access};
use crate::identity::PeerKey;
use crate::protocol::check_token;

/// Why the known-peers file cannot be used.
#[derive(Debug)]
pub enum KnownError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl fmt::Display for KnownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownError::Read { path, source } => {
                write!(
                    f,
                    "{}: cannot read the known peers: {source}",
                    path.display()
                )
            }
            KnownError::Malformed {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
        }
    }
}

impl std::error::Error for KnownError {}

/// A pinned key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub key: PeerKey,
    /// When it was first seen (RFC 3339, UTC).
    pub first_seen: String,
}

/// What a name with a key is, measured against the pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The pinned key (pinned just now, if the name was new).
    Pinned,
    /// Another key than the pinned one. `first`: the first time this key is seen with
    /// the name in this run (the moment to warn).
    Changed { pinned: Pin, first: bool },
}

#[derive(Default)]
struct State {
    pins: BTreeMap<String, Pin>,
    /// Names seen with another key than their pin: the last such key.
    changed: HashMap<String, PeerKey>,
}

/// The pins. Read and written by the core and every `recv-` thread, one short block at a
/// time; saved by the core at a tick after a change (`save_if_dirty`, `SAVE_AFTER`).
pub struct KnownPeers {
    path: Option<PathBuf>,
    state: Mutex<State>,
    /// Counts `/trust`s: a receiver that found a name pinned may trust that until this
    /// changes (see `still_pinned`).
    trusts: std::sync::atomic::AtomicU64,
    /// Changed since the last save (never set when there is no file).
    dirty: std::sync::atomic::AtomicBool,
    /// When the file was last written by this run.
    saved: Mutex<Option<Instant>>,
    /// `MAX_PINS` reached (logged once).
    full: std::sync::atomic::AtomicBool,
}

/// Names pinned at most: an outsider can make keys and names by the thousand, and each
/// pin is kept in memory and in the file. Past this, new names are shown unpinned.
pub const MAX_PINS: usize = 10_000;

/// Names offered for one Tab at most.
const COMPLETIONS: usize = 100;

/// A change is saved at most this long after it is made. Each save rewrites the file and
/// syncs it. In an overlay every sample of servants the manager sends names some new
/// ones: saved at every 5 s tick, the saves of 1,000 servants were a third of what
/// their core threads did while idle (`perf`: fsync, path lookups, renames), and
/// saving every 500 ms was a quarter of all the servants' time in one of 500. A pin lost
/// to a crash within these seconds is pinned again at the next sight of its name;
/// `/trust` is saved at once, and the file is saved at exit too.
pub const SAVE_AFTER: Duration = Duration::from_secs(30);

impl KnownPeers {
    /// The pins in `path` (none when the file does not exist yet); `None`: not kept.
    pub fn load(path: Option<&Path>) -> Result<KnownPeers, KnownError> {
        let mut state = State::default();
        if let Some(path) = path {
            match std::fs::read_to_string(path) {
                Ok(text) => state.pins = parse(path, &text)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(KnownError::Read {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        }
        Ok(KnownPeers {
            path: path.map(Path::to_owned),
            state: Mutex::new(state),
            trusts: Default::default(),
            dirty: Default::default(),
            saved: Mutex::new(None),
            full: Default::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        if self.path.is_some() {
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Weighs `name` with `key`: pins it if the name is new.
    pub fn check(&self, name: &str, key: &PeerKey) -> Standing {
        let mut st = self.lock();
        match st.pins.get(name) {
            Some(pin) if pin.key == *key => Standing::Pinned,
            Some(pin) => {
                let pinned = pin.clone();
                let first = st.changed.insert(name.to_owned(), *key) != Some(*key);
                Standing::Changed { pinned, first }
            }
            None if st.pins.len() >= MAX_PINS => {
                drop(st);
                if !self.full.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    log::warn!(
                        "{MAX_PINS} names are pinned already; new names are shown but not pinned"
                    );
                }
                Standing::Pinned
            }
            None => {
                st.pins.insert(
                    name.to_owned(),
                    Pin {
                        key: *key,
                        first_seen: clock::now_rfc3339(),
                    },
                );
                drop(st);
                self.touch();
                Standing::Pinned
            }
        }
    }

    /// The pinned names that start with `prefix`, for Tab in the line editor (a few at
    /// most: the names are kept sorted).
    pub fn names_starting(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .pins
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(name, _)| name.starts_with(prefix))
            .take(COMPLETIONS)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// How many `/trust`s there have been: a `Standing::Pinned` found for a name and key
    /// holds for as long as this does not change (a pin changes only by `/trust`).
    pub fn trusts(&self) -> u64 {
        self.trusts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How `name` with `key` stands, without pinning anything (for `/peers`).
    pub fn standing(&self, name: &str, key: &PeerKey) -> &'static str {
        match self.lock().pins.get(name) {
            Some(pin) if pin.key == *key => "pinned",
            Some(_) => "KEY CHANGED",
            None => "not pinned",
        }
    }

    /// `/trust NAME`: pins the key last seen with `name` in place of the old one. The
    /// answer is a line for the user.
    pub fn trust(&self, name: &str) -> String {
        let mut st = self.lock();
        let Some(new) = st.changed.remove(name) else {
            return match st.pins.get(name) {
                Some(pin) => format!(
                    "{} is seen with its pinned key ({}); nothing to trust",
                    Shown(name),
                    pin.key.id()
                ),
                None => format!("no peer named {} has been seen", Shown(name)),
            };
        };
        let old = st.pins.insert(
            name.to_owned(),
            Pin {
                key: new,
                first_seen: clock::now_rfc3339(),
            },
        );
        drop(st);
        self.trusts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.touch();
        format!(
            "trusted the new key of {} ({}){}",
            Shown(name),
            new.id(),
            old.map_or(String::new(), |o| format!(
                " in place of {} (first seen {})",
                o.key.id(),
                o.first_seen
            ))
        )
    }

    /// Saves a change now (after `/trust`).
    pub fn flush(&self) {
        if self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.save();
        }
    }

    /// Writes the file now, if there is one.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        if let Ok(mut t) = self.saved.lock() {
            *t = Some(Instant::now());
        }
        let mut text = String::from(
            "# genp2p known peers: the key first seen with each name (trust on first use).\n# NAME KEY FIRST-SEEN; /trust NAME in the servant replaces a line.\n",
        );
        for (name, pin) in &self.lock().pins {
            text.push_str(&format!("{name} {} {}\n", pin.key.hex(), pin.first_seen));
        }
        if let Err(e) = write_atomically(path, text.as_bytes(), Access::AsBefore) {
            warn!("{}: cannot save the known peers: {e}", path.display());
        }
    }

    /// Saves when something changed since the last save, and that save is `SAVE_AFTER`
    /// old (the first change of a run is saved at once).
    pub fn save_if_dirty(&self) {
        let due = self
            .saved
            .lock()
            .map_or(true, |t| t.is_none_or(|t| t.elapsed() >= SAVE_AFTER));
        if due && self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.save();
        }
    }
}

/// The warning shown when `name` appears with another key than its pin.
pub fn changed_warning(name: &str, pinned: &Pin, now: &PeerKey) -> String {
    let name = Shown(name);
    format!(
        "*** the key of {name} has changed: pinned {} (first seen {}), now {}. This may be another servant using the name. Lines from {name} are marked (key changed) until you type /trust {name}",
        pinned.key.id(),
        pinned.first_seen,
        now.id()
    )
}

fn parse(path: &Path, text: &str) -> Result<BTreeMap<String, Pin>, KnownError> {
    let mut pins = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |message: String| KnownError::Malformed {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let [name, key, first_seen] = w[..] else {
            return Err(bad("expected 'NAME KEY FIRST-SEEN'".into()));
        };
        check_token("the name", name).map_err(|e| bad(e.to_string()))?;
        let key = PeerKey::from_hex(key).map_err(bad)?;
        if pins.contains_key(name) {
            return Err(bad(format!("{name} is pinned twice")));
        }
        pins.insert(
            name.to_owned(),
            Pin {
                key,
                first_seen: first_seen.to_owned(),
            },
        );
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn first_use_pins_a_change_is_flagged_once_and_trust_replaces() {
        let k = KnownPeers::load(None).unwrap();
        let (a, b) = (
            Identity::ephemeral().unwrap().key,
            Identity::ephemeral().unwrap().key,
        );
        assert_eq!(k.check("bob", &a), Standing::Pinned);
        assert_eq!(k.check("bob", &a), Standing::Pinned);
        assert!(matches!(
            k.check("bob", &b),
            Standing::Changed { first: true, .. }
        ));
        assert!(matches!(
            k.check("bob", &b),
            Standing::Changed { first: false, .. }
        ));
        assert_eq!(k.standing("bob", &b), "KEY CHANGED");
        assert!(k.trust("bob").starts_with("trusted the new key of bob"));
        assert_eq!(k.check("bob", &b), Standing::Pinned);
        assert!(matches!(
            k.check("bob", &a),
            Standing::Changed { first: true, .. }
        ));
        assert_eq!(k.trust("carol"), "no peer named carol has been seen");
    }

    #[test]
    fn the_file_round_trips_and_bad_lines_name_their_place() {
        let key = Identity::ephemeral().unwrap().key;
        let text = format!("# c\n\nbob {} 2026-12-06T20:01:02Z\n", key.hex());
        let pins = parse(Path::new("a.known"), &text).unwrap();
        assert_eq!(pins["bob"].key, key);
        for (bad, want) in [
            (
                "bob".to_owned(),
                "a.known:1: expected 'NAME KEY FIRST-SEEN'",
            ),
            (
                format!("b<b {} x", key.hex()),
                "a.known:1: the name \"b<b\" contains '<'",
            ),
            (
                "bob 12 x".to_owned(),
                "a.known:1: bad key: 2 hex digits where 64 were expected",
            ),
            (
                format!("bob {k} x\nbob {k} y", k = key.hex()),
                "a.known:2: bob is pinned twice",
            ),
        ] {
            assert_eq!(
                parse(Path::new("a.known"), &bad).unwrap_err().to_string(),
                want
            );
        }
        let date = clock::now_rfc3339();
        assert_eq!(date.len(), 20, "{date}");
        assert!(date.starts_with("20") && date.ends_with('Z'), "{date}");
    }
}
