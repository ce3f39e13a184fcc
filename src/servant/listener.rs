//! The servant's listening side: accepts connections from peers (and from people with
//! telnet), refuses banned hosts, and shows what arrives.
//!
//! This is the article's `servants1_ConnectionRequest` (check the bans, accept into a free
//! Winsock control) and `servants1_DataArrival` (append what arrived to the chat box). Each
//! accepted connection gets its own named thread `recv-ADDR`. A connection that opens with
//! `HELLO` is another servant: its `MSG` lines carry the writer's id and sequence number,
//! and `Seen` makes sure each is shown once. Anything else is a person typing: each line is
//! shown as chat from the connection's address, as in the article.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use log::{debug, info, warn};

use super::bans::Bans;
use super::console::Pipe;
use super::relaying::{serve_pull, Hub};
use super::sender::PING_EVERY;
use crate::limits::{self, Caps, Gate, Limiter};
use crate::lines::{LineError, LineReader};
use crate::protocol::{MsgRef, PeerLine, CHAT_LINE_LIMIT};
use crate::transfer::{self, Library};

/// A peer connection that sends nothing (not even a `PING`) for this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(4 * PING_EVERY.as_secs());
/// A connection must say what it is within this time.
const FIRST_LINE_LIMIT: Duration = Duration::from_secs(60);

/// The last sequence number shown from each writer, to drop duplicates and notice gaps.
#[derive(Default)]
pub struct Seen {
    /// Written and read by every `recv-` thread, in short blocks.
    last: Mutex<HashMap<String, u64>>,
}

/// What `Seen::check` concluded about a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Show,
    /// Show it; `missed` messages before it never arrived.
    ShowAfterGap {
        missed: u64,
    },
    Duplicate,
}

impl Seen {
    /// Every writer heard from, with the last sequence number shown.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.lock().iter().map(|(k, &v)| (k.clone(), v)).collect()
    }

    pub fn last_from(&self, origin: &str) -> u64 {
        self.lock().get(origin).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records message `seq` from `origin` and says whether to show it. `show` is called
    /// under the lock, so two connections carrying the same writer's messages cannot
    /// reorder them.
    pub fn deliver(&self, origin: &str, seq: u64, show: impl FnOnce(Verdict)) {
        let mut last = self.lock();
        let verdict = match last.get_mut(origin) {
            Some(l) if seq <= *l => Verdict::Duplicate,
            Some(l) => {
                let gap = seq - *l - 1;
                *l = seq;
                match gap {
                    0 => Verdict::Show,
                    missed => Verdict::ShowAfterGap { missed },
                }
            }
            // First message from this writer: whatever came before was not meant for us.
            None => {
                last.insert(origin.to_owned(), seq);
                Verdict::Show
            }
        };
        show(verdict);
    }
}

/// What every receiving thread shares.
pub struct Inbound {
    /// Our `WELCOME` says who we are.
    pub my_id: String,
    /// What we relay to servants behind firewalls (empty unless one pulls from us).
    pub hub: Hub,
    /// The files we share, for `FILES`, `MANIFEST` and `GET` requests.
    pub library: Arc<Library>,
    pub bans: Arc<Bans>,
    pub seen: Seen,
    /// Lines for standard output (the article's `txtChat1`).
    pub out: Sender<String>,
    /// Standard output when it is not a terminal: receivers print into it themselves.
    pub pipe: Option<Arc<Pipe>>,
}

impl Inbound {
    /// Shows a received line: straight into standard output when it is a pipe (printed
    /// by this thread), through the `stdout` thread when it is a terminal.
    pub fn show(&self, parts: &[&str]) {
        match &self.pipe {
            Some(pipe) => pipe.push_parts(parts),
            None => {
                let _ = self.out.send(parts.concat());
            }
        }
    }

    /// Writes out what this thread has shown, unless another whole line is already
    /// waiting in `reader` (then it is written with that one: one write per burst).
    pub fn flush_unless_more<R: std::io::Read>(&self, reader: &LineReader<R>) {
        if let Some(pipe) = &self.pipe {
            if !reader.has_line() {
                pipe.flush();
            }
        }
    }
}

/// Accepts connections until the process ends (the article's `servants1_ConnectionRequest`):
/// a banned host is closed before anything it sent is read; others get a `recv-ADDR`
/// thread, within the caps of `<maxconnections>` and `<maxperaddress>`.
pub fn accept_loop(listener: TcpListener, inbound: Arc<Inbound>, caps: Caps) {
    let bans = Arc::clone(&inbound.bans);
    let gate = Gate {
        thread_prefix: "recv",
        limiter: Limiter::new(caps),
        screen: Box::new(move |ip| !bans.refuses(ip)),
        refusal_line: Box::new(|_| None),
    };
    limits::accept_loop(listener, gate, move |stream, peer| {
        serve_connection(stream, peer, &inbound)
    });
}

/// Reads one connection to its end (the article's `servants1_DataArrival`).
fn serve_connection(stream: TcpStream, peer: SocketAddr, inbound: &Inbound) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(FIRST_LINE_LIMIT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut reader = LineReader::new(&stream, CHAT_LINE_LIMIT);
    let first = match reader.read_line() {
        Ok(Some(line)) => line,
        Ok(None) => return debug!("{peer}: closed without a word"),
        Err(LineError::Idle) => {
            return debug!(
                "{peer}: said nothing for {}s; closed",
                FIRST_LINE_LIMIT.as_secs()
            )
        }
        Err(e) => {
            info!("{peer}: {e}; closed");
            return;
        }
    };
    let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
    let why = match PeerLine::parse(&first) {
        Some(Ok(PeerLine::Hello { id, name })) => {
            let welcome = PeerLine::Welcome {
                id: inbound.my_id.clone(),
                last_seq: inbound.seen.last_from(&id),
            };
            if let Err(e) = (&stream).write_all(welcome.to_line().as_bytes()) {
                return debug!("{peer} ({name}): cannot answer HELLO: {e}");
            }
            debug!("{peer}: servant {name} ({id}) connected");
            servant_lines(&mut reader, peer, &name, inbound)
        }
        _ if transfer::serve::is_file_request(&first) => {
            let banned = || inbound.bans.refuses(peer.ip());
            transfer::serve::serve(&stream, &mut reader, first, peer, &inbound.library, &banned)
        }
        Some(Ok(PeerLine::Pull { id, name })) => {
            serve_pull(&stream, &mut reader, peer, &id, &name, inbound)
        }
        Some(Err(e)) => {
            info!("{peer}: bad first line: {e}; closed");
            return;
        }
        // A person typing: the article showed whatever arrived, from that address.
        _ => {
            show_plain(peer, &first, inbound);
            // Bad lines are logged once per connection: a stream of garbage must not fill the log.
            let mut complained = false;
            loop {
                inbound.flush_unless_more(&reader);
                match reader.read_line() {
                    Ok(Some(_)) if inbound.bans.refuses(peer.ip()) => break "banned".to_owned(),
                    Ok(Some(line)) => show_plain(peer, &line, inbound),
                    Ok(None) => break "closed".to_owned(),
                    Err(LineError::Io(e)) => break e.to_string(),
                    Err(LineError::Idle) => break format!("silent for {}s", IDLE_LIMIT.as_secs()),
                    Err(e) if complained => debug!("{peer}: {e}; line skipped"),
                    Err(e) => {
                        info!(
                            "{peer}: {e}; line skipped (such lines are logged once per connection)"
                        );
                        complained = true;
                    }
                }
            }
        }
    };
    debug!("{peer}: connection ended: {why}");
}

/// `servants1_DataArrival` for a person typing: the line, from the connection's address.
fn show_plain(peer: SocketAddr, line: &str, inbound: &Inbound) {
    inbound.show(&["<", &peer.to_string(), "> ", line]);
}

/// `servants1_DataArrival` for another servant: reads its `MSG` lines and shows each once.
pub(super) fn servant_lines(
    reader: &mut LineReader<&TcpStream>,
    peer: SocketAddr,
    name: &str,
    inbound: &Inbound,
) -> String {
    let mut complained = false;
    let mut bad_bytes_logged = false;
    loop {
        inbound.flush_unless_more(reader);
        let line = match reader.read_line_ref() {
            Ok(Some(line)) => line,
            Ok(None) => return "closed".into(),
            Err(LineError::Io(e)) => return e.to_string(),
            Err(LineError::Idle) => return format!("silent for {}s", IDLE_LIMIT.as_secs()),
            Err(e) if bad_bytes_logged => {
                debug!("{peer} ({name}): {e}; line skipped");
                continue;
            }
            Err(e) => {
                info!("{peer} ({name}): {e}; line skipped (logged once per connection)");
                bad_bytes_logged = true;
                continue;
            }
        };
        // A host banned (with /ban) while connected is cut off at its next line.
        if inbound.bans.refuses(peer.ip()) {
            return "banned".into();
        }
        // Every chat line is a MSG: read it in place, without copying its parts.
        if let Some(Ok(m)) = MsgRef::parse(line) {
            inbound
                .seen
                .deliver(m.origin, m.seq, |verdict| match verdict {
                    Verdict::Duplicate => debug!(
                        "{peer}: duplicate of message {} from {}; dropped",
                        m.seq, m.name
                    ),
                    v => {
                        if let Verdict::ShowAfterGap { missed } = v {
                            warn!(
                                "{missed} message(s) from {} before number {} never arrived",
                                m.name, m.seq
                            );
                        }
                        inbound.show(&["<", m.name, "> ", m.text]);
                        inbound.hub.record(m.origin, m.seq, line);
                    }
                });
            continue;
        }
        match PeerLine::parse(line) {
            Some(Ok(PeerLine::Ping)) => {}
            other => {
                if !complained {
                    let what = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => format!(
                            "unexpected line {:?}",
                            line.chars().take(40).collect::<String>()
                        ),
                    };
                    info!("{peer} ({name}): {what}; such lines are skipped (logged once per connection)");
                    complained = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_gaps_noticed() {
        let seen = Seen::default();
        let mut verdicts = Vec::new();
        for (o, s) in [("a", 5), ("a", 6), ("a", 6), ("a", 4), ("b", 1), ("a", 9)] {
            seen.deliver(o, s, |v| verdicts.push(v));
        }
        assert_eq!(
            verdicts,
            vec![
                Verdict::Show,
                Verdict::Show,
                Verdict::Duplicate,
                Verdict::Duplicate,
                Verdict::Show,
                Verdict::ShowAfterGap { missed: 2 }
            ]
        );
        assert_eq!(seen.last_from("a"), 9);
        assert_eq!(seen.last_from("zz"), 0);
    }
}
