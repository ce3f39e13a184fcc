//! The changes queued for the servants' writer threads, and who is to be woken for them.
//!
//! A change is queued under the registry's lock (so a `<join>` never overtakes the
//! `<peers>` it follows) but the writers are not woken there: the outboxes that got one
//! are gathered in `nudges`, and the manager's `publish` thread wakes them after a moment,
//! outside the lock. This file keeps that gathering; deciding who is dropped for not
//! reading stays with the registry, which owns the slots.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::slot::{Outbox, Slot, Ticket};
use crate::outbox::Refused;

/// Outboxes holding changes their writers have not been woken for.
#[derive(Default)]
pub(super) struct Pushes {
    /// Written by `queue` under the lock; taken by the `publish` thread.
    nudges: Vec<Outbox>,
    /// Called when `nudges` stops being empty (it must not block).
    on_news: Option<Box<dyn Fn() + Send>>,
}

impl Pushes {
    /// Sets what tells the manager's `publish` thread that writers wait for a nudge.
    pub(super) fn on_news(&mut self, tell: impl Fn() + Send + 'static) {
        self.on_news = Some(Box::new(tell));
    }

    /// The outboxes whose writers are to be woken for the changes gathered so far.
    pub(super) fn take(&mut self) -> Vec<Outbox> {
        std::mem::take(&mut self.nudges)
    }

    /// No publish thread: from now on changes wake their writers at once.
    pub(super) fn wake_at_once(&mut self) {
        self.on_news = None;
        for outbox in self.nudges.drain(..) {
            outbox.nudge();
        }
    }

    /// Queues `line` for every listed, not quiet client but `except`. Returns the tickets
    /// of the clients whose outbox is full (they are not reading).
    pub(super) fn queue<C>(
        &mut self,
        slots: &BTreeMap<u32, Slot<C>>,
        except: u32,
        line: Arc<str>,
    ) -> Vec<Ticket> {
        let mut stalled = Vec::new();
        let was_quiet = self.nudges.is_empty();
        for (&offset, slot) in slots {
            if offset == except || !slot.listed || slot.quiet {
                continue;
            }
            match slot.outbox.push_change(line.clone()) {
                Ok(true) if self.on_news.is_some() => self.nudges.push(Arc::clone(&slot.outbox)),
                // Nobody gathers changes (no publish thread): wake the writer now.
                Ok(true) => slot.outbox.nudge(),
                Ok(false) => {}
                Err(Refused::Full) => stalled.push(slot.ticket(offset)),
                // Its connection is closing; the closing thread removes it.
                Err(Refused::Closed) => {}
            }
        }
        if was_quiet && !self.nudges.is_empty() {
            if let Some(tell) = &self.on_news {
                tell();
            }
        }
        stalled
    }
}
