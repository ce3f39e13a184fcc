//! The abuse attacks against the release binaries on loopback, each beside a genuine user
//! (`make stress` runs it after `scripts/stress.py`). For each attack: its size, what a
//! genuine user saw meanwhile (the delay of a chat line, p50 and p99, and lines lost), and
//! the attacked servant's threads and RSS before, during and after. Prints a Markdown
//! table and writes it to `--out` (default bench/ABUSE.md).
//!
//! - `places`: 2,000 idle connections from 50 addresses held open (reconnecting when
//!   closed) against a servant with the default 512 places; a listed servant joins and
//!   speaks, and a person with telnet types a line.
//! - `origins`: 1,000,000 `MSG` lines under random origins over one authenticated link,
//!   then 20,000 fresh keys each with a handshake and one line.
//! - `squat`: 50 file connections from 50 addresses that ask for pieces and read nothing,
//!   reconnecting when cut; a 100 MiB download beside one made without them.
//! - `complaints`: three newcomers at three addresses complain about a servant.
//!
//! `abuse --bin target/release [--only NAME] [--out FILE]`. Every loop is bounded by a
//! count and a time; the whole run ends within `--limit-secs` (default 400).
//!
//! Each attack is a module of its own under `abuse/`, on the processes and the genuine
//! user's probe of `abuse/harness.rs`; this file runs the attacks and writes the table.

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "abuse/complaints.rs"]
mod complaints;
#[path = "abuse/harness.rs"]
mod harness;
#[path = "abuse/origins.rs"]
mod origins;
#[path = "abuse/places.rs"]
mod places;
#[path = "abuse/squat.rs"]
mod squat;

use bench_common::*;
use harness::{Ctx, Row};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One attack: its rows of the table.
type Attack = fn(&Ctx) -> Vec<Row>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    dead_man(
        Duration::from_secs(arg(&args, "--limit-secs", 400)),
        "abuse",
    );
    let bin = PathBuf::from(arg_str(&args, "--bin", "target/release"));
    let bin = bin.canonicalize().unwrap_or(bin);
    let out = PathBuf::from(arg_str(&args, "--out", "bench/ABUSE.md"));
    let only = arg_str(&args, "--only", "");
    // On tmpfs where there is one: the download figures are then the network's and the
    // servants', not the disk's.
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let mut rows = Vec::new();
    let attacks: [(&str, Attack); 4] = [
        ("places", |c| vec![places::places(c)]),
        ("squat", |c| vec![squat::squat(c)]),
        ("complaints", |c| vec![complaints::complaints(c)]),
        ("origins", origins::origins),
    ];
    for (name, run) in attacks {
        if only.is_empty() || only == name {
            eprintln!("[abuse] {name}");
            let dir = base.join(format!("genp2p-abuse-{name}-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            rows.extend(run(&Ctx {
                bin: bin.clone(),
                dir: dir.clone(),
            }));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let ms = |v: f64| {
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.1}")
        }
    };
    let mut md = String::from(
        "| attack | size | genuine line p50 / p99 (ms) | lost | threads before / during / after | RSS MiB before / during / after | what a genuine user saw | goal |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} / {} | {} | {} / {} / {} | {:.1} / {:.1} / {:.1} | {} | {} |\n",
            r.attack,
            r.size,
            ms(r.seen.0),
            ms(r.seen.1),
            r.seen.2,
            r.usage[0].0,
            r.usage[1].0,
            r.usage[2].0,
            r.usage[0].1,
            r.usage[1].1,
            r.usage[2].1,
            r.outcome,
            if r.ok { "met" } else { "MISSED" }
        ));
    }
    print!("{md}");
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&out, &md);
    if rows.iter().any(|r| !r.ok) {
        std::process::exit(1);
    }
}
