//! Complaints and relays against an attacker on the LAN: a few newcomers that say
//! `listening` on ports they really listen on (so the dial-back reaches them) and then
//! complain must not get a servant cut off, nor become its relay.
//!
//! Attackers are raw clients bound to other 127.0.0.x addresses, so the manager sees them
//! come from several hosts.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use common::*;

/// A raw client at `from`, listed as `name`: it listens there (so the manager's dial-back
/// reaches it) and has proved a fresh key. The listener must be kept while it is used.
fn listed_raw(from: Ipv4Addr, manager_port: u16, name: &str) -> (Raw, TcpListener, Identity) {
    let held = TcpListener::bind((from, 0)).expect("bind a loopback address");
    let port = held.local_addr().expect("local address").port();
    let me = new_identity();
    let mut raw = Raw::connect_from(from, manager_port);
    register_with(&mut raw, &me, port, name);
    (raw, held, me)
}

/// Three attackers at three addresses, each complaining `times` times about `id`.
fn complain_from_three(manager_port: u16, id: &str, wait: Duration) -> Vec<(Raw, TcpListener)> {
    let mut attackers: Vec<(Raw, TcpListener)> = (5..8)
        .map(|k| {
            let (raw, held, _) = listed_raw(
                Ipv4Addr::new(127, 0, 0, k),
                manager_port,
                &format!("fake{k}"),
            );
            (raw, held)
        })
        .collect();
    std::thread::sleep(wait);
    for (raw, _) in &mut attackers {
        for _ in 0..3 {
            raw.send(&format!("complain {id}"));
        }
    }
    // Each still answered: every complaint has been judged.
    for (raw, _) in &mut attackers {
        raw.send("needs peer list");
        raw.expect_line_where("the peer list", |l| l.starts_with("<peers"));
    }
    attackers
}

#[test]
fn newcomers_complaining_together_cannot_cut_a_servant_off() {
    let dir = TestDir::new("trust-newcomers");
    // The default time a complainer must be listed (30 s); the dial-back off, so only the
    // time protects alice here.
    let m = start_manager(&dir, "<timeout>1.5</timeout><probe>false</probe>");
    let s = start_mesh(&dir, m.port, &["alice", "bob"]);
    let _attackers = complain_from_three(m.port, &s[0].id, Duration::ZERO);
    // Logged once a minute per complainer: a client may send them as fast as it likes.
    assert_eq!(
        m.proc
            .count_log("from fake5 (slot 3) not counted: listed for less than 30 s"),
        1,
        "{}",
        dump()
    );
    assert_eq!(m.proc.count_log("not counted"), 3, "{}", dump());
    assert_eq!(m.proc.count_log("is unreachable"), 0, "{}", dump());
}

#[test]
fn complaints_about_a_servant_the_manager_reached_change_nothing() {
    let dir = TestDir::new("trust-dialed-back");
    let m = start_manager(&dir, "<timeout>1.5</timeout><trustafter>0.3</trustafter>");
    let s = start_mesh(&dir, m.port, &["alice", "bob"]);
    let _attackers = complain_from_three(m.port, &s[0].id, Duration::from_millis(400));
    assert_eq!(
        m.proc
            .count_log("not counted: the manager reached it, so it stays direct"),
        3, // one per complainer: logged once a minute each
        "{}",
        dump()
    );
    assert_eq!(m.proc.count_log("is unreachable"), 0, "{}", dump());
}

#[test]
fn backers_listed_at_one_address_cannot_condemn() {
    let dir = TestDir::new("trust-one-address");
    let m = start_manager(
        &dir,
        "<timeout>1.5</timeout><probe>false</probe><trustafter>0.3</trustafter>",
    );
    let s = start_mesh(&dir, m.port, &["alice", "bob"]);
    let at = Ipv4Addr::new(127, 0, 0, 5);
    let mut attackers: Vec<(Raw, TcpListener, Identity)> = (0..3)
        .map(|k| listed_raw(at, m.port, &format!("fake{k}")))
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    for (raw, _, _) in &mut attackers {
        for _ in 0..3 {
            raw.send(&format!("complain {}", s[0].id));
        }
        raw.send("needs peer list");
        raw.expect_line_where("the peer list", |l| l.starts_with("<peers"));
    }
    m.proc.wait_stderr("the last complaint judged", |l| {
        l.contains("3 of 3 needed peers back it, from 1 of 2 needed addresses")
    });
    assert_eq!(m.proc.count_log("is unreachable"), 0, "{}", dump());
}

/// A port where nothing listens.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// Registers a raw client that says it listens where nothing does: the dial-back fails
/// and it is sent a `<pull>`; returns the client and the name in that `<pull>`.
fn hidden_raw(manager_port: u16, name: &str) -> (Raw, String) {
    let me = new_identity();
    let mut raw = Raw::connect(manager_port);
    register_with(&mut raw, &me, dead_port(), name);
    let pull = raw.expect_line_where("a <pull>", |l| l.starts_with("<pull>"));
    (raw, relay_name(&pull))
}

fn relay_name(pull: &str) -> String {
    pull.split("<name>")
        .nth(1)
        .and_then(|r| r.split("</name>").next())
        .unwrap_or_else(|| fail(&format!("no name in {pull:?}")))
        .to_owned()
}

#[test]
fn a_newcomer_is_never_chosen_as_relay() {
    let dir = TestDir::new("trust-relay-newcomer");
    let m = start_manager(&dir, "<timeout>1.5</timeout><trustafter>1</trustafter>");
    let bob = start_servant(&dir, "bob", m.port, "");
    std::thread::sleep(Duration::from_millis(1200));
    // bob relays to one already; eve, just listed, relays to none: on load alone she
    // would be chosen.
    let (_first, relay) = hidden_raw(m.port, "first");
    assert_eq!(relay, "bob");
    let (_eve, _held, _) = listed_raw(Ipv4Addr::new(127, 0, 0, 5), m.port, "eve");
    let (_second, relay) = hidden_raw(m.port, "second");
    assert_eq!(relay, "bob", "{}", dump());
    drop(bob);
}

#[test]
fn a_relayed_servant_can_give_its_relay_up_and_never_gets_it_again() {
    let dir = TestDir::new("trust-replace-relay");
    let m = start_manager(&dir, "<timeout>1.5</timeout><trustafter>0.3</trustafter>");
    let _s = start_mesh(&dir, m.port, &["alice", "bob"]);
    std::thread::sleep(Duration::from_millis(400));
    let (mut hidden, first) = hidden_raw(m.port, "hidden");
    hidden.send("replace relay");
    let second =
        relay_name(&hidden.expect_line_where("another <pull>", |l| l.starts_with("<pull>")));
    assert_ne!(first, second, "{}", dump());
    // Asked again at once, and in a flood: refused, and nothing is pushed to anyone.
    for _ in 0..100 {
        hidden.send("replace relay");
    }
    for _ in 0..100 {
        assert_eq!(
            hidden.expect_line_where("the refusal", |l| l.starts_with("<error>")),
            "<error>replace relay: asked again within 10 s</error>"
        );
    }
    assert_eq!(m.proc.count_log("gave up its relay"), 1, "{}", dump());
    // 10 s later (heartbeating meanwhile), given up too: no third to be had, so it keeps
    // the second.
    for _ in 0..21 {
        hidden.send("needs peer list");
        std::thread::sleep(Duration::from_millis(500));
    }
    hidden.send("replace relay");
    m.proc
        .wait_log(&format!("gave up its relay {second} (slot "));
    m.proc.wait_log("but no other can be trusted: it keeps it");
    // A servant that is not relayed cannot ask.
    let (mut plain, _held, _) = listed_raw(Ipv4Addr::new(127, 0, 0, 5), m.port, "plain");
    plain.send("replace relay");
    assert_eq!(
        plain.expect_line_where("an error", |l| l.starts_with("<error>")),
        "<error>replace relay: this servant is not relayed</error>"
    );
    // Nor can a client that is not listed at all.
    let mut stranger = Raw::connect(m.port);
    stranger.send("replace relay");
    assert_eq!(
        stranger.expect_line_where("an error", |l| l.starts_with("<error>")),
        "<error>replace relay: only a listed servant may ask</error>"
    );
}
