"""One `make stress` run: its flags, its scenario data, the processes it started (for the
cleanup, also from the watchdog), and the checks and results the scenarios record for the
report. The scenario modules take a Run and add to it; none of them keeps state of its own.
"""

import multiprocessing as mp
import os

from stress_base import load_average, log, now
from stress_procs import Servant


class Run:
    def __init__(self, args, data):
        self.args = args
        self.bin = os.path.abspath(args.bin)
        self.dir = os.path.abspath(args.workdir) if args.workdir else None
        self.children = []
        self.checks = []  # (name, ok, detail)
        self.res = {}
        self.ctx = mp.get_context("spawn")
        self.load_start = load_average()
        self.data = data  # number -> that scenario's data file
        self.manager = None  # the manager scenarios 2, 3, 4 and 7 share

    def check(self, name, ok, detail):
        self.checks.append((name, bool(ok), detail))
        log(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
        return ok

    def cleanup(self):
        for p in self.children:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in self.children:
            try:
                p.wait(3)
            except Exception:
                pass

    def outage(self):
        """Seconds the manager stays down in scenario 8 (--outage, or manager-lost.toml's)."""
        return self.args.outage if self.args.outage is not None else self.data[8]["manager_lost"]["outage"]

    def start_servants(self, names, mgr_port, extra="", timeout=20):
        ss = [Servant(self, n, mgr_port, extra) for n in names]
        deadline = now() + timeout
        for s in ss:
            s.wait_joined(max(0.1, deadline - now()))
        return ss

    def quit_all(self, servants, timeout=10):
        for s in servants:
            if s.proc.poll() is None:
                s.quit()
        deadline = now() + timeout
        for s in servants:
            if not s.wait_exit(max(0.1, deadline - now())):
                s.kill9()
                s.wait_exit(2)
