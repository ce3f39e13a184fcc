//! Property tests: whatever genp2p prints, it reads back as the same value.
//!
//! The unit tests in `protocol` and `config` pin a handful of hand-picked examples; these
//! generate thousands, weighted towards what breaks parsers: XML's special characters,
//! non-ASCII, white space of every kind, `\r`, and characters XML 1.0 cannot carry at all.
//! Every value generated is one the protocol allows (names and ids pass `check_token`, texts
//! hold no line end), so a failure here is a real disagreement between a writer and its
//! reader. Cases are kept to 256 per property so `cargo test` stays quick.

use std::io::{self, Read};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use genp2p::config::{ManagerConfig, ServantConfig};
use genp2p::lines::{LineError, LineReader};
use genp2p::protocol::{
    check_token, ChatMessage, Hello, ManagerCommand, ManagerMessage, PeerEntry, PeerLine, PeerList,
    Proof, Welcome, CHAT_LINE_LIMIT, MANAGER_LINE_LIMIT, NAME_LIMIT, PEER_DOC_LINE_LIMIT,
    TEXT_LIMIT,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
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
fn any_char() -> impl Strategy<Value = char> {
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
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// A name or id: 1 to `NAME_LIMIT` bytes of characters that `check_token` accepts.
fn token() -> impl Strategy<Value = String> {
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
fn text(len: std::ops::Range<usize>, keep: fn(char) -> bool) -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), len)
        .prop_map(move |chars| chars.into_iter().filter(|&c| keep(c)).collect())
}

fn ip() -> impl Strategy<Value = String> {
    any::<IpAddr>().prop_map(|a| a.to_string())
}

// ---------------------------------------------------------------------------------------
// A reader that hands out its bytes in pieces, as a socket does
// ---------------------------------------------------------------------------------------

/// Returns `data` in reads of the given sizes (cycled), with a time-out instead of a read
/// wherever the size is 0.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    reads: usize,
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
fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
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
fn frame(data: &[u8], limit: usize, sizes: Vec<usize>) -> Vec<Result<String, &'static str>> {
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
fn framing_model(data: &[u8], limit: usize) -> Vec<Result<String, &'static str>> {
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
fn id() -> impl Strategy<Value = String> {
    any::<[u8; 10]>().prop_map(|b| genp2p::encoding::hex(&b))
}

/// 32 bytes in hex (a key, as far as the parsers are concerned).
fn key_hex() -> impl Strategy<Value = String> {
    any::<[u8; 32]>().prop_map(|b| genp2p::encoding::hex(&b))
}

fn bytes64() -> impl Strategy<Value = [u8; 64]> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&a);
        out[32..].copy_from_slice(&b);
        out
    })
}

fn peer_entry() -> impl Strategy<Value = PeerEntry> {
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

fn peers() -> impl Strategy<Value = Vec<PeerEntry>> {
    prop::collection::vec(peer_entry(), 0..6)
}

fn manager_message() -> impl Strategy<Value = ManagerMessage> {
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

fn manager_command() -> impl Strategy<Value = ManagerCommand> {
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
fn chat_text() -> impl Strategy<Value = String> {
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

fn hello() -> impl Strategy<Value = Hello> {
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

fn peer_line() -> impl Strategy<Value = PeerLine> {
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
fn escape(s: &str) -> String {
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
fn host() -> impl Strategy<Value = String> {
    text(1..24, |c| xml_char(c) && !c.is_whitespace()).prop_filter("not empty", |s| !s.is_empty())
}

/// Seconds in (0, 86400], to the millisecond.
fn millis() -> impl Strategy<Value = u64> {
    1..=86_400_000u64
}

fn seconds_text(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Writes `elements` inside `<root>` in a shuffled order, with some layout between them.
fn document(root: &str, mut elements: Vec<String>, seed: u64, layout: usize) -> String {
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
fn ban_target() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.:%_-]{1,60}"
}

/// A folder as `<share>` and `<downloads>` take it: relative or absolute, any characters
/// XML carries, no white space at either end (the parser trims it).
fn folder() -> impl Strategy<Value = String> {
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
struct ServantSettings {
    host: String,
    port: Option<u16>,
    name: Option<String>,
    listen: Option<u16>,
    bind: Option<IpAddr>,
    public_port: Option<u16>,
    heartbeat_ms: Option<u64>,
    queue: Option<usize>,
    max_connections: Option<usize>,
    max_per_address: Option<usize>,
    share: Option<String>,
    downloads: Option<String>,
    workers: Option<usize>,
    uploads: Option<usize>,
    bans: Vec<String>,
}

fn servant_settings() -> impl Strategy<Value = ServantSettings> {
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
struct ManagerSettings {
    port: u16,
    bind: Option<IpAddr>,
    first_port: Option<u16>,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_per_address: Option<usize>,
    complaints: Option<u32>,
    probe: Option<(bool, usize)>,
}

fn manager_settings() -> impl Strategy<Value = ManagerSettings> {
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

fn element(name: &str, value: impl ToString) -> String {
    format!("<{name}>{}</{name}>", escape(&value.to_string()))
}

// ---------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------

proptest! {
    // Signatures are slow in a debug build: fewer cases.
    #![proptest_config(ProptestConfig { cases: 32, ..config() })]

    /// Lines signed together each verify on their own, and a changed one does not.
    #[test]
    fn lines_signed_together_each_verify_alone(
        texts in prop::collection::vec(chat_text(), 2..20),
        victim in any::<usize>(),
    ) {
        use genp2p::batch;
        use genp2p::protocol::{msg_head, msg_line, MsgRef};
        let me = signer();
        let heads: Vec<String> = (0..texts.len()).map(|i| msg_head(&me.id, 7, 1 + i as u64, "n")).collect();
        let leaves: Vec<batch::Node> = texts.iter().zip(&heads)
            .map(|(t, h)| batch::leaf(&ChatMessage::signed_parts(h, t))).collect();
        let (depth, root, paths) = batch::build(&leaves);
        let sig = me.sign(&batch::signed_root(depth, &root));
        let authors = genp2p::servant::authors::Authors::default();
        authors.learn(me.key);
        let lines: Vec<String> = texts.iter().enumerate().map(|(i, t)| {
            msg_line(&me.id, 7, 1 + i as u64, "n", &sig, Some((i as u64, &paths[i])), t)
                .trim_end_matches('\n').to_owned()
        }).collect();
        for l in &lines {
            let m = MsgRef::parse(l).expect("MSG").expect("valid");
            prop_assert_eq!(authors.verify(&m), Ok(me.key));
        }
        let v = victim % lines.len();
        let changed = format!("{}!", lines[v]);
        let m = MsgRef::parse(&changed).expect("MSG").expect("valid");
        prop_assert!(authors.verify(&m).is_err(), "a changed line verified: {}", changed);
    }

}

/// One key for every case: making one costs more than the property it serves.
fn signer() -> &'static genp2p::identity::Identity {
    static KEY: std::sync::OnceLock<genp2p::identity::Identity> = std::sync::OnceLock::new();
    KEY.get_or_init(|| genp2p::identity::Identity::ephemeral().expect("a key"))
}

proptest! {
    #![proptest_config(config())]

    /// A signed line parses back to what was signed and verifies; any one byte changed
    /// in it makes it unparsable or unverifiable (or, for a byte of the signature's own
    /// hex, a signature that fails).
    #[test]
    fn signed_lines_verify_and_any_change_is_caught(
        incarnation in any::<u64>(),
        seq in 1..=u64::MAX,
        name in token(),
        text in chat_text(),
        flip in any::<usize>(),
        to in any::<u8>(),
    ) {
        use genp2p::protocol::{msg_line, MsgRef};
        let me = signer();
        let sig = me.sign(&ChatMessage::signed_bytes(&me.id, incarnation, seq, &name, &text));
        let line = msg_line(&me.id, incarnation, seq, &name, &sig, None, &text);
        let bare = line.trim_end_matches('\n');
        let m = MsgRef::parse(bare).expect("a MSG line").expect("valid");
        prop_assert_eq!((m.origin, m.incarnation, m.seq, m.name, m.text), (me.id.as_str(), incarnation, seq, name.as_str(), text.as_str()));
        prop_assert!(me.key.verifies_parts(&m.signed_parts(), &m.auth().expect("a signature").0));
        let mut bytes = bare.as_bytes().to_vec();
        let at = 4 + flip % (bytes.len() - 4);
        if bytes[at] != to {
            bytes[at] = to;
            if let Ok(changed) = std::str::from_utf8(&bytes) {
                if let Some(Ok(m)) = MsgRef::parse(changed) {
                    prop_assert!(
                        m.origin != me.id || m.auth().is_err() || !me.key.verifies_parts(&m.signed_parts(), &m.auth().expect("checked").0),
                        "byte {} changed and still verifies: {:?}", at, changed
                    );
                }
            }
        }
    }

    /// Shown text holds nothing that needs escaping, and text that held nothing of the
    /// kind is shown as it is.
    #[test]
    fn shown_text_is_safe_and_plain_text_unchanged(s in text(0..60, |_| true)) {
        use genp2p::escape::{needs_escape, shown};
        let out = shown(&s);
        prop_assert!(!out.chars().any(needs_escape), "{:?} shown as {:?}", s, out);
        if !s.chars().any(needs_escape) {
            prop_assert_eq!(out.as_ref(), s.as_str());
        } else {
            prop_assert!(out.len() > s.len());
        }
    }

    #[test]
    fn manager_messages_round_trip(message in manager_message()) {
        let line = message.to_line();
        prop_assert!(!line.contains('\n'), "one line: {line:?}");
        prop_assert!(line.len() <= PEER_DOC_LINE_LIMIT);
        prop_assert_eq!(ManagerMessage::parse(&line), Ok(message), "line: {}", line);
    }

    #[test]
    fn manager_commands_round_trip_through_framing(
        commands in prop::collection::vec(manager_command(), 1..8),
        crlf in any::<bool>(),
        sizes in read_sizes(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let stream: String = commands.iter().map(|c| c.to_line() + end).collect();
        let lines = frame(stream.as_bytes(), MANAGER_LINE_LIMIT, sizes);
        prop_assert_eq!(lines.len(), commands.len());
        for (line, command) in lines.into_iter().zip(commands) {
            let line = line.expect("a command is a valid line");
            prop_assert_eq!(ManagerCommand::parse(&line), Ok(command));
        }
    }

    #[test]
    fn peer_lines_round_trip_through_framing(
        peer_lines in prop::collection::vec(peer_line(), 1..6),
        sizes in read_sizes(),
    ) {
        let stream: String = peer_lines.iter().map(PeerLine::to_line).collect();
        let lines = frame(stream.as_bytes(), CHAT_LINE_LIMIT, sizes);
        prop_assert_eq!(lines.len(), peer_lines.len(), "stream: {:?}", stream);
        for (line, peer_line) in lines.into_iter().zip(peer_lines) {
            let line = line.expect("a peer line is a valid line");
            prop_assert_eq!(PeerLine::parse(&line), Some(Ok(peer_line)));
        }
    }

    /// UTF-8 text in any pieces: the lines are exactly those of splitting on `\n`.
    #[test]
    fn line_reader_splits_like_split(
        input in text(0..400, |_| true),
        sizes in read_sizes(),
    ) {
        let mut expected: Vec<Result<String, &str>> = input
            .split('\n')
            .map(|l| Ok(l.strip_suffix('\r').unwrap_or(l).to_owned()))
            .collect();
        expected.pop(); // the part after the last newline is not a line
        prop_assert_eq!(frame(input.as_bytes(), input.len(), sizes), expected);
    }

    /// Any bytes, a small cap: over-long and non-UTF-8 lines are errors, each once.
    #[test]
    fn line_reader_enforces_the_cap(
        input in prop::collection::vec(
            prop_oneof![3 => Just(b'a'), 2 => Just(b'\n'), 1 => Just(b'\r'), 1 => any::<u8>()],
            0..400,
        ),
        limit in 0..40usize,
        sizes in read_sizes(),
    ) {
        prop_assert_eq!(frame(&input, limit, sizes), framing_model(&input, limit));
    }

    #[test]
    fn servant_config_round_trips(s in servant_settings(), seed in any::<u64>(), layout in 0..10usize) {
        let mut elements = vec![element("connectionmgr", &s.host)];
        let mut expected = ServantConfig {
            bans: s.bans.clone(),
            ..ServantConfig::default()
        };
        if let Some(port) = s.port {
            elements.push(element("port", port));
            expected.manager_port = port;
        }
        expected.managers = vec![(s.host.clone(), expected.manager_port)];
        if let Some(name) = &s.name {
            elements.push(element("name", name));
            expected.name = Some(name.clone());
        }
        if let Some(listen) = s.listen {
            elements.push(element("listen", listen));
            expected.listen = Some(listen);
        }
        if let Some(bind) = s.bind {
            elements.push(element("bind", bind));
            expected.bind = bind;
        }
        if let Some(port) = s.public_port {
            elements.push(element("publicport", port));
            expected.public_port = Some(port);
        }
        if let Some(ms) = s.heartbeat_ms {
            elements.push(element("heartbeat", seconds_text(ms)));
            expected.heartbeat = Duration::from_millis(ms);
        }
        if let Some(queue) = s.queue {
            elements.push(element("queue", queue));
            expected.queue = queue;
        }
        if let Some(n) = s.max_connections {
            elements.push(element("maxconnections", n));
            expected.max_connections = n;
        }
        if let Some(n) = s.max_per_address {
            elements.push(element("maxperaddress", n));
            expected.max_per_address = n;
        }
        // Relative folders are taken from the folder the config file is in.
        let in_config_dir = |f: &str| Path::new("conf").join(f);
        if let Some(f) = &s.share {
            elements.push(element("share", f));
            expected.share = Some(in_config_dir(f));
        }
        if let Some(f) = &s.downloads {
            elements.push(element("downloads", f));
            expected.downloads = Some(in_config_dir(f));
        }
        if let Some(n) = s.workers {
            elements.push(element("workers", n));
            expected.workers = n;
        }
        if let Some(n) = s.uploads {
            elements.push(element("uploads", n));
            expected.uploads = n;
        }
        if !s.bans.is_empty() {
            let bans: String = s
                .bans
                .iter()
                .map(|b| format!("<ban>{}</ban>", element("target", b)))
                .collect();
            elements.push(format!("<bans>{bans}</bans>"));
        }
        let text = document("config", elements, seed, layout);
        let parsed = ServantConfig::parse(Path::new("conf/config.xml"), &text);
        prop_assert_eq!(parsed.map_err(|e| e.to_string()), Ok(expected), "file:\n{}", text);
    }

    #[test]
    fn manager_config_round_trips(m in manager_settings(), seed in any::<u64>(), layout in 0..10usize) {
        let mut elements = vec![element("port", m.port)];
        let mut expected = ManagerConfig {
            port: m.port,
            ..ManagerConfig::default()
        };
        if let Some(bind) = m.bind {
            elements.push(element("bind", bind));
            expected.bind = bind;
        }
        if let Some(port) = m.first_port {
            elements.push(element("firstport", port));
            expected.first_port = port;
        }
        if let Some(ms) = m.timeout_ms {
            elements.push(element("timeout", seconds_text(ms)));
            expected.timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = m.idle_timeout_ms {
            elements.push(element("idletimeout", seconds_text(ms)));
            expected.idle_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = m.max_connections {
            elements.push(element("maxconnections", n));
            expected.max_connections = n;
        }
        if let Some(n) = m.max_per_address {
            elements.push(element("maxperaddress", n));
            expected.max_per_address = n;
        }
        if let Some(n) = m.complaints {
            elements.push(element("complaints", n));
            expected.complaints = n;
        }
        if let Some((probe, spelling)) = m.probe {
            let word = match (probe, spelling % 3) {
                (true, 0) => "true",
                (true, 1) => "Yes",
                (true, _) => "1",
                (false, 0) => "FALSE",
                (false, 1) => "no",
                (false, _) => "0",
            };
            elements.push(element("probe", word));
            expected.probe = probe;
        }
        let text = document("manager", elements, seed, layout);
        let parsed = ManagerConfig::parse(Path::new("manager.xml"), &text);
        prop_assert_eq!(parsed.map_err(|e| e.to_string()), Ok(expected), "file:\n{}", text);
    }
}
