//! The serving side of file sharing: answers `FILES`, `MANIFEST ID` and `GET ID INDEX` on a
//! connection to the servant's listen port (the "file list" and "send this range" requests
//! of the multi-threaded download the source documents describe).
//!
//! Requests name files by id, never by path, so nothing outside the shared files can be
//! asked for: the library holds only regular files found in the share and downloads
//! folders (no symlinks), and the verified pieces of downloads in progress. Bans apply as
//! for chat (the listener refuses banned hosts before reading), and `<uploads>` caps how
//! many file connections are served at once, with slots that only a connection making
//! progress keeps (`slots`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::slots::{UploadSlot, MIN_RATE, SLOW_LIMIT};
use super::{Entry, Library};
use crate::lines::{LineError, LineReader};

/// Requests that are not understood, in a row, before the connection is closed.
const MAX_BAD: u32 = 20;

/// True when `line` opens a file conversation.
pub fn is_file_request(line: &str) -> bool {
    line == "FILES" || line.starts_with("MANIFEST ") || line.starts_with("GET ")
}

/// Serves file requests, starting with `first`, until the peer closes. `listed`: the
/// client comes from the address of a servant in the peer document (see `slots`).
pub fn serve(
    stream: &TcpStream,
    reader: &mut LineReader<&TcpStream>,
    first: String,
    peer: SocketAddr,
    lib: &Library,
    listed: bool,
    banned: &dyn Fn() -> bool,
) -> String {
    let mut slot = match lib.uploads.take(peer.ip(), listed, stream.try_clone().ok()) {
        Ok(slot) => slot,
        Err(busy) => {
            let _ = (&*stream).write_all(format!("ERR busy: {busy}; try later\n").as_bytes());
            return format!("refused: already {busy}");
        }
    };
    // The next request must come within this (see `slots`), and writes are watched a
    // second at a time for a client that takes too little.
    let _ = stream.set_read_timeout(Some(SLOW_LIMIT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut open: HashMap<String, File> = HashMap::new();
    let mut buf = Vec::new();
    let mut bad = 0u32;
    let mut served = 0u64;
    let mut next = Some(first);
    loop {
        let line = match next.take() {
            Some(l) => l,
            None => match reader.read_line() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    if served > 0 {
                        info!("sent {served} piece(s) to {peer}");
                    }
                    return "closed".into();
                }
                Err(LineError::Io(e)) => return e.to_string(),
                Err(LineError::Idle) => {
                    return format!("asked for nothing for {} s", SLOW_LIMIT.as_secs())
                }
                Err(e) => {
                    // An over-long or non-UTF-8 request: answered, never acted on.
                    bad += 1;
                    if (&*stream)
                        .write_all(format!("ERR {e}\n").as_bytes())
                        .is_err()
                        || bad >= MAX_BAD
                    {
                        return format!("{bad} bad requests in a row");
                    }
                    continue;
                }
            },
        };
        // A host banned (with /ban) while connected gets nothing more.
        if banned() {
            return "banned".into();
        }
        buf.clear();
        match answer(&line, lib, &mut open, &mut buf) {
            Ok(pieces) => {
                served += pieces;
                bad = 0;
            }
            Err(e) => {
                bad += 1;
                debug!("{peer}: {e}");
                buf.clear();
                buf.extend_from_slice(format!("ERR {e}\n").as_bytes());
            }
        }
        if let Err(e) = write_paced(stream, &buf, &mut slot) {
            return format!("write failed after {served} piece(s): {e}");
        }
        if bad >= MAX_BAD {
            return format!("{bad} bad requests in a row");
        }
    }
}

/// Writes `buf` to the client, counting its progress in `slot`; a client that takes less
/// than `MIN_RATE` over `SLOW_LIMIT` of writing is given up.
fn write_paced(mut stream: &TcpStream, buf: &[u8], slot: &mut UploadSlot) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        let start = Instant::now();
        let n = match stream.write(&buf[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        off += n;
        if !slot.wrote(n as u64, start.elapsed()) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took less than {} KiB/s over {} s",
                    MIN_RATE / 1024,
                    SLOW_LIMIT.as_secs()
                ),
            ));
        }
    }
    Ok(())
}

/// Appends the answer to `line` to `out`; returns how many pieces it carries.
fn answer(
    line: &str,
    lib: &Library,
    open: &mut HashMap<String, File>,
    out: &mut Vec<u8>,
) -> Result<u64, String> {
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("FILES"), None, None, None) => {
            for e in lib.entries() {
                let state = if e.partial.is_some() {
                    "partial"
                } else {
                    "complete"
                };
                out.extend_from_slice(
                    format!(
                        "FILE {} {} {state} {}\n",
                        e.manifest.id(),
                        e.manifest.size,
                        e.manifest.name
                    )
                    .as_bytes(),
                );
            }
            out.extend_from_slice(b"END\n");
            Ok(0)
        }
        (Some("MANIFEST"), Some(id), None, None) => {
            let e = lib.get(id).ok_or_else(|| no_such_file(lib, id))?;
            out.extend_from_slice(e.manifest.to_lines().as_bytes());
            Ok(0)
        }
        (Some("GET"), Some(id), Some(index), None) => {
            let e = lib.get(id).ok_or_else(|| no_such_file(lib, id))?;
            let count = e.manifest.piece_count();
            // One spelling for numbers: `007` and `+7` are not 7 (see `encoding`).
            let i = match crate::encoding::parse_u64(index) {
                Ok(i) if i < count as u64 => i as usize,
                Ok(i) => return Err(format!("piece {i} out of range (the file has {count})")),
                Err(crate::encoding::FieldError::OutOfRange) => {
                    return Err(format!(
                        "piece {} out of range (the file has {count})",
                        shown(index)
                    ))
                }
                Err(_) => return Err(format!("bad piece number {}", shown(index))),
            };
            if i >= count {
                return Err(format!(
                    "piece {i} out of range (the file has {})",
                    e.manifest.piece_count()
                ));
            }
            if !e.has_piece(i) {
                return Err(format!("missing piece {i}"));
            }
            let file = match open.get(id) {
                Some(f) => f,
                None => {
                    let f = open_shared(&e)?;
                    open.entry(id.to_owned()).or_insert(f)
                }
            };
            let len = e.manifest.piece_len(i) as usize;
            let header = format!("DATA {i} {len}\n");
            let start = out.len();
            out.extend_from_slice(header.as_bytes());
            out.resize(start + header.len() + len, 0);
            let piece = &mut out[start + header.len()..];
            file.read_exact_at(piece, i as u64 * e.manifest.piece_size)
                .map_err(|e| format!("cannot read piece {i}: {e}"))?;
            // What is on disk now, not what was hashed: a file changed while shared must
            // not send bytes that its manifest does not vouch for. Hashing a piece costs a
            // fraction of sending it (BLAKE3, several GB/s).
            if crate::transfer::manifest::hash_piece(piece) != e.manifest.pieces[i] {
                open.remove(id);
                if e.partial.is_none() {
                    lib.forget(&e.path);
                }
                warn!(
                    "{}: piece {i} changed on disk since it was hashed; not sent, and the file is hashed again",
                    e.path.display()
                );
                return Err(format!(
                    "piece {i} of {} changed since it was hashed; ask again later",
                    shown(&e.manifest.name)
                ));
            }
            Ok(1)
        }
        _ => Err(format!("unknown request {}", shown(line))),
    }
}

/// The `ERR` for an id this servant does not offer; while it is still hashing its share,
/// the file may be one of those not hashed yet, and the answer says so.
fn no_such_file(lib: &Library, id: &str) -> String {
    match lib.hashing() {
        Some(h) => format!(
            "no such file {} among those hashed so far; the shared files are still being hashed ({} of {} done): ask again later",
            shown(id),
            h.files_done,
            h.files
        ),
        None => format!("no such file {}", shown(id)),
    }
}

/// Opens a shared file, refusing anything that is not (any longer) a regular file.
fn open_shared(e: &Entry) -> Result<File, String> {
    super::open_regular(&e.path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            format!("{} is gone", e.manifest.name)
        } else {
            // A link in its place (ELOOP from O_NOFOLLOW) or anything but a regular file.
            format!("{} is not a regular file: {err}", e.manifest.name)
        }
    })
}

fn shown(s: &str) -> String {
    format!(
        "{:?}",
        crate::escape::Shown(&s.chars().take(70).collect::<String>())
    )
}
