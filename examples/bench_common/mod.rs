//! Helpers shared by the bench examples (included with `#[path]`; not an example itself).
//!
//! Percentiles, a tiny JSON writer, /proc readers, a dead-man timer and an exit at the end
//! of standard input, so that no bench process outlives its time limit or its driver.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

/// Value at quantile `q` (0..=1) of `v` (sorted in place), nearest-rank.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// A flat JSON object, built field by field.
#[derive(Default, Clone)]
pub struct Json(String);

impl Json {
    pub fn new() -> Json {
        Json(String::new())
    }
    fn key(&mut self, k: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        let _ = write!(self.0, "\"{k}\":");
    }
    pub fn num(mut self, k: &str, v: f64) -> Json {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.0, "{v}");
        } else {
            self.0.push_str("null");
        }
        self
    }
    pub fn int(mut self, k: &str, v: i64) -> Json {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }
    pub fn str(mut self, k: &str, v: &str) -> Json {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }
    pub fn bool(mut self, k: &str, v: bool) -> Json {
        self.key(k);
        self.0.push_str(if v { "true" } else { "false" });
        self
    }
    /// Appends the fields of another object.
    pub fn merge(mut self, other: &Json) -> Json {
        if other.0.is_empty() {
            return self;
        }
        if self.0.is_empty() {
            return other.clone();
        }
        // `other.0` is `{"k":v,...` without its closing brace (added by `finish`).
        self.0.push(',');
        self.0.push_str(&other.0[1..]);
        self
    }
    pub fn finish(&self) -> String {
        if self.0.is_empty() {
            "{}".into()
        } else {
            format!("{}}}", self.0)
        }
    }
}

/// Reads a numeric field of a flat JSON object written by `Json` (good enough for our own
/// output; not a general parser).
pub fn json_get(line: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Clock ticks per second for /proc/PID/stat (sysconf(_SC_CLK_TCK)), via `getconf`.
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU time of a process (all its threads, dead ones too), in ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A field of /proc/PID/status, as its first number (VmRSS is in kB).
pub fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l[field.len() + 1..].split_whitespace().next()?.parse().ok())
}

pub fn rss_kb(pid: u32) -> u64 {
    status_field(pid, "VmRSS").unwrap_or(0)
}

/// Proportional set size: resident memory with each page shared by k processes counted
/// 1/k in each, so a sum over processes is the memory they hold together.
pub fn pss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l[4..].split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads").unwrap_or(0)
}

/// A counter of /proc/net/netstat (e.g. "TcpExt" "ListenOverflows"), machine-wide.
pub fn netstat(group: &str, name: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = s.lines();
    while let Some(head) = lines.next() {
        let vals = lines.next()?;
        if head.starts_with(&format!("{group}:")) {
            let i = head.split_whitespace().position(|w| w == name)?;
            return vals.split_whitespace().nth(i)?.parse().ok();
        }
    }
    None
}

/// Exits the process after `limit`, whatever it is doing: every bench process is bounded
/// in time even when its parent is gone.
pub fn dead_man(limit: Duration, what: &'static str) {
    std::thread::Builder::new()
        .name("dead-man".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!(
                "{what}: time limit of {}s reached; exiting",
                limit.as_secs()
            );
            std::process::exit(3);
        })
        .expect("dead-man thread");
}

/// `dead_man` with the limit from `BENCH_MAX_SECS` (default 1200 s), as every bench helper
/// process starts.
pub fn dead_man_from_env(what: &'static str) {
    let limit = std::env::var("BENCH_MAX_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1200);
    dead_man(Duration::from_secs(limit), what);
}

/// Exits the process when standard input ends: the driver holds the pipe, so a bench
/// process dies with it.
pub fn exit_at_end_of_input() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut sink);
        std::process::exit(0);
    });
}

/// Prints `PORT N` for `listener` (the first line the driver reads), then exits at the end
/// of standard input (`exit_at_end_of_input`).
pub fn announce(listener: &std::net::TcpListener) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "PORT {}", listener.local_addr()?.port())?;
    out.flush()?;
    exit_at_end_of_input();
    Ok(())
}

/// `--key value` from an argument list.
pub fn arg<T: std::str::FromStr>(args: &[String], key: &str, default: T) -> T {
    args.iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn arg_str(args: &[String], key: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

pub fn arg_list(args: &[String], key: &str, default: &str) -> Vec<usize> {
    arg_str(args, key, default)
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

pub fn flag(args: &[String], key: &str) -> bool {
    args.iter().any(|a| a == key)
}

/// Finds every `<tag>VALUE</tag>` in `s` and calls `f(VALUE)`.
pub fn each_elem<'a>(s: &'a str, tag: &str, mut f: impl FnMut(&'a str)) {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = s;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { return };
        f(&after[..j]);
        rest = &after[j + close.len()..];
    }
}

/// CPU time of every thread of a process, in nanoseconds (/proc/PID/task/*/schedstat):
/// fine enough for the cost of one message, where /proc/PID/stat counts 10 ms ticks.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Voluntary + involuntary context switches of every live thread of a process.
pub fn ctx_switches(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for t in dir.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
                {
                    total += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    total
}
