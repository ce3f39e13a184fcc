//! Property tests: whatever genp2p prints, it reads back as the same value.
//!
//! The unit tests in `protocol` and `config` pin a handful of hand-picked examples; these
//! generate thousands, weighted towards what breaks parsers: XML's special characters,
//! non-ASCII, white space of every kind, `\r`, and characters XML 1.0 cannot carry at all.
//! Every value generated is one the protocol allows (names and ids pass `check_token`, texts
//! hold no line end), so a failure here is a real disagreement between a writer and its
//! reader. Cases are kept to 256 per property so `cargo test` stays quick.

mod strategies;

use std::path::Path;
use std::time::Duration;

use genp2p::config::{ManagerConfig, ServantConfig};
use genp2p::protocol::{
    ChatMessage, ManagerCommand, ManagerMessage, PeerLine, CHAT_LINE_LIMIT, MANAGER_LINE_LIMIT,
    PEER_DOC_LINE_LIMIT,
};
use proptest::prelude::*;
use strategies::*;

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
