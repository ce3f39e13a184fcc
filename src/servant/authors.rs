//! The keys of the servants this servant has heard of, by id: what a receiver checks a
//! chat line's signature with when the line did not come from its author's own link.
//!
//! Keys come from the manager's peer document and from handshakes. Neither needs to be
//! trusted: an id is its key's fingerprint, so a key is kept only under the id it proves,
//! and a lying manager can only leave a key out, not put another in. Keys of servants
//! that have left stay for a while, so lines they wrote that a relay still carries can be
//! checked; the table is bounded, oldest first out.
//!
//! It also remembers the roots of batch signatures already checked (see `batch`): the
//! first line of a run signed together costs a signature check, the others a few hashes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::batch;
use crate::identity::PeerKey;
use crate::protocol::MsgRef;

/// Roots remembered at most; then they are forgotten all at once (a run of lines is
/// checked again at the cost of one signature).
const ROOTS: usize = 4096;

/// Why a line is not taken to be its author's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    /// No key is known for the line's author.
    UnknownAuthor,
    /// The signature (or the batch path and signature) does not verify.
    BadSignature,
}

impl fmt::Display for Unverified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unverified::UnknownAuthor => "whose key this servant does not know",
            Unverified::BadSignature => "whose signature does not verify",
        })
    }
}

/// Keys kept at most.
const KEYS: usize = 65_536;

#[derive(Default)]
struct Table {
    keys: HashMap<String, PeerKey>,
    /// Ids in the order they were learnt, for the bound.
    order: VecDeque<String>,
}

/// Written by the core (peer document) and by every `recv-` and `send-` thread
/// (handshakes); read by the receivers for each line not tagged by its author. Each use
/// is one short block.
#[derive(Default)]
pub struct Authors {
    table: Mutex<Table>,
    /// Batch roots whose signature has been checked, with their author's id.
    roots: Mutex<HashSet<(String, batch::Node)>>,
}

impl Authors {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `key` under the id it proves.
    pub fn learn(&self, key: PeerKey) {
        let id = key.id();
        let mut t = self.lock();
        if t.keys.insert(id.clone(), key).is_none() {
            t.order.push_back(id);
            // Forgotten ids leave their places behind: drop those at the front.
            while t.order.front().is_some_and(|f| !t.keys.contains_key(f)) {
                t.order.pop_front();
            }
            while t.order.len() > KEYS {
                if let Some(old) = t.order.pop_front() {
                    t.keys.remove(&old);
                }
            }
        }
    }

    /// Forgets the keys of `ids` (authors `Seen` no longer remembers): lines of theirs
    /// that others pass on no longer verify. Their places in the learning order stay
    /// until they come round (a key learnt again meanwhile may go a little early).
    pub fn forget(&self, ids: &[String]) {
        let mut t = self.lock();
        for id in ids {
            t.keys.remove(id);
        }
    }

    /// The key of the servant with `id`, if it is known.
    pub fn key_of(&self, id: &str) -> Option<PeerKey> {
        self.lock().keys.get(id).copied()
    }

    /// Checks that `m` is its author's: its signature, or its path to a batch root and
    /// that root's signature. Returns the author's key.
    pub fn verify(&self, m: &MsgRef) -> Result<PeerKey, Unverified> {
        let key = self.key_of(m.origin).ok_or(Unverified::UnknownAuthor)?;
        let (sig, batch) = m.auth().map_err(|_| Unverified::BadSignature)?;
        let Some(b) = batch else {
            return if key.verifies_parts(&m.signed_parts(), &sig) {
                Ok(key)
            } else {
                Err(Unverified::BadSignature)
            };
        };
        let root = batch::root(batch::leaf(&m.signed_parts()), b.index, b.path())
            .ok_or(Unverified::BadSignature)?;
        let seen = (m.origin.to_owned(), root);
        let lock = |r: &Mutex<HashSet<(String, batch::Node)>>| {
            r.lock().unwrap_or_else(|p| p.into_inner()).contains(&seen)
        };
        if lock(&self.roots) {
            return Ok(key);
        }
        // Checked outside the lock: a signature takes 70 µs.
        if !key.verifies(&batch::signed_root(b.path().len(), &root), &sig) {
            return Err(Unverified::BadSignature);
        }
        let mut roots = self.roots.lock().unwrap_or_else(|p| p.into_inner());
        if roots.len() >= ROOTS {
            roots.clear();
        }
        roots.insert(seen);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn keys_are_filed_under_the_id_they_prove() {
        let a = Authors::default();
        let me = Identity::ephemeral().unwrap();
        assert_eq!(a.key_of(&me.id), None);
        a.learn(me.key);
        assert_eq!(a.key_of(&me.id), Some(me.key));
    }
}
