"""The programs on the lab's hosts: connection managers and servants, and their files.

Each program runs under `ip netns exec` in its host's namespace (ip execs it, so the pid we
hold is the program's own). A servant's standard input is a FIFO (hI.in) held open here
read-write, so typing never blocks and the servant sees no end of input until we close it;
what it shows goes to hI.out, its log to hI.log. A manager's log is NAME.log. Every wait
is bounded; a program that does not end when told is killed and its threads' state is
written next to its log (hung-PID.txt).
"""

import os
import signal
import subprocess
import time

import hosts
from hosts import BIN, LABTOOL, PIDS, PY, ns

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP,
           "CONT": signal.SIGCONT, "INT": signal.SIGINT, "HUP": signal.SIGHUP}


class Proc:
    def __init__(self, name, host, popen, fd=None):
        self.name, self.host, self.popen, self.fd = name, host, popen, fd

    @property
    def pid(self):
        return self.popen.pid


class Net:
    """The programs of one scenario (or the demo), all writing into the directory sd."""

    def __init__(self, sd, knobs, managers, servant_hosts, bans=None):
        self.sd = sd
        self.knobs = knobs
        self.managers = managers          # [(name, host, port)], the first is the main one
        self.servant_hosts = servant_hosts
        self.bans = bans or {}            # host -> [targets]
        self.procs = {}                   # name -> Proc ("manager", "manager2", "h2", ...)
        os.makedirs(sd, exist_ok=True)
        os.makedirs(PIDS, exist_ok=True)

    def path(self, name, ext):
        return os.path.join(self.sd, f"{name}.{ext}")

    def manager(self, name):
        for m in self.managers:
            if m[0] == name:
                return m
        raise KeyError(name)

    # -- starting -----------------------------------------------------------------
    def write_manager_config(self, name):
        _, _, port = self.manager(name)
        with open(self.path(name, "xml"), "w") as f:
            f.write(f"<manager>\n  <port>{port}</port>\n  <timeout>{self.knobs['mgr_timeout']}</timeout>\n"
                    f"  <trustafter>{self.knobs['trust_after']}</trustafter>\n</manager>\n")

    def start_manager(self, name="manager", logname=None):
        _, host, _ = self.manager(name)
        logname = logname or name
        self.write_manager_config(name)
        with open(self.path(logname, "out"), "wb") as out, open(self.path(logname, "log"), "wb") as log:
            p = subprocess.Popen(["ip", "netns", "exec", ns(host), os.path.join(BIN, "connection-manager"),
                                  "--config", self.path(name, "xml")],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=log, start_new_session=True)
        self.procs[name] = Proc(name, host, p)
        self.write_pid(name, p.pid)
        return p.pid

    def write_servant_config(self, i):
        lines = ["<config>"]
        for k, (_, host, port) in enumerate(self.managers):
            attr = "" if k == 0 else f' port="{port}"'
            lines.append(f"  <connectionmgr{attr}>h{host}</connectionmgr>")
        lines += [f"  <port>{hosts.MGR_PORT}</port>", f"  <name>h{i}</name>",
                  f"  <heartbeat>{self.knobs['heartbeat']}</heartbeat>"]
        if self.bans.get(i):
            lines.append("  <bans>")
            lines += [f"    <ban><target>{t}</target></ban>" for t in self.bans[i]]
            lines.append("  </bans>")
        lines.append("</config>")
        with open(self.path(f"h{i}", "xml"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def start_servant(self, i):
        name = f"h{i}"
        self.write_servant_config(i)
        fifo = self.path(name, "in")
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDWR)
        with open(self.path(name, "out"), "wb") as out, open(self.path(name, "log"), "wb") as log:
            p = subprocess.Popen(["ip", "netns", "exec", ns(i), os.path.join(BIN, "servant"),
                                  "--config", self.path(name, "xml")],
                                 stdin=fd, stdout=out, stderr=log, start_new_session=True)
        self.procs[name] = Proc(name, i, p, fd)
        self.write_pid(name, p.pid)

    def write_pid(self, name, pid):
        with open(os.path.join(PIDS, f"{name}.pid"), "w") as f:
            f.write(f"{pid}\n")

    def forget(self, name):
        proc = self.procs.pop(name, None)
        try:
            os.unlink(os.path.join(PIDS, f"{name}.pid"))
        except OSError:
            pass
        return proc

    # -- talking to them -----------------------------------------------------------
    def say(self, i, text):
        proc = self.procs.get(f"h{i}")
        if proc and proc.fd is not None:
            os.write(proc.fd, (text + "\n").encode())

    def ask(self, manager, cmd, *args, timeout=60):
        """labtool CMD against a manager, run from h1. Returns (ok, output)."""
        _, host, port = self.manager(manager)
        p = subprocess.run(["ip", "netns", "exec", ns(1), PY, LABTOOL, cmd, f"h{host}", str(port), *args],
                           capture_output=True, text=True, timeout=timeout)
        return p.returncode == 0, (p.stdout + p.stderr).strip()

    def manager_wait(self, manager, has=(), lacks=(), within=10.0):
        """Until the manager's list has every name in has and none in lacks. Returns
        (ok, seconds, the last list seen as text)."""
        args = ["--within", str(within)]
        if has:
            args += ["--has", ",".join(has)]
        if lacks:
            args += ["--lacks", ",".join(lacks)]
        ok, out = self.ask(manager, "wait", *args, timeout=within + 30)
        secs, _, seen = out.partition(" ")
        try:
            return ok, float(secs), seen
        except ValueError:
            return False, within, out

    # -- stopping ------------------------------------------------------------------
    def signal(self, name, sig):
        proc = self.procs[name]
        try:
            os.kill(proc.pid, SIGNALS[sig])
        except OSError:
            pass
        if sig in ("KILL", "TERM", "INT", "HUP"):
            for _ in range(30):
                if proc.popen.poll() is not None:
                    break
                time.sleep(0.1)
            if proc.popen.poll() is not None:
                self.close(proc)
                self.forget(name)

    def close(self, proc):
        if proc.fd is not None:
            try:
                os.close(proc.fd)
            except OSError:
                pass
            proc.fd = None

    def reap(self, proc, limit):
        """Waits for the process to end (SIGKILL after limit s): its exit code, or 'hung ...'."""
        try:
            return proc.popen.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            pass
        self.write_hang_evidence(proc.pid)
        try:
            proc.popen.kill()
            proc.popen.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        return f"hung (killed after {limit}s)"

    def write_hang_evidence(self, pid):
        """Each thread's name, state and kernel wait, for whoever debugs the hang."""
        lines = []
        try:
            with open(f"/proc/{pid}/status") as f:
                lines += f.read().splitlines()[:6]
            for t in sorted(os.listdir(f"/proc/{pid}/task")):
                d = f"/proc/{pid}/task/{t}"
                parts = []
                for what in ("comm", "wchan"):
                    try:
                        with open(f"{d}/{what}") as f:
                            parts.append(f.read().strip())
                    except OSError:
                        parts.append("?")
                lines.append(f"{t} {parts[0]} wchan={parts[1]}")
                try:
                    with open(f"{d}/stack") as f:
                        lines += f.read().splitlines()[:8]
                except OSError:
                    pass
        except OSError as e:
            lines.append(f"cannot read /proc/{pid}: {e}")
        try:
            with open(os.path.join(self.sd, f"hung-{pid}.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
        except OSError:
            pass

    def stop(self, line=None):
        """Servants first (SIGTERM, or the given line typed, e.g. /quit), then the managers
        (SIGTERM). Returns the list of 'NAME:CODE' for those that did not exit 0."""
        bad = []
        servants = [p for p in self.procs.values() if p.fd is not None or p.name.startswith("h")]
        for proc in servants:
            if line:
                self.say(proc.host, line)
            else:
                self.kill_quietly(proc.pid, signal.SIGTERM)
        for proc in servants:
            rc = self.reap(proc, 8)
            if rc != 0:
                bad.append(f"{proc.name}:{rc}")
            self.close(proc)
            self.forget(proc.name)
        for proc in list(self.procs.values()):
            self.kill_quietly(proc.pid, signal.SIGTERM)
            rc = self.reap(proc, 5)
            if rc != 0:
                bad.append(f"{proc.name}:{rc}")
            self.forget(proc.name)
        return bad

    def stop_quietly(self):
        """Emergency stop: everything started here, no checks."""
        for proc in self.procs.values():
            self.kill_quietly(proc.pid, signal.SIGTERM)
            self.kill_quietly(proc.pid, signal.SIGCONT)
        for proc in list(self.procs.values()):
            self.reap(proc, 5)
            self.close(proc)
            self.forget(proc.name)

    @staticmethod
    def kill_quietly(pid, sig):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
