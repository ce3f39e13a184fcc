"""The step vocabulary of a scenario file: what each `do = "..."` does.

Each step is a function of the running scenario (Ctx) and its table from the file. The
field list beside each name is what the file may give ("!" marks a required field); the
checker in scenario.py reads it, so a new step needs only a function here (or in
steps_logs.py, which reads logs, or steps_net.py, which acts on the network). A step reports
with note() and fail(); a fatal failure (Fatal) ends the scenario's steps, after which the
runner still stops every program (checking they exit 0) and resets the hosts.
"""

import os
import time

import checks
import hosts
from checks import matcher, secs
from scenario import HOST, VAR, formula, text_vars

STEPS = {}


class Fatal(Exception):
    """A failure after which the rest of the scenario means nothing."""


def step(do, makes=None, **fields):
    def register(fn):
        STEPS[do] = (fn, fields, makes or {})
        return fn
    return register


class Ctx:
    """One running scenario: its programs, the names its steps made, what it found."""

    def __init__(self, scenario, knobs, net):
        self.sc, self.knobs, self.net = scenario, knobs, net
        self.n = knobs["n"]
        self.vars = text_vars(knobs)
        self.marks = {}
        self.chats = {}        # tag -> (k, senders, t0)
        self.counters = {}     # name -> dict(hosts, table, chains, value, t, what)
        self.timers = {}       # name -> dict(label, thread, ms)
        self.logs = {m[0]: m[0] for m in net.managers}  # manager name -> its current log
        self.failed = False
        self.mark("start")

    # -- reporting ------------------------------------------------------------------
    def note(self, msg):
        print(f"      {msg}", flush=True)

    def fail(self, msg, fatal=False):
        print(f"      FAIL: {msg}", flush=True)
        self.failed = True
        if fatal:
            raise Fatal()

    # -- values -----------------------------------------------------------------------
    def text(self, s):
        return VAR.sub(lambda m: str(self.vars[m.group(1)]), s) if s is not None else None

    def num(self, v, default=0.0):
        return default if v is None else formula(v, self.knobs)

    def host(self, ref):
        ref = self.text(ref)
        if ref == "last":
            return self.n
        m = HOST.match(ref)
        if not m:
            self.fail(f"'{ref}' is not a host", fatal=True)
        return int(m.group(1))

    def hosts(self, spec, exclude=None, default="servants"):
        items = spec if spec is not None else default
        items = [items] if isinstance(items, str) else items
        out = []
        for ref in items:
            if isinstance(ref, int):
                out.append(ref)
            elif ref == "servants":
                out += range(2, self.n + 1)
            elif ref == "all":
                out += range(1, self.n + 1)
            else:
                out.append(self.host(ref))
        drop = set(self.hosts(exclude, default=[])) if exclude else set()
        return sorted(set(out) - drop)

    def logs_of(self, spec, exclude=None):
        """Log names (manager.log, h3.log, ...) for a set of hosts and manager names."""
        items = [spec] if isinstance(spec, str) else spec
        mgrs = [self.logs[x] for x in items if x in self.logs]
        rest = [x for x in items if x not in self.logs]
        return mgrs + [f"h{i}" for i in (self.hosts(rest, exclude) if rest else [])]

    def path(self, name, ext="log"):
        return self.net.path(name, ext)

    # -- marks --------------------------------------------------------------------------
    def mark(self, name):
        counts = {}
        for f in os.listdir(self.net.sd):
            if f.endswith((".log", ".out")):
                counts[f] = len(checks.read_lines(os.path.join(self.net.sd, f)))
        self.marks[name] = (time.monotonic(), counts)

    def since(self, mark, name, ext="log"):
        lines = 0 if mark is None else self.marks[mark][1].get(f"{name}.{ext}", 0)
        return checks.since(self.path(name, ext), lines)

    def mark_time(self, mark):
        return self.marks[mark][0] if mark else time.monotonic()


def names(hs):
    return [f"h{i}" for i in hs]


def run_steps(ctx, steps):
    for st in steps:
        fn = STEPS[st["do"]][0]
        fn(ctx, st)


# ------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------
@step("start", makes={"marks": ("up",)}, nojoin="hosts")
def start(ctx, st):
    """The first manager, then a servant on every other host; waits until the manager
    lists them all and each has logged 'peer joined:' for every other one (those in
    nojoin excepted: a firewalled host may be relayed before a late servant hears of it)."""
    net = ctx.net
    serv = net.servant_hosts
    t0 = time.monotonic()
    name, host, port = net.managers[0]
    net.start_manager(name)
    ok, _ = net.ask(name, "wait", "--within", "5")
    if not ok:
        tail = " ".join(checks.read_lines(ctx.path(name))[-2:])
        ctx.fail(f"the manager did not answer on h{host}:{port} within 5s ({ctx.path(name)}: {tail})", fatal=True)
    for i in serv:
        net.start_servant(i)
    ok, _, seen = net.manager_wait(name, has=names(serv), within=15)
    if not ok:
        ctx.fail(f"not every servant joined within 15s: the manager lists {seen}", fatal=True)
    nojoin = set(ctx.hosts(st["nojoin"])) if "nojoin" in st else set()
    for i in serv:
        for j in serv:
            if i == j or j in nojoin:
                continue
            want = f"peer joined: h{j} "
            if not checks.wait_for(lambda: any(want in line for line in checks.read_lines(ctx.path(f"h{i}"))), 10):
                ctx.fail(f"h{i} did not take h{j} as a peer within 10s ({ctx.path(f'h{i}')})", fatal=True)
    ctx.mark("up")
    ctx.note(f"network up in {secs(t0)}s: manager on h{host}, servants on {' '.join(names(serv))}")


@step("start_manager", who="manager", log="str", wait="bool")
def start_manager(ctx, st):
    """Starts (or restarts) a manager; its log is LOG.log (default: its name)."""
    who = st.get("who", "manager")
    log = st.get("log", who)
    _, host, port = ctx.net.manager(who)
    ctx.net.start_manager(who, log)
    ctx.logs[who] = log
    if st.get("wait", True):
        ok, _ = ctx.net.ask(who, "wait", "--within", "5")
        if not ok:
            ctx.fail(f"{who} did not answer on h{host}:{port} within 5s ({ctx.path(log)})", fatal=True)
    ctx.note(f"{who} started on h{host}:{port} (log {log}.log)")


@step("kill", who="!proc", signal="str")
def kill(ctx, st):
    """Sends a signal (default KILL) to a servant (by host) or a manager (by name)."""
    sig = st.get("signal", "KILL")
    who = st["who"] if st["who"] in ctx.logs else f"h{ctx.host(st['who'])}"
    proc = ctx.net.procs.get(who)
    if proc is None:
        ctx.fail(f"{who} is not running: nothing to send SIG{sig} to", fatal=True)
    prog = "connection-manager" if who in ctx.logs else "servant"
    try:
        exe = os.readlink(f"/proc/{proc.pid}/exe")
    except OSError:
        exe = "(gone)"
    if exe != os.path.join(hosts.BIN, prog):
        ctx.fail(f"pid {proc.pid} of {who} is not the {prog} ({exe})", fatal=True)
    ctx.net.signal(who, sig)
    ctx.note(f"{who} (pid {proc.pid}) got SIG{sig}")


@step("type", hosts="!hosts", line="!str")
def type_line(ctx, st):
    """Types a line into servants, as if at their consoles."""
    for i in ctx.hosts(st["hosts"]):
        ctx.net.say(i, ctx.text(st["line"]))


@step("mark", name="!newmark")
def mark(ctx, st):
    """Remembers now: the time, and how long every log is (for since = NAME)."""
    ctx.mark(st["name"])


@step("wait", seconds="!num", since="mark", log="proc", text="str", regex="regex", min="num")
def wait(ctx, st):
    """Waits until SECONDS after the mark (default: now). With a log and a text or regex:
    ends early once the log has it (since the mark), but not before MIN seconds."""
    t0 = ctx.mark_time(st.get("since"))
    limit, least = ctx.num(st["seconds"]), ctx.num(st.get("min"))
    match = None
    if "log" in st:
        match = matcher(ctx.text(st.get("text")), ctx.text(st.get("regex")))
        log = ctx.logs_of(st["log"])[0]
    for _ in range(int(limit / 0.1) + 2):
        elapsed = time.monotonic() - t0
        if elapsed >= limit:
            break
        if match and elapsed >= least and checks.first_match(ctx.since(st.get("since"), log), match):
            break
        time.sleep(min(0.1, max(0.0, limit - elapsed)))


# ------------------------------------------------------------------------------------
# Chat
# ------------------------------------------------------------------------------------
@step("chat", tag="!newtag", lines="!int", senders="hosts", exclude="hosts", gap="num",
      after_round="int", then="steps")
def chat(ctx, st):
    """Every sender types LINES lines TAG-hS-#J, round-robin, GAP s between rounds (default
    0.02); after round AFTER_ROUND the steps in THEN run (the chat goes on after them)."""
    senders = ctx.hosts(st.get("senders"), st.get("exclude"))
    k, gap = st["lines"], ctx.num(st.get("gap"), 0.02)
    ctx.chats[st["tag"]] = (k, senders, time.monotonic())
    for j in range(1, k + 1):
        for s in senders:
            ctx.net.say(s, f"{st['tag']}-h{s}-#{j}")
        if j == st.get("after_round"):
            run_steps(ctx, st.get("then", []))
        time.sleep(gap)


@step("expect_chat", tag="!tag", within="!num", settle="num", receivers="hosts", senders="hosts",
      exclude="hosts", none="none", fatal="bool")
def expect_chat(ctx, st):
    """Every receiver shows each sender's lines of the chat TAG exactly once and in order,
    (complete within WITHIN s of the first being typed, then SETTLE s for anything extra);
    NONE = {h3 = ["h4"]}: h3 shows none of h4's. Receivers and senders default to the
    chat's senders. Prints what each receiver showed against what was expected."""
    tag = st["tag"]
    k, chat_senders, t0 = ctx.chats[tag]
    senders = ctx.hosts(st.get("senders", chat_senders), st.get("exclude"))
    receivers = ctx.hosts(st.get("receivers", chat_senders), st.get("exclude"))
    forbidden = {ctx.host(r): ctx.hosts(ss) for r, ss in st.get("none", {}).items()}
    pairs = [(r, s) for r in receivers for s in senders if r != s and s not in forbidden.get(r, [])]
    stats = lambda r, s: checks.PairStats(ctx.path(f"h{r}", "out"), r, s, tag, k)
    within = ctx.num(st["within"])
    checks.wait_for(lambda: all(stats(r, s).distinct == k for r, s in pairs), within - (time.monotonic() - t0) + 0.5)
    done = secs(t0)
    time.sleep(ctx.num(st.get("settle")))
    bad = False
    report = []
    for r in sorted(set(receivers) | set(forbidden)):
        got = [(s, stats(r, s)) for (rr, s) in pairs if rr == r]
        nogot = [(s, stats(r, s)) for s in forbidden.get(r, [])]
        parts = []
        if got:
            doubled = sum(p.doubled for _, p in got)
            order = [f"h{s}" for s, p in got if not p.in_order]
            parts.append(", ".join(f"h{s} {p.describe()}" for s, p in got)
                         + (f", out of order from {' '.join(order)}" if order else " in order")
                         + f", {doubled} doubled - expected all")
        for s, p in nogot:
            parts.append(f"h{s} {p.shown}/{k} - expected none")
        ok = all(p.complete() for _, p in got) and all(p.shown == 0 for _, p in nogot)
        report.append(f"  h{r}: " + "; ".join(parts) + ("" if ok else "   <- wrong"))
        for s, p in got:
            if not p.complete():
                miss = (", missing " + " ".join(f"#{j}" for j in p.missing)) if p.missing else ""
                ctx.fail(f"h{r} shows {p.distinct} of h{s}'s {k} '{tag}' lines ({p.shown} shown, {p.doubled} duplicate(s), "
                         f"in order: {'yes' if p.in_order else 'no'}{miss}) (h{r}.out)")
                bad = True
        for s, p in nogot:
            if p.shown:
                ctx.fail(f"h{r} shows {p.shown} of h{s}'s '{tag}' lines; it should show none (h{r}.out)")
                bad = True
    n_none = sum(len(v) for v in forbidden.values())
    if not bad:
        extra = f"; {n_none} banned pair(s) got none" if n_none else ""
        ctx.note(f"'{tag}': {len(pairs)} receiver/sender pair(s) got all {k} lines exactly once, in order "
                 f"(complete {done}s after the first was typed){extra}")
    for line in report:
        ctx.note(line)
    if bad and st.get("fatal"):
        raise Fatal()


# ------------------------------------------------------------------------------------
# The manager's list
# ------------------------------------------------------------------------------------
@step("expect_manager", who="manager", has="hosts", lacks="hosts", empty="bool", limit="num", patience="num")
def expect_manager(ctx, st):
    """The manager's list (asked with `needs peer list` from h1) has every host in HAS and
    none in LACKS within LIMIT s (watched PATIENCE s longer, to say how late it was);
    EMPTY: it lists nobody, now."""
    who = st.get("who", "manager")
    _, host, port = ctx.net.manager(who)
    if st.get("empty"):
        ok, out = ctx.net.ask(who, "peers")
        listed = out.split() if ok else None
        if listed == []:
            ctx.note(f"{who} (h{host}:{port}) lists nobody")
        else:
            ctx.fail(f"{who} (h{host}:{port}) should list nobody; it answers: {out or '(nothing)'}")
        return
    has = names(ctx.hosts(st["has"])) if "has" in st else []
    lacks = names(ctx.hosts(st["lacks"])) if "lacks" in st else []
    limit = ctx.num(st.get("limit"), 10)
    want = " ".join([f"has {','.join(has)}"] * bool(has) + [f"lacks {','.join(lacks)}"] * bool(lacks))
    ok, took, seen = ctx.net.manager_wait(who, has, lacks, within=limit + ctx.num(st.get("patience")))
    if not ok:
        ctx.fail(f"{who}'s list still does not satisfy '{want}' after {took:.1f}s; it lists {seen}")
    elif took > limit:
        ctx.fail(f"{who}'s list took {took:.1f}s to satisfy '{want}', more than {limit:g}s; it lists {seen}")
    else:
        ctx.note(f"{who}'s list {want} after {took:.1f}s (limit {limit:g}s): {seen}")


@step("expect_manager_down", who="manager")
def expect_manager_down(ctx, st):
    """Nothing answers on the manager's address."""
    who = st.get("who", "manager")
    _, host, port = ctx.net.manager(who)
    ok, _ = ctx.net.ask(who, "peers")
    if ok:
        ctx.fail(f"something answers on h{host}:{port} while {who} is dead")
    else:
        ctx.note(f"nothing answers on h{host}:{port} while {who} is down")


# The other steps register themselves when imported.
import steps_logs  # noqa: E402,F401
import steps_net  # noqa: E402,F401
