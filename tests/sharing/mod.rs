//! What the file-sharing tests share: repeatable test data (xorshift, seeded per test),
//! reading what a download leaves behind (the file, its record of verified pieces, its
//! progress lines), and `Liar`, a peer that registers like a servant and answers `FILES`
//! and `MANIFEST` truthfully but `GET` with bytes that do not match.

#![allow(dead_code)]

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

use crate::common::*;

pub const MIB: u64 = 1 << 20;
/// The longest a whole download may take (debug binaries, tests running side by side).
pub const DOWNLOAD_WAIT: Duration = Duration::from_secs(40);
/// How often a download's files are looked at: a piece takes about 15 ms here.
pub const FAST_POLL: Duration = Duration::from_millis(2);

// ---------------------------------------------------------------------------------------
// Test data and what a download leaves behind
// ---------------------------------------------------------------------------------------

/// Writes `size` pseudo-random bytes (xorshift64, from `seed`) to `path`.
pub fn make_file(path: &Path, size: u64, seed: u64) {
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
pub fn hash_of(path: &Path) -> String {
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
pub fn listing(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

pub fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// How many pieces a `.NAME.state` file records: its whole lines after the header.
pub fn recorded(state: &Path) -> usize {
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
pub fn wait_recorded(state: &Path, pieces: usize) -> usize {
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
pub fn is_download_end(line: &str, name: &str) -> bool {
    line.starts_with(&format!("downloaded {name}: "))
        || line.starts_with(&format!("download of {name} stopped"))
}

/// Waits for the final line of the download of `name` and returns it; fails the test if
/// the download stopped instead.
pub fn wait_download(s: &Servant, name: &str) -> String {
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
pub fn pieces_from(line: &str) -> Vec<(String, usize)> {
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

pub fn total_pieces(from: &[(String, usize)]) -> usize {
    from.iter().map(|(_, n)| n).sum()
}

/// A download's folder ends up holding the file and nothing else: no `.part`, no `.state`.
pub fn assert_only_the_file(dl: &Path, name: &str) {
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
pub enum Lie {
    /// A `GET` for this piece arrived.
    Asked(usize),
    /// A corrupt answer for this piece is about to be written.
    Answered(usize),
}

/// The file the liar pretends to share, and its record of events. Written by its
/// connection threads, read by the test.
pub struct Pretence {
    /// The liar's id at the manager and in `WELCOME`.
    pub manifest: Manifest,
    pub id: String,
    pub file: File,
    pub log: Mutex<Vec<Lie>>,
}

/// A peer written in the test: listed by the manager like a servant (it keeps its
/// manager connection alive with `needs peer list` every 300 ms), answers `FILES` and
/// `MANIFEST` with the real manifest of `file`, and every `GET` with the piece's bytes
/// with one bit flipped.
pub struct Liar {
    pub pretence: Arc<Pretence>,
    pub port: u16,
    /// Dropping them stops the heartbeat and accept threads.
    pub stop: Vec<mpsc::Sender<()>>,
    pub threads: Vec<JoinHandle<()>>,
}

impl Liar {
    pub fn start(manager_port: u16, name: &str, file: &Path, shared_as: &str) -> Liar {
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

    pub fn log(&self) -> Vec<Lie> {
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
pub fn keep_listed(mut link: Raw, stop: mpsc::Receiver<()>) {
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

pub fn accept_lies(listener: TcpListener, stop: mpsc::Receiver<()>, pretence: Arc<Pretence>) {
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
pub fn answer_lies(stream: TcpStream, p: &Pretence) {
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
