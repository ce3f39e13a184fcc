//! The abuse attacks against the release binaries on loopback, each beside a genuine user
//! (`make stress` runs it after `scripts/stress.py`). For each attack: its size, what a
//! genuine user saw meanwhile (the delay of a chat line, p50 and p99, and lines lost), and
//! the attacked servant's threads and RSS before, during and after. Prints a Markdown
//! table and writes it to `--out` (default bench/ABUSE.md).
//!
//! - `places`: 2,000 idle connections from 50 addresses held open (reconnecting when
//!   closed) against a servant with the default 512 places; a listed servant joins and
//!   speaks, and a person with telnet types a line.
//! - `origins`: 1,000,000 `MSG` lines under random origins over one authenticated link,
//!   then 20,000 fresh keys each with a handshake and one line.
//! - `squat`: 50 file connections from 50 addresses that ask for pieces and read nothing,
//!   reconnecting when cut; a 100 MiB download beside one made without them.
//! - `complaints`: three newcomers at three addresses complain about a servant.
//!
//! `abuse --bin target/release [--only NAME] [--out FILE]`. Every loop is bounded by a
//! count and a time; the whole run ends within `--limit-secs` (default 400).

#[path = "bench_common/mod.rs"]
mod bench_common;

use bench_common::*;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use genp2p::handshake::{Link, Mode, Opening};
use genp2p::identity::Identity;
use genp2p::protocol::{msg_line, ChatMessage, ManagerMessage, PeerLine};

/// A running binary: its stdout lines with when they came, its stderr lines.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<(Instant, String)>>>,
    err: Arc<Mutex<Vec<String>>>,
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, line: &str) {
        if let Some(s) = &mut self.stdin {
            let _ = writeln!(s, "{line}");
        }
    }

    /// The first stderr line containing `pat`, waiting up to `limit`.
    fn wait_err(&self, pat: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(l) = self.err.lock().unwrap().iter().find(|l| l.contains(pat)) {
                return Some(l.clone());
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn count_err(&self, pat: &str) -> usize {
        self.err
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(pat))
            .count()
    }

    /// When stdout first showed exactly `line`, waiting up to `limit`.
    fn shown(&self, line: &str, limit: Duration) -> Option<Instant> {
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
struct Ctx {
    bin: PathBuf,
    dir: PathBuf,
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

    fn manager(&self, extra: &str) -> (Proc, u16) {
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

    fn servant(&self, name: &str, manager: u16, extra: &str) -> (Proc, u16) {
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
fn connect_from(from: Ipv4Addr, port: u16, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
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
fn nice_this_thread() {
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
fn usage(pid: u32) -> (u64, f64) {
    (threads(pid), rss_kb(pid) as f64 / 1024.0)
}

/// A manager (probe off), alice (the servant attacked) and carol (a genuine user who
/// chats to her), settled: the manager, its port, alice, her port, carol.
fn alice_and_carol(ctx: &Ctx) -> (Proc, u16, Proc, u16, Proc) {
    let (m, mport) = ctx.manager("<probe>false</probe>");
    let (alice, aport) = ctx.servant("alice", mport, "");
    let (carol, _) = ctx.servant("carol", mport, "");
    thread::sleep(Duration::from_millis(500));
    (m, mport, alice, aport, carol)
}

/// What a genuine user saw: carol (`from`) says 100 numbered lines, one every `every`,
/// and `to` shows them; the delay of each (p50, p99, in ms), and how many never came.
fn probe(from: &mut Proc, to: &Proc, tag: &str, every: Duration) -> (f64, f64, usize) {
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

/// One attack: its rows of the table.
type Attack = fn(&Ctx) -> Vec<Row>;

/// One row of the table.
struct Row {
    attack: &'static str,
    size: String,
    p50: f64,
    p99: f64,
    lost: usize,
    before: (u64, f64),
    during: (u64, f64),
    after: (u64, f64),
    outcome: String,
    /// The goal for this attack was met.
    ok: bool,
}

/// Holds `n` connections to `port` from `addrs` until `stop`, opening a new one for each
/// the servant closes. Returns how many it had to open again.
fn hold_idle(
    port: u16,
    n: usize,
    addrs: usize,
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicU64>,
) -> Vec<thread::JoinHandle<()>> {
    let per = n / addrs;
    (0..addrs)
        .map(|a| {
            let (stop, reopened) = (Arc::clone(&stop), Arc::clone(&reopened));
            thread::spawn(move || {
                nice_this_thread();
                let from = Ipv4Addr::new(127, 0, 3, 10 + a as u8);
                let mut held: Vec<Option<TcpStream>> = (0..per).map(|_| None).collect();
                let mut buf = [0u8; 64];
                let end = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    for slot in held.iter_mut() {
                        let closed = match slot {
                            None => true,
                            Some(s) => match s.read(&mut buf) {
                                Ok(0) => true,
                                Ok(_) => false,
                                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                            },
                        };
                        if closed {
                            if slot.is_some() {
                                reopened.fetch_add(1, Ordering::Relaxed);
                            }
                            *slot = connect_from(from, port, None).ok().inspect(|s| {
                                let _ = s.set_nonblocking(true);
                            });
                        }
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect()
}

fn places(ctx: &Ctx) -> Row {
    let (_m, mport, alice, aport, mut carol) = alice_and_carol(ctx);
    let before = usage(alice.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicU64::new(0));
    let holders = hold_idle(aport, 2000, 50, Arc::clone(&stop), Arc::clone(&reopened));
    thread::sleep(Duration::from_secs(3));
    // A listed servant joins while the crowd holds on, and speaks at once.
    let t = Instant::now();
    let (mut bob, _) = ctx.servant("bob", mport, "");
    bob.send("bob is here");
    let bob_ms = alice
        .shown("<bob> bob is here", Duration::from_secs(15))
        .map(|s| s.duration_since(t).as_secs_f64());
    // A person with telnet.
    let t = Instant::now();
    let typist = TcpStream::connect(("127.0.0.1", aport)).and_then(|mut s| {
        s.write_all(b"a person typing\n")?;
        let port = s.local_addr()?.port();
        Ok((s, port))
    });
    let typist_s = typist.as_ref().ok().and_then(|(_, port)| {
        alice
            .shown(
                &format!("<127.0.0.1:{port}> a person typing"),
                Duration::from_secs(15),
            )
            .map(|s| s.duration_since(t).as_secs_f64())
    });
    let (p50, p99, lost) = probe(&mut carol, &alice, "places", Duration::from_millis(20));
    let during = usage(alice.pid());
    stop.store(true, Ordering::Relaxed);
    for h in holders {
        let _ = h.join();
    }
    thread::sleep(Duration::from_secs(3));
    let after = usage(alice.pid());
    Row {
        attack: "idle connections (places)",
        size: format!(
            "2,000 held from 50 addresses; {} reopened after eviction",
            reopened.load(Ordering::Relaxed)
        ),
        p50,
        p99,
        lost,
        before,
        during,
        after,
        ok: lost == 0
            && bob_ms.is_some_and(|s| s <= 2.0)
            && typist_s.is_some_and(|s| s <= 5.0)
            && during.0 <= before.0 + 512 + 8
            && after.0 <= before.0 + 2,
        outcome: format!(
            "listed newcomer's first line shown after {}; telnet line after {}",
            bob_ms.map_or("never".into(), |s| format!("{s:.2} s")),
            typist_s.map_or("never".into(), |s| format!("{s:.2} s"))
        ),
    }
}

/// The opener's handshake over `s`, as `me` named `name`.
fn open_link(s: &mut TcpStream, me: &Identity, name: &str) -> io::Result<Link> {
    let (opening, hello) =
        Opening::new(me, name, Mode::Send).map_err(|e| io::Error::other(e.to_string()))?;
    s.write_all(hello.as_bytes())?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let Some(Ok(PeerLine::Welcome(w))) = PeerLine::parse(line.trim_end()) else {
        return Err(io::Error::other(format!("expected WELCOME, got {line:?}")));
    };
    let (link, proof) = opening
        .finish(me, &w, None, None)
        .map_err(|e| io::Error::other(e.to_string()))?;
    s.write_all(proof.as_bytes())?;
    line.clear();
    r.read_line(&mut line)?;
    Ok(link)
}

fn tagged(link: &Link, line: &str) -> String {
    format!(
        "{} {line}\n",
        genp2p::encoding::hex(&link.tags.tag(line.as_bytes()))
    )
}

fn origins(ctx: &Ctx) -> Vec<Row> {
    let (_m, _, alice, aport, mut carol) = alice_and_carol(ctx);
    let before = usage(alice.pid());
    // 1,000,000 lines under random origins, on one authenticated link.
    let me = Identity::ephemeral().expect("a key");
    let mut s = TcpStream::connect(("127.0.0.1", aport)).expect("connect to alice");
    let link = open_link(&mut s, &me, "mallory").expect("a link");
    let flood = thread::spawn(move || {
        nice_this_thread();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = String::with_capacity(1 << 20);
        let end = Instant::now() + Duration::from_secs(120);
        let mut sent = 0u64;
        while sent < 1_000_000 && Instant::now() < end {
            for _ in 0..2000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let origin = format!("{:020x}", (seed as u128) << 16 | (seed >> 48) as u128);
                let line = msg_line(
                    &origin[..20],
                    1,
                    1,
                    "mallory",
                    &[0u8; 64],
                    None,
                    "random origin",
                );
                buf.push_str(&tagged(&link, line.trim_end()));
            }
            if s.write_all(buf.as_bytes()).is_err() {
                break;
            }
            buf.clear();
            sent += 2000;
        }
        sent
    });
    let (p50, p99, lost) = probe(&mut carol, &alice, "origins", Duration::from_millis(50));
    let during = usage(alice.pid());
    let sent = flood.join().unwrap_or(0);
    thread::sleep(Duration::from_secs(3));
    let after = usage(alice.pid());
    let first = Row {
        attack: "random origins (memory)",
        size: format!("{sent} MSG lines, each under a new origin"),
        p50,
        p99,
        lost,
        before,
        during,
        after,
        outcome: "every one dropped: no key is known for its author; nothing kept".into(),
        ok: lost == 0 && p99 <= 10.0 && after.1 <= before.1 * 1.10,
    };
    // 20,000 fresh keys, each proving itself in a handshake and saying one line.
    let before = after;
    let made = Arc::new(AtomicU64::new(0));
    let keys: Vec<_> = (0..2)
        .map(|t| {
            let made = Arc::clone(&made);
            thread::spawn(move || {
                nice_this_thread();
                let end = Instant::now() + Duration::from_secs(120);
                for k in 0..10_000 {
                    if Instant::now() > end {
                        break;
                    }
                    let Ok(me) = Identity::ephemeral() else {
                        continue;
                    };
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", aport)) else {
                        continue;
                    };
                    let name = format!("k{t}x{k}");
                    let Ok(link) = open_link(&mut s, &me, &name) else {
                        continue;
                    };
                    let sig = me.sign(&ChatMessage::signed_bytes(
                        &me.id,
                        me.incarnation,
                        1,
                        &name,
                        "hi",
                    ));
                    let line = msg_line(&me.id, me.incarnation, 1, &name, &sig, None, "hi");
                    let _ = s.write_all(tagged(&link, line.trim_end()).as_bytes());
                    made.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let (p50, p99, lost) = probe(&mut carol, &alice, "keys", Duration::from_millis(50));
    let during = usage(alice.pid());
    for k in keys {
        let _ = k.join();
    }
    thread::sleep(Duration::from_secs(3));
    let after = usage(alice.pid());
    vec![
        first,
        Row {
            attack: "fresh keys (memory)",
            size: format!(
                "{} handshakes, each a new key and one line",
                made.load(Ordering::Relaxed)
            ),
            p50,
            p99,
            lost,
            before,
            during,
            after,
            ok: lost == 0,
            outcome: format!(
                "shown; at most {} unlisted authors remembered, {} names pinned",
                genp2p::servant::seen::STRANGERS,
                genp2p::servant::known::MAX_PINS
            ),
        },
    ]
}

fn squat(ctx: &Ctx) -> Row {
    let share = ctx.dir.join("k-share");
    std::fs::create_dir_all(&share).expect("share folder");
    let size = 100usize << 20;
    let mut data = vec![0u8; size];
    let mut x = 1u64;
    for chunk in data.chunks_mut(8) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(share.join("data.bin"), &data).expect("write data.bin");
    drop(data);
    let (_m, mport) = ctx.manager("<probe>false</probe>");
    let (keeper, kport) = ctx.servant("keeper", mport, "<share>k-share</share>");
    keeper.wait_err("sharing data.bin", Duration::from_secs(30));
    thread::sleep(Duration::from_secs(1));
    let download = |name: &str| -> Option<f64> {
        let (mut d, _) = ctx.servant(name, mport, &format!("<downloads>{name}-dl</downloads>"));
        thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        d.send("/get data.bin");
        let end = t + Duration::from_secs(120);
        while Instant::now() < end {
            if d.out
                .lock()
                .unwrap()
                .iter()
                .any(|(_, l)| l.starts_with("downloaded data.bin: "))
            {
                if std::env::var_os("ABUSE_DEBUG").is_some() {
                    for l in d.err.lock().unwrap().iter() {
                        eprintln!("{name}: {l}");
                    }
                }
                return Some(t.elapsed().as_secs_f64());
            }
            if d.out
                .lock()
                .unwrap()
                .iter()
                .any(|(_, l)| l.contains("download of data.bin stopped"))
            {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
        None
    };
    let before = usage(keeper.pid());
    let alone = download("calm");
    // The file's id, from the keeper's answer to FILES.
    let id = {
        let mut s = TcpStream::connect(("127.0.0.1", kport)).expect("connect");
        let _ = s.write_all(b"FILES\n");
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
        line.split(' ').nth(1).unwrap_or("").to_owned()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicU64::new(0));
    let squatters: Vec<_> = (0..50)
        .map(|i| {
            let (stop, reopened, id) = (Arc::clone(&stop), Arc::clone(&reopened), id.clone());
            thread::spawn(move || {
                nice_this_thread();
                let from = Ipv4Addr::new(127, 0, 4, 10 + i as u8);
                let end = Instant::now() + Duration::from_secs(150);
                let mut buf = [0u8; 1];
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let Ok(mut s) = connect_from(from, kport, Some(4096)) else {
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    let _ = s.write_all(format!("GET {id} 0\nGET {id} 1\nGET {id} 2\n").as_bytes());
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                    // Told busy: at it again at once.
                    let mut head = [0u8; 3];
                    if s.read_exact(&mut head).is_err() || &head == b"ERR" {
                        reopened.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    // A byte now and then, until the servant cuts the connection.
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => thread::sleep(Duration::from_millis(500)),
                            Err(e)
                                if e.kind() == io::ErrorKind::WouldBlock
                                    || e.kind() == io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                    reopened.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(3));
    let attacked = download("squatted");
    if std::env::var_os("ABUSE_DEBUG").is_some() {
        for l in keeper.err.lock().unwrap().iter() {
            eprintln!("keeper: {l}");
        }
    }
    let during = usage(keeper.pid());
    stop.store(true, Ordering::Relaxed);
    for s in squatters {
        let _ = s.join();
    }
    thread::sleep(Duration::from_secs(3));
    let after = usage(keeper.pid());
    let speed =
        |t: Option<f64>| t.map_or("failed".to_owned(), |t| format!("{:.0} MiB/s", 100.0 / t));
    let ratio = match (alone, attacked) {
        (Some(a), Some(b)) => format!("{:.0} %", 100.0 * a / b),
        _ => "-".into(),
    };
    let ok = matches!((alone, attacked), (Some(a), Some(b)) if a / b >= 0.5);
    Row {
        attack: "upload squatters (slots)",
        size: format!("50 connections from 50 addresses, reading a byte each 0.5 s, again at once when refused or cut ({} times)", reopened.load(Ordering::Relaxed)),
        p50: f64::NAN,
        p99: f64::NAN,
        lost: 0,
        before,
        during,
        after,
        ok,
        outcome: format!(
            "100 MiB download: {} alone, {} beside them ({ratio} of its unattacked speed); {} slots taken over",
            speed(alone),
            speed(attacked),
            keeper.count_err("upload slot of")
        ),
    }
}

fn complaints(ctx: &Ctx) -> Row {
    let (m, mport) = ctx.manager("");
    let (alice, _) = ctx.servant("alice", mport, "");
    let (_bob, _) = ctx.servant("bob", mport, "");
    let alice_id = alice
        .wait_err("joined as alice (", Duration::from_secs(1))
        .and_then(|l| {
            l.split("joined as alice (")
                .nth(1)
                .map(|r| r[..20].to_owned())
        })
        .expect("alice's id");
    thread::sleep(Duration::from_millis(500));
    let before = usage(m.pid());
    let mut held = Vec::new();
    for k in 0..3u8 {
        let from = Ipv4Addr::new(127, 0, 5, 10 + k);
        let l = TcpListener::bind((from, 0)).expect("bind");
        let port = l.local_addr().unwrap().port();
        let me = Identity::ephemeral().expect("a key");
        let mut s = connect_from(from, mport, None).expect("connect to the manager");
        let listening = format!("listening {port} {} fake{k} {}", me.id, me.key.hex());
        let _ = s.write_all(format!("{listening}\n").as_bytes());
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        if let Ok(ManagerMessage::Challenge { nonce }) = ManagerMessage::parse(line.trim_end()) {
            let sig = me.sign(&genp2p::protocol::listen_proof(&nonce, &listening));
            let _ = s.write_all(format!("prove {}\n", genp2p::encoding::hex(&sig)).as_bytes());
        }
        for _ in 0..3 {
            let _ = s.write_all(format!("complain {alice_id}\n").as_bytes());
        }
        held.push((s, l));
    }
    thread::sleep(Duration::from_secs(2));
    let during = usage(m.pid());
    let counted = m.count_err("complaint about alice") - m.count_err("not counted");
    let condemned = m.count_err("alice (slot 1) is unreachable");
    drop(held);
    thread::sleep(Duration::from_secs(1));
    let after = usage(m.pid());
    Row {
        attack: "complaints by newcomers",
        size: "3 listed newcomers at 3 addresses, 3 complaints each".into(),
        p50: f64::NAN,
        p99: f64::NAN,
        lost: 0,
        before,
        during,
        after,
        ok: counted == 0 && condemned == 0,
        outcome: format!(
            "{} of 9 counted; alice condemned: {}",
            counted,
            if condemned > 0 { "yes" } else { "no" }
        ),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    dead_man(
        Duration::from_secs(arg(&args, "--limit-secs", 400)),
        "abuse",
    );
    let bin = PathBuf::from(arg_str(&args, "--bin", "target/release"));
    let bin = bin.canonicalize().unwrap_or(bin);
    let out = PathBuf::from(arg_str(&args, "--out", "bench/ABUSE.md"));
    let only = arg_str(&args, "--only", "");
    // On tmpfs where there is one: the download figures are then the network's and the
    // servants', not the disk's.
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let mut rows = Vec::new();
    let attacks: [(&str, Attack); 4] = [
        ("places", |c| vec![places(c)]),
        ("squat", |c| vec![squat(c)]),
        ("complaints", |c| vec![complaints(c)]),
        ("origins", origins),
    ];
    for (name, run) in attacks {
        if only.is_empty() || only == name {
            eprintln!("[abuse] {name}");
            let dir = base.join(format!("genp2p-abuse-{name}-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            rows.extend(run(&Ctx {
                bin: bin.clone(),
                dir: dir.clone(),
            }));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let ms = |v: f64| {
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.1}")
        }
    };
    let mut md = String::from(
        "| attack | size | genuine line p50 / p99 (ms) | lost | threads before / during / after | RSS MiB before / during / after | what a genuine user saw | goal |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} / {} | {} | {} / {} / {} | {:.1} / {:.1} / {:.1} | {} | {} |\n",
            r.attack,
            r.size,
            ms(r.p50),
            ms(r.p99),
            r.lost,
            r.before.0,
            r.during.0,
            r.after.0,
            r.before.1,
            r.during.1,
            r.after.1,
            r.outcome,
            if r.ok { "met" } else { "MISSED" }
        ));
    }
    print!("{md}");
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&out, &md);
    if rows.iter().any(|r| !r.ok) {
        std::process::exit(1);
    }
}
