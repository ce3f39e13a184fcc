//! Who cannot be reached, and who relays to them: the registry's half of `relay`.
//!
//! `relay` holds the complaint rule over a set of voters; this file decides who the
//! voters are, and who may be trusted to relay, from what only the registry knows: how
//! long each servant has been listed, whether the manager's dial-back reached it, and
//! which relays the servants they served gave up. Everything here runs under the
//! manager's lock and does no I/O, like the rest of the registry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slot::{Slot, Ticket};
use super::{Effects, Registry};
use crate::limits::LogLimiter;
use crate::outbox::Refused;
use crate::protocol::{peer_xml, ManagerMessage};
use crate::relay::{choose_relay, Suspicion, Verdict, Voters, MIN_ADDRESSES};

/// Relayed servants, at distinct addresses, that must give a relay up before it is
/// chosen for nobody (one alone cannot strike every relay off for the others).
const ABANDONED_BY: usize = 2;
/// A relayed servant may give up a relay once in this long. Its own check of a relay
/// takes longer (`servant::relay_watch::GRACE`), so an honest one never asks sooner.
const REPLACE_EVERY: Duration = Duration::from_secs(10);

impl<C> Registry<C> {
    /// Complaints each peer must make before it backs the suspicion (the article's 2 or 3).
    pub fn set_complaint_threshold(&mut self, threshold: u32) {
        self.suspicion = Suspicion::new(threshold);
    }

    /// How long a servant must be listed before its complaints count and it may relay,
    /// and whether the manager dials newcomers back (then a relay must have been reached).
    pub fn set_trust(&mut self, trust_after: Duration, probing: bool) {
        self.trust_after = trust_after;
        self.probing = probing;
    }

    fn trusted(&self, s: &Slot<C>, now: Instant) -> bool {
        s.listed
            && s.id.is_some()
            && s.listed_at
                .is_some_and(|t| now.saturating_duration_since(t) >= self.trust_after)
    }

    /// The servants whose complaints count: they proved their key (every listed servant
    /// has), have been listed for `trust_after` (so they were told about everyone listed
    /// before that and have tried to connect: servants dial every peer they are told of at
    /// once), and are not relayed (they are not reached directly themselves).
    fn voters(&self, now: Instant) -> Voters {
        self.slots
            .iter()
            .filter(|(_, s)| !s.unreachable && self.trusted(s, now))
            .map(|(&o, s)| (o, s.ip))
            .collect()
    }

    /// The article's complaint: the holder of `t` could not reach the servant with `id`.
    /// Condemns that servant when the rule says so (see `relay`).
    pub fn complain(&mut self, t: &Ticket, id: &str) -> Result<Effects<C>, String> {
        let mut fx = Effects::default();
        if !self.is_listed(t) {
            return Err("complain: only a listed servant may complain".into());
        }
        let Some(&suspect) = self.by_id.get(id) else {
            return Err(format!("complain: no listed servant has id {id:?}"));
        };
        if suspect == t.offset {
            return Err("complain: a servant cannot complain about itself".into());
        }
        let accused = &self.slots[&suspect];
        if accused.unreachable {
            return Ok(fx);
        }
        let (who, by) = (self.label(suspect), self.label(t.offset));
        // Complaints that do not count are logged once a minute per complainer: a client
        // may send them as fast as it likes.
        let mut uncounted = |why: String, log: &mut LogLimiter<u32>| {
            if let Some(held) = log.allow(&t.offset) {
                let more = match held {
                    0 => String::new(),
                    n => format!(" ({n} more not counted since the last such line)"),
                };
                fx.notes.push(format!(
                    "complaint about {who} from {by} not counted: {why}{more}"
                ));
            }
        };
        if accused.dialed_back {
            uncounted(
                "the manager reached it, so it stays direct".into(),
                &mut self.uncounted,
            );
            return Ok(fx);
        }
        let now = Instant::now();
        let voters = self.voters(now);
        if !voters.contains_key(&t.offset) {
            uncounted(
                format!("listed for less than {} s", self.trust_after.as_secs_f64()),
                &mut self.uncounted,
            );
            return Ok(fx);
        }
        let verdict = self.suspicion.complain(t.offset, suspect, &voters);
        // Past the threshold a complainer's further complaints change nothing it has not
        // said: not logged.
        if self.suspicion.count(t.offset, suspect) > self.suspicion.threshold
            && matches!(verdict, Verdict::Suspected { .. })
        {
            return Ok(fx);
        }
        match verdict {
            Verdict::Suspected {
                backing,
                needed,
                addresses,
            } => {
                fx.notes.push(format!(
                    "complaint about {who} from {by}: {backing} of {needed} needed peers back it, from {addresses} of {MIN_ADDRESSES} needed addresses"
                ));
                if self.suspicion.is_troubled(t.offset, &voters) {
                    fx.notes.push(format!(
                        "{by} cannot reach anyone: its complaints count against nobody"
                    ));
                }
            }
            Verdict::Unreachable { backing, of } => {
                let reason = format!(
                    "{backing} of {of} peers complained at least {} times each while it kept heartbeating",
                    self.suspicion.threshold
                );
                self.condemn(suspect, &reason, &mut fx);
            }
        }
        Ok(fx)
    }

    /// The manager could not connect back to the holder of `t` at `port`, where it said it
    /// listens: treat it as unreachable at once (the servant need not wait for complaints).
    /// Nothing changes if it has since said it listens elsewhere.
    pub fn unreachable_by_probe(&mut self, t: &Ticket, port: u16, why: &str) -> Effects<C> {
        let mut fx = Effects::default();
        if self.is_listed(t)
            && self.slots[&t.offset].port == port
            && !self.slots[&t.offset].unreachable
        {
            self.condemn(
                t.offset,
                &format!("the manager could not connect back to it: {why}"),
                &mut fx,
            );
        }
        fx
    }

    /// The manager connected back to the holder of `t` at `port`: it stays direct whatever
    /// is said about it, and may relay once it has been listed long enough.
    pub fn reached_by_probe(&mut self, t: &Ticket, port: u16) -> Effects<C> {
        let mut fx = Effects::default();
        if self.is_listed(t) {
            if let Some(s) = self.slots.get_mut(&t.offset).filter(|s| s.port == port) {
                s.dialed_back = true;
                self.suspicion.clear(t.offset);
                self.assign_waiting_relays(&mut fx);
            }
        }
        fx
    }

    fn condemn(&mut self, offset: u32, reason: &str, fx: &mut Effects<C>) {
        let who = self.label(offset);
        fx.notes.push(format!("{who} is unreachable: {reason}"));
        if let Some(s) = self.slots.get_mut(&offset) {
            s.unreachable = true;
        }
        self.suspicion.clear(offset);
        self.assign_relay(offset, fx);
    }

    /// Servants found unreachable while no relay could be had get one now if one can be
    /// trusted: called when a servant is listed or reached, and every second by the
    /// manager (newcomers become trusted with time).
    pub fn assign_waiting_relays(&mut self, fx: &mut Effects<C>) {
        let waiting: Vec<u32> = self
            .slots
            .iter()
            .filter(|(_, s)| s.unreachable && s.relay.is_none())
            .map(|(&o, _)| o)
            .collect();
        for o in waiting {
            self.assign_relay(o, fx);
        }
    }

    /// The servants that may relay to the servant in `offset`, with the number each
    /// relays to: listed for `trust_after`, reached by the dial-back (when the manager
    /// dials back), not relayed or troubled themselves, not given up by `offset`, nor by
    /// relayed servants at `ABANDONED_BY` addresses.
    fn relay_candidates(&self, offset: u32) -> Vec<(u32, usize)> {
        let now = Instant::now();
        let voters = self.voters(now);
        let Some(client) = self.slots.get(&offset) else {
            return Vec::new();
        };
        // Each computed once, in one pass: this runs under the manager's lock, every
        // second for each servant still waiting for a relay.
        let troubled = self.suspicion.troubled(&voters);
        let mut load: HashMap<u32, usize> = HashMap::new();
        for r in self.slots.values().filter_map(|c| c.relay) {
            *load.entry(r).or_default() += 1;
        }
        self.slots
            .iter()
            .filter(|(&o, s)| {
                o != offset
                    && voters.contains_key(&o)
                    && (s.dialed_back || !self.probing)
                    && !troubled.contains(&o)
                    && s.abandoned_by.len() < ABANDONED_BY
                    && !s
                        .id
                        .as_ref()
                        .is_some_and(|id| client.abandoned.contains(id))
            })
            .map(|(&o, _)| (o, load.get(&o).copied().unwrap_or(0)))
            .collect()
    }

    /// Chooses a relay for the unreachable servant in `offset`, lists it as relayed and
    /// tells it to pull.
    pub(super) fn assign_relay(&mut self, offset: u32, fx: &mut Effects<C>) {
        let candidates = self.relay_candidates(offset);
        let who = self.label(offset);
        let Some(relay) = choose_relay(&candidates) else {
            if let Some(slot) = self.slots.get_mut(&offset).filter(|s| !s.waiting_noted) {
                slot.waiting_noted = true;
                fx.notes.push(format!(
                    "no relay available for {who}; it will get one when a trusted reachable servant is listed"
                ));
            }
            return;
        };
        let relay_entry = self.slots[&relay].entry(relay, false);
        let Some(slot) = self.slots.get_mut(&offset) else {
            return;
        };
        slot.relay = Some(relay);
        slot.waiting_noted = false;
        let entry = slot.entry(offset, false);
        slot.xml = Arc::from(peer_xml(&entry));
        let pull = ManagerMessage::Pull(Some(relay_entry.clone())).to_line();
        if slot.outbox.push(Arc::from(pull)) == Err(Refused::Full) {
            // Not reading: dropped like any client whose outbox is full.
            let t = slot.ticket(offset);
            if let Some(removed) = self.remove_slot(&t, fx) {
                fx.dropped
                    .push((removed.entry, removed.closer, "not reading its pushes"));
            }
            return;
        }
        fx.notes.push(format!(
            "{who} pulls from {} (serving {} relayed servant(s))",
            relay_entry.label(),
            candidates.iter().find(|c| c.0 == relay).map_or(0, |c| c.1) + 1,
        ));
        // An upsert: the same offset, now with <relay>, so others stop connecting to it.
        self.announce(true, entry, fx);
    }

    /// The relayed holder of `t` gives its relay up (it hears nothing through it while
    /// others speak): it gets another, and that relay is never chosen for it again, nor
    /// for anyone once relayed servants at `ABANDONED_BY` addresses have given it up.
    /// With no other relay to be had, it keeps the one it has.
    pub fn replace_relay(&mut self, t: &Ticket) -> Result<Effects<C>, String> {
        let mut fx = Effects::default();
        if !self.is_listed(t) {
            return Err("replace relay: only a listed servant may ask".into());
        }
        let client = &self.slots[&t.offset];
        let Some(relay) = client.relay.filter(|_| client.unreachable) else {
            return Err("replace relay: this servant is not relayed".into());
        };
        // Each request is pushed to every servant (a `<join>` with the new relay): one
        // client asking in a loop must not make the manager write to everyone in a loop.
        if client
            .replaced_at
            .is_some_and(|at| at.elapsed() < REPLACE_EVERY)
        {
            return Err(format!(
                "replace relay: asked again within {} s",
                REPLACE_EVERY.as_secs()
            ));
        }
        let ip: IpAddr = client.ip;
        let (who, old) = (self.label(t.offset), self.label(relay));
        let relay_id = self.slots.get(&relay).and_then(|r| r.id.clone());
        let client = self.slots.get_mut(&t.offset).expect("listed above");
        client.replaced_at = Some(Instant::now());
        if let Some(id) = relay_id.filter(|id| !client.abandoned.contains(id)) {
            client.abandoned.push(id);
        }
        if let Some(r) = self.slots.get_mut(&relay) {
            r.abandoned_by.insert(ip);
        }
        if self.relay_candidates(t.offset).is_empty() {
            fx.notes.push(format!(
                "{who} gave up its relay {old}, but no other can be trusted: it keeps it"
            ));
            return Ok(fx);
        }
        fx.notes
            .push(format!("{who} gave up its relay {old}; finding another"));
        if let Some(s) = self.slots.get_mut(&t.offset) {
            s.relay = None;
        }
        self.assign_relay(t.offset, &mut fx);
        Ok(fx)
    }
}
