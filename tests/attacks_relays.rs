//! Attacks through relays, tried the way someone on the same LAN would: a relay that alters
//! what it carries, passes on nothing, or is fed hostile `SAID` lines; a `PULL` nobody
//! assigned; a ban that must hold through a relay; a network key; blocks of lines taken
//! whole or not at all; a flood of fresh keys. Each test names the attack; each checks that
//! it fails and that the servant attacked keeps serving everyone else. `Fake` (tests/fake)
//! plays the attacker.

mod common;
mod fake;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use fake::*;
use genp2p::handshake::Mode;
use genp2p::protocol::{MsgRef, PeerLine};

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
