"""What the hosts showed, read back from their files, and how it is reported.

A scenario's messages are unique per tag, sender and number: TAG-hS-#J is servant S's J-th
line, shown on a receiver as "<hS> TAG-hS-#J". From a receiver's hI.out the lab counts,
per sender, how many of the k lines arrived, how many twice, and whether in order. Logs
are read as lines; a mark is a line count, so "since the mark" means the lines after it.
"""

import re
import time

LOG_PREFIX = re.compile(r"^\[[^]]*\] ")


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def since(path, mark=0):
    return read_lines(path)[mark:]


def bare(line):
    """A log line without its [time level target] prefix."""
    return LOG_PREFIX.sub("", line)


def matcher(text=None, regex=None):
    if regex is not None:
        r = re.compile(regex)
        return lambda line: r.search(line) is not None
    return lambda line: text in line


def first_match(lines, match):
    for line in lines:
        if match(line):
            return line
    return None


def last_match(lines, match):
    for line in reversed(lines):
        if match(line):
            return line
    return None


def wait_for(fn, within, step=0.1):
    """Calls fn every step seconds until it returns something true, at most within seconds
    (and a bounded number of times). Returns that value, or the last falsy one."""
    deadline = time.monotonic() + within
    v = fn()
    for _ in range(int(within / step) + 2):
        if v or time.monotonic() >= deadline:
            break
        time.sleep(step)
        v = fn()
    return v


class PairStats:
    """What receiver r shows of sender s's k lines tagged tag."""

    def __init__(self, out_path, r, s, tag, k):
        prefix = f"<h{s}> {tag}-h{s}-#"
        counts = [0] * (k + 1)
        self.shown, self.in_order, last = 0, True, 0
        for line in read_lines(out_path):
            if not line.startswith(prefix):
                continue
            j = line[len(prefix):]
            if not j.isdigit():
                continue
            j = int(j)
            self.shown += 1
            if 1 <= j <= k:
                counts[j] += 1
            if j <= last:
                self.in_order = False
            last = j
        self.k = k
        self.distinct = sum(1 for c in counts[1:] if c > 0)
        self.doubled = sum(c - 1 for c in counts[1:] if c > 1)
        self.missing = [j for j in range(1, k + 1) if counts[j] == 0]

    def complete(self):
        return self.distinct == self.k and self.doubled == 0 and self.shown == self.k and self.in_order

    def describe(self):
        d = f"{self.distinct}/{self.k}"
        if self.missing and len(self.missing) < self.k:
            d += " (missing " + " ".join(f"#{j}" for j in self.missing[:8]) + (" ..." if len(self.missing) > 8 else "") + ")"
        if self.shown != self.distinct + self.doubled:
            d += f", {self.shown} shown"
        return d


def secs(t0):
    return f"{time.monotonic() - t0:.1f}"
