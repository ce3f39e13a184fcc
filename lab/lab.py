#!/usr/bin/env python3
"""genp2p LAN lab: N hosts, each a network namespace on one bridge, for the connection
manager and servants to meet as they would on a real LAN. See docs/LAN-LAB.md.

  lab.py up [N]            N hosts gp2p-h1..gp2p-hN (h1..hN, 10.77.0.1..N) on bridge gp2p-br0
  lab.py demo [N]          manager on h1, a servant on every other host, scripted chat, clean stop
  lab.py test [S...]       the LAN scenarios (all, or those named: file name or number), PASS/FAIL each
  lab.py list              the scenarios in lab/scenarios/
  lab.py check [S...]      check the scenario files (all, or those named) without running them
  lab.py status            what the lab has up now
  lab.py down              remove everything the lab made (safe to repeat)

Scenarios are data (lab/scenarios/NAME.toml); this program reads them, builds the lab,
runs the steps, reports what every host showed against what was expected, and always
removes what it made: on success, on failure, and on SIGINT, SIGTERM or SIGHUP.
Needs root, ip (iproute2) with network namespaces, python3; `test` also needs nft.
Traffic goes only to the 10.77.0.0/24 addresses of the namespaces made here.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

if sys.version_info < (3, 11):  # tomllib reads the scenario files
    sys.exit(f"lab.py: needs Python 3.11 or later (tomllib); this is {sys.version.split()[0]}")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hosts  # noqa: E402
import scenario  # noqa: E402
import steps  # noqa: E402
from hosts import LAB, LOGROOT, LabError  # noqa: E402
from procs import Net  # noqa: E402

SCENARIOS = os.environ.get("LAB_SCENARIOS") or os.path.join(LAB, "scenarios")


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def catch_signals():
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)


def ignore_signals():
    """While tearing down: a second Ctrl-C must not leave half a lab behind."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)


def say_err(msg):
    print(f"lab.py: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------------
# Scenarios
# ------------------------------------------------------------------------------------
def load_all(knobs):
    """Every scenario file, checked, in the order lan-test runs them (number, then name)."""
    out = [scenario.load(p, knobs, steps.STEPS) for p in scenario.scenario_files(SCENARIOS)]
    numbers = {}
    for sc in out:
        if sc.number is not None and sc.number in numbers:
            raise scenario.ScenarioError(f"lab/scenarios/{sc.name}.toml: number {sc.number} is taken by {numbers[sc.number]}.toml")
        numbers[sc.number] = sc.name
    return sorted(out, key=lambda sc: (sc.number or 10**6, sc.name))


def select(all_sc, wanted):
    if not wanted:
        return all_sc
    by = {sc.name: sc for sc in all_sc}
    by.update({str(sc.number): sc for sc in all_sc if sc.number is not None})
    bad = [w for w in wanted if w not in by]
    if bad:
        raise LabError(f"unknown scenario '{bad[0]}': the scenarios are {', '.join(sc.name for sc in all_sc)} "
                       f"(or their numbers 1 to {max((sc.number or 0) for sc in all_sc)}; lab.py list)")
    return [by[w] for w in wanted]


def label(sc):
    return f"[{sc.number}]" if sc.number is not None else f"[{sc.name}]"


def run_scenario(sc, knobs, logdir, current):
    """Runs one scenario on the lab that is up; True when it passed."""
    print(f"{label(sc)} {sc.title}  ({sc.name}.toml)", flush=True)
    t0 = time.monotonic()
    sd = os.path.join(logdir, sc.name)
    shutil.rmtree(sd, ignore_errors=True)
    net = Net(sd, knobs, sc.managers, list(range(2, knobs["n"] + 1)),
              bans={h: c["bans"] for h, c in sc.servants.items()})
    current.append(net)
    ctx = steps.Ctx(sc, knobs, net)
    try:
        steps.run_steps(ctx, sc.steps)
    except steps.Fatal:
        pass
    if net.procs:
        bad = net.stop()
        if bad:
            ctx.fail(f"not a clean stop on SIGTERM: exit codes {' '.join(bad)} (logs in {sd})")
        else:
            ctx.note("clean stop on SIGTERM: every servant and manager exited 0")
    current.remove(net)
    hosts.reset_hosts(knobs["n"])
    result = "FAIL" if ctx.failed else "PASS"
    line = f"{result}  {label(sc)} {sc.title} ({time.monotonic() - t0:.1f}s)"
    print(f"    {line}", flush=True)
    return not ctx.failed, line


def cmd_test(wanted):
    knobs = scenario.knobs_from_env()
    chosen = select(load_all(knobs), wanted)   # every file checked before anything is built
    hosts.preflight("lan-test", need_nft=True)
    hosts.check_binaries()
    logdir = os.path.join(LOGROOT, "test")
    current, results, passed, rc = [], [], True, 1
    t_all = time.monotonic()
    catch_signals()
    try:
        if hosts.lab_is_up():
            print("a lab is up: the test replaces it with its own and removes that at the end")
        hosts.lab_down(quiet=True, keep_logs=True)
        shutil.rmtree(logdir, ignore_errors=True)
        hosts.lab_up(knobs["n"], quiet=True)
        hosts.copy_binaries()
        os.makedirs(logdir, exist_ok=True)
        serv = " ".join(f"h{i}" for i in range(2, knobs["n"] + 1))
        print(f"genp2p LAN test: {knobs['n']} hosts (manager on h1, servants on {serv}), manager timeout "
              f"{knobs['mgr_timeout']}s, heartbeat {knobs['heartbeat']}s", flush=True)
        for sc in chosen:
            ok, line = run_scenario(sc, knobs, logdir, current)
            passed &= ok
            results.append(line)
        print()
        print(f"summary ({time.monotonic() - t_all:.1f}s):")
        for line in results:
            print(f"  {line}")
        rc = 0 if passed else 1
    except Interrupted as e:
        print(f"\ninterrupted ({e})")
        rc = 130
    finally:
        ignore_signals()
        for net in current:
            net.stop_quietly()
        hosts.lab_down(quiet=True, keep_logs=True)
        if rc == 0 and not os.environ.get("KEEP_LOGS"):
            shutil.rmtree(logdir, ignore_errors=True)
            try:
                os.rmdir(LOGROOT)
            except OSError:
                pass
        elif os.path.isdir(logdir):
            print(f"logs kept in {logdir} (make lan-down removes them)")
        print("lab cleaned up")
    return rc


def cmd_list():
    knobs = scenario.knobs_from_env()
    print("scenarios in lab/scenarios/ (make lan SCENARIO=NAME, or lab.py test NAME...):")
    for sc in load_all(knobs):
        print(f"  {sc.name:<18} {label(sc):<5} {sc.title}")
    return 0


# ------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------
DEMO_LINES = [
    "hello from h%d - is anybody out there?",
    "h%d here: I hear you, and the manager only told me where you are",
    "h%d: no server in between, every line goes straight to each peer",
    "h%d signing off",
]


def cmd_demo(want):
    hosts.preflight("lan-demo")
    hosts.check_binaries()
    knobs = scenario.knobs_from_env({k: v for k, v in os.environ.items() if k != "LAB_N"})
    made = False
    net = follower = None
    rc = 1
    catch_signals()
    try:
        if hosts.lab_is_up():
            n = hosts.lab_hosts()
            if n != want:
                print(f"(the lab is up with {n} hosts; using those. make lan-down first for {want})")
        else:
            if want < 3:
                raise LabError(f"the demo needs N of 3 or more, got '{want}'")
            print(f"no lab is up: making one with {want} hosts for the demo (removed afterwards)")
            made = True
            hosts.lab_up(want, quiet=True)
            n = want
        if n < 3:
            raise LabError(f"the demo needs at least 3 hosts; the lab has {n} (make lan-down; make lan-up N=5)")
        hosts.copy_binaries()
        knobs["n"] = n
        serv = list(range(2, n + 1))
        print(f"== genp2p LAN demo: connection manager on h1 ({hosts.NET}.1:{hosts.MGR_PORT}), "
              f"servants on {' '.join(f'h{i}' for i in serv)}")
        net = Net(os.path.join(LOGROOT, "demo"), knobs, [("manager", 1, hosts.MGR_PORT)], serv)
        ctx = steps.Ctx(None, knobs, net)
        steps.start(ctx, {})
        _, listed = net.ask("manager", "peers")
        print(f"   the manager lists: {' '.join(listed.split())}")
        print("== chat (each line as shown on the receiving host: 'HOST | <SENDER> TEXT')", flush=True)
        follower = subprocess.Popen([hosts.PY, hosts.LABTOOL, "follow", "120"] + [net.path(f"h{i}", "out") for i in serv])
        for t in DEMO_LINES:
            for i in serv:
                net.say(i, t % i)
                time.sleep(0.4)
        time.sleep(1.5)
        print("== /peers typed on h2", flush=True)
        net.say(2, "/peers")
        time.sleep(1)
        follower.terminate()
        follower.wait(timeout=5)
        follower = None
        time.sleep(0.2)
        print("== clean stop: /quit typed on every servant, then SIGTERM to the manager", flush=True)
        bad = net.stop("/quit")
        if bad:
            ctx.fail(f"not a clean stop on /quit: exit codes {' '.join(bad)} (logs in {net.sd})")
        else:
            ctx.note("clean stop on /quit: every servant and the manager exited 0")
        print(f"== logs: {net.sd} (hN.out what hN showed, hN.log its log, manager.log)")
        if made:
            print("== the demo's lab is removed; its logs stay until make lan-down")
        rc = 1 if ctx.failed else 0
    except steps.Fatal:
        rc = 1
    except Interrupted as e:
        print(f"\ninterrupted ({e})")
        rc = 130
    finally:
        ignore_signals()
        if follower:
            follower.terminate()
        if net:
            net.stop_quietly()
        if made:
            hosts.lab_down(quiet=True, keep_logs=True)
    return rc


# ------------------------------------------------------------------------------------
def number(arg, what):
    try:
        return int(arg)
    except ValueError:
        raise LabError(f"{what} must be a number, got '{arg}'")


def main(argv):
    cmd, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    try:
        if cmd == "up":
            hosts.preflight("lan-up")
            hosts.check_binaries()
            catch_signals()
            try:
                hosts.lab_up(number(args[0] if args else "5", "N"))
            except Interrupted:
                ignore_signals()
                hosts.lab_down(quiet=True, keep_logs=True)
                print("interrupted: the half-made lab is removed")
                return 130
            hosts.copy_binaries()
            return 0
        if cmd == "demo":
            return cmd_demo(number(args[0] if args else "5", "N"))
        if cmd == "test":
            return cmd_test(args)
        if cmd == "list":
            return cmd_list()
        if cmd == "check":
            select(load_all(scenario.knobs_from_env()), args)
            return 0
        if cmd == "down":
            if os.geteuid() != 0:
                raise LabError("the LAN lab needs root to remove its namespaces; run it as root, e.g. sudo make lan-down")
            ignore_signals()
            hosts.lab_down()
            return 0
        if cmd == "status":
            hosts.status()
            return 0
        if cmd in ("-h", "--help", "help"):
            print(__doc__.split("\n\n")[1])
            return 0
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    except (LabError, scenario.ScenarioError) as e:
        say_err(str(e))
        return 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except BrokenPipeError:     # `lab.py status | head`
        os._exit(1)
