//! The servant: a peer that listens, chats with every other servant directly and refuses
//! the hosts it has banned.
//!
//! The article's servant was one VB6 form whose Winsock events did everything on the UI
//! thread. Here its parts are threads, each named after its role, and they talk through
//! channels:
//!
//! ```text
//!   stdin ──┐                                   ┌──> send-alice ──> alice's port
//!   signals ┼──> core (main thread)               ┼──> send-bob   ──> bob's port
//!   manager-link ┘   owns the peer table          └──> ...
//!   listen ──> recv-ADDR ... ──> stdout
//! ```
//!
//! The core owns the table of peers outright (no lock): it alone starts and stops sender
//! threads, when the link reports the list or a change to it. Stopping a sender is dropping
//! its channel's sender: the thread delivers what it still holds, then ends. Shutdown is the
//! same for `/quit`, end of input, SIGINT and SIGTERM: stop reading input, drop every
//! sender's channel, wait a moment for them to deliver, say `bye` to the manager, exit 0.
//!
//! This file starts it all (`run`: the key, the first registration, the listening port,
//! the threads). The core itself is one state (`state`) and its work by job, each file
//! standing only on those below it: `banning`, `relays`, `outgrowing` (the move to the
//! overlay), `membership` (the manager's list), `commands` (what the console asks), and
//! `events`, the loop that hands each event to them.

pub mod authors;
mod banning;
pub mod bans;
mod commands;
pub mod console;
pub mod dispatch;
mod events;
pub mod hub;
pub mod inbound;
pub mod known;
pub mod link;
pub mod linking;
pub mod listener;
mod membership;
pub mod neighbors;
mod outgrowing;
pub mod puller;
pub mod receiving;
pub mod registering;
pub mod relay_watch;
mod relays;
pub mod seen;
pub mod sender;
pub mod sending;
mod state;
pub mod switch;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use log::{info, warn};

use crate::config::ServantConfig;
use crate::identity::{Identity, IdentityError, NetworkKey};
use crate::lines::LineReader;
use crate::protocol::PeerList;
use crate::transfer::download::Downloads;
use crate::transfer::Library;
use bans::Bans;
use dispatch::Dispatch;
use events::Event;
use hub::Hub;
use inbound::Inbound;
use link::ManagerWriter;
use registering::Registration;
use seen::Seen;
use state::{grace_for, Core, TICK};

/// Lines waiting for standard output before receivers wait for it.
const PRINT_QUEUE: usize = 4096;

/// Why a servant cannot run.
#[derive(Debug)]
pub enum ServantError {
    /// `<connectionmgr>` does not resolve.
    UnknownManager { host: String, source: io::Error },
    /// The listening port could not be bound.
    Listen { addr: SocketAddr, source: io::Error },
    /// A thread could not be started, or signals not watched.
    Start {
        what: &'static str,
        source: io::Error,
    },
    /// The servant's key file cannot be used.
    Identity(IdentityError),
    /// The known-peers file cannot be used.
    Known(known::KnownError),
}

impl fmt::Display for ServantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServantError::UnknownManager { host, source } => {
                write!(f, "connection manager host {host:?} is unknown: {source}")
            }
            ServantError::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServantError::Start { what, source } => write!(f, "cannot start {what}: {source}"),
            ServantError::Identity(e) => e.fmt(f),
            ServantError::Known(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ServantError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServantError::UnknownManager { source, .. }
            | ServantError::Listen { source, .. }
            | ServantError::Start { source, .. } => Some(source),
            ServantError::Identity(e) => Some(e),
            ServantError::Known(e) => Some(e),
        }
    }
}

/// How the servant runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Do not read standard input: run until SIGINT or SIGTERM (a service, a demo companion).
    pub no_input: bool,
    /// The configuration file, where `/ban` and `/unban` are saved.
    pub config_path: Option<std::path::PathBuf>,
}

/// Resolves the managers' host names, in the order the config names them: the link tries
/// them in turn. A name that is unknown is skipped with a warning when another
/// manager is left; when none is, the servant cannot start, and says which name failed.
fn resolve_managers(config: &ServantConfig) -> Result<registering::Managers, ServantError> {
    let mut managers = Vec::new();
    let mut first_error = None;
    for (host, port) in &config.managers {
        let found = (host.as_str(), *port)
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>())
            .and_then(|a| {
                if a.is_empty() {
                    Err(io::Error::new(io::ErrorKind::NotFound, "no addresses"))
                } else {
                    Ok(a)
                }
            });
        match found {
            Ok(a) => managers.push(a),
            Err(source) => {
                if config.managers.len() > 1 {
                    warn!("connection manager host {host:?} is unknown: {source}; skipped");
                }
                first_error.get_or_insert(ServantError::UnknownManager {
                    host: host.clone(),
                    source,
                });
            }
        }
    }
    match (managers.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(managers),
    }
}

/// The managers as the config names them, for messages: `host:port`, comma-separated.
fn managers_label(config: &ServantConfig) -> String {
    let named: Vec<String> = config
        .managers
        .iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .collect();
    named.join(", ")
}

/// The end of the article's `Winsock1_DataArrival` (`servants1(0).Listen`). Binds our
/// listening port: the one asked for in `<listen>`, or else the one the manager
/// assigned, or, if that one is busy here, any free port.
fn bind_listener(config: &ServantConfig, assigned: u16) -> Result<TcpListener, ServantError> {
    let port = config.listen.unwrap_or(assigned);
    let addr = SocketAddr::new(config.bind, port);
    let backlog = config.max_connections;
    match crate::limits::listen(addr, backlog) {
        Ok(l) => Ok(l),
        Err(e) if config.listen.is_none() && e.kind() == io::ErrorKind::AddrInUse => {
            let any = SocketAddr::new(config.bind, 0);
            let l = crate::limits::listen(any, backlog)
                .map_err(|source| ServantError::Listen { addr: any, source })?;
            let got = l.local_addr().map(|a| a.port()).unwrap_or(0);
            info!("assigned port {assigned} is busy here; listening on {got} instead");
            Ok(l)
        }
        Err(source) => Err(ServantError::Listen { addr, source }),
    }
}

fn spawn<F: FnOnce() + Send + 'static>(
    name: &'static str,
    f: F,
) -> Result<JoinHandle<()>, ServantError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| ServantError::Start { what: name, source })
}

/// The servant's key: from its key file (created at the first start), or for this run
/// only when there is no configuration file to put one beside. `show`: only to print
/// it, so the file is neither locked nor given a new incarnation.
pub fn identity(
    config: &ServantConfig,
    options: &Options,
    show: bool,
) -> Result<Identity, ServantError> {
    let open = if show {
        Identity::read_only
    } else {
        Identity::load_or_create
    };
    match &options.config_path {
        Some(path) => open(&config.key_path(path)),
        None => match &config.identity {
            Some(key) => open(key),
            None => {
                warn!("no configuration file: this run's key is not kept, and the id changes at every start");
                Identity::ephemeral()
            }
        },
    }
    .map_err(ServantError::Identity)
}

/// Runs a servant until `/quit`, end of input or a signal.
pub fn run(config: ServantConfig, options: Options) -> Result<(), ServantError> {
    let managers = resolve_managers(&config)?;
    crate::dial::set_source(config.bind);
    let identity = Arc::new(identity(&config, &options, false)?);
    let network = match &config.network_key {
        Some(path) => Some(NetworkKey::load(path).map_err(ServantError::Identity)?),
        None => None,
    };
    let known_path = match (&options.config_path, &config.known_peers) {
        (Some(path), _) => Some(config.known_path(path)),
        (None, known) => known.clone(),
    };
    let known = known::KnownPeers::load(known_path.as_deref()).map_err(ServantError::Known)?;
    let id = identity.id.clone();
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| format!("servant-{}", &id[..6]));
    let (events_tx, events) = unbounded::<Event>();
    crate::cli::forward_signals(events_tx.clone(), Event::Signal).map_err(|source| {
        ServantError::Start {
            what: "signal handling",
            source,
        }
    })?;

    // The article's start: connect, ask for the list, listen on the port in `<me>`. With
    // `<bootstrap>`, a manager that does not answer the first time is no reason to wait:
    // the servant listens on `<listen>` (or any port), joins the overlay through those
    // servants, and keeps trying the manager in the background.
    let mut backoff = Duration::from_millis(200);
    let mut tries = 0u32;
    let reached = loop {
        let attempt = registering::connect_first(&managers, |s| {
            let (reader, port) = registering::ask_assigned_port(&s)?;
            Ok((s, reader, port))
        });
        match attempt {
            Ok(done) => break Some(done),
            Err(e) if !config.bootstrap.is_empty() => {
                warn!(
                    "cannot reach the connection manager at {}: {e}; joining through <bootstrap> {} and retrying the manager meanwhile",
                    managers_label(&config),
                    config.bootstrap.join(", ")
                );
                break None;
            }
            Err(e) => {
                tries += 1;
                if tries == 1 {
                    warn!(
                        "cannot reach the connection manager at {}: {e}; retrying with backoff",
                        managers_label(&config)
                    );
                }
                // Wait, but leave at once on a signal.
                if let Ok(Event::Signal(sig)) = events.recv_timeout(backoff) {
                    info!("{sig}: leaving before joining");
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    let assigned = reached.as_ref().map_or(0, |((_, _, port), _)| *port);
    let listener = bind_listener(&config, assigned)?;
    let port = listener
        .local_addr()
        .map_err(|source| ServantError::Listen {
            addr: SocketAddr::new(config.bind, 0),
            source,
        })?
        .port();
    // Restores the terminal when `run` returns, after `run_joined` has stopped the printer.
    let _line_editing = console::line_editing(&name, options.no_input);
    let (out_tx, out_rx) = bounded::<String>(PRINT_QUEUE);
    // Dropping `stop_printer` ends the printer: the receivers' copies of `out_tx` live as
    // long as the listening thread, that is, as long as the process.
    let (stop_printer, printer_stop) = bounded::<()>(0);
    // Not a terminal: receivers print themselves into a shared buffer (no hand-over);
    // a terminal: everything goes through the `stdout` thread, which draws progress bars.
    let pipe = (!std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .then(|| Arc::new(console::Pipe::default()));
    let printer_pipe = pipe.clone();
    let printer = spawn("stdout", move || {
        console::print_lines(out_rx, printer_stop, printer_pipe)
    })?;
    let library = Arc::new(Library::new(
        config.share.clone(),
        config.downloads.clone(),
        config.uploads,
    ));
    if let Err(e) = library.start_indexing() {
        warn!("cannot start indexing the shared files: {e}");
    }
    let inbound = Arc::new(Inbound {
        identity: Arc::clone(&identity),
        name: name.clone(),
        network: network.clone(),
        authors: Default::default(),
        known,
        relayed: Default::default(),
        banned_authors: Default::default(),
        banned_lines: Default::default(),
        said: Default::default(),
        refusals: std::sync::Mutex::new(crate::limits::LogLimiter::new(Duration::from_secs(60))),
        bans: Bans::start(config.bans.clone()),
        seen: Seen::default(),
        out: out_tx.clone(),
        pipe: pipe.clone(),
        hub: Hub::default(),
        links: Default::default(),
        library: Arc::clone(&library),
    });
    let inb = Arc::clone(&inbound);
    let caps = crate::limits::Caps {
        total: config.max_connections,
        per_address: config.max_per_address,
        // A quarter of the places only listed servants may take: however many idle
        // connections strangers hold, a listed peer finds a place, and past the other
        // three quarters a stranger's newcomer closes the longest idle of theirs.
        reserved: config.max_connections / 4,
    };
    spawn("listen", move || listener::accept_loop(listener, inb, caps))?;

    if let Some(public) = config.public_port {
        info!("listening on port {port}; telling the manager {public} (<publicport>)");
    }
    let me = Registration {
        identity: Arc::clone(&identity),
        name: name.clone(),
        port: config.public_port.unwrap_or(port),
        network,
    };
    let first = reached.and_then(|((stream, mut reader, _), manager)| {
        match registering::register(&stream, &mut reader, &me) {
            Ok(list) => Some((manager, stream, reader, list)),
            Err(e) => {
                // Listening already; the link keeps trying to get us listed.
                warn!("registering with the connection manager failed: {e}; retrying");
                None
            }
        }
    });
    run_joined(
        config,
        options,
        managers,
        me,
        first,
        events_tx,
        events,
        Output {
            out: out_tx,
            printer,
            stop_printer,
            inbound,
        },
    )
}

/// The threads and channels behind what the servant shows.
struct Output {
    /// Lines for standard output.
    out: Sender<String>,
    printer: JoinHandle<()>,
    /// Dropping it ends the printer once what is queued is printed.
    stop_printer: Sender<()>,
    /// What every receiving thread shares (the dedup table, the relay hub).
    inbound: Arc<Inbound>,
}

/// The first registration: which manager, its connection and the list that answered it.
type Session = (usize, TcpStream, LineReader<TcpStream>, PeerList);

/// Runs the joined servant: starts the link and the input, then the core loop.
#[allow(clippy::too_many_arguments)]
fn run_joined(
    config: ServantConfig,
    options: Options,
    managers: registering::Managers,
    me: Registration,
    first: Option<Session>,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    output: Output,
) -> Result<(), ServantError> {
    let Output {
        out: out_tx,
        printer,
        stop_printer,
        inbound,
    } = output;
    let (id, name, port) = (me.identity.id.clone(), me.name.clone(), me.port);
    let identity = Arc::clone(&me.identity);
    let listed = first.is_some();
    let list = first
        .as_ref()
        .map(|(_, _, _, l)| l.clone())
        .unwrap_or_default();
    info!(
        "joined as {name} ({id}), listening on port {}; {} other servant(s) on the network",
        me.port,
        list.peers.iter().filter(|p| !p.me).count()
    );
    let writer = Arc::new(ManagerWriter::default());
    {
        let (w, tx, heartbeat) = (Arc::clone(&writer), events_tx.clone(), config.heartbeat);
        let session = first.map(|(m, s, r, l)| link::Session {
            manager: m,
            stream: s,
            reader: r,
            version: l.version,
            timeout_ms: l.timeout_ms,
        });
        let events = link::Events {
            tx,
            wrap: Event::Link,
        };
        spawn("manager-link", move || {
            link::run(managers, me, heartbeat, session, &w, events)
        })?;
    }
    let dispatch = Arc::new(Dispatch::new(identity, name.clone(), Arc::clone(&inbound)));
    if !options.no_input {
        let tx = events_tx.clone();
        let typist = Arc::clone(&dispatch);
        let known = Arc::clone(&inbound);
        spawn("stdin", move || {
            let names = |prefix: &str| known.known.names_starting(prefix);
            console::read_input(tx, Event::Input, Event::InputEnded, names, |texts, more| {
                typist.say_all(texts, more)
            })
        })?;
    }
    drop(events_tx);

    let mut core = Core {
        config,
        config_path: options.config_path.clone(),
        id,
        name,
        dispatch,
        peers: HashMap::new(),
        listed: HashMap::new(),
        grace_until: None,
        grace: grace_for(list.timeout_ms),
        epoch: list.epoch.clone(),
        manager_up: listed,
        out: out_tx,
        stopping: Vec::new(),
        writer: Arc::clone(&writer),
        inbound,
        puller: None,
        relay_watch: None,
        said: Default::default(),
        relayed: Default::default(),
        next_tick: Instant::now() + TICK,
        downloads: Arc::new(Downloads::default()),
        joined: Instant::now(),
        my_offset: None,
        my_ip: None,
        port,
        overlay: None,
        mesh_until: None,
        hidden: false,
        listed_since: HashMap::new(),
    };
    core.apply_list(list);
    if !core.manager_up && !core.config.bootstrap.is_empty() {
        core.bootstrap_overlay();
    }
    let why = core.run(&events);
    info!("leaving: {why}");
    core.shutdown();
    core.inbound.known.save();
    writer.bye();
    drop(core);
    drop(stop_printer);
    let _ = printer.join();
    Ok(())
}
