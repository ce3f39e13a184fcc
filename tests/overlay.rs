//! The overlay with the real binaries on loopback: past `<fullmesh>` servants, each
//! keeps a few neighbours, and every line still reaches every servant exactly once.

mod common;

use std::time::Duration;

use common::*;

/// Starts `n` servants called s0, s1, ... with `extra` settings, each waiting to join.
fn start_many(dir: &TestDir, manager_port: u16, n: usize, extra: &str) -> Vec<Servant> {
    (0..n)
        .map(|i| start_servant(dir, &format!("s{i}"), manager_port, extra))
        .collect()
}

/// Settings for a small network that still runs the overlay: past 4 servants, 3
/// neighbours each.
const SMALL: &str = "<fullmesh>4</fullmesh><degree>3</degree>";

/// `n` servants with `SMALL` settings, in the overlay (see `wait_overlay`).
fn small_overlay(dir: &TestDir, manager_port: u16, n: usize) -> Vec<Servant> {
    let servants = start_many(dir, manager_port, n, SMALL);
    wait_overlay(&servants);
    servants
}

/// Waits until every servant has left the full mesh (`MESH_LINGER`, 10 s, after it
/// joined the overlay) and has a neighbour.
fn wait_overlay(servants: &[Servant]) {
    for s in servants {
        let closed = try_wait_for(Duration::from_secs(30), || {
            (s.proc.count_log("closed the links to ") > 0).then_some(())
        });
        if closed.is_none() {
            fail(&format!("{} never left the full mesh\n{}", s.name, dump()));
        }
        s.proc.wait_log("neighbour up: ");
    }
}

/// Each servant says one line; every servant shows every other's line exactly once.
fn everyone_hears_everyone_once(servants: &mut [Servant], round: &str) {
    for s in servants.iter_mut() {
        let text = format!("{round} from {}", s.name);
        s.proc.send(&text);
    }
    for s in servants.iter() {
        for o in servants.iter().filter(|o| o.name != s.name) {
            s.wait_heard(&o.name, &format!("{round} from {}", o.name));
        }
    }
    for s in servants.iter() {
        for o in servants.iter().filter(|o| o.name != s.name) {
            let want = format!("{round} from {}", o.name);
            let n = s.heard_from(&o.name).iter().filter(|t| **t == want).count();
            assert_eq!(n, 1, "{} showed {want:?} {n} times\n{}", s.name, dump());
        }
    }
}

#[test]
fn past_fullmesh_servants_keep_few_neighbours_and_every_line_arrives_once() {
    let dir = TestDir::new("overlay-small");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut servants = small_overlay(&dir, m.port, 12);
    everyone_hears_everyone_once(&mut servants, "first");
    everyone_hears_everyone_once(&mut servants, "second");
    // `/peers` says how far the lines shown came: at least one hop, at most one fewer
    // than there are servants.
    servants[0].proc.send("/peers");
    let view = servants[0]
        .proc
        .wait_stdout("the overlay's /peers line", |l| l.starts_with("overlay: "));
    let hops = view
        .split(", over ")
        .nth(1)
        .and_then(|r| r.split_once(" hops on average (at most "))
        .and_then(|(mean, most)| {
            Some((
                mean.parse::<f64>().ok()?,
                most.strip_suffix(')')?.parse::<usize>().ok()?,
            ))
        });
    assert!(
        hops.is_some_and(|(mean, most)| (1.0..=most as f64).contains(&mean) && most < 12),
        "{view}"
    );
    for s in &servants {
        let links = s
            .proc
            .thread_names()
            .iter()
            .filter(|t| t.starts_with("nsend-"))
            .count();
        assert!(
            links <= 3 + 4,
            "{} holds {links} overlay links\n{}",
            s.name,
            dump()
        );
        assert!(
            !s.proc.thread_names().iter().any(|t| t.starts_with("send-")),
            "{} still links to every servant\n{}",
            s.name,
            dump()
        );
    }
}

#[test]
fn fifty_servants_in_the_overlay_each_hear_every_line_exactly_once() {
    let dir = TestDir::new("overlay-fifty");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut servants = start_many(&dir, m.port, 50, "");
    wait_overlay(&servants);
    everyone_hears_everyone_once(&mut servants, "hello");
    for s in &servants {
        let threads = s.proc.thread_names().len();
        assert!(
            threads < 40,
            "{} runs {threads} threads\n{}",
            s.name,
            dump()
        );
    }
}

/// A hand-written neighbour: the `LINK` handshake done, lines written with its tags.
struct RawNeighbour {
    raw: Raw,
    link: genp2p::handshake::Link,
}

impl RawNeighbour {
    fn link_to(port: u16, me: &genp2p::identity::Identity, name: &str) -> RawNeighbour {
        let mut raw = Raw::connect(port);
        let (link, _) = raw_handshake(&mut raw, me, name, genp2p::handshake::Mode::Link(0));
        RawNeighbour { raw, link }
    }

    fn send(&mut self, line: &str) {
        let tag = genp2p::encoding::hex(&self.link.tags.tag(line.as_bytes()));
        self.raw.send(&format!("{tag} {line}"));
    }
}

#[test]
fn a_neighbour_that_alters_or_forges_forwarded_lines_is_not_believed() {
    let dir = TestDir::new("overlay-forger");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = start_servant(&dir, "alice", m.port, "<fullmesh>0</fullmesh>");
    let mut bob = start_servant(&dir, "bob", m.port, "<fullmesh>0</fullmesh>");
    alice.proc.wait_log("neighbour up: ");
    bob.proc.wait_log("neighbour up: ");
    let eve = new_identity();
    let mut n = RawNeighbour::link_to(alice.port, &eve, "eve");
    n.send("NEIGHBOR HIGH");
    alice.proc.wait_log(&format!("neighbour up: {}", eve.id));
    // Lines by carol, a servant eve has heard, passed on by eve.
    let carol = new_identity();
    let gossip = |line: &str| format!("GOSSIP 1 {} {line}", carol.key.hex());
    let genuine = |seq: u64, text: &str| signed_msg(&carol, carol.incarnation, seq, "carol", text);
    // Signed by eve, under carol's id.
    let forged = |seq: u64, text: &str| {
        signed_msg(&eve, carol.incarnation, seq, "carol", text).replace(&eve.id, &carol.id)
    };
    let first = genuine(1, "a genuine line");
    let altered = first.replace("a genuine line", "an altered line");
    let forged_second = forged(2, "a forged line");
    let second = genuine(2, "another genuine line");
    n.send(&gossip(&altered));
    n.send(&gossip(&forged_second));
    n.send(&gossip(&first));
    n.send(&gossip(&second));
    for s in [&alice, &bob] {
        s.wait_heard("carol", "a genuine line");
        s.wait_heard("carol", "another genuine line");
    }
    alice
        .proc
        .wait_log("whose signature does not verify; dropped");
    // Once a line is shown, a copy of it is read by its id alone: an altered copy is
    // neither shown nor passed on, and a forged line past it is still checked.
    let forged_third = forged(3, "a forged third");
    let third = genuine(3, "a third genuine line");
    n.send(&gossip(&altered));
    n.send(&gossip(&forged_third));
    n.send(&gossip(&third));
    for s in [&alice, &bob] {
        s.wait_heard("carol", "a third genuine line");
    }
    bob.proc.send("bob after the attack");
    alice.wait_heard("bob", "bob after the attack");
    for s in [&alice, &bob] {
        let heard = s.heard_from("carol");
        assert_eq!(
            heard,
            [
                "a genuine line",
                "another genuine line",
                "a third genuine line"
            ],
            "{}\n{}",
            s.name,
            dump()
        );
    }
}

#[test]
fn a_banned_host_is_never_a_neighbour_and_its_forwarded_lines_are_not_shown() {
    let dir = TestDir::new("overlay-bans");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let overlay = "<fullmesh>0</fullmesh>";
    let alice = start_servant(
        &dir,
        "alice",
        m.port,
        &format!(
            "{overlay}<bind>127.0.0.2</bind><bans><ban><target>127.0.0.4</target></ban></bans>"
        ),
    );
    let bob = start_servant(
        &dir,
        "bob",
        m.port,
        &format!("{overlay}<bind>127.0.0.3</bind>"),
    );
    let mut mallory = start_servant(
        &dir,
        "mallory",
        m.port,
        &format!("{overlay}<bind>127.0.0.4</bind>"),
    );
    bob.proc.wait_log(&format!("neighbour up: {}", mallory.id));
    bob.proc.wait_log(&format!("neighbour up: {}", alice.id));
    // Bans follow the author once alice's list places mallory at the banned address.
    let mut alice = alice;
    wait_for("alice to list mallory at a banned address", || {
        alice.proc.send("/bans");
        std::thread::sleep(Duration::from_millis(200));
        alice
            .proc
            .stdout()
            .iter()
            .any(|l| l.contains("1 servant(s) listed at banned addresses"))
            .then_some(())
    });
    mallory.proc.send("mallory speaks");
    bob.wait_heard("mallory", "mallory speaks");
    alice.proc.wait_log(&format!(
        "a forwarded line by {}, listed at a banned address",
        mallory.id
    ));
    let mut bob = bob;
    bob.proc.send("bob speaks");
    alice.wait_heard("bob", "bob speaks");
    assert!(alice.heard_from("mallory").is_empty(), "{}", dump());
    assert_eq!(
        alice
            .proc
            .count_log(&format!("neighbour up: {}", mallory.id)),
        0,
        "{}",
        dump()
    );
}

/// Where in `servants` the first neighbour of `servants[of]` is (its first
/// `neighbour up: ID at ADDR` line).
fn first_neighbour(servants: &[Servant], of: usize) -> usize {
    let up = servants[of].proc.wait_log("neighbour up: ");
    let id = log_message(&up)
        .trim_start_matches("neighbour up: ")
        .split(' ')
        .next()
        .unwrap_or_default();
    servants
        .iter()
        .position(|s| s.id == id)
        .unwrap_or_else(|| fail(&format!("no servant has id {id}\n{}", dump())))
}

#[test]
fn a_neighbour_killed_is_replaced_and_no_line_is_lost() {
    let dir = TestDir::new("overlay-kill");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut servants = small_overlay(&dir, m.port, 12);
    // s0's first neighbour, killed without a word.
    let at = first_neighbour(&servants, 0);
    let mut victim = servants.remove(at);
    let victim_id = victim.id.clone();
    victim.proc.kill();
    servants[0]
        .proc
        .wait_log(&format!("neighbour down: {victim_id}"));
    everyone_hears_everyone_once(&mut servants, "after the kill");
    let ups = servants[0].proc.count_log("neighbour up: ");
    assert!(
        ups >= 2,
        "s0 found no neighbour to replace the lost one\n{}",
        dump()
    );
}

#[test]
fn with_the_manager_down_a_newcomer_joins_through_bootstrap() {
    let dir = TestDir::new("overlay-bootstrap");
    let mut m = start_manager(&dir, MANAGER_DEFAULTS);
    let settings = SMALL;
    let mut servants = start_many(&dir, m.port, 8, settings);
    wait_overlay(&servants);
    m.proc.kill();
    for s in &servants {
        s.proc.wait_log("lost the connection manager");
    }
    let boot = format!(
        "{settings}<bootstrap>127.0.0.1:{}</bootstrap>",
        servants[0].port
    );
    let mut late = start_servant(&dir, "late", m.port, &boot);
    late.proc
        .wait_log("no connection manager: joining the overlay through <bootstrap>");
    late.proc.wait_log("neighbour up: ");
    servants[5].proc.send("to the newcomer");
    late.wait_heard("s5", "to the newcomer");
    late.proc.send("from the newcomer");
    for s in &servants {
        s.wait_heard("late", "from the newcomer");
    }
    for s in &servants {
        assert_eq!(
            s.heard_from("late"),
            ["from the newcomer"],
            "{}\n{}",
            s.name,
            dump()
        );
    }
    assert_eq!(late.heard_from("s5"), ["to the newcomer"], "{}", dump());
    // The manager back: the newcomer is listed, and stays in the overlay.
    let _m = start_manager_on(&dir, m.port, MANAGER_DEFAULTS);
    late.proc.wait_log("listed by the connection manager");
    let mut names: Vec<&str> = servants.iter().map(|s| s.name.as_str()).collect();
    names.push("late");
    wait_listed(_m.port, &names);
}

#[test]
fn a_firewalled_servant_keeps_only_links_it_opened_and_hears_everything_once() {
    let dir = TestDir::new("overlay-firewall");
    // The manager's probe on, with a short time-out (as in tests/relay.rs).
    let m = start_manager(&dir, "<timeout>1.5</timeout><trustafter>0.3</trustafter>");
    let settings = SMALL;
    let mut servants = start_many(&dir, m.port, 7, settings);
    // Listens on an OS-chosen port, but tells everyone a port where nothing listens.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        l.local_addr().expect("local address").port()
    };
    servants.push(start_servant(
        &dir,
        "hidden",
        m.port,
        &format!("{settings}<publicport>{dead}</publicport>"),
    ));
    wait_overlay(&servants);
    let hidden = servants.len() - 1;
    servants[hidden]
        .proc
        .wait_log("behind a firewall: keeping only the overlay links this servant opens");
    everyone_hears_everyone_once(&mut servants, "first");
    everyone_hears_everyone_once(&mut servants, "second");
    let h = &servants[hidden];
    assert_eq!(
        h.proc.count_log("overlay link from "),
        0,
        "a link into a firewalled servant\n{}",
        dump()
    );
    assert!(
        !h.proc.thread_names().iter().any(|t| t.starts_with("pull-")),
        "the overlay carries everything: no pulling from a relay\n{}",
        dump()
    );
}

#[test]
fn a_forwarder_that_passes_nothing_on_cannot_stop_delivery() {
    let dir = TestDir::new("overlay-dropper");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut servants = small_overlay(&dir, m.port, 12);
    everyone_hears_everyone_once(&mut servants, "before");
    // s0's first neighbour, stopped: its links stay open and take what is written to
    // them, and it passes nothing on, as a forwarder that drops every line would.
    let at = first_neighbour(&servants, 0);
    let dropper = servants.remove(at);
    dropper.proc.signal("STOP");
    for k in 0..5 {
        servants[0].proc.send(&format!("past the dropper {k}"));
    }
    for s in &servants[1..] {
        for k in 0..5 {
            s.wait_heard("s0", &format!("past the dropper {k}"));
        }
    }
    for s in &servants[1..] {
        let heard: Vec<String> = s
            .heard_from("s0")
            .into_iter()
            .filter(|t| t.starts_with("past the dropper"))
            .collect();
        let want: Vec<String> = (0..5).map(|k| format!("past the dropper {k}")).collect();
        assert_eq!(heard, want, "{}\n{}", s.name, dump());
    }
    dropper.proc.signal("CONT");
}

/// Drops every packet between two groups of loopback addresses while it lives (an
/// nftables table of its own); `None` where that cannot be done (not root, no `nft`).
struct Split(String);

impl Split {
    fn between(a: &str, b: &str) -> Option<Split> {
        let table = format!("genp2p_split_{}", std::process::id());
        let script = format!(
            "table inet {table} {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  \
             ip saddr {a} ip daddr {b} drop\n  ip saddr {b} ip daddr {a} drop\n }}\n}}\n"
        );
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        use std::io::Write as _;
        child.stdin.take()?.write_all(script.as_bytes()).ok()?;
        child.wait().ok()?.success().then_some(Split(table))
    }
}

impl Drop for Split {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .status();
    }
}

#[test]
fn a_split_network_delivers_what_each_half_missed_once_healed() {
    let dir = TestDir::new("overlay-split");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let settings = SMALL;
    // Two halves on addresses of their own: 127.0.31.x and 127.0.32.x.
    let mut servants: Vec<Servant> = (0..10)
        .map(|i| {
            let half = 31 + i % 2;
            let bind = format!("<bind>127.0.{half}.{}</bind>", 1 + i / 2);
            start_servant(&dir, &format!("s{i}"), m.port, &format!("{settings}{bind}"))
        })
        .collect();
    wait_overlay(&servants);
    everyone_hears_everyone_once(&mut servants, "before");
    let Some(split) = Split::between("127.0.31.0/24", "127.0.32.0/24") else {
        eprintln!(
            "SKIPPED the split: dropping packets between loopback addresses needs root and nft"
        );
        return;
    };
    // Each half speaks while it cannot reach the other.
    servants[0].proc.send("said in the first half");
    servants[1].proc.send("said in the second half");
    // (Within a half the line may not move either: a half can be cut off from a
    // servant's every neighbour, and a link is given up only after 90 s of silence.)
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        servants[1]
            .heard_from("s0")
            .iter()
            .all(|t| t != "said in the first half"),
        "the split let a line through\n{}",
        dump()
    );
    drop(split);
    for s in &servants {
        if s.name != "s0" {
            s.wait_heard("s0", "said in the first half");
        }
        if s.name != "s1" {
            s.wait_heard("s1", "said in the second half");
        }
    }
    everyone_hears_everyone_once(&mut servants, "after");
    for s in &servants {
        for (who, text) in [
            ("s0", "said in the first half"),
            ("s1", "said in the second half"),
        ] {
            let n = s.heard_from(who).iter().filter(|t| *t == text).count();
            assert!(
                s.name == who || n == 1,
                "{} showed {text:?} {n} times\n{}",
                s.name,
                dump()
            );
        }
    }
}

#[test]
fn a_hostile_neighbour_is_bounded_and_everyone_else_served() {
    let dir = TestDir::new("overlay-hostile");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut alice = start_servant(&dir, "alice", m.port, "<fullmesh>0</fullmesh>");
    let mut bob = start_servant(&dir, "bob", m.port, "<fullmesh>0</fullmesh>");
    alice.proc.wait_log("neighbour up: ");
    bob.proc.wait_log("neighbour up: ");
    let eve = new_identity();
    let mut n = RawNeighbour::link_to(alice.port, &eve, "eve");
    n.send("NEIGHBOR HIGH");
    alice.proc.wait_log(&format!("neighbour up: {}", eve.id));
    let (_, before) = threads_and_rss(alice.proc.pid());
    let contact = |i: usize| format!("{i:020x}@127.0.9.{}:{}", 1 + i % 250, 1000 + i);
    let me = format!("{}@127.0.0.1:1", eve.id);
    // A shuffle of ten thousand servants: one line of some 400 KB.
    let huge: Vec<String> = (0..10_000).map(contact).collect();
    n.send(&format!("SHUFFLE 3 {me} {}", huge.join(" ")));
    let said = alice.proc.wait_log(&format!("neighbour {} at ", eve.id));
    assert!(
        said.contains("line longer than 24576 bytes; dropped"),
        "{said}\n{}",
        dump()
    );
    // One past the bound of 16, a flood of ids nobody wrote, and alice herself.
    let seventeen: Vec<String> = (0..17).map(contact).collect();
    n.send(&format!("SHUFFLE 3 {me} {}", seventeen.join(" ")));
    for line in 0..200 {
        let ids: Vec<String> = (0..256)
            .map(|i| format!("{:020x}/1/{}/1", 7, line * 256 + i + 1))
            .collect();
        n.send(&format!("IHAVE {}", ids.join(" ")));
    }
    let herself = format!("{}@127.0.0.1:{}", alice.id, alice.port);
    n.send(&format!("SHUFFLE 1 {me} {herself}"));
    // Everyone else is still served, both ways.
    alice.proc.send("alice after the flood");
    bob.wait_heard("alice", "alice after the flood");
    bob.proc.send("bob after the flood");
    alice.wait_heard("bob", "bob after the flood");
    assert!(alice.proc.is_running(), "{}", dump());
    assert_eq!(
        alice
            .proc
            .count_log(&format!("overlay link to {} ", alice.id)),
        0,
        "alice dialled herself\n{}",
        dump()
    );
    let (_, after) = threads_and_rss(alice.proc.pid());
    assert!(
        after < before + 32 * 1024,
        "alice grew from {before} KiB to {after} KiB\n{}",
        dump()
    );
}
