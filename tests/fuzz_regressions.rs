//! Every input a fuzzer ever found a problem with, replayed on each `cargo test`.
//!
//! The fuzz targets (fuzz/, run with `make fuzz`) and this test share their checks
//! (fuzz/checks.rs), so a stored input meets exactly the code that found it. A finding is
//! kept as `tests/files/fuzz/TARGET/NAME`, where TARGET is the fuzz target (`config`,
//! `peer_list`, `lines` or `handshake`); to add one, copy the file from fuzz/artifacts/TARGET/ there
//! and fix the bug. The committed seeds (fuzz/seeds/TARGET/) are replayed too, so the
//! checks themselves stay honest without cargo-fuzz.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::fs;
use std::path::{Path, PathBuf};

use genp2p::protocol::{check_token, ManagerCommand};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("a readable entry").path())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Feeds every stored input for `target` to `check`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in [root.join("tests/files/fuzz"), root.join("fuzz/seeds")] {
        for file in inputs(&dir.join(target)) {
            let data = fs::read(&file).expect("a readable input");
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(
                result.is_ok(),
                "{target}: {} fails its check",
                file.display()
            );
            count += 1;
        }
    }
    count
}

#[test]
fn config_inputs() {
    assert!(replay("config", checks::config) > 0);
}

#[test]
fn peer_list_inputs() {
    assert!(replay("peer_list", checks::peer_list) > 0);
}

#[test]
fn lines_inputs() {
    assert!(replay("lines", checks::lines) > 0);
}

#[test]
fn handshake_inputs() {
    assert!(replay("handshake", checks::handshake) > 0);
}

/// tests/files/fuzz/lines/listening-name-fffe: `listening 2230 ab12 <U+FFFE>` was
/// accepted, and the name then made the manager's `<peers>` document unreadable to every
/// servant (XML 1.0 cannot hold U+FFFE or U+FFFF). Names and ids now refuse both.
#[test]
fn names_xml_cannot_hold_are_refused() {
    for c in ['\u{fffe}', '\u{ffff}'] {
        let name = format!("ab{c}");
        assert!(check_token("name", &name).is_err(), "{name:?}");
        let (id, key) = ("3fa9c0d2e81b7a5c44d1", "ab".repeat(32));
        assert!(ManagerCommand::parse(&format!("listening 2230 {id} {name} {key}")).is_err());
        assert!(ManagerCommand::parse(&format!("complain {name}")).is_err());
    }
    // Other non-ASCII letters stay allowed.
    assert!(check_token("name", "ünïcödé-名前").is_ok());
}
