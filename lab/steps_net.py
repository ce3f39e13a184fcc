"""Steps that act on the network itself and measure it: nft rules and counters inside a
host, a host's switch port, a firewalled host's relay, clocks from an event to a log line.
Registered into the vocabulary of steps.py (see its docstring)."""

import os
import re
import threading
import time

import checks
import hosts
from checks import bare, matcher, secs
from steps import names, step
from steps_logs import pattern_of

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
