//! The keys of the servants this servant has heard of, by id: what a receiver checks a
//! chat line's signature with when the line did not come from its author's own link.
//!
//! Keys come from the manager's peer document and from handshakes. Neither needs to be
//! trusted: an id is its key's fingerprint, so a key is kept only under the id it proves,
//! and a lying manager can only leave a key out, not put another in. Keys of servants
//! that have left stay for a while, so lines they wrote that a relay still carries can be
//! checked; the table is bounded, oldest first out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::identity::PeerKey;

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
            while t.order.len() > KEYS {
                if let Some(old) = t.order.pop_front() {
                    t.keys.remove(&old);
                }
            }
        }
    }

    /// The key of the servant with `id`, if it is known.
    pub fn key_of(&self, id: &str) -> Option<PeerKey> {
        self.lock().keys.get(id).copied()
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
