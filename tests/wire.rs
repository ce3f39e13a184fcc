//! The servant's listening port spoken to by hand: plain lines from a telnet user, and the
//! servant-to-servant protocol (`HELLO`, `WELCOME`, `MSG` with sequence numbers) from a raw
//! client playing a servant.

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
fn hello_welcome_and_sequence_numbers() {
    let dir = TestDir::new("wire-seq");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "");

    let mut raw = Raw::connect(alice.port);
    raw.send("HELLO 1 rawid1 rawbot");
    let welcome = raw.expect_line("WELCOME");
    assert_eq!(
        welcome,
        format!("WELCOME {} 0", alice.id),
        "the servant's id and nothing shown yet\n{}",
        dump()
    );
    for line in [
        "MSG rawid1 1 rawbot one",
        "MSG rawid1 2 rawbot two",
        "MSG rawid1 2 rawbot two",
        "MSG rawid1 3 rawbot three",
    ] {
        raw.send(line);
    }
    alice.wait_heard("rawbot", "three");
    assert_eq!(
        alice.heard_from("rawbot"),
        vec!["one", "two", "three"],
        "each shown once, the duplicate dropped\n{}",
        dump()
    );

    // A jump from 3 to 5: shown, with a warning that number 4 never arrived.
    raw.send("MSG rawid1 5 rawbot five");
    alice.wait_heard("rawbot", "five");
    let warning = alice.proc.wait_log("before number 5 never arrived");
    assert!(
        warning.contains("WARN") && warning.contains("1 message(s) from rawbot"),
        "{warning}\n{}",
        dump()
    );

    // Reconnecting with the same id: WELCOME says what was shown last, so the writer
    // resends only what is missing; old numbers are not shown again.
    raw.shutdown();
    drop(raw);
    let mut again = Raw::connect(alice.port);
    again.send("HELLO 1 rawid1 rawbot");
    assert_eq!(
        again.expect_line("WELCOME after reconnecting"),
        format!("WELCOME {} 5", alice.id),
        "{}",
        dump()
    );
    again.send("MSG rawid1 5 rawbot five");
    again.send("MSG rawid1 6 rawbot six");
    alice.wait_heard("rawbot", "six");
    assert_eq!(
        alice.heard_from("rawbot"),
        vec!["one", "two", "three", "five", "six"],
        "{}",
        dump()
    );
    // Another writer has its own numbering.
    let mut other = Raw::connect(alice.port);
    other.send("HELLO 1 rawid2 otherbot");
    assert_eq!(
        other.expect_line("WELCOME for a new id"),
        format!("WELCOME {} 0", alice.id),
        "{}",
        dump()
    );
    other.send("MSG rawid2 1 otherbot hi");
    alice.wait_heard("otherbot", "hi");
}

#[test]
fn ping_is_not_shown() {
    let dir = TestDir::new("wire-ping");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "");
    let mut raw = Raw::connect(alice.port);
    raw.send("HELLO 1 pinger pinger");
    raw.expect_line("WELCOME");
    raw.send("PING");
    raw.send("PING");
    raw.send("MSG pinger 1 pinger after the pings");
    alice.wait_heard("pinger", "after the pings");
    assert_eq!(alice.proc.stdout().len(), 1, "{}", dump());
    // The connection is still open for more.
    raw.send("MSG pinger 2 pinger still open");
    alice.wait_heard("pinger", "still open");
    assert_eq!(raw.read_line(Duration::from_millis(100)), Got::Nothing);
}
