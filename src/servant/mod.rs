//! The servant: a peer that listens, chats with every other servant directly and refuses
//! the hosts it has banned.
//!
//! The article's servant was one VB6 form whose Winsock events did everything on the UI
//! thread. Here its parts are threads, each named after its role, and they talk through
//! channels:
//!
//! ```text
//!   stdin ──┐                                   ┌──> send-alice ──> alice's port
//!   signals ┼──> core (this module, main thread) ┼──> send-bob   ──> bob's port
//!   manager-link ┘   owns the peer table          └──> ...
//!   listen ──> recv-ADDR ... ──> stdout
//! ```
//!
//! The core owns the table of peers outright (no lock): it alone starts and stops sender
//! threads, when the link reports the list or a change to it. Stopping a sender is dropping
//! its channel's sender: the thread delivers what it still holds, then ends. Shutdown is the
//! same for `/quit`, end of input, SIGINT and SIGTERM: stop reading input, drop every
//! sender's channel, wait a moment for them to deliver, say `bye` to the manager, exit 0.

pub mod authors;
pub mod bans;
pub mod console;
pub mod dispatch;
pub mod known;
pub mod link;
pub mod listener;
pub mod neighbors;
pub mod relay_watch;
pub mod relaying;
pub mod seen;
pub mod sender;
pub mod switch;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use log::{info, warn};

use crate::config::{edit_bans, is_ban_target, BanEdit, ServantConfig};
use crate::escape::Shown;
use crate::identity::{Identity, IdentityError, NetworkKey, PeerKey};
use crate::lines::LineReader;
use crate::protocol::{PeerEntry, PeerList};
use crate::transfer::download::{self, Downloads};
use crate::transfer::Library;
use bans::Bans;
use console::{Input, HELP};
use dispatch::{Dispatch, PeerQueue};
use link::{LinkEvent, ManagerWriter, Registration};
use listener::Inbound;
use neighbors::link::ToDriver;
use neighbors::Neighbors;
use relaying::{Hub, Puller};
use seen::Seen;
use sender::{Outgoing, Target, Wire};

/// How often the core looks around on its own: the authors banned by address (host names
/// in the bans are resolved every 30 s), and whether our relay brings what others say.
const TICK: Duration = Duration::from_secs(5);

/// How long shutdown waits for senders to deliver what they hold.
const LINGER: Duration = Duration::from_secs(3);
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

/// Everything the core waits for.
enum Event {
    Input(Input),
    InputEnded,
    Signal(&'static str),
    Link(LinkEvent),
}

/// How the servant runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Do not read standard input: run until SIGINT or SIGTERM (a service, a demo companion).
    pub no_input: bool,
    /// The configuration file, where `/ban` and `/unban` are saved.
    pub config_path: Option<std::path::PathBuf>,
}

/// A peer we send to.
struct Peer {
    entry: PeerEntry,
    addr: SocketAddr,
    /// Dropping it (with `drain`) stops the sender thread.
    tx: Sender<Arc<Outgoing>>,
    /// The core's handle on the same queue, to drop the oldest message when it is full.
    drain: Receiver<Arc<Outgoing>>,
    wire: Arc<Wire>,
    thread: JoinHandle<()>,
}

/// A peer whose sender was stopped.
struct PeerEntryAddr {
    entry: PeerEntry,
    addr: SocketAddr,
}

/// The core's state.
struct Core {
    config: ServantConfig,
    /// Where `/ban` and `/unban` are saved.
    config_path: Option<std::path::PathBuf>,
    id: String,
    name: String,
    /// Every peer's queue, for what the user types (see `dispatch`).
    dispatch: Arc<Dispatch>,
    peers: HashMap<String, Peer>,
    /// The peers the manager lists now, by key, relayed ones included. After reconnecting
    /// to a restarted manager, peers it does not list yet are kept until `grace_until`
    /// (they are re-registering too).
    listed: HashMap<String, PeerEntry>,
    grace_until: Option<Instant>,
    /// How long a grace period lasts with the current manager (`grace_for`).
    grace: Duration,
    epoch: String,
    manager_up: bool,
    out: Sender<String>,
    /// Senders stopped while running, joined at shutdown if still running.
    stopping: Vec<JoinHandle<()>>,
    /// Our line to the manager, for complaints.
    writer: Arc<ManagerWriter>,
    inbound: Arc<Inbound>,
    /// Set while we cannot be reached: the thread pulling our messages from a relay.
    puller: Option<Puller>,
    /// Since when we pull from the current relay, and whether we gave it up already.
    relay_watch: Option<(Instant, bool)>,
    /// What the servants we send to say they wrote (see `relay_watch`).
    said: Arc<relay_watch::Said>,
    /// Set while we pull from a relay, for the senders (`Target::relayed`).
    relayed: Arc<std::sync::atomic::AtomicBool>,
    /// When the core next looks around on its own (`TICK`).
    next_tick: Instant,
    /// This run's downloads, for `/downloads`.
    downloads: Arc<Downloads>,
    /// When we joined the network: a relay catches us up on what was said since.
    joined: Instant,
    /// When each listed servant was first listed here, by id.
    listed_since: HashMap<String, Instant>,
    /// Our slot at the manager, from the last whole list (`<me>TRUE</me>`): `/peers` on a
    /// relay names itself, not "slot N", as the relay of the servants it serves.
    my_offset: Option<u32>,
    /// Our address as the manager sees it, from the last whole list: where the overlay's
    /// servants dial us.
    my_ip: Option<IpAddr>,
    /// The port we are listed at (`<publicport>` or the one we listen on).
    port: u16,
    /// Set once the network has outgrown `<fullmesh>` (see `switch`).
    overlay: Option<Neighbors>,
    /// When the links to every servant close, after joining the overlay.
    mesh_until: Option<Instant>,
    /// The manager finds us unreachable (it named a relay for us).
    hidden: bool,
}

/// The grace period after a manager change: the manager's time-out (at least 3 s) and 2 s
/// more, time for every servant to beat and re-register.
fn grace_for(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms.max(3000)) + Duration::from_secs(2)
}

/// Resolves the managers' host names, in the order the config names them: the link tries
/// them in turn. A name that is unknown is skipped with a warning when another
/// manager is left; when none is, the servant cannot start, and says which name failed.
fn resolve_managers(config: &ServantConfig) -> Result<link::Managers, ServantError> {
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
        let attempt = link::connect_first(&managers, |s| {
            let (reader, port) = link::ask_assigned_port(&s)?;
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
        match link::register(&stream, &mut reader, &me) {
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
    managers: link::Managers,
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

impl Core {
    /// The core loop: one event at a time, until it is time to leave.
    fn run(&mut self, events: &Receiver<Event>) -> String {
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
                Ok(Event::Input(Input::Say(text))) => self.dispatch.say(text, false),
                Ok(Event::Input(Input::Peers)) => self.show_peers(),
                Ok(Event::Input(Input::Help)) => self.print(HELP.to_owned()),
                Ok(Event::Input(Input::Unknown(cmd))) => {
                    self.print(format!("unknown command {cmd}; /help lists the commands"))
                }
                Ok(Event::Input(Input::Quit)) => return "/quit".into(),
                Ok(Event::Input(Input::Ban(t))) => self.edit_bans(BanEdit::Add(&t)),
                Ok(Event::Input(Input::Unban(t))) => self.edit_bans(BanEdit::Remove(&t)),
                Ok(Event::Input(Input::Files)) => self.list_files(),
                Ok(Event::Input(Input::Get(name))) => self.get(name),
                Ok(Event::Input(Input::Downloads)) => {
                    let lines = self.downloads.lines();
                    if lines.is_empty() {
                        self.print("no downloads".into());
                    }
                    for l in lines {
                        self.print(l);
                    }
                }
                Ok(Event::Input(Input::Trust(name))) => {
                    let answer = self.inbound.known.trust(&name);
                    self.inbound.known.flush();
                    info!("{answer}");
                    self.print(answer);
                }
                Ok(Event::Input(Input::Bans)) => {
                    let bans = self.inbound.bans.targets();
                    let dropped = self.inbound.banned_lines.load(Ordering::Relaxed);
                    let authors = self.inbound.banned_authors.len();
                    if bans.is_empty() {
                        self.print("no bans".to_owned());
                    } else {
                        self.print(format!("banned: {}", bans.join(", ")));
                        self.print(format!(
                            "  {authors} servant(s) listed at banned addresses; {dropped} line(s) by them dropped"
                        ));
                    }
                }
                Ok(Event::InputEnded) => return "end of input".into(),
                Ok(Event::Signal(name)) => return name.into(),
                Ok(Event::Link(ev)) => self.on_link(ev),
                Err(RecvTimeoutError::Timeout) => self.end_grace(),
                Err(RecvTimeoutError::Disconnected) => return "every input is gone".into(),
            }
        }
    }

    /// Peers we can connect to (relayed ones cannot be reached), for file requests.
    fn file_peers(&self) -> Vec<download::Peer> {
        if self.overlay.is_some() {
            // No link to every servant: every listed servant that can be dialled.
            return self
                .listed
                .values()
                .filter_map(|e| {
                    switch::contact_of(e).map(|c| download::Peer {
                        label: e.label(),
                        addr: c.addr,
                    })
                })
                .collect();
        }
        self.peers
            .values()
            .map(|p| download::Peer {
                label: p.entry.label(),
                addr: p.addr,
            })
            .collect()
    }

    /// `/files`: asks every peer what it shares, on a `files` thread, and prints a table.
    fn list_files(&self) {
        let (peers, out) = (self.file_peers(), self.out.clone());
        let spawned = thread::Builder::new().name("files".into()).spawn(move || {
            let mut rows: std::collections::BTreeMap<(String, String), (u64, Vec<String>)> =
                Default::default();
            let mut silent = Vec::new();
            for r in download::list_all(&peers) {
                match r {
                    Ok(offers) => {
                        for o in offers {
                            let who = if o.complete {
                                o.peer.label.clone()
                            } else {
                                format!("{} (partial)", o.peer.label)
                            };
                            let row = rows.entry((o.name, o.id)).or_insert((o.size, Vec::new()));
                            row.1.push(who);
                        }
                    }
                    Err((p, e)) => silent.push(format!("{} ({e})", p.label)),
                }
            }
            let _ = out.send(format!("{} file(s) on the network", rows.len()));
            for ((name, _), (size, who)) in rows {
                let _ = out.send(format!("  {name:<32} {size:>12} bytes  {}", who.join(", ")));
            }
            if !silent.is_empty() {
                let _ = out.send(format!("  no answer from: {}", silent.join(", ")));
            }
        });
        if let Err(e) = spawned {
            warn!("cannot start /files: {e}");
        }
    }

    /// `/get NAME`: downloads from every peer that has it.
    fn get(&self, name: String) {
        let job = download::Job {
            name,
            peers: self.file_peers(),
            library: Arc::clone(&self.inbound.library),
            workers: self.config.workers,
            out: self.out.clone(),
            downloads: Arc::clone(&self.downloads),
        };
        if let Err(e) = download::start(job) {
            warn!("cannot start the download: {e}");
        }
    }

    /// `/ban` and `/unban`: saved to the config file (atomically, keeping the rest of
    /// it), then applied at once.
    fn edit_bans(&mut self, edit: BanEdit) {
        let target = match edit {
            BanEdit::Add(t) | BanEdit::Remove(t) => t,
        };
        if !is_ban_target(target) {
            return self.print(format!("{target:?} is not an IP address or host name"));
        }
        let bans = match &self.config_path {
            Some(path) => match edit_bans(path, edit) {
                Ok(bans) => bans,
                Err(e) => {
                    warn!("{e}");
                    return self.print(format!("not changed: {e}"));
                }
            },
            None => {
                let mut bans = self.inbound.bans.targets();
                bans.retain(|b| b != target);
                if let BanEdit::Add(t) = edit {
                    bans.push(t.to_owned());
                }
                bans
            }
        };
        self.inbound.bans.set_targets(bans);
        self.refresh_banned_authors();
        let verb = if matches!(edit, BanEdit::Add(_)) {
            "banned"
        } else {
            "unbanned"
        };
        let saved = match &self.config_path {
            Some(p) => format!(" (saved to {})", p.display()),
            None => " (for this run only: no config file)".to_owned(),
        };
        info!("{verb} {target}{saved}");
        self.print(format!("{verb} {target}{saved}"));
    }

    fn print(&self, line: String) {
        let _ = self.out.send(line);
    }

    /// `/peers`: the article's `userList1`, with each peer's state.
    fn show_peers(&self) {
        if let Some(n) = &self.overlay {
            return self.show_overlay(n);
        }
        let mut lines = vec![format!(
            "{} peer(s); manager {}",
            self.listed.len().max(self.peers.len()),
            if self.manager_up {
                "connected"
            } else {
                "unreachable, reconnecting"
            }
        )];
        let label_of = |offset: u32| {
            if self.my_offset == Some(offset) {
                return format!("{} (this servant)", self.name);
            }
            self.listed
                .values()
                .find(|e| e.offset == offset)
                .map_or(format!("slot {offset}"), PeerEntry::label)
        };
        let mut keys: Vec<&String> = self.listed.keys().chain(self.peers.keys()).collect();
        keys.sort_by_key(|k| {
            self.peers
                .get(*k)
                .map(|p| p.entry.offset)
                .or(self.listed.get(*k).map(|e| e.offset))
        });
        keys.dedup();
        for key in keys {
            let (entry, state) = match (self.peers.get(key), self.listed.get(key)) {
                (Some(p), listed) => {
                    let mut state = if p.wire.connected.load(Ordering::Relaxed) {
                        "connected".to_owned()
                    } else {
                        match p.wire.failures.load(Ordering::Relaxed) {
                            0 => "connecting".to_owned(),
                            n => format!("unreachable ({n} tries)"),
                        }
                    };
                    state.push_str(&format!(", {} queued", p.tx.len()));
                    if listed.is_none() {
                        state.push_str(" [kept while the manager recovers]");
                    }
                    (&p.entry, state)
                }
                (None, Some(e)) => match e.relay {
                    Some(r) => (
                        e,
                        format!("behind a firewall, relayed through {}", label_of(r)),
                    ),
                    None => (e, "not reached".to_owned()),
                },
                (None, None) => continue,
            };
            let key = entry.key.as_deref().and_then(|k| PeerKey::from_hex(k).ok());
            let standing = match (&entry.name, &key) {
                (Some(name), Some(key)) => self.inbound.known.standing(name, key),
                _ => "no key",
            };
            lines.push(format!(
                "  {:<20} {:<24} slot {:<4} {} {standing:<11} {state}",
                entry.label(),
                format!("{}:{}", Shown(&entry.ip), entry.port),
                entry.offset,
                entry.id.as_deref().unwrap_or("-"),
            ));
        }
        let mut me = format!("  {:<20} (this servant) id {}", self.name, self.id);
        if let Some(p) = &self.puller {
            me.push_str(&format!(
                "; behind a firewall, pulling from {} at {}",
                p.relay_label, p.addr
            ));
        }
        let relayed = self.inbound.hub.pullers();
        if !relayed.is_empty() {
            let names: Vec<String> = relayed
                .iter()
                .map(|id| self.listed.get(id).map_or(id.clone(), PeerEntry::label))
                .collect();
            me.push_str(&format!("; relaying to {}", names.join(", ")));
        }
        lines.push(me);
        for l in lines {
            self.print(l);
        }
    }

    /// `/peers` in the overlay: the neighbours, not every listed servant.
    fn show_overlay(&self, n: &Neighbors) {
        self.print(format!(
            "{} servant(s) listed; manager {}",
            self.listed.len() + 1,
            if self.manager_up {
                "connected"
            } else {
                "unreachable, reconnecting"
            }
        ));
        match n.view() {
            Some(view) => {
                for line in view.lines() {
                    let line = match line.strip_prefix("  neighbour ") {
                        Some(rest) => {
                            let id = rest.split_whitespace().next().unwrap_or("");
                            let name = self.listed.get(id).map_or("?".to_owned(), PeerEntry::label);
                            format!("  {name:<20} {rest}")
                        }
                        None => line.to_owned(),
                    };
                    self.print(line);
                }
            }
            None => self.print("overlay: no answer".into()),
        }
        self.print(format!("  {:<20} (this servant) id {}", self.name, self.id));
    }

    /// What the link reports (the article's `Winsock1_DataArrival`, split into events).
    fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Up { list, another } => {
                self.manager_up = true;
                self.grace = grace_for(list.timeout_ms);
                if self.epoch.is_empty() {
                    // Started without a manager (`<bootstrap>`): this is the first list.
                    info!("listed by the connection manager");
                    self.epoch = list.epoch.clone();
                } else if list.epoch != self.epoch {
                    // A restarted (or another) manager: its list fills up as servants
                    // re-register.
                    let what = if another {
                        "another connection manager lists us"
                    } else {
                        "the connection manager restarted"
                    };
                    info!(
                        "{what}; keeping known peers for {:.0}s while they rejoin",
                        self.grace.as_secs_f64()
                    );
                    self.grace_until = Some(Instant::now() + self.grace);
                    self.epoch = list.epoch.clone();
                }
                self.apply_list(list);
            }
            LinkEvent::List(list) => self.apply_list(list),
            LinkEvent::Join(entries) => {
                for e in entries {
                    self.add_or_update(e);
                }
                self.consider_overlay();
            }
            LinkEvent::Leave(entries) => {
                for e in entries {
                    let key = e.filing_key();
                    self.listed.remove(&key);
                    if let Some(id) = &e.id {
                        self.relayed().remove(id);
                        self.listed_since.remove(id);
                    }
                    if self.config.managers.len() > 1 {
                        // With several managers, leaving this one's list may only mean
                        // moving to another (back to the first, say), where we follow
                        // within three beats: kept for a grace period, dropped when it ends
                        // unless a list names it again.
                        info!(
                            "{} left the manager's list; kept for {:.0}s in case it moved to another manager",
                            e.label(),
                            self.grace.as_secs_f64()
                        );
                        let until = Instant::now() + self.grace;
                        self.grace_until = Some(self.grace_until.map_or(until, |t| t.max(until)));
                    } else {
                        self.remove(&key, "left the network");
                    }
                }
            }
            LinkEvent::Down(_) => self.manager_up = false,
            LinkEvent::Pull(Some(relay)) => self.pull_from(relay),
            LinkEvent::Sample(entries) => {
                for e in entries {
                    self.add_or_update(e);
                }
            }
            LinkEvent::Pull(None) => {
                self.hidden = false;
                if let Some(n) = &self.overlay {
                    let _ = n.tx.send(ToDriver::Hidden(false));
                }
                if let Some(p) = self.puller.take() {
                    info!("no longer pulling from {}", p.relay_label);
                }
                self.relayed.store(false, Ordering::Relaxed);
            }
        }
    }

    /// The article's "pull from another peer": we cannot be reached, so fetch every
    /// message from `relay`. A new relay replaces the old one (the manager chose again).
    fn pull_from(&mut self, relay: PeerEntry) {
        self.hidden = true;
        if let Some(n) = &self.overlay {
            // In the overlay the links it opens carry everything, both ways.
            let _ = n.tx.send(ToDriver::Hidden(true));
            return;
        }
        let Ok(ip) = relay.ip.parse::<IpAddr>() else {
            warn!(
                "the manager named a relay with a bad address {:?}",
                relay.ip
            );
            return;
        };
        let addr = SocketAddr::new(ip, relay.port);
        if self.puller.as_ref().is_some_and(|p| p.addr == addr) {
            return;
        }
        info!(
            "the manager finds us unreachable; pulling from {} at {addr}",
            relay.label()
        );
        // The old puller (if any) stops when dropped here, after the new one starts: what
        // both deliver is shown once.
        let key = self.key_of(&relay);
        if key.is_none() {
            warn!(
                "the manager named {} as our relay without a usable key",
                relay.label()
            );
            return;
        }
        match Puller::start(
            relay.label(),
            addr,
            key,
            self.joined,
            Arc::clone(&self.inbound),
        ) {
            Ok(p) => {
                self.puller = Some(p);
                self.relay_watch = Some((Instant::now(), false));
                self.relayed.store(true, Ordering::Relaxed);
            }
            Err(e) => warn!("cannot start pulling from {}: {e}", relay.label()),
        }
    }

    /// The article's `Winsock1_DataArrival` refilling `userList1`: makes the peer table
    /// match a whole list (keeping absent peers during a grace period).
    fn apply_list(&mut self, list: PeerList) {
        self.my_offset = list.me().map(|me| me.offset);
        if let Some(ip) = list.me().and_then(|me| me.ip.parse().ok()) {
            self.my_ip = Some(ip);
        }
        let my_relay = list.me().and_then(|me| me.relay);
        let others: HashMap<String, PeerEntry> = list
            .peers
            .iter()
            .filter(|e| !self.is_me(e))
            .map(|e| (e.filing_key(), e.clone()))
            .collect();
        self.listed = others;
        // Before any sender starts: a newcomer to a large network starts none.
        self.consider_overlay();
        if let Some(relay) = my_relay.and_then(|r| list.peers.iter().find(|e| e.offset == r)) {
            self.pull_from(relay.clone());
        }
        for e in list.peers {
            self.add_or_update(e);
        }
        let listed = &self.listed;
        self.inbound
            .relayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| listed.contains_key(id));
        self.listed_since.retain(|id, _| listed.contains_key(id));
        self.inbound
            .seen
            .keep(self.listed.values().filter_map(|e| e.id.clone()).collect());
        self.inbound.seen.keep_addresses(
            self.listed
                .values()
                .filter_map(|e| e.ip.parse::<IpAddr>().ok())
                .collect(),
        );
        self.refresh_banned_authors();
        if self.grace_until.is_none() {
            self.drop_unlisted();
        }
        self.consider_overlay();
    }

    fn end_grace(&mut self) {
        if self.grace_until.is_some_and(|t| Instant::now() >= t) {
            self.grace_until = None;
            self.drop_unlisted();
        }
    }

    fn drop_unlisted(&mut self) {
        let gone: Vec<String> = self
            .peers
            .keys()
            .filter(|k| !self.listed.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key, "is no longer listed");
        }
    }

    /// The key the manager lists for `e`, checked to be the key of `e`'s id, and
    /// remembered for checking its lines; `None` (and a warning) when it is missing or
    /// does not prove the id.
    fn key_of(&self, e: &PeerEntry) -> Option<PeerKey> {
        let (Some(id), Some(key)) = (&e.id, &e.key) else {
            warn!(
                "the manager lists {} without an id and key; not connecting to it",
                e.label()
            );
            return None;
        };
        match PeerKey::from_hex(key) {
            Ok(k) if k.id() == *id => {
                self.inbound.authors.learn(k);
                if let Some(name) = &e.name {
                    if let known::Standing::Changed {
                        pinned,
                        first: true,
                    } = self.inbound.known.check(name, &k)
                    {
                        let warning = known::changed_warning(name, &pinned, &k);
                        warn!("{warning}");
                        self.print(warning);
                    }
                }
                Some(k)
            }
            Ok(k) => {
                warn!(
                    "the manager lists {} under id {id} with the key of id {}; not connecting to it",
                    e.label(),
                    k.id()
                );
                None
            }
            Err(err) => {
                warn!(
                    "the manager lists {} with a {err}; not connecting to it",
                    e.label()
                );
                None
            }
        }
    }

    /// Bans follow the author: the servants the list has at a banned address are banned
    /// by id too, so their lines are dropped wherever they come from (a relay passes on
    /// what it hears; see `listener::receive`).
    fn refresh_banned_authors(&self) {
        let banned: HashSet<String> = self
            .listed
            .values()
            .filter(|e| self.at_banned_address(e))
            .filter_map(|e| e.id.clone())
            .collect();
        self.inbound.banned_authors.set(banned);
    }

    /// While we pull from a relay: if a servant we send to said it wrote a line that the
    /// relay has not brought in `relay_watch::GRACE`, the relay fails us; ask the manager
    /// for another, once per relay.
    fn watch_relay(&mut self, now: Instant) {
        let (Some(p), Some((since, false))) = (&self.puller, self.relay_watch) else {
            return;
        };
        let banned = &self.inbound.banned_authors;
        let late = self
            .said
            .overdue(&self.inbound.seen, since, now, &|id| banned.contains(id));
        let relay = p.key.map(|k| k.id());
        let others = self
            .listed
            .values()
            .filter(|e| e.relay.is_none() && e.id.is_some() && e.id != relay)
            .count();
        let Some(late) = relay_watch::verdict(&late, relay.as_deref(), others) else {
            return;
        };
        let who = self
            .listed
            .values()
            .find(|e| e.id.as_deref() == Some(late.id.as_str()))
            .map_or(late.id.clone(), PeerEntry::label);
        warn!(
            "our relay {} has not passed on line {} of {who} in {} s (the last shown is {}); asking the manager for another",
            p.relay_label,
            late.seq,
            relay_watch::GRACE.as_secs(),
            late.shown
        );
        self.relay_watch = Some((since, true));
        if let Err(e) = self.writer.replace_relay() {
            warn!("cannot ask the manager for another relay: {e}");
        }
    }

    fn at_banned_address(&self, e: &PeerEntry) -> bool {
        e.ip.parse::<IpAddr>()
            .is_ok_and(|ip| self.inbound.bans.refuses(ip))
    }

    fn note_banned(&self, e: &PeerEntry) {
        if let Some(id) = &e.id {
            self.inbound
                .banned_authors
                .mark(id, self.at_banned_address(e));
        }
    }

    fn relayed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.inbound
            .relayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `Inbound::relayed` in step with the list: `e` pulls from us when its
    /// `<relay>` is our slot, and is caught up from when it was first listed here (what
    /// was written to it while the others could not reach it, and nothing before it came).
    fn note_relayed(&mut self, e: &PeerEntry) {
        let Some(id) = &e.id else { return };
        let since = *self
            .listed_since
            .entry(id.clone())
            .or_insert_with(Instant::now);
        match (e.relay, self.my_offset) {
            (Some(r), Some(me)) if r == me => {
                self.relayed().entry(id.clone()).or_insert(since);
            }
            _ => {
                self.relayed().remove(id);
            }
        }
    }

    fn is_me(&self, e: &PeerEntry) -> bool {
        e.me || e.id.as_deref() == Some(self.id.as_str())
    }

    /// Starts (or keeps, or restarts) the sender for a listed peer. A peer behind a
    /// firewall gets none: it pulls our messages from its relay.
    fn add_or_update(&mut self, entry: PeerEntry) {
        if self.is_me(&entry) {
            return;
        }
        let key = entry.filing_key();
        if self.overlay.is_some() && self.listed.get(&key) == Some(&entry) {
            // Sampled again: its key is learnt, its name pinned and the overlay told of it
            // already. (Samples repeat servants; decoding each key again was 7 % of what
            // 1,000 idle servants did, `perf` found.)
            return;
        }
        self.listed.insert(key.clone(), entry.clone());
        self.note_relayed(&entry);
        self.note_banned(&entry);
        if let Some(id) = &entry.id {
            self.inbound.seen.keep_one(id, entry.ip.parse().ok());
        }
        // Its key is learnt (and its name pinned) even when it is relayed: its lines
        // reach us through relays, and are checked with it.
        let expect = self.key_of(&entry);
        if let Some(n) = &self.overlay {
            // In the overlay, a listed servant is someone to know, not a link to open.
            if let Some(c) = switch::contact_of(&entry) {
                let _ = n.tx.try_send(ToDriver::Learn(vec![c]));
            }
            return;
        }
        if let Some(relay) = entry.relay {
            if let Some(p) = self.stop_sender(&key) {
                info!(
                    "{} is behind a firewall: no longer connecting to it; it pulls our messages from slot {relay}",
                    p.entry.label()
                );
            }
            return;
        }
        let addr = match entry.ip.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, entry.port),
            Err(_) => {
                warn!(
                    "the manager lists {} with a bad address {:?}; ignored",
                    entry.label(),
                    entry.ip
                );
                return;
            }
        };
        if let Some(p) = self.peers.get_mut(&key) {
            if p.addr == addr {
                p.entry = entry;
                return;
            }
            // Same servant, new address: start over with a fresh sender.
            self.remove(&key, "moved");
        }
        // Unbounded, held to `<queue>` by `dispatch::deliver` (see `PeerQueue::tx`).
        let (tx, rx) = unbounded::<Arc<Outgoing>>();
        let wire = Arc::new(Wire::default());
        let complain = {
            let (writer, id) = (Arc::clone(&self.writer), entry.id.clone());
            Box::new(move || {
                if let Some(id) = &id {
                    writer.complain(id);
                }
            })
        };
        let Some(expect) = expect else {
            return;
        };
        let target = Target {
            addr,
            label: entry.label(),
            identity: Arc::clone(&self.inbound.identity),
            name: self.name.clone(),
            expect: Some(expect),
            network: self.inbound.network.clone(),
            complain,
            relayed: Arc::clone(&self.relayed),
            said: {
                let (said, id) = (Arc::clone(&self.said), entry.id.clone());
                Box::new(move |inc, seq| {
                    if let Some(id) = &id {
                        said.note(id, inc, seq);
                    }
                })
            },
        };
        match sender::spawn(target, rx.clone(), Arc::clone(&wire)) {
            Ok(thread) => {
                self.dispatch.add(PeerQueue {
                    key: key.clone(),
                    label: entry.label(),
                    tx: tx.clone(),
                    cap: self.config.queue,
                    drain: rx.clone(),
                    wire: Arc::clone(&wire),
                    dropped: Default::default(),
                });
                // Said once its queue takes what is typed: from this line on, the peer
                // hears every line (scripts and tests wait for it).
                info!(
                    "peer joined: {} at {addr} (slot {})",
                    entry.label(),
                    entry.offset
                );
                self.peers.insert(
                    key,
                    Peer {
                        entry,
                        addr,
                        tx,
                        drain: rx,
                        wire,
                        thread,
                    },
                );
            }
            Err(e) => warn!(
                "cannot start a sender for {}: {e}; it will not hear from us",
                entry.label()
            ),
        }
    }

    /// Joins the overlay once the network has outgrown `<fullmesh>` (see `switch`).
    fn consider_overlay(&mut self) {
        let servants = self.listed.len() + 1;
        if self.overlay.is_some() || !switch::wants_overlay(servants, self.config.full_mesh) {
            return;
        }
        if self.my_ip.is_none() {
            return;
        }
        let why = format!(
            "{servants} servants on the network, more than <fullmesh> {}: joining the overlay; the links to every servant close in {} s",
            self.config.full_mesh,
            switch::MESH_LINGER.as_secs()
        );
        self.start_overlay(&why);
    }

    /// Started without a manager: the overlay through `<bootstrap>` is the only way in.
    fn bootstrap_overlay(&mut self) {
        self.start_overlay("no connection manager: joining the overlay through <bootstrap>");
    }

    /// Starts the overlay at our address: the list's, or else the one towards
    /// `<bootstrap>` (resolved here once, for both).
    fn start_overlay(&mut self, why: &str) {
        let bootstrap = switch::bootstrap_addrs(&self.config);
        let Some(ip) = self
            .my_ip
            .or_else(|| switch::own_ip(&self.config, &bootstrap))
        else {
            return warn!(
                "cannot tell this host's address towards <bootstrap>; waiting for the manager"
            );
        };
        self.my_ip = Some(ip);
        let me = crate::protocol::overlay::Contact {
            id: self.id.clone(),
            addr: SocketAddr::new(ip, self.port),
        };
        let n = match switch::start(&self.inbound, me, &self.config, self.port, bootstrap) {
            Ok(n) => n,
            Err(e) => return warn!("cannot start the overlay: {e}; linking to every servant"),
        };
        info!("{why}");
        self.quiet_when_no_bans();
        if self.hidden {
            let _ = n.tx.send(ToDriver::Hidden(true));
            self.relay_watch = None;
            if let Some(p) = self.puller.take() {
                info!(
                    "no longer pulling from {}: the overlay links carry everything",
                    p.relay_label
                );
            }
        }
        let contacts: Vec<_> = self
            .listed
            .values()
            .filter_map(switch::contact_of)
            .collect();
        let first = crate::overlay::Rng::from_os().choose(&contacts).cloned();
        let _ = n.tx.send(ToDriver::Learn(contacts));
        if let Some(c) = first {
            let _ = n.tx.send(ToDriver::Join(c));
        }
        self.dispatch.set_overlay(n.tx.clone());
        self.overlay = Some(n);
        self.mesh_until = Some(Instant::now() + switch::MESH_LINGER);
    }

    /// In the overlay, each servant's join no longer concerns us, and the manager is
    /// asked for samples at each heartbeat instead, unless we ban someone: a ban follows
    /// the servants the list places at the banned address, so every join must be seen.
    /// Checked again at every tick, as `/ban` and edits of the bans file change it.
    fn quiet_when_no_bans(&self) {
        self.writer
            .set_quiet(self.inbound.bans.targets().is_empty());
    }

    /// After `MESH_LINGER` in the overlay, the links to every servant close.
    fn end_mesh(&mut self, now: Instant) {
        if self.mesh_until.is_none_or(|t| now < t) {
            return;
        }
        self.mesh_until = None;
        let keys: Vec<String> = self.peers.keys().cloned().collect();
        for key in &keys {
            self.stop_sender(key);
        }
        info!(
            "closed the links to {} servant(s); the overlay carries the chat",
            keys.len()
        );
    }

    /// The article's "discontinue attempting to communicate with the servant who left":
    /// dropping the channel ends the sender thread.
    fn remove(&mut self, key: &str, why: &str) {
        if let Some(p) = self.stop_sender(key) {
            info!("peer left: {} at {} ({why})", p.entry.label(), p.addr);
        }
    }

    /// Ends the sender thread for `key`, if there is one; returns what is left of the peer.
    fn stop_sender(&mut self, key: &str) -> Option<PeerEntryAddr> {
        let p = self.peers.remove(key)?;
        self.dispatch.remove(key);
        drop(p.tx);
        drop(p.drain);
        self.stopping.retain(|h| !h.is_finished());
        self.stopping.push(p.thread);
        Some(PeerEntryAddr {
            entry: p.entry,
            addr: p.addr,
        })
    }

    /// Stops every sender, giving them `LINGER` to deliver what they hold.
    fn shutdown(&mut self) {
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
