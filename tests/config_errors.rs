//! Configuration mistakes stop a binary before it listens, with one line that names the
//! file, the line and the column.
//!
//! Golden files: each `tests/files/config_err_NNN.xml` (a servant's config.xml) and
//! `tests/files/manager_err_NNN.xml` (a manager's file) sits beside a `.txt` holding the
//! one line the binary must print for it (without the log line's `[time ERROR]` prefix).
//! To add a case, add both files.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn files_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("files")
}

/// Runs the binary on `file` (in tests/files, so the message shows the bare file name)
/// and returns its exit status and standard error.
fn run_on(program: &str, label: &str, file: &str) -> (std::process::ExitStatus, Vec<String>) {
    let mut p = Proc::spawn(
        label,
        program,
        &["--config".into(), file.into()],
        "info",
        &files_dir(),
    );
    let status = p.wait_exit();
    (status, p.stderr())
}

#[test]
fn each_bad_config_gives_its_golden_message() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(files_dir())
        .expect("read tests/files")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut ran = 0;
    for xml in &cases {
        let file = xml.file_name().unwrap().to_string_lossy().into_owned();
        let program = if file.starts_with("manager_err_") {
            MANAGER_BIN
        } else if file.starts_with("config_err_") {
            SERVANT_BIN
        } else {
            continue;
        };
        let expected_path = xml.with_extension("txt");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let expected = expected.trim_end_matches('\n');
        let (status, err) = run_on(program, &file, &file);
        ran += 1;
        let got: Vec<&str> = err.iter().map(|l| log_message(l)).collect();
        if status.success() || got != [expected] {
            failures.push(format!(
                "{file}: status {status}\n  expected: {expected}\n  got:      {}",
                got.join("\n            ")
            ));
        }
    }
    assert!(ran >= 20, "only {ran} golden cases found in tests/files");
    if !failures.is_empty() {
        fail(&format!(
            "{} of {ran} golden cases differ:\n{}",
            failures.len(),
            failures.join("\n")
        ));
    }
}

#[test]
fn servant_missing_config_file_is_one_error_line() {
    assert_missing_config_is_one_error_line("servant", SERVANT_BIN, "no-such-config.xml");
}

#[test]
fn unknown_manager_host_is_one_error_line() {
    let dir = TestDir::new("unknown-host");
    let cfg = "<config>\n  <connectionmgr>no-such-host.invalid</connectionmgr>\n  <port>8585</port>\n  <name>lost</name>\n</config>\n";
    let mut p = spawn_servant(&dir, "lost", cfg, &[], "info");
    let status = p.wait_exit();
    assert!(!status.success(), "an unknown host is fatal\n{}", dump());
    let err = p.stderr();
    assert_eq!(err.len(), 1, "a single error line\n{}", dump());
    let msg = log_message(&err[0]);
    assert!(
        msg.contains("\"no-such-host.invalid\"") && msg.contains("unknown"),
        "the line names the host\n{}",
        dump()
    );
}
