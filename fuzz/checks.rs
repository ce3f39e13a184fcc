//! What each fuzz target checks, shared by the targets (fuzz/fuzz_targets/) and by the
//! regression test that replays their findings (tests/fuzz_regressions.rs), so a stored
//! input is fed to exactly the code that found it. Each function takes the raw input and
//! panics on a finding; nothing here depends on libFuzzer.

#![allow(dead_code)] // each target uses one of these

use std::io::{self, Read};
use std::path::Path;

use genp2p::config::{ManagerConfig, ServantConfig};
use genp2p::lines::{LineError, LineReader};
use genp2p::protocol::{check_token, ManagerCommand, ManagerMessage, PeerEntry, PeerLine};

// ---------------------------------------------------------------------------------------
// config: both configuration parsers
// ---------------------------------------------------------------------------------------

/// `ServantConfig::parse` (config.xml) and `ManagerConfig::parse` on arbitrary text. Errors
/// are formatted too, since turning roxmltree's positions into `file:row:col` slices the
/// input.
pub fn config(data: &[u8]) {
    // The binaries read the file with read_to_string: text that is not UTF-8 never gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.xml");
    match ServantConfig::parse(path, text) {
        Ok(c) => {
            assert!(!c.managers.is_empty());
            assert!(c
                .managers
                .iter()
                .all(|(host, port)| !host.is_empty() && *port > 0));
            if let Some(name) = &c.name {
                // The name goes on the wire; the parser must have checked it.
                check_token("name", name).expect("accepted <name> is a valid token");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match ManagerConfig::parse(path, text) {
        Ok(c) => assert!(c.max_connections >= 1 && c.complaints >= 1),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

// ---------------------------------------------------------------------------------------
// peer_list: the manager's documents
// ---------------------------------------------------------------------------------------

/// `ManagerMessage::parse` on arbitrary text (`<peers>`, `<join>`, `<leave>`, `<unchanged>`,
/// `<error>`, `<pull>`), as a servant receives it. Whatever parses must print (`to_line`)
/// as a document that parses again: the writer never produces XML its own reader refuses.
pub fn peer_list(data: &[u8]) {
    // A servant hands this parser lines from LineReader, which are always UTF-8.
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = ManagerMessage::parse(line) {
        let again = message.to_line();
        if let Err(e) = ManagerMessage::parse(&again) {
            panic!("{message:?} printed as {again:?}, which does not parse: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// lines: bytes from a socket, framed and parsed
// ---------------------------------------------------------------------------------------

/// Hands out `data` in pieces of at most `chunk` bytes; every `idle_every`-th read times
/// out instead, like a socket with a read time-out.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
    idle_every: usize,
    reads: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.idle_every > 0 && self.reads.is_multiple_of(self.idle_every) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What LineReader should return for `data`: each `\n`-terminated line without its line
/// end (one `\r` before the `\n` goes too), an error for a line over the cap or not UTF-8;
/// a last line with no newline is dropped, after one `TooLong` if it already passed the cap
/// (the reader cannot know a `\r\n` is coming, so it waits for `limit + 2` bytes).
fn model(data: &[u8], limit: usize) -> Vec<Result<String, &'static str>> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let partial = pieces.pop().unwrap_or(&[]);
    for mut line in pieces {
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        out.push(if line.len() > limit {
            Err("too long")
        } else {
            std::str::from_utf8(line)
                .map(str::to_owned)
                .map_err(|_| "not utf-8")
        });
    }
    if partial.len() > limit + 1 {
        out.push(Err("too long"));
    }
    out
}

fn check_parsers(line: &str) {
    match ManagerCommand::parse(line) {
        Ok(cmd) => {
            let printed = cmd.to_line();
            assert_eq!(
                ManagerCommand::parse(&printed),
                Ok(cmd.clone()),
                "{line:?} parsed as {cmd:?}, printed as {printed:?}"
            );
            if let ManagerCommand::Listening {
                port,
                id,
                name,
                key,
            } = cmd
            {
                // What the manager does next: list the client in the document every
                // servant reads. An id or name it accepted must not spoil that document.
                let entry = PeerEntry {
                    ip: "192.0.2.1".into(),
                    port,
                    offset: 1,
                    me: false,
                    name: Some(name),
                    id: Some(id),
                    key: Some(key),
                    relay: None,
                };
                let join = ManagerMessage::Join {
                    version: 1,
                    peers: vec![entry],
                };
                let doc = join.to_line();
                assert_eq!(
                    ManagerMessage::parse(&doc),
                    Ok(join),
                    "{line:?} listed as {doc:?}"
                );
            }
        }
        Err(e) => {
            // The manager answers a bad line with <error>: one line that reads back the same.
            let reply = ManagerMessage::Error(e.to_string());
            let doc = reply.to_line();
            assert!(
                !doc.contains('\n'),
                "{line:?} answered over two lines: {doc:?}"
            );
            assert_eq!(
                ManagerMessage::parse(&doc),
                Ok(reply),
                "{line:?} answered {doc:?}"
            );
        }
    }
    if let Some(Ok(peer_line)) = PeerLine::parse(line) {
        let printed = peer_line.to_line();
        let body = printed
            .strip_suffix('\n')
            .expect("a peer line ends with its newline");
        assert!(!body.contains('\n'), "{peer_line:?} printed over two lines");
        assert_eq!(
            PeerLine::parse(body),
            Some(Ok(peer_line.clone())),
            "{line:?} parsed as {peer_line:?}, printed as {printed:?}"
        );
    }
}

/// `LineReader` framing with a small line cap over input that arrives in pieces and with
/// read time-outs, then every line through `ManagerCommand::parse` (what the manager does)
/// and `PeerLine::parse` (what a servant does).
///
/// The input's first three bytes choose the line cap (0 to 255 bytes), the size of each
/// read (0: as much as fits) and how often a read times out (0: never); the rest is the
/// stream. What LineReader returns is compared with a plain model of the framing rules,
/// every line that parses must print back to the same line, and what the manager would
/// send on (the client listed in a `<join>`, or an `<error>` answer) must read back too.
pub fn lines(input: &[u8]) {
    let [limit, chunk, idle, data @ ..] = input else {
        return;
    };
    let limit = usize::from(*limit);
    let chunk = match *chunk {
        0 => usize::MAX,
        n => usize::from(n),
    };
    // Never every read (that would never deliver a byte): 0 means none, else 2 to 9.
    let idle_every = match *idle % 9 {
        0 => 0,
        n => usize::from(n) + 1,
    };
    let source = Trickle {
        data,
        chunk,
        idle_every,
        reads: 0,
    };
    let mut reader = LineReader::new(source, limit);
    let mut got = Vec::new();
    // Each call returns a line, an error or a time-out; all are bounded by the input.
    let max_calls = 4 * data.len() + 16;
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls <= max_calls, "LineReader makes no progress");
        match reader.read_line() {
            Ok(Some(line)) => {
                assert!(
                    line.len() <= limit,
                    "line of {} bytes passed the cap",
                    line.len()
                );
                check_parsers(&line);
                got.push(Ok(line));
            }
            Ok(None) => break,
            Err(LineError::Idle) => continue,
            Err(LineError::TooLong { limit: l }) => {
                assert_eq!(l, limit);
                got.push(Err("too long"));
            }
            Err(LineError::InvalidUtf8) => got.push(Err("not utf-8")),
            Err(LineError::Io(e)) => panic!("unexpected I/O error: {e}"),
        }
    }
    assert_eq!(got, model(data, limit));
}

// ---------------------------------------------------------------------------------------
// handshake: what a stranger may send to either side of the servant handshake, and any
// chat line it may write afterwards
// ---------------------------------------------------------------------------------------

/// The first line as a `HELLO`/`PULL` to the listener's side, the second as its `PROOF`;
/// every line as a `WELCOME` to an opener; every line as a `MSG` to be checked. Without
/// the keys, the input can never complete a handshake or pass a signature check, and no
/// line, however made, may show a character that needs escaping.
pub fn handshake(data: &[u8]) {
    use genp2p::escape::{needs_escape, Shown};
    use genp2p::handshake::{Answered, Mode, Opening};
    use genp2p::identity::Identity;
    use genp2p::protocol::{split_tag, MsgRef};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (Ok(me), Ok(stranger)) = (Identity::ephemeral(), Identity::ephemeral()) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').take(64).collect();
    if let Some(Some(Ok(PeerLine::Hello(h) | PeerLine::Pull(h)))) =
        lines.first().map(|l| PeerLine::parse(l))
    {
        if let Ok((answered, welcome)) = Answered::new(&me, lines[0], &h, None) {
            assert!(welcome.ends_with('\n') && !welcome[..welcome.len() - 1].contains('\n'));
            if let Some(Some(Ok(PeerLine::Proof(p)))) = lines.get(1).map(|l| PeerLine::parse(l)) {
                assert!(
                    answered.finish(&p, None).is_err(),
                    "a made-up PROOF was accepted"
                );
            }
        }
    }
    for line in &lines {
        if let Some(Ok(PeerLine::Welcome(w))) = PeerLine::parse(line) {
            if let Ok((opening, _)) = Opening::new(&me, "me", Mode::Send) {
                assert!(
                    opening.finish(&me, &w, None, None).is_err(),
                    "a made-up WELCOME was accepted"
                );
            }
        }
        let line = split_tag(line).map_or(*line, |(_, rest)| rest);
        if let Some(Ok(m)) = MsgRef::parse(line) {
            if let Ok((sig, _)) = m.auth() {
                assert!(!stranger.key.verifies_parts(&m.signed_parts(), &sig));
            }
            let authors = genp2p::servant::authors::Authors::default();
            authors.learn(stranger.key);
            assert!(authors.verify(&m).is_err() || m.origin != stranger.id);
            for part in [m.name, m.text] {
                let shown = Shown(part).to_string();
                assert!(
                    !shown.chars().any(needs_escape),
                    "{part:?} shown as {shown:?}"
                );
            }
        }
        let shown = Shown(line).to_string();
        assert!(!shown.chars().any(needs_escape));
    }
}
