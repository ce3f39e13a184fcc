//! A servant's key file: created at the first start beside the configuration, mode 0600,
//! the same id at every start, and a clear one-line refusal for a key file that cannot be
//! used.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

/// `servant --config FILE --identity`: its lines, after it exits.
fn identity_lines(dir: &TestDir, config: &std::path::Path) -> (bool, Vec<String>, Vec<String>) {
    let mut p = Proc::spawn(
        "identity",
        SERVANT_BIN,
        &["--config".into(), config.into(), "--identity".into()],
        "info",
        &dir.path,
    );
    let ok = p.wait_exit().success();
    (ok, p.stdout(), p.stderr())
}

fn field(lines: &[String], name: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| fail(&format!("no {name:?} line in {lines:?}")))
}

#[test]
fn the_key_is_made_once_kept_private_and_gives_the_same_id_at_every_start() {
    let dir = TestDir::new("identity-kept");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let cfg = dir.write("alice.xml", &servant_config("alice", m.port, Some(0), ""));
    let key = dir.path.join("alice.key");
    assert!(!key.exists());
    let (ok, out, err) = identity_lines(&dir, &cfg);
    assert!(ok, "{}", dump());
    assert!(err.is_empty(), "{err:?}");
    let id = field(&out, "id");
    let public = field(&out, "public key");
    assert_eq!(id.len(), 20, "{out:?}");
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(public.len(), 64, "{out:?}");
    assert_eq!(field(&out, "key file"), key.display().to_string());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is private");

    // Two runs: the id is the one --identity printed, both times.
    let first = start_servant(&dir, "alice", m.port, "");
    assert_eq!(first.id, id, "{}", dump());
    // --identity works while the servant runs (it neither locks nor rewrites the file).
    let (ok, again, _) = identity_lines(&dir, &cfg);
    assert!(ok, "{}", dump());
    assert_eq!(field(&again, "id"), id);
    drop(first);
    let second = start_servant(&dir, "alice", m.port, "");
    assert_eq!(second.id, id, "{}", dump());

    // Another configuration is another servant, with a key of its own.
    let bob = start_servant(&dir, "bob", m.port, "");
    assert_ne!(bob.id, id);
}

#[test]
fn a_key_file_in_use_is_refused() {
    let dir = TestDir::new("identity-in-use");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let shared = dir.path.join("shared.key");
    let extra = format!("<identity>{}</identity>", shared.display());
    let _a = start_servant(&dir, "a", m.port, &extra);
    let mut b = spawn_servant(
        &dir,
        "b",
        &servant_config("b", m.port, Some(0), &extra),
        &[],
        "info",
    );
    assert!(!b.wait_exit().success(), "{}", dump());
    let err = b.stderr();
    assert_eq!(err.len(), 1, "one error line\n{}", dump());
    assert!(
        log_message(&err[0]).starts_with(&format!(
            "{}: this key file is in use by another running servant",
            shared.display()
        )),
        "{}",
        dump()
    );
}

#[test]
fn bad_key_files_are_one_error_line_naming_the_file() {
    let dir = TestDir::new("identity-bad");
    let cfg = dir.write(
        "k.xml",
        "<config><connectionmgr>127.0.0.1</connectionmgr></config>",
    );
    let key = dir.path.join("k.key");
    let cases: [(&str, u32, &str); 5] = [
        (
            "secret 12\nincarnation 1\n",
            0o600,
            ":1: the secret must be 64 lowercase hex digits",
        ),
        (
            "secret zz\n",
            0o600,
            ":1: the secret must be 64 lowercase hex digits",
        ),
        ("hello\n", 0o600, ":1: unexpected line \"hello\""),
        ("", 0o600, ":1: no 'secret' line: not a genp2p key file"),
        ("# fine\n", 0o640, ": permissions 0640 are too open"),
    ];
    for (text, mode, want) in cases {
        std::fs::write(&key, text).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        for args in [vec!["--identity"], vec!["--no-input"]] {
            let mut argv: Vec<std::ffi::OsString> = vec!["--config".into(), cfg.clone().into()];
            argv.extend(args.iter().map(Into::into));
            let mut p = Proc::spawn("k", SERVANT_BIN, &argv, "info", &dir.path);
            assert!(!p.wait_exit().success(), "{}", dump());
            let err = p.stderr();
            assert_eq!(err.len(), 1, "one error line for {text:?}\n{}", dump());
            let msg = log_message(&err[0]);
            assert!(
                msg.starts_with(&format!("{}{want}", key.display())),
                "{msg:?} for {text:?}"
            );
        }
    }
    // An unreadable key file (a folder in its place) is named too.
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    let mut p = Proc::spawn(
        "k",
        SERVANT_BIN,
        &["--config".into(), cfg.into(), "--identity".into()],
        "info",
        &dir.path,
    );
    assert!(!p.wait_exit().success());
    let err = p.stderr();
    assert_eq!(err.len(), 1, "{}", dump());
    assert!(
        log_message(&err[0]).starts_with(&format!("{}: cannot read the key file", key.display())),
        "{err:?}"
    );
}
