//! File sharing, what a servant refuses and what it shows: requests that try to climb out
//! of the share folder or make no sense are refused while the connection stays usable; a
//! shared file swapped for a link never sends what the link points to; squatters cannot
//! keep upload slots from an honest download; `/files` and `/downloads` show who has what
//! and how far a download has come. The shared helpers are in tests/sharing.

mod common;
mod sharing;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::thread::{self};
use std::time::{Duration, Instant};

use genp2p::transfer::manifest::{Manifest, PIECE_SIZE};

use common::*;
use sharing::*;

#[test]
fn requests_outside_the_shared_files_are_refused_and_the_connection_stays_usable() {
    let dir = TestDir::new("transfer-traversal");
    let share = dir.path.join("k-share");
    let data = share.join("data.bin");
    let size = 3 * MIB + 1234;
    make_file(&data, size, 5);
    std::os::unix::fs::symlink("/etc/passwd", share.join("passwd")).expect("make a symlink");
    std::fs::write(share.join(".hidden"), "not for sharing\n").expect("write .hidden");
    std::fs::create_dir_all(share.join("sub")).expect("make a subfolder");
    std::fs::write(share.join("sub").join("inner.txt"), "nested\n").expect("write sub/inner.txt");
    let manifest = Manifest::of_file(&data, "data.bin", PIECE_SIZE).expect("manifest");
    let id = manifest.id();
    let passwd_id = Manifest::of_file(Path::new("/etc/passwd"), "passwd", PIECE_SIZE)
        .expect("manifest of /etc/passwd")
        .id();
    let hidden_id = Manifest::of_file(&share.join(".hidden"), "hidden", PIECE_SIZE)
        .expect("manifest of .hidden")
        .id();
    let bytes = std::fs::read(&data).expect("read data.bin");

    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let k = start_servant(&dir, "keeper", m.port, "<share>k-share</share>");
    k.wait_hashed();

    // Only the regular, visible file is listed.
    let mut c = Raw::connect(k.port);
    c.send("FILES");
    let mut listed = Vec::new();
    loop {
        match c.expect_line("the FILES answer") {
            l if l == "END" => break,
            l => listed.push(l),
        }
    }
    assert_eq!(
        listed,
        vec![format!("FILE {id} {size} complete data.bin")],
        "FILES\n{}",
        dump()
    );

    // Each nonsense request gets an ERR line, on the same connection.
    let bad = [
        "MANIFEST ../../etc/passwd".to_owned(),
        "GET ../x 0".to_owned(),
        format!("GET {id} 999999"),
        format!("GET {id} -1"),
        format!("GET {id} 4"),
        format!("GET {id}"),
        format!("GET {id} 0 1"),
        "FILES extra".to_owned(),
        format!("MANIFEST {passwd_id}"),
        format!("GET {passwd_id} 0"),
        format!("MANIFEST {hidden_id}"),
        format!("GET {hidden_id} 0"),
        "MANIFEST sub/inner.txt".to_owned(),
    ];
    for req in &bad {
        c.send(req);
        let got = c.expect_line(&format!("the answer to {req:?}"));
        assert!(
            got.starts_with("ERR "),
            "{req:?} was answered {got:?}\n{}",
            dump()
        );
    }
    // Numbers have one spelling; too large is out of range, not badly written.
    for (req, want) in [
        (format!("GET {id} 003"), "ERR bad piece number \"003\""),
        (format!("GET {id} +3"), "ERR bad piece number \"+3\""),
        (
            format!("GET {id} 100000000000000000000000"),
            "ERR piece \"100000000000000000000000\" out of range (the file has 4)",
        ),
        (
            format!("GET {id} 4"),
            "ERR piece 4 out of range (the file has 4)",
        ),
        (
            format!("MANIFEST {}", id.to_uppercase()),
            "ERR no such file",
        ),
    ] {
        c.send(&req);
        let got = c.expect_line(&format!("the answer to {req:?}"));
        assert!(
            got.starts_with(want),
            "{req:?} was answered {got:?}\n{}",
            dump()
        );
    }

    // And the connection still serves: the manifest, and the short last piece.
    c.send(&format!("MANIFEST {id}"));
    let want = manifest.to_lines();
    for (i, want_line) in want.lines().enumerate() {
        let got = c.expect_line(&format!("line {i} of the manifest"));
        assert_eq!(got, want_line, "manifest line {i}\n{}", dump());
    }
    c.send(&format!("GET {id} 3"));
    assert_eq!(c.expect_line("the DATA line"), "DATA 3 1234", "{}", dump());
    let got = c.expect_bytes(1234, "piece 3");
    assert!(
        got == bytes[3 * MIB as usize..],
        "piece 3 differs\n{}",
        dump()
    );

    // A conversation may even open with nonsense, as long as it is a file request.
    let mut c2 = Raw::connect(k.port);
    c2.send("MANIFEST ../../etc/passwd");
    let got = c2.expect_line("the answer to a traversal as the first line");
    assert!(got.starts_with("ERR "), "{got:?}\n{}", dump());
    c2.send(&format!("GET {id} 0"));
    assert_eq!(
        c2.expect_line("the DATA line"),
        format!("DATA 0 {MIB}"),
        "{}",
        dump()
    );
    let got = c2.expect_bytes(MIB as usize, "piece 0");
    assert!(got == bytes[..MIB as usize], "piece 0 differs\n{}", dump());

    // A servant that bans 127.0.0.1 closes on us before reading a word.
    let fortress = start_servant(
        &dir,
        "fortress",
        m.port,
        "<share>k-share</share><bans><ban><target>127.0.0.1</target></ban></bans>",
    );
    let mut f = Raw::connect(fortress.port);
    let _ = f.stream.write_all(b"FILES\n");
    assert_eq!(
        f.read_line(WAIT),
        Got::Closed,
        "a banned host listed files\n{}",
        dump()
    );
}

#[test]
fn files_shows_who_has_what_and_downloads_shows_progress() {
    const PIECES: usize = 64;
    let dir = TestDir::new("transfer-files");
    let common_file = dir.path.join("alice-share").join("common.bin");
    make_file(&common_file, 4 * MIB, 6);
    std::fs::write(
        dir.path.join("alice-share").join("only-alice.txt"),
        "hello\n",
    )
    .expect("write only-alice.txt");
    let bob_share = dir.path.join("bob-share");
    make_file(&bob_share.join("big.bin"), PIECES as u64 * MIB, 7);
    std::fs::copy(&common_file, bob_share.join("common.bin")).expect("copy common.bin");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let _alice = start_servant(&dir, "alice", m.port, "<share>alice-share</share>");
    let _bob = start_servant(&dir, "bob", m.port, "<share>bob-share</share>");
    _alice.wait_hashed();
    _bob.wait_hashed();
    let mut carol = start_servant(&dir, "carol", m.port, "<downloads>carol-dl</downloads>");
    carol.wait_knows(&["alice", "bob"]);

    carol.proc.send("/downloads");
    carol
        .proc
        .wait_stdout("no downloads", |l| l == "no downloads");

    carol.proc.send("/files");
    carol
        .proc
        .wait_stdout("the /files header", |l| l == "3 file(s) on the network");
    // The rows follow the header at once.
    let rows: Vec<String> = wait_for("the three /files rows", || {
        let out = carol.proc.stdout();
        let at = out.iter().position(|l| l == "3 file(s) on the network")?;
        let rows: Vec<String> = out[at + 1..]
            .iter()
            .filter(|l| l.starts_with("  "))
            .cloned()
            .collect();
        (rows.len() >= 3).then_some(rows)
    });
    let row = |name: &str| -> (u64, BTreeSet<String>) {
        let r = rows
            .iter()
            .find(|r| r.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| fail(&format!("no /files row for {name}: {rows:?}")));
        let (left, who) = r
            .split_once(" bytes  ")
            .unwrap_or_else(|| fail(&format!("cannot read {r:?}")));
        let size = left
            .split_whitespace()
            .last()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail(&format!("no size in {r:?}")));
        (size, who.split(", ").map(str::to_owned).collect())
    };
    assert_eq!(
        row("common.bin"),
        (4 * MIB, names(&["alice", "bob"])),
        "{rows:?}"
    );
    assert_eq!(row("only-alice.txt"), (6, names(&["alice"])), "{rows:?}");
    assert_eq!(
        row("big.bin"),
        (PIECES as u64 * MIB, names(&["bob"])),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 3, "{rows:?}\n{}", dump());

    // /downloads while downloading, then after.
    carol.proc.send("/get big.bin");
    let deadline = Instant::now() + DOWNLOAD_WAIT;
    while !carol
        .proc
        .stdout()
        .iter()
        .any(|l| is_download_end(l, "big.bin"))
    {
        if Instant::now() >= deadline {
            fail(&format!(
                "timed out after {DOWNLOAD_WAIT:?} waiting for the download"
            ));
        }
        carol.proc.send("/downloads");
        thread::sleep(Duration::from_millis(25));
    }
    wait_download(&carol, "big.bin");
    carol.proc.send("/downloads");
    let progress = |l: &str| -> Option<(usize, usize)> {
        let rest = l.strip_prefix("big.bin ")?;
        let fraction = rest.split_whitespace().next()?;
        let (done, total) = fraction.split_once('/')?;
        Some((done.parse().ok()?, total.parse().ok()?))
    };
    let last = carol
        .proc
        .wait_stdout("a /downloads row for the finished download", |l| {
            progress(l) == Some((PIECES, PIECES)) && l.ends_with(" done")
        });
    assert!(last.contains(" 100% "), "{last}\n{}", dump());
    let midway: Vec<String> = carol
        .proc
        .stdout()
        .into_iter()
        .filter(|l| {
            progress(l).is_some_and(|(done, total)| 0 < done && done < total && total == PIECES)
                && l.ends_with("downloading from bob")
        })
        .collect();
    assert!(
        !midway.is_empty(),
        "/downloads never showed the download half done\n{}",
        dump()
    );
    assert!(
        carol
            .proc
            .stdout()
            .iter()
            .filter_map(|l| progress(l))
            .all(|(done, total)| done <= total),
        "{}",
        dump()
    );
    assert_only_the_file(&dir.path.join("carol-dl"), "big.bin");
}

#[test]
fn a_shared_file_swapped_for_a_link_never_sends_what_the_link_points_to() {
    // While GETs run, a loop keeps replacing the shared file with a symbolic link to a
    // file outside the share and putting the file back, each by an atomic rename. Every
    // piece that comes out must be the shared file's own; not one byte of the outside one.
    let dir = TestDir::new("transfer-swap");
    let share = dir.path.join("s-share");
    let data = share.join("data.bin");
    make_file(&data, 4096, 7);
    let original = std::fs::read(&data).expect("read data.bin");
    let outside = dir.path.join("secret.bin");
    std::fs::write(&outside, vec![b'S'; 4096]).expect("write the outside file");
    let id = Manifest::of_file(&data, "data.bin", PIECE_SIZE)
        .expect("manifest")
        .id();
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let k = start_servant(&dir, "keeper", m.port, "<share>s-share</share>");
    k.wait_hashed();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (share, outside, original, stop) = (
            share.clone(),
            outside.clone(),
            original.clone(),
            Arc::clone(&stop),
        );
        thread::spawn(move || {
            let (link, copy) = (share.join(".swap-link"), share.join(".swap-copy"));
            let mut swaps = 0u64;
            let end = Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < end {
                let _ = std::fs::remove_file(&link);
                if std::os::unix::fs::symlink(&outside, &link).is_ok()
                    && std::fs::rename(&link, share.join("data.bin")).is_ok()
                {
                    swaps += 1;
                }
                if std::fs::write(&copy, &original).is_ok() {
                    let _ = std::fs::rename(&copy, share.join("data.bin"));
                }
            }
            swaps
        })
    };
    let (mut served, mut refused) = (0u32, 0u32);
    let end = Instant::now() + Duration::from_secs(3);
    for _ in 0..2000 {
        if Instant::now() > end {
            break;
        }
        let mut c = Raw::connect(k.port);
        c.send(&format!("GET {id} 0"));
        match c.read_line(WAIT) {
            Got::Line(l) if l.starts_with("DATA 0 ") => {
                let got = c.expect_bytes(4096, "piece 0");
                assert!(
                    !got.contains(&b'S') || got == original,
                    "bytes from outside the share left\n{}",
                    dump()
                );
                assert_eq!(got, original, "piece 0 is the shared file's\n{}", dump());
                served += 1;
            }
            Got::Line(l) if l.starts_with("ERR ") => refused += 1,
            other => fail(&format!("unexpected answer {other:?}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let swaps = swapper.join().expect("the swapper");
    assert!(swaps > 10, "the file was swapped {swaps} times");
    assert!(
        served > 0,
        "some GETs met the real file: served {served}, refused {refused}"
    );
}

#[test]
fn squatters_cannot_keep_upload_slots_from_an_honest_download() {
    // Eight connections from eight addresses each ask for a piece and then read nothing
    // (and ask nothing more): on their own they would hold all of keeper's eight slots.
    // They come from addresses no listed servant has, so they get half at most.
    let dir = TestDir::new("transfer-squat");
    let original = dir.path.join("k-share").join("data.bin");
    make_file(&original, 16 * MIB, 3);
    let id = Manifest::of_file(&original, "data.bin", PIECE_SIZE)
        .expect("manifest")
        .id();
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let k = Servant::joined(
        spawn_servant(
            &dir,
            "keeper",
            &servant_config("keeper", m.port, Some(0), "<share>k-share</share>"),
            &[],
            "debug",
        ),
        "keeper",
    );
    k.wait_hashed();
    // One address gets half the slots, no more.
    let one = std::net::Ipv4Addr::new(127, 0, 2, 1);
    let mut held: Vec<Raw> = (0..4)
        .map(|_| {
            let mut c = Raw::connect_from(one, k.port);
            c.send("FILES");
            c.expect_line_where("the END of FILES", |l| l == "END");
            c
        })
        .collect();
    let mut fifth = Raw::connect_from(one, k.port);
    fifth.send("FILES");
    assert_eq!(
        fifth.expect_line("a refusal"),
        "ERR busy: 4 uploads at once to one address; try later",
        "{}",
        dump()
    );
    held.clear();
    wait_for("the four places to come back", || {
        (k.proc.count_log("127.0.2.1:") >= 5).then_some(())
    });
    let mut squatters: Vec<Raw> = (0..8)
        .map(|i| {
            let mut c = Raw::connect_from(std::net::Ipv4Addr::new(127, 0, 2, 10 + i), k.port);
            c.send(&format!("GET {id} 0"));
            c
        })
        .collect();
    // Half of them get a slot (their piece is on its way), the others are told busy.
    let busy = squatters
        .iter_mut()
        .map(|c| c.expect_line("DATA or ERR"))
        .filter(|l| l.starts_with("ERR busy: "))
        .count();
    assert_eq!(busy, 4, "{}", dump());
    thread::sleep(Duration::from_millis(300));
    let mut b = start_servant(&dir, "b", m.port, "<downloads>b-dl</downloads>");
    b.wait_knows(&["keeper"]);
    b.proc.send("/get data.bin");
    let line = wait_download(&b, "data.bin");
    assert!(line.contains("downloaded"), "{line}\n{}", dump());
    assert_eq!(
        hash_of(&dir.path.join("b-dl").join("data.bin")),
        hash_of(&original),
        "{}",
        dump()
    );
    // A stranger's newcomer takes over a squatter's slot that has been still for 1 s (its
    // piece sits in the socket buffers; nothing more moves).
    thread::sleep(Duration::from_millis(1500));
    let mut newcomer = Raw::connect_from(std::net::Ipv4Addr::new(127, 0, 2, 99), k.port);
    newcomer.send("FILES");
    newcomer.expect_line_where("the END of FILES", |l| l == "END");
    k.proc.wait_log("upload slot of 127.0.2.");
    drop(squatters);
}
