//! File sharing between real servants: a file downloaded with `/get` arrives byte for byte,
//! under its name only once whole; several sources share the work and losing one half way
//! does not matter; a killed download resumes with only the pieces it lacked; a source that
//! sends corrupt pieces is caught and dropped; requests that try to climb out of the share
//! folder, or make no sense, are refused while the connection stays usable, and a banned
//! host cannot even list the files; `/files` and `/downloads` show who has what and how far
//! a download has come.
//!
//! The test data is pseudo-random (xorshift, seeded per test), so a run is repeatable and
//! no piece looks like another. The corrupting source is a peer written here: it registers
//! with the manager like a servant and answers `FILES` and `MANIFEST` truthfully (with the
//! real manifest, computed by the crate's own `Manifest::of_file`), but `GET` with bytes
//! that do not match.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use genp2p::transfer::manifest::{Manifest, PIECE_SIZE};

use common::*;

const MIB: u64 = 1 << 20;
/// The longest a whole download may take (debug binaries, tests running side by side).
const DOWNLOAD_WAIT: Duration = Duration::from_secs(40);
/// How often a download's files are looked at: a piece takes about 15 ms here.
const FAST_POLL: Duration = Duration::from_millis(2);

// ---------------------------------------------------------------------------------------
// Test data and what a download leaves behind
// ---------------------------------------------------------------------------------------

/// Writes `size` pseudo-random bytes (xorshift64, from `seed`) to `path`.
fn make_file(path: &Path, size: u64, seed: u64) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create the share folder");
    }
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = File::create(path).expect("create a test file");
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(MIB) as usize;
        out.write_all(&chunk[..n]).expect("write a test file");
        left -= n as u64;
    }
}

/// The BLAKE3 hash of a whole file, in hex.
fn hash_of(path: &Path) -> String {
    let mut f =
        File::open(path).unwrap_or_else(|e| fail(&format!("cannot open {}: {e}", path.display())));
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).expect("read a file to hash");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().to_hex().to_string()
}

/// The names in a folder (none if it does not exist yet).
fn listing(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// How many pieces a `.NAME.state` file records: its whole lines after the header.
fn recorded(state: &Path) -> usize {
    match std::fs::read(state) {
        Ok(bytes) => bytes
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            .saturating_sub(1),
        Err(_) => 0,
    }
}

/// Waits until `state` records at least `pieces` pieces; returns how many it records.
fn wait_recorded(state: &Path, pieces: usize) -> usize {
    let deadline = Instant::now() + DOWNLOAD_WAIT;
    loop {
        let n = recorded(state);
        if n >= pieces {
            return n;
        }
        if Instant::now() >= deadline {
            fail(&format!(
                "timed out after {DOWNLOAD_WAIT:?} waiting for {} to record {pieces} pieces (it has {n})",
                state.display()
            ));
        }
        thread::sleep(FAST_POLL);
    }
}

/// True for the line that ends a download of `name`, well or not.
fn is_download_end(line: &str, name: &str) -> bool {
    line.starts_with(&format!("downloaded {name}: "))
        || line.starts_with(&format!("download of {name} stopped"))
}

/// Waits for the final line of the download of `name` and returns it; fails the test if
/// the download stopped instead.
fn wait_download(s: &Servant, name: &str) -> String {
    let line = try_wait_for(DOWNLOAD_WAIT, || {
        s.proc
            .stdout()
            .into_iter()
            .find(|l| is_download_end(l, name))
    })
    .unwrap_or_else(|| {
        fail(&format!(
            "timed out after {DOWNLOAD_WAIT:?} waiting for {} to download {name}",
            s.name
        ))
    });
    if !line.starts_with(&format!("downloaded {name}: ")) {
        fail(&format!("{}: {line}", s.name));
    }
    line
}

/// The sources and piece counts of a final line: `...; pieces from a 40, b 24`.
fn pieces_from(line: &str) -> Vec<(String, usize)> {
    let parsed = (|| {
        let rest = line.split("; pieces from ").nth(1)?;
        rest.split(", ")
            .map(|part| {
                let (who, n) = part.rsplit_once(' ')?;
                Some((who.to_owned(), n.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()
    })();
    parsed.unwrap_or_else(|| fail(&format!("no 'pieces from' list in {line:?}")))
}

fn total_pieces(from: &[(String, usize)]) -> usize {
    from.iter().map(|(_, n)| n).sum()
}

/// A download's folder ends up holding the file and nothing else: no `.part`, no `.state`.
fn assert_only_the_file(dl: &Path, name: &str) {
    assert_eq!(
        listing(dl),
        names(&[name]),
        "{} after the download\n{}",
        dl.display(),
        dump()
    );
}

// ---------------------------------------------------------------------------------------
// A lying peer
// ---------------------------------------------------------------------------------------

/// What the lying peer saw and did, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    /// A `GET` for this piece arrived.
    Asked(usize),
    /// A corrupt answer for this piece is about to be written.
    Answered(usize),
}

/// The file the liar pretends to share, and its record of events. Written by its
/// connection threads, read by the test.
struct Pretence {
    /// The liar's id at the manager and in `WELCOME`.
    manifest: Manifest,
    id: String,
    file: File,
    log: Mutex<Vec<Lie>>,
}

/// A peer written in the test: listed by the manager like a servant (it keeps its
/// manager connection alive with `needs peer list` every 300 ms), answers `FILES` and
/// `MANIFEST` with the real manifest of `file`, and every `GET` with the piece's bytes
/// with one bit flipped.
struct Liar {
    pretence: Arc<Pretence>,
    port: u16,
    /// Dropping them stops the heartbeat and accept threads.
    stop: Vec<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Liar {
    fn start(manager_port: u16, name: &str, file: &Path, shared_as: &str) -> Liar {
        let manifest = Manifest::of_file(file, shared_as, PIECE_SIZE)
            .unwrap_or_else(|e| fail(&format!("manifest of {}: {e}", file.display())));
        let pretence = Arc::new(Pretence {
            id: manifest.id(),
            manifest,
            file: File::open(file).expect("open the liar's file"),
            log: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();

        let mut link = Raw::connect(manager_port);
        register_with(&mut link, &new_identity(), port, name);
        let (stop_beat, beat_stop) = mpsc::channel::<()>();
        let (stop_accept, accept_stop) = mpsc::channel::<()>();
        let beat = thread::Builder::new()
            .name(format!("{name}-heartbeat"))
            .spawn(move || keep_listed(link, beat_stop))
            .expect("start the liar's heartbeat");
        let p = Arc::clone(&pretence);
        let accept = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_lies(listener, accept_stop, p))
            .expect("start the liar's listener");
        Liar {
            pretence,
            port,
            stop: vec![stop_beat, stop_accept],
            threads: vec![beat, accept],
        }
    }

    fn log(&self) -> Vec<Lie> {
        self.pretence
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.clear();
        // Wakes the accept thread, which then sees its channel gone (tiny_http's trick).
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Asks the manager for its list every 300 ms, so it keeps the liar listed, and throws
/// the answers away; ends when `stop` disconnects or the manager goes.
fn keep_listed(mut link: Raw, stop: mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(Duration::from_millis(300)) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if link.stream.write_all(b"needs peer list\n").is_err() {
            return;
        }
        loop {
            match link.read_line(Duration::from_millis(5)) {
                Got::Line(_) => {}
                Got::Nothing => break,
                Got::Closed => return,
            }
        }
    }
}

fn accept_lies(listener: TcpListener, stop: mpsc::Receiver<()>, pretence: Arc<Pretence>) {
    for conn in listener.incoming() {
        if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let p = Arc::clone(&pretence);
        let _ = thread::Builder::new()
            .name("liar-conn".into())
            .spawn(move || answer_lies(conn, &p));
    }
}

/// One connection to the liar: a servant's chat connection (`HELLO`, never answered), or
/// file requests.
fn answer_lies(stream: TcpStream, p: &Pretence) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = stream;
    let mut chatting = false;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if chatting {
            continue;
        }
        let words: Vec<&str> = line.trim_end().split(' ').collect();
        let answer: Vec<u8> = match words.as_slice() {
            // A chat connection: it cannot finish the handshake, and does not try.
            ["HELLO", ..] => {
                chatting = true;
                Vec::new()
            }
            ["FILES"] => format!(
                "FILE {} {} complete {}\nEND\n",
                p.id, p.manifest.size, p.manifest.name
            )
            .into_bytes(),
            ["MANIFEST", id] if *id == p.id => p.manifest.to_lines().into_bytes(),
            ["GET", id, index] if *id == p.id => match index.parse::<usize>() {
                Ok(i) if i < p.manifest.piece_count() => {
                    p.log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Lie::Asked(i));
                    let len = p.manifest.piece_len(i) as usize;
                    let mut data = vec![0u8; len];
                    if p.file
                        .read_exact_at(&mut data, i as u64 * PIECE_SIZE)
                        .is_err()
                    {
                        return;
                    }
                    data[len / 2] ^= 1;
                    let mut answer = format!("DATA {i} {len}\n").into_bytes();
                    answer.extend_from_slice(&data);
                    p.log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Lie::Answered(i));
                    answer
                }
                _ => b"ERR bad piece number\n".to_vec(),
            },
            _ => b"ERR unknown request\n".to_vec(),
        };
        if out.write_all(&answer).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[test]
fn a_64_mib_file_arrives_identical_and_appears_under_its_name_only_when_whole() {
    let dir = TestDir::new("transfer-one");
    let original = dir.path.join("a-share").join("big.bin");
    make_file(&original, 64 * MIB, 1);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let _a = start_servant(&dir, "a", m.port, "<share>a-share</share>");
    let mut b = start_servant(&dir, "b", m.port, "<downloads>b-dl</downloads>");
    b.wait_knows(&["a"]);
    b.proc.send("/get big.bin");

    // Watch the downloads folder until the download ends.
    let dl = dir.path.join("b-dl");
    let (mut part_only, mut both) = (0usize, None);
    let deadline = Instant::now() + DOWNLOAD_WAIT;
    loop {
        let seen = listing(&dl);
        match (seen.contains("big.bin"), seen.contains(".big.bin.part")) {
            (true, true) => both = Some(seen),
            (false, true) => part_only += 1,
            _ => {}
        }
        if b.proc
            .stdout()
            .iter()
            .any(|l| is_download_end(l, "big.bin"))
        {
            break;
        }
        if Instant::now() >= deadline {
            fail(&format!(
                "timed out after {DOWNLOAD_WAIT:?} waiting for the download"
            ));
        }
        thread::sleep(FAST_POLL);
    }
    let line = wait_download(&b, "big.bin");
    assert_eq!(
        pieces_from(&line),
        vec![("a".to_owned(), 64)],
        "{line}\n{}",
        dump()
    );
    assert!(
        part_only > 0,
        "never saw .big.bin.part alone while downloading\n{}",
        dump()
    );
    assert_eq!(
        both,
        None,
        "big.bin and .big.bin.part existed at once\n{}",
        dump()
    );
    assert_only_the_file(&dl, "big.bin");
    assert_eq!(
        hash_of(&dl.join("big.bin")),
        hash_of(&original),
        "the downloaded file differs\n{}",
        dump()
    );
}

#[test]
fn three_sources_share_the_work_and_one_killed_half_way_is_not_missed() {
    const PIECES: usize = 96;
    let dir = TestDir::new("transfer-three");
    let original = dir.path.join("s1-share").join("big.bin");
    make_file(&original, PIECES as u64 * MIB, 2);
    for s in ["s2", "s3"] {
        let share = dir.path.join(format!("{s}-share"));
        std::fs::create_dir_all(&share).expect("create a share folder");
        std::fs::hard_link(&original, share.join("big.bin")).expect("link the file");
    }
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut sources: Vec<Servant> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| start_servant(&dir, n, m.port, &format!("<share>{n}-share</share>")))
        .collect();
    let mut d = start_servant(
        &dir,
        "d",
        m.port,
        "<downloads>d-dl</downloads><workers>4</workers>",
    );
    d.wait_knows(&["s1", "s2", "s3"]);
    d.proc.send("/get big.bin");

    let dl = dir.path.join("d-dl");
    let state = dl.join(".big.bin.state");
    wait_recorded(&state, PIECES / 2);
    sources[1].proc.kill();
    let at_kill = recorded(&state);
    assert!(
        at_kill < PIECES,
        "the download was over before s2 was killed ({at_kill} pieces); nothing was proven\n{}",
        dump()
    );

    let line = wait_download(&d, "big.bin");
    let from = pieces_from(&line);
    assert_eq!(total_pieces(&from), PIECES, "{line}\n{}", dump());
    assert!(
        from.iter().filter(|(_, n)| *n > 0).count() > 1,
        "pieces came from one source only: {line}\n{}",
        dump()
    );
    let from_s2 = from.iter().find(|(w, _)| w == "s2").map_or(0, |(_, n)| *n);
    assert!(
        from_s2 > 0 && from_s2 <= at_kill,
        "s2 served {from_s2} pieces, {at_kill} were in when it was killed: {line}\n{}",
        dump()
    );
    assert_only_the_file(&dl, "big.bin");
    assert_eq!(
        hash_of(&dl.join("big.bin")),
        hash_of(&original),
        "the downloaded file differs\n{}",
        dump()
    );
}

#[test]
fn a_killed_download_resumes_fetching_only_what_was_missing() {
    const PIECES: usize = 64;
    let dir = TestDir::new("transfer-resume");
    let original = dir.path.join("a-share").join("big.bin");
    make_file(&original, PIECES as u64 * MIB, 3);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let _a = start_servant(&dir, "a", m.port, "<share>a-share</share>");
    let cfg = servant_config("b", m.port, Some(0), "<downloads>b-dl</downloads>");
    let mut b = Servant::joined(spawn_servant(&dir, "b", &cfg, &[], "info"), "b");
    b.wait_knows(&["a"]);
    b.proc.send("/get big.bin");

    let dl = dir.path.join("b-dl");
    let state = dl.join(".big.bin.state");
    wait_recorded(&state, PIECES / 2);
    b.proc.kill();
    let had = recorded(&state);
    assert!(
        0 < had && had < PIECES,
        "the state file records {had} of {PIECES} pieces after kill -9\n{}",
        dump()
    );
    assert_eq!(
        listing(&dl),
        names(&[".big.bin.part", ".big.bin.state"]),
        "after kill -9\n{}",
        dump()
    );

    // The same configuration, started again.
    let again = Proc::spawn(
        "b-restarted",
        SERVANT_BIN,
        &["--config".into(), dir.path.join("b.xml").into_os_string()],
        "info",
        &dir.path,
    );
    let mut b = Servant::joined(again, "b");
    b.wait_knows(&["a"]);
    b.proc.send("/get big.bin");
    let resumed = b
        .proc
        .wait_stdout("the resume line", |l| l.starts_with("resuming big.bin: "));
    assert_eq!(
        resumed,
        format!("resuming big.bin: {had} of {PIECES} pieces already here and verified"),
        "every recorded piece is kept\n{}",
        dump()
    );
    let line = wait_download(&b, "big.bin");
    assert_eq!(
        total_pieces(&pieces_from(&line)),
        PIECES - had,
        "only the missing pieces are fetched: {line}\n{}",
        dump()
    );
    assert_only_the_file(&dl, "big.bin");
    assert_eq!(
        hash_of(&dl.join("big.bin")),
        hash_of(&original),
        "the resumed file differs\n{}",
        dump()
    );
}

#[test]
fn a_source_sending_corrupt_pieces_is_dropped_after_its_first_lie() {
    const PIECES: usize = 24;
    const WORKERS: usize = 4;
    let dir = TestDir::new("transfer-liar");
    let original = dir.path.join("honest-share").join("big.bin");
    make_file(&original, PIECES as u64 * MIB, 4);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let _honest = start_servant(&dir, "honest", m.port, "<share>honest-share</share>");
    let liar = Liar::start(m.port, "liar", &original, "big.bin");
    let mut d = start_servant(
        &dir,
        "d",
        m.port,
        &format!("<downloads>d-dl</downloads><workers>{WORKERS}</workers>"),
    );
    d.wait_knows(&["honest", "liar"]);
    d.proc.send("/get big.bin");

    let line = wait_download(&d, "big.bin");
    let dl = dir.path.join("d-dl");
    assert_eq!(
        hash_of(&dl.join("big.bin")),
        hash_of(&original),
        "the downloaded file differs\n{}",
        dump()
    );
    assert_only_the_file(&dl, "big.bin");
    assert_eq!(
        pieces_from(&line),
        vec![("honest".to_owned(), PIECES)],
        "every piece comes from the honest source: {line}\n{}",
        dump()
    );
    let caught = d
        .proc
        .wait_stderr("a piece from the liar failing verification", |l| {
            l.contains("from liar failed verification")
        });
    assert!(caught.contains(" WARN"), "{caught}\n{}", dump());

    let log = liar.log();
    let asked = log.iter().filter(|e| matches!(e, Lie::Asked(_))).count();
    let first_lie = log
        .iter()
        .position(|e| matches!(e, Lie::Answered(_)))
        .unwrap_or_else(|| fail(&format!("the liar was never asked for a piece: {log:?}")));
    let asked_after = log[first_lie..]
        .iter()
        .filter(|e| matches!(e, Lie::Asked(_)))
        .count();
    // After its first corrupt answer, only workers that had already chosen the liar may
    // still ask it once each; then never again.
    assert!(
        asked_after < WORKERS && asked <= WORKERS,
        "the liar was asked {asked} times, {asked_after} after its first lie: {log:?}\n{}",
        dump()
    );
}

#[test]
fn requests_outside_the_shared_files_are_refused_and_the_connection_stays_usable() {
    let dir = TestDir::new("transfer-traversal");
    let share = dir.path.join("k-share");
    let data = share.join("data.bin");
    let size = 3 * MIB + 1234;
    make_file(&data, size, 5);
    std::os::unix::fs::symlink("/etc/passwd", share.join("passwd")).expect("make a symlink");
    std::fs::write(share.join(".hidden"), "not for sharing\n").expect("write .hidden");
    std::fs::create_dir_all(share.join("sub")).expect("make a subfolder");
    std::fs::write(share.join("sub").join("inner.txt"), "nested\n").expect("write sub/inner.txt");
    let manifest = Manifest::of_file(&data, "data.bin", PIECE_SIZE).expect("manifest");
    let id = manifest.id();
    let passwd_id = Manifest::of_file(Path::new("/etc/passwd"), "passwd", PIECE_SIZE)
        .expect("manifest of /etc/passwd")
        .id();
    let hidden_id = Manifest::of_file(&share.join(".hidden"), "hidden", PIECE_SIZE)
        .expect("manifest of .hidden")
        .id();
    let bytes = std::fs::read(&data).expect("read data.bin");

    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let k = start_servant(&dir, "keeper", m.port, "<share>k-share</share>");

    // Only the regular, visible file is listed.
    let mut c = Raw::connect(k.port);
    c.send("FILES");
    let mut listed = Vec::new();
    loop {
        match c.expect_line("the FILES answer") {
            l if l == "END" => break,
            l => listed.push(l),
        }
    }
    assert_eq!(
        listed,
        vec![format!("FILE {id} {size} complete data.bin")],
        "FILES\n{}",
        dump()
    );

    // Each nonsense request gets an ERR line, on the same connection.
    let bad = [
        "MANIFEST ../../etc/passwd".to_owned(),
        "GET ../x 0".to_owned(),
        format!("GET {id} 999999"),
        format!("GET {id} -1"),
        format!("GET {id} 4"),
        format!("GET {id}"),
        format!("GET {id} 0 1"),
        "FILES extra".to_owned(),
        format!("MANIFEST {passwd_id}"),
        format!("GET {passwd_id} 0"),
        format!("MANIFEST {hidden_id}"),
        format!("GET {hidden_id} 0"),
        "MANIFEST sub/inner.txt".to_owned(),
    ];
    for req in &bad {
        c.send(req);
        let got = c.expect_line(&format!("the answer to {req:?}"));
        assert!(
            got.starts_with("ERR "),
            "{req:?} was answered {got:?}\n{}",
            dump()
        );
    }
    // Numbers have one spelling; too large is out of range, not badly written.
    for (req, want) in [
        (format!("GET {id} 003"), "ERR bad piece number \"003\""),
        (format!("GET {id} +3"), "ERR bad piece number \"+3\""),
        (
            format!("GET {id} 100000000000000000000000"),
            "ERR piece \"100000000000000000000000\" out of range (the file has 4)",
        ),
        (
            format!("GET {id} 4"),
            "ERR piece 4 out of range (the file has 4)",
        ),
        (
            format!("MANIFEST {}", id.to_uppercase()),
            "ERR no such file",
        ),
    ] {
        c.send(&req);
        let got = c.expect_line(&format!("the answer to {req:?}"));
        assert!(
            got.starts_with(want),
            "{req:?} was answered {got:?}\n{}",
            dump()
        );
    }

    // And the connection still serves: the manifest, and the short last piece.
    c.send(&format!("MANIFEST {id}"));
    let want = manifest.to_lines();
    for (i, want_line) in want.lines().enumerate() {
        let got = c.expect_line(&format!("line {i} of the manifest"));
        assert_eq!(got, want_line, "manifest line {i}\n{}", dump());
    }
    c.send(&format!("GET {id} 3"));
    assert_eq!(c.expect_line("the DATA line"), "DATA 3 1234", "{}", dump());
    let got = c.expect_bytes(1234, "piece 3");
    assert!(
        got == bytes[3 * MIB as usize..],
        "piece 3 differs\n{}",
        dump()
    );

    // A conversation may even open with nonsense, as long as it is a file request.
    let mut c2 = Raw::connect(k.port);
    c2.send("MANIFEST ../../etc/passwd");
    let got = c2.expect_line("the answer to a traversal as the first line");
    assert!(got.starts_with("ERR "), "{got:?}\n{}", dump());
    c2.send(&format!("GET {id} 0"));
    assert_eq!(
        c2.expect_line("the DATA line"),
        format!("DATA 0 {MIB}"),
        "{}",
        dump()
    );
    let got = c2.expect_bytes(MIB as usize, "piece 0");
    assert!(got == bytes[..MIB as usize], "piece 0 differs\n{}", dump());

    // A servant that bans 127.0.0.1 closes on us before reading a word.
    let fortress = start_servant(
        &dir,
        "fortress",
        m.port,
        "<share>k-share</share><bans><ban><target>127.0.0.1</target></ban></bans>",
    );
    let mut f = Raw::connect(fortress.port);
    let _ = f.stream.write_all(b"FILES\n");
    assert_eq!(
        f.read_line(WAIT),
        Got::Closed,
        "a banned host listed files\n{}",
        dump()
    );
}

#[test]
fn files_shows_who_has_what_and_downloads_shows_progress() {
    const PIECES: usize = 64;
    let dir = TestDir::new("transfer-files");
    let common_file = dir.path.join("alice-share").join("common.bin");
    make_file(&common_file, 4 * MIB, 6);
    std::fs::write(
        dir.path.join("alice-share").join("only-alice.txt"),
        "hello\n",
    )
    .expect("write only-alice.txt");
    let bob_share = dir.path.join("bob-share");
    make_file(&bob_share.join("big.bin"), PIECES as u64 * MIB, 7);
    std::fs::copy(&common_file, bob_share.join("common.bin")).expect("copy common.bin");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let _alice = start_servant(&dir, "alice", m.port, "<share>alice-share</share>");
    let _bob = start_servant(&dir, "bob", m.port, "<share>bob-share</share>");
    let mut carol = start_servant(&dir, "carol", m.port, "<downloads>carol-dl</downloads>");
    carol.wait_knows(&["alice", "bob"]);

    carol.proc.send("/downloads");
    carol
        .proc
        .wait_stdout("no downloads", |l| l == "no downloads");

    carol.proc.send("/files");
    carol
        .proc
        .wait_stdout("the /files header", |l| l == "3 file(s) on the network");
    // The rows follow the header at once.
    let rows: Vec<String> = wait_for("the three /files rows", || {
        let out = carol.proc.stdout();
        let at = out.iter().position(|l| l == "3 file(s) on the network")?;
        let rows: Vec<String> = out[at + 1..]
            .iter()
            .filter(|l| l.starts_with("  "))
            .cloned()
            .collect();
        (rows.len() >= 3).then_some(rows)
    });
    let row = |name: &str| -> (u64, BTreeSet<String>) {
        let r = rows
            .iter()
            .find(|r| r.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| fail(&format!("no /files row for {name}: {rows:?}")));
        let (left, who) = r
            .split_once(" bytes  ")
            .unwrap_or_else(|| fail(&format!("cannot read {r:?}")));
        let size = left
            .split_whitespace()
            .last()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail(&format!("no size in {r:?}")));
        (size, who.split(", ").map(str::to_owned).collect())
    };
    assert_eq!(
        row("common.bin"),
        (4 * MIB, names(&["alice", "bob"])),
        "{rows:?}"
    );
    assert_eq!(row("only-alice.txt"), (6, names(&["alice"])), "{rows:?}");
    assert_eq!(
        row("big.bin"),
        (PIECES as u64 * MIB, names(&["bob"])),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 3, "{rows:?}\n{}", dump());

    // /downloads while downloading, then after.
    carol.proc.send("/get big.bin");
    let deadline = Instant::now() + DOWNLOAD_WAIT;
    while !carol
        .proc
        .stdout()
        .iter()
        .any(|l| is_download_end(l, "big.bin"))
    {
        if Instant::now() >= deadline {
            fail(&format!(
                "timed out after {DOWNLOAD_WAIT:?} waiting for the download"
            ));
        }
        carol.proc.send("/downloads");
        thread::sleep(Duration::from_millis(25));
    }
    wait_download(&carol, "big.bin");
    carol.proc.send("/downloads");
    let progress = |l: &str| -> Option<(usize, usize)> {
        let rest = l.strip_prefix("big.bin ")?;
        let fraction = rest.split_whitespace().next()?;
        let (done, total) = fraction.split_once('/')?;
        Some((done.parse().ok()?, total.parse().ok()?))
    };
    let last = carol
        .proc
        .wait_stdout("a /downloads row for the finished download", |l| {
            progress(l) == Some((PIECES, PIECES)) && l.ends_with(" done")
        });
    assert!(last.contains(" 100% "), "{last}\n{}", dump());
    let midway: Vec<String> = carol
        .proc
        .stdout()
        .into_iter()
        .filter(|l| {
            progress(l).is_some_and(|(done, total)| 0 < done && done < total && total == PIECES)
                && l.ends_with("downloading from bob")
        })
        .collect();
    assert!(
        !midway.is_empty(),
        "/downloads never showed the download half done\n{}",
        dump()
    );
    assert!(
        carol
            .proc
            .stdout()
            .iter()
            .filter_map(|l| progress(l))
            .all(|(done, total)| done <= total),
        "{}",
        dump()
    );
    assert_only_the_file(&dir.path.join("carol-dl"), "big.bin");
}

#[test]
fn a_shared_file_swapped_for_a_link_never_sends_what_the_link_points_to() {
    // While GETs run, a loop keeps replacing the shared file with a symbolic link to a
    // file outside the share and putting the file back, each by an atomic rename. Every
    // piece that comes out must be the shared file's own; not one byte of the outside one.
    let dir = TestDir::new("transfer-swap");
    let share = dir.path.join("s-share");
    let data = share.join("data.bin");
    make_file(&data, 4096, 7);
    let original = std::fs::read(&data).expect("read data.bin");
    let outside = dir.path.join("secret.bin");
    std::fs::write(&outside, vec![b'S'; 4096]).expect("write the outside file");
    let id = Manifest::of_file(&data, "data.bin", PIECE_SIZE)
        .expect("manifest")
        .id();
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let k = start_servant(&dir, "keeper", m.port, "<share>s-share</share>");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (share, outside, original, stop) = (
            share.clone(),
            outside.clone(),
            original.clone(),
            Arc::clone(&stop),
        );
        thread::spawn(move || {
            let (link, copy) = (share.join(".swap-link"), share.join(".swap-copy"));
            let mut swaps = 0u64;
            let end = Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < end {
                let _ = std::fs::remove_file(&link);
                if std::os::unix::fs::symlink(&outside, &link).is_ok()
                    && std::fs::rename(&link, share.join("data.bin")).is_ok()
                {
                    swaps += 1;
                }
                if std::fs::write(&copy, &original).is_ok() {
                    let _ = std::fs::rename(&copy, share.join("data.bin"));
                }
            }
            swaps
        })
    };
    let (mut served, mut refused) = (0u32, 0u32);
    let end = Instant::now() + Duration::from_secs(3);
    for _ in 0..2000 {
        if Instant::now() > end {
            break;
        }
        let mut c = Raw::connect(k.port);
        c.send(&format!("GET {id} 0"));
        match c.read_line(WAIT) {
            Got::Line(l) if l.starts_with("DATA 0 ") => {
                let got = c.expect_bytes(4096, "piece 0");
                assert!(
                    !got.contains(&b'S') || got == original,
                    "bytes from outside the share left\n{}",
                    dump()
                );
                assert_eq!(got, original, "piece 0 is the shared file's\n{}", dump());
                served += 1;
            }
            Got::Line(l) if l.starts_with("ERR ") => refused += 1,
            other => fail(&format!("unexpected answer {other:?}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let swaps = swapper.join().expect("the swapper");
    assert!(swaps > 10, "the file was swapped {swaps} times");
    assert!(
        served > 0,
        "some GETs met the real file: served {served}, refused {refused}"
    );
}

#[test]
fn squatters_cannot_keep_upload_slots_from_an_honest_download() {
    // Eight connections from eight addresses each ask for a piece and then read nothing
    // (and ask nothing more): on their own they would hold all of keeper's eight slots.
    // They come from addresses no listed servant has, so they get half at most.
    let dir = TestDir::new("transfer-squat");
    let original = dir.path.join("k-share").join("data.bin");
    make_file(&original, 16 * MIB, 3);
    let id = Manifest::of_file(&original, "data.bin", PIECE_SIZE)
        .expect("manifest")
        .id();
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let k = Servant::joined(
        spawn_servant(
            &dir,
            "keeper",
            &servant_config("keeper", m.port, Some(0), "<share>k-share</share>"),
            &[],
            "debug",
        ),
        "keeper",
    );
    // One address gets half the slots, no more.
    let one = std::net::Ipv4Addr::new(127, 0, 2, 1);
    let mut held: Vec<Raw> = (0..4)
        .map(|_| {
            let mut c = Raw::connect_from(one, k.port);
            c.send("FILES");
            c.expect_line_where("the END of FILES", |l| l == "END");
            c
        })
        .collect();
    let mut fifth = Raw::connect_from(one, k.port);
    fifth.send("FILES");
    assert_eq!(
        fifth.expect_line("a refusal"),
        "ERR busy: 4 uploads at once to one address; try later",
        "{}",
        dump()
    );
    held.clear();
    wait_for("the four places to come back", || {
        (k.proc.count_log("127.0.2.1:") >= 5).then_some(())
    });
    let mut squatters: Vec<Raw> = (0..8)
        .map(|i| {
            let mut c = Raw::connect_from(std::net::Ipv4Addr::new(127, 0, 2, 10 + i), k.port);
            c.send(&format!("GET {id} 0"));
            c
        })
        .collect();
    // Half of them get a slot (their piece is on its way), the others are told busy.
    let busy = squatters
        .iter_mut()
        .map(|c| c.expect_line("DATA or ERR"))
        .filter(|l| l.starts_with("ERR busy: "))
        .count();
    assert_eq!(busy, 4, "{}", dump());
    thread::sleep(Duration::from_millis(300));
    let mut b = start_servant(&dir, "b", m.port, "<downloads>b-dl</downloads>");
    b.wait_knows(&["keeper"]);
    b.proc.send("/get data.bin");
    let line = wait_download(&b, "data.bin");
    assert!(line.contains("downloaded"), "{line}\n{}", dump());
    assert_eq!(
        hash_of(&dir.path.join("b-dl").join("data.bin")),
        hash_of(&original),
        "{}",
        dump()
    );
    // A stranger's newcomer takes over a squatter's slot that has been still for 1 s (its
    // piece sits in the socket buffers; nothing more moves).
    thread::sleep(Duration::from_millis(1500));
    let mut newcomer = Raw::connect_from(std::net::Ipv4Addr::new(127, 0, 2, 99), k.port);
    newcomer.send("FILES");
    newcomer.expect_line_where("the END of FILES", |l| l == "END");
    k.proc.wait_log("upload slot of 127.0.2.");
    drop(squatters);
}
