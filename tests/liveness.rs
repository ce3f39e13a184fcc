//! Who the manager keeps listed: a registered client that falls silent is dropped after
//! `<timeout>` and the others are told; a killed servant disappears; a client that never
//! says `listening` is never listed.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A raw client that registers as a servant and keeps itself alive by asking for the list
/// every 300 ms, collecting every line the manager pushes.
struct Watcher {
    raw: Raw,
    seen: Vec<String>,
}

impl Watcher {
    fn register(manager_port: u16, port: u16, name: &str) -> Watcher {
        let mut raw = Raw::connect(manager_port);
        let first = register_with(&mut raw, &new_identity(), port, name);
        Watcher {
            raw,
            seen: vec![first],
        }
    }

    /// Heartbeats and reads until a pushed line satisfies `pred`.
    fn wait_push(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            self.raw.send("needs peer list");
            let until = Instant::now() + Duration::from_millis(300);
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match self.raw.read_line(left) {
                    Got::Line(l) => {
                        let hit = pred(&l);
                        self.seen.push(l.clone());
                        if hit {
                            return l;
                        }
                    }
                    Got::Nothing => break,
                    Got::Closed => fail(&format!(
                        "the manager closed the watcher's connection; it saw {:?}",
                        self.seen
                    )),
                }
            }
        }
        fail(&format!(
            "timed out waiting for {what}; the watcher saw {:?}",
            self.seen
        ))
    }
}

#[test]
fn silent_registered_client_is_dropped_after_timeout_and_others_told() {
    let dir = TestDir::new("silent-client");
    let m = start_manager(&dir, MANAGER_DEFAULTS); // <timeout>1.5</timeout>
    let bob = start_servant(&dir, "bob", m.port, "");
    let mut watcher = Watcher::register(m.port, 40100, "watcher");

    let mut silent = Raw::connect(m.port);
    let registered = Instant::now();
    let silent_key = new_identity();
    register_with(&mut silent, &silent_key, 40101, "silent");
    assert!(
        listed_names(m.port).contains(&"silent".to_owned()),
        "listed right after `listening`\n{}",
        dump()
    );
    bob.wait_knows(&["silent"]);

    // It says nothing more: the manager drops it and pushes <leave> to the others.
    let leave = watcher.wait_push("a <leave> for silent", |l| {
        l.starts_with("<leave") && l.contains("<name>silent</name>")
    });
    let waited = registered.elapsed();
    let gone = parse_peers(&leave, "leave").unwrap_or_else(|e| fail(&e));
    assert_eq!(
        (gone.len(), gone[0].port, gone[0].id.as_deref()),
        (1, 40101, Some(silent_key.id.as_str())),
        "{leave}"
    );
    assert!(
        waited >= Duration::from_millis(1400),
        "dropped after {waited:?}, before its <timeout> of 1.5 s\n{}",
        dump()
    );
    m.proc.wait_log("peer left: silent");
    bob.proc.wait_log("peer left: silent at ");
    assert!(
        !listed_names(m.port).contains(&"silent".to_owned()),
        "{}",
        dump()
    );
    // The manager closed the silent client's connection.
    assert_eq!(silent.read_line(WAIT), Got::Closed, "{}", dump());
    // The watcher, which kept talking, is still listed: only silence is punished.
    assert!(
        listed_names(m.port).contains(&"watcher".to_owned()),
        "{}",
        dump()
    );
}

#[test]
fn killed_servant_disappears_from_the_list() {
    let dir = TestDir::new("killed-servant");
    // A long time-out: the servant must go because its connection closed, not by silence.
    let m = start_manager(&dir, "<timeout>30</timeout>");
    let mut servants = start_mesh(&dir, m.port, &["alice", "bob"]);
    wait_listed(m.port, &["alice", "bob"]);
    servants[1].proc.kill();
    wait_listed(m.port, &["alice"]);
    servants[0].proc.wait_log("peer left: bob at ");
}

#[test]
fn unregistered_client_is_not_listed_to_others() {
    let dir = TestDir::new("unregistered");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "");
    wait_listed(m.port, &["alice"]);

    // A telnet user who only asks: it gets a slot and sees itself ...
    let mut lurker = Raw::connect(m.port);
    lurker.send("needs peer list");
    let line = lurker.expect_line("the lurker's list");
    let mine = parse_peers(&line, "peers").unwrap_or_else(|e| fail(&e));
    let me = mine
        .iter()
        .find(|p| p.me)
        .unwrap_or_else(|| fail(&format!("no <me>TRUE</me> in {line}")))
        .clone();
    // ... but nobody else does, for as long as it stays connected.
    for _ in 0..3 {
        let others = listed(m.port);
        assert!(
            others.iter().all(|p| p.offset != me.offset),
            "the lurker (slot {}) is listed: {others:?}\n{}",
            me.offset,
            dump()
        );
        assert_eq!(others.len(), 1, "only alice: {others:?}\n{}", dump());
    }
    assert!(
        !alice
            .proc
            .stderr()
            .iter()
            .any(|l| l.contains("peer joined")),
        "alice was told of a client that never listened\n{}",
        dump()
    );
    lurker.send("needs peer list");
    lurker.expect_line("the lurker is still served");
}
