//! Servants behind firewalls, end to end: the article's closing section, built.
//!
//! A firewalled servant is simulated on loopback with `<publicport>`: it really listens
//! (on an OS-chosen port) but tells the manager a port where nothing listens, so every
//! connection others make to it is refused, exactly as a port-blocking router would make
//! it look. Its own outbound connections work, as they would behind the router. The tests
//! check both ways the manager finds it out (its own probe, and complaints from the
//! others), that everyone then reaches it through a relay with nothing shown twice, that
//! nothing is lost when the relay dies, and that the `complain` command cannot be abused
//! by one client to condemn a servant.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

/// Manager settings with the reachability probe on (its default) and a short time-out.
const PROBE_ON: &str = "<timeout>1.5</timeout><trustafter>0.3</trustafter>";
/// Manager settings with the probe off: only complaints can condemn, two from each peer.
const COMPLAINTS_ONLY: &str =
    "<timeout>1.5</timeout><probe>false</probe><complaints>2</complaints><trustafter>0.3</trustafter>";

/// A port where nothing listens: bound on 127.0.0.1:0, read back, released.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("local address").port();
    drop(l);
    port
}

/// Starts a servant that listens on an OS-chosen port but tells the manager a port where
/// nothing listens (`<publicport>`): to everyone else it is behind a firewall.
fn start_hidden(dir: &TestDir, name: &str, manager_port: u16) -> Servant {
    let port = dead_port();
    let s = start_servant(
        dir,
        name,
        manager_port,
        &format!("<publicport>{port}</publicport>"),
    );
    assert_eq!(
        s.port,
        port,
        "the servant reports its public port\n{}",
        dump()
    );
    s
}

/// Waits for the manager's `NAME (slot N) pulls from RELAY (serving …)` line number
/// `nth` (from 1) about `name`, and returns RELAY.
fn nth_relay(m: &Manager, name: &str, nth: usize) -> String {
    let prefix = format!("{name} (slot ");
    let relays = || -> Vec<String> {
        m.proc
            .stderr()
            .iter()
            .map(|l| log_message(l))
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.split_once(") pulls from ").map(|(_, r)| r.to_owned()))
            .filter_map(|r| r.split_once(" (serving ").map(|(n, _)| n.to_owned()))
            .collect()
    };
    wait_for(
        &format!("the manager to choose relay number {nth} for {name}"),
        || relays().get(nth - 1).cloned(),
    )
}

/// Asks `s` for `/peers` until a line of its answer satisfies `pred` (the first answers
/// may come before the change they should show has reached it).
fn wait_peers_line(s: &mut Servant, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let what = format!("{}'s /peers to show {what}", s.name);
    let mut asked = 0;
    let found = try_wait_for(WAIT, || {
        if let Some(l) = s.proc.stdout().into_iter().find(|l| pred(l)) {
            return Some(l);
        }
        asked += 1;
        if asked % 10 == 1 {
            s.proc.send("/peers");
        }
        None
    });
    found.unwrap_or_else(|| fail(&format!("timed out waiting for {what}")))
}

/// Asserts that `r` showed exactly `want` from `writer`: each once, in that order.
fn assert_heard(r: &Servant, writer: &str, want: &[String]) {
    assert_eq!(
        r.heard_from(writer),
        want,
        "{} heard from {writer} (exactly once each, in order)\n{}",
        r.name,
        dump()
    );
}

/// Everyone writes `count` lines and a last one; waits until each other servant has
/// shown the last line from each writer, then checks each showed exactly those lines once.
fn everyone_chats(s: &mut [Servant], count: usize) {
    for w in s.iter_mut() {
        let name = w.name.clone();
        let lines: String = (1..=count).map(|i| format!("{name} line {i}\n")).collect();
        w.proc.send_bytes(lines.as_bytes());
    }
    for r in s.iter() {
        for w in s.iter().filter(|w| w.name != r.name) {
            r.wait_heard(&w.name, &format!("{} line {count}", w.name));
        }
    }
    for r in s.iter() {
        for w in s.iter() {
            let want: Vec<String> = if r.name == w.name {
                Vec::new()
            } else {
                (1..=count)
                    .map(|i| format!("{} line {i}", w.name))
                    .collect()
            };
            assert_heard(r, &w.name, &want);
        }
    }
}

#[test]
fn the_probe_finds_a_firewalled_servant_and_a_relay_carries_its_chat() {
    let dir = TestDir::new("relay-probe");
    let m = start_manager(&dir, PROBE_ON);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob", "carol"]);
    s.push(start_hidden(&dir, "hidden", m.port));

    let line = m.proc.wait_stderr("hidden found unreachable", |l| {
        l.contains("hidden (slot ") && l.contains(" is unreachable: ")
    });
    assert!(
        line.contains("could not connect back"),
        "the probe is the reason: {line}\n{}",
        dump()
    );
    let relay = nth_relay(&m, "hidden", 1);
    assert!(
        ["alice", "bob", "carol"].contains(&relay.as_str()),
        "relay {relay:?}"
    );

    let want = format!("pulling from {relay} at ");
    wait_peers_line(&mut s[3], &want, |l| {
        l.contains("(this servant)") && l.contains(&want)
    });
    for w in s.iter_mut().take(3) {
        // The relay itself says so rather than naming itself as a stranger would.
        let want = if w.name == relay {
            format!("relayed through {relay} (this servant)")
        } else {
            format!("relayed through {relay}")
        };
        wait_peers_line(w, &want, |l| {
            l.trim_start().starts_with("hidden ") && l.ends_with(&want)
        });
    }
    let r = names_index(&s, &relay);
    wait_peers_line(&mut s[r], "relaying to hidden", |l| {
        l.contains("(this servant)") && l.contains("relaying to hidden")
    });

    everyone_chats(&mut s, 20);
    assert_eq!(
        m.proc.count_log(" pulls from "),
        1,
        "one relay, chosen once\n{}",
        dump()
    );
}

fn names_index(s: &[Servant], name: &str) -> usize {
    s.iter()
        .position(|x| x.name == name)
        .unwrap_or_else(|| fail(&format!("no servant named {name}")))
}

#[test]
fn when_the_relay_dies_another_takes_over_and_nothing_is_lost() {
    let dir = TestDir::new("relay-failover");
    let m = start_manager(&dir, PROBE_ON);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob", "carol"]);
    s.push(start_hidden(&dir, "hidden", m.port));
    let relay = nth_relay(&m, "hidden", 1);
    s[3].proc
        .wait_log(&format!("pulling from relay {relay} at "));

    // Before the switch: something from everyone, so the new relay must catch the hidden
    // servant up from where it is, not from the start.
    for w in s.iter_mut().take(3) {
        let name = w.name.clone();
        w.proc.send(&format!("{name} before 1"));
        w.proc.send(&format!("{name} before 2"));
    }
    for w in ["alice", "bob", "carol"] {
        s[3].wait_heard(w, &format!("{w} before 2"));
    }

    let dead = names_index(&s, &relay);
    let mut killed = s.remove(dead);
    let writers: Vec<String> = s.iter().take(2).map(|w| w.name.clone()).collect();
    // The survivors write numbered lines, a few at a time: the first batch just before
    // the relay is killed (some may reach it and die with it), the rest at once after,
    // while the manager chooses another relay and the hidden servant reconnects.
    for batch in 0..10 {
        for w in s.iter_mut().take(2) {
            let name = w.name.clone();
            let lines: String = (1..=5)
                .map(|i| format!("{name} during {}\n", batch * 5 + i))
                .collect();
            w.proc.send_bytes(lines.as_bytes());
        }
        if batch == 0 {
            killed.proc.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = nth_relay(&m, "hidden", 2);
    assert!(
        writers.contains(&second),
        "new relay {second:?} is one of {writers:?}\n{}",
        dump()
    );
    m.proc
        .wait_log(&format!("relay {relay} left; finding another for slot "));

    let hidden = &s[2];
    for w in &writers {
        hidden.wait_heard(w, &format!("{w} during 50"));
    }
    for w in &writers {
        let mut want = vec![format!("{w} before 1"), format!("{w} before 2")];
        want.extend((1..=50).map(|i| format!("{w} during {i}")));
        assert_heard(hidden, w, &want);
    }
    // And the hidden servant still reaches the survivors (its own senders), once each.
    s[2].proc.send("hidden after the switch");
    for r in s.iter().take(2) {
        r.wait_heard("hidden", "hidden after the switch");
        assert_heard(r, "hidden", &["hidden after the switch".to_owned()]);
    }
}

#[test]
fn complaints_alone_condemn_a_firewalled_servant() {
    let dir = TestDir::new("relay-complaints");
    let m = start_manager(&dir, COMPLAINTS_ONLY);
    // Complaints count only from two addresses or more: each listens and dials from its
    // own loopback address.
    let mut s: Vec<Servant> = ["alice", "bob", "carol"]
        .iter()
        .zip(2..)
        .map(|(n, k)| start_servant(&dir, n, m.port, &format!("<bind>127.0.0.{k}</bind>")))
        .collect();
    wait_mesh(&s);
    s.push(start_hidden(&dir, "hidden", m.port));
    // Written while the others still try (and fail) to reach it: the relay's history
    // must make up for what their senders could not deliver.
    for w in s.iter_mut().take(3) {
        let name = w.name.clone();
        w.proc.send(&format!("{name} while suspected"));
    }

    let line = m.proc.wait_stderr("hidden found unreachable", |l| {
        l.contains("hidden (slot ") && l.contains(" is unreachable: ")
    });
    assert!(
        line.contains("complained at least 2 times each while it kept heartbeating"),
        "complaints are the reason: {line}\n{}",
        dump()
    );
    assert!(
        !line.contains("connect back"),
        "the probe is off: {line}\n{}",
        dump()
    );
    let complaints = m.proc.count_log("complaint about hidden (slot ");
    assert!(
        complaints >= 1,
        "the complaints before the verdict are logged\n{}",
        dump()
    );
    let relay = nth_relay(&m, "hidden", 1);
    for w in s.iter().take(3) {
        w.proc.wait_log("cannot reach hidden at ");
    }
    let want = format!("pulling from {relay} at ");
    wait_peers_line(&mut s[3], &want, |l| {
        l.contains("(this servant)") && l.contains(&want)
    });

    for w in ["alice", "bob", "carol"] {
        let text = format!("{w} while suspected");
        s[3].wait_heard(w, &text);
    }
    for w in s.iter_mut().take(3) {
        let name = w.name.clone();
        w.proc.send(&format!("{name} after the verdict"));
    }
    for w in ["alice", "bob", "carol"] {
        s[3].wait_heard(w, &format!("{w} after the verdict"));
        assert_heard(
            &s[3],
            w,
            &[
                format!("{w} while suspected"),
                format!("{w} after the verdict"),
            ],
        );
    }
    s[3].proc.send("hidden speaks");
    for r in s.iter().take(3) {
        r.wait_heard("hidden", "hidden speaks");
        assert_heard(r, "hidden", &["hidden speaks".to_owned()]);
    }
    assert_eq!(m.proc.count_log(" is unreachable: "), 1, "{}", dump());
}

#[test]
fn one_raw_complainer_cannot_condemn_anyone() {
    let dir = TestDir::new("relay-raw-complainer");
    // Without the dial-back, which would keep everyone it reaches direct whatever is said.
    let m = start_manager(&dir, COMPLAINTS_ONLY);
    let s = start_mesh(&dir, m.port, &["alice", "bob", "carol"]);

    // A telnet-style client, listed with an id, and a real listener so the probe passes.
    let held = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = held.local_addr().expect("local address").port();
    let mut raw = Raw::connect(m.port);
    let me = new_identity();
    register_with(&mut raw, &me, port, "raw");
    let (unknown, own) = (
        format!("complain {}", "0".repeat(20)),
        format!("complain {}", me.id),
    );

    let errors = [
        (
            unknown.as_str(),
            "complain: no listed servant has id &quot;00000000000000000000&quot;",
        ),
        (
            own.as_str(),
            "complain: a servant cannot complain about itself",
        ),
        ("complain", "complain: expected &apos;complain ID&apos;"),
        ("complain a b", "complain: expected &apos;complain ID&apos;"),
        (
            "complain <x>",
            "complain: id &quot;&lt;x&gt;&quot; is not an id (20 lowercase hex digits)",
        ),
    ];
    for (line, error) in errors {
        raw.send(line);
        let got = raw.expect_line_where(&format!("the answer to {line:?}"), |l| {
            l.starts_with("<error>")
        });
        assert_eq!(
            got,
            format!("<error>{error}</error>"),
            "answer to {line:?}\n{}",
            dump()
        );
    }

    // A client that is not listed may not complain at all.
    let mut stranger = Raw::connect(m.port);
    stranger.send(&format!("complain {}", s[0].id));
    assert_eq!(
        stranger.expect_line("an error"),
        "<error>complain: only a listed servant may complain</error>",
        "{}",
        dump()
    );

    // Many complaints from one client about one servant, once it has been listed long
    // enough for them to count: far past the threshold, but one complainer is not most
    // of alice's peers.
    std::thread::sleep(Duration::from_millis(400));
    for _ in 0..10 {
        raw.send(&format!("complain {}", s[0].id));
    }
    m.proc.wait_stderr("the complaints counted", |l| {
        l.contains("complaint about alice (slot ")
            && l.contains("from raw (slot ")
            && l.contains(": 1 of 2 needed")
    });
    // Then about everyone: now it cannot reach anyone, and counts against nobody.
    for _ in 0..10 {
        for v in &s[1..] {
            raw.send(&format!("complain {}", v.id));
        }
    }
    m.proc.wait_stderr("the raw client found troubled", |l| {
        l.contains("raw (slot ")
            && l.contains("cannot reach anyone: its complaints count against nobody")
    });
    // The manager is still answering this client, so every complaint has been judged.
    raw.send("needs peer list");
    raw.expect_line_where("the peer list", |l| l.starts_with("<peers"));
    assert_eq!(
        m.proc.count_log("is unreachable"),
        0,
        "nobody condemned\n{}",
        dump()
    );
    assert_eq!(
        m.proc.count_log(" pulls from "),
        0,
        "nobody relayed\n{}",
        dump()
    );
    drop(held);
}
