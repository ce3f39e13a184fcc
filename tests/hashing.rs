//! A servant's share is hashed in the background: the servant joins and chats at once
//! whatever its share folder holds, a file is offered only once hashed, a request made
//! meanwhile gets an `ERR` that says the share is still being hashed, and a piece that no
//! longer matches its hash (the file changed on disk while shared) is never sent.

mod common;
mod sharing;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use genp2p::transfer::manifest::{Manifest, PIECE_SIZE};

use common::*;
use sharing::*;

/// Sparse files of `each` bytes (zeros, no disk used), `count` of them, in `folder`.
fn sparse_files(folder: &std::path::Path, count: usize, each: u64) {
    std::fs::create_dir_all(folder).expect("create the share folder");
    for i in 0..count {
        let f = File::create(folder.join(format!("zeros-{i}.bin"))).expect("create a file");
        f.set_len(each).expect("make it sparse");
    }
}

#[test]
fn a_servant_with_2_gib_to_hash_joins_and_chats_before_it_is_hashed() {
    let dir = TestDir::new("hash-late");
    sparse_files(&dir.path.join("big-share"), 4, 512 * MIB);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut bob = start_servant(&dir, "bob", m.port, "");
    let mut alice = start_servant(&dir, "alice", m.port, "<share>big-share</share>");
    alice.proc.send("/shares");
    let hashing = alice.proc.wait_stdout("/shares", |l| {
        l.contains("hashing the shared files")
            || l.contains("looking through")
            || l.contains("every shared file")
    });
    // Joined (start_servant waits for `joined as`) while 2 GiB wait to be hashed: asked
    // now, alice says so instead of a bare "no such file".
    let mut c = Raw::connect(alice.port);
    c.send(&format!("MANIFEST {}", "0".repeat(64)));
    let answer = c.expect_line_where("an ERR for a file not hashed yet", |l| l.starts_with("ERR"));
    let hashed_already = alice.proc.count_log(" shared file(s), ") > 0;
    assert!(
        answer.contains("still being hashed") || hashed_already,
        "while hashing, an unknown id's ERR says the share is still being hashed: {answer:?}\n{}",
        dump()
    );
    assert!(
        !hashing.contains("every shared file"),
        "/shares while hashing says how far it has come: {hashing:?}\n{}",
        dump()
    );
    assert!(
        !hashed_already,
        "alice hashed 2 GiB before she joined: the share held her off the network\n{}",
        dump()
    );
    alice.wait_knows(&["bob"]);
    bob.wait_knows(&["alice"]);
    bob.proc.send("hello while you hash");
    alice.wait_heard("bob", "hello while you hash");
    // Then every file is offered, and `/shares` says so.
    alice.wait_hashed();
    alice.proc.send("/shares");
    alice.proc.wait_stdout("/shares when hashed", |l| {
        l.contains("every shared file is hashed: 4 offered")
    });
    c.send("FILES");
    let mut listed = 0;
    loop {
        let line = c.expect_line_where("FILE or END", |l| l.starts_with("FILE ") || l == "END");
        if line == "END" {
            break;
        }
        listed += 1;
    }
    assert_eq!(listed, 4, "every hashed file is offered\n{}", dump());
}

#[test]
fn a_piece_changed_on_disk_is_never_sent_and_the_file_is_offered_no_more() {
    let dir = TestDir::new("hash-changed");
    let path = dir.path.join("k-share").join("data.bin");
    make_file(&path, 4 * MIB, 11);
    let id = Manifest::of_file(&path, "data.bin", PIECE_SIZE)
        .expect("manifest")
        .id();
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let k = start_servant(&dir, "keeper", m.port, "<share>k-share</share>");
    k.wait_hashed();
    let mut c = Raw::connect(k.port);
    c.send(&format!("GET {id} 0"));
    let first = c.expect_line_where("DATA 0", |l| {
        l.starts_with("DATA 0 ") || l.starts_with("ERR")
    });
    assert!(
        first.starts_with("DATA 0 "),
        "the piece as hashed is sent: {first:?}\n{}",
        dump()
    );
    // Read the piece's bytes off the connection before asking again.
    let len: usize = first.rsplit(' ').next().unwrap().parse().unwrap();
    c.expect_bytes(len, "the piece");
    // The file changes under the servant: the first piece's bytes are no longer hashed ones.
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open the shared file");
    f.write_all_at(b"changed under the servant", 10)
        .expect("change the file");
    drop(f);
    c.send(&format!("GET {id} 0"));
    let answer = c.expect_line_where("the answer to GET", |l| {
        l.starts_with("DATA ") || l.starts_with("ERR")
    });
    assert!(
        answer.starts_with("ERR") && answer.contains("changed since it was hashed"),
        "a piece that no longer matches its hash is never sent: {answer:?}\n{}",
        dump()
    );
    c.send("FILES");
    let line = c.expect_line_where("FILE or END", |l| l.starts_with("FILE ") || l == "END");
    assert_eq!(
        line,
        "END",
        "a changed file is not offered under its old hash\n{}",
        dump()
    );
}
