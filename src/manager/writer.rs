//! Writing to one client: the `push-N` thread's loop, and the answers its reading thread
//! writes itself.
//!
//! Everything queued for a client goes out in as few `writev` calls as possible, straight
//! from the queued lines. Kept apart from the reading side (`session`) because it knows
//! only a socket and an outbox: nothing of the registry or the protocol.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use log::debug;

use crate::outbox::Outbox;

/// How long one write to a client may block.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes whatever is queued for one client, as few writes as possible: everything that
/// is waiting goes out together (the pushes of a join storm coalesce). Ends when the
/// outbox is closed and written out, or the client stops taking data.
pub(super) fn push_loop(stream: TcpStream, outbox: &Outbox) {
    let mut lines: Vec<Arc<str>> = Vec::new();
    while outbox.take(&mut lines) {
        if let Err(e) = write_lines(&stream, &lines) {
            debug!("write failed: {e}");
            outbox.close();
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        lines.clear();
        if lines.capacity() > 4096 {
            lines.shrink_to(4096);
        }
    }
}

/// How long the rest of an answer begun by the reading thread may take to write: a client
/// whose socket stays full that long is not reading.
const DIRECT_REST: Duration = Duration::from_secs(2);

/// Writes an answer claimed with `push_answer` from the client's reading thread, without
/// waiting: when the socket takes none of it, the writer gets it back (and the outbox
/// bounds what waits, as for any answer); when it takes only part, the rest is written
/// here within `DIRECT_REST`, or the client is taken not to be reading.
pub(super) fn write_answer(
    stream: &TcpStream,
    parts: &[&str],
    outbox: &Outbox,
) -> Result<(), String> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p.as_bytes())).collect();
    // (`parts` is a few slices: a line, or a document cut around the asker's entry.)
    slices.push(IoSlice::new(b"\n"));
    let total: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    let whole = || -> Arc<str> { Arc::from(parts.concat()) };
    match socket2::SockRef::from(stream).send_vectored_with_flags(&slices, libc::MSG_DONTWAIT) {
        Ok(n) if n == total => {
            outbox.direct_done(true);
            Ok(())
        }
        Ok(0) => {
            outbox.direct_give_back(whole());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            outbox.direct_give_back(whole());
            Ok(())
        }
        Ok(n) => {
            let mut rest = whole().as_bytes().to_vec();
            rest.push(b'\n');
            rest.drain(..n.min(rest.len()));
            let _ = stream.set_write_timeout(Some(DIRECT_REST));
            let written = { stream }.write_all(&rest);
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            outbox.direct_done(written.is_ok());
            written.map_err(|_| "not reading its answers".into())
        }
        Err(e) => {
            outbox.direct_done(false);
            Err(format!("connection failed: {e}"))
        }
    }
}

/// Lines per `writev` (two slices each, within the kernel's limit of 1024).
const LINES_PER_WRITE: usize = 512;

/// Writes `lines`, each followed by `\n`, straight from the queued lines (`writev`): no
/// buffer is built. In a join storm a thousand writers each building a buffer of
/// megabytes cost more in fresh memory than the writes themselves.
pub(super) fn write_lines(mut stream: &TcpStream, lines: &[Arc<str>]) -> io::Result<()> {
    for chunk in lines.chunks(LINES_PER_WRITE) {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(chunk.len() * 2);
        for line in chunk {
            slices.push(IoSlice::new(line.as_bytes()));
            slices.push(IoSlice::new(b"\n"));
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match stream.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
