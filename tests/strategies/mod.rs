//! The value generators of the property tests (tests/roundtrip.rs): every message, line
//! and configuration file the protocol allows, weighted towards what breaks parsers (XML's
//! special characters, non-ASCII, white space of every kind, `\r`, characters XML 1.0
//! cannot carry), and the models the framing is checked against.

#![allow(dead_code)]

use std::io::{self, Read};
use std::net::IpAddr;

use genp2p::lines::{LineError, LineReader};
use genp2p::protocol::{
    check_token, ChatMessage, Hello, ManagerCommand, ManagerMessage, PeerEntry, PeerLine, PeerList,
    Proof, Welcome, NAME_LIMIT, TEXT_LIMIT,
};
use proptest::prelude::*;

pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // A failure prints its minimal case; nothing is written beside the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Characters and strings
// ---------------------------------------------------------------------------------------

/// Characters weighted towards the awkward ones.
pub fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => any::<char>(),
        3 => prop::sample::select(vec![
            '<', '>', '&', '"', '\'', ';', '#', ']', '=', '\\', ' ', '\t', '\r', '\n', '\0',
            '\u{1}', '\u{1b}', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}', '\u{200b}', '\u{feff}',
            '\u{fffd}', '\u{fffe}', '\u{ffff}', '\u{e000}', '\u{10ffff}', 'é', 'ü', 'ß', 'ø',
            '中', '文', 'й', '😀', '\u{301}', '\u{202e}', '\u{2066}', '\u{200f}', '\u{61c}',
        ]),
    ]
}

/// Characters an XML 1.0 document can hold (the `Char` production).
pub fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// A name or id: 1 to `NAME_LIMIT` bytes of characters that `check_token` accepts.
pub fn token() -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), 1..=NAME_LIMIT).prop_map(|chars| {
        let mut s = String::new();
        for c in chars {
            // A character the rules refuse is replaced rather than rejected, so no case is
            // thrown away; `check_token` alone decides which characters those are.
            let c = if check_token("c", c.encode_utf8(&mut [0; 4])).is_ok() {
                c
            } else {
                'x'
            };
            if s.len() + c.len_utf8() > NAME_LIMIT {
                break;
            }
            s.push(c);
        }
        s
    })
}

/// Text made of `chars`, keeping only the characters `keep` allows.
pub fn text(len: std::ops::Range<usize>, keep: fn(char) -> bool) -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), len)
        .prop_map(move |chars| chars.into_iter().filter(|&c| keep(c)).collect())
}

pub fn ip() -> impl Strategy<Value = String> {
    any::<IpAddr>().prop_map(|a| a.to_string())
}

// ---------------------------------------------------------------------------------------
// A reader that hands out its bytes in pieces, as a socket does
// ---------------------------------------------------------------------------------------

/// Returns `data` in reads of the given sizes (cycled), with a time-out instead of a read
/// wherever the size is 0.
pub struct Chunked {
    pub data: Vec<u8>,
    pub pos: usize,
    pub sizes: Vec<usize>,
    pub reads: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.reads % self.sizes.len()];
        self.reads += 1;
        if size == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = size.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Read sizes: mostly small, some large, and some time-outs (never all of them).
pub fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![4 => 1..8usize, 2 => 8..70_000usize, 1 => Just(0usize)],
        1..8,
    )
    .prop_map(|mut sizes| {
        sizes.push(1);
        sizes
    })
}

/// Everything a LineReader returns for `data` (time-outs skipped), errors by name.
pub fn frame(data: &[u8], limit: usize, sizes: Vec<usize>) -> Vec<Result<String, &'static str>> {
    let source = Chunked {
        data: data.to_vec(),
        pos: 0,
        sizes,
        reads: 0,
    };
    let mut reader = LineReader::new(source, limit);
    let mut out = Vec::new();
    loop {
        match reader.read_line() {
            Ok(Some(line)) => out.push(Ok(line)),
            Ok(None) => return out,
            Err(LineError::Idle) => continue,
            Err(LineError::TooLong { .. }) => out.push(Err("too long")),
            Err(LineError::InvalidUtf8) => out.push(Err("not utf-8")),
            Err(LineError::Io(e)) => panic!("unexpected I/O error: {e}"),
        }
    }
}

/// The framing rules, plainly: `\n`-terminated lines without their line end (one `\r`
/// before the `\n` goes too); a line over the cap or not UTF-8 is an error; a last line
/// without a newline is dropped, after one "too long" if it already holds more than
/// `limit + 1` bytes (room for a `\r` that may be followed by the `\n`).
pub fn framing_model(data: &[u8], limit: usize) -> Vec<Result<String, &'static str>> {
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let partial = pieces.pop().unwrap_or(&[]);
    let mut out: Vec<_> = pieces
        .into_iter()
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > limit {
                Err("too long")
            } else {
                std::str::from_utf8(line)
                    .map(str::to_owned)
                    .map_err(|_| "not utf-8")
            }
        })
        .collect();
    if partial.len() > limit + 1 {
        out.push(Err("too long"));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Protocol values
// ---------------------------------------------------------------------------------------

/// A servant id: 20 lowercase hex digits.
pub fn id() -> impl Strategy<Value = String> {
    any::<[u8; 10]>().prop_map(|b| genp2p::encoding::hex(&b))
}

/// 32 bytes in hex (a key, as far as the parsers are concerned).
pub fn key_hex() -> impl Strategy<Value = String> {
    any::<[u8; 32]>().prop_map(|b| genp2p::encoding::hex(&b))
}

pub fn bytes64() -> impl Strategy<Value = [u8; 64]> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&a);
        out[32..].copy_from_slice(&b);
        out
    })
}

pub fn peer_entry() -> impl Strategy<Value = PeerEntry> {
    (
        ip(),
        any::<u16>(),
        any::<u32>(),
        any::<bool>(),
        prop::option::of(token()),
        prop::option::of(id()),
        prop::option::of(key_hex()),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(ip, port, offset, me, name, id, key, relay)| PeerEntry {
            ip,
            port,
            offset,
            me,
            name,
            id,
            key,
            relay,
        })
}

pub fn peers() -> impl Strategy<Value = Vec<PeerEntry>> {
    prop::collection::vec(peer_entry(), 0..6)
}

pub fn manager_message() -> impl Strategy<Value = ManagerMessage> {
    prop_oneof![
        // The epoch is 16 hex digits from a genp2p manager; any text an attribute carries
        // unchanged (no TAB, CR or LF, which XML turns into spaces) must survive too.
        (
            any::<u64>(),
            text(0..24, |c| xml_char(c) && !matches!(c, '\t' | '\n' | '\r')),
            any::<u64>(),
            peers()
        )
            .prop_map(|(version, epoch, timeout_ms, peers)| ManagerMessage::Peers(
                PeerList {
                    version,
                    epoch,
                    timeout_ms,
                    peers
                }
            )),
        any::<u64>().prop_map(|version| ManagerMessage::Unchanged { version }),
        (any::<u64>(), peers())
            .prop_map(|(version, peers)| ManagerMessage::Join { version, peers }),
        (any::<u64>(), peers())
            .prop_map(|(version, peers)| ManagerMessage::Leave { version, peers }),
        // One line of text XML can carry: no line ends (a CR would come back as LF).
        text(0..80, |c| xml_char(c) && !matches!(c, '\n' | '\r')).prop_map(ManagerMessage::Error),
        prop::option::of(peer_entry()).prop_map(ManagerMessage::Pull),
        any::<[u8; 32]>().prop_map(|nonce| ManagerMessage::Challenge { nonce }),
        (any::<u64>(), any::<u64>(), peers()).prop_map(|(version, total, peers)| {
            ManagerMessage::Sample {
                version,
                total,
                peers,
            }
        }),
    ]
}

pub fn manager_command() -> impl Strategy<Value = ManagerCommand> {
    prop_oneof![
        prop::option::of(any::<u64>()).prop_map(|since| ManagerCommand::NeedsPeerList { since }),
        (1..=u16::MAX, id(), token(), key_hex()).prop_map(|(port, id, name, key)| {
            ManagerCommand::Listening {
                port,
                id,
                name,
                key,
            }
        }),
        (bytes64(), prop::option::of(any::<[u8; 16]>()))
            .prop_map(|(sig, net)| ManagerCommand::Prove { sig, net }),
        Just(ManagerCommand::Bye),
        Just(ManagerCommand::NeedsNoChanges),
        Just(ManagerCommand::NeedsChanges),
        (1..=genp2p::protocol::SAMPLE_LIMIT)
            .prop_map(|count| ManagerCommand::NeedsSample { count }),
        id().prop_map(|id| ManagerCommand::Complain { id }),
    ]
}

/// A chat text: the rest of the line, so anything but `\n`, up to `TEXT_LIMIT` bytes, and
/// not ending in `\r` (LineReader takes a `\r` before the `\n` as part of the line end).
pub fn chat_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => text(0..40, |c| c != '\n'),
        1 => text(2000..3000, |c| c != '\n'),
    ]
    .prop_map(|mut s| {
        while s.len() > TEXT_LIMIT {
            s.pop();
        }
        while s.ends_with('\r') {
            s.pop();
        }
        s
    })
}

pub fn hello() -> impl Strategy<Value = Hello> {
    (
        id(),
        token(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(id, name, incarnation, key, eph)| Hello {
            id,
            name,
            incarnation,
            key,
            eph,
        })
}

pub fn peer_line() -> impl Strategy<Value = PeerLine> {
    prop_oneof![
        hello().prop_map(PeerLine::Hello),
        hello().prop_map(PeerLine::Pull),
        (hello(), any::<u16>()).prop_map(|(h, p)| PeerLine::Link(h, p)),
        (
            id(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            bytes64(),
            prop::option::of(any::<[u8; 16]>())
        )
            .prop_map(|(id, key, eph, sig, net)| PeerLine::Welcome(Welcome {
                id,
                key,
                eph,
                sig,
                net
            })),
        (bytes64(), prop::option::of(any::<[u8; 16]>()))
            .prop_map(|(sig, net)| PeerLine::Proof(Proof { sig, net })),
        any::<u64>().prop_map(|last| PeerLine::Ready { last }),
        (
            id(),
            any::<u64>(),
            1..=u64::MAX,
            token(),
            bytes64(),
            prop::option::of((0..64u64, prop::collection::vec(any::<[u8; 16]>(), 6))),
            chat_text()
        )
            .prop_map(|(origin, incarnation, seq, name, sig, batch, text)| {
                PeerLine::Msg(ChatMessage {
                    origin,
                    incarnation,
                    seq,
                    name,
                    sig,
                    // A path as deep as the index needs (at least one hash).
                    batch: batch.map(|(index, path)| genp2p::protocol::Batch {
                        index,
                        path: path[..(64 - index.leading_zeros() as usize).max(1)].to_vec(),
                    }),
                    text,
                })
            }),
        Just(PeerLine::Ping),
        (id(), any::<u64>(), any::<u64>()).prop_map(|(origin, incarnation, seq)| PeerLine::Seen {
            origin,
            incarnation,
            seq
        }),
        any::<u64>().prop_map(|ms| PeerLine::Since { ms }),
        Just(PeerLine::End),
    ]
}

// ---------------------------------------------------------------------------------------
// Configuration files
// ---------------------------------------------------------------------------------------

/// Escapes text for XML content or a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A host name or address as the config files take it: no white space, and only what
/// XML can carry.
pub fn host() -> impl Strategy<Value = String> {
    text(1..24, |c| xml_char(c) && !c.is_whitespace()).prop_filter("not empty", |s| !s.is_empty())
}

/// Seconds in (0, 86400], to the millisecond.
pub fn millis() -> impl Strategy<Value = u64> {
    1..=86_400_000u64
}

pub fn seconds_text(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Writes `elements` inside `<root>` in a shuffled order, with some layout between them.
pub fn document(root: &str, mut elements: Vec<String>, seed: u64, layout: usize) -> String {
    // A small xorshift, so the order is part of the generated case.
    let mut x = seed | 1;
    for i in (1..elements.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        elements.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let sep = ["", "\n", "\n  ", " \t", "\r\n"][layout % 5];
    let decl = if layout.is_multiple_of(2) {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    } else {
        ""
    };
    format!("{decl}<{root}>{sep}{}{sep}</{root}>\n", elements.join(sep))
}

/// An IP address or host name as `<ban><target>` takes it (see `is_ban_target`).
pub fn ban_target() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.:%_-]{1,60}"
}

/// A folder as `<share>` and `<downloads>` take it: relative or absolute, any characters
/// XML carries, no white space at either end (the parser trims it).
pub fn folder() -> impl Strategy<Value = String> {
    (any::<bool>(), text(1..20, |c| xml_char(c) && c != '\r'))
        .prop_map(|(absolute, t)| {
            let t = t.trim();
            if absolute {
                format!("/{t}")
            } else {
                t.to_owned()
            }
        })
        .prop_filter("a folder", |t| !t.is_empty())
}

#[derive(Debug, Clone)]
pub struct ServantSettings {
    pub host: String,
    pub port: Option<u16>,
    pub name: Option<String>,
    pub listen: Option<u16>,
    pub bind: Option<IpAddr>,
    pub public_port: Option<u16>,
    pub heartbeat_ms: Option<u64>,
    pub queue: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_per_address: Option<usize>,
    pub share: Option<String>,
    pub downloads: Option<String>,
    pub workers: Option<usize>,
    pub uploads: Option<usize>,
    pub bans: Vec<String>,
}

pub fn servant_settings() -> impl Strategy<Value = ServantSettings> {
    (
        (
            host(),
            prop::option::of(1..=u16::MAX),
            prop::option::of(token()),
            prop::option::of(any::<u16>()),
            prop::option::of(any::<IpAddr>()),
            prop::option::of(1..=u16::MAX),
            prop::option::of(millis()),
            prop::option::of(1..=1_000_000usize),
        ),
        (
            prop::option::of(1..=1_000_000usize),
            prop::option::of(1..=1_000_000usize),
            prop::option::of(folder()),
            prop::option::of(folder()),
            prop::option::of(1..=32usize),
            prop::option::of(1..=1000usize),
            prop::collection::vec(ban_target(), 0..4),
        ),
    )
        .prop_map(
            |(
                (host, port, name, listen, bind, public_port, heartbeat_ms, queue),
                (max_connections, max_per_address, share, downloads, workers, uploads, bans),
            )| ServantSettings {
                host,
                port,
                name,
                listen,
                bind,
                public_port,
                heartbeat_ms,
                queue,
                max_connections,
                max_per_address,
                share,
                downloads,
                workers,
                uploads,
                bans,
            },
        )
}

#[derive(Debug, Clone)]
pub struct ManagerSettings {
    pub port: u16,
    pub bind: Option<IpAddr>,
    pub first_port: Option<u16>,
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_per_address: Option<usize>,
    pub complaints: Option<u32>,
    pub probe: Option<(bool, usize)>,
}

pub fn manager_settings() -> impl Strategy<Value = ManagerSettings> {
    (
        any::<u16>(),
        prop::option::of(any::<IpAddr>()),
        prop::option::of(1..=u16::MAX),
        prop::option::of(millis()),
        prop::option::of(millis()),
        prop::option::of(1..=1_000_000usize),
        prop::option::of(1..=1_000_000usize),
        prop::option::of(1..=1000u32),
        prop::option::of((any::<bool>(), 0..6usize)),
    )
        .prop_map(
            |(
                port,
                bind,
                first_port,
                timeout_ms,
                idle_timeout_ms,
                max_connections,
                max_per_address,
                complaints,
                probe,
            )| ManagerSettings {
                port,
                bind,
                first_port,
                timeout_ms,
                idle_timeout_ms,
                max_connections,
                max_per_address,
                complaints,
                probe,
            },
        )
}

pub fn element(name: &str, value: impl ToString) -> String {
    format!("<{name}>{}</{name}>", escape(&value.to_string()))
}

// ---------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------
