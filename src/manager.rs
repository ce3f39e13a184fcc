//! The connection manager: tells servants where each other are, and nothing more.
//!
//! This is the article's connection manager form: `p2p_ConnectionRequest` (accept a
//! client, give it a slot and a port), `p2p_DataArrival` (answer `needs peer list`) and
//! `p2p_Close` (forget a client). The VB6 form ran all three on one UI thread with Winsock
//! events; here each accepted connection gets two named threads:
//!
//! - `conn-ADDR` reads the client's lines and answers them (`handle_client`);
//! - `push-N` writes everything queued for the client (`push_loop`), so a slow client
//!   delays only itself. When its outbox fills, the client is dropped: it will reconnect
//!   and ask for the whole list, which is cheaper than buffering without bound.
//!
//! One more thread, `publish`, wakes the `push-` threads a moment after the list changes,
//! so that each writes the changes of that moment together (see `outbox`).
//!
//! The registry sits behind one `Mutex`, the article's critical section, taken in short
//! blocks that never include socket I/O (see `registry`).

use std::fmt;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use log::{debug, info, warn};

use crate::config::ManagerConfig;
use crate::identity::{random_bytes, NetworkKey, PeerKey};
use crate::limits::{accept_loop, Caps, Gate, Limiter};
use crate::lines::{LineError, LineReader};
use crate::outbox::{Answer, Outbox};
use crate::overlay::rng::Rng;
use crate::protocol::{
    listen_proof, ManagerCommand, ManagerMessage, PeerEntry, MANAGER_LINE_LIMIT,
};
use crate::registry::{Change, Effects, Registry, Ticket};

/// Bytes queued for one client before it counts as not reading: room for several whole
/// lists of thousands of servants and the changes of a join storm.
const OUTBOX_BYTES: usize = 4 << 20;
/// How long a change waits for more to go out with it.
const PUSH_GATHER: Duration = Duration::from_millis(50);
/// How long one write to a client may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often servants waiting for a relay are looked at again (see `publish_loop`).
const TRUST_TICK: Duration = Duration::from_secs(1);
/// How long a reachability probe waits for a servant to accept.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Threads that probe servants (each waits up to `PROBE_TIMEOUT` for a firewalled one).
/// A pool, not a thread per join: in a join storm of a thousand, a probe thread per join
/// took about a third of the manager's CPU.
const PROBE_WORKERS: usize = 8;
/// Probes waiting for a worker; beyond this a servant is not probed (complaints still
/// find it if it cannot be reached).
const PROBE_QUEUE: usize = 4096;
/// Bad lines in a row after which a client is disconnected.
const MAX_BAD_LINES: u32 = 20;

/// Why the connection manager cannot run.
#[derive(Debug)]
pub enum ManagerError {
    /// The listening socket could not be bound (port busy, or not allowed).
    Bind { addr: SocketAddr, source: io::Error },
    /// The `<networkkey>` file cannot be used.
    NetworkKey(crate::identity::IdentityError),
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::Bind { addr, source } => {
                let hint = match source.kind() {
                    io::ErrorKind::AddrInUse => ": another program listens there; choose another <port>",
                    io::ErrorKind::PermissionDenied => ": ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a <port> above 1023",
                    _ => "",
                };
                write!(f, "cannot listen on {addr}: {source}{hint}")
            }
            ManagerError::NetworkKey(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManagerError::Bind { source, .. } => Some(source),
            ManagerError::NetworkKey(e) => Some(e),
        }
    }
}

/// State shared by every connection thread.
struct Shared {
    config: ManagerConfig,
    /// The article's `pDoc` and `iPortMax` behind its critical section. Written and read
    /// by every `conn-` thread and the console, each time in one short block.
    registry: Mutex<Registry<TcpStream>>,
    /// Servants to probe, for the `probe-K` threads.
    probes: crossbeam_channel::Sender<(SocketAddr, Ticket)>,
    /// The network's shared secret, when `<networkkey>` names one.
    network: Option<NetworkKey>,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry<TcpStream>> {
        // A panic while holding the lock cannot leave the table half-changed in a way that
        // matters more than stopping the whole network would, so keep serving.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A bound, not yet running connection manager.
pub struct Manager {
    listener: TcpListener,
    shared: Arc<Shared>,
    /// Tells the `publish` thread that the list changed.
    news: crossbeam_channel::Receiver<()>,
    /// Servants to probe (see `probe`).
    probe_jobs: crossbeam_channel::Receiver<(SocketAddr, Ticket)>,
}

impl Manager {
    /// Binds the manager's port. A busy or forbidden port is an error here, before any
    /// thread starts.
    pub fn bind(mut config: ManagerConfig) -> Result<Manager, ManagerError> {
        let network = match &config.network_key {
            Some(path) => Some(NetworkKey::load(path).map_err(ManagerError::NetworkKey)?),
            None => None,
        };
        // Each client holds three descriptors (its socket, the push thread's and the
        // registry's copies) and two threads.
        let affordable = crate::limits::affordable_connections(config.max_connections, 3, 2);
        if affordable < config.max_connections {
            warn!(
                "<maxconnections> {} is more than this process can hold (descriptors: ulimit -n; threads); holding at most {affordable}",
                config.max_connections
            );
            config.max_connections = affordable;
        }
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = crate::limits::listen(addr, config.max_connections)
            .map_err(|source| ManagerError::Bind { addr, source })?;
        let mut registry = Registry::new(
            config.first_port,
            crate::identity::random_token(),
            config.timeout.as_millis() as u64,
        );
        registry.set_complaint_threshold(config.complaints);
        registry.set_trust(config.trust_after, config.probe);
        // Told (without blocking) when the list changed and writers wait to be woken.
        let (news_tx, news) = crossbeam_channel::bounded::<()>(1);
        registry.on_news(move || {
            let _ = news_tx.try_send(());
        });
        let (probes, probe_jobs) = crossbeam_channel::bounded(PROBE_QUEUE);
        Ok(Manager {
            listener,
            shared: Arc::new(Shared {
                config,
                registry: Mutex::new(registry),
                probes,
                network,
            }),
            news,
            probe_jobs,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle for the console: prints the list of servants on request.
    pub fn console(&self) -> Console {
        Console {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts clients until the process ends (the article's `p2p_ConnectionRequest`).
    pub fn run(self) {
        let shared = self.shared;
        let (news, sh) = (self.news, Arc::clone(&shared));
        let spawned = thread::Builder::new()
            .name("publish".into())
            .spawn(move || publish_loop(&news, &sh));
        if let Err(e) = spawned {
            warn!("cannot start the publish thread: {e}; changes go out one by one");
            shared.registry().wake_writers_at_once();
        }
        if shared.config.probe {
            for k in 1..=PROBE_WORKERS {
                let (jobs, sh) = (self.probe_jobs.clone(), Arc::clone(&shared));
                let spawned = thread::Builder::new()
                    .name(format!("probe-{k}"))
                    .spawn(move || {
                        for (addr, ticket) in jobs {
                            probe(addr, ticket, &sh);
                        }
                    });
                if let Err(e) = spawned {
                    warn!("cannot start probe thread {k}: {e}");
                }
            }
        }
        let gate = Gate {
            thread_prefix: "conn",
            limiter: Limiter::new(Caps {
                total: shared.config.max_connections,
                per_address: shared.config.max_per_address,
                // The manager refuses when full: its clients prove nothing before they
                // are listed, and a listed servant's place is its only connection.
                reserved: 0,
            }),
            screen: Box::new(|_| true),
            refusal_line: Box::new(|r| {
                Some(ManagerMessage::Error(format!("manager {r}")).to_line())
            }),
        };
        accept_loop(self.listener, gate, move |stream, peer, _| {
            handle_client(stream, peer, &shared)
        });
    }
}

/// The manager's window onto the network, for its console (the article's manager form
/// showed its peers in a list box).
pub struct Console {
    shared: Arc<Shared>,
}

impl Console {
    pub fn peers(&self) -> Vec<PeerEntry> {
        self.shared.registry().listed()
    }

    /// The list as an aligned table.
    pub fn table(&self) -> String {
        format_table(&self.peers())
    }
}

pub fn format_table(peers: &[PeerEntry]) -> String {
    let mut out = format!("{} servant(s) on the network\n", peers.len());
    if !peers.is_empty() {
        out.push_str(&format!(
            "{:>6}  {:<40}  {:>5}  {:<20}  {}\n",
            "offset", "ip", "port", "name", "id"
        ));
    }
    for p in peers {
        out.push_str(&format!(
            "{:>6}  {:<40}  {:>5}  {:<20}  {}\n",
            p.offset,
            p.ip,
            p.port,
            p.name.as_deref().unwrap_or("-"),
            p.id.as_deref().unwrap_or("-")
        ));
    }
    out
}

fn describe(e: &PeerEntry) -> String {
    format!("{} {}:{} (slot {})", e.label(), e.ip, e.port, e.offset)
}

/// Logs what a change did and closes the connections of clients it dropped. Called after
/// the registry lock is released, because shutting a socket is I/O.
fn after_change(change: Option<Change<TcpStream>>, verb: &str, why: &str, shared: &Shared) {
    let Some(change) = change else { return };
    let count = shared.registry().listed_count();
    info!(
        "peer {verb}: {}{why}; {count} on the network",
        describe(&change.entry)
    );
    apply_effects(change.effects, shared);
}

/// Logs the registry's decisions and closes the connections of clients it dropped. Called
/// after the registry lock is released, because logging and shutting sockets are I/O.
fn apply_effects(fx: Effects<TcpStream>, shared: &Shared) {
    for note in fx.notes {
        info!("{note}");
    }
    if fx.dropped.is_empty() {
        return;
    }
    let count = shared.registry().listed_count();
    for (entry, socket, reason) in fx.dropped {
        info!(
            "peer left: {}: {reason}; {count} on the network",
            describe(&entry)
        );
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// Beyond the article (as libp2p's AutoNAT does): connect back to a servant that has just
/// listed itself. If nothing answers, it is behind a firewall: relay to it at once rather
/// than wait for complaints. Runs on one of the `probe-K` threads.
fn probe(addr: SocketAddr, ticket: Ticket, shared: &Shared) {
    match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(s) => {
            debug!("probe of {addr}: reachable");
            let _ = s.shutdown(Shutdown::Both);
            let fx = shared.registry().reached_by_probe(&ticket, addr.port());
            apply_effects(fx, shared);
        }
        // Only what the network answered says the servant cannot be reached; a failure
        // here (out of descriptors or ports) says nothing about it.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
            ) =>
        {
            let fx = shared
                .registry()
                .unreachable_by_probe(&ticket, addr.port(), &e.to_string());
            apply_effects(fx, shared);
        }
        Err(e) => warn!("probe of {addr} not made: {e}"),
    }
}

/// Serves one client for the life of its connection: registers it (the rest of the
/// article's `p2p_ConnectionRequest`), answers it (`p2p_DataArrival`, in `serve_lines`)
/// and forgets it when the connection ends (`p2p_Close`).
fn handle_client(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
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

/// The `publish` thread: once the list has changed, waits a moment for more changes, then
/// wakes the writer of every client that has changes queued. In a join storm each writer
/// then wakes once for many joins, instead of once for each.
fn publish_loop(news: &crossbeam_channel::Receiver<()>, shared: &Shared) {
    loop {
        match news.recv_timeout(TRUST_TICK) {
            Ok(()) => {
                thread::sleep(PUSH_GATHER);
                let due = shared.registry().take_nudges();
                for outbox in due {
                    outbox.nudge();
                }
            }
            // Newcomers become trusted with time: a servant waiting for a relay may
            // have one now.
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let mut fx = Effects::default();
                shared.registry().assign_waiting_relays(&mut fx);
                apply_effects(fx, shared);
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Writes whatever is queued for one client, as few writes as possible: everything that
/// is waiting goes out together (the pushes of a join storm coalesce). Ends when the
/// outbox is closed and written out, or the client stops taking data.
fn push_loop(stream: TcpStream, outbox: &Outbox) {
    let mut lines: Vec<Arc<str>> = Vec::new();
    while outbox.take(&mut lines) {
        if let Err(e) = write_lines(&stream, &lines) {
            debug!("write failed: {e}");
            outbox.close();
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        lines.clear();
        if lines.capacity() > 4096 {
            lines.shrink_to(4096);
        }
    }
}

/// How long the rest of an answer begun by the reading thread may take to write: a client
/// whose socket stays full that long is not reading.
const DIRECT_REST: Duration = Duration::from_secs(2);

/// Writes an answer claimed with `push_answer` from the client's reading thread, without
/// waiting: when the socket takes none of it, the writer gets it back (and the outbox
/// bounds what waits, as for any answer); when it takes only part, the rest is written
/// here within `DIRECT_REST`, or the client is taken not to be reading.
fn write_answer(stream: &TcpStream, parts: &[&str], outbox: &Outbox) -> Result<(), String> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p.as_bytes())).collect();
    // (`parts` is a few slices: a line, or a document cut around the asker's entry.)
    slices.push(IoSlice::new(b"\n"));
    let total: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    let whole = || -> Arc<str> { Arc::from(parts.concat()) };
    match socket2::SockRef::from(stream).send_vectored_with_flags(&slices, libc::MSG_DONTWAIT) {
        Ok(n) if n == total => {
            outbox.direct_done(true);
            Ok(())
        }
        Ok(0) => {
            outbox.direct_give_back(whole());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            outbox.direct_give_back(whole());
            Ok(())
        }
        Ok(n) => {
            let mut rest = whole().as_bytes().to_vec();
            rest.push(b'\n');
            rest.drain(..n.min(rest.len()));
            let _ = stream.set_write_timeout(Some(DIRECT_REST));
            let written = { stream }.write_all(&rest);
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            outbox.direct_done(written.is_ok());
            written.map_err(|_| "not reading its answers".into())
        }
        Err(e) => {
            outbox.direct_done(false);
            Err(format!("connection failed: {e}"))
        }
    }
}

/// Lines per `writev` (two slices each, within the kernel's limit of 1024).
const LINES_PER_WRITE: usize = 512;

/// Writes `lines`, each followed by `\n`, straight from the queued lines (`writev`): no
/// buffer is built. In a join storm a thousand writers each building a buffer of
/// megabytes cost more in fresh memory than the writes themselves.
fn write_lines(mut stream: &TcpStream, lines: &[Arc<str>]) -> io::Result<()> {
    for chunk in lines.chunks(LINES_PER_WRITE) {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(chunk.len() * 2);
        for line in chunk {
            slices.push(IoSlice::new(line.as_bytes()));
            slices.push(IoSlice::new(b"\n"));
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match stream.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
