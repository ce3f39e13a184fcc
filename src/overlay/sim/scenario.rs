//! The scenario every run plays, phase by phase: joins, lines in a stable overlay, a fifth
//! of the servants failing at once, a split that heals; and the report made of it.

use std::collections::VecDeque;

use super::report::{Bits, LineStat, Report};
use super::{Ev, Sim};
use crate::overlay::event::{Input, LineId, Millis};

impl Sim {
    fn start_phase(&mut self, name: &str) -> usize {
        if self.cfg.progress {
            eprintln!(
                "  {} servants, {:.1} s simulated, {} events: {name}",
                self.nodes.len(),
                self.now as f64 / 1000.0,
                self.report.events
            );
        }
        self.phase_names.push(name.to_string());
        self.phase_names.len() - 1
    }

    /// `count` lines from `writers` servants that are up, `every` ms apart.
    fn send_lines(&mut self, phase: usize, writers: &[u32], count: usize, every: Millis) {
        for k in 0..count {
            let author = writers[k % writers.len()];
            let t = self.now + every;
            self.run_until(t);
            if !self.nodes[author as usize].alive {
                continue;
            }
            let seq = self.nodes[author as usize].next_seq;
            self.nodes[author as usize].next_seq += 1;
            let mut eligible = Bits::new(self.nodes.len());
            for (i, n) in self.nodes.iter().enumerate() {
                if n.alive && n.joined {
                    eligible.set(i as u32);
                }
            }
            self.lines_of[author as usize].push(self.lines.len());
            self.lines.push(LineStat {
                phase,
                sent_at: self.now,
                eligible,
                shown: Bits::new(self.nodes.len()),
                shown_count: 0,
                gossip: 0,
                control: 0,
                doubled: 0,
                max_hops: 0,
                last_at: self.now,
            });
            let id = LineId {
                author,
                incarnation: 1,
                seq,
            };
            self.input(author, Input::Broadcast(id, ()));
        }
    }

    fn writers(&mut self, k: usize) -> Vec<u32> {
        let mut w = Vec::new();
        while w.len() < k {
            if let Some(i) = self.random_member(u32::MAX) {
                if !w.contains(&i) {
                    w.push(i);
                }
            }
        }
        w
    }

    /// Whether every servant that is up links only to servants that are up, and the
    /// links join them all.
    fn healed(&self) -> bool {
        let up: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| self.nodes[i as usize].alive)
            .collect();
        if up.is_empty() {
            return true;
        }
        for &i in &up {
            if self.nodes[i as usize]
                .overlay
                .active()
                .iter()
                .any(|&p| !self.nodes[p as usize].alive)
            {
                return false;
            }
        }
        // Links as either end sees them (HyParView keeps them symmetric, give or take a
        // message in flight).
        let mut adj: Vec<Vec<u32>> = vec![Vec::new(); self.nodes.len()];
        for &i in &up {
            for &p in self.nodes[i as usize].overlay.active() {
                adj[i as usize].push(p);
                adj[p as usize].push(i);
            }
        }
        let mut seen = Bits::new(self.nodes.len());
        let mut queue = VecDeque::from([up[0]]);
        seen.set(up[0]);
        let mut reached = 1usize;
        while let Some(i) = queue.pop_front() {
            for &p in &adj[i as usize] {
                if !seen.set(p) {
                    reached += 1;
                    queue.push_back(p);
                }
            }
        }
        reached == up.len()
    }

    /// Runs until healed (checked every 250 ms) or `limit` ms have passed; returns how
    /// long it took.
    fn run_until_healed(&mut self, limit: Millis) -> Option<Millis> {
        let start = self.now;
        while self.now < start + limit {
            let t = self.now + 250;
            self.run_until(t);
            if self.healed() {
                return Some(self.now - start);
            }
        }
        None
    }

    fn wait(&mut self, ms: Millis) {
        let t = self.now + ms;
        self.run_until(t);
    }

    /// A phase of `count` lines from 5 random writers, `every` ms apart.
    fn phase(&mut self, name: &str, count: usize, every: Millis) {
        let phase = self.start_phase(name);
        let writers = self.writers(5);
        self.send_lines(phase, &writers, count, every);
    }

    /// The whole scenario: joins, lines in a stable overlay, a fifth failing at once, a
    /// split that heals.
    pub fn run(mut self) -> Report {
        let n = self.nodes.len() as u32;
        let over = self.cfg.join_over.max(1);
        for i in 0..n {
            self.push(over * i as Millis / n as Millis, Ev::Join { node: i });
        }
        // Newcomers that found their contacts full (they take at most `EVICTIONS` per
        // window) are linked by refills: at 10,000 servants the overlay is still moving
        // 20 s after a 10 s join storm (stable redundancy 0.15, median of 3 seeds) and
        // settled after 40 s (0.003).
        self.wait(over + 40_000);

        // Plumtree's tree forms from the first lines (each prunes the links that gave a
        // second copy); they are counted apart from the lines that find it formed.
        self.phase("first lines, while the tree forms", 10, 500);
        self.wait(5_000);
        // Other writers: the tree serves any author, not only those it formed from.
        self.phase("stable", 20, 50);
        self.wait(10_000);
        self.report.links = self.links();

        // A fifth fails at once.
        let mut order: Vec<u32> = (0..n).collect();
        for i in 0..order.len() {
            let j = i + self.rng.below(order.len() - i);
            order.swap(i, j);
        }
        let dead: Vec<u32> = order[..order.len() / 5].to_vec();
        for &d in &dead {
            self.nodes[d as usize].alive = false;
            for p in self.nodes[d as usize].overlay.active().to_vec() {
                let after = self.latency(d, p);
                self.push(after, Ev::LinkDown { node: p, peer: d });
            }
        }
        self.phase("right after 20% failed", 10, 50);
        self.report.heal_after_failure = self.run_until_healed(29_500).map(|ms| ms + 500);
        self.wait(5_000);
        self.phase("after healing from 20% failed", 20, 50);
        self.wait(10_000);

        // A split in two halves for 8 s, longer than the links' silence time-out.
        for i in 0..n {
            let side = self.rng.below(2) == 1;
            self.nodes[i as usize].side = side;
        }
        self.split = true;
        for i in 0..n {
            if !self.nodes[i as usize].alive {
                continue;
            }
            for p in self.nodes[i as usize].overlay.active().to_vec() {
                if self.nodes[p as usize].side != self.nodes[i as usize].side {
                    self.cut.insert((i, p));
                    self.push(self.cfg.silence, Ev::LinkDown { node: i, peer: p });
                }
            }
        }
        let split = self.start_phase("written during a split, after it healed");
        let mut w = Vec::new();
        for want in [false, true] {
            while w
                .iter()
                .filter(|&&x| self.nodes[x as usize].side == want)
                .count()
                < 3
            {
                if let Some(i) = self.random_member(u32::MAX) {
                    if self.nodes[i as usize].side == want && !w.contains(&i) {
                        w.push(i);
                    }
                }
            }
        }
        self.wait(4_000);
        self.send_lines(split, &w, 12, 50);
        self.wait(4_000);
        self.split = false;
        self.cut.clear();
        self.report.heal_after_split = self.run_until_healed(60_000);
        self.wait(15_000);
        self.phase("after the split healed", 20, 50);
        self.wait(15_000);
        self.finish()
    }

    /// Every active link once, lower number first, with how many of its ends push whole
    /// lines on it.
    fn links(&self) -> Vec<(u32, u32, u8)> {
        let mut links = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let i = i as u32;
            for &p in n.overlay.active().iter().filter(|&&p| i < p) {
                let other = &self.nodes[p as usize].overlay;
                if n.alive && other.active().contains(&i) {
                    links.push((
                        i,
                        p,
                        u8::from(n.overlay.is_eager(&p)) + u8::from(other.is_eager(&i)),
                    ));
                }
            }
        }
        links
    }
}
