//! Attacks on identity and chat, tried the way someone on the same LAN would: with plain
//! sockets and docs/PROTOCOL.md. Each test names the attack; each checks that it fails
//! and that the servant attacked keeps serving everyone else.
//!
//! `Fake` is a hand-written servant with a key of its own: listed by the manager, it
//! receives real servants' signed lines (so it holds genuine lines to replay or alter)
//! and can be chosen as a relay (so it can try to rewrite what it carries).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use genp2p::handshake::{Answered, Mode};
use genp2p::protocol::{split_tag, MsgRef, PeerLine};

/// A hand-written servant: listed, heartbeating, and answering handshakes honestly.
struct Fake {
    me: Arc<Identity>,
    port: u16,
    /// Untagged lines received on sending connections, in order.
    received: Arc<Mutex<Vec<String>>>,
    /// Relay connections that have said `END`: written to by the test.
    pullers: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    manager: TcpStream,
}

impl Fake {
    fn start(manager_port: u16, name: &str) -> Fake {
        Fake::start_at(std::net::Ipv4Addr::LOCALHOST, manager_port, name)
    }

    /// A fake servant at loopback address `at`: it listens there and registers from there.
    fn start_at(at: std::net::Ipv4Addr, manager_port: u16, name: &str) -> Fake {
        Fake::start_with(at, manager_port, name, false)
    }

    /// A fake servant that answers every sending connection with hostile `SAID`s (see
    /// `lie_in_said`).
    fn start_lying(manager_port: u16, name: &str) -> Fake {
        Fake::start_with(std::net::Ipv4Addr::LOCALHOST, manager_port, name, true)
    }

    fn start_with(at: std::net::Ipv4Addr, manager_port: u16, name: &str, lies: bool) -> Fake {
        let me = Arc::new(new_identity());
        let listener = TcpListener::bind((at, 0)).expect("bind a loopback address");
        let port = listener.local_addr().expect("local address").port();
        let (received, pullers, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        {
            let (me, received, pullers, stop) =
                (me.clone(), received.clone(), pullers.clone(), stop.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (me, received, pullers) = (me.clone(), received.clone(), pullers.clone());
                    thread::spawn(move || serve(conn, &me, &received, &pullers, lies));
                }
            });
        }
        let mut m = Raw::connect_from(at, manager_port);
        register_with(&mut m, &me, port, name);
        let manager = m.stream.try_clone().expect("clone the manager connection");
        {
            let stop = stop.clone();
            thread::spawn(move || {
                // Heartbeats, and the manager's pushes drained.
                let mut s = m.stream;
                let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if s.write_all(b"needs peer list\n").is_err() {
                        return;
                    }
                    let _ = std::io::Read::read(&mut s, &mut buf);
                }
            });
        }
        Fake {
            me,
            port,
            received,
            pullers,
            stop,
            manager,
        }
    }

    /// Waits for the first received line that satisfies `pred`.
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(what, || {
            let got = self.received.lock().unwrap_or_else(|p| p.into_inner());
            got.iter().find(|l| pred(l)).cloned()
        })
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.manager.shutdown(Shutdown::Both);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for p in self
            .pullers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = p.shutdown(Shutdown::Both);
        }
    }
}

/// One connection to a `Fake`: the listener's handshake, then lines (a sending
/// connection) or the catch-up lines up to `END` (a relay connection).
fn serve(
    conn: TcpStream,
    me: &Identity,
    received: &Mutex<Vec<String>>,
    pullers: &Mutex<Vec<TcpStream>>,
    lies: bool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut w) = conn.try_clone() else { return };
    let mut lines = BufReader::new(conn).lines();
    let Some(Ok(first)) = lines.next() else {
        return;
    };
    let (mode, hello) = match PeerLine::parse(&first) {
        Some(Ok(PeerLine::Hello(h))) => (Mode::Send, h),
        Some(Ok(PeerLine::Pull(h))) => (Mode::Pull, h),
        _ => return,
    };
    let Ok((answered, welcome)) = Answered::new(me, &first, &hello, None) else {
        return;
    };
    if w.write_all(welcome.as_bytes()).is_err() {
        return;
    }
    let Some(Ok(proof)) = lines.next() else {
        return;
    };
    let Some(Ok(PeerLine::Proof(proof))) = PeerLine::parse(&proof) else {
        return;
    };
    let Ok(link) = answered.finish(&proof, None) else {
        return;
    };
    if w.write_all(b"READY 0\n").is_err() {
        return;
    }
    if lies && mode == Mode::Send {
        lie_in_said(&mut w, me, &link);
    }
    let mut claimed = 999;
    while let Some(Ok(line)) = lines.next() {
        // A liar answers every line (a `PING` too) with a larger number it never wrote.
        if lies && mode == Mode::Send {
            claimed += 1;
            let lie = format!("SAID {} {claimed}\n", me.incarnation);
            let _ = w.write_all(&link.tags.tagged(&lie));
        }
        match mode {
            // Several lines under one tag: `BLOCK TAG COUNT`, then the lines.
            Mode::Send if line.starts_with("BLOCK ") => {
                let w: Vec<&str> = line.split(' ').collect();
                let (Some(tag), Some(Ok(count))) = (w.get(1), w.get(2).map(|c| c.parse::<usize>()))
                else {
                    return;
                };
                let mut block = String::new();
                for _ in 0..count {
                    let Some(Ok(l)) = lines.next() else { return };
                    block.push_str(&l);
                    block.push('\n');
                }
                if genp2p::encoding::hex(&link.tags.block(block.as_bytes())) == *tag {
                    let mut got = received.lock().unwrap_or_else(|p| p.into_inner());
                    got.extend(block.lines().map(str::to_owned));
                }
            }
            Mode::Send => {
                if let Some((tag, rest)) = split_tag(&line) {
                    if link.tags.checks(&tag, rest.as_bytes()) {
                        received
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(rest.to_owned());
                    }
                }
            }
            Mode::Pull if line == "END" => {
                pullers.lock().unwrap_or_else(|p| p.into_inner()).push(w);
                return;
            }
            Mode::Pull => {}
            // This listener never took a LINK (see the parse above).
            Mode::Link(_) => return,
        }
    }
}

/// What a hostile listener writes back to a sender at once: a correctly tagged lie (that
/// it wrote 999 lines, none of which it ever sent anyone), a `SAID` under a wrong tag,
/// 300 KB without a line end, 10,000 lines of junk. Then it lies on (see `serve`).
fn lie_in_said(w: &mut TcpStream, me: &Identity, link: &genp2p::handshake::Link) {
    let inc = me.incarnation;
    let _ = w.write_all(&link.tags.tagged(&format!("SAID {inc} 999\n")));
    let forged = format!("{} SAID {inc} 1999\n", "0".repeat(32));
    let _ = w.write_all(forged.as_bytes());
    let _ = w.write_all(&vec![b'x'; 300_000]);
    let _ = w.write_all("junk\n".repeat(10_000).as_bytes());
}

/// A line rewritten: the same `MSG` with other text.
fn with_text(line: &str, text: &str) -> String {
    let m = MsgRef::parse(line)
        .expect("a MSG line")
        .expect("a valid MSG");
    let cut = line.len() - m.text.len();
    format!("{}{text}", &line[..cut])
}

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

/// A manager, eve (a `Fake`, registered first so she is the relay the manager picks),
/// alice (a servant) and hidden (firewalled: it pulls from eve once started).
struct EveRelays {
    m: Manager,
    eve: Fake,
    alice: Servant,
    hidden: Servant,
    /// Last, so it is removed after every process has stopped.
    _dir: TestDir,
}

/// Starts `hidden`, a servant that tells the manager a port where nothing listens (it is
/// behind a firewall to everyone), and waits until the manager makes `relay` its relay.
fn start_hidden(dir: &TestDir, m: &Manager, relay: &str) -> Servant {
    let hidden_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hidden = start_servant(
        dir,
        "hidden",
        m.port,
        &format!("<publicport>{hidden_port}</publicport>"),
    );
    m.proc.wait_stderr("hidden's relay", |l| {
        l.contains("hidden (slot ") && l.contains(&format!(" pulls from {relay}"))
    });
    hidden
}

impl EveRelays {
    fn start(test: &str) -> EveRelays {
        let dir = TestDir::new(test);
        let m = start_manager(&dir, "<timeout>1.5</timeout><trustafter>0.3</trustafter>");
        let eve = Fake::start(m.port, "eve");
        let alice = start_servant(&dir, "alice", m.port, "");
        alice.wait_knows(&["eve"]);
        let hidden = start_hidden(&dir, &m, "eve");
        EveRelays {
            m,
            eve,
            alice,
            hidden,
            _dir: dir,
        }
    }
}

#[test]
fn a_relay_that_alters_a_line_gets_it_dropped_and_the_rest_arrive() {
    // Bound first, so the folder is dropped last.
    let EveRelays {
        _dir,
        m: _m,
        eve,
        mut alice,
        hidden,
    } = EveRelays::start("attack-relay");
    let puller = wait_for("hidden to pull from eve", || {
        eve.pullers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .and_then(|s| s.try_clone().ok())
    });
    // Typed at once, the three are signed together (one signature, a path each).
    alice.proc.send_bytes(b"first\nsecond\nthird\n");
    let lines: Vec<String> = ["first", "second", "third"]
        .iter()
        .map(|t| eve.wait_line("alice's line", |l| l.ends_with(&format!(" {t}"))))
        .collect();
    let batched = |l: &String| {
        MsgRef::parse(l)
            .and_then(Result::ok)
            .is_some_and(|m| m.auth().is_ok_and(|(_, b)| b.is_some()))
    };
    assert!(lines.iter().all(batched), "{lines:?}");
    // eve passes them on, the second rewritten, and a line she invents as alice.
    let mut w = puller;
    let invented =
        signed_msg(&eve.me, 1, 99, "alice", "invented").replacen(&eve.me.id, &alice.id, 1);
    for l in [
        lines[0].clone(),
        with_text(&lines[1], "altered"),
        invented,
        lines[1].clone(),
        lines[2].clone(),
    ] {
        w.write_all(format!("{l}\n").as_bytes())
            .expect("write to the puller");
    }
    hidden.wait_heard("alice", "third");
    assert_eq!(
        hidden.heard_from("alice"),
        vec!["first", "second", "third"],
        "{}",
        dump()
    );
    hidden
        .proc
        .wait_log("whose signature does not verify; dropped");
}

#[test]
fn with_a_network_key_only_servants_that_prove_it_are_listed_and_accepted() {
    let dir = TestDir::new("attack-network-key");
    let key = dir.path.join("net.key");
    let mut make = Proc::spawn(
        "make-key",
        SERVANT_BIN,
        &["--new-network-key".into(), key.clone().into()],
        "info",
        &dir.path,
    );
    assert!(make.wait_exit().success(), "{}", dump());
    let net = format!("<networkkey>{}</networkkey>", key.display());
    let m = start_manager(&dir, &format!("{MANAGER_DEFAULTS}{net}"));
    let mut s: Vec<Servant> = ["alice", "bob"]
        .iter()
        .map(|n| start_servant(&dir, n, m.port, &net))
        .collect();
    wait_mesh(&s);
    s[0].proc.send("inside");
    s[1].wait_heard("alice", "inside");
    // A servant without the key is not listed.
    let outsider = spawn_servant(
        &dir,
        "outsider",
        &servant_config("outsider", m.port, Some(0), ""),
        &[],
        "info",
    );
    outsider.wait_log("this network has a key, and no proof of it was given");
    assert_eq!(listed_names(m.port), vec!["alice", "bob"], "{}", dump());
    // A raw client without it cannot open a link to a servant.
    let me = new_identity();
    let mut raw = Raw::connect(s[1].port);
    let (opening, hello) = genp2p::handshake::Opening::new(&me, "raw", Mode::Send).unwrap();
    raw.send_bytes(hello.as_bytes());
    let welcome = raw.expect_line("WELCOME");
    let Some(Ok(PeerLine::Welcome(w))) = PeerLine::parse(&welcome) else {
        fail(&welcome)
    };
    assert!(w.net.is_some(), "bob proves the network key: {welcome}");
    // Without the key, the raw client cannot check bob's proof, and bob refuses its PROOF.
    let (_, proof) = opening.finish(&me, &w, None, None).unwrap();
    raw.send_bytes(proof.as_bytes());
    assert_eq!(raw.read_line(WAIT), Got::Closed, "{}", dump());
    s[1].proc
        .wait_log("proves no network key, and this network has one");
}

#[test]
fn a_block_of_lines_is_taken_whole_or_not_at_all() {
    let dir = TestDir::new("attack-block");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let bob = start_servant(&dir, "bob", m.port, "");
    let mut raw = RawPeer::connect(bob.port, Arc::new(new_identity()), "writer");
    raw.send_block(&[raw.msg(1, "one"), raw.msg(2, "two")]);
    bob.wait_heard("writer", "two");
    // A block whose second line was changed after its tag was made: none of it is shown.
    let (three, four) = (raw.msg(3, "three"), raw.msg(4, "four"));
    let mut block = format!("{three}\n{four}\n");
    let tag = genp2p::encoding::hex(&raw.link.tags.block(block.as_bytes()));
    block = block.replace(" four", " FOUR");
    raw.raw
        .send_bytes(format!("BLOCK {tag} 2\n{block}").as_bytes());
    // Blocks of a bad size, or a single line's tag used for a block, are refused too.
    raw.raw.send(&format!("BLOCK {tag} 65"));
    let line_tag = genp2p::encoding::hex(&raw.link.tags.tag(three.as_bytes()));
    raw.raw
        .send_bytes(format!("BLOCK {line_tag} 2\n{three}\n{four}\n").as_bytes());
    bob.proc
        .wait_log("a BLOCK whose tag does not match; dropped");
    raw.say(5, "five");
    bob.wait_heard("writer", "five");
    assert_eq!(
        bob.heard_from("writer"),
        vec!["one", "two", "five"],
        "{}",
        dump()
    );
}

#[test]
fn pull_is_served_only_to_a_servant_the_manager_assigned() {
    let dir = TestDir::new("attack-pull");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    s[1].proc.send("said before eve came");
    s[0].wait_heard("bob", "said before eve came");
    // eve proves a key of her own (even a listed one) and asks alice for everything.
    let eve = Fake::start(m.port, "eve");
    s[0].wait_knows(&["eve"]);
    let mut raw = Raw::connect(s[0].port);
    raw_handshake(&mut raw, &eve.me, "eve", Mode::Pull);
    // (The relay may have closed already: the write's result does not matter.)
    let _ = raw.stream.write_all(b"SINCE 86400000\nEND\n");
    s[1].proc.send("said while eve listens");
    s[0].wait_heard("bob", "said while eve listens");
    let got = raw.read_line(Duration::from_secs(1));
    assert_eq!(
        got,
        Got::Closed,
        "nothing relayed to eve: {got:?}\n{}",
        dump()
    );
    s[0].proc.wait_log("refused PULL from eve (");
}

#[test]
fn a_ban_on_an_address_drops_its_servants_lines_through_a_relay_and_from_elsewhere() {
    // alice is firewalled and pulls from bob; she bans 127.0.0.5, where mallory is listed.
    let dir = TestDir::new("attack-ban-author");
    let m = start_manager(&dir, "<timeout>1.5</timeout><trustafter>0.3</trustafter>");
    let mut bob = start_servant(&dir, "bob", m.port, "");
    let banned = std::net::Ipv4Addr::new(127, 0, 0, 5);
    let mallory = Fake::start_at(banned, m.port, "mallory");
    let hidden_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let extra = format!(
        "<publicport>{hidden_port}</publicport><bans><ban><target>{banned}</target></ban></bans>"
    );
    let mut alice = Servant::joined(
        spawn_servant(
            &dir,
            "alice",
            &servant_config("alice", m.port, Some(0), &extra),
            &[],
            "info",
        ),
        "alice",
    );
    // The port alice really listens on (the OS chose it; she tells the manager another).
    let real_port: u16 = {
        let line = alice.proc.wait_log("; telling the manager ");
        let rest = line
            .split("listening on port ")
            .nth(1)
            .expect("the port in the log");
        rest.split(';')
            .next()
            .unwrap()
            .trim()
            .parse()
            .expect("a port number")
    };
    m.proc.wait_stderr("alice's relay", |l| {
        l.contains("alice (slot ") && l.contains(" pulls from bob")
    });
    bob.wait_knows(&["mallory"]);
    alice.wait_knows(&["bob", "mallory"]);
    bob.proc.send("through the relay");
    alice.wait_heard("bob", "through the relay");
    // mallory speaks to bob, who passes it on to alice, and to alice herself from an
    // address that is not banned.
    let mut to_bob = RawPeer::connect(bob.port, mallory.me.clone(), "mallory");
    to_bob.say(1, "relayed-from-banned-host");
    bob.wait_heard("mallory", "relayed-from-banned-host");
    let mut to_alice = RawPeer::connect(real_port, mallory.me.clone(), "mallory");
    to_alice.say(2, "direct-from-elsewhere");
    alice.proc.wait_log("listed at a banned address");
    bob.proc.send("after mallory");
    alice.wait_heard("bob", "after mallory");
    assert!(alice.heard_from("mallory").is_empty(), "{}", dump());
    alice.proc.send("/bans");
    alice.proc.wait_stdout("the count in /bans", |l| {
        l.contains("1 servant(s) listed at banned addresses; 2 line(s) by them dropped")
    });
}

#[test]
fn a_relay_that_passes_on_nothing_is_given_up_for_another() {
    // eve passes on nothing.
    let EveRelays {
        _dir,
        m,
        eve,
        mut alice,
        hidden,
    } = EveRelays::start("attack-silent-relay");
    hidden.wait_knows(&["alice"]);
    alice.proc.send("through a relay that keeps it");
    // hidden says nothing: while relayed, its idle sender to alice pings every 5 s, and
    // alice answers with her `SAID`: she wrote line 1, and eve never brings it.
    eve.wait_line("alice's line", |l| {
        l.ends_with(" through a relay that keeps it")
    });
    // Within a ping and the sender reading SAID (5 s each), `relay_watch::GRACE` (15 s)
    // and the core's look around (5 s).
    try_wait_for(Duration::from_secs(45), || {
        (hidden
            .proc
            .count_log("our relay eve has not passed on line 1 of alice")
            > 0)
        .then_some(())
    })
    .unwrap_or_else(|| fail(&format!("hidden never gave eve up\n{}", dump())));
    m.proc
        .wait_log("hidden (slot 3) gave up its relay eve (slot 1); finding another");
    m.proc.wait_stderr("hidden's new relay", |l| {
        l.contains("hidden (slot 3) pulls from alice")
    });
    hidden.wait_heard("alice", "through a relay that keeps it");
    drop(eve);
}

#[test]
fn fresh_keys_by_the_thousand_are_forgotten_and_a_forgotten_author_is_heard_again() {
    // 5,200 handshakes, each with a new key and one line: more authors than a servant
    // remembers beyond its list (4,096). The first of them, forgotten by then, speaks
    // again on its own link: its next line is shown, not taken for a duplicate.
    let dir = TestDir::new("attack-fresh-keys");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "");
    let first = Arc::new(new_identity());
    let mut p = RawPeer::connect(alice.port, first.clone(), "first");
    p.say(1, "the first stranger");
    alice.wait_heard("first", "the first stranger");
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let port = alice.port;
            thread::spawn(move || {
                for k in 0..2600 {
                    let mut q =
                        RawPeer::connect(port, Arc::new(new_identity()), &format!("s{w}x{k}"));
                    q.say(1, "hi");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker");
    }
    alice
        .proc
        .wait_log("authors that are not listed are remembered at most");
    p.say(2, "still here");
    alice.wait_heard("first", "still here");
    assert_eq!(
        alice.heard_from("first"),
        vec!["the first stranger", "still here"],
        "{}",
        dump()
    );
}

#[test]
fn hostile_said_lines_cannot_make_a_servant_give_up_a_good_relay() {
    // hidden pulls from alice, an honest relay. eve, one of the servants hidden sends to,
    // answers with forged, huge, flooding and lying `SAID`s; one peer's word is not enough
    // while another (bob) can be asked, and bob's lines do come through alice.
    let dir = TestDir::new("attack-said");
    let m = start_manager(&dir, "<timeout>1.5</timeout><trustafter>0.3</trustafter>");
    let mut alice = start_servant(&dir, "alice", m.port, "");
    let mut bob = start_servant(&dir, "bob", m.port, "");
    let eve = Fake::start_lying(m.port, "eve");
    alice.wait_knows(&["bob", "eve"]);
    let mut hidden = start_hidden(&dir, &m, "alice");
    hidden.wait_knows(&["bob", "eve"]);
    bob.proc.send("bob through alice");
    hidden.wait_heard("bob", "bob through alice");
    // Past the grace, a ping, a read of SAID and a look around, hidden still pulls from
    // alice, and its own lines still reach eve through the flood.
    std::thread::sleep(Duration::from_secs(30));
    hidden.proc.send("hidden after the flood");
    eve.wait_line("hidden's line", |l| l.ends_with(" hidden after the flood"));
    alice.wait_heard("hidden", "hidden after the flood");
    assert_eq!(
        hidden.proc.count_log("has not passed on line"),
        0,
        "{}",
        dump()
    );
    assert_eq!(m.proc.count_log("gave up its relay"), 0, "{}", dump());
    alice.proc.send("alice still relays");
    hidden.wait_heard("alice", "alice still relays");
    let _ = &mut bob;
}
