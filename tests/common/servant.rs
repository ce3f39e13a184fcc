//! Servants for a test: their configuration, starting one or a full mesh, and waiting until
//! each knows the others, has heard a line, or has logged what the test expects.

#![allow(dead_code)]

use std::ffi::OsString;

use super::process::*;

pub struct Servant {
    pub proc: Proc,
    pub name: String,
    /// The port it listens on, from its log.
    pub port: u16,
    /// Its random id, from its log.
    pub id: String,
}

/// A servant configuration: `listen` is `Some(0)` for an OS-chosen port, `None` for the
/// port the manager assigns.
pub fn servant_config(name: &str, manager_port: u16, listen: Option<u16>, extra: &str) -> String {
    let listen = listen.map_or(String::new(), |p| format!("\n  <listen>{p}</listen>"));
    format!(
        "<config>\n  <connectionmgr>127.0.0.1</connectionmgr>\n  <port>{manager_port}</port>\n  <name>{name}</name>{listen}\n  <heartbeat>0.3</heartbeat>\n  {extra}\n</config>\n"
    )
}

/// Starts a servant on `config` (written to NAME.xml) with extra `args`, without waiting.
pub fn spawn_servant(
    dir: &TestDir,
    name: &str,
    config: &str,
    args: &[&str],
    rust_log: &str,
) -> Proc {
    let cfg = dir.write(&format!("{name}.xml"), config);
    let mut argv: Vec<OsString> = vec!["--config".into(), cfg.into_os_string()];
    argv.extend(args.iter().map(OsString::from));
    Proc::spawn(name, SERVANT_BIN, &argv, rust_log, &dir.path)
}

impl Servant {
    /// Waits until its share is hashed (the first scan's `hashed N shared file(s)` line):
    /// files are offered only once hashed, and a servant joins before that.
    pub fn wait_hashed(&self) {
        self.proc.wait_log(" shared file(s), ");
    }

    /// Waits for the servant's `joined as NAME (ID), listening on port N` line.
    pub fn joined(proc: Proc, name: &str) -> Servant {
        let line = proc.wait_log(&format!("joined as {name} ("));
        let msg = log_message(&line);
        let parsed = (|| {
            let rest = msg.strip_prefix(&format!("joined as {name} ("))?;
            let (id, rest) = rest.split_once(')')?;
            let port = rest.split("listening on port ").nth(1)?;
            let port = port
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some((id.to_owned(), port))
        })();
        let Some((id, port)) = parsed else {
            fail(&format!("cannot read the id and port in {line:?}"))
        };
        Servant {
            proc,
            name: name.to_owned(),
            port,
            id,
        }
    }

    /// The texts this servant printed as coming from `from`, in order.
    pub fn heard_from(&self, from: &str) -> Vec<String> {
        let prefix = format!("<{from}> ");
        self.proc
            .stdout()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Waits until this servant has printed `<from> text`.
    pub fn wait_heard(&self, from: &str, text: &str) {
        let want = format!("<{from}> {text}");
        self.proc.wait_stdout(&format!("{want:?}"), |l| l == want);
    }

    /// Waits until this servant has started a sender for each of `names`.
    pub fn wait_knows(&self, names: &[&str]) {
        for n in names {
            self.proc.wait_log(&format!("peer joined: {n} at "));
        }
    }
}

/// Starts a servant with `<listen>0</listen>`, the short heartbeat and `extra` settings,
/// and waits until it has joined.
pub fn start_servant(dir: &TestDir, name: &str, manager_port: u16, extra: &str) -> Servant {
    let cfg = servant_config(name, manager_port, Some(0), extra);
    Servant::joined(
        spawn_servant(
            dir,
            name,
            &cfg,
            &[],
            &std::env::var("TEST_LOG").unwrap_or("info".into()),
        ),
        name,
    )
}

/// Starts plain servants with these names and waits until each knows every other.
pub fn start_mesh(dir: &TestDir, manager_port: u16, names: &[&str]) -> Vec<Servant> {
    let servants: Vec<Servant> = names
        .iter()
        .map(|n| start_servant(dir, n, manager_port, ""))
        .collect();
    wait_mesh(&servants);
    servants
}

/// Waits until each servant has a sender for every other.
pub fn wait_mesh(servants: &[Servant]) {
    for s in servants {
        let others: Vec<&str> = servants
            .iter()
            .filter(|o| o.name != s.name)
            .map(|o| o.name.as_str())
            .collect();
        s.wait_knows(&others);
    }
}

// ---------------------------------------------------------------------------------------
// Raw connections, as telnet would make them
// ---------------------------------------------------------------------------------------
