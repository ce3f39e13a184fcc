//! Reading one line at a time from a socket, with a cap on its length and a time-out.
//!
//! Every conversation in genp2p is line based, so that a person with `telnet` or `nc`
//! can take part. The VB6 original read whatever had arrived (`GetData`) and treated it as
//! one message; over TCP that is wrong as soon as two messages arrive together or one
//! arrives in two pieces. `LineReader` frames the byte stream into lines instead, and it
//! is the one place where bytes from the network are turned into text:
//!
//! - a line longer than the cap is an error, and the rest of it is skipped, so a peer that
//!   never sends a newline cannot make us buffer without bound;
//! - a line that is not UTF-8 is an error for that line only;
//! - a read time-out leaves a half-received line in the buffer and reports `Idle`, so the
//!   caller can send a heartbeat or drop a silent peer and then carry on reading.

use std::fmt;
use std::io::{self, Read};

/// Why `LineReader::read_line` did not return a line.
#[derive(Debug)]
pub enum LineError {
    /// The socket's read time-out passed with no complete line.
    Idle,
    /// A line was longer than the cap; it has been (or will be) skipped up to its newline.
    TooLong { limit: usize },
    /// A complete line was not valid UTF-8; it has been skipped.
    InvalidUtf8,
    /// The connection failed.
    Io(io::Error),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Idle => write!(f, "no complete line before the time-out"),
            LineError::TooLong { limit } => write!(f, "line longer than {limit} bytes"),
            LineError::InvalidUtf8 => write!(f, "line is not valid UTF-8"),
            LineError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LineError {}

/// Frames a byte stream into `\n`-terminated lines (a `\r` before the `\n` is dropped too).
pub struct LineReader<R> {
    inner: R,
    /// Bytes received and not yet returned: `buf[start..filled]`.
    buf: Vec<u8>,
    /// Lines are taken from the front by moving `start`; the rest moves to the front of
    /// `buf` once per read, not once per line, which with many short lines in one read
    /// would copy the read over and over (quadratic in the lines per read).
    start: usize,
    filled: usize,
    /// How far `buf` has been searched for a newline already.
    scanned: usize,
    limit: usize,
    /// Skipping the tail of an over-long line until its newline.
    skipping: bool,
    /// Bytes of that tail skipped so far.
    skipped: usize,
}

/// How much is read from the socket at a time.
const CHUNK: usize = 16 * 1024;
/// The first read of a connection, into the stack (see `read_line_ref`).
const FIRST: usize = 1024;

/// The tail of an over-long line is skipped up to its newline, but not without end: past
/// this many bytes (or the cap, if larger) the peer is not sending lines at all, and
/// reading fails, so a client streaming one endless line cannot keep a thread busy forever.
pub const SKIP_LIMIT: usize = 1 << 20;

/// One read: the bytes read (0 at the end of the stream), a time-out as `Idle`.
fn read_some(r: &mut impl Read, into: &mut [u8]) -> Result<usize, LineError> {
    loop {
        match r.read(into) {
            Ok(n) => return Ok(n),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(LineError::Idle)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LineError::Io(e)),
        }
    }
}

impl<R: Read> LineReader<R> {
    /// `limit` is the longest line accepted, in bytes, not counting the line end.
    pub fn new(inner: R, limit: usize) -> LineReader<R> {
        LineReader {
            inner,
            buf: Vec::new(),
            start: 0,
            filled: 0,
            scanned: 0,
            limit,
            skipping: false,
            skipped: 0,
        }
    }

    /// Changes the longest line accepted from now on (a connection that turns out, after
    /// its first lines, to carry longer ones: an overlay link after its handshake).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The reader this one wraps (for example to change the socket's time-out).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// True when a whole line is already buffered: the next `read_line` will not wait for
    /// the network. Receivers flush their output when this is false.
    pub fn has_line(&self) -> bool {
        memchr::memchr(b'\n', &self.buf[self.scanned..self.filled]).is_some()
    }

    /// The next line without its line end; `Ok(None)` at the end of the stream. A partial
    /// last line (no newline before the end of the stream) is dropped.
    pub fn read_line(&mut self) -> Result<Option<String>, LineError> {
        self.read_line_ref().map(|line| line.map(str::to_owned))
    }

    /// `read_line`, borrowing the line from the reader's buffer: no allocation per line,
    /// for the paths that read one line after another (a chat connection).
    pub fn read_line_ref(&mut self) -> Result<Option<&str>, LineError> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.scanned..self.filled]) {
                let end = self.scanned + pos;
                let was_skipping = self.skipping;
                self.skipping = false;
                let mut text_end = end;
                if text_end > self.start && self.buf[text_end - 1] == b'\r' {
                    text_end -= 1;
                }
                let start = self.start;
                // Consuming only moves the start: the bytes stay where they are until the
                // next read.
                self.consume(end + 1 - start);
                if was_skipping {
                    // The tail of a line already reported as too long.
                    continue;
                }
                if text_end - start > self.limit {
                    // Too long, though it arrived whole in one read.
                    return Err(LineError::TooLong { limit: self.limit });
                }
                return std::str::from_utf8(&self.buf[start..text_end])
                    .map(Some)
                    .map_err(|_| LineError::InvalidUtf8);
            }
            self.scanned = self.filled;
            // +1 leaves room for a trailing '\r' on a line of exactly `limit` bytes.
            if self.filled - self.start > self.limit + 1 {
                // Keep nothing of an over-long line: report it once, then skip to its end.
                let report = !self.skipping;
                if report {
                    self.skipped = 0;
                }
                self.skipping = true;
                self.skipped = self.skipped.saturating_add(self.filled - self.start);
                self.consume(self.filled - self.start);
                if report {
                    return Err(LineError::TooLong { limit: self.limit });
                }
                if self.skipped > SKIP_LIMIT.max(self.limit) {
                    return Err(LineError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a line longer than {} bytes went on for over {} bytes",
                            self.limit,
                            SKIP_LIMIT.max(self.limit)
                        ),
                    )));
                }
            }
            self.compact();
            // A connection that has sent nothing yet waits on a
            // small buffer of the stack: an idle crowd costs no heap, and holds no
            // buffers that outlive it as fragments. Only once bytes come is the heap
            // buffer made, and a read that fills the small one goes on into it.
            if self.buf.capacity() == 0 {
                let mut first = [0u8; FIRST];
                let n = read_some(&mut self.inner, &mut first)?;
                if n == 0 {
                    return Ok(None);
                }
                self.buf.resize(CHUNK, 0);
                self.buf[..n].copy_from_slice(&first[..n]);
                self.filled = n;
                continue;
            }
            if self.buf.len() < self.filled + CHUNK {
                self.buf.resize(self.filled + CHUNK, 0);
            }
            match read_some(&mut self.inner, &mut self.buf[self.filled..])? {
                0 => return Ok(None),
                n => self.filled += n,
            }
        }
    }

    /// Reads exactly `out.len()` raw bytes that follow the last line read (a binary payload
    /// announced by that line), taking first what is already buffered.
    pub fn read_bytes(&mut self, out: &mut [u8]) -> io::Result<()> {
        let have = (self.filled - self.start).min(out.len());
        out[..have].copy_from_slice(&self.buf[self.start..self.start + have]);
        self.consume(have);
        self.inner.read_exact(&mut out[have..])
    }

    /// Drops the first `n` pending bytes.
    fn consume(&mut self, n: usize) {
        self.start += n;
        self.scanned = self.start;
    }

    /// Moves the pending bytes (at most one partial line) to the front of `buf`, before a
    /// read.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        // Give back memory after a burst of long lines.
        if self.buf.len() > 4 * CHUNK && self.filled < CHUNK {
            self.buf.truncate(CHUNK);
            self.buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<Result<String, String>> {
        let mut r = LineReader::new(input, limit);
        let mut out = Vec::new();
        loop {
            match r.read_line() {
                Ok(Some(l)) => out.push(Ok(l)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        assert_eq!(
            lines(b"a\r\nbb\n\nc", 10),
            vec![Ok("a".into()), Ok("bb".into()), Ok("".into())]
        );
    }

    #[test]
    fn over_long_line_is_reported_once_and_skipped() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(
            lines(&input, 16),
            vec![Err("line longer than 16 bytes".into()), Ok("ok".into())]
        );
    }

    #[test]
    fn endless_line_is_given_up() {
        let input = vec![b'x'; 3 * SKIP_LIMIT];
        let mut r = LineReader::new(&input[..], 16);
        assert!(matches!(r.read_line(), Err(LineError::TooLong { .. })));
        assert!(matches!(r.read_line(), Err(LineError::Io(_))));
    }

    #[test]
    fn over_long_line_arriving_whole_is_refused() {
        assert_eq!(
            lines(b"0123456789A\nok\n", 10),
            vec![Err("line longer than 10 bytes".into()), Ok("ok".into())]
        );
    }

    #[test]
    fn line_at_the_limit_is_accepted_with_crlf() {
        assert_eq!(lines(b"0123456789\r\n", 10), vec![Ok("0123456789".into())]);
    }

    #[test]
    fn invalid_utf8_spoils_only_its_line() {
        assert_eq!(
            lines(b"\xff\xfe\nfine\n", 10),
            vec![Err("line is not valid UTF-8".into()), Ok("fine".into())]
        );
    }
}
