//! The servant's listening port spoken to by hand: plain lines from a telnet user, and the
//! servant-to-servant protocol (the handshake, tagged and signed `MSG` lines with sequence
//! numbers) from a raw client playing a servant.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_plain_line_is_shown_with_the_senders_address() {
    let dir = TestDir::new("wire-plain");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "");
    let mut telnet = Raw::connect(alice.port);
    telnet.send("hello from telnet, <b> & ünï");
    telnet.send("second line");
    let from = format!("<127.0.0.1:{}>", telnet.local_port());
    alice
        .proc
        .wait_stdout("the second line", |l| l == format!("{from} second line"));
    assert_eq!(
        alice.proc.stdout(),
        vec![
            format!("{from} hello from telnet, <b> & ünï"),
            format!("{from} second line")
        ],
        "{}",
        dump()
    );
}

#[test]
fn the_handshake_and_sequence_numbers() {
    let dir = TestDir::new("wire-seq");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "");

    let me = std::sync::Arc::new(new_identity());
    let mut raw = RawPeer::connect(alice.port, me.clone(), "rawbot");
    assert_eq!(
        raw.link.peer_id,
        alice.id,
        "the servant proved its id\n{}",
        dump()
    );
    assert_eq!(raw.last, 0, "nothing shown yet\n{}", dump());
    for (seq, text) in [(1, "one"), (2, "two"), (2, "two"), (3, "three")] {
        raw.say(seq, text);
    }
    alice.wait_heard("rawbot", "three");
    assert_eq!(
        alice.heard_from("rawbot"),
        vec!["one", "two", "three"],
        "each shown once, the duplicate dropped\n{}",
        dump()
    );

    // A jump from 3 to 5: shown, with a warning that number 4 never arrived.
    raw.say(5, "five");
    alice.wait_heard("rawbot", "five");
    let warning = alice.proc.wait_log("before number 5 never arrived");
    assert!(
        warning.contains("WARN") && warning.contains("1 message(s) from rawbot"),
        "{warning}\n{}",
        dump()
    );

    // Reconnecting with the same key and run: READY says what was shown last, so the
    // writer resends only what is missing; old numbers are not shown again.
    raw.raw.shutdown();
    drop(raw);
    let mut again = RawPeer::connect(alice.port, me.clone(), "rawbot");
    assert_eq!(again.last, 5, "{}", dump());
    again.say(5, "five");
    again.say(6, "six");
    alice.wait_heard("rawbot", "six");
    assert_eq!(
        alice.heard_from("rawbot"),
        vec!["one", "two", "three", "five", "six"],
        "{}",
        dump()
    );
    // Another writer has its own numbering.
    let mut other = RawPeer::connect(alice.port, std::sync::Arc::new(new_identity()), "otherbot");
    assert_eq!(other.last, 0, "{}", dump());
    other.say(1, "hi");
    alice.wait_heard("otherbot", "hi");
}

#[test]
fn ping_is_not_shown() {
    let dir = TestDir::new("wire-ping");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "");
    let mut raw = RawPeer::connect(alice.port, std::sync::Arc::new(new_identity()), "pinger");
    raw.send_tagged("PING");
    raw.send_tagged("PING");
    raw.say(1, "after the pings");
    alice.wait_heard("pinger", "after the pings");
    assert_eq!(alice.proc.stdout().len(), 1, "{}", dump());
    // The connection is still open for more.
    raw.say(2, "still open");
    alice.wait_heard("pinger", "still open");
    raw.nothing_but_said(Duration::from_millis(100));
}

#[test]
fn an_overlay_link_is_refused_by_a_servant_of_the_full_mesh_and_never_shown() {
    let dir = TestDir::new("wire-link");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "");
    let me = new_identity();
    let (_opening, link) =
        genp2p::handshake::Opening::new(&me, "rawbot", genp2p::handshake::Mode::Link(0)).unwrap();
    let mut raw = Raw::connect(alice.port);
    raw.send(link.trim_end());
    let answer = raw.expect_line("the answer to LINK");
    assert!(answer.starts_with("ERR LINK: "), "{answer}\n{}", dump());
    assert_eq!(
        raw.read_line(Duration::from_secs(2)),
        Got::Closed,
        "{}",
        dump()
    );
    // The next plain line from someone else is shown; the LINK line never was.
    let mut telnet = Raw::connect(alice.port);
    telnet.send("after the link");
    alice
        .proc
        .wait_stdout("the plain line", |l| l.ends_with("after the link"));
    assert!(
        !alice.proc.stdout().iter().any(|l| l.contains("LINK")),
        "{:?}\n{}",
        alice.proc.stdout(),
        dump()
    );
    alice.proc.wait_log("asked for an overlay link");
    // A flood of them from one address is refused each time and logged once a minute.
    for _ in 0..50 {
        let mut raw = Raw::connect(alice.port);
        raw.send(link.trim_end());
        let answer = raw.expect_line("the answer to LINK");
        assert!(answer.starts_with("ERR LINK: "), "{answer}");
    }
    assert_eq!(
        alice.proc.count_log("asked for an overlay link"),
        1,
        "{}",
        dump()
    );
}
