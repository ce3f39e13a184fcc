//! The processes a test starts, and waiting on them: each child's output collected as it
//! comes, a time limit on every wait, a temporary directory per test, and `dump()` for a
//! failing test's message.

#![allow(dead_code)]

use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
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
