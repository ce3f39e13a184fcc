"""The plumbing every part of `make stress` (scripts/stress.py) uses: the clock, the log,
/proc sampling, sockets bound to a chosen 127.0.0.x source, percentiles.

Kept apart so that the attack workers, which run in processes of their own (spawned),
import nothing of the driver but this and the figures.
"""

import os
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INF = float("inf")


def now():
    return time.monotonic()


def log(msg):
    print(f"[stress {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_status(pid):
    """(threads, VmRSS in KiB) of a live process, or (None, None)."""
    threads = rss = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    threads = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return threads, rss


def connect_from(src, dst, timeout=3.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Let connect() pick the port: thousands of sockets per source address.
        s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
    except OSError:
        pass
    try:
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect(dst)
    except BaseException:
        s.close()
        raise
    return s


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def pct(samples, p):
    if not samples:
        return float("nan")
    xs = sorted(samples)
    i = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[i]
