//! Bad input does not stop anyone: the manager answers garbage, invalid UTF-8 and
//! over-long lines with `<error>` lines (or closes that one client) and goes on serving
//! the others; a servant's listening port shrugs off the same and keeps chatting; a
//! client that connects and never speaks holds up nobody.

mod common;

use std::time::Duration;

use common::*;

/// The manager still serves a fresh client.
fn manager_still_answers(manager_port: u16) {
    let mut c = Raw::connect(manager_port);
    c.send("needs peer list");
    let line = c.expect_line("the peer list from a fresh client");
    if let Err(e) = parse_peers(&line, "peers") {
        fail(&e);
    }
}

/// The text of an `<error>` line, read as XML.
fn error_text(line: &str) -> String {
    let doc = roxmltree::Document::parse(line)
        .unwrap_or_else(|e| fail(&format!("not XML: {e}: {line:?}")));
    let root = doc.root_element();
    if root.tag_name().name() != "error" {
        fail(&format!("expected <error>, got {line:?}"));
    }
    root.text().unwrap_or("").to_owned()
}

/// Reads what the manager says to a misbehaving client: `<error>` lines, up to a `<peers>`
/// answer or the end of the connection.
fn answers_until_list_or_close(c: &mut Raw) -> (Vec<String>, Option<String>) {
    let mut errors = Vec::new();
    loop {
        match c.read_line(WAIT) {
            Got::Line(l) if l.starts_with("<error>") && l.ends_with("</error>") => errors.push(l),
            Got::Line(l) if l.starts_with("<peers") => return (errors, Some(l)),
            Got::Line(l) => fail(&format!("unexpected answer {l:?} after {errors:?}")),
            Got::Closed => return (errors, None),
            Got::Nothing => fail(&format!("no answer after {errors:?}")),
        }
    }
}

#[test]
fn manager_answers_an_unknown_command_with_an_error() {
    let dir = TestDir::new("mgr-garbage");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut g = Raw::connect(m.port);
    g.send("gimme the list <now> & fast");
    let err = g.expect_line("an <error>");
    assert_eq!(
        error_text(&err),
        "unknown command \"gimme the list <now> & fast\"",
        "{err}\n{}",
        dump()
    );
    g.send("listening notaport");
    let err = g.expect_line("an <error>");
    assert!(err.starts_with("<error>listening: "), "{err}\n{}", dump());
    g.send("");
    assert_eq!(
        g.expect_line("an <error>"),
        "<error>empty line</error>",
        "{}",
        dump()
    );
    // The same client is still served once it speaks properly, and so is everyone else.
    g.send("needs peer list");
    assert!(
        g.expect_line("the list").starts_with("<peers"),
        "{}",
        dump()
    );
    manager_still_answers(m.port);
}

#[test]
fn manager_answers_invalid_utf8_with_an_error() {
    let dir = TestDir::new("mgr-utf8");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut g = Raw::connect(m.port);
    g.send_bytes(b"needs \xff\xfe peer list\n\xc3\x28\n");
    g.send("needs peer list");
    let (errors, list) = answers_until_list_or_close(&mut g);
    assert!(
        errors
            .iter()
            .all(|e| e == "<error>line is not valid UTF-8</error>"),
        "{errors:?}\n{}",
        dump()
    );
    if list.is_some() {
        assert_eq!(
            errors.len(),
            2,
            "one error per bad line: {errors:?}\n{}",
            dump()
        );
    }
    manager_still_answers(m.port);
}

#[test]
fn manager_survives_a_100_kb_line_without_newline() {
    let dir = TestDir::new("mgr-long");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut g = Raw::connect(m.port);
    g.send_bytes(&vec![b'x'; 100 * 1024]);
    // No newline yet: the manager must not wait for one to complain, nor stop serving.
    manager_still_answers(m.port);
    match g.read_line(WAIT) {
        Got::Line(l) => assert_eq!(
            l,
            "<error>line longer than 4096 bytes</error>",
            "{}",
            dump()
        ),
        Got::Closed => {}
        Got::Nothing => fail("no answer to a 100 KB line"),
    }
    // Once the line ends, the client may go on.
    g.send_bytes(b"\n");
    g.send("needs peer list");
    let (errors, _) = answers_until_list_or_close(&mut g);
    assert!(errors.is_empty(), "{errors:?}\n{}", dump());
    manager_still_answers(m.port);
}

#[test]
fn manager_closes_a_client_that_only_sends_garbage() {
    let dir = TestDir::new("mgr-flood");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut g = Raw::connect(m.port);
    // Pseudo-random bytes with line ends: binary noise, as from a wrong program.
    let mut x: u32 = 0x1234_5678;
    let mut noise = Vec::new();
    for i in 0..100 * 64 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        noise.push(if i % 64 == 63 { b'\n' } else { (x >> 24) as u8 });
    }
    g.send_bytes(&noise);
    // Some <error> lines (how many arrive before the close depends on timing), then the
    // manager gives up on this client.
    let (errors, list) = answers_until_list_or_close(&mut g);
    assert_eq!(list, None, "{}", dump());
    assert!(
        errors.len() <= 20,
        "{} error lines\n{}",
        errors.len(),
        dump()
    );
    manager_still_answers(m.port);
}

#[test]
fn silent_clients_hold_up_nobody() {
    let dir = TestDir::new("silent-clients");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    // Connections that never say a word, to the manager ...
    let _mute: Vec<Raw> = (0..3).map(|_| Raw::connect(m.port)).collect();
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    // ... and to a servant.
    let _mute_too: Vec<Raw> = (0..3).map(|_| Raw::connect(s[0].port)).collect();
    wait_listed(m.port, &["alice", "bob"]);
    let carol = start_servant(&dir, "carol", m.port, "");
    s.push(carol);
    wait_mesh(&s);
    s[1].proc.send("to alice, past the mute ones");
    s[0].wait_heard("bob", "to alice, past the mute ones");
    s[2].proc.send("carol here");
    s[0].wait_heard("carol", "carol here");
    s[1].wait_heard("carol", "carol here");
    s[0].proc.send("alice here");
    s[2].wait_heard("alice", "alice here");
}

/// Starts alice and bob, lets `attack` do its worst to alice's listening port, and checks
/// that they still chat both ways.
fn servant_survives(test: &str, attack: impl FnOnce(&Servant)) {
    let dir = TestDir::new(test);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    s[1].proc.send("before");
    s[0].wait_heard("bob", "before");
    attack(&s[0]);
    s[1].proc.send("after, to alice");
    s[0].wait_heard("bob", "after, to alice");
    s[0].proc.send("after, to bob");
    s[1].wait_heard("alice", "after, to bob");
    assert!(s[0].proc.is_running(), "{}", dump());
    assert_eq!(
        s[0].heard_from("bob"),
        vec!["before", "after, to alice"],
        "{}",
        dump()
    );
}

#[test]
fn servant_survives_binary_garbage() {
    servant_survives("srv-garbage", |alice| {
        let mut g = Raw::connect(alice.port);
        let mut x: u32 = 0xdead_beef;
        let mut noise = Vec::new();
        for i in 0..64 * 64 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            noise.push(if i % 64 == 63 { b'\n' } else { (x >> 24) as u8 });
        }
        g.send_bytes(&noise);
        // A second connection that types valid text after garbage, to know the first was read.
        let mut probe = Raw::connect(alice.port);
        probe.send("probe");
        let want = format!("<127.0.0.1:{}> probe", probe.local_port());
        alice.proc.wait_stdout(&want, |l| l == want);
    });
}

#[test]
fn servant_survives_invalid_utf8() {
    servant_survives("srv-utf8", |alice| {
        // As the first line: the connection is closed.
        let mut first = Raw::connect(alice.port);
        first.send_bytes(b"\xff\xfe\xfd\n");
        assert_eq!(first.read_line(WAIT), Got::Closed, "{}", dump());
        // After a plain line: that line is skipped, the connection goes on.
        let mut later = Raw::connect(alice.port);
        later.send("fine");
        later.send_bytes(b"bad \xc3\x28 bytes\n");
        later.send("fine again");
        let from = format!("<127.0.0.1:{}>", later.local_port());
        alice.proc.wait_stdout("the line after the bad one", |l| {
            l == format!("{from} fine again")
        });
        let shown: Vec<String> = alice
            .proc
            .stdout()
            .into_iter()
            .filter(|l| l.starts_with(&from))
            .collect();
        assert_eq!(
            shown,
            vec![format!("{from} fine"), format!("{from} fine again")],
            "{}",
            dump()
        );
        alice.proc.wait_log("line is not valid UTF-8");
    });
}

#[test]
fn servant_survives_a_100_kb_line_without_newline() {
    servant_survives("srv-long", |alice| {
        let mut g = Raw::connect(alice.port);
        g.send_bytes(&vec![b'y'; 100 * 1024]);
        alice.proc.wait_log("line longer than");
        assert_eq!(g.read_line(WAIT), Got::Closed, "{}", dump());
        assert!(
            alice.proc.stdout().iter().all(|l| !l.contains("yyyy")),
            "{}",
            dump()
        );
    });
}

#[test]
fn servant_survives_bad_protocol_lines() {
    servant_survives("srv-protocol", |alice| {
        // A HELLO of another version is refused.
        let mut old = Raw::connect(alice.port);
        old.send("HELLO 1 someid somename");
        assert_eq!(old.read_line(WAIT), Got::Closed, "{}", dump());
        // A HELLO with a bad name is refused.
        let me = std::sync::Arc::new(new_identity());
        let mut bad = Raw::connect(alice.port);
        bad.send(&format!(
            "HELLO 2 {} <script> 1 {} {}",
            me.id,
            me.key.hex(),
            "11".repeat(32)
        ));
        assert_eq!(bad.read_line(WAIT), Got::Closed, "{}", dump());
        // A proper handshake, then tagged lines that are not proper MSGs: skipped, logged once.
        let mut p = RawPeer::connect(alice.port, me.clone(), "fuzzer");
        let sig = "00".repeat(64);
        let (id, inc) = (me.id.clone(), me.incarnation);
        for line in [
            format!("MSG {id} {inc} 0 fuzzer {sig} zero is not a sequence number"),
            format!("MSG {id} {inc} -1 fuzzer {sig} negative"),
            format!("MSG {id} {inc} notanumber fuzzer {sig} words"),
            "MSG".to_owned(),
            "WELCOME x 1".to_owned(),
            format!("HELLO 2 {id} fuzzer"),
            "just some text".to_owned(),
            "PING extra".to_owned(),
        ] {
            p.send_tagged(&line);
        }
        p.say(1, "a proper one at last");
        alice.wait_heard("fuzzer", "a proper one at last");
        assert_eq!(alice.heard_from("fuzzer").len(), 1, "{}", dump());
        assert_eq!(
            alice.proc.count_log("such lines are skipped"),
            1,
            "logged once per connection\n{}",
            dump()
        );
        assert_eq!(
            alice
                .proc
                .count_log("dropped (logged once a minute per connection)"),
            1,
            "bad MSG lines are dropped, logged once a minute\n{}",
            dump()
        );
        // Nothing is answered but the listener's own `SAID` now and then (4.5).
        p.nothing_but_said(Duration::from_millis(100));
    });
}
