//! The peer list as the servants read it: the `<peers>` document and `<sample>` lines.
//!
//! The article copied `pDoc` for each asker and set its `me` to TRUE. Here the others'
//! view of the list is made once per version and shared (`DocCache`), and each asker's
//! document is that text cut around its own entry (`DocumentView`). It is a type of its
//! own because it keeps something the rest of the registry does not need: the text made
//! for the last version and where each servant's element stands in it. It reads the
//! slots it is given and changes none of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::slot::{Slot, Ticket};
use crate::overlay::rng::Rng;
use crate::protocol::{peer_xml, peers_open_tag};

/// The list's documents for one network: its `epoch` and `timeout`, and the cached view.
pub(super) struct Documents {
    pub(super) epoch: String,
    pub(super) timeout_ms: u64,
    /// The others' view of the list at one version (see `view`).
    cache: Option<DocCache>,
}

/// The peer document as every listed servant appears in it, and where each one's
/// `<peer>` element stands.
struct DocCache {
    version: u64,
    doc: Arc<str>,
    /// (offset, start, end) of each listed servant's element, in offset order.
    spans: Vec<(u32, usize, usize)>,
    /// Where `</peers>` begins.
    end: usize,
}

/// One asker's peer document: `doc` with `doc[cut.0..cut.1]` replaced by `own`.
pub struct DocumentView {
    doc: Arc<str>,
    own: String,
    cut: (usize, usize),
}

impl DocumentView {
    /// The document's three parts, in order.
    pub fn parts(&self) -> [&str; 3] {
        [&self.doc[..self.cut.0], &self.own, &self.doc[self.cut.1..]]
    }
}

/// The `<peer>` element of the holder of `t` as it sees itself (`<me>TRUE</me>`), listed
/// or not; `None` when `t` no longer holds its slot.
fn own_xml<C>(slots: &BTreeMap<u32, Slot<C>>, t: &Ticket) -> Option<String> {
    slots
        .get(&t.offset)
        .filter(|s| s.held_by(t))
        .map(|s| peer_xml(&s.entry(t.offset, true)))
}

impl Documents {
    pub(super) fn new(epoch: String, timeout_ms: u64) -> Documents {
        Documents {
            epoch,
            timeout_ms,
            cache: None,
        }
    }

    /// The whole peer document at `version` as the holder of `t` sees it: every listed
    /// servant, plus its own entry with `<me>TRUE</me>`.
    pub(super) fn whole<C>(
        &mut self,
        version: u64,
        slots: &BTreeMap<u32, Slot<C>>,
        t: &Ticket,
    ) -> String {
        if self.cache.as_ref().is_some_and(|c| c.version == version) {
            return self.view(version, slots, t).parts().concat();
        }
        // The list changed since the cache was made (a join storm changes it at every
        // join): made directly, without a cache that the next join would spoil.
        let mut doc = peers_open_tag(version, &self.epoch, self.timeout_ms);
        doc.reserve(slots.len() * 200 + 10);
        for (&o, slot) in slots {
            if o == t.offset && slot.held_by(t) {
                doc.push_str(&peer_xml(&slot.entry(o, true)));
            } else if slot.listed {
                doc.push_str(&slot.xml);
            }
        }
        doc.push_str("</peers>");
        doc
    }

    /// `whole` as three parts: the others' view of the list, cached per version and
    /// shared, cut around the asker's own entry, which is made for it.
    pub(super) fn view<C>(
        &mut self,
        version: u64,
        slots: &BTreeMap<u32, Slot<C>>,
        t: &Ticket,
    ) -> DocumentView {
        let cache = self.fresh(version, slots);
        let own = own_xml(slots, t);
        // Where the asker's entry goes: in place of its own listed one, or where its slot
        // falls among the others.
        let cut = match cache.spans.binary_search_by_key(&t.offset, |&(o, _, _)| o) {
            Ok(i) if own.is_some() => (cache.spans[i].1, cache.spans[i].2),
            Ok(i) => (cache.spans[i].1, cache.spans[i].1),
            Err(i) => {
                let at = cache.spans.get(i).map_or(cache.end, |&(_, start, _)| start);
                (at, at)
            }
        };
        DocumentView {
            doc: Arc::clone(&cache.doc),
            own: own.unwrap_or_default(),
            cut,
        }
    }

    /// The cached view of the list at `version`, made now if it is not made yet.
    fn fresh<C>(&mut self, version: u64, slots: &BTreeMap<u32, Slot<C>>) -> &DocCache {
        if self.cache.as_ref().is_some_and(|c| c.version == version) {
            return self.cache.as_ref().expect("checked above");
        }
        let mut doc = peers_open_tag(version, &self.epoch, self.timeout_ms);
        doc.reserve(slots.len() * 200 + 10);
        let mut spans = Vec::with_capacity(slots.len());
        for (&o, slot) in slots {
            if slot.listed {
                let start = doc.len();
                doc.push_str(&slot.xml);
                spans.push((o, start, doc.len()));
            }
        }
        let end = doc.len();
        doc.push_str("</peers>");
        self.cache.insert(DocCache {
            version,
            doc: Arc::from(doc),
            spans,
            end,
        })
    }

    /// At most `count` listed servants other than the holder of `t`, chosen at random, as
    /// a `<sample>` line cut from the cached list.
    pub(super) fn sample<C>(
        &mut self,
        version: u64,
        slots: &BTreeMap<u32, Slot<C>>,
        t: &Ticket,
        count: usize,
        rng: &mut Rng,
    ) -> String {
        let cache = self.fresh(version, slots);
        let own = cache
            .spans
            .binary_search_by_key(&t.offset, |&(o, _, _)| o)
            .ok()
            .filter(|_| slots.get(&t.offset).is_some_and(|s| s.held_by(t)));
        let others: usize = cache.spans.len() - usize::from(own.is_some());
        let mut chosen: Vec<usize> = Vec::with_capacity(count.min(others));
        if others <= 2 * count {
            let all: Vec<usize> = (0..cache.spans.len()).filter(|&i| Some(i) != own).collect();
            chosen = rng.sample(&all, count);
        } else {
            // Far more listed than asked for: draw until enough distinct ones came.
            while chosen.len() < count {
                let i = rng.below(cache.spans.len());
                if Some(i) != own && !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
        }
        let mut doc = format!(
            "<sample version=\"{}\" total=\"{}\">",
            version,
            cache.spans.len()
        );
        for i in chosen {
            let (_, start, end) = cache.spans[i];
            doc.push_str(&cache.doc[start..end]);
        }
        doc.push_str("</sample>");
        doc
    }
}
