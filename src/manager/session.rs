//! Serving one client for the life of its connection: the `conn-ADDR` thread.
//!
//! The rest of the article's `p2p_ConnectionRequest` (take a slot, start the writer), its
//! `p2p_DataArrival` (read and answer each line, including the `listening`/`prove`
//! admission) and its `p2p_Close` (forget the client). Everything a line changes goes
//! through the registry in one short block; the answers are queued for the writer or
//! written here (see `writer`).

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;

use log::{debug, info, warn};

use super::shared::{after_change, apply_effects, Shared, PROBE_QUEUE};
use super::writer::{push_loop, write_answer, WRITE_TIMEOUT};
use crate::identity::{random_bytes, PeerKey};
use crate::lines::{LineError, LineReader};
use crate::outbox::{Answer, Outbox};
use crate::overlay::rng::Rng;
use crate::protocol::{listen_proof, ManagerCommand, ManagerMessage, MANAGER_LINE_LIMIT};
use crate::registry::Ticket;

/// Bytes queued for one client before it counts as not reading: room for several whole
/// lists of thousands of servants and the changes of a join storm.
const OUTBOX_BYTES: usize = 4 << 20;
/// Bad lines in a row after which a client is disconnected.
const MAX_BAD_LINES: u32 = 20;

/// Serves one client for the life of its connection: registers it (the rest of the
/// article's `p2p_ConnectionRequest`), answers it (`p2p_DataArrival`, in `serve_lines`)
/// and forgets it when the connection ends (`p2p_Close`).
pub(super) fn handle_client(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_read_timeout(Some(shared.config.idle_timeout));
    let (writer, closer) = match (stream.try_clone(), stream.try_clone()) {
        (Ok(w), Ok(c)) => (w, c),
        (Err(e), _) | (_, Err(e)) => {
            warn!("{peer}: cannot use connection: {e}");
            return;
        }
    };
    let outbox = Arc::new(Outbox::new(OUTBOX_BYTES));
    let (ticket, port) = shared
        .registry()
        .connect(peer.ip(), Arc::clone(&outbox), closer);
    let spawned = {
        let outbox = Arc::clone(&outbox);
        thread::Builder::new()
            .name(format!("push-{}", ticket.offset))
            .spawn(move || push_loop(writer, &outbox))
    };
    if let Err(e) = spawned {
        warn!("{peer}: refusing: cannot start a thread: {e}");
        shared.registry().remove(&ticket);
        return;
    }
    debug!(
        "{peer}: connected (slot {}, assigned port {port})",
        ticket.offset
    );

    let why = serve_lines(&stream, peer, &ticket, &outbox, shared);
    let change = shared.registry().remove(&ticket);
    after_change(change, "left", &format!(": {why}"), shared);
    debug!("{peer}: disconnected (slot {}): {why}", ticket.offset);
    // The push thread ends once it has written what is queued.
    outbox.close();
    let _ = stream.shutdown(Shutdown::Read);
}

/// An answer the reading thread writes itself (claimed from the outbox).
enum Direct {
    Line(Arc<str>),
    Document(crate::registry::DocumentView),
}

/// A `listening` answered with a `<challenge>`, waiting for its `prove`.
struct Challenged {
    nonce: [u8; 32],
    /// The `listening` line as signed (its canonical spelling).
    line: String,
    port: u16,
    id: String,
    name: String,
    key: String,
}

/// The article's `p2p_DataArrival`: reads and answers lines until the client leaves;
/// returns why it left.
fn serve_lines(
    stream: &TcpStream,
    peer: SocketAddr,
    ticket: &Ticket,
    outbox: &Outbox,
    shared: &Arc<Shared>,
) -> String {
    let mut reader = LineReader::new(stream, MANAGER_LINE_LIMIT);
    let mut bad_lines = 0u32;
    let reply = |line: String| -> bool { outbox.push(Arc::from(line)).is_ok() };
    let mut pending: Option<Challenged> = None;
    // For `needs sample`: seeded from the OS on the connection's first one.
    let mut rng: Option<Rng> = None;
    loop {
        let line = match reader.read_line() {
            Ok(Some(line)) => line,
            Ok(None) => return "connection closed".into(),
            Err(LineError::Idle) => {
                let listed = shared.registry().is_listed(ticket);
                let limit = if listed {
                    shared.config.timeout
                } else {
                    shared.config.idle_timeout
                };
                return format!("silent for {:.1}s", limit.as_secs_f64());
            }
            Err(LineError::Io(e)) => return format!("connection failed: {e}"),
            Err(e @ (LineError::TooLong { .. } | LineError::InvalidUtf8)) => {
                bad_lines += 1;
                debug!("{peer}: {e}");
                if bad_lines >= MAX_BAD_LINES
                    || !reply(ManagerMessage::Error(e.to_string()).to_line())
                {
                    return format!("{bad_lines} bad lines in a row");
                }
                continue;
            }
        };
        let answer = match ManagerCommand::parse(&line) {
            Ok(cmd @ (ManagerCommand::NeedsPeerList { .. } | ManagerCommand::NeedsChanges)) => {
                bad_lines = 0;
                let since = match cmd {
                    ManagerCommand::NeedsPeerList { since } => since,
                    _ => {
                        // Pushes again from here; the whole list fills what was missed.
                        shared.registry().set_quiet(ticket, false);
                        None
                    }
                };
                // Queued (or claimed for writing here) before the lock is released, so no
                // change made after this snapshot can reach the client ahead of it.
                let answer = {
                    let mut reg = shared.registry();
                    match since {
                        Some(v) if v == reg.version() => outbox
                            .push_answer(Arc::from(
                                ManagerMessage::Unchanged { version: v }.to_line(),
                            ))
                            .map(|a| match a {
                                Answer::Direct(line) => Some(Direct::Line(line)),
                                Answer::Queued => None,
                            }),
                        _ if outbox.claim_direct() => {
                            Ok(Some(Direct::Document(reg.document_view(ticket))))
                        }
                        _ => outbox
                            .push(Arc::from(reg.peer_document(ticket)))
                            .map(|()| None),
                    }
                };
                let written = match answer {
                    Ok(None) => Ok(()),
                    Ok(Some(Direct::Line(line))) => write_answer(stream, &[&line], outbox),
                    Ok(Some(Direct::Document(view))) => write_answer(stream, &view.parts(), outbox),
                    Err(_) => return "not reading its answers".into(),
                };
                if let Err(why) = written {
                    return why;
                }
                continue;
            }
            Ok(ManagerCommand::Listening {
                port,
                id,
                name,
                key,
            }) => {
                bad_lines = 0;
                // The key must be the id's: then a signature of a fresh nonce proves both.
                match PeerKey::from_hex(&key) {
                    Ok(k) if k.id() == id => {}
                    Ok(k) => {
                        pending = None;
                        let e = format!("listening: the id of this key is {}, not {id}", k.id());
                        if !reply(ManagerMessage::Error(e).to_line()) {
                            return "not reading its answers".into();
                        }
                        continue;
                    }
                    Err(e) => {
                        pending = None;
                        if !reply(ManagerMessage::Error(format!("listening: {e}")).to_line()) {
                            return "not reading its answers".into();
                        }
                        continue;
                    }
                }
                let Ok(nonce) = random_bytes::<32>() else {
                    return "no random bytes for a challenge".into();
                };
                let line = ManagerCommand::Listening {
                    port,
                    id: id.clone(),
                    name: name.clone(),
                    key: key.clone(),
                }
                .to_line();
                pending = Some(Challenged {
                    nonce,
                    line,
                    port,
                    id,
                    name,
                    key,
                });
                ManagerMessage::Challenge { nonce }.to_line()
            }
            Ok(ManagerCommand::Prove { sig, net }) => {
                bad_lines = 0;
                let Some(c) = pending.take() else {
                    let e = "prove: no challenge to answer (say listening first)";
                    if !reply(ManagerMessage::Error(e.into()).to_line()) {
                        return "not reading its answers".into();
                    }
                    continue;
                };
                let signed = listen_proof(&c.nonce, &c.line);
                let proved = PeerKey::from_hex(&c.key).is_ok_and(|k| k.verifies(&signed, &sig));
                let refusal = if !proved {
                    Some("prove: the signature does not match the key in listening")
                } else {
                    match (&shared.network, net) {
                        (None, _) => None,
                        (Some(_), None) => {
                            Some("prove: this network has a key, and no proof of it was given")
                        }
                        (Some(k), Some(n)) if k.checks(&n, "listen", &signed) => None,
                        (Some(_), Some(_)) => Some("prove: the proof of the network key is wrong"),
                    }
                };
                if let Some(why) = refusal {
                    info!("{peer}: not listed: {}", &why["prove: ".len()..]);
                    if !reply(ManagerMessage::Error(why.into()).to_line()) {
                        return "not reading its answers".into();
                    }
                    continue;
                }
                let port = c.port;
                let (change, queued) = {
                    let mut reg = shared.registry();
                    let change = reg.listen(ticket, port, c.id, c.name, c.key);
                    // The reply is queued under the same lock as the join went out, so no
                    // later change can reach this servant before the list it applies to.
                    let queued = change.is_some() && reply(reg.peer_document(ticket));
                    (change, queued)
                };
                if change.is_none() {
                    return "dropped while registering".into();
                }
                let _ = stream.set_read_timeout(Some(shared.config.timeout));
                after_change(change, "joined", "", shared);
                if !queued {
                    return "not reading its answers".into();
                }
                if shared.config.probe {
                    let addr = SocketAddr::new(peer.ip(), port);
                    if shared.probes.try_send((addr, *ticket)).is_err() {
                        // Complaints still find it if it cannot be reached.
                        static TOLD: std::sync::Once = std::sync::Once::new();
                        TOLD.call_once(|| {
                            warn!("{PROBE_QUEUE} reachability probes are waiting; newcomers are not probed until they are done (logged once)");
                        });
                        debug!("{peer}: reachability not probed: {PROBE_QUEUE} probes are waiting");
                    }
                }
                continue;
            }
            Ok(ManagerCommand::NeedsSample { count }) => {
                bad_lines = 0;
                let rng = rng.get_or_insert_with(Rng::from_os);
                shared.registry().sample(ticket, count, rng)
            }
            Ok(ManagerCommand::NeedsNoChanges) => {
                bad_lines = 0;
                let version = shared.registry().set_quiet(ticket, true);
                ManagerMessage::Unchanged { version }.to_line()
            }
            Ok(ManagerCommand::Bye) => return "said bye".into(),
            Ok(command @ (ManagerCommand::Complain { .. } | ManagerCommand::ReplaceRelay)) => {
                bad_lines = 0;
                let result = match command {
                    ManagerCommand::Complain { id } => shared.registry().complain(ticket, &id),
                    _ => shared.registry().replace_relay(ticket),
                };
                match result {
                    Ok(fx) => {
                        apply_effects(fx, shared);
                        continue;
                    }
                    Err(e) => ManagerMessage::Error(e).to_line(),
                }
            }
            Err(e) => {
                bad_lines += 1;
                debug!("{peer}: {e}");
                if bad_lines >= MAX_BAD_LINES {
                    return format!("{bad_lines} bad lines in a row");
                }
                ManagerMessage::Error(e.to_string()).to_line()
            }
        };
        if !reply(answer) {
            return "not reading its answers".into();
        }
    }
}
