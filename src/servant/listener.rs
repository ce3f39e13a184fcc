//! The servant's listening side: accepts connections from peers (and from people with
//! telnet), refuses banned hosts, and shows what arrives.
//!
//! This is the article's `servants1_ConnectionRequest` (check the bans, accept into a free
//! Winsock control) and `servants1_DataArrival` (append what arrived to the chat box). Each
//! accepted connection gets its own named thread `recv-ADDR`. A connection that opens with
//! `HELLO` is another servant, once the handshake has proved its key (`handshake`): each
//! line it writes carries a tag made with the connection's secret, its `MSG` lines carry
//! the writer's id, run and sequence number, and `receiving` checks each and shows it
//! once. A `PULL` is handed to the relay `hub`, a `LINK` to the overlay, a file request to
//! `transfer`. Anything else is a person typing: each line is shown as chat from
//! the connection's address, as in the article, never under a servant's name.
//!
//! Everything shown that came from the network goes through `escape::Shown`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::hub::serve_pull;
use super::linking::HANDSHAKE_TIMEOUT;
use super::neighbors::link;
use crate::escape::Shown;
use crate::handshake::{Answered, Link};
use crate::limits::{self, Admission, Caps, Gate, Limiter};
use crate::lines::{LineError, LineReader};
use crate::protocol::{Hello, PeerLine, CHAT_LINE_LIMIT};
use crate::transfer::{self};

use super::inbound::Inbound;
use super::receiving::{servant_lines, Source, IDLE_LIMIT};
/// A connection must say what it is within this time (a servant's `HELLO` comes at once;
/// a person with telnet has this long to type a first line). Until then it holds a place
/// that others may need.
const FIRST_LINE_LIMIT: Duration = Duration::from_secs(10);

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
    limits::accept_loop(listener, gate, move |stream, peer, place| {
        serve_connection(stream, peer, &inbound, place)
    });
}

/// Reads one connection to its end (the article's `servants1_DataArrival`).
fn serve_connection(stream: TcpStream, peer: SocketAddr, inbound: &Inbound, place: &Admission) {
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
    let why = match PeerLine::parse(&first) {
        Some(Ok(PeerLine::Hello(hello))) => {
            let Some(link) = accept(&stream, &mut reader, peer, &first, &hello, inbound) else {
                return;
            };
            // A listed servant always finds a place (see `limits`); others may be
            // evicted for newcomers when they have been idle longest.
            if inbound.seen.is_listed(&link.peer_id) {
                place.protect();
            }
            place.touch();
            let last = inbound.seen.last_from(&link.peer_id, link.incarnation);
            if let Err(e) = (&stream).write_all(PeerLine::Ready { last }.to_line().as_bytes()) {
                return debug!("{peer} ({}): cannot answer: {e}", Shown(&link.name));
            }
            let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
            debug!(
                "{peer}: servant {} ({}) connected",
                Shown(&link.name),
                link.peer_id
            );
            servant_lines(
                &mut reader,
                peer,
                Source::Author(&link),
                &link.name,
                inbound,
                Some(place),
            )
        }
        _ if transfer::serve::is_file_request(&first) => {
            let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
            // Asked before each request: the request also shows the connection is in use.
            let banned = || {
                place.touch();
                inbound.bans.refuses(peer.ip())
            };
            let listed = inbound.seen.is_listed_address(peer.ip());
            transfer::serve::serve(
                &stream,
                &mut reader,
                first,
                peer,
                &inbound.library,
                listed,
                &banned,
            )
        }
        Some(Ok(PeerLine::Pull(hello))) => {
            let Some(link) = accept(&stream, &mut reader, peer, &first, &hello, inbound) else {
                return;
            };
            if let Err(e) = (&stream).write_all(PeerLine::Ready { last: 0 }.to_line().as_bytes()) {
                return debug!("{peer} ({}): cannot answer: {e}", Shown(&link.name));
            }
            let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
            if inbound.seen.is_listed(&link.peer_id) {
                place.protect();
            }
            match pull_assigned(inbound, peer, &link) {
                Some(assigned) => {
                    serve_pull(&stream, &mut reader, peer, &link, (&inbound.hub, assigned))
                }
                None => "PULL refused: not assigned to this relay".into(),
            }
        }
        Some(Ok(PeerLine::Link(hello, port))) => {
            let Some(ep) = inbound.links.endpoint() else {
                // A servant of an overlay (4.10) asks for a neighbour link; this one
                // links to every servant instead. Said, so the other side falls back to
                // `HELLO`.
                log_refusal(
                    inbound,
                    peer,
                    format!(
                        "{} ({}) asked for an overlay link; this servant links to every servant",
                        Shown(&hello.name),
                        hello.id
                    ),
                );
                let _ = (&stream).write_all(
                    b"ERR LINK: this servant links to every servant and takes no overlay links\n",
                );
                return;
            };
            let Some(link) = accept(&stream, &mut reader, peer, &first, &hello, inbound) else {
                return;
            };
            if let Err(e) = (&stream).write_all(PeerLine::Ready { last: 0 }.to_line().as_bytes()) {
                return debug!("{peer} ({}): cannot answer: {e}", Shown(&link.name));
            }
            if inbound.seen.is_listed(&link.peer_id) {
                place.protect();
            }
            place.touch();
            link::serve_accepted(&stream, &mut reader, peer, &link, port, &ep)
        }
        Some(Err(e)) => {
            info!("{peer}: bad first line: {e}; closed");
            return;
        }
        // A person typing: the article showed whatever arrived, from that address.
        _ => {
            let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
            place.touch();
            show_plain(peer, &first, inbound);
            // Bad lines are logged once per connection: a stream of garbage must not fill the log.
            let mut complained = false;
            loop {
                inbound.flush_unless_more(&reader);
                match reader.read_line() {
                    Ok(Some(_)) if inbound.bans.refuses(peer.ip()) => break "banned".to_owned(),
                    Ok(Some(line)) => {
                        place.touch();
                        show_plain(peer, &line, inbound)
                    }
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

/// Logs why a connection was refused, once a minute per address (the rest at debug, and
/// counted in the next one): a flood of refused connections cannot fill the log.
fn log_refusal(inbound: &Inbound, peer: SocketAddr, why: String) {
    let allowed = inbound
        .refusals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(&peer.ip());
    match allowed {
        Some(held) if held > 0 => {
            warn!(
                "{peer}: refused: {why} ({held} more refusals from {} not logged)",
                peer.ip()
            )
        }
        Some(_) => warn!("{peer}: refused: {why}"),
        None => debug!("{peer}: refused: {why}"),
    }
}

/// The listener's half of the handshake (see `handshake`): answers `HELLO` or `PULL` with
/// `WELCOME` and checks the `PROOF`. `None` when the other side cannot prove its key (or
/// the network key), which is logged once a minute per address.
fn accept(
    stream: &TcpStream,
    reader: &mut LineReader<&TcpStream>,
    peer: SocketAddr,
    first: &str,
    hello: &Hello,
    inbound: &Inbound,
) -> Option<Link> {
    let refuse = |why: String| log_refusal(inbound, peer, why);
    let net = inbound.network.as_ref();
    let (answered, welcome) = match Answered::new(&inbound.identity, first, hello, net) {
        Ok(a) => a,
        Err(e) => {
            refuse(format!("{} {e}", Shown(&hello.name)));
            return None;
        }
    };
    if let Err(e) = { stream }.write_all(welcome.as_bytes()) {
        debug!("{peer}: cannot answer {}: {e}", Shown(&hello.name));
        return None;
    }
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let proof = match reader.read_line() {
        Ok(Some(line)) => match PeerLine::parse(&line) {
            Some(Ok(PeerLine::Proof(p))) => p,
            Some(Err(e)) => {
                refuse(format!("{}: {e}", Shown(&hello.name)));
                return None;
            }
            _ => {
                let shown: String = line.chars().take(40).collect();
                refuse(format!(
                    "{}: expected PROOF, got {:?}",
                    Shown(&hello.name),
                    Shown(&shown)
                ));
                return None;
            }
        },
        Ok(None) => {
            debug!("{peer}: closed before its PROOF");
            return None;
        }
        Err(e) => {
            refuse(format!("{}: no PROOF: {e}", Shown(&hello.name)));
            return None;
        }
    };
    match answered.finish(&proof, net) {
        Ok(link) => {
            inbound.authors.learn(link.peer);
            Some(link)
        }
        Err(e) => {
            refuse(format!("{} (id {}) {e}", Shown(&hello.name), hello.id));
            None
        }
    }
}

/// `servants1_DataArrival` for a person typing: the line, from the connection's address.
/// When the manager listed `link`'s servant as pulling from us; `None` (logged, within the
/// refusal log's limit) when it has not made us its relay: a relay is not a way for anyone
/// to read all chat.
fn pull_assigned(inbound: &Inbound, peer: SocketAddr, link: &Link) -> Option<Instant> {
    let id = link.peer_id.as_str();
    let assigned = inbound
        .relayed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .copied();
    if assigned.is_none() {
        let allowed = inbound
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(&peer.ip());
        if allowed.is_some() {
            let name = Shown(&link.name);
            warn!("{peer}: refused PULL from {name} ({id}): the manager has not made us its relay");
        }
    }
    assigned
}

fn show_plain(peer: SocketAddr, line: &str, inbound: &Inbound) {
    inbound.show(&["<", &peer.to_string(), "> ", &crate::escape::shown(line)]);
}
