//! `/ban`, `/unban` and `/bans` typed on a running servant: the change is saved to its
//! configuration file (atomically, every other byte of the file kept, no temporary file
//! left behind) and applied at once: a banned peer's messages stop showing while it
//! still hears us, and show again after `/unban`. A target that is not a host, or a file
//! that cannot be written, changes nothing and says why; the servant keeps running.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// A configuration written by hand: a declaration, comments between and beside elements,
/// a blank line, and a ban that was there before.
fn original(manager_port: u16) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<!-- alice's servant, written by hand: /ban must keep every byte of this -->
<config>
  <connectionmgr>127.0.0.1</connectionmgr>   <!-- the manager, on this machine -->
  <port>{manager_port}</port>
  <name>alice</name>
  <listen>0</listen>
  <heartbeat>0.3</heartbeat>

  <!-- caps well above what this test needs -->
  <maxconnections>64</maxconnections>
  <bans>
    <!-- an old ban, kept -->
    <ban><target>10.254.254.254</target></ban>
  </bans>
</config>
"
    )
}

/// `original` with `target` banned: one line added before `</bans>`, nothing else moved.
fn with_ban(original: &str, target: &str) -> String {
    let close = "  </bans>\n";
    let at = original.find(close).expect("the original has </bans>");
    format!(
        "{}    <ban><target>{target}</target></ban>\n{}",
        &original[..at],
        &original[at..]
    )
}

/// Writes `text` to `config.xml` in a folder of its own (so the folder holds nothing else)
/// and starts alice on it.
fn start_alice(dir: &TestDir, text: &str) -> (Servant, PathBuf) {
    let folder = dir.path.join("alice");
    std::fs::create_dir_all(&folder).expect("create alice's folder");
    let path = folder.join("config.xml");
    std::fs::write(&path, text).expect("write alice's config.xml");
    let proc = Proc::spawn(
        "alice",
        SERVANT_BIN,
        &["--config".into(), path.clone().into_os_string()],
        "info",
        &dir.path,
    );
    (Servant::joined(proc, "alice"), path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())))
}

/// The names in `folder`, sorted, but for the servant's own key and known-peers files
/// (written beside its config, the second one at its own pace).
fn files_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", folder.display())))
        .map(|e| {
            e.expect("a folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n: &String| n != "config.key" && n != "config.known")
        .collect();
    names.sort();
    names
}

/// Types `command` on the servant and waits for exactly `answer` on its standard output.
fn answered(s: &mut Servant, command: &str, answer: &str) {
    s.proc.send(command);
    s.proc.wait_stdout(&format!("{answer:?}"), |l| l == answer);
}

#[test]
fn ban_and_unban_are_saved_and_take_effect_at_once() {
    let dir = TestDir::new("bans-edit");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let text = original(m.port);
    let (mut alice, path) = start_alice(&dir, &text);
    let folder = path.parent().expect("a folder").to_owned();
    let mut bob = start_servant(&dir, "bob", m.port, "");
    alice.wait_knows(&["bob"]);
    bob.wait_knows(&["alice"]);
    bob.proc.send("before the ban");
    alice.wait_heard("bob", "before the ban");

    // /ban: saved (one line more, every other byte as it was, no temporary file left) ...
    let saved = format!("(saved to {})", path.display());
    answered(
        &mut alice,
        "/ban 127.0.0.1",
        &format!("banned 127.0.0.1 {saved}"),
    );
    let banned_text = with_ban(&text, "127.0.0.1");
    assert_eq!(read(&path), banned_text, "{}", dump());
    assert_eq!(files_in(&folder), ["config.xml"], "{}", dump());

    // ... and applied at once: bob's connection is cut at his next line, and once his
    // sender notices, its reconnections are refused. He writes until it has noticed.
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    while bob.proc.count_log("cannot reach alice at ") == 0 {
        if Instant::now() >= deadline {
            fail("bob's sender was never refused after alice's /ban 127.0.0.1");
        }
        n += 1;
        bob.proc.send(&format!("during the ban {n}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    alice
        .proc
        .wait_log("refused a connection from banned 127.0.0.1");
    // Bob still hears alice: her bans do not touch her own sending.
    alice.proc.send("alice while banning");
    bob.wait_heard("alice", "alice while banning");
    bob.proc.send("during the ban, last");
    // Give a stray delivery a moment to show up, if there were one.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        alice.heard_from("bob"),
        ["before the ban"],
        "alice showed bob's messages while banning him\n{}",
        dump()
    );

    answered(&mut alice, "/bans", "banned: 10.254.254.254, 127.0.0.1");

    // A target that is not a host is refused, and the file is left alone.
    answered(
        &mut alice,
        "/ban not a host!",
        "\"not a host!\" is not an IP address or host name",
    );
    assert_eq!(read(&path), banned_text, "{}", dump());

    // /unban: the line goes, the file is the original again, and bob is heard again
    // once his sender's backoff lets it retry.
    answered(
        &mut alice,
        "/unban 127.0.0.1",
        &format!("unbanned 127.0.0.1 {saved}"),
    );
    assert_eq!(read(&path), text, "{}", dump());
    assert_eq!(files_in(&folder), ["config.xml"], "{}", dump());
    answered(&mut alice, "/bans", "banned: 10.254.254.254");
    bob.proc.send("after the unban");
    alice.wait_heard("bob", "after the unban");
    // What bob wrote while banned may be delivered now (he resends what alice missed),
    // but nothing twice.
    let heard = alice.heard_from("bob");
    println!("alice heard from bob: {heard:?}");
    let mut unique = heard.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        heard.len(),
        "shown twice: {heard:?}\n{}",
        dump()
    );
    assert!(alice.proc.is_running(), "{}", dump());
}

/// Gives a folder back its usual mode when the test ends, however it ends.
struct Writable<'a>(&'a Path);

impl Drop for Writable<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn a_config_that_cannot_be_written_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("bans-readonly");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let text = original(m.port);
    let (mut alice, path) = start_alice(&dir, &text);
    let folder = path.parent().expect("a folder").to_owned();

    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555))
        .expect("make alice's folder read-only");
    let restore = Writable(&folder);
    let probe = folder.join("probe");
    let blocker = folder.join(format!(".config.xml.tmp-{}", alice.proc.pid()));
    if std::fs::write(&probe, "").is_ok() {
        // Root writes into a read-only folder all the same, so the mode cannot stop the
        // save here. Block it another way, one that holds for root too: a folder where
        // the servant's temporary file would go (`.config.xml.tmp-PID`).
        println!("the folder's mode does not stop this user (root?); blocking the temporary file's name instead");
        drop(restore);
        std::fs::remove_file(&probe).expect("remove the probe file");
        std::fs::create_dir(&blocker).expect("create the blocking folder");
    }
    let before = files_in(&folder);

    alice.proc.send("/ban 10.9.9.9");
    let line = alice
        .proc
        .wait_stdout("the refusal to save", |l| l.starts_with("not changed: "));
    assert!(
        line.contains(&format!("{}: cannot write: ", path.display())),
        "{line:?}\n{}",
        dump()
    );
    alice.proc.wait_log("cannot write");
    assert_eq!(read(&path), text, "{}", dump());
    assert_eq!(files_in(&folder), before, "{}", dump());
    // Not applied either, and the servant keeps running.
    answered(&mut alice, "/bans", "banned: 10.254.254.254");
    assert!(alice.proc.is_running(), "{}", dump());

    // Once the folder can be written again, the same command works.
    if blocker.exists() {
        std::fs::remove_dir(&blocker).expect("remove the blocking folder");
    }
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))
        .expect("make alice's folder writable again");
    answered(
        &mut alice,
        "/ban 10.9.9.9",
        &format!("banned 10.9.9.9 (saved to {})", path.display()),
    );
    assert_eq!(read(&path), with_ban(&text, "10.9.9.9"), "{}", dump());
    assert_eq!(files_in(&folder), ["config.xml"], "{}", dump());
}

#[test]
fn a_banned_relay_is_retried_with_backoff() {
    let dir = TestDir::new("bans-relay");
    // The manager probes each servant that lists itself (`<probe>` is on by default).
    let m = start_manager(&dir, "<timeout>1.5</timeout><trustafter>0.3</trustafter>");
    // Alice tells the manager a port nothing listens on, so its probe finds her
    // unreachable and she is told to pull everything from bob, her relay.
    let nowhere = free_port();
    let text = original(m.port).replace(
        "<listen>0</listen>",
        &format!("<listen>0</listen>\n  <publicport>{nowhere}</publicport>"),
    );
    let (mut alice, path) = start_alice(&dir, &text);
    let mut bob = start_servant(&dir, "bob", m.port, "");
    alice.proc.wait_log("pulling from relay bob at ");
    bob.proc.send("before the ban");
    alice.wait_heard("bob", "before the ban");

    // Once alice bans bob, each pull connection is sent bob's newer messages first and
    // is cut at the first one. That must be retried with a growing backoff, not ten
    // times a second with a log line on each side every time.
    answered(
        &mut alice,
        "/ban 127.0.0.1",
        &format!("banned 127.0.0.1 (saved to {})", path.display()),
    );
    for i in 0..10 {
        bob.proc.send(&format!("during the ban {i}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let cut = alice.proc.count_log("relay bob connection ended: banned");
    println!("pull connections cut in about 2 s while the relay is banned: {cut}");
    assert!(cut >= 1, "the pull connection was never cut\n{}", dump());
    assert!(
        cut <= 6,
        "{cut} pull connections in about 2 s: no backoff\n{}",
        dump()
    );
    assert_eq!(alice.heard_from("bob"), ["before the ban"], "{}", dump());

    // Once bob is unbanned, alice hears him through the relay again.
    answered(
        &mut alice,
        "/unban 127.0.0.1",
        &format!("unbanned 127.0.0.1 (saved to {})", path.display()),
    );
    bob.proc.send("after the unban");
    alice.wait_heard("bob", "after the unban");
}
