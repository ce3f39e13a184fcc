//! The core's loop: one event at a time (a typed line, a signal, the manager link's
//! news), until it is time to leave, then shutdown.
//!
//! Everything the servant does on its own clock happens here too: every `TICK` the core
//! looks at bans by host name, at its relay, and saves the pinned keys if they changed.

use std::thread;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::console::Input;
use super::link::LinkEvent;
use super::state::{Core, TICK};

/// How long shutdown waits for senders to deliver what they hold.
const LINGER: Duration = Duration::from_secs(3);

/// Everything the core waits for.
pub(super) enum Event {
    Input(Input),
    InputEnded,
    Signal(&'static str),
    Link(LinkEvent),
}

impl Core {
    /// The core loop: one event at a time, until it is time to leave.
    pub(super) fn run(&mut self, events: &Receiver<Event>) -> String {
        loop {
            let now = Instant::now();
            if now >= self.next_tick {
                self.next_tick = now + TICK;
                self.refresh_banned_authors();
                self.watch_relay(now);
                self.inbound.known.save_if_dirty();
                if self.overlay.is_some() {
                    self.quiet_when_no_bans();
                }
            }
            if self.mesh_until.is_some_and(|t| now >= t) {
                self.end_mesh(now);
            }
            let wait = self
                .grace_until
                .map_or(TICK, |t| t.saturating_duration_since(now))
                .min(self.next_tick.saturating_duration_since(now))
                .min(
                    self.mesh_until
                        .map_or(TICK, |t| t.saturating_duration_since(now)),
                );
            match events.recv_timeout(wait) {
                Ok(Event::Input(Input::Quit)) => return "/quit".into(),
                Ok(Event::Input(input)) => self.command(input),
                Ok(Event::InputEnded) => return "end of input".into(),
                Ok(Event::Signal(name)) => return name.into(),
                Ok(Event::Link(ev)) => self.on_link(ev),
                Err(RecvTimeoutError::Timeout) => self.end_grace(),
                Err(RecvTimeoutError::Disconnected) => return "every input is gone".into(),
            }
        }
    }

    /// Stops every sender, giving them `LINGER` to deliver what they hold.
    pub(super) fn shutdown(&mut self) {
        if let Some(n) = self.overlay.take() {
            n.leave(LINGER);
        }
        self.puller = None;
        self.dispatch.clear();
        let mut threads: Vec<JoinHandle<()>> = std::mem::take(&mut self.stopping);
        for (_, p) in self.peers.drain() {
            drop(p.tx);
            drop(p.drain);
            threads.push(p.thread);
        }
        let deadline = Instant::now() + LINGER;
        while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
            thread::sleep(Duration::from_millis(10));
        }
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
