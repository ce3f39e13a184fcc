"""The lab's hosts: network namespaces on one bridge, and how to remove them again.

Host i is the namespace gp2p-hi (name hi, address 10.77.0.i/24 on its eth0). The bridge
and the switch side of every veth pair live in a namespace of their own, gp2p-sw, so the
machine's own network stack gets no interface, address, route or firewall rule. Removing
the lab is idempotent and works from nothing but what is on the machine: it finds the
processes by namespace (and by the binaries' copy under /run/genp2p-lab/bin), so it also
cleans up after a run that was killed half way.
"""

import os
import shutil
import subprocess
import sys
import time

LAB = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(LAB)
RUN = "/run/genp2p-lab"              # state, binaries, pid files
LOGROOT = "/tmp/genp2p-lab-logs"     # per-run logs: demo/, test/
BIN = os.path.join(RUN, "bin")
PIDS = os.path.join(RUN, "pids")
SW = "gp2p-sw"                       # the namespace that holds the bridge (the "switch")
BR = "gp2p-br0"
NSP = "gp2p-h"
NET = "10.77.0"
MGR_PORT = 8585
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else (shutil.which("python3") or "python3")
LABTOOL = os.path.join(LAB, "labtool.py")


class LabError(Exception):
    """A one-line reason the lab cannot do what was asked."""


def ns(i):
    return f"{NSP}{i}"


def run(*cmd, input=None, check=True, timeout=30):
    """Runs a command, returns its output; raises LabError with its message on failure."""
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"'{' '.join(cmd)}' failed: {e}")
    if check and p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().replace("\n", " ")
        raise LabError(f"'{' '.join(cmd)}' failed: {msg}")
    return p.stdout


def in_host(i, *cmd, **kw):
    return run("ip", "netns", "exec", ns(i), *cmd, **kw)


# ----------------------------------------------------------------------------------
# Preflight: one line and a non-zero exit when this machine cannot run the lab.
# ----------------------------------------------------------------------------------
def preflight(target, need_nft=False):
    if os.geteuid() != 0:
        raise LabError(f"the LAN lab needs root (network namespaces, a bridge, nft); run it as root, e.g. sudo make {target}")
    if not shutil.which("ip"):
        raise LabError("the LAN lab needs ip (iproute2): apt-get install iproute2")
    probe = f"gp2p-probe{os.getpid()}"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if p.returncode != 0:
        raise LabError("network namespaces are not available here (ip netns add: %s)" % p.stderr.strip().replace("\n", " "))
    p = subprocess.run(["ip", "netns", "exec", probe, "true"], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    tidy_run_netns()
    if p.returncode != 0:
        raise LabError("network namespaces are not usable here (ip netns exec: %s)" % p.stderr.strip().replace("\n", " "))
    if need_nft and not shutil.which("nft"):
        raise LabError("lan-test needs nft: apt-get install -y nftables")


def bin_source():
    return os.environ.get("GENP2P_BIN") or os.path.join(ROOT, "target", "release")


def check_binaries():
    src = bin_source()
    for b in ("servant", "connection-manager"):
        if not os.access(os.path.join(src, b), os.X_OK):
            raise LabError(f"no {src}/{b}: build first (cargo build --release, or make release)")


def copy_binaries():
    """Copies, so a rebuild during a run does not swap a binary under a running test, and
    so every lab process is recognisable by its path (/run/genp2p-lab/bin/...)."""
    check_binaries()
    os.makedirs(BIN, exist_ok=True)
    for b in ("servant", "connection-manager"):
        dst = os.path.join(BIN, b)
        tmp = dst + ".new"
        shutil.copy2(os.path.join(bin_source(), b), tmp)
        os.replace(tmp, dst)


# ----------------------------------------------------------------------------------
# What is up
# ----------------------------------------------------------------------------------
def lab_namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n == SW or (n.startswith(NSP) and n[len(NSP):].isdigit())]


def lab_is_up():
    return SW in lab_namespaces()


def lab_hosts():
    try:
        with open(os.path.join(RUN, "state")) as f:
            for line in f:
                if line.startswith("N="):
                    return int(line[2:])
    except (OSError, ValueError):
        pass
    return sum(1 for n in lab_namespaces() if n != SW)


# ----------------------------------------------------------------------------------
# down: processes first (a namespace lives on while a process is in it), then the rest.
# ----------------------------------------------------------------------------------
def alive(pid):
    """Running: not gone, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] not in ("Z", "X")
    except OSError:
        return False
    return False


def lab_pids():
    """Every process in a lab namespace, and any lab binary still running from BIN."""
    pids = set()
    for n in lab_namespaces():
        out = subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True).stdout
        pids.update(int(p) for p in out.split() if p.isdigit())
    if os.path.isdir(PIDS):
        for f in os.listdir(PIDS):
            try:
                with open(os.path.join(PIDS, f)) as fh:
                    p = int(fh.read().strip())
                if os.readlink(f"/proc/{p}/exe").startswith(BIN + "/"):
                    pids.add(p)
            except (OSError, ValueError):
                continue
    pids.discard(os.getpid())
    return sorted(pids)


def kill_lab_processes():
    """SIGTERM, then SIGKILL after 5 s; returns how many processes there were."""
    pids = lab_pids()
    for p in pids:
        try:
            os.kill(p, 15)
        except OSError:
            pass
    for _ in range(50):
        if not any(alive(p) for p in pids):
            return len(pids)
        time.sleep(0.1)
    for p in pids:
        if alive(p):
            try:
                os.kill(p, 9)
            except OSError:
                pass
    time.sleep(0.2)
    return len(pids)


def tidy_run_netns():
    """iproute2's /run/netns bind mount goes once no namespace is named in it."""
    d = "/run/netns"
    if not os.path.isdir(d) or os.listdir(d):
        return
    for _ in range(3):
        if subprocess.run(["mountpoint", "-q", d]).returncode != 0:
            break
        if subprocess.run(["umount", d], capture_output=True).returncode != 0:
            break
    try:
        os.rmdir(d)
    except OSError:
        pass


def lab_down(quiet=False, keep_logs=False):
    gone = []
    killed = kill_lab_processes()
    if killed:
        gone.append(f"{killed} process(es)")
    nss = [n for n in lab_namespaces()
           if subprocess.run(["ip", "netns", "del", n], capture_output=True).returncode == 0]
    if nss:
        gone.append(f"namespaces {' '.join(nss)} (with the bridge, veths and nft rules in them)")
    if os.path.isdir("/etc/netns"):
        for n in sorted(os.listdir("/etc/netns")):
            if n == SW or (n.startswith(NSP) and n[len(NSP):].isdigit()):
                shutil.rmtree(os.path.join("/etc/netns", n), ignore_errors=True)
                gone.append(f"/etc/netns/{n}")
        try:
            os.rmdir("/etc/netns")  # only if empty: it may hold other namespaces' files
        except OSError:
            pass
    tidy_run_netns()
    if os.path.exists(RUN):
        shutil.rmtree(RUN, ignore_errors=True)
        gone.append(RUN)
    if not keep_logs and os.path.exists(LOGROOT):
        shutil.rmtree(LOGROOT, ignore_errors=True)
        gone.append(LOGROOT)
    if quiet:
        return
    if gone:
        print("lab removed:")
        for g in gone:
            print(f"  {g}")
    else:
        print("nothing to remove: no lab is up")


# ----------------------------------------------------------------------------------
# up
# ----------------------------------------------------------------------------------
def lab_up(n, quiet=False):
    if not 2 <= n <= 250:
        raise LabError(f"N must be a number from 2 to 250, got '{n}'")
    if lab_namespaces():
        if not quiet:
            print("a lab is up already: removing it first")
        lab_down(quiet=True, keep_logs=True)
    try:
        build(n)
    except LabError as e:
        lab_down(quiet=True, keep_logs=True)
        raise LabError(f"could not build the lab: {e}")
    if quiet:
        return
    print(f"lab up: {n} hosts on bridge {BR} (in namespace {SW}), {NET}.0/24")
    print()
    print(f"   namespace {SW}: bridge {BR}")
    for i in range(1, n + 1):
        extra = "  (connection manager in demo/test)" if i == 1 else ""
        print(f"     +-- port h{i:<3} ==veth== eth0 {NET + '.' + str(i):<12} namespace {ns(i):<9} host h{i}{extra}")
    print()
    print(f"hosts file in each: /etc/netns/{NSP}I/hosts names h1..h{n}; all hosts resolve and reach h1")
    print(f"run something on a host:   ip netns exec {NSP}2 bash")
    print("remove it all:             make lan-down")


def build(n):
    os.makedirs(PIDS, exist_ok=True)
    with open(os.path.join(RUN, "state"), "w") as f:
        f.write(f"N={n}\n")
    run("ip", "netns", "add", SW)
    run("ip", "-n", SW, "link", "set", "lo", "up")
    run("ip", "-n", SW, "link", "add", BR, "type", "bridge")
    run("ip", "-n", SW, "link", "set", BR, "up")
    hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
    hosts += "".join(f"{NET}.{i} h{i}\n" for i in range(1, n + 1))
    for i in range(1, n + 1):
        h = ns(i)
        run("ip", "netns", "add", h)
        # IPv6 off: the lab is IPv4 only, and this keeps router solicitations off the bridge.
        in_host(i, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1", check=False)
        run("ip", "-n", SW, "link", "add", f"h{i}", "type", "veth", "peer", "name", "eth0", "netns", h)
        run("ip", "-n", SW, "link", "set", f"h{i}", "master", BR)
        run("ip", "-n", SW, "link", "set", f"h{i}", "up")
        run("ip", "-n", h, "link", "set", "lo", "up")
        run("ip", "-n", h, "addr", "add", f"{NET}.{i}/24", "dev", "eth0")
        run("ip", "-n", h, "link", "set", "eth0", "up")
        # `ip netns exec NS` bind-mounts /etc/netns/NS/hosts over /etc/hosts.
        try:
            os.makedirs(f"/etc/netns/{h}", exist_ok=True)
            with open(f"/etc/netns/{h}/hosts", "w") as f:
                f.write(hosts)
        except OSError as e:
            raise LabError(f"cannot write /etc/netns/{h}/hosts: {e}")
    # Every host resolves every name and reaches host 1 (and host 1 reaches the last one).
    checks = [(1, f"h{n}")] + [(i, "h1") for i in range(2, n + 1)]
    for i, target in checks:
        p = subprocess.run(["ip", "netns", "exec", ns(i), PY, LABTOOL, "probe", target],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise LabError(f"the lab does not work: from h{i}: " + (p.stdout + p.stderr).strip().replace("\n", "; "))


def status():
    if not lab_is_up():
        print("no lab is up")
        return
    n = lab_hosts()
    print(f"lab up: {n} hosts on bridge {BR} in namespace {SW}")
    for i in range(1, n + 1):
        addr = subprocess.run(["ip", "-n", ns(i), "-br", "-4", "addr", "show", "dev", "eth0"],
                              capture_output=True, text=True).stdout.split()
        addr = f"{addr[2]} {addr[1]}" if len(addr) >= 3 else ""
        out = subprocess.run(["ip", "netns", "pids", ns(i)], capture_output=True, text=True).stdout
        progs = []
        for p in out.split():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    progs.append(os.path.basename(f.read().split(b"\0")[0].decode()))
            except OSError:
                pass
        running = f"running: {' '.join(progs)}" if progs else ""
        print(f"  {ns(i):<9} h{i:<3} {addr:<12} {running}".rstrip())


# ----------------------------------------------------------------------------------
# Inside the hosts: nft, the switch ports
# ----------------------------------------------------------------------------------
def nft_load(i, rules):
    in_host(i, "nft", "-f", "-", input=rules)


def nft_counter_sum(i, table, chain):
    """The sum of the packet counters in chain CHAIN of table inet TABLE on host i."""
    out = in_host(i, "nft", "list", "chain", "inet", table, chain, check=False)
    total = 0
    words = out.split()
    for k, w in enumerate(words[:-1]):
        if w == "packets" and words[k + 1].isdigit():
            total += int(words[k + 1])
    return total


def set_port(i, up):
    run("ip", "-n", SW, "link", "set", f"h{i}", "up" if up else "down")


def reset_hosts(n):
    """Between scenarios: every host's nft rules gone and every switch port up."""
    for i in range(1, n + 1):
        in_host(i, "nft", "flush", "ruleset", check=False)
        run("ip", "-n", SW, "link", "set", f"h{i}", "up", check=False)


def die(msg):
    print(f"lab: {msg}", file=sys.stderr)
    sys.exit(1)
