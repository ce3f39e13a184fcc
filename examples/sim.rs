//! `make sim`: the overlay's own state machine for 10,000 and 100,000 simulated
//! servants in one process (see `genp2p::overlay::sim`), Plumtree beside flooding.
//!
//! `cargo run --release --example sim -- [--servants N,...] [--seed S] [--flood | --flood-only]
//! [--out FILE] [--md FILE]` prints a table per run; `--out` appends one JSON object per
//! run, `--md` writes the tables with what they measure (bench/SIM.md).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use genp2p::overlay::event::Message;
use genp2p::overlay::sim::{Report, Sim, Sim32, SimConfig};

struct Args {
    servants: Vec<usize>,
    seed: u64,
    flood: bool,
    plumtree: bool,
    out: Option<String>,
    md: Option<String>,
    dot: Option<String>,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        servants: vec![10_000, 100_000],
        seed: 1,
        flood: false,
        plumtree: true,
        out: None,
        md: None,
        dot: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("servants") => {
                let v: String = parser.value()?.parse()?;
                args.servants = v
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|e| lexopt::Error::from(format!("--servants: {e}")))
                    })
                    .collect::<Result<_, _>>()?;
            }
            Long("seed") => args.seed = parser.value()?.parse()?,
            Long("flood") => args.flood = true,
            Long("flood-only") => {
                args.flood = true;
                args.plumtree = false;
            }
            Long("out") => args.out = Some(parser.value()?.parse()?),
            Long("md") => args.md = Some(parser.value()?.parse()?),
            Long("dot") => args.dot = Some(parser.value()?.parse()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(args)
}

/// One run as a markdown section: a table of phases, then the run's other figures.
fn table(r: &Report, secs: f64, rss_mib: f64) -> String {
    let kind = if r.flood { "flooding" } else { "Plumtree" };
    let mut t = format!(
        "### {} servants, {kind}\n\n{secs:.1} s of wall time, {} events, peak RSS {rss_mib:.0} MiB\n\n",
        r.servants, r.events
    );
    t += "| phase | lines | reliability | lowest | redundancy | ids per servant per line | last hop, mean (max) | last delivery p50 ms |\n";
    t += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for p in &r.phases {
        t += &format!(
            "| {} | {} | {:.4} % | {:.4} % | {:.3} | {:.2} | {:.1} ({}) | {} |\n",
            p.name,
            p.lines,
            p.reliability * 100.0,
            p.reliability_min * 100.0,
            p.redundancy,
            p.control,
            p.last_hop,
            p.last_hop_max,
            p.last_delivery_p50
        );
    }
    let per: Vec<String> = Message::<Sim32>::KINDS
        .iter()
        .zip(r.messages)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {:.1}", n as f64 / r.servants.max(1) as f64))
        .collect();
    let ms = |v: Option<u64>| {
        v.map_or("not healed".to_string(), |v| {
            format!("{:.2} s", v as f64 / 1000.0)
        })
    };
    let doubled: u64 = r.phases.iter().map(|p| p.doubled).sum();
    t += &format!(
        "\nHealed {} after 20 % failed and {} after the split; {} lines reported lost, {doubled} shown twice; \
         active links per servant at the end: mean {:.2}, fewest {}; {} links only one end counts.\n\n\
         Messages sent per servant: {}.\n",
        ms(r.heal_after_failure),
        ms(r.heal_after_split),
        r.lost_reported,
        r.degree_mean,
        r.degree_min,
        r.one_sided,
        per.join(", ")
    );
    t
}

fn json(r: &Report, secs: f64, rss_mib: f64) -> String {
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| {
            format!(
                "{{\"name\":\"{}\",\"lines\":{},\"reliability\":{:.6},\"reliability_min\":{:.6},\"redundancy\":{:.4},\"ids_per_line\":{:.3},\"last_hop\":{:.2},\"last_hop_max\":{},\"p50_ms\":{},\"doubled\":{}}}",
                p.name, p.lines, p.reliability, p.reliability_min, p.redundancy, p.control, p.last_hop, p.last_hop_max, p.last_delivery_p50, p.doubled
            )
        })
        .collect();
    let opt = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
    format!(
        "{{\"test\":\"sim\",\"servants\":{},\"flood\":{},\"seconds\":{secs:.2},\"rss_mib\":{rss_mib:.1},\"events\":{},\"heal_failure_ms\":{},\"heal_split_ms\":{},\"lost\":{},\"degree_mean\":{:.2},\"degree_min\":{},\"phases\":[{}]}}",
        r.servants,
        r.flood,
        r.events,
        opt(r.heal_after_failure),
        opt(r.heal_after_split),
        r.lost_reported,
        r.degree_mean,
        r.degree_min,
        phases.join(",")
    )
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut kinds = Vec::new();
    if args.plumtree {
        kinds.push(false);
    }
    if args.flood {
        kinds.push(true);
    }
    let mut sections = Vec::new();
    for &n in &args.servants {
        for &flood in &kinds {
            let mut cfg = SimConfig::new(n, args.seed);
            cfg.flood = flood;
            cfg.progress = true;
            let start = Instant::now();
            let report = Sim::new(cfg).run();
            let secs = start.elapsed().as_secs_f64();
            let rss = peak_rss_mib();
            if let Some(path) = &args.dot {
                // Plumtree's overlay, when both are run.
                if !flood || !args.plumtree {
                    if let Err(e) = std::fs::write(path, dot(&report)) {
                        eprintln!("sim: {path}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let section = table(&report, secs, rss);
            println!("\n{section}");
            sections.push(section);
            if let Some(path) = &args.out {
                let line = json(&report, secs, rss);
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| writeln!(f, "{line}"));
                if let Err(e) = written {
                    eprintln!("sim: {path}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if let Some(path) = &args.md {
        let doc = format!("{}{}", header(&args), sections.join("\n"));
        if let Err(e) = std::fs::write(path, doc) {
            eprintln!("sim: {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The stable overlay of a run as a graphviz graph: the tree's links bold, links
/// only one end pushes lines on thin, the others (ids only) dashed. `neato -Tsvg` lays
/// it out.
fn dot(r: &Report) -> String {
    let mut g = String::from(
        "graph overlay {\n  graph [overlap=false, splines=true, outputorder=edgesfirst, bgcolor=white];\n  \
         node [shape=circle, width=0.12, height=0.12, fixedsize=true, label=\"\", style=filled, fillcolor=\"#3465a4\", color=\"#204a87\"];\n",
    );
    for &(a, b, eager) in &r.links {
        let style = match eager {
            2 => "color=\"#204a87\", penwidth=2.2",
            1 => "color=\"#729fcf\", penwidth=1.2",
            _ => "color=\"#babdb6\", style=dashed",
        };
        g += &format!("  n{a} -- n{b} [{style}];\n");
    }
    g += "}\n";
    g
}

/// What the simulator is and how this report was made.
fn header(args: &Args) -> String {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let git = run("git", &["rev-parse", "--short", "HEAD"]);
    let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    format!(
        "# The overlay, simulated\n\n\
         Written by `make sim` (`cargo run --release --example sim -- --servants {} --seed {}{}`), \
         git {}, {}, on {} cores. The servants run the overlay's own state machine \
         (`src/overlay/`), the code a servant runs, driven by a discrete-event simulator \
         (`src/overlay/sim/`): one-way latencies of 5 to 50 ms per pair, links that fall \
         silent for 3 s before their ends give up, a seeded random generator (the same seed \
         gives the same run). The scenario: the servants join over 10 s, and 40 s later, \
         the overlay settled, 10 lines from 5 \
         writers 500 ms apart while Plumtree's tree forms; 20 lines 50 ms apart in the stable \
         overlay; a fifth of the servants fail at once and 10 lines are written at once; 20 \
         lines once it has healed; the network splits in two halves for 8 s and 12 lines are \
         written on both sides; 20 lines after the split has healed.\n\n\
         Reliability is the share of the servants up (and joined when the line was written) \
         that showed each line, averaged over the phase's lines, with the lowest line beside \
         it. Redundancy is Plumtree's relative message redundancy: whole-line messages \
         received per servant that showed the line, minus one (0 is a perfect tree; flooding \
         is about D - 2). Ids are the i-have and graft entries per servant per line. The last \
         hop is the hop count of the line's last first delivery.\n\n",
        args.servants
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        args.seed,
        if args.plumtree && args.flood {
            " --flood"
        } else if args.flood {
            " --flood-only"
        } else {
            ""
        },
        git,
        date,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    )
}
