"""The ledger of `make stress`: the numbered messages the servants type (Chat) and what
they show, and the count of what each member was owed and what it got — exactly once,
in order, under the right name — over a whole run or a window of it.

A message is owed to a receiver when it was typed while sender and receiver were both
members: from JOIN_MARGIN after the later join to LEAVE_MARGIN before either left.
"""

import json
import threading
import time
from collections import defaultdict

import stress_figures as figures
from stress_base import INF, now, pct


def evaluate(servants, sent, t_lo=-INF, t_hi=INF, join_margin=None, leave_margin=None):
    """Counts, over the messages in `sent` typed in [t_lo, t_hi], what each other member
    had to receive (both ends members at the time, within the margins) and what it did."""
    join_margin = figures.JOIN_MARGIN if join_margin is None else join_margin
    leave_margin = figures.LEAVE_MARGIN if leave_margin is None else leave_margin
    by_name = {s.name: s for s in servants}

    def window(s):
        if s.joined_at is None:
            return None
        return s.joined_at, (s.leave_at - leave_margin) if s.leave_at else INF

    expected = defaultdict(set)  # (sender, receiver) -> seqs owed
    typed_at = {}
    typed = 0
    for name, seq, t in sent:
        if not (t_lo <= t <= t_hi):
            continue
        typed += 1
        typed_at[(name, seq)] = t
        ws = window(by_name[name])
        if ws is None:
            continue
        for r in servants:
            if r is by_name[name]:
                continue
            wr = window(r)
            if wr and max(ws[0], wr[0]) + join_margin <= t <= min(ws[1], wr[1]):
                expected[(name, r.name)].add(seq)
    res = dict(typed=typed, owed=0, delivered=0, duplicated=0, lost=0, out_of_order=0,
               mislabelled=0, extra=0)
    lost_examples = []
    latencies = []
    for r in servants:
        recv = defaultdict(list)
        for shown, sender, seq, t in list(r.got):
            if shown != sender:
                res["mislabelled"] += 1
            recv[sender].append(seq)
            if seq in expected.get((sender, r.name), ()):
                latencies.append(t - typed_at[(sender, seq)])
        senders = set(recv) | {s for (s, rr) in expected if rr == r.name}
        for sender in senders:
            seqs = recv.get(sender, [])
            owed = expected.get((sender, r.name), set())
            counts = defaultdict(int)
            for q in seqs:
                counts[q] += 1
            in_range = [q for q in seqs if q in owed] if (t_lo > -INF or t_hi < INF) else seqs
            res["out_of_order"] += sum(1 for a, b in zip(in_range, in_range[1:]) if b < a)
            considered = owed if (t_lo > -INF or t_hi < INF) else set(counts)
            res["duplicated"] += sum(counts[q] - 1 for q in considered if counts.get(q, 0) > 1)
            res["owed"] += len(owed)
            got_owed = sum(1 for q in owed if q in counts)
            res["delivered"] += got_owed
            res["lost"] += len(owed) - got_owed
            res["extra"] += sum(1 for q in counts if q not in owed)
            if len(owed) > got_owed and len(lost_examples) < 8:
                missing = sorted(q for q in owed if q not in counts)
                lost_examples.append(f"{sender}->{r.name}: {len(missing)} lost, e.g. {missing[:6]}")
    res["lost_examples"] = lost_examples
    res["latency_p50_ms"] = pct(latencies, 50) * 1e3
    res["latency_p99_ms"] = pct(latencies, 99) * 1e3
    res["latency_max_ms"] = max(latencies) * 1e3 if latencies else float("nan")
    return res


def dump(path, servants, sent, **marks):
    """Writes what was typed and shown, with times, for a closer look (--dump)."""
    data = dict(marks=marks, sent=sent, servants={
        s.name: dict(joined=s.joined_at, left=s.leave_at, how=s.leave_how, got=list(s.got))
        for s in servants})
    with open(path, "w") as f:
        json.dump(data, f)


def wait_delivered(servants, sent, timeout, **kw):
    deadline = now() + timeout
    res = evaluate(servants, sent, **kw)
    while res["lost"] and now() < deadline:
        time.sleep(0.25)
        res = evaluate(servants, sent, **kw)
    return res


class Chat:
    """Every figures.CHAT_EVERY seconds, each member of `pool()` types a numbered message."""

    def __init__(self, pool):
        self.pool = pool
        self.sent = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chat", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        tick = now()
        for _ in range(100000):
            if self.stop.is_set():
                return
            for s in list(self.pool()):
                if s.member():
                    r = s.say()
                    if r:
                        self.sent.append(r)
            tick += figures.CHAT_EVERY
            delay = tick - now()
            if delay > 0:
                self.stop.wait(delay)
            else:
                tick = now()

    def end(self):
        self.stop.set()
        self.thread.join(5)


def exactly_once(res):
    """(passed, detail) of the check that every owed message arrived once, in order."""
    ok = (res["lost"] == 0 and res["duplicated"] == 0 and res["out_of_order"] == 0
          and res["mislabelled"] == 0 and res["owed"] > 0)
    return ok, (f"{res['typed']} typed, {res['owed']} owed, {res['delivered']} delivered, "
                f"{res['duplicated']} duplicated, {res['lost']} lost, {res['out_of_order']} out of order "
                f"{res['lost_examples']}")
