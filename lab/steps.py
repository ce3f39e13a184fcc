"""The step vocabulary of a scenario file: what each `do = "..."` does.

Each step is a function of the running scenario (Ctx) and its table from the file. The
field list beside each name is what the file may give ("!" marks a required field); the
checker in scenario.py reads it, so a new step needs only a function here. A step reports
with note() and fail(); a fatal failure (Fatal) ends the scenario's steps, after which the
runner still stops every program (checking they exit 0) and resets the hosts.
"""

import os
import re
import threading
import time

import checks
import hosts
from checks import bare, matcher, secs
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


# ------------------------------------------------------------------------------------
# Logs
# ------------------------------------------------------------------------------------
def pattern_of(ctx, st):
    text, regex = ctx.text(st.get("text")), ctx.text(st.get("regex"))
    return matcher(text, regex), (text if text is not None else regex)


@step("expect_log", hosts="!logs", exclude="hosts", text="str", regex="regex", since="mark",
      within="num", limit="num", only_if="str", capture="newvar", capture_in="hosts", capture_exclude="hosts",
      report_only="bool", fatal="bool")
def expect_log(ctx, st):
    """Every log named logs a line with TEXT (or matching REGEX) after the mark SINCE,
    within WITHIN s of this step (default: it is there now), and at most LIMIT s after the
    mark. ONLY_IF: only hosts whose log has that text. CAPTURE: the regex's first group
    (from the last matching line of the first log) becomes ${CAPTURE}, and must be one of
    CAPTURE_IN (less CAPTURE_EXCLUDE). REPORT_ONLY: say what was seen, fail nothing."""
    match, pat = pattern_of(ctx, st)
    since_mark = st.get("since")
    logs = ctx.logs_of(st["hosts"], st.get("exclude"))
    if "only_if" in st:
        cond = ctx.text(st["only_if"])
        logs = [l for l in logs if any(cond in line for line in checks.read_lines(ctx.path(l)))]
    t_mark = ctx.mark_time(since_mark) if since_mark else time.monotonic()
    seen = {}
    pending = list(logs)
    deadline = time.monotonic() + ctx.num(st.get("within"))
    for _ in range(int(ctx.num(st.get("within")) / 0.1) + 2):
        for l in list(pending):
            if checks.first_match(ctx.since(since_mark, l), match):
                seen[l] = time.monotonic() - t_mark
                pending.remove(l)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if st.get("report_only"):
        for l in logs:
            line = checks.last_match(ctx.since(since_mark, l), match)
            ctx.note(f"{l}: {bare(line)}" if line else f"{l}: no '{pat}'")
        return
    for l in pending:
        last = checks.read_lines(ctx.path(l))[-1:] or ["(empty)"]
        ctx.fail(f"no '{pat}' in {l}.log within {ctx.num(st.get('within')):g}s (its last line: {bare(last[0])})")
    limit = ctx.num(st.get("limit"), None) if "limit" in st else None
    for l, t in seen.items():
        if limit is not None and t > limit:
            ctx.fail(f"{l} logged '{pat}' only after {t:.1f}s (limit {limit:g}s)")
    if seen:
        if len(seen) == 1:
            l = next(iter(seen))
            ctx.note(f"{l}: {bare(checks.last_match(ctx.since(since_mark, l), match))}")
        else:
            when = " ".join(f"{l}:{t:.1f}s" for l, t in seen.items()) if limit is not None else " ".join(seen)
            ctx.note(f"'{pat}' logged by {when}")
    elif not logs:
        ctx.note(f"'{pat}': no log to check")
    if "capture" in st and logs and logs[0] in seen:
        line = checks.last_match(ctx.since(since_mark, logs[0]), match)
        m = re.search(ctx.text(st["regex"]), line) if "regex" in st else None
        if not m or not m.groups():
            ctx.fail(f"cannot read ${{{st['capture']}}} from '{bare(line)}'", fatal=True)
        ctx.vars[st["capture"]] = m.group(1)
        allowed = names(ctx.hosts(st["capture_in"], st.get("capture_exclude"))) if "capture_in" in st else None
        if allowed is not None and f"h{m.group(1)}" not in allowed:
            ctx.fail(f"${{{st['capture']}}} is h{m.group(1)}, not one of {' '.join(allowed)}")
    if pending and st.get("fatal"):
        raise Fatal()


@step("expect_no_log", hosts="!logs", exclude="hosts", text="str", regex="regex", since="mark",
      after="str", report_only="bool")
def expect_no_log(ctx, st):
    """No log named has a line with TEXT (or matching REGEX) after the mark SINCE (and,
    with AFTER, from its first line with that text on). REPORT_ONLY: say, fail nothing."""
    match, pat = pattern_of(ctx, st)
    after = ctx.text(st.get("after"))
    hits = {}
    for l in ctx.logs_of(st["hosts"], st.get("exclude")):
        lines = ctx.since(st.get("since"), l)
        if after is not None:
            start = next((k for k, line in enumerate(lines) if after in line), len(lines))
            lines = lines[start:]
        found = [line for line in lines if match(line)]
        if found:
            hits[l] = found
    where = f" after '{after}'" if after else ""
    if not hits:
        ctx.note(f"no '{pat}' logged{where}")
    elif st.get("report_only"):
        ctx.note(f"'{pat}' logged{where}: " + " ".join(f"{l}:{len(f)}" for l, f in hits.items()))
    else:
        for l, found in hits.items():
            ctx.fail(f"{l}.log has '{pat}'{where}: {bare(found[0])}")


@step("expect_peers", hosts="!hosts", exclude="hosts", lacks="hosts", line_of="host",
      contains="str", matches="regex", also="str", within="num")
def expect_peers(ctx, st):
    """Types /peers into each servant and reads its table: LACKS are not listed; the line
    of LINE_OF (default: the whole table) contains CONTAINS and matches MATCHES; the
    whole table also contains ALSO."""
    within = ctx.num(st.get("within"), 3)
    for i in ctx.hosts(st["hosts"], st.get("exclude")):
        table = peers_table(ctx, i, within)
        if table is None:
            ctx.fail(f"h{i} did not answer /peers (h{i}.out)")
            continue
        flat = "|".join(table)
        for v in ctx.hosts(st["lacks"]) if "lacks" in st else []:
            listed = [line for line in table if re.match(rf"^  h{v} ", line)]
            if listed:
                ctx.fail(f"h{i}'s /peers still lists h{v}: {listed[0]}")
        target, what = table, "its /peers"
        if "line_of" in st:
            v = ctx.host(st["line_of"])
            target = [line for line in table if re.match(rf"^  h{v} ", line)][:1]
            what = f"its /peers line for h{v} ('{squeeze(target[0]) if target else 'none'}')"
        text = "\n".join(target)
        bad = []
        if "contains" in st and ctx.text(st["contains"]) not in text:
            bad.append(f"does not say '{ctx.text(st['contains'])}'")
        if "matches" in st and not re.search(ctx.text(st["matches"]), text):
            bad.append(f"does not match '{ctx.text(st['matches'])}'")
        if "also" in st and ctx.text(st["also"]) not in flat:
            bad.append(f"the table does not say '{ctx.text(st['also'])}'")
        if bad:
            ctx.fail(f"h{i}: {what} " + " and ".join(bad) + (f": {flat}" if "line_of" not in st else ""))
        else:
            own = [squeeze(line) for line in table if re.match(rf"^  h{i} +\(this servant\)", line)]
            shown = squeeze(target[0]) if "line_of" in st and target else (own[0] if own else "")
            if "lacks" in st:
                shown = f"{table[0].strip()} - not listing {' '.join(names(ctx.hosts(st['lacks'])))}"
            ctx.note(f"h{i} /peers: {shown}")


def squeeze(line):
    return re.sub(r" +", " ", line).strip()


def peers_table(ctx, i, within):
    """Types /peers into servant i; its answer, from ' peer(s); manager ' to its own line."""
    out = ctx.path(f"h{i}", "out")
    m = len(checks.read_lines(out))
    ctx.net.say(i, "/peers")
    own = re.compile(rf"^  h{i} +\(this servant\)")
    if not checks.wait_for(lambda: any(own.match(line) for line in checks.read_lines(out)[m:]), within):
        return None
    lines = checks.read_lines(out)[m:]
    start = next((k for k, line in enumerate(lines) if " peer(s); manager " in line), 0)
    end = next(k for k, line in enumerate(lines) if own.match(line))
    return lines[start:end + 1]


# ------------------------------------------------------------------------------------
# nft rules, counters, the switch
# ------------------------------------------------------------------------------------
@step("nft", hosts="!nfthosts", exclude="nfthosts", rules="!str")
def nft(ctx, st):
    """Loads nft rules (nft -f) inside each host. Every host's rules go when the scenario
    ends."""
    for i in ctx.hosts(st["hosts"], st.get("exclude")):
        try:
            hosts.nft_load(i, ctx.text(st["rules"]))
        except hosts.LabError as e:
            ctx.fail(f"cannot install the nft rules on h{i}: {e}", fatal=True)


@step("nft_delete", hosts="!nfthosts", table="!str")
def nft_delete(ctx, st):
    for i in ctx.hosts(st["hosts"]):
        hosts.in_host(i, "nft", "delete", "table", "inet", ctx.text(st["table"]), check=False)


VANISH_TABLE = """table inet gp2pvanish {
    chain in { type filter hook input priority -10; policy drop; iif "lo" accept; }
    chain out { type filter hook output priority -10; policy drop; oif "lo" accept; }
}
"""


@step("cut", host="!host")
def cut(ctx, st):
    """The host vanishes: its switch port goes down (LAB_VANISH=nft: its namespace drops
    every packet in and out). Its programs keep running and close nothing."""
    i = ctx.host(st["host"])
    try:
        if ctx.knobs["vanish"] == "nft":
            hosts.nft_load(i, VANISH_TABLE)
        else:
            hosts.set_port(i, False)
    except hosts.LabError as e:
        ctx.fail(f"could not cut h{i} off: {e}", fatal=True)
    ctx.note(f"h{i} cut off ({'nft drops all its traffic' if ctx.knobs['vanish'] == 'nft' else 'its switch port is down'})")


@step("reconnect", host="!host")
def reconnect(ctx, st):
    i = ctx.host(st["host"])
    if ctx.knobs["vanish"] == "nft":
        hosts.in_host(i, "nft", "delete", "table", "inet", "gp2pvanish", check=False)
    else:
        hosts.set_port(i, True)
    ctx.note(f"h{i} connected again")


def counter_value(ctx, c):
    return {ch: sum(hosts.nft_counter_sum(i, c["table"], ch) for i in c["hosts"]) for ch in c["chains"]}


@step("counter", name="!newcounter", hosts="!nfthosts", exclude="nfthosts", table="!str",
      chains="!strs", what="str")
def counter(ctx, st):
    """Reads the packet counters of nft chains (summed over the hosts) and remembers them."""
    c = {"hosts": ctx.hosts(st["hosts"], st.get("exclude")), "table": st["table"],
         "chains": st["chains"], "what": ctx.text(st.get("what", st["name"]))}
    c["value"], c["t"] = counter_value(ctx, c), time.monotonic()
    ctx.counters[st["name"]] = c


@step("expect_counter", name="!counter", moved="bool", min="int")
def expect_counter(ctx, st):
    """The counter, read again: MOVED = false: not changed since it was read; MIN: at
    least that many packets in all."""
    c = ctx.counters[st["name"]]
    now = counter_value(ctx, c)
    before, after = sum(c["value"].values()), sum(now.values())
    on = " ".join(names(c["hosts"]))
    took = secs(c["t"])
    detail = ", ".join(f"{ch} {v}" for ch, v in now.items())
    if st.get("moved") is False:
        if after == before:
            ctx.note(f"{c['what']}: none in the {took}s since it was read (nft counters on {on}: {before} before and after)")
        else:
            ctx.fail(f"{c['what']}: {after - before} in the {took}s since it was read (nft counters on {on}: {before} then {after})")
    if "min" in st:
        if after >= st["min"]:
            ctx.note(f"{c['what']}: {after} ({detail}; nft on {on}; {before} when first read)")
        else:
            ctx.fail(f"{c['what']}: only {after} (nft on {on}), expected at least {st['min']}")


@step("counter_settles", name="!counter", quiet="!num", within="!num", since="mark")
def counter_settles(ctx, st):
    """Waits until the counter has not moved for QUIET s (at most WITHIN s), then
    remembers its value anew. Fatal when it never settles."""
    c = ctx.counters[st["name"]]
    quiet, within = ctx.num(st["quiet"]), ctx.num(st["within"])
    value, t_last, t0 = sum(counter_value(ctx, c).values()), time.monotonic(), time.monotonic()
    stable = False
    for _ in range(int(within / 0.25) + 1):
        time.sleep(0.25)
        v = sum(counter_value(ctx, c).values())
        if v != value:
            value, t_last = v, time.monotonic()
        if time.monotonic() - t_last >= quiet:
            stable = True
            break
        if time.monotonic() - t0 >= within:
            break
    if not stable:
        ctx.fail(f"{c['what']} never stopped: {value} and still moving {within:g}s later", fatal=True)
    ref = st.get("since")
    when = f" {t_last - ctx.mark_time(ref):.1f}s after the mark '{ref}'" if ref else ""
    ctx.note(f"{c['what']} stopped{when} ({value} in all), then stayed still for {quiet:g}s")
    c["value"], c["t"] = counter_value(ctx, c), time.monotonic()


# ------------------------------------------------------------------------------------
# Relays and timings
# ------------------------------------------------------------------------------------
@step("wait_relayed", makes={"vars": ("relay", "slot"), "marks": ("relayed",)}, host="!host", within="num")
def wait_relayed(ctx, st):
    """Waits until the manager relays to the (firewalled) host and it pulls from its relay:
    the manager logs 'hV (slot N) is unreachable' and 'hV (slot N) pulls from hR (serving',
    hV logs 'pulling from relay hR at', hR 'relaying to hV at'. Sets ${relay} (R) and
    ${slot} (N) and the mark 'relayed'. Fatal when it does not happen within WITHIN s."""
    v = ctx.host(st["host"])
    within = ctx.num(st.get("within"), 10)
    mlog = ctx.logs["manager"]
    pulls = re.compile(rf"h{v} \(slot ([0-9]+)\) pulls from h([0-9]+) \(serving")
    found = lambda: checks.last_match(checks.read_lines(ctx.path(mlog)), pulls.search)
    line = checks.wait_for(found, within)
    if not line:
        hint = checks.last_match(checks.read_lines(ctx.path(mlog)), re.compile(rf"h{v} \(slot|complaint").search)
        ctx.fail(f"the manager did not relay to h{v} within {within:g}s of the network being up: {bare(hint or '')}", fatal=True)
    ctx.mark("relayed")
    unreach = checks.last_match(checks.read_lines(ctx.path(mlog)), re.compile(rf"h{v} \(slot [0-9]+\) is unreachable").search)
    if unreach:
        ctx.note(f"manager: {bare(unreach)}")
    else:
        ctx.fail(f"the manager relays to h{v} but never logged that it is unreachable")
    t_up = ctx.mark_time("up")
    ctx.note(f"manager: {bare(line)} ({ctx.marks['relayed'][0] - t_up:.1f}s after the network was up)")
    m = pulls.search(line)
    slot, r = m.group(1), int(m.group(2))
    if r == v:
        ctx.fail(f"cannot read the relay from the manager's log: '{bare(line)}'", fatal=True)
    ctx.vars.update(relay=str(r), slot=slot)
    want = f"pulling from relay h{r} at"
    vlog = ctx.path(f"h{v}")
    if checks.wait_for(lambda: checks.first_match(checks.read_lines(vlog), matcher(want)), 10):
        lines = checks.read_lines(vlog)
        ctx.note(f"h{v}: {bare(checks.last_match(lines, matcher(f'the manager finds us unreachable; pulling from h{r}')) or '')}")
        ctx.note(f"h{v}: {bare(checks.last_match(lines, matcher(want)))}")
    else:
        hint = checks.last_match(checks.read_lines(vlog), re.compile("pull|relay").search)
        ctx.fail(f"h{v} did not connect to its relay h{r} within 10s: {bare(hint or '')}", fatal=True)
    rlog = ctx.path(f"h{r}")
    want = f"relaying to h{v} at"
    if checks.wait_for(lambda: checks.first_match(checks.read_lines(rlog), matcher(want)), 5):
        ctx.note(f"h{r}: {bare(checks.last_match(checks.read_lines(rlog), matcher(want)))}")
    else:
        ctx.fail(f"the relay h{r} did not log '{want}' within 5s")


@step("timer", name="!newtimer", log="!proc", text="str", regex="regex", since="mark", within="num", label="str")
def timer(ctx, st):
    """Starts a clock: in the background (every 10 ms, for at most WITHIN s, default 15),
    the milliseconds from now until the log has the line (after the mark SINCE). Written
    to t-NAME in the scenario's directory; report_timers prints them."""
    match, _ = pattern_of(ctx, st)
    log = ctx.logs_of(st["log"])[0]
    since_mark, t0 = st.get("since"), time.monotonic()
    within = ctx.num(st.get("within"), 15)
    entry = {"label": ctx.text(st.get("label", st["name"])), "ms": None}

    def watch():
        for _ in range(int(within * 100) + 1):
            if checks.first_match(ctx.since(since_mark, log), match):
                entry["ms"] = int((time.monotonic() - t0) * 1000)
                with open(os.path.join(ctx.net.sd, f"t-{st['name']}"), "w") as f:
                    f.write(f"{entry['ms']}\n")
                return
            time.sleep(0.01)
    entry["thread"] = threading.Thread(target=watch, daemon=True)
    entry["thread"].start()
    ctx.timers[st["name"]] = entry


@step("report_timers", timers="!timer", title="str")
def report_timers(ctx, st):
    """Waits for the clocks to stop and prints them: 'TITLE: label 63 ms, ...'."""
    parts = []
    for name in st["timers"]:
        t = ctx.timers[name]
        t["thread"].join(timeout=20)
        parts.append(f"{t['label']} {t['ms']} ms" if t["ms"] is not None else f"{t['label']} (not seen)")
    ctx.note(f"{ctx.text(st.get('title', 'times'))}: " + ", ".join(parts))
