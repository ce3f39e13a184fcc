"""Steps that read what the programs said: their logs, and the /peers table a servant
shows. Registered into the vocabulary of steps.py (see its docstring)."""

import re
import time

import checks
from checks import bare, matcher
from steps import Fatal, names, step

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
