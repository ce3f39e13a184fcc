//! File sharing between real servants: a file downloaded with `/get` arrives byte for byte,
//! under its name only once whole; several sources share the work and losing one half way
//! does not matter; a killed download resumes with only the pieces it lacked; a source that
//! sends corrupt pieces is caught and dropped. What a servant refuses and what `/files` and
//! `/downloads` show are in tests/transfer_requests.rs.
//!
//! The test data is pseudo-random (xorshift, seeded per test), so a run is repeatable and
//! no piece looks like another. The corrupting source (`Liar`, in tests/sharing) registers
//! with the manager like a servant and answers `FILES` and `MANIFEST` truthfully (with the
//! real manifest, computed by the crate's own `Manifest::of_file`), but `GET` with bytes
//! that do not match.

mod common;
mod sharing;

use std::thread::{self};
use std::time::Instant;

use common::*;
use sharing::*;

#[test]
fn a_64_mib_file_arrives_identical_and_appears_under_its_name_only_when_whole() {
    let dir = TestDir::new("transfer-one");
    let original = dir.path.join("a-share").join("big.bin");
    make_file(&original, 64 * MIB, 1);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let _a = start_servant(&dir, "a", m.port, "<share>a-share</share>");
    _a.wait_hashed();
    let mut b = start_servant(&dir, "b", m.port, "<downloads>b-dl</downloads>");
    b.wait_knows(&["a"]);
    b.proc.send("/get big.bin");

    // Watch the downloads folder until the download ends.
    let dl = dir.path.join("b-dl");
    let (mut part_only, mut both) = (0usize, None);
    let deadline = Instant::now() + DOWNLOAD_WAIT;
    loop {
        let seen = listing(&dl);
        match (seen.contains("big.bin"), seen.contains(".big.bin.part")) {
            (true, true) => both = Some(seen),
            (false, true) => part_only += 1,
            _ => {}
        }
        if b.proc
            .stdout()
            .iter()
            .any(|l| is_download_end(l, "big.bin"))
        {
            break;
        }
        if Instant::now() >= deadline {
            fail(&format!(
                "timed out after {DOWNLOAD_WAIT:?} waiting for the download"
            ));
        }
        thread::sleep(FAST_POLL);
    }
    let line = wait_download(&b, "big.bin");
    assert_eq!(
        pieces_from(&line),
        vec![("a".to_owned(), 64)],
        "{line}\n{}",
        dump()
    );
    assert!(
        part_only > 0,
        "never saw .big.bin.part alone while downloading\n{}",
        dump()
    );
    assert_eq!(
        both,
        None,
        "big.bin and .big.bin.part existed at once\n{}",
        dump()
    );
    assert_only_the_file(&dl, "big.bin");
    assert_eq!(
        hash_of(&dl.join("big.bin")),
        hash_of(&original),
        "the downloaded file differs\n{}",
        dump()
    );
}

#[test]
fn three_sources_share_the_work_and_one_killed_half_way_is_not_missed() {
    const PIECES: usize = 96;
    let dir = TestDir::new("transfer-three");
    let original = dir.path.join("s1-share").join("big.bin");
    make_file(&original, PIECES as u64 * MIB, 2);
    for s in ["s2", "s3"] {
        let share = dir.path.join(format!("{s}-share"));
        std::fs::create_dir_all(&share).expect("create a share folder");
        std::fs::hard_link(&original, share.join("big.bin")).expect("link the file");
    }
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut sources: Vec<Servant> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| {
            let s = start_servant(&dir, n, m.port, &format!("<share>{n}-share</share>"));
            s.wait_hashed();
            s
        })
        .collect();
    let mut d = start_servant(
        &dir,
        "d",
        m.port,
        "<downloads>d-dl</downloads><workers>4</workers>",
    );
    d.wait_knows(&["s1", "s2", "s3"]);
    d.proc.send("/get big.bin");

    let dl = dir.path.join("d-dl");
    let state = dl.join(".big.bin.state");
    wait_recorded(&state, PIECES / 2);
    sources[1].proc.kill();
    let at_kill = recorded(&state);
    assert!(
        at_kill < PIECES,
        "the download was over before s2 was killed ({at_kill} pieces); nothing was proven\n{}",
        dump()
    );

    let line = wait_download(&d, "big.bin");
    let from = pieces_from(&line);
    assert_eq!(total_pieces(&from), PIECES, "{line}\n{}", dump());
    assert!(
        from.iter().filter(|(_, n)| *n > 0).count() > 1,
        "pieces came from one source only: {line}\n{}",
        dump()
    );
    let from_s2 = from.iter().find(|(w, _)| w == "s2").map_or(0, |(_, n)| *n);
    assert!(
        from_s2 > 0 && from_s2 <= at_kill,
        "s2 served {from_s2} pieces, {at_kill} were in when it was killed: {line}\n{}",
        dump()
    );
    assert_only_the_file(&dl, "big.bin");
    assert_eq!(
        hash_of(&dl.join("big.bin")),
        hash_of(&original),
        "the downloaded file differs\n{}",
        dump()
    );
}

#[test]
fn a_killed_download_resumes_fetching_only_what_was_missing() {
    const PIECES: usize = 64;
    let dir = TestDir::new("transfer-resume");
    let original = dir.path.join("a-share").join("big.bin");
    make_file(&original, PIECES as u64 * MIB, 3);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let _a = start_servant(&dir, "a", m.port, "<share>a-share</share>");
    _a.wait_hashed();
    let cfg = servant_config("b", m.port, Some(0), "<downloads>b-dl</downloads>");
    let mut b = Servant::joined(spawn_servant(&dir, "b", &cfg, &[], "info"), "b");
    b.wait_knows(&["a"]);
    b.proc.send("/get big.bin");

    let dl = dir.path.join("b-dl");
    let state = dl.join(".big.bin.state");
    wait_recorded(&state, PIECES / 2);
    b.proc.kill();
    let had = recorded(&state);
    assert!(
        0 < had && had < PIECES,
        "the state file records {had} of {PIECES} pieces after kill -9\n{}",
        dump()
    );
    assert_eq!(
        listing(&dl),
        names(&[".big.bin.part", ".big.bin.state"]),
        "after kill -9\n{}",
        dump()
    );

    // The same configuration, started again.
    let again = Proc::spawn(
        "b-restarted",
        SERVANT_BIN,
        &["--config".into(), dir.path.join("b.xml").into_os_string()],
        "info",
        &dir.path,
    );
    let mut b = Servant::joined(again, "b");
    b.wait_knows(&["a"]);
    b.proc.send("/get big.bin");
    let resumed = b
        .proc
        .wait_stdout("the resume line", |l| l.starts_with("resuming big.bin: "));
    assert_eq!(
        resumed,
        format!("resuming big.bin: {had} of {PIECES} pieces already here and verified"),
        "every recorded piece is kept\n{}",
        dump()
    );
    let line = wait_download(&b, "big.bin");
    assert_eq!(
        total_pieces(&pieces_from(&line)),
        PIECES - had,
        "only the missing pieces are fetched: {line}\n{}",
        dump()
    );
    assert_only_the_file(&dl, "big.bin");
    assert_eq!(
        hash_of(&dl.join("big.bin")),
        hash_of(&original),
        "the resumed file differs\n{}",
        dump()
    );
}

#[test]
fn a_source_sending_corrupt_pieces_is_dropped_after_its_first_lie() {
    const PIECES: usize = 24;
    const WORKERS: usize = 4;
    let dir = TestDir::new("transfer-liar");
    let original = dir.path.join("honest-share").join("big.bin");
    make_file(&original, PIECES as u64 * MIB, 4);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let _honest = start_servant(&dir, "honest", m.port, "<share>honest-share</share>");
    _honest.wait_hashed();
    let liar = Liar::start(m.port, "liar", &original, "big.bin");
    let mut d = start_servant(
        &dir,
        "d",
        m.port,
        &format!("<downloads>d-dl</downloads><workers>{WORKERS}</workers>"),
    );
    d.wait_knows(&["honest", "liar"]);
    d.proc.send("/get big.bin");

    let line = wait_download(&d, "big.bin");
    let dl = dir.path.join("d-dl");
    assert_eq!(
        hash_of(&dl.join("big.bin")),
        hash_of(&original),
        "the downloaded file differs\n{}",
        dump()
    );
    assert_only_the_file(&dl, "big.bin");
    assert_eq!(
        pieces_from(&line),
        vec![("honest".to_owned(), PIECES)],
        "every piece comes from the honest source: {line}\n{}",
        dump()
    );
    let caught = d
        .proc
        .wait_stderr("a piece from the liar failing verification", |l| {
            l.contains("from liar failed verification")
        });
    assert!(caught.contains(" WARN"), "{caught}\n{}", dump());

    let log = liar.log();
    let asked = log.iter().filter(|e| matches!(e, Lie::Asked(_))).count();
    let first_lie = log
        .iter()
        .position(|e| matches!(e, Lie::Answered(_)))
        .unwrap_or_else(|| fail(&format!("the liar was never asked for a piece: {log:?}")));
    let asked_after = log[first_lie..]
        .iter()
        .filter(|e| matches!(e, Lie::Asked(_)))
        .count();
    // After its first corrupt answer, only workers that had already chosen the liar may
    // still ask it once each; then never again.
    assert!(
        asked_after < WORKERS && asked <= WORKERS,
        "the liar was asked {asked} times, {asked_after} after its first lie: {log:?}\n{}",
        dump()
    );
}
