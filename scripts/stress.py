#!/usr/bin/env python3
"""`make stress`: floods, churn and a lost manager against the release binaries, on loopback.

Scenarios (numbered as in the hardening issue):

  2  Against the manager: 1,000 idle sockets that never speak (from ten 127.0.0.x addresses,
     so the per-address cap bites), 100 clients sending random bytes, never-ending lines and
     junk lines, and one client flooding `needs peer list`. Meanwhile a legitimate servant
     joins, gets its list and a push (another servant joining), and a legitimate client's
     `needs peer list` round trips are timed, quiet and under attack.
  3  The same floods against a servant's listen port while it chats with four real peers:
     every message sent during the attack must arrive exactly once, in order.
  4  Threads and RSS of the manager and of the attacked servant (/proc/PID/status) at the
     start, at the peak of the attack, and after it (threads must come back).
  7  Churn: 20 servants; every second one is killed (kill -9) or leaves (/quit) and a new one
     starts; every member sends a numbered message every 100 ms. Each message sent while both
     ends were members (from 2 s after the later join to 2 s before either leaves) must
     reach the other exactly once and in order.
  8  The manager lost: kill -9 with 5 servants chatting, 5 s outage, restart on the same port;
     chat goes on throughout (exactly once), and the manager's list fills up again.

Each scenario is a data file in lab/stress/ (kind = "loopback"): which of the procedures
below runs it, and every figure it uses, from the number of idle sockets to the limits its
checks hold the results to: floods.toml (2, 3, 4), churn.toml (7), manager-lost.toml (8).
The files are read and checked with the LAN lab's loader (lab/scenario.py) before anything
starts; a bad one is one line naming the file and the problem.

The attack processes run at nice 19 (--attacker-nice): they stand for hosts elsewhere, whose
CPU is not the servers'. Servants in the churn get <maxperaddress>64</maxperaddress> (the
default): on loopback every peer connects from 127.0.0.1.

Python 3.11 standard library only. Every loop is bounded in count or time; a watchdog ends
the run after --deadline seconds. Prints a Markdown report and writes it to --out.
Exit status: 0 when every check passes, 1 when one fails, 2 on a driver error.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

# The parts, each a module beside this one (lowest first): stress_base (clock, log, /proc,
# sockets), stress_figures (the data files), stress_attacks (the attack workers),
# stress_procs (servant and manager processes), stress_ledger (messages owed and received),
# stress_run (one run's state), stress_floods (2, 3, 4), stress_churn (7), stress_lost (8),
# stress_report (the Markdown report).
import stress_figures as figures
from stress_base import ROOT, log, now
from stress_churn import churn
from stress_floods import floods
from stress_lost import manager_lost
from stress_procs import Manager
from stress_report import report
from stress_run import Run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "STRESS.md"))
    ap.add_argument("--workdir", default=None, help="keep configs and logs here (default: a temp dir, removed)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--scenarios", default=figures.STRESS_DIR, help="directory of the scenario files (lab/stress)")
    ap.add_argument("--churn-seconds", type=int, default=None, help="instead of churn.toml's seconds (30)")
    ap.add_argument("--outage", type=float, default=None, help="instead of manager-lost.toml's outage (5.0)")
    ap.add_argument("--dump", action="store_true", help="write the message ledgers to the workdir as JSON")
    ap.add_argument("--attacker-nice", type=int, default=None,
                    help="nice value of the attack processes (0: same priority as the servers; default: floods.toml's)")
    ap.add_argument("--deadline", type=float, default=420, help="watchdog: give up after this many seconds")
    ap.add_argument("--only", default="2,3,4,7,8", help="scenarios to run (2,3,4 go together)")
    args = ap.parse_args()
    try:
        by_number = figures.load_scenarios(args.scenarios)
    except (figures.scenario.ScenarioError, OSError) as e:
        print(f"stress: {e}", file=sys.stderr)
        sys.exit(2)
    only = set(args.only.split(","))
    missing = sorted(n for n in only if not n.isdigit() or int(n) not in by_number)
    if missing:
        known = ", ".join(f"{n} ({d['file']})" for n, d in sorted(by_number.items()))
        print(f"stress: no scenario {missing[0]} in {args.scenarios} (there: {known})", file=sys.stderr)
        sys.exit(2)
    figures.use_figures(by_number)
    if args.attacker_nice is None:
        args.attacker_nice = by_number[2]["attack"]["nice"] if 2 in by_number else 19

    keep = args.workdir is not None
    if keep:
        os.makedirs(args.workdir, exist_ok=True)
    else:
        args.workdir = tempfile.mkdtemp(prefix="genp2p-stress.")
    run = Run(args, by_number)

    def watchdog(*_):
        log(f"watchdog: over {args.deadline:.0f} s; stopping")
        run.cleanup()
        os._exit(2)

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(int(args.deadline))
    signal.signal(signal.SIGTERM, lambda *_: (run.cleanup(), os._exit(2)))
    t0 = now()
    status = 0
    try:
        if only & {"2", "3", "4", "7"}:
            if only & {"2", "3", "4"}:
                floods(run)
            if "7" in only:
                if run.manager is None:
                    run.manager = Manager(run, "manager-churn")
                churn(run)
            run.manager.kill9()
        if "8" in only:
            manager_lost(run)
    except Exception as e:  # a driver error: report what we have, fail
        traceback.print_exc()
        run.check("driver", False, f"{type(e).__name__}: {e}")
        status = 2
    finally:
        run.cleanup()
        signal.alarm(0)
    text = report(run, now() - t0, __file__)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        log(f"written to {os.path.relpath(args.out, ROOT)}")
    failed = [c for c in run.checks if not c[1]]
    if failed and status == 0:
        status = 1
    if not keep and status == 0:
        shutil.rmtree(args.workdir, ignore_errors=True)
    elif not keep:
        log(f"logs kept in {args.workdir}")
    log(f"{len(run.checks) - len(failed)}/{len(run.checks)} checks passed")
    sys.exit(status)


if __name__ == "__main__":
    main()
