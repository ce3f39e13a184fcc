//! Caps on connections: the manager and a servant's listening port hold at most
//! `<maxperaddress>` connections from one address and `<maxconnections>` in all; the one
//! over a cap is told why (the manager) or closed at once (a servant), places come back
//! when connections close, other addresses are still served, and refusals are logged once
//! per source, not once per attempt. And a crowd of idle and garbage-sending connections,
//! once closed, leaves the thread count and memory where they started.
//!
//! Clients from other addresses bind their sockets to 127.0.0.2 (and so on) before they
//! connect (`Raw::connect_from`); every 127.0.0.x address is on the loopback interface.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;

const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How long a held connection is watched to show that it stays open.
const HELD: Duration = Duration::from_millis(200);

/// Asks for the list and checks that a `<peers>` document answers.
fn served(c: &mut Raw, who: &str) {
    c.send("needs peer list");
    let line = c.expect_line(&format!("the peer list, for {who}"));
    if let Err(e) = parse_peers(&line, "peers") {
        fail(&format!("{who}: {e}"));
    }
}

/// Reads a refused client's last words: exactly `refusal`, then the end of the connection.
fn refused_with(c: &mut Raw, refusal: &str) {
    assert_eq!(
        c.read_line(WAIT),
        Got::Line(refusal.to_owned()),
        "the refusal line\n{}",
        dump()
    );
    assert_eq!(
        c.read_line(WAIT),
        Got::Closed,
        "closed after the refusal\n{}",
        dump()
    );
}

/// Waits until a new client from 127.0.0.1 is admitted again (a place freed by a closed
/// connection comes back once the manager has noticed the close). A client still refused
/// answers `needs peer list` with the refusal, or with nothing but the close.
fn manager_admits_again(port: u16) {
    wait_for("a place to come free at the manager", || {
        let mut c = Raw::connect(port);
        c.send("needs peer list");
        match c.read_line(WAIT) {
            Got::Line(l) if l.starts_with("<peers") => Some(()),
            Got::Line(l) if l.starts_with("<error>manager ") => None,
            Got::Closed => None,
            other => fail(&format!("unexpected answer {other:?}")),
        }
    });
}

#[test]
fn manager_holds_at_most_maxperaddress_from_one_address() {
    let dir = TestDir::new("cap-per-address");
    let m = start_manager(
        &dir,
        &format!("{MANAGER_DEFAULTS}<maxperaddress>3</maxperaddress>"),
    );
    // Three idle connections: held (the fourth's refusal shows they were counted).
    let mut held: Vec<Raw> = (0..3).map(|_| Raw::connect(m.port)).collect();
    let mut fourth = Raw::connect(m.port);
    refused_with(
        &mut fourth,
        "<error>manager too many connections from 127.0.0.1 (at most 3)</error>",
    );
    for h in &mut held {
        assert_eq!(h.read_line(HELD), Got::Nothing, "{}", dump());
    }
    // Another address is served meanwhile.
    let mut other = Raw::connect_from(OTHER, m.port);
    served(&mut other, "a client from 127.0.0.2");
    // The three held ones are served too, once they speak.
    for h in &mut held {
        served(h, "a held client");
    }
    // Closing one of the three frees a place.
    let gone = held.pop().expect("three held");
    gone.shutdown();
    drop(gone);
    manager_admits_again(m.port);
}

#[test]
fn manager_holds_at_most_maxconnections_in_all() {
    let dir = TestDir::new("cap-total");
    let m = start_manager(
        &dir,
        &format!("{MANAGER_DEFAULTS}<maxconnections>4</maxconnections>"),
    );
    // Four from two addresses, each served (so each is admitted before the next comes).
    let mut held = Vec::new();
    for i in 0..4 {
        let mut c = if i % 2 == 0 {
            Raw::connect(m.port)
        } else {
            Raw::connect_from(OTHER, m.port)
        };
        served(&mut c, "one of the first four");
        held.push(c);
    }
    let full = "<error>manager full: 4 connections</error>";
    refused_with(&mut Raw::connect(m.port), full);
    // The cap is on the total: a third address is refused as well.
    refused_with(
        &mut Raw::connect_from(Ipv4Addr::new(127, 0, 0, 3), m.port),
        full,
    );
    for h in &mut held {
        served(h, "a held client");
    }
    let gone = held.pop().expect("four held");
    gone.shutdown();
    drop(gone);
    manager_admits_again(m.port);
}

#[test]
fn manager_logs_refusals_once_per_source() {
    let dir = TestDir::new("cap-log");
    let m = start_manager(
        &dir,
        &format!("{MANAGER_DEFAULTS}<maxperaddress>1</maxperaddress>"),
    );
    let mut first = Raw::connect(m.port);
    served(&mut first, "the one allowed from 127.0.0.1");
    // Twenty refused attempts from 127.0.0.1, each read to its end.
    let refusal = "<error>manager too many connections from 127.0.0.1 (at most 1)</error>";
    for _ in 0..20 {
        refused_with(&mut Raw::connect(m.port), refusal);
    }
    // Then one refusal from 127.0.0.2: another source, so another line. It is the last
    // thing the manager logs, so once it is collected every earlier line is too.
    let mut second = Raw::connect_from(OTHER, m.port);
    served(&mut second, "the one allowed from 127.0.0.2");
    refused_with(
        &mut Raw::connect_from(OTHER, m.port),
        "<error>manager too many connections from 127.0.0.2 (at most 1)</error>",
    );
    m.proc.wait_log("refused 127.0.0.2:");
    let lines: Vec<String> = m
        .proc
        .stderr()
        .into_iter()
        .filter(|l| log_message(l).starts_with("refused "))
        .collect();
    println!("refusal log lines for 21 refusals from two sources: {lines:#?}");
    assert_eq!(
        m.proc.count_log("refused 127.0.0.1:"),
        1,
        "20 refusals from one address are logged once\n{}",
        dump()
    );
    assert_eq!(lines.len(), 2, "one line per source\n{}", dump());
}

/// Connects to a servant from `from` and types a line: the connection when the servant
/// showed the line (admitted; keep it to keep the place), `None` when it closed the
/// connection unread (refused).
fn servant_admits(servant: &Servant, from: Ipv4Addr, attempt: &str) -> Option<Raw> {
    let mut c = if from == Ipv4Addr::LOCALHOST {
        Raw::connect(servant.port)
    } else {
        Raw::connect_from(from, servant.port)
    };
    c.send(attempt);
    let want = format!("<{from}:{}> {attempt}", c.local_port());
    let admitted = wait_for(&format!("{attempt:?} to be shown or refused"), || {
        if servant.proc.stdout().contains(&want) {
            return Some(true);
        }
        match c.read_line(Duration::from_millis(20)) {
            Got::Closed => Some(false),
            Got::Nothing => None,
            Got::Line(l) => fail(&format!("a servant answered a plain line with {l:?}")),
        }
    });
    admitted.then_some(c)
}

#[test]
fn servant_caps_an_address_while_real_peers_chat() {
    let dir = TestDir::new("cap-servant");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    // Real peers connect from 127.0.0.1; the one that crowds alice comes from 127.0.0.2.
    let mut s = vec![
        start_servant(&dir, "alice", m.port, "<maxperaddress>2</maxperaddress>"),
        start_servant(&dir, "bob", m.port, ""),
    ];
    wait_mesh(&s);
    // Bob's sender now holds one of alice's two places for 127.0.0.1.
    s[1].proc.send("before");
    s[0].wait_heard("bob", "before");

    // Two connections from 127.0.0.2 are held and shown; the third is closed at once.
    let mut crowd = Vec::new();
    for i in 0..2 {
        let mut c = Raw::connect_from(OTHER, s[0].port);
        c.send(&format!("crowd {i}"));
        let want = format!("<127.0.0.2:{}> crowd {i}", c.local_port());
        s[0].proc.wait_stdout(&want, |l| l == want);
        crowd.push(c);
    }
    assert!(
        servant_admits(&s[0], OTHER, "a third from 127.0.0.2").is_none(),
        "a third connection from 127.0.0.2 was shown\n{}",
        dump()
    );
    s[0].proc.wait_log("refused 127.0.0.2:");

    // Real chat flows both ways meanwhile.
    s[1].proc.send("to alice, past the crowd");
    s[0].wait_heard("bob", "to alice, past the crowd");
    s[0].proc.send("to bob, past the crowd");
    s[1].wait_heard("alice", "to bob, past the crowd");

    // 127.0.0.1 is capped the same way: bob's sender and one typist fill its two places.
    let typist = servant_admits(&s[0], Ipv4Addr::LOCALHOST, "a typist from 127.0.0.1")
        .unwrap_or_else(|| fail("a first typist from 127.0.0.1 was refused"));
    assert!(
        servant_admits(&s[0], Ipv4Addr::LOCALHOST, "one too many from 127.0.0.1").is_none(),
        "a third connection from 127.0.0.1 was shown\n{}",
        dump()
    );
    drop(typist);
    s[0].proc.wait_log("refused 127.0.0.1:");

    // The crowd's two are still open; closing one frees a place for 127.0.0.2.
    for c in &mut crowd {
        assert_eq!(c.read_line(HELD), Got::Nothing, "{}", dump());
    }
    let gone = crowd.pop().expect("two held");
    gone.shutdown();
    drop(gone);
    let mut n = 0;
    wait_for("a place to come free at alice for 127.0.0.2", || {
        n += 1;
        servant_admits(&s[0], OTHER, &format!("back again {n}")).map(drop)
    });

    // And bob still gets through: his connection was never at risk.
    s[1].proc.send("after the crowd");
    s[0].wait_heard("bob", "after the crowd");
    assert_eq!(
        s[0].heard_from("bob"),
        vec!["before", "to alice, past the crowd", "after the crowd"],
        "{}",
        dump()
    );
}

// ---------------------------------------------------------------------------------------
// Threads and memory
// ---------------------------------------------------------------------------------------

/// Threads allowed above the start (a helper that happens to be starting or ending).
const THREAD_SLACK: u64 = 2;
/// Memory allowed to stay after the first crowd has gone. Freed thread stacks and the
/// allocator's per-thread arenas are kept for reuse, so RSS does not fall back to the
/// byte: 250 connections leave 5 to 11 MiB behind in a fresh manager.
const FIRST_RSS_SLACK_KIB: u64 = 32 * 1024;
/// Memory allowed to stay after a second crowd, above where the first left it: with the
/// allocator warmed up, a leak would show here.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// Binary noise with a line end every 64 bytes, different for each `seed`.
fn noise(seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..32 * 64)
        .map(|i| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if i % 64 == 63 {
                b'\n'
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

/// Opens 200 silent connections and 50 that send garbage to `port` of process `pid`,
/// waits until the silent ones hold `threads_each` threads each, closes them all, and
/// waits until the thread count is back to where it started and RSS within `rss_slack`
/// KiB of it. Prints the figures.
fn crowd_comes_and_goes(what: &str, pid: u32, port: u16, threads_each: u64, rss_slack: u64) {
    let (t0, r0) = threads_and_rss(pid);
    let mut silent: Vec<Raw> = (0..200).map(|_| Raw::connect(port)).collect();
    let mut noisy: Vec<Raw> = (0..50)
        .map(|i| {
            let mut c = Raw::connect(port);
            // Closed already by the other side when it gave up on the noise: fine.
            let _ = std::io::Write::write_all(&mut c.stream, &noise(i));
            c
        })
        .collect();
    let mut peak = (t0, r0);
    let during = try_wait_for(WAIT, || {
        let (t, r) = threads_and_rss(pid);
        peak = (peak.0.max(t), peak.1.max(r));
        (t >= t0 + 200 * threads_each).then_some((t, r))
    })
    .unwrap_or_else(|| {
        fail(&format!(
            "{what}: threads never reached {t0} + {} for 200 silent connections (peak {peak:?})",
            200 * threads_each
        ))
    });
    // Every silent one is still open: none was refused or timed out.
    for c in &mut silent {
        assert_eq!(c.read_line(Duration::ZERO), Got::Nothing, "{}", dump());
    }
    for c in silent.iter().chain(noisy.iter()) {
        c.shutdown();
    }
    silent.clear();
    noisy.clear();
    let mut last = during;
    let after = try_wait_for(WAIT, || {
        last = threads_and_rss(pid);
        (last.0 <= t0 + THREAD_SLACK && last.1 <= r0 + rss_slack).then_some(last)
    });
    println!(
        "{what}: threads {t0} before, {} with the crowd, {} after; RSS {r0} KiB before, {} KiB with the crowd (peak {}), {} KiB after",
        during.0, last.0, during.1, peak.1, last.1
    );
    if after.is_none() {
        fail(&format!(
            "{what}: after closing 250 connections, threads {} (started at {t0}, allowed +{THREAD_SLACK}) and RSS {} KiB (started at {r0}, allowed +{rss_slack})",
            last.0, last.1
        ));
    }
}

#[test]
fn manager_threads_and_memory_return_after_a_crowd() {
    let dir = TestDir::new("mgr-resources");
    // The crowd all comes from 127.0.0.1: raise the per-address cap above it.
    let m = start_manager(
        &dir,
        &format!("{MANAGER_DEFAULTS}<maxperaddress>1000</maxperaddress>"),
    );
    // One client served first, so what the first connection sets up is in the start figure.
    served(&mut Raw::connect(m.port), "a first client");
    wait_for("the first client's threads to end", || {
        (!m.proc
            .thread_names()
            .iter()
            .any(|n| n.starts_with("conn-") || n.starts_with("push-")))
        .then_some(())
    });
    // Each connection has a reading thread (conn-) and a writing one (push-).
    let (pid, port) = (m.proc.pid(), m.port);
    crowd_comes_and_goes("manager, first crowd", pid, port, 2, FIRST_RSS_SLACK_KIB);
    crowd_comes_and_goes("manager, second crowd", pid, port, 2, RSS_SLACK_KIB);
    // And it still serves.
    served(&mut Raw::connect(m.port), "a client after the crowd");
}

#[test]
fn servant_threads_and_memory_return_after_a_crowd() {
    let dir = TestDir::new("srv-resources");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut alice = start_servant(&dir, "alice", m.port, "<maxperaddress>1000</maxperaddress>");
    let mut first = Raw::connect(alice.port);
    first.send("a first typist");
    alice
        .proc
        .wait_stdout("the first typist", |l| l.ends_with("> a first typist"));
    first.shutdown();
    drop(first);
    wait_for("the first typist's thread to end", || {
        (!alice
            .proc
            .thread_names()
            .iter()
            .any(|n| n.starts_with("recv-")))
        .then_some(())
    });
    // Each connection has one reading thread (recv-).
    let (pid, port) = (alice.proc.pid(), alice.port);
    crowd_comes_and_goes("servant, first crowd", pid, port, 1, FIRST_RSS_SLACK_KIB);
    crowd_comes_and_goes("servant, second crowd", pid, port, 1, RSS_SLACK_KIB);
    // And it still chats.
    let bob = start_servant(&dir, "bob", m.port, "");
    alice.wait_knows(&["bob"]);
    bob.wait_knows(&["alice"]);
    alice.proc.send("after the crowd");
    bob.wait_heard("alice", "after the crowd");
    let mut typist = Raw::connect(alice.port);
    typist.send("and a typist");
    alice.proc.wait_stdout("the typist after the crowd", |l| {
        l.ends_with("> and a typist")
    });
}

#[test]
fn idle_crowds_cannot_keep_a_listed_servant_or_a_typist_out() {
    let dir = TestDir::new("places-crowd");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut alice = start_servant(
        &dir,
        "alice",
        m.port,
        "<maxconnections>128</maxconnections>",
    );
    let threads_before = alice.proc.thread_names().len();
    // 400 idle connections from 50 addresses (8 each, under the cap of 64), more than
    // alice's 128 places: each newcomer past 96 closes the longest idle.
    let crowd: Vec<Raw> = (0..400)
        .map(|i| Raw::connect_from(Ipv4Addr::new(127, 0, 1, 10 + (i % 50) as u8), alice.port))
        .collect();
    alice
        .proc
        .wait_log("all places taken: closed a connection from 127.0.1.");
    // The threads of the connections closed end at once: no more than the places.
    let threads = wait_for("the crowd's threads to fit the places", || {
        let n = alice.proc.thread_names().len();
        (n <= threads_before + 128).then_some(n)
    });
    println!("threads: {threads_before} before, {threads} with the crowd");
    // A listed servant joins and is heard; a person with telnet is heard.
    let mut bob = start_servant(&dir, "bob", m.port, "");
    alice.wait_knows(&["bob"]);
    bob.proc.send("past the crowd");
    alice.wait_heard("bob", "past the crowd");
    let mut typist = Raw::connect(alice.port);
    typist.send("a person typing");
    let want = format!("<127.0.0.1:{}> a person typing", typist.local_port());
    alice.proc.wait_stdout(&want, |l| l == want);
    // Alice's own line reaches bob the other way.
    alice.proc.send("and back");
    bob.wait_heard("alice", "and back");
    // Most of the crowd has been closed by alice.
    let closed = crowd
        .into_iter()
        .filter_map(|mut c| (c.read_line(Duration::from_millis(1)) == Got::Closed).then_some(()))
        .count();
    assert!(closed >= 400 - 128, "{closed} of 400 closed\n{}", dump());
}
