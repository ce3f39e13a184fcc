//! The stage every attack of `abuse` plays on: the release binaries started in the run's
//! folder with their output kept line by line (`Proc`), a manager and servants started
//! from a config (`Ctx`), sockets from other loopback addresses (attackers stand for
//! other hosts, at low priority), and what a genuine user sees meanwhile (`probe`), the
//! figure each attack is judged by, beside the attacked process's threads and RSS.

use crate::bench_common::*;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running binary: its stdout lines with when they came, its stderr lines.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Arc<Mutex<Vec<(Instant, String)>>>,
    pub err: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(bin: &Path, args: &[&str], dir: &Path) -> io::Result<Proc> {
        let mut child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (out, err) = (Arc::default(), Arc::default());
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let o: Arc<Mutex<Vec<(Instant, String)>>> = Arc::clone(&out);
        thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                o.lock().unwrap().push((Instant::now(), l));
            }
        });
        let e: Arc<Mutex<Vec<String>>> = Arc::clone(&err);
        thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                e.lock().unwrap().push(l);
            }
        });
        Ok(Proc {
            stdin: child.stdin.take(),
            child,
            out,
            err,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, line: &str) {
        if let Some(s) = &mut self.stdin {
            let _ = writeln!(s, "{line}");
        }
    }

    /// The first stderr line containing `pat`, waiting up to `limit`.
    pub fn wait_err(&self, pat: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(l) = self.err.lock().unwrap().iter().find(|l| l.contains(pat)) {
                return Some(l.clone());
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn count_err(&self, pat: &str) -> usize {
        self.err
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(pat))
            .count()
    }

    /// When stdout first showed exactly `line`, waiting up to `limit`.
    pub fn shown(&self, line: &str, limit: Duration) -> Option<Instant> {
        let end = Instant::now() + limit;
        loop {
            if let Some((t, _)) = self.out.lock().unwrap().iter().find(|(_, l)| l == line) {
                return Some(*t);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the binaries are and where the run keeps its files.
pub struct Ctx {
    pub bin: PathBuf,
    pub dir: PathBuf,
}

impl Ctx {
    /// Writes `text` to `file` in the run's folder and starts `program` on it.
    fn start(&self, program: &str, file: &str, text: String) -> Proc {
        let cfg = self.dir.join(file);
        std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("write {file}: {e}"));
        Proc::spawn(
            &self.bin.join(program),
            &["--config", cfg.to_str().unwrap()],
            &self.dir,
        )
        .unwrap_or_else(|e| panic!("start {program}: {e}"))
    }

    pub fn manager(&self, extra: &str) -> (Proc, u16) {
        let p = self.start(
            "connection-manager",
            "manager.xml",
            format!("<manager><port>0</port><timeout>3</timeout>{extra}</manager>"),
        );
        let line = p
            .wait_err("listening on", Duration::from_secs(10))
            .expect("the manager listens");
        (p, trailing_port(&line))
    }

    pub fn servant(&self, name: &str, manager: u16, extra: &str) -> (Proc, u16) {
        let p = self.start(
            "servant",
            &format!("{name}.xml"),
            format!(
                "<config><connectionmgr>127.0.0.1</connectionmgr><port>{manager}</port><name>{name}</name><listen>0</listen><heartbeat>1</heartbeat>{extra}</config>"
            ),
        );
        let line = p
            .wait_err(&format!("joined as {name} ("), Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{name} joins"));
        let port = line
            .split("listening on port ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .expect("a port in the joined line");
        (p, port)
    }
}

fn trailing_port(line: &str) -> u16 {
    line.rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("a port at the end")
}

/// A socket from `from` to 127.0.0.1:`port`.
pub fn connect_from(from: Ipv4Addr, port: u16, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&SocketAddr::from((from, 0)).into())?;
    s.connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)).into(),
        Duration::from_secs(2),
    )?;
    Ok(s.into())
}

/// Lowers the calling thread's priority to nice 19: attackers stand for hosts elsewhere,
/// whose CPU is not the servants' (as `scripts/stress.py --attacker-nice` does for its
/// processes). Linux takes a thread id for `renice -p`.
pub fn nice_this_thread() {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if let Some(tid) = tid {
        let _ = Command::new("renice")
            .args(["-n", "19", "-p", &tid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Threads and RSS (MiB) of a process.
pub fn usage(pid: u32) -> (u64, f64) {
    (threads(pid), rss_kb(pid) as f64 / 1024.0)
}

/// A manager (probe off), alice (the servant attacked) and carol (a genuine user who
/// chats to her), settled: the manager, its port, alice, her port, carol.
pub fn alice_and_carol(ctx: &Ctx) -> (Proc, u16, Proc, u16, Proc) {
    let (m, mport) = ctx.manager("<probe>false</probe>");
    let (alice, aport) = ctx.servant("alice", mport, "");
    let (carol, _) = ctx.servant("carol", mport, "");
    thread::sleep(Duration::from_millis(500));
    (m, mport, alice, aport, carol)
}

/// What a genuine user saw: carol (`from`) says 100 numbered lines, one every `every`,
/// and `to` shows them; the delay of each (p50, p99, in ms), and how many never came.
pub fn probe(from: &mut Proc, to: &Proc, tag: &str, every: Duration) -> (f64, f64, usize) {
    let mut sent = Vec::new();
    for k in 0..100 {
        let text = format!("{tag} {k}");
        sent.push((Instant::now(), format!("<carol> {text}")));
        from.send(&text);
        thread::sleep(every);
    }
    let mut delays = Vec::new();
    let mut lost = 0;
    for (at, line) in &sent {
        match to.shown(line, Duration::from_secs(5)) {
            Some(t) => delays.push(t.saturating_duration_since(*at).as_secs_f64() * 1000.0),
            None => lost += 1,
        }
    }
    if delays.is_empty() {
        return (f64::NAN, f64::NAN, lost);
    }
    (
        quantile(&mut delays, 0.5),
        quantile(&mut delays, 0.99),
        lost,
    )
}

/// One row of the table.
pub struct Row {
    pub attack: &'static str,
    pub size: String,
    /// What a genuine user saw meanwhile (`probe`): the delay of a line, p50 and p99 in
    /// ms, and lines lost; `UNPROBED` where no one chatted.
    pub seen: (f64, f64, usize),
    /// Threads and RSS (`usage`) of the attacked process before, during and after.
    pub usage: [(u64, f64); 3],
    pub outcome: String,
    /// The goal for this attack was met.
    pub ok: bool,
}

/// `Row::seen` of an attack no genuine user chatted through.
pub const UNPROBED: (f64, f64, usize) = (f64::NAN, f64::NAN, 0);

/// Waits for every attacker thread to end, then 3 s more for the attacked process (`pid`)
/// to settle: its threads and RSS after.
pub fn settle(attackers: Vec<thread::JoinHandle<()>>, pid: u32) -> (u64, f64) {
    for a in attackers {
        let _ = a.join();
    }
    thread::sleep(Duration::from_secs(3));
    usage(pid)
}
