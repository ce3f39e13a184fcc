//! The process plumbing every benchmark of `bench_driver` stands on: starting a process
//! so that the dead-man timer can kill it (`start`, `Proc`), the run's folders and its
//! results file (`Ctx`), waiting for a log line, a port or an exit, the connection
//! manager and the `PORT N` printers (floors) most benchmarks measure against, and the
//! `loadgen` runs whose JSON line becomes a result row. It measures nothing itself.

use crate::bench_common::Json;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Pids of every process started, for the dead-man timer.
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A process started by `start`: killed when dropped, and by `stop_all_after`.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        PIDS.lock().unwrap().retain(|&p| p != pid);
    }
}

/// Kills every process still started (kill -9) and exits 3 once `limit` has passed,
/// whatever the driver is doing: the dead-man timer of `--limit-secs`.
pub fn stop_all_after(limit: Duration) {
    let limit = limit.as_secs();
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(limit));
        eprintln!("bench_driver: time limit of {limit}s reached; stopping what it started");
        for pid in PIDS.lock().unwrap().iter() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        std::process::exit(3);
    });
}

pub fn start(mut cmd: Command) -> io::Result<Proc> {
    let child = cmd.spawn()?;
    PIDS.lock().unwrap().push(child.id());
    Ok(Proc { child })
}

/// Where the binaries are, where logs and configs go, and the results file.
pub struct Ctx {
    pub out: PathBuf,
    pub bin: PathBuf,
    pub ex: PathBuf,
    pub results: Mutex<File>,
    pub tck: f64,
}

impl Ctx {
    pub fn emit(&self, j: Json) {
        let line = j.finish();
        eprintln!("  {line}");
        let mut f = self.results.lock().unwrap();
        let _ = writeln!(f, "{line}");
    }
    /// `head` with the figures of `r`, or an error row that says what failed.
    pub fn emit_result(&self, head: Json, r: Res<Json>, what: &str) {
        match r {
            Ok(j) => self.emit(head.merge(&j)),
            Err(e) => self.emit(
                Json::new()
                    .str("test", "error")
                    .str("what", &format!("{what}: {e}")),
            ),
        }
    }
    pub fn log(&self, name: &str) -> File {
        File::create(self.out.join("logs").join(name)).expect("log file")
    }
    pub fn conf(&self, name: &str, text: &str) -> PathBuf {
        let p = self.out.join("conf").join(name);
        fs::write(&p, text).expect("config file");
        p
    }
}

pub type Res<T> = Result<T, String>;

pub fn wait_for_line(path: &Path, needle: &str, limit: Duration) -> Option<String> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(text) = fs::read_to_string(path) {
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return Some(l.to_owned());
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Starts a connection manager on 127.0.0.1, port chosen by the OS.
pub fn start_manager(ctx: &Ctx, tag: &str, max_conn: usize) -> Res<(Proc, SocketAddr)> {
    start_manager_with(ctx, tag, max_conn, 120)
}

/// `timeout`: seconds a silent listed client stays listed (the fake clients never beat).
pub fn start_manager_with(
    ctx: &Ctx,
    tag: &str,
    max_conn: usize,
    timeout: u64,
) -> Res<(Proc, SocketAddr)> {
    let conf = ctx.conf(
        &format!("manager-{tag}.xml"),
        &format!(
            "<manager><port>0</port><bind>127.0.0.1</bind><timeout>{timeout}</timeout>\
             <idletimeout>{timeout}</idletimeout><maxconnections>{max_conn}</maxconnections>\
             <maxperaddress>{max_conn}</maxperaddress></manager>\n"
        ),
    );
    let log = ctx.out.join("logs").join(format!("manager-{tag}.log"));
    let mut cmd = Command::new(ctx.bin.join("connection-manager"));
    cmd.arg("--config")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).map_err(|e| e.to_string())?);
    let p = start(cmd).map_err(|e| format!("cannot start connection-manager: {e}"))?;
    let line = wait_for_line(&log, "listening on ", Duration::from_secs(10))
        .ok_or("connection-manager did not say where it listens")?;
    let addr = line
        .rsplit("listening on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| format!("cannot read the address in {line:?}"))?;
    Ok((p, addr))
}

/// Starts an example that prints `PORT N` first; returns it and the port.
pub fn start_port_printer(
    ctx: &Ctx,
    exe: &str,
    args: &[&str],
    log: &str,
) -> Res<(Proc, u16, ChildStdin)> {
    let mut cmd = Command::new(ctx.ex.join(exe));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(ctx.log(log));
    let mut p = start(cmd).map_err(|e| format!("cannot start {exe}: {e}"))?;
    let stdin = p.child.stdin.take().unwrap();
    let mut out = BufReader::new(p.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let port = line
        .strip_prefix("PORT ")
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("{exe} said {line:?}"))?;
    thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Ok((p, port, stdin))
}

/// Runs the `loadgen` example with `args` and returns the JSON line it printed.
pub fn loadgen(ctx: &Ctx, args: &[&str]) -> Res<String> {
    let out = Command::new(ctx.ex.join("loadgen"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run loadgen: {e}"))?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !s.starts_with('{') {
        return Err(format!("loadgen {args:?} printed {s:?} ({})", out.status));
    }
    Ok(s)
}

/// Writes a row of `head`'s fields followed by those of `raw`, a JSON line of `loadgen`.
pub fn emit_raw(ctx: &Ctx, head: Json, raw: &str) {
    let mut h = head.finish();
    h.pop();
    let line = format!("{h},{}", &raw[1..]);
    eprintln!("  {line}");
    let _ = writeln!(ctx.results.lock().unwrap(), "{line}");
}

pub fn which(exe: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(exe))
            .find(|f| f.is_file())
    })
}

pub fn deb_version(pkg: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A port the OS says is free on 127.0.0.1 (bound to 0, then released).
pub fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Waits until something listens on 127.0.0.1:`port` (/proc/net/tcp, state 0A), without
/// connecting to it (a one-shot `socat tcp-listen` would take the probe for its client).
pub fn wait_listening(port: u16, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    while Instant::now() < end {
        if fs::read_to_string("/proc/net/tcp").is_ok_and(|t| t.contains(&needle)) {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Waits for a child to exit, at most `limit`; kills it after that.
pub fn wait_exit(p: &mut Proc, limit: Duration) -> Res<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        match p.child.try_wait() {
            Ok(Some(s)) => return Ok(s),
            Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = p.child.kill();
                return Err(format!("still running after {limit:?}; killed"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
