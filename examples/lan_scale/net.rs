//! The network `lan_scale` runs: the manager and the servants as processes, what each
//! servant showed (read from its output by a thread of its own), and the count of what
//! was lost, doubled or out of order.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Phase {
    pub name: &'static str,
    pub lines: usize,
    pub servants: usize,
    pub lost: usize,
    pub doubled: usize,
    pub out_of_order: usize,
    /// Every delivery's time from write to show, ms.
    pub deliveries: Vec<f64>,
    /// For each line, in the order written, the time until the last servant showed it, ms.
    pub last: Vec<f64>,
}

impl Phase {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.doubled == 0 && self.out_of_order == 0
    }
}

/// What a servant showed: (author, number, when).
pub type Shown = Arc<Mutex<Vec<(usize, u64, Instant)>>>;
pub type Hops = Arc<Mutex<Option<(f64, u64)>>>;

pub struct Servant {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub shown: Shown,
    /// What its last `/peers` said of the hops its lines came over: mean, most.
    pub hops: Hops,
    /// Set once its log says it has a neighbour in the overlay.
    pub linked: Arc<AtomicBool>,
    pub joined: Arc<AtomicBool>,
    /// Set once it has closed its links to every servant (10 s after joining the overlay).
    pub meshed_out: Arc<AtomicBool>,
    pub alive: bool,
}

impl Servant {
    pub fn write(&mut self, text: &str) {
        if let Some(s) = &mut self.stdin {
            let _ = s.write_all(format!("{text}\n").as_bytes());
        }
    }

    pub fn kill(&mut self) {
        if self.alive {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.alive = false;
        }
    }
}

/// Everything a run started; all of it is killed when this goes.
pub struct Net {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub manager: Child,
    pub manager_port: u16,
    pub servants: Vec<Servant>,
    /// Who wrote line `k`: (author, number) -> when.
    pub written: HashMap<(usize, u64), Instant>,
    pub next: HashMap<usize, u64>,
    /// Keep the logs: something was lost, doubled or out of order.
    pub keep: bool,
}

impl Drop for Net {
    fn drop(&mut self) {
        for s in &mut self.servants {
            s.kill();
        }
        let _ = self.manager.kill();
        let _ = self.manager.wait();
        if self.keep {
            eprintln!(
                "lan-scale: the servants' logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The loopback address of servant `i`: 127.0.1.1, 127.0.1.2, ... 127.0.1.250, 127.0.2.1, ...
pub fn address(i: usize) -> String {
    format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250)
}

/// The hops of `/peers`'s overlay line: `… over M hops on average (at most X)`.
pub fn view_hops(line: &str) -> Option<(f64, u64)> {
    let rest = line.split(", over ").nth(1)?;
    let (mean, rest) = rest.split_once(" hops on average (at most ")?;
    Some((mean.parse().ok()?, rest.strip_suffix(')')?.parse().ok()?))
}

/// Reads `<sA> m A K` lines from a servant's output, and the hops of its `/peers`.
pub fn read_shown(out: impl std::io::Read, shown: Shown, hops: Hops) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { return };
        if line.starts_with("overlay: ") {
            *hops.lock().unwrap() = view_hops(&line);
            continue;
        }
        let Some(rest) = line.strip_prefix("<s") else {
            continue;
        };
        let mut f = rest.split(' ');
        let (Some(_), Some("m"), Some(a), Some(k)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if let (Ok(a), Ok(k)) = (a.parse(), k.parse()) {
            shown.lock().unwrap().push((a, k, Instant::now()));
        }
    }
}

/// Copies a servant's log to its file, raising the flags its lines announce.
pub fn read_log(err: impl std::io::Read, file: PathBuf, flags: [Arc<AtomicBool>; 3]) {
    let [joined, linked, meshed_out] = flags;
    let mut log = fs::File::create(file).ok();
    for line in BufReader::new(err).lines() {
        let Ok(line) = line else { return };
        if line.contains("joined as ") {
            joined.store(true, Ordering::Relaxed);
        }
        if line.contains("neighbour up: ") || line.contains("overlay link ") {
            linked.store(true, Ordering::Relaxed);
        }
        if line.contains("closed the links to ") {
            meshed_out.store(true, Ordering::Relaxed);
        }
        if let Some(f) = &mut log {
            let _ = writeln!(f, "{line}");
        }
    }
}

pub fn spawn_reader(name: String, f: impl FnOnce() + Send + 'static) {
    let _ = thread::Builder::new()
        .name(name)
        .stack_size(64 * 1024)
        .spawn(f);
}

pub fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() > end {
            return Err(format!("{what}: not within {} s", limit.as_secs()));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Net {
    pub fn start(bin: &Path, dir: PathBuf) -> Result<Net, String> {
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf = dir.join("manager.xml");
        fs::write(
            &conf,
            "<manager><port>0</port><bind>127.0.0.1</bind></manager>\n",
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let mut manager = Command::new(bin.join("connection-manager"))
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e}",
                    bin.join("connection-manager").display()
                )
            })?;
        PIDS.lock().unwrap().push(manager.id());
        let (tx, rx) = std::sync::mpsc::channel();
        let err = manager.stderr.take().ok_or("no manager stderr")?;
        let log = dir.join("manager.log");
        spawn_reader("manager-log".into(), move || {
            let mut f = fs::File::create(log).ok();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(p) = line.split("listening on ").nth(1) {
                    let _ = tx.send(p.rsplit(':').next().unwrap_or("").trim().to_owned());
                }
                if let Some(f) = &mut f {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or("the manager did not say where it listens")?;
        Ok(Net {
            dir,
            bin: bin.to_owned(),
            manager,
            manager_port: port,
            servants: Vec::new(),
            written: HashMap::new(),
            next: HashMap::new(),
            keep: false,
        })
    }

    pub fn add_servant(&mut self) -> Result<usize, String> {
        let i = self.servants.len();
        let conf = self.dir.join(format!("s{i}.xml"));
        fs::write(
            &conf,
            format!(
                "<config><connectionmgr>127.0.0.1</connectionmgr><port>{}</port><name>s{i}</name>\
                 <listen>0</listen><bind>{}</bind><heartbeat>2</heartbeat></config>\n",
                self.manager_port,
                address(i)
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let mut child = Command::new(self.bin.join("servant"))
            .arg("--config")
            .arg(&conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start servant s{i}: {e}"))?;
        PIDS.lock().unwrap().push(child.id());
        let shown: Shown = Default::default();
        let flags: [Arc<AtomicBool>; 3] = Default::default();
        let [joined, linked, meshed_out] = flags.clone();
        let out = child.stdout.take().ok_or("no servant stdout")?;
        let err = child.stderr.take().ok_or("no servant stderr")?;
        let s = Arc::clone(&shown);
        let hops: Hops = Default::default();
        let h = Arc::clone(&hops);
        spawn_reader(format!("out-s{i}"), move || read_shown(out, s, h));
        let file = self.dir.join(format!("s{i}.log"));
        spawn_reader(format!("log-s{i}"), move || read_log(err, file, flags));
        self.servants.push(Servant {
            stdin: child.stdin.take(),
            child,
            shown,
            hops,
            linked,
            joined,
            meshed_out,
            alive: true,
        });
        Ok(i)
    }

    pub fn write(&mut self, author: usize) {
        let k = self.next.entry(author).or_insert(0);
        *k += 1;
        let k = *k;
        self.written.insert((author, k), Instant::now());
        self.servants[author].write(&format!("m {author} {k}"));
    }

    /// Waits until each of `who` has shown every line in `lines` not its own.
    pub fn wait_shown(&self, who: &[usize], lines: &[(usize, u64)], limit: Duration) {
        let _ = wait("delivery", limit, || {
            who.iter().all(|&i| {
                let shown: HashSet<(usize, u64)> = {
                    let s = self.servants[i].shown.lock().unwrap();
                    s.iter().map(|(a, k, _)| (*a, *k)).collect()
                };
                lines.iter().all(|l| l.0 == i || shown.contains(l))
            })
        });
    }

    /// Counts over `who`: each of `lines` shown exactly once, in its author's order.
    pub fn tally(&self, name: &'static str, who: &[usize], lines: &[(usize, u64)]) -> Phase {
        let mut p = Phase {
            name,
            lines: lines.len(),
            servants: who.len(),
            ..Phase::default()
        };
        let mut last: HashMap<(usize, u64), f64> = HashMap::new();
        let wanted: HashSet<(usize, u64)> = lines.iter().copied().collect();
        for &i in who {
            let shown = self.servants[i].shown.lock().unwrap();
            let mut counts: HashMap<(usize, u64), usize> = HashMap::new();
            let mut prev: HashMap<usize, u64> = HashMap::new();
            for &(a, k, at) in shown.iter() {
                if !wanted.contains(&(a, k)) {
                    continue;
                }
                *counts.entry((a, k)).or_insert(0) += 1;
                if prev.get(&a).is_some_and(|&pk| k < pk) {
                    p.out_of_order += 1;
                }
                prev.insert(a, k);
                if let Some(t) = self.written.get(&(a, k)) {
                    let ms = at.saturating_duration_since(*t).as_secs_f64() * 1e3;
                    p.deliveries.push(ms);
                    let e = last.entry((a, k)).or_insert(0.0);
                    *e = e.max(ms);
                }
            }
            for l in lines.iter().filter(|(a, _)| *a != i) {
                match counts.get(l).copied().unwrap_or(0) {
                    0 => p.lost += 1,
                    1 => {}
                    n => p.doubled += n - 1,
                }
            }
        }
        p.last = lines.iter().filter_map(|l| last.get(l).copied()).collect();
        p
    }

    /// Asks every servant up for `/peers` and waits (5 s at most) for the answers: the
    /// median over servants of the mean hops their lines came over, and the most.
    pub fn hops(&mut self) -> (f64, u64) {
        let up = self.alive();
        for &i in &up {
            *self.servants[i].hops.lock().unwrap() = None;
            self.servants[i].write("/peers");
        }
        let answered = |net: &Net| -> Vec<(f64, u64)> {
            up.iter()
                .filter_map(|&i| *net.servants[i].hops.lock().unwrap())
                .collect()
        };
        let _ = wait("/peers answers", Duration::from_secs(5), || {
            answered(self).len() == up.len()
        });
        let got = answered(self);
        let mut means: Vec<f64> = got.iter().map(|h| h.0).collect();
        means.sort_by(f64::total_cmp);
        let median = means.get(means.len() / 2).copied().unwrap_or(0.0);
        (median, got.iter().map(|h| h.1).max().unwrap_or(0))
    }

    pub fn alive(&self) -> Vec<usize> {
        (0..self.servants.len())
            .filter(|&i| self.servants[i].alive)
            .collect()
    }
}

/// A small random source for picking victims (seeded from the clock).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}
