"""The processes under test in `make stress` and what is read of them: a servant (its
config, its stdin for typing numbered messages, its stdout for what it shows, its log for
when it joined and who it heard of), the connection manager (started on a given or a free
port, asked for its list as a plain client), and the /proc sampling of their threads and
memory.

A `run` here is anything with .dir (configs and logs), .bin (the release binaries) and
.children (every process started, for the cleanup).
"""

import os
import re
import subprocess
import threading
import time

import stress_figures as figures
from stress_base import connect_from, now, proc_status

MSG_RE = re.compile(rb"^<([^>\s]+)> stress (\S+) (\d+)\r?\n?$")
JOINED_RE = re.compile(rb"joined as \S+ \(\S+\), listening on port (\d+); (\d+) other servant")
INTERESTING = re.compile(rb"joined as|peer joined|peer left|connection manager|restarted|panick")


class Servant:
    def __init__(self, run, name, mgr_port, extra=""):
        self.run, self.name = run, name
        conf = os.path.join(run.dir, f"{name}.xml")
        with open(conf, "w") as f:
            f.write(f"<config><connectionmgr>127.0.0.1</connectionmgr><port>{mgr_port}</port>"
                    f"<name>{name}</name><listen>0</listen><heartbeat>1</heartbeat>{extra}</config>\n")
        self.log_path = os.path.join(run.dir, f"{name}.log")
        self.logf = open(self.log_path, "wb")
        env = dict(os.environ, RUST_LOG="info")
        self.proc = subprocess.Popen([os.path.join(run.bin, "servant"), "--config", conf],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.logf, env=env)
        self.pid = self.proc.pid
        run.children.append(self.proc)
        self.started = now()
        self.joined_at = None
        self.leave_at = None
        self.leave_how = None
        self.port = None
        self.peers_at_join = None
        self.got = []  # (shown name, sender in the text, seq, time) in arrival order
        self.noise = 0
        self.seq = 0
        self._log_off = 0
        self._log_rest = b""
        self.log_lines = []  # the interesting ones
        self.reader = threading.Thread(target=self._read, name=f"out-{name}", daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            if raw.startswith(b"<127.") or b" stress " not in raw:
                self.noise += 1
                continue
            m = MSG_RE.match(raw)
            if m:
                self.got.append((m.group(1).decode(), m.group(2).decode(), int(m.group(3)), now()))
            else:
                self.noise += 1

    def scan_log(self, limit=1 << 22):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_off)
                data = f.read(limit)
        except OSError:
            return
        self._log_off += len(data)
        data = self._log_rest + data
        lines = data.split(b"\n")
        self._log_rest = lines.pop()
        for line in lines:
            if INTERESTING.search(line):
                self.log_lines.append((now(), line))
                if self.joined_at is None:
                    m = JOINED_RE.search(line)
                    if m:
                        self.joined_at = now()
                        self.port = int(m.group(1))
                        self.peers_at_join = int(m.group(2))

    def wait_joined(self, timeout):
        deadline = now() + timeout
        while self.joined_at is None and now() < deadline and self.proc.poll() is None:
            self.scan_log()
            time.sleep(0.02)
        return self.joined_at is not None

    def wait_log(self, needle, timeout):
        deadline = now() + timeout
        while now() < deadline:
            self.scan_log()
            for t, line in self.log_lines:
                if needle in line:
                    return t
            time.sleep(0.02)
        return None

    def member(self):
        return self.joined_at is not None and self.leave_at is None and self.proc.poll() is None

    def say(self):
        """Types the next numbered message; returns (name, seq, time) or None."""
        seq = self.seq + 1
        t = now()
        try:
            self.proc.stdin.write(f"stress {self.name} {seq}\n".encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return None
        self.seq = seq
        return (self.name, seq, t)

    def quit(self):
        self.leave_how = self.leave_how or "quit"
        self.leave_at = self.leave_at or now()
        try:
            self.proc.stdin.write(b"/quit\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass

    def kill9(self):
        self.leave_how = self.leave_how or "kill"
        self.leave_at = self.leave_at or now()
        try:
            self.proc.kill()
        except OSError:
            pass

    def wait_exit(self, timeout):
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def status(self):
        return proc_status(self.pid)


class Manager:
    def __init__(self, run, tag, port=0):
        self.run = run
        conf = os.path.join(run.dir, f"{tag}.xml")
        with open(conf, "w") as f:
            f.write(f"<manager><port>{port}</port></manager>\n")
        self.log_path = os.path.join(run.dir, f"{tag}.log")
        env = dict(os.environ, RUST_LOG="info")
        self.port = None
        deadline = now() + 10
        while self.port is None and now() < deadline:
            self.logf = open(self.log_path, "wb")
            self.proc = subprocess.Popen([os.path.join(run.bin, "connection-manager"), "--config", conf],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self.logf, env=env)
            run.children.append(self.proc)
            while now() < deadline and self.proc.poll() is None:
                with open(self.log_path, "rb") as f:
                    m = re.search(rb"listening on [0-9.]+:(\d+)", f.read())
                if m:
                    self.port = int(m.group(1))
                    break
                time.sleep(0.02)
            if self.port is None:
                time.sleep(0.2)  # the port may still be held: try again until the deadline
        if self.port is None:
            raise RuntimeError(f"manager {tag} did not start: {open(self.log_path).read()[-2000:]}")
        self.pid = self.proc.pid
        self.addr = ("127.0.0.1", self.port)

    def listed(self, timeout=2.0):
        """Names of the servants the manager lists now (asked as a plain client)."""
        try:
            s = connect_from(figures.LEGIT_SRC, self.addr, timeout)
            s.sendall(b"needs peer list\n")
            buf = b""
            deadline = now() + timeout
            while b"\n" not in buf and now() < deadline:
                d = s.recv(1 << 16)
                if not d:
                    break
                buf += d
            s.close()
        except OSError:
            return None
        names = []
        for peer in re.findall(rb"<peer>(.*?)</peer>", buf):
            if b"<me>FALSE</me>" in peer:
                m = re.search(rb"<name>([^<]*)</name>", peer)
                names.append(m.group(1).decode() if m else "?")
        return names

    def kill9(self):
        self.proc.kill()
        self.proc.wait(5)

    def status(self):
        return proc_status(self.pid)


class Sampler:
    """Samples threads and RSS of some processes every 0.2 s, keeping the peaks."""

    def __init__(self, procs):
        self.procs = procs  # label -> pid
        self.peak = {k: (0, 0) for k in procs}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for _ in range(10000):
            if self.stop.is_set():
                return
            for k, pid in self.procs.items():
                th, rss = proc_status(pid)
                if th is not None:
                    pt, pr = self.peak[k]
                    self.peak[k] = (max(pt, th), max(pr, rss))
            self.stop.wait(0.2)

    def end(self):
        self.stop.set()
        self.thread.join(2)
        return self.peak


def wait_threads(pid, limit, timeout=20):
    """Waits until the process has no more than `limit` threads; (threads, RSS) then."""
    deadline = now() + timeout
    th, rss = proc_status(pid)
    while (th is None or th > limit) and now() < deadline:
        time.sleep(0.25)
        th, rss = proc_status(pid)
    return th, rss
