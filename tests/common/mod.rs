//! The harness for genp2p's integration tests: starts the real `connection-manager` and
//! `servant` binaries, collects what they print, and talks to them over raw sockets the
//! way `telnet` would.
//!
//! Every test gets its own temporary directory for its configuration files, lets the OS
//! choose every port (the manager's `<port>0</port>`, the servants' `<listen>0</listen>`),
//! and puts a time limit on every wait, so tests run in parallel and a hang is a failure
//! rather than a stuck suite. Children are killed by a `Drop` guard. When a test fails,
//! its message ends with `dump()`: the command line, exit status, standard output and
//! standard error of every child the test started.
//!
//! Children are recorded per test thread (libtest runs each test on a thread of its
//! own), so `dump()` shows exactly the processes of the failing test.

#![allow(dead_code)]

use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any single wait may take.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// Manager settings used unless a test needs others: a short time-out, so that silent
/// clients are dropped quickly.
/// Raw test clients register ports nothing listens on; the manager's reachability probe
/// would (rightly) mark them unreachable, so tests that do not test relaying turn it off.
pub const MANAGER_DEFAULTS: &str = "<timeout>1.5</timeout><probe>false</probe>";

pub const MANAGER_BIN: &str = env!("CARGO_BIN_EXE_connection-manager");
pub const SERVANT_BIN: &str = env!("CARGO_BIN_EXE_servant");

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn try_wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// Polls `f` until it returns `Some`, for at most `WAIT`; fails the test with `what` and
/// the children's output otherwise.
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    match try_wait_for(WAIT, f) {
        Some(v) => v,
        None => fail(&format!("timed out after {WAIT:?} waiting for {what}")),
    }
}

/// Fails the test with `msg` and the output of every child it started.
#[track_caller]
pub fn fail(msg: &str) -> ! {
    panic!("{msg}\n{}", dump())
}

// ---------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------

/// A directory of its own for one test; removed when the test passes, kept for a look
/// when it fails.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(test: &str) -> TestDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("genp2p-test-{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test's temporary directory");
        TestDir { path }
    }

    /// Writes `text` to `name` in this directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, text).expect("write a file in the test's temporary directory");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

type Lines = Arc<Mutex<Vec<String>>>;

/// What `dump()` shows of one child.
struct Record {
    label: String,
    cmd: String,
    stdout: Lines,
    stderr: Lines,
    /// Written when the harness sees the child exit (or kills it).
    status: Mutex<Option<String>>,
    /// How many of the two output pipes have reached their end (written by the collectors).
    closed: AtomicU64,
}

thread_local! {
    /// Every child started by the test running on this thread.
    static RECORDS: RefCell<Vec<Arc<Record>>> = const { RefCell::new(Vec::new()) };
}

/// The command, exit status, stdout and stderr of every child the current test started.
pub fn dump() -> String {
    let mut out = String::new();
    RECORDS.with(|r| {
        for rec in r.borrow().iter() {
            let status = rec
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| "still running".into());
            let _ = writeln!(out, "===== {}: {}", rec.label, rec.cmd);
            let _ = writeln!(out, "----- status: {status}");
            for (what, lines) in [("stdout", &rec.stdout), ("stderr", &rec.stderr)] {
                let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(out, "----- {what} ({} lines)", lines.len());
                for l in lines.iter() {
                    let _ = writeln!(out, "  {l}");
                }
            }
        }
    });
    out
}

fn collect(pipe: impl Read + Send + 'static, record: Arc<Record>, stderr: bool, name: String) {
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            let lines = if stderr {
                &record.stderr
            } else {
                &record.stdout
            };
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => {
                        record.closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                    }
                }
            }
        })
        .expect("start an output collector thread");
}

/// A running child with piped stdin, stdout and stderr; killed when dropped.
pub struct Proc {
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    record: Arc<Record>,
}

impl Proc {
    /// Starts `program` with `args`, `RUST_LOG=rust_log`, in `dir`.
    pub fn spawn(
        label: &str,
        program: &str,
        args: &[OsString],
        rust_log: &str,
        dir: &Path,
    ) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .env("RUST_LOG", rust_log)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!(
            "cd {} && RUST_LOG={rust_log} {program} {}",
            dir.display(),
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| fail(&format!("cannot start {shown}: {e}")));
        let record = Arc::new(Record {
            label: label.to_owned(),
            cmd: shown,
            stdout: Arc::default(),
            stderr: Arc::default(),
            status: Mutex::new(None),
            closed: AtomicU64::new(0),
        });
        collect(
            child.stdout.take().expect("piped stdout"),
            Arc::clone(&record),
            false,
            format!("out-{label}"),
        );
        collect(
            child.stderr.take().expect("piped stderr"),
            Arc::clone(&record),
            true,
            format!("err-{label}"),
        );
        RECORDS.with(|r| r.borrow_mut().push(Arc::clone(&record)));
        Proc {
            label: label.to_owned(),
            stdin: child.stdin.take(),
            child,
            record,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.record
            .stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.record
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for a line of standard output that `pred` accepts, and returns it.
    pub fn wait_stdout(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(&format!("{} to print {what}", self.label), || {
            self.stdout().into_iter().find(|l| pred(l))
        })
    }

    /// Waits for a line of standard error that `pred` accepts, and returns it.
    pub fn wait_stderr(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(&format!("{} to log {what}", self.label), || {
            self.stderr().into_iter().find(|l| pred(l))
        })
    }

    /// Waits for a line of standard error containing `text`.
    pub fn wait_log(&self, text: &str) -> String {
        self.wait_stderr(&format!("{text:?}"), |l| l.contains(text))
    }

    /// How many lines of standard error contain `text`.
    pub fn count_log(&self, text: &str) -> usize {
        self.stderr().iter().filter(|l| l.contains(text)).count()
    }

    /// Writes `line` and a newline to the child's standard input.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let label = self.label.clone();
        let stdin = match self.stdin.as_mut() {
            Some(s) => s,
            None => fail(&format!("{label}: standard input is already closed")),
        };
        if let Err(e) = stdin.write_all(bytes).and_then(|_| stdin.flush()) {
            fail(&format!("{label}: cannot write to standard input: {e}"));
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal by name (`INT`, `TERM`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => fail(&format!("kill -{sig} {} failed: {other:?}", self.label)),
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.set_status(status, " (killed by the test)");
        }
    }

    fn set_status(&self, status: ExitStatus, note: &str) {
        *self.record.status.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(format!("{status}{note}"));
    }

    /// The exit status, if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.set_status(status, "");
                Some(status)
            }
            Ok(None) => None,
            Err(e) => fail(&format!("{}: cannot wait: {e}", self.label)),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits for the child to exit and returns its status; by then everything it printed
    /// has been collected.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let label = self.label.clone();
        let status = wait_for(&format!("{label} to exit"), || self.try_status());
        self.wait_output_closed();
        status
    }

    /// Waits until both output pipes have reached their end.
    fn wait_output_closed(&self) {
        wait_for(&format!("{}'s output to end", self.label), || {
            (self.record.closed.load(Ordering::SeqCst) == 2).then_some(())
        });
    }

    /// The names of the child's threads, from /proc (Linux truncates them to 15 bytes).
    pub fn thread_names(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.pid());
        let Ok(tasks) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim_end().to_owned())
            .collect()
    }
}

/// `Threads:` and `VmRSS:` (KiB) of a process, from /proc/PID/status.
pub fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| fail(&format!("cannot read /proc/{pid}/status: {e}")));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| fail(&format!("no {name} in /proc/{pid}/status")))
    };
    (field("Threads:"), field("VmRSS:"))
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The message part of a log line: `[2024-01-01T00:00:00Z ERROR] msg` gives `msg`.
pub fn log_message(line: &str) -> &str {
    match line.strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map_or(line, |(_, m)| m),
        None => line,
    }
}

/// A port that was free a moment ago (bound to 0, read back, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------------------
// The connection manager
// ---------------------------------------------------------------------------------------

pub struct Manager {
    pub proc: Proc,
    /// The port it listens on, read from its log.
    pub port: u16,
}

/// Writes a manager configuration and starts a manager on it, without waiting.
pub fn spawn_manager(dir: &TestDir, label: &str, port: u16, settings: &str) -> Proc {
    let cfg = dir.write(
        &format!("{label}.xml"),
        &format!("<manager>\n  <port>{port}</port>\n  {settings}\n</manager>\n"),
    );
    Proc::spawn(
        label,
        MANAGER_BIN,
        &["--config".into(), cfg.into_os_string()],
        "info",
        &dir.path,
    )
}

/// Starts a manager on an OS-chosen port (or `port`, when not 0) and waits until it listens.
pub fn start_manager_on(dir: &TestDir, port: u16, settings: &str) -> Manager {
    start_labelled_manager(dir, "manager", port, settings)
}

/// `start_manager_on` for a test with more than one manager: `label` names its config
/// file and its lines in `dump()`.
pub fn start_labelled_manager(dir: &TestDir, label: &str, port: u16, settings: &str) -> Manager {
    let proc = spawn_manager(dir, label, port, settings);
    let line = proc.wait_log("connection manager listening on ");
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or_else(|| fail(&format!("no port in {line:?}")));
    Manager { proc, port }
}

pub fn start_manager(dir: &TestDir, settings: &str) -> Manager {
    start_manager_on(dir, 0, settings)
}

/// One `<peer>` of the manager's peer document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub ip: String,
    pub port: u16,
    pub offset: u32,
    pub me: bool,
    pub name: Option<String>,
    pub id: Option<String>,
}

/// Parses a `<peers>` (or `<join>`/`<leave>`) line with roxmltree, checking the article's
/// shape: each `<peer>` opens with `<ip>`, `<port>`, `<offset>` and `<me>`, in that order.
pub fn parse_peers(line: &str, root: &str) -> Result<Vec<PeerInfo>, String> {
    let doc = roxmltree::Document::parse(line).map_err(|e| format!("not XML: {e}: {line}"))?;
    let r = doc.root_element();
    if r.tag_name().name() != root {
        return Err(format!("expected <{root}>, got {line}"));
    }
    let mut out = Vec::new();
    for peer in r.children().filter(|c| c.is_element()) {
        if peer.tag_name().name() != "peer" {
            return Err(format!(
                "<{root}> holds <{}>: {line}",
                peer.tag_name().name()
            ));
        }
        let kids: Vec<_> = peer.children().filter(|c| c.is_element()).collect();
        let names: Vec<&str> = kids.iter().map(|k| k.tag_name().name()).collect();
        if names.len() < 4 || names[..4] != ["ip", "port", "offset", "me"] {
            return Err(format!("<peer> children are {names:?}: {line}"));
        }
        let text = |n: &str| {
            kids.iter()
                .find(|k| k.tag_name().name() == n)
                .map(|k| k.text().unwrap_or("").to_owned())
        };
        let me = text("me").unwrap_or_default();
        if me != "TRUE" && me != "FALSE" {
            return Err(format!("<me> is {me:?}: {line}"));
        }
        out.push(PeerInfo {
            ip: text("ip").unwrap_or_default(),
            port: text("port")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("bad <port>: {line}"))?,
            offset: text("offset")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("bad <offset>: {line}"))?,
            me: me == "TRUE",
            name: text("name"),
            id: text("id"),
        });
    }
    Ok(out)
}

/// Asks the manager for its list on a fresh connection and returns the servants listed
/// (the asker's own `me` entry left out).
pub fn listed(manager_port: u16) -> Vec<PeerInfo> {
    let mut c = Raw::connect(manager_port);
    c.send("needs peer list");
    let line = c.expect_line("the peer list");
    match parse_peers(&line, "peers") {
        Ok(peers) => peers.into_iter().filter(|p| !p.me).collect(),
        Err(e) => fail(&e),
    }
}

/// The names the manager lists.
pub fn listed_names(manager_port: u16) -> Vec<String> {
    let mut names: Vec<String> = listed(manager_port)
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    names.sort();
    names
}

/// Waits until the manager lists exactly `names` (in any order).
pub fn wait_listed(manager_port: u16, names: &[&str]) {
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_for(&format!("the manager to list exactly {want:?}"), || {
        (listed_names(manager_port) == want).then_some(())
    });
}

// ---------------------------------------------------------------------------------------
// Servants
// ---------------------------------------------------------------------------------------

pub struct Servant {
    pub proc: Proc,
    pub name: String,
    /// The port it listens on, from its log.
    pub port: u16,
    /// Its random id, from its log.
    pub id: String,
}

/// A servant configuration: `listen` is `Some(0)` for an OS-chosen port, `None` for the
/// port the manager assigns.
pub fn servant_config(name: &str, manager_port: u16, listen: Option<u16>, extra: &str) -> String {
    let listen = listen.map_or(String::new(), |p| format!("\n  <listen>{p}</listen>"));
    format!(
        "<config>\n  <connectionmgr>127.0.0.1</connectionmgr>\n  <port>{manager_port}</port>\n  <name>{name}</name>{listen}\n  <heartbeat>0.3</heartbeat>\n  {extra}\n</config>\n"
    )
}

/// Starts a servant on `config` (written to NAME.xml) with extra `args`, without waiting.
pub fn spawn_servant(
    dir: &TestDir,
    name: &str,
    config: &str,
    args: &[&str],
    rust_log: &str,
) -> Proc {
    let cfg = dir.write(&format!("{name}.xml"), config);
    let mut argv: Vec<OsString> = vec!["--config".into(), cfg.into_os_string()];
    argv.extend(args.iter().map(OsString::from));
    Proc::spawn(name, SERVANT_BIN, &argv, rust_log, &dir.path)
}

impl Servant {
    /// Waits for the servant's `joined as NAME (ID), listening on port N` line.
    pub fn joined(proc: Proc, name: &str) -> Servant {
        let line = proc.wait_log(&format!("joined as {name} ("));
        let msg = log_message(&line);
        let parsed = (|| {
            let rest = msg.strip_prefix(&format!("joined as {name} ("))?;
            let (id, rest) = rest.split_once(')')?;
            let port = rest.split("listening on port ").nth(1)?;
            let port = port
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some((id.to_owned(), port))
        })();
        let Some((id, port)) = parsed else {
            fail(&format!("cannot read the id and port in {line:?}"))
        };
        Servant {
            proc,
            name: name.to_owned(),
            port,
            id,
        }
    }

    /// The texts this servant printed as coming from `from`, in order.
    pub fn heard_from(&self, from: &str) -> Vec<String> {
        let prefix = format!("<{from}> ");
        self.proc
            .stdout()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Waits until this servant has printed `<from> text`.
    pub fn wait_heard(&self, from: &str, text: &str) {
        let want = format!("<{from}> {text}");
        self.proc.wait_stdout(&format!("{want:?}"), |l| l == want);
    }

    /// Waits until this servant has started a sender for each of `names`.
    pub fn wait_knows(&self, names: &[&str]) {
        for n in names {
            self.proc.wait_log(&format!("peer joined: {n} at "));
        }
    }
}

/// Starts a servant with `<listen>0</listen>`, the short heartbeat and `extra` settings,
/// and waits until it has joined.
pub fn start_servant(dir: &TestDir, name: &str, manager_port: u16, extra: &str) -> Servant {
    let cfg = servant_config(name, manager_port, Some(0), extra);
    Servant::joined(
        spawn_servant(
            dir,
            name,
            &cfg,
            &[],
            &std::env::var("TEST_LOG").unwrap_or("info".into()),
        ),
        name,
    )
}

/// Starts plain servants with these names and waits until each knows every other.
pub fn start_mesh(dir: &TestDir, manager_port: u16, names: &[&str]) -> Vec<Servant> {
    let servants: Vec<Servant> = names
        .iter()
        .map(|n| start_servant(dir, n, manager_port, ""))
        .collect();
    wait_mesh(&servants);
    servants
}

/// Waits until each servant has a sender for every other.
pub fn wait_mesh(servants: &[Servant]) {
    for s in servants {
        let others: Vec<&str> = servants
            .iter()
            .filter(|o| o.name != s.name)
            .map(|o| o.name.as_str())
            .collect();
        s.wait_knows(&others);
    }
}

// ---------------------------------------------------------------------------------------
// Raw connections, as telnet would make them
// ---------------------------------------------------------------------------------------

/// What one attempt to read a line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Line(String),
    /// The other end closed (or reset) the connection.
    Closed,
    /// Nothing complete before the time-out.
    Nothing,
}

/// A plain TCP client on 127.0.0.1.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// A raw client on a connected socket, with the tests' write time-out.
    fn over(stream: TcpStream) -> Raw {
        stream
            .set_write_timeout(Some(WAIT))
            .expect("set a write time-out");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| fail(&format!("cannot connect to 127.0.0.1:{port}: {e}")));
        Raw::over(stream)
    }

    /// A client whose socket is bound to `from` (another 127.0.0.x address) before it
    /// connects to 127.0.0.1:`port`, so the other side sees it come from `from`.
    pub fn connect_from(from: std::net::Ipv4Addr, port: u16) -> Raw {
        use socket2::{Domain, Socket, Type};
        let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream: TcpStream = (|| -> io::Result<TcpStream> {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            s.bind(&std::net::SocketAddr::from((from, 0)).into())?;
            s.connect_timeout(&to.into(), WAIT)?;
            Ok(s.into())
        })()
        .unwrap_or_else(|e| fail(&format!("cannot connect from {from} to {to}: {e}")));
        Raw::over(stream)
    }

    /// The local port of this connection (what the other side sees it come from).
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().expect("local address").port()
    }

    /// Sends `line` and a newline.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            fail(&format!("raw client: cannot send: {e}"));
        }
    }

    /// Reads one line (without its `\n`, lossily decoded), waiting at most `timeout`.
    pub fn read_line(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Got::Line(String::from_utf8_lossy(&line).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Nothing;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set a read time-out");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Got::Closed,
            }
        }
    }

    /// Reads exactly `n` raw bytes (what follows a `DATA` line), failing the test if they
    /// do not all come within `WAIT`.
    pub fn expect_bytes(&mut self, n: usize, what: &str) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                fail(&format!(
                    "raw client: expected {n} bytes of {what}, got {} in {WAIT:?}",
                    self.buf.len()
                ));
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set a read time-out");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => fail(&format!(
                    "raw client: closed after {} of {n} bytes of {what}",
                    self.buf.len()
                )),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => fail(&format!("raw client: reading {what}: {e}")),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Reads one line, failing the test if none comes within `WAIT`.
    pub fn expect_line(&mut self, what: &str) -> String {
        match self.read_line(WAIT) {
            Got::Line(l) => l,
            other => fail(&format!("raw client: expected {what}, got {other:?}")),
        }
    }

    /// Reads lines until one satisfies `pred` (returned) or `WAIT` passes.
    pub fn expect_line_where(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_line(left) {
                Got::Line(l) if pred(&l) => return l,
                Got::Line(l) => skipped.push(l),
                other => fail(&format!(
                    "raw client: expected {what}, got {other:?} after {skipped:?}"
                )),
            }
        }
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Starts `bin` with a config file that does not exist: it must exit non-zero with one
/// error line that names the file and the reason.
pub fn assert_missing_config_is_one_error_line(role: &str, bin: &str, file: &str) {
    let dir = TestDir::new(&format!("{role}-missing-config"));
    let mut p = Proc::spawn(
        role,
        bin,
        &["--config".into(), file.into()],
        "info",
        &dir.path,
    );
    let status = p.wait_exit();
    assert!(!status.success(), "{}", dump());
    let err = p.stderr();
    assert_eq!(err.len(), 1, "a single error line\n{}", dump());
    assert!(
        log_message(&err[0]).starts_with(&format!("{file}: cannot read: ")),
        "names the file and the reason\n{}",
        dump()
    );
}

// ---------------------------------------------------------------------------------------
// Raw clients that hold a key: an honest servant written by hand (attacks start from it)
// ---------------------------------------------------------------------------------------

pub use genp2p::identity::Identity;

/// Registers a raw client with the manager as a servant listening on `port`: `listening`,
/// the manager's `<challenge>` signed with `me`, `prove`. Returns the `<peers>` line.
pub fn register_with(c: &mut Raw, me: &Identity, port: u16, name: &str) -> String {
    let listening = format!("listening {port} {} {name} {}", me.id, me.key.hex());
    c.send(&listening);
    let challenge = c.expect_line_where("the <challenge> answering `listening`", |l| {
        l.starts_with("<challenge ")
    });
    c.send(&prove_line(me, &challenge, &listening));
    c.expect_line_where("the <peers> answering `prove`", |l| {
        l.starts_with("<peers ")
    })
}

/// The `prove` line that answers `challenge` (a `<challenge nonce="..."/>` line) to the
/// `listening` line sent before it.
pub fn prove_line(me: &Identity, challenge: &str, listening: &str) -> String {
    let nonce = match genp2p::protocol::ManagerMessage::parse(challenge) {
        Ok(genp2p::protocol::ManagerMessage::Challenge { nonce }) => nonce,
        other => fail(&format!("not a challenge: {challenge:?} ({other:?})")),
    };
    let sig = me.sign(&genp2p::protocol::listen_proof(&nonce, listening));
    format!("prove {}", genp2p::encoding::hex(&sig))
}

/// A fresh key for a raw client.
pub fn new_identity() -> Identity {
    Identity::ephemeral().unwrap_or_else(|e| fail(&format!("no key: {e}")))
}

/// A hand-written servant's sending connection to a servant: the handshake done, lines
/// written with their tags.
pub struct RawPeer {
    pub raw: Raw,
    pub me: std::sync::Arc<Identity>,
    pub name: String,
    pub link: genp2p::handshake::Link,
    /// What the servant's `READY` said it has shown from us.
    pub last: u64,
}

impl RawPeer {
    /// Connects to the servant at `port` as `me`, named `name`, and runs the handshake.
    pub fn connect(port: u16, me: std::sync::Arc<Identity>, name: &str) -> RawPeer {
        let mut raw = Raw::connect(port);
        let (link, last) = raw_handshake(&mut raw, &me, name, genp2p::handshake::Mode::Send);
        RawPeer {
            raw,
            me,
            name: name.to_owned(),
            link,
            last,
        }
    }

    /// Our signed `MSG` line (without its `\n`) for `text` as number `seq`.
    pub fn msg(&self, seq: u64, text: &str) -> String {
        signed_msg(&self.me, self.me.incarnation, seq, &self.name, text)
    }

    /// Writes `line` with this connection's tag.
    pub fn send_tagged(&mut self, line: &str) {
        let tag = genp2p::encoding::hex(&self.link.tags.tag(line.as_bytes()));
        self.raw.send(&format!("{tag} {line}"));
    }

    /// Writes `lines` as one block under one tag (`BLOCK TAG COUNT`, then the lines).
    pub fn send_block(&mut self, lines: &[String]) {
        let mut block = String::new();
        for l in lines {
            block.push_str(l);
            block.push('\n');
        }
        let tag = genp2p::encoding::hex(&self.link.tags.block(block.as_bytes()));
        self.raw
            .send_bytes(format!("BLOCK {tag} {}\n{block}", lines.len()).as_bytes());
    }

    /// Checks that the servant wrote nothing back within `wait` but its tagged
    /// `SAID INC SEQ` lines (4.5), and returns the last SEQ they said.
    pub fn nothing_but_said(&mut self, wait: Duration) -> Option<u64> {
        let mut last = None;
        loop {
            match self.raw.read_line(wait) {
                Got::Nothing => return last,
                Got::Line(l) => {
                    let Some((tag, rest)) = genp2p::protocol::split_tag(&l) else {
                        fail(&format!("an untagged answer {l:?}\n{}", dump()))
                    };
                    assert!(
                        self.link.tags.checks(&tag, rest.as_bytes()),
                        "a SAID whose tag does not match: {l:?}"
                    );
                    match genp2p::protocol::PeerLine::parse(rest) {
                        Some(Ok(genp2p::protocol::PeerLine::Said { seq, .. })) => last = Some(seq),
                        _ => fail(&format!("answered {l:?}\n{}", dump())),
                    }
                }
                other => fail(&format!("answered {other:?}\n{}", dump())),
            }
        }
    }

    /// Writes message `seq` saying `text`, signed and tagged.
    pub fn say(&mut self, seq: u64, text: &str) {
        let line = self.msg(seq, text);
        self.send_tagged(&line);
    }
}

/// A `MSG` line (without its `\n`) signed by `me`.
pub fn signed_msg(me: &Identity, incarnation: u64, seq: u64, name: &str, text: &str) -> String {
    use genp2p::protocol::{msg_line, ChatMessage};
    let sig = me.sign(&ChatMessage::signed_bytes(
        &me.id,
        incarnation,
        seq,
        name,
        text,
    ));
    let line = msg_line(&me.id, incarnation, seq, name, &sig, None, text);
    line.trim_end_matches('\n').to_owned()
}

/// The opener's handshake over a raw connection; returns the link and READY's number.
pub fn raw_handshake(
    raw: &mut Raw,
    me: &Identity,
    name: &str,
    mode: genp2p::handshake::Mode,
) -> (genp2p::handshake::Link, u64) {
    use genp2p::protocol::PeerLine;
    let (opening, hello) = genp2p::handshake::Opening::new(me, name, mode)
        .unwrap_or_else(|e| fail(&format!("cannot open: {e}")));
    raw.send_bytes(hello.as_bytes());
    let welcome = raw.expect_line("WELCOME");
    let Some(Ok(PeerLine::Welcome(w))) = PeerLine::parse(&welcome) else {
        fail(&format!("expected WELCOME, got {welcome:?}"))
    };
    let (link, proof) = opening
        .finish(me, &w, None, None)
        .unwrap_or_else(|e| fail(&format!("the servant's WELCOME: {e}")));
    raw.send_bytes(proof.as_bytes());
    let ready = raw.expect_line("READY");
    let Some(Ok(PeerLine::Ready { last })) = PeerLine::parse(&ready) else {
        fail(&format!("expected READY, got {ready:?}"))
    };
    (link, last)
}
