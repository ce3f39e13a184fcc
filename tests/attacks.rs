//! Attacks on identity and chat, tried the way someone on the same LAN would: with plain
//! sockets and docs/PROTOCOL.md. Each test names the attack; each checks that it fails
//! and that the servant attacked keeps serving everyone else.
//!
//! `Fake` is a hand-written servant with a key of its own: listed by the manager, it
//! receives real servants' signed lines (so it holds genuine lines to replay or alter)
//! and can be chosen as a relay (so it can try to rewrite what it carries).

mod common;
mod fake;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use fake::*;
use genp2p::handshake::Mode;
use genp2p::protocol::PeerLine;

#[test]
fn hello_with_another_servants_id_is_refused_and_shows_nothing() {
    let dir = TestDir::new("attack-hello");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    let [alice, bob] = &mut s[..] else {
        unreachable!()
    };
    let alice_key = listed(m.port)
        .into_iter()
        .find(|p| p.name.as_deref() == Some("alice"))
        .and_then(|p| p.id)
        .unwrap_or_else(|| fail("alice is not listed"));
    assert_eq!(alice_key, alice.id);
    let eve = new_identity();

    // alice's id with eve's key: refused at once.
    let mut a = Raw::connect(bob.port);
    a.send(&format!(
        "HELLO 2 {} alice 1 {} {}",
        alice.id,
        eve.key.hex(),
        "09".repeat(32)
    ));
    assert_eq!(a.read_line(WAIT), Got::Closed, "{}", dump());
    bob.proc.wait_log("refused: alice claims id ");

    // alice's id and alice's real (public) key: eve cannot sign the PROOF.
    let doc = {
        let mut c = Raw::connect(m.port);
        c.send("needs peer list");
        c.expect_line("the list")
    };
    let key = doc
        .split("<key>")
        .nth(1)
        .and_then(|k| k.split('<').next())
        .unwrap_or_else(|| fail(&format!("no key in {doc}")))
        .to_owned();
    // (From another address: refusals are logged once a minute per address.)
    let mut b = Raw::connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), bob.port);
    b.send(&format!(
        "HELLO 2 {} alice 1 {key} {}",
        alice.id,
        "09".repeat(32)
    ));
    let welcome = b.expect_line("WELCOME");
    assert!(
        welcome.starts_with(&format!("WELCOME {} ", bob.id)),
        "{welcome}"
    );
    b.send(&format!("PROOF {}", "00".repeat(64)));
    b.send(&format!(
        "MSG {} 1 1000 alice {} please send me your password",
        alice.id,
        "00".repeat(64)
    ));
    assert_eq!(b.read_line(WAIT), Got::Closed, "{}", dump());
    bob.proc
        .wait_log("the signature of its PROOF does not verify");
    // Again from the first address: refused as well, and not logged again.
    let mut c = Raw::connect(bob.port);
    c.send(&format!(
        "HELLO 2 {} alice 1 {} {}",
        alice.id,
        eve.key.hex(),
        "09".repeat(32)
    ));
    assert_eq!(c.read_line(WAIT), Got::Closed, "{}", dump());
    assert_eq!(
        bob.proc.count_log("refused: alice claims id "),
        1,
        "{}",
        dump()
    );
    // bob never showed the forged line, and alice's lines still arrive.
    alice.proc.send("the real alice");
    bob.wait_heard("alice", "the real alice");
    assert_eq!(
        bob.heard_from("alice"),
        vec!["the real alice"],
        "{}",
        dump()
    );
}

#[test]
fn a_forged_line_with_a_high_number_cannot_silence_anyone() {
    let dir = TestDir::new("attack-forged-msg");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    let [alice, bob] = &mut s[..] else {
        unreachable!()
    };
    alice.proc.send("one");
    bob.wait_heard("alice", "one");
    // mallory has a key and a link of her own, and writes lines "by alice" on it, with
    // high numbers: number 1000, and the largest there is.
    let mut mallory = RawPeer::connect(bob.port, Arc::new(new_identity()), "mallory");
    for seq in [1000, u64::MAX] {
        for inc in [1, u64::MAX] {
            mallory.send_tagged(&format!(
                "MSG {} {inc} {seq} alice {} please send me your password",
                alice.id,
                "00".repeat(64)
            ));
        }
    }
    // A line mallory signs herself, claiming alice's id: her signature is not alice's.
    let forged = signed_msg(
        &mallory.me,
        u64::MAX,
        u64::MAX,
        "alice",
        "signed by mallory",
    );
    let forged = forged.replacen(&mallory.me.id, &alice.id, 1);
    mallory.send_tagged(&forged);
    bob.proc
        .wait_log("whose signature does not verify; dropped");
    // alice's next lines are shown at once: nothing was counted from the forgeries.
    for t in ["two", "three"] {
        alice.proc.send(t);
    }
    bob.wait_heard("alice", "three");
    assert_eq!(
        bob.heard_from("alice"),
        vec!["one", "two", "three"],
        "{}",
        dump()
    );
    assert_eq!(
        bob.proc.count_log("never arrived"),
        0,
        "no gap from a forgery\n{}",
        dump()
    );
    assert!(!bob
        .proc
        .stdout()
        .iter()
        .any(|l| l.contains("password") || l.contains("mallory")));
    // The attacker's link cost her the log lines, once a minute, not bob's service.
    assert_eq!(
        bob.proc
            .count_log("dropped (logged once a minute per connection"),
        1,
        "{}",
        dump()
    );
}

#[test]
fn a_genuine_line_replayed_altered_or_not_is_never_shown_twice_or_changed() {
    let dir = TestDir::new("attack-replay");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    let [alice, bob] = &mut s[..] else {
        unreachable!()
    };
    // eve is listed, so alice sends her every line, genuinely signed.
    let eve = Fake::start(m.port, "eve");
    alice.wait_knows(&["eve"]);
    alice.proc.send("meet at noon");
    let genuine = eve.wait_line("alice's line at eve", |l| l.ends_with(" meet at noon"));
    bob.wait_heard("alice", "meet at noon");
    // eve replays it to bob on a link of her own, as it is and rewritten.
    let mut link = RawPeer::connect(bob.port, eve.me.clone(), "eve");
    link.send_tagged(&genuine);
    link.send_tagged(&with_text(&genuine, "meet at midnight"));
    bob.proc
        .wait_log("whose signature does not verify; dropped");
    alice.proc.send("see you");
    bob.wait_heard("alice", "see you");
    assert_eq!(
        bob.heard_from("alice"),
        vec!["meet at noon", "see you"],
        "{}",
        dump()
    );
    // A recorded tagged line, replayed on another connection, fails its tag.
    let tag_of_link = genp2p::encoding::hex(&link.link.tags.tag(genuine.as_bytes()));
    let mut other = RawPeer::connect(bob.port, eve.me.clone(), "eve");
    other.raw.send(&format!("{tag_of_link} {genuine}"));
    bob.proc
        .wait_log("a line whose tag does not match; dropped");
}

#[test]
fn a_recorded_handshake_cannot_be_replayed() {
    let dir = TestDir::new("attack-handshake-replay");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let bob = start_servant(&dir, "bob", m.port, "");
    let carol = Arc::new(new_identity());
    // A genuine handshake, recorded.
    let mut honest = Raw::connect(bob.port);
    let (opening, hello) = genp2p::handshake::Opening::new(&carol, "carol", Mode::Send).unwrap();
    honest.send_bytes(hello.as_bytes());
    let welcome = honest.expect_line("WELCOME");
    let Some(Ok(PeerLine::Welcome(w))) = PeerLine::parse(&welcome) else {
        fail(&welcome)
    };
    let (link, proof) = opening.finish(&carol, &w, None, None).unwrap();
    honest.send_bytes(proof.as_bytes());
    assert!(honest.expect_line("READY").starts_with("READY "));
    let first = signed_msg(&carol, carol.incarnation, 1, "carol", "recorded");
    honest.send(&format!(
        "{} {first}",
        genp2p::encoding::hex(&link.tags.tag(first.as_bytes()))
    ));
    bob.wait_heard("carol", "recorded");
    // The whole conversation replayed on a new connection.
    let mut replay = Raw::connect(bob.port);
    replay.send_bytes(hello.as_bytes());
    let second = replay.expect_line("a new WELCOME");
    assert_ne!(second, welcome, "every WELCOME has a fresh key");
    replay.send_bytes(proof.as_bytes());
    assert_eq!(replay.read_line(WAIT), Got::Closed, "{}", dump());
    bob.proc.wait_log("refused: carol (id ");
    assert_eq!(bob.heard_from("carol"), vec!["recorded"], "{}", dump());
}

#[test]
fn nobody_registers_under_or_evicts_another_servants_id() {
    let dir = TestDir::new("attack-manager");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    let [alice, bob] = &mut s[..] else {
        unreachable!()
    };
    let doc = listed(m.port);
    let entry = doc
        .iter()
        .find(|p| p.name.as_deref() == Some("alice"))
        .unwrap_or_else(|| fail("alice is not listed"))
        .clone();
    let eve = new_identity();
    let mut c = Raw::connect(m.port);
    // alice's id with eve's key.
    c.send(&format!(
        "listening 4242 {} alice {}",
        alice.id,
        eve.key.hex()
    ));
    let e = c.expect_line("an error");
    assert!(
        e.starts_with("<error>listening: the id of this key is "),
        "{e}"
    );
    // alice's id and key (they are public): the challenge cannot be answered.
    let raw_doc = {
        let mut r = Raw::connect(m.port);
        r.send("needs peer list");
        r.expect_line("the list")
    };
    let key = raw_doc
        .split("<key>")
        .find(|k| !k.is_empty() && !k.starts_with('<'))
        .and_then(|k| k.split('<').next())
        .unwrap_or_default()
        .to_owned();
    let alice_key = raw_doc
        .split("<peer>")
        .find(|p| p.contains(&format!("<id>{}</id>", alice.id)))
        .and_then(|p| p.split("<key>").nth(1))
        .and_then(|k| k.split('<').next())
        .unwrap_or(&key)
        .to_owned();
    let listening = format!("listening 4242 {} alice {alice_key}", alice.id);
    c.send(&listening);
    let challenge = c.expect_line("a challenge");
    assert!(challenge.starts_with("<challenge nonce=\""), "{challenge}");
    // A proof made with eve's key, over the right nonce.
    c.send(&prove_line(&eve, &challenge, &listening));
    let e = c.expect_line("an error");
    assert_eq!(
        e,
        "<error>prove: the signature does not match the key in listening</error>",
        "{}",
        dump()
    );
    // A proof for an earlier challenge (no challenge is pending now).
    c.send(&prove_line(&eve, &challenge, &listening));
    assert!(c.expect_line("an error").contains("no challenge to answer"));
    // alice is still listed where she was, and nobody was told she left.
    thread::sleep(Duration::from_millis(300));
    let now = listed(m.port);
    let still = now
        .iter()
        .find(|p| p.name.as_deref() == Some("alice"))
        .cloned();
    assert_eq!(
        still.map(|p| (p.port, p.id)),
        Some((entry.port, entry.id)),
        "{}",
        dump()
    );
    assert_eq!(bob.proc.count_log("peer left: alice"), 0, "{}", dump());
    // A registration that proves its own key is listed, as before.
    let mut honest = Raw::connect(m.port);
    register_with(&mut honest, &eve, 4243, "eve");
    bob.wait_knows(&["eve"]);
}

#[test]
fn escape_sequences_from_servants_and_telnet_are_shown_as_escapes() {
    let dir = TestDir::new("attack-escapes");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let bob = start_servant(&dir, "bob", m.port, "");
    let nasty = "\u{1b}[2J\u{1b}]0;owned\u{7}ab\u{202e}dc\u{85}";
    let shown = "\\x1b[2J\\x1b]0;owned\\x07ab\\u{202e}dc\\x85";
    let mut raw = RawPeer::connect(bob.port, Arc::new(new_identity()), "mallory");
    raw.say(1, nasty);
    bob.wait_heard("mallory", shown);
    let mut telnet = Raw::connect(bob.port);
    telnet.send(nasty);
    let from = format!("<127.0.0.1:{}> {shown}", telnet.local_port());
    bob.proc.wait_stdout("the telnet line", |l| l == from);
    // Nothing dangerous reached standard output or the log.
    let all: Vec<String> = bob
        .proc
        .stdout()
        .into_iter()
        .chain(bob.proc.stderr())
        .collect();
    for l in &all {
        assert!(
            !l.chars().any(genp2p::escape::needs_escape),
            "raw control in {l:?}\n{}",
            dump()
        );
    }
    // A name with a bidirectional control is refused outright (manager and servant).
    let mut c = Raw::connect(m.port);
    let me = new_identity();
    c.send(&format!(
        "listening 4000 {} ev\u{202e}e {}",
        me.id,
        me.key.hex()
    ));
    assert!(
        c.expect_line("an error")
            .starts_with("<error>listening: name "),
        "{}",
        dump()
    );
}

#[test]
fn telnet_text_is_never_shown_under_a_servants_name() {
    let dir = TestDir::new("attack-telnet-msg");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    let [alice, bob] = &mut s[..] else {
        unreachable!()
    };
    let eve = Fake::start(m.port, "eve");
    alice.wait_knows(&["eve"]);
    alice.proc.send("genuine");
    let genuine = eve.wait_line("alice's line", |l| l.ends_with(" genuine"));
    bob.wait_heard("alice", "genuine");
    // A genuine signed line typed as the first line of a plain connection is plain text.
    let mut telnet = Raw::connect(bob.port);
    telnet.send(&genuine);
    let from = format!("<127.0.0.1:{}> {genuine}", telnet.local_port());
    bob.proc
        .wait_stdout("the line as plain text", |l| l == from);
    assert_eq!(bob.heard_from("alice"), vec!["genuine"], "{}", dump());
}

#[test]
fn a_restarted_servant_keeps_its_id_and_its_first_line_is_shown() {
    let dir = TestDir::new("attack-restart");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let bob = start_servant(&dir, "bob", m.port, "");
    let mut alice = start_servant(&dir, "alice", m.port, "");
    alice.wait_knows(&["bob"]);
    let id = alice.id.clone();
    for t in ["one", "two", "three"] {
        alice.proc.send(t);
    }
    bob.wait_heard("alice", "three");
    drop(alice);
    let mut alice = start_servant(&dir, "alice", m.port, "");
    assert_eq!(alice.id, id, "{}", dump());
    alice.wait_knows(&["bob"]);
    alice.proc.send("back again");
    bob.wait_heard("alice", "back again");
    assert_eq!(
        bob.heard_from("alice"),
        vec!["one", "two", "three", "back again"],
        "{}",
        dump()
    );
    assert_eq!(bob.proc.count_log("duplicate"), 0, "{}", dump());
}

#[test]
fn a_changed_key_is_warned_about_and_marked_until_trusted() {
    let dir = TestDir::new("attack-key-changed");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut bob = start_servant(&dir, "bob", m.port, "");
    let mut alice = start_servant(&dir, "alice", m.port, "");
    let old_id = alice.id.clone();
    alice.proc.send("hello");
    bob.wait_heard("alice", "hello");
    drop(alice);
    // Someone else calls herself alice: another key (the old key file is gone).
    std::fs::remove_file(dir.path.join("alice.key")).expect("remove alice's key");
    let mut alice = start_servant(&dir, "alice", m.port, "");
    assert_ne!(alice.id, old_id);
    let warning = bob.proc.wait_stdout("the key-changed warning", |l| {
        l.starts_with("*** the key of alice has changed")
    });
    assert!(
        warning.contains(&format!("pinned {old_id}"))
            && warning.contains(&format!("now {}", alice.id)),
        "{warning}"
    );
    alice.wait_knows(&["bob"]);
    alice.proc.send("trust me");
    bob.wait_heard("alice (key changed)", "trust me");
    // /peers says so too.
    bob.proc.send("/peers");
    bob.proc.wait_stdout("alice's /peers row", |l| {
        l.contains("KEY CHANGED") && l.contains(&alice.id)
    });
    // The known-peers file still pins the old key until /trust.
    let known = dir.path.join("bob.known");
    let pinned = wait_for("bob.known to pin alice", || {
        let text = std::fs::read_to_string(&known).unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("alice "))
            .map(str::to_owned)
    });
    let old_key = listed(m.port); // alice's new key is listed; the pin is the old one.
    let new_key = old_key
        .iter()
        .find(|p| p.name.as_deref() == Some("alice"))
        .and_then(|p| p.id.clone())
        .unwrap_or_default();
    assert_eq!(new_key, alice.id);
    assert!(!pinned.is_empty(), "{pinned}");
    bob.proc.send("/trust alice");
    bob.proc.wait_stdout("the answer to /trust", |l| {
        l.starts_with("trusted the new key of alice")
    });
    alice.proc.send("trusted now");
    bob.wait_heard("alice", "trusted now");
    assert_eq!(
        bob.proc.count_log("the key of alice has changed"),
        1,
        "warned once\n{}",
        dump()
    );
    // The file now pins the new key.
    wait_for("bob.known to pin alice's new key", || {
        let text = std::fs::read_to_string(&known).unwrap_or_default();
        (text != format!("{pinned}\n") && !text.contains(&pinned)).then_some(())
    });
    let _ = &mut bob;
}
