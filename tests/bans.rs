//! Bans: a servant refuses connections from the hosts in its `<bans>`, so it shows nothing
//! from them, while they still hear it (its own sending connections are not affected).
//! A refused address is logged once, however often it retries.

mod common;

use std::time::Duration;

use common::*;

const REFUSED: &str = "refused a connection from banned";

fn hermit_hears_nothing(test: &str, target: &str) {
    let dir = TestDir::new(test);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let ban = format!("<bans><ban><target>{target}</target></ban></bans>");
    let mut hermit = start_servant(&dir, "hermit", m.port, &ban);
    let mut others = start_mesh(&dir, m.port, &["alice", "bob"]);
    hermit.wait_knows(&["alice", "bob"]);
    for o in &others {
        o.wait_knows(&["hermit"]);
    }

    // The hermit is heard by everyone.
    hermit.proc.send("hello from the hermit");
    for o in &others {
        o.wait_heard("hermit", "hello from the hermit");
    }

    // The others talk among themselves and to the hermit, who is refused.
    others[0].proc.send("alice to everyone");
    others[1].proc.send("bob to everyone");
    others[1].wait_heard("alice", "alice to everyone");
    others[0].wait_heard("bob", "bob to everyone");
    // Both have tried the hermit and been turned away, more than once between them.
    for o in &others {
        o.proc.wait_stderr("a refusal by the hermit", |l| {
            l.contains("cannot reach hermit at ")
        });
    }
    hermit.proc.wait_log(REFUSED);
    // Give stray deliveries a moment to show up, if there were any.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        hermit.proc.stdout().is_empty(),
        "the hermit showed messages from banned hosts\n{}",
        dump()
    );
    assert_eq!(
        hermit.proc.count_log(REFUSED),
        1,
        "a refused address is logged once\n{}",
        dump()
    );
    // And the hermit still talks: its sending is not affected by its bans.
    hermit.proc.send("still here");
    for o in &others {
        o.wait_heard("hermit", "still here");
    }
    others.clear();
}

#[test]
fn ban_on_127_0_0_1_refuses_local_servants() {
    hermit_hears_nothing("ban-ip", "127.0.0.1");
}

#[test]
fn ban_on_localhost_refuses_local_servants() {
    hermit_hears_nothing("ban-localhost", "localhost");
}

#[test]
fn ban_on_another_address_refuses_nobody_here() {
    // The control: the same setup with a ban that does not match hears everyone.
    let dir = TestDir::new("ban-other");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let ban = "<bans><ban><target>10.254.254.254</target></ban></bans>";
    let hermit = start_servant(&dir, "hermit", m.port, ban);
    let mut alice = start_servant(&dir, "alice", m.port, "");
    alice.wait_knows(&["hermit"]);
    alice.proc.send("not banned");
    hermit.wait_heard("alice", "not banned");
    assert_eq!(hermit.proc.count_log(REFUSED), 0, "{}", dump());
}
