//! Asking peers about files: what each shares (`FILES`), and a file's manifest
//! (`MANIFEST`), checked against its id. Steps 1 and 2 of a download.
//!
//! Kept apart from fetching pieces (`worker`) because it is a different conversation with
//! a different end: it picks the file and its sources, once per round, while the workers
//! hold one connection each for many pieces. The connection and line helpers both use
//! live here, below the workers.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use log::{debug, warn};

use crate::lines::{LineError, LineReader};
use crate::transfer::manifest::{parse_hex, Manifest};
use crate::transfer::valid_name;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A piece not received within this time counts as a failure of its source.
const PIECE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest line in a file conversation (a `FILE` line with a long name, a manifest header).
const LINE_LIMIT: usize = 1024;
/// How long a source that said it is busy is left alone.
pub(super) const BUSY_PAUSE: Duration = Duration::from_millis(300);

/// A peer to ask.
#[derive(Debug, Clone)]
pub struct Peer {
    pub label: String,
    pub addr: SocketAddr,
}

/// A file as a peer offers it (`FILE ID SIZE STATE NAME`).
#[derive(Debug, Clone)]
pub struct Offer {
    pub peer: Peer,
    pub id: String,
    pub size: u64,
    pub complete: bool,
    pub name: String,
}

pub(super) fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

pub(super) fn read_line(r: &mut LineReader<TcpStream>) -> io::Result<String> {
    match r.read_line() {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(err(io::ErrorKind::UnexpectedEof, "closed")),
        Err(LineError::Idle) => Err(err(io::ErrorKind::TimedOut, "no answer in time")),
        Err(LineError::Io(e)) => Err(e),
        Err(e) => Err(err(io::ErrorKind::InvalidData, e.to_string())),
    }
}

pub(super) fn connect(addr: SocketAddr) -> io::Result<(TcpStream, LineReader<TcpStream>)> {
    let s = crate::dial::connect(&addr, CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(PIECE_TIMEOUT))?;
    s.set_write_timeout(Some(PIECE_TIMEOUT))?;
    let r = LineReader::new(s.try_clone()?, LINE_LIMIT);
    Ok((s, r))
}

/// Asks one peer what it shares.
pub fn list_files(peer: &Peer) -> io::Result<Vec<Offer>> {
    when_not_busy(|| list_files_once(peer))
}

/// Runs `ask` again while the source answers `ERR busy`, for a few seconds: a source's
/// slots held by clients that take nothing are freed for a newcomer within about 2 s
/// (see `slots`), so being told "busy" once is no reason to think it shares nothing.
fn when_not_busy<T>(mut ask: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut pause = BUSY_PAUSE;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match ask() {
            Err(e)
                if e.kind() == io::ErrorKind::ResourceBusy
                    && std::time::Instant::now() < deadline =>
            {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// A source's `ERR REASON` as an error; `busy` (its upload slots) is `ResourceBusy`, which
/// `when_not_busy` asks again after.
fn refusal(reason: &str) -> io::Error {
    let kind = if reason.starts_with("busy") {
        io::ErrorKind::ResourceBusy
    } else {
        io::ErrorKind::Other
    };
    err(kind, reason)
}

fn list_files_once(peer: &Peer) -> io::Result<Vec<Offer>> {
    let (mut s, mut r) = connect(peer.addr)?;
    s.write_all(b"FILES\n")?;
    let mut out = Vec::new();
    loop {
        let line = read_line(&mut r)?;
        if line == "END" {
            return Ok(out);
        }
        if let Some(e) = line.strip_prefix("ERR ") {
            return Err(refusal(e));
        }
        let mut w = line.splitn(5, ' ');
        if let (Some("FILE"), Some(id), Some(size), Some(state), Some(name)) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        {
            if let (Ok(size), true) = (crate::encoding::parse_u64(size), valid_name(name)) {
                out.push(Offer {
                    peer: peer.clone(),
                    id: id.to_owned(),
                    size,
                    complete: state == "complete",
                    name: name.to_owned(),
                });
            }
        }
        if out.len() > 100_000 {
            return Err(err(io::ErrorKind::InvalidData, "too many files listed"));
        }
    }
}

/// Asks every peer at once (one thread each), for at most a few seconds.
pub fn list_all(peers: &[Peer]) -> Vec<Result<Vec<Offer>, (Peer, io::Error)>> {
    thread::scope(|scope| {
        let handles: Vec<_> = peers
            .iter()
            .map(|p| {
                let p2 = p.clone();
                thread::Builder::new()
                    .name(format!("files-{}", p.label))
                    .spawn_scoped(scope, move || list_files(&p2).map_err(|e| (p2.clone(), e)))
            })
            .collect();
        handles
            .into_iter()
            .zip(peers)
            .map(|(h, p)| match h {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err((p.clone(), err(io::ErrorKind::Other, "lister failed")))
                }),
                Err(e) => Err((p.clone(), e)),
            })
            .collect()
    })
}

/// Fetches and checks a manifest: it must hash to `id`.
fn fetch_manifest(peer: &Peer, id: &str) -> io::Result<Manifest> {
    when_not_busy(|| fetch_manifest_once(peer, id))
}

fn fetch_manifest_once(peer: &Peer, id: &str) -> io::Result<Manifest> {
    let (mut s, mut r) = connect(peer.addr)?;
    s.write_all(format!("MANIFEST {id}\n").as_bytes())?;
    let head = read_line(&mut r)?;
    if let Some(e) = head.strip_prefix("ERR ") {
        return Err(refusal(e));
    }
    let Some(rest) = head.strip_prefix("MANIFEST ") else {
        return Err(err(
            io::ErrorKind::InvalidData,
            format!("{}: {head}", peer.label),
        ));
    };
    let (said, mut m) =
        Manifest::parse_header(rest).map_err(|e| err(io::ErrorKind::InvalidData, e))?;
    for _ in 0..m.expected_pieces() {
        let line = read_line(&mut r)?;
        let h = line
            .strip_prefix("PIECE ")
            .and_then(parse_hex)
            .ok_or_else(|| err(io::ErrorKind::InvalidData, "bad PIECE line"))?;
        m.pieces.push(h);
    }
    if read_line(&mut r)? != "END" {
        return Err(err(io::ErrorKind::InvalidData, "manifest without END"));
    }
    if said != id || m.id() != id {
        return Err(err(
            io::ErrorKind::InvalidData,
            format!(
                "{}'s manifest does not match id {}",
                peer.label,
                &id[..16.min(id.len())]
            ),
        ));
    }
    Ok(m)
}

/// Asks `peers` for the file called `name`: its offers, and a checked manifest.
pub(super) fn find(peers: &[Peer], name: &str) -> Result<(Vec<Offer>, Manifest), String> {
    let mut all: Vec<Offer> = Vec::new();
    for r in list_all(peers) {
        match r {
            Ok(offers) => all.extend(offers.into_iter().filter(|o| o.name == name)),
            Err((p, e)) => debug!("{} did not list its files: {e}", p.label),
        }
    }
    // The file most peers have whole, then most peers at all.
    let mut by_id: HashMap<&str, (usize, usize)> = HashMap::new();
    for o in &all {
        let e = by_id.entry(&o.id).or_default();
        e.0 += o.complete as usize;
        e.1 += 1;
    }
    let Some((id, _)) = by_id.iter().max_by_key(|(_, &n)| n) else {
        return Err(format!("no peer shares {}", name));
    };
    if by_id.len() > 1 {
        warn!(
            "peers offer {} different files named {}; taking the most common",
            by_id.len(),
            name
        );
    }
    let id = id.to_string();
    let offers: Vec<Offer> = all.into_iter().filter(|o| o.id == id).collect();
    for o in offers
        .iter()
        .filter(|o| o.complete)
        .chain(offers.iter().filter(|o| !o.complete))
    {
        match fetch_manifest(&o.peer, &id) {
            Ok(m) => return Ok((offers, m)),
            Err(e) => warn!("manifest from {}: {e}", o.peer.label),
        }
    }
    Err(format!("no source gave a valid manifest for {}", name))
}

/// The offers of the file `id` among `peers` now (a downloader may have become a source).
pub(super) fn find_offers(peers: &[Peer], id: &str) -> Vec<Offer> {
    let mut offers = Vec::new();
    for r in list_all(peers).into_iter().flatten() {
        offers.extend(r.into_iter().filter(|o| o.id == id));
    }
    offers
}
