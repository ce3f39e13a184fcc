#!/usr/bin/env python3
"""Turns bench/out/results.jsonl (written by examples/bench_driver.rs) into
bench/RESULTS.md and bench/fanout.svg. Standard library only."""

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="bench/out")
ap.add_argument("--md", default="bench/RESULTS.md")
ap.add_argument("--svg", default="bench/fanout.svg")
ap.add_argument("--cmd", default="make bench")
ap.add_argument("--secs", type=float, default=float("nan"))
args = ap.parse_args()

rows = []
with open(os.path.join(args.out, "results.jsonl")) as f:
    for line in f:
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass


def sel(test, **kw):
    return [r for r in rows if r.get("test") == test and all(r.get(k) == v for k, v in kw.items())]


def vals(rs, key):
    return [r[key] for r in rs if isinstance(r.get(key), (int, float)) and r.get(key) is not None]


def med(v):
    return statistics.median(v) if v else None


def fmt(x, unit="", digits=None):
    if x is None:
        return "–"
    if digits is None:
        a = abs(x)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return f"{x:,.{digits}f}{unit}"


def mmm(v, unit="", digits=None):
    """median (min–max) over runs"""
    if not v:
        return "–"
    if len(v) == 1:
        return fmt(v[0], unit, digits) + " (1 run)"
    return f"{fmt(med(v), unit, digits)} ({fmt(min(v), '', digits)}–{fmt(max(v), '', digits)})"


def ratio_runs(a_rows, b_rows, key):
    """Per-run ratios a/b, pairing runs by index (runs alternate which system goes first)."""
    b_by = {r["run"]: r[key] for r in b_rows if r.get(key)}
    out = []
    for r in a_rows:
        b = b_by.get(r["run"])
        if b and r.get(key) is not None:
            out.append(r[key] / b)
    return out


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def yes(ok):
    return "**met**" if ok else "**missed**"


md = []
goals = []  # (goal, met?, detail)

# ----------------------------------------------------------------------------- facts
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
facts = [
    ("command", f"`{args.cmd}`"),
    ("date (UTC)", time.strftime("%Y-%m-%d %H:%M", time.gmtime())),
    ("wall time of the run", f"{args.secs:.0f} s" if args.secs == args.secs else "–"),
    ("git", os.environ.get("GENP2P_REV") or (sh("git rev-parse --short HEAD") + (" (with uncommitted changes to src/ or Cargo.toml)" if sh("git status --porcelain -- src Cargo.toml") else ""))),
    ("nproc", sh("nproc")),
    ("CPU", cpu),
    ("memory", sh("free -g | awk '/Mem:/{print $2\" GiB\"}'")),
    ("kernel", platform.release()),
    ("rustc", sh("rustc --version")),
    ("load average at start / end", (open(os.path.join(args.out, "loadavg.start")).read().strip() if os.path.exists(os.path.join(args.out, "loadavg.start")) else "–") + " / " + open("/proc/loadavg").read().strip()),
    ("limits", f"ulimit -n {sh('ulimit -n')} (the hard limit here; it cannot be raised), pid_max {sh('cat /proc/sys/kernel/pid_max')}, vm.max_map_count {sh('cat /proc/sys/vm/max_map_count')}, somaxconn {sh('cat /proc/sys/net/core/somaxconn')}"),
    ("socat / aria2 / nginx", (sh("dpkg-query -W -f='${Version}' socat") or "not installed") + " / " + (sh("dpkg-query -W -f='${Version}' aria2") or "not installed") + " / " + (sh("dpkg-query -W -f='${Version}' nginx-light") or sh("dpkg-query -W -f='${Version}' nginx") or "not installed")),
    ("opentracker / wrk", (sh("dpkg-query -W -f='${Version}' opentracker") or "not installed") + " / " + (sh("dpkg-query -W -f='${Version}' wrk") or "not installed")),
]

# ----------------------------------------------------------------------------- 1. fan-out
fan = sel("fanout")
configs = sorted({(r["n"], r.get("receivers", "servant")) for r in fan}, key=lambda c: (c[0], c[1] != "servant"))
fan_table = []
svg_points = {}  # series -> [(n, med, lo, hi, p99med)]
for n, rec in configs:
    g = sel("fanout", system="genp2p", n=n, receivers=rec)
    fl = sel("fanout", system="floor", n=n, receivers=rec)
    r50 = ratio_runs(g, fl, "p50_us")
    r99 = ratio_runs(g, fl, "p99_us")
    ok = bool(r50) and med(r50) <= 1.25
    label = f"N = {n}" + (" (stub receivers)" if rec == "stub" else "")
    goals.append((f"1. fan-out p50, every line signed and tagged, within 1.25x of the unsigned floor, {label}", ok, f"ratio {mmm(r50, 'x', 2)}"))
    miss = sum(vals(g, "missing")) + sum(vals(fl, "missing"))
    fan_table.append(
        f"| {label} | p50 | {mmm([v / 1000 for v in vals(g, 'p50_us')], '', 2)} | {mmm([v / 1000 for v in vals(fl, 'p50_us')], '', 2)} | {mmm(r50, 'x', 2)} | ≤ 1.25x: {yes(ok)} |"
    )
    lp = sel("fanout", system="libp2p", n=n, receivers=rec)
    if lp:
        rl50 = ratio_runs(g, lp, "p50_us")
        fan_table.append(
            f"| {label} | libp2p gossipsub (signed), same pipes: p50 / p99 | {mmm([v / 1000 for v in vals(lp, 'p50_us')], '', 2)} / {mmm([v / 1000 for v in vals(lp, 'p99_us')], '', 2)} | | genp2p ÷ libp2p p50 {mmm(rl50, 'x', 2)} | sender CPU per message {mmm([v / 1000 for v in vals(lp, 'sender_cpu_us_per_msg')], ' ms', 2)}, receiver {mmm(vals(lp, 'receiver_cpu_us_per_msg'), ' µs', 1)} |"
        )
    fan_table.append(
        f"| {label} | p99 | {mmm([v / 1000 for v in vals(g, 'p99_us')], '', 2)} | {mmm([v / 1000 for v in vals(fl, 'p99_us')], '', 2)} | {mmm(r99, 'x', 2)} | (no goal){' — ' + str(miss) + ' deliveries missing' if miss else ''} |"
    )
    fan_table.append(
        f"| {label} | context switches in the sender per message | {mmm(vals(g, 'sender_cs_per_msg'), '', 0)} | {mmm(vals(fl, 'sender_cs_per_msg'), '', 0)} | | sender CPU per message: {mmm([v / 1000 for v in vals(g, 'sender_cpu_us_per_msg')], ' ms', 2)} vs {mmm([v / 1000 for v in vals(fl, 'sender_cpu_us_per_msg')], ' ms', 2)} |"
    )
    fan_table.append(
        f"| {label} | context switches in one receiver per message | {mmm(vals(g, 'receiver_cs_per_msg'), '', 1)} | {mmm(vals(fl, 'receiver_cs_per_msg'), '', 1)} | | |"
    )
    fan_table.append(
        f"| {label} | CPU µs per message, one receiver (mean over the N) | {mmm(vals(g, 'receiver_cpu_us_per_msg'), '', 1)} | {mmm(vals(fl, 'receiver_cpu_us_per_msg'), '', 1)} | {mmm(ratio_runs(g, fl, 'receiver_cpu_us_per_msg'), 'x', 2)} | |"
    )
    series = "genp2p, stub receivers" if rec == "stub" else "genp2p"
    for name, rs in ((series, g), ("floor", fl)):
        p50 = [v / 1000 for v in vals(rs, "p50_us")]
        p99 = [v / 1000 for v in vals(rs, "p99_us")]
        if p50:
            svg_points.setdefault(name, {})
            if name == "floor" and n in svg_points[name]:
                old = svg_points[name][n]
                p50 = old[3] + p50
                p99 = old[4] + p99
            svg_points[name][n] = (med(p50), min(p50), max(p50), p50, p99)

# ----------------------------------------------------------------------------- 2. burst
burst_table = []
for n, rec in sorted({(r["n"], r.get("receivers", "servant")) for r in sel("burst")}):
    g = sel("burst", system="genp2p", n=n, receivers=rec)
    fl = sel("burst", system="floor", n=n, receivers=rec)
    label = f"N = {n}" + (" (stub receivers)" if rec == "stub" else "")
    rate = ratio_runs(g, fl, "msgs_per_s")
    cpur = ratio_runs(g, fl, "cpu_ms")
    lost_g, dup_g = sum(vals(g, "lost")), sum(vals(g, "dup"))
    lost_f, dup_f = sum(vals(fl, "lost")), sum(vals(fl, "dup"))
    total = sum(vals(g, "msgs")) * n
    ok = lost_g == 0 and dup_g == 0 and bool(rate) and med(rate) >= 10
    goals.append((f"2. burst, every line signed: nothing lost or doubled, ≥ 10x the floor's msgs/s, {label}", ok,
                  f"lost {lost_g:,} of {total:,}, doubled {dup_g}, msgs/s ratio {mmm(rate, 'x', 2)}, CPU ratio {mmm(cpur, 'x', 2)}"))
    log = sel("burst-log", n=n, receivers=rec)
    warn = log[0].get("not_taking_warnings", 0) if log else 0
    gaps = log[0].get("receiver_gap_warnings", 0) if log else 0
    burst_table += [
        f"| {label} | messages/s delivered to all N | {mmm(vals(g, 'msgs_per_s'), '', 0)} | {mmm(vals(fl, 'msgs_per_s'), '', 0)} | {mmm(rate, 'x', 2)} | ≥ 10x: {yes(bool(rate) and med(rate) >= 10)} |",
        f"| {label} | lost / doubled (sum over runs) | {lost_g:,} / {dup_g:,} of {total:,} | {lost_f:,} / {dup_f:,} | | none: {yes(lost_g == 0 and dup_g == 0)}{f' ({warn} drop warnings in the sender log)' if warn else ''}{f' ({gaps} “never arrived” warnings in receiver logs)' if gaps else ''} |",
        f"| {label} | CPU ms, all processes (user+sys) | {mmm(vals(g, 'cpu_ms'), '', 0)} | {mmm(vals(fl, 'cpu_ms'), '', 0)} | {mmm(cpur, 'x', 2)} | less: {yes(bool(cpur) and med(cpur) < 1)} |",
        f"| {label} | seconds until the last delivery (stdin took) | {mmm(vals(g, 'secs'), '', 3)} ({mmm(vals(g, 'stdin_secs'), '', 3)}) | {mmm(vals(fl, 'secs'), '', 3)} ({mmm(vals(fl, 'stdin_secs'), '', 3)}) | | |",
    ]
    lb = sel("burst", system="libp2p", n=n, receivers=rec)
    if lb:
        burst_table.append(
            f"| {label} | libp2p gossipsub (signed): msgs/s; lost / doubled; CPU ms | {mmm(vals(lb, 'msgs_per_s'), '', 0)}; {sum(vals(lb, 'lost')):,} / {sum(vals(lb, 'dup')):,}; {mmm(vals(lb, 'cpu_ms'), '', 0)} | | genp2p ÷ libp2p msgs/s {mmm(ratio_runs(g, lb, 'msgs_per_s'), 'x', 2)} | |"
        )

# ----------------------------------------------------------------------------- 3. manager
mgr_table = []
ms = sel("manager-setup")
ot_present = bool(ms and ms[0].get("opentracker"))
g = sel("manager", system="genp2p")
e = sel("manager", system="echo-floor")
o = sel("manager", system="opentracker")
if g:
    r_echo = ratio_runs(g, e, "rps")
    r_ot = ratio_runs(g, o, "rps")
    p99g = med(vals(g, "p99_us"))
    ok_rps = bool(r_ot) and med(r_ot) >= 2
    ok_p99 = p99g is not None and p99g < 5000
    goals.append(("3. manager: at least 2x opentracker's round trips/s (registration signed)", ok_rps if ot_present else False,
                  f"ratio {mmm(r_ot, 'x', 2)}" if ot_present else "opentracker not available"))
    goals.append(("3. manager: p99 under 5 ms", ok_p99, f"p99 {fmt(p99g / 1000 if p99g else None, ' ms', 2)}"))
    mgr_table += [
        f"| round trips/s | {mmm(vals(g, 'rps'), '', 0)} | {mmm(vals(e, 'rps'), '', 0)} | {mmm(vals(o, 'rps'), '', 0) if o else 'not run'} | {mmm(r_echo, 'x', 2)} / {mmm(r_ot, 'x', 2)} | ≥ 2x opentracker: {yes(ok_rps)} |",
        f"| p50 ms | {mmm([v / 1000 for v in vals(g, 'p50_us')], '', 2)} | {mmm([v / 1000 for v in vals(e, 'p50_us')], '', 2)} | {mmm([v / 1000 for v in vals(o, 'p50_us')], '', 2) if o else '–'} | | |",
        f"| p99 ms | {mmm([v / 1000 for v in vals(g, 'p99_us')], '', 2)} | {mmm([v / 1000 for v in vals(e, 'p99_us')], '', 2)} | {mmm([v / 1000 for v in vals(o, 'p99_us')], '', 2) if o else '–'} | | < 5 ms: {yes(ok_p99)} |",
        f"| server CPU µs per round trip | {mmm(vals(g, 'server_cpu_us_per_req'), '', 1)} | {mmm(vals(e, 'server_cpu_us_per_req'), '', 1)} | {mmm(vals(o, 'server_cpu_us_per_req'), '', 1) if o else '–'} | | |",
        f"| reply bytes | {int(med(vals(g, 'reply_bytes')) or 0):,} | {int(med(vals(e, 'reply_bytes')) or 0):,} | ~100 (bencoded, then close) | | |",
    ]

# ----------------------------------------------------------------------------- 4. storm
storm_table = []
ns = sorted({r["n"] for r in sel("storm")})
bpj = {}
bpl = {}
for n in ns:
    g = sel("storm", system="genp2p", n=n)
    e = sel("storm", system="echo-floor", n=n)
    j = vals(g, "join_ms")
    lv = vals(g, "leave_ms")
    incomplete = [r for r in g if r.get("join_ms") is None]
    okj = bool(j) and not incomplete and med(j) < 1000
    okl = bool(lv) and med(lv) < 1000
    goals.append((f"4. join storm of {n} under 1 s", okj, f"{mmm(j, ' ms', 0)}" + (f"; {len(incomplete)} run(s) incomplete" if incomplete else "")))
    goals.append((f"4. {max(1, n // 10)} leave of {n}: everyone told under 1 s", okl, f"{mmm(lv, ' ms', 0)}"))
    bpj[n] = med(vals(g, "bytes_per_join"))
    bpl[n] = med(vals(g, "bytes_per_leave"))
    storm_table += [
        f"| N = {n} | join: ms until every client holds the whole list | {mmm(j, '', 0)} | {mmm(vals(e, 'join_ms'), '', 0)} | | < 1 s: {yes(okj)} |",
        f"| N = {n} | of which: ms until the last connect() returned; listen-queue overflows | {mmm(vals(g, 'connect_max_ms'), '', 0)}; {mmm(vals(g, 'listen_overflows'), '', 0)} | {mmm(vals(e, 'connect_max_ms'), '', 0)}; {mmm(vals(e, 'listen_overflows'), '', 0)} | | |",
        f"| N = {n} | manager CPU ms during the join storm | {mmm(vals(g, 'server_cpu_join_ms'), '', 0)} | {mmm(vals(e, 'server_cpu_join_ms'), '', 0)} | | |",
        f"| N = {n} | leave of {max(1, n // 10)}: ms until every remaining client was told | {mmm(lv, '', 0)} | – | | < 1 s: {yes(okl)} |",
        f"| N = {n} | bytes sent per join (whole-list answer + pushes) | {mmm(vals(g, 'bytes_per_join'), '', 0)} | whole list to all: {fmt((bpj[n] or 0) * n / 2, '', 0)} | | |",
        f"| N = {n} | bytes sent per leave | {mmm(vals(g, 'bytes_per_leave'), '', 0)} | | | |",
        f"| N = {n} | socket reads per client during the join storm | {mmm(vals(g, 'reads_per_client_join'), '', 0)} | | | |",
    ]
if len(ns) >= 2 and bpj.get(ns[0]) and bpj.get(ns[-1]):
    k = ns[-1] / ns[0]
    gj = bpj[ns[-1]] / bpj[ns[0]]
    gl = (bpl[ns[-1]] / bpl[ns[0]]) if bpl.get(ns[0]) and bpl.get(ns[-1]) else float("nan")
    ok = gj < 2 * k and (gl != gl or gl < 2 * k)
    goals.append((f"4. bytes per event grow linearly: N x{k:.0f}", ok, f"bytes per join x{gj:.1f}, per leave x{gl:.1f} (linear: x{k:.0f}; quadratic: x{k * k:.0f})"))
    storm_table.append(f"| N {ns[0]} → {ns[-1]} | growth of bytes per join / per leave | x{gj:.1f} / x{gl:.1f} | linear x{k:.0f}, quadratic x{k * k:.0f} | | linear: {yes(ok)} |")

# ----------------------------------------------------------------------------- 5. capacity
cap_table = []
for c in sel("capacity"):
    who = c["system"] + (", listed servants" if c.get("clients") == "listed" else ", connected clients")
    extra = f" in {c.get('limit_secs')} s" if c.get("outcome") == "time limit" else ""
    cap_table.append(
        f"| {who} | {c.get('accepted'):,}{extra} (cap {c.get('maxconnections'):,}) | {fmt(c.get('rss_per_conn_kb'), ' KiB', 1)} | {c.get('threads'):,} | {c.get('dropped_by_server', 0)} | {c.get('outcome')}: `{c.get('refusal') or '–'}`{' then closed' if c.get('closed_after_refusal') else ''}{(', answered in ' + fmt(c.get('refusal_us'), ' µs', 0)) if c.get('refusal') else ''} |"
    )
    if c.get("clients") == "listed" and c.get("samples"):
        cap_table.append(f"| (RSS as listed servants grow: connections:RSS kB:threads) | `{c['samples']}` | | | | |")
for c in sel("capacity-stress"):
    cap_table.append(
        f"| genp2p, <maxconnections>{c.get('maxconnections'):,} (beyond the descriptor and thread limits) | {c.get('accepted'):,} | {fmt(c.get('rss_per_conn_kb'), ' KiB', 1)} | {c.get('threads'):,} | | {c.get('outcome')}; manager {c.get('manager_status')}, nofile {c.get('manager_nofile')}; log: `{c.get('manager_log_tail', '')[-160:]}` |"
    )
capg = [c for c in sel("capacity", system="genp2p") if c.get("clients") == "connected"]
if capg:
    c = capg[0]
    ok = c.get("outcome") == "refused" and c.get("accepted") == c.get("maxconnections") and c.get("server_alive")
    goals.append(("5. manager holds its cap and refuses newcomers with an error line", ok,
                  f"{c.get('accepted')} held, `{c.get('refusal')}`"))

# ----------------------------------------------------------------------------- ready before hashed
for r in sel("ready"):
    gib = r["bytes"] / (1 << 30)
    goals.append((f"ready before hashed: a servant with {gib:.0f} GiB to hash joins within 1 s of start", r["full_join_ms"] <= 1000,
                  f"joined in {r['full_join_ms']:.0f} ms (with an empty share: {r['empty_join_ms']:.0f} ms); the share hashed {r['hashed_ms'] / 1000:.1f} s after start"))

# ----------------------------------------------------------------------------- 6. footprint
foot_table = []
sz = sel("sizes")
if sz:
    s = sz[0]
    foot_table.append(f"| release binary size | servant {s['servant'] / 1e6:.2f} MB, connection-manager {s['connection_manager'] / 1e6:.2f} MB | fanout_floor {s['fanout_floor'] / 1e6:.2f} MB, echo_floor {s['echo_floor'] / 1e6:.2f} MB |")
    deps = s.get("dependencies", -1)
    if deps >= 0:
        goals.append(("dependencies: the normal dependency tree at most 25 crates (genp2p not counted)", deps <= 25,
                      f"{deps} crates (`cargo tree -e normal`)"))
for fp in sel("footprint"):
    if fp.get("receivers") != "servant":
        continue
    n = fp["n"]
    foot_table.append(
        f"| servant with {n} peers: RSS, threads | {fp['servant_rss_kb'] / 1024:.1f} MiB, {fp['servant_threads']} threads | floor sender {fp['floor_sender_rss_kb'] / 1024:.1f} MiB, {fp['floor_sender_threads']} threads; floor receiver {fp['floor_receiver_rss_kb'] / 1024:.1f} MiB, {fp['floor_receiver_threads']} threads |"
    )
    foot_table.append(f"| manager with {n + 1} servants: RSS, threads | {fp['manager_rss_kb'] / 1024:.1f} MiB, {fp['manager_threads']} threads | |")
for fp in sel("footprint", receivers="stub"):
    foot_table.append(f"| servant sending to {fp['n']} stub peers: RSS, threads | {fp['servant_rss_kb'] / 1024:.1f} MiB, {fp['servant_threads']} threads | |")
for n in sorted({r["n"] for r in sel("join")}):
    j = sel("join", n=n)
    foot_table.append(f"| start → joined, into a network of {n + 1} (ms) | {mmm(vals(j, 'genp2p_ms'), '', 1)} | floor receiver start → listening: {mmm(vals(j, 'floor_ms'), '', 1)} |")
for s in sel("setup"):
    foot_table.append(f"| network of {s['n']} {s.get('receivers')} receivers + sender: start → every receiver heard the sender (s) | {fmt(s.get('total_s'), '', 2)} (threads needed ≈ {s.get('threads_needed', 0):,}) | |")
# ----------------------------------------------------------------------------- signing
crypto_table = []
for c in sel("crypto"):
    goals.append(("cost of one signature / one check on this machine (no goal: reported)", None,
                  f"sign {fmt(c['sign_us'], ' µs', 1)} ({fmt(c['sign_online_us'], ' µs', 2)} of it when the line is typed), verify {fmt(c['verify_us'], ' µs', 1)}, tag {fmt(c['tag_us'], ' µs', 2)}"))
    crypto_table += [
        f"| Ed25519 signature of one line, whole | {fmt(c['sign_us'], ' µs', 2)} |",
        f"| the same in two halves: begun before the line is typed / finished when it is | {fmt(c['presign_us'], ' µs', 2)} / {fmt(c['sign_online_us'], ' µs', 2)} |",
        f"| checking one signature (a puller, per line signed alone) | {fmt(c['verify_us'], ' µs', 2)} |",
        f"| a link's tag of one line: made / checked (per line per peer on its author's own connections) | {fmt(c['tag_us'], ' µs', 3)} / {fmt(c['tag_check_us'], ' µs', 3)} |",
        f"| 64 lines signed together, per line: leaves, tree, one signature | {fmt(c['batch64_sign_us_per_line'], ' µs', 2)} |",
        f"| 64 lines signed together, checked by a reader, per line (one signature check, then paths) | {fmt(c['batch64_verify_us_per_line'], ' µs', 2)} |",
        f"| length of a chat line alone / signed with 63 others (without its tag) | {c['line_bytes']} / {c['batch_line_bytes']} bytes |",
    ]
for fp in sel("footprint-libp2p"):
    foot_table.append(
        f"| libp2p gossipsub node in a network of {fp['n'] + 1}: RSS, threads | sender {fp['sender_rss_kb'] / 1024:.1f} MiB, {fp['sender_threads']} threads; receiver {fp['receiver_rss_kb'] / 1024:.1f} MiB, {fp['receiver_threads']} threads | (bench/libp2p-chat: libp2p 0.57, tokio, ~216 crates) |"
    )

# ----------------------------------------------------------------------------- 8. overlay, simulated
sim_md = []
sims = sel("sim")
for r in sims:
    kind = "flooding" if r["flood"] else "Plumtree"
    ph = {p["name"]: p for p in r["phases"]}
    stable, healed = ph.get("stable"), ph.get("after healing from 20% failed")
    if not r["flood"] and stable and healed:
        goals.append((f"8. simulated, {r['servants']:,} servants: reliability 100 % in a stable overlay", stable["reliability_min"] == 1.0,
                      f"{stable['reliability'] * 100:.4f} % (lowest line {stable['reliability_min'] * 100:.4f} %)"))
        goals.append((f"8. simulated, {r['servants']:,} servants: ≥ 99.9 % of survivors once healed after 20 % failed", healed["reliability"] >= 0.999,
                      f"{healed['reliability'] * 100:.4f} % (lowest line {healed['reliability_min'] * 100:.4f} %), healed in {fmt((r['heal_failure_ms'] or 0) / 1000, ' s', 2)}"))
        goals.append((f"8. simulated, {r['servants']:,} servants: Plumtree's redundancy in the stable overlay ≤ 0.1", stable["redundancy"] <= 0.1,
                      f"{stable['redundancy']:.3f}"))
    sim_md.append(f"**{r['servants']:,} servants, {kind}**: {r['seconds']:.1f} s, {r['events']:,} events, peak RSS {r['rss_mib']:.0f} MiB; "
                  f"healed {fmt((r['heal_failure_ms'] or 0) / 1000, ' s', 2)} after 20 % failed and {fmt((r['heal_split_ms'] or 0) / 1000, ' s', 2)} after the split; "
                  f"{r['lost']} lines reported lost; active links per servant {r['degree_mean']:.2f} (fewest {r['degree_min']}).\n")
    sim_md.append("| phase | lines | reliability (lowest) | redundancy | ids per servant per line | last hop (max) | last delivery p50 |\n|---|---:|---:|---:|---:|---:|---:|")
    for p in r["phases"]:
        sim_md.append(f"| {p['name']} | {p['lines']} | {p['reliability'] * 100:.4f} % ({p['reliability_min'] * 100:.4f} %) | {p['redundancy']:.3f} | "
                      f"{p['ids_per_line']:.2f} | {p['last_hop']:.1f} ({p['last_hop_max']}) | {p['p50_ms']} ms |")
    sim_md.append("")

# ----------------------------------------------------------------------------- 9. overlay, real servants
real_md = []
for n in sorted({r["n"] for r in sel("fanout", system="genp2p-overlay")}):
    o = sel("fanout", system="genp2p-overlay", n=n)
    g = sel("fanout", system="genp2p", n=n, receivers="servant")
    r50 = ratio_runs(o, g, "p50_us")
    if n >= 100:
        goals.append((f"9. overlay not slower than the full mesh at N = {n} (p50, same run)", bool(r50) and med(r50) <= 1,
                      f"overlay ÷ full mesh p50 {mmm(r50, 'x', 2)}"))
    ms_ = lambda rs, k: mmm([v / 1000 for v in vals(rs, k)], '', 2)
    real_md += [
        f"| N = {n} | p50 ms | {ms_(o, 'p50_us')} | {ms_(g, 'p50_us')} | {mmm(r50, 'x', 2)} |",
        f"| N = {n} | p99 ms | {ms_(o, 'p99_us')} | {ms_(g, 'p99_us')} | {mmm(ratio_runs(o, g, 'p99_us'), 'x', 2)} |",
        f"| N = {n} | CPU µs per line, sender | {mmm(vals(o, 'sender_cpu_us_per_msg'), '', 0)} | {mmm(vals(g, 'sender_cpu_us_per_msg'), '', 0)} | |",
        f"| N = {n} | CPU µs per line, one receiver (mean over the N) | {mmm(vals(o, 'receiver_cpu_us_per_msg'), '', 0)} | {mmm(vals(g, 'receiver_cpu_us_per_msg'), '', 0)} | {mmm(ratio_runs(o, g, 'receiver_cpu_us_per_msg'), 'x', 2)} |",
        f"| N = {n} | context switches per line, one receiver | {mmm(vals(o, 'receiver_cs_per_msg'), '', 1)} | {mmm(vals(g, 'receiver_cs_per_msg'), '', 1)} | |",
    ]
    fo = sel("footprint-overlay", n=n)
    fm = sel("footprint", n=n, receivers="servant")
    if fo and fm:
        fo, fm = fo[0], fm[0]
        real_md.append(f"| N = {n} | threads per servant | receivers median {fo['receiver_threads_median']:.0f}, max {fo['receiver_threads_max']:.0f}; sender {fo['sender_threads']} | {fm['receiver_threads']} | |")
        real_md.append(f"| N = {n} | RSS per servant (MiB) | receivers median {fo['receiver_rss_kb_median'] / 1024:.1f}, max {fo['receiver_rss_kb_max'] / 1024:.1f} | {fm['receiver_rss_kb'] / 1024:.1f} | |")
    bo = sel("bytes-per-line", system="genp2p-overlay", n=n)
    bg = sel("bytes-per-line", system="genp2p", n=n)
    if bo and bg:
        real_md.append(f"| N = {n} | bytes on the loopback per line per servant (TCP/IP headers included) | {mmm(vals(bo, 'bytes_per_line_per_servant'), '', 0)} | {mmm(vals(bg, 'bytes_per_line_per_servant'), '', 0)} | {fmt(med(vals(bo, 'bytes_per_line_per_servant')) / med(vals(bg, 'bytes_per_line_per_servant')), 'x', 2)} |")
scale_md = []
for fp in sel("lan-scale-footprint"):
    n = fp["n"]
    rows = sel("lan-scale", n=n)
    clean = all(r["lost"] == 0 and r["doubled"] == 0 and r["out_of_order"] == 0 for r in rows)
    goals.append((f"9. lan-scale, {n} servants on their own addresses: nothing lost, doubled or out of order (stable, churn, burst)", clean and bool(rows),
                  "; ".join(f"{r['phase']}: {r['lost']} lost, {r['doubled']} doubled of {r['lines'] * (r['servants'] - 1):,}" for r in rows)))
    goals.append((f"9. lan-scale, {n} servants: at most 2D + 8 = 20 threads and 5 MiB RSS per servant", fp["threads_max"] <= 20 and fp["rss_kb_max"] <= 5 * 1024,
                  f"threads median {fp['threads_median']:.0f}, max {fp['threads_max']:.0f}; RSS median {fp['rss_kb_median'] / 1024:.1f} MiB, max {fp['rss_kb_max'] / 1024:.1f} MiB"))
    stable = [r for r in rows if r["phase"] == "stable"]
    if stable:
        goals.append((f"9. lan-scale, {n} servants: the last servant shows a line within 1 s at p50 (stable: 20 lines from 5 writers, one a second)", stable[0]["last_p50_ms"] <= 1000,
                      f"{stable[0]['last_p50_ms']:.0f} ms"))
    pss = fp.get("pss_mib_total", 0)
    goals.append((f"9. lan-scale, {n} servants: the whole network under 4 GiB (the servants' PSS summed: shared pages counted once)", 0 < pss < 4096,
                  f"PSS {pss:.0f} MiB (RSS summed, shared pages counted in every servant: {fp['rss_mib_total']:.0f} MiB)"))
    after = fp.get("rss_kb_median_after", 0)
    scale_md.append(f"**{n} servants** (127.0.1.1 onwards, one address each), started {fp['start_s']:.1f} s, all in the overlay and hearing s0 after {fp['ready_s']:.1f} s; "
                    f"per servant {fp['threads_median']:.0f} threads (max {fp['threads_max']:.0f}), {fp['rss_kb_median'] / 1024:.1f} MiB RSS (max {fp['rss_kb_max'] / 1024:.1f}), "
                    f"after the burst {after / 1024:.1f} MiB (max {fp.get('rss_kb_max_after', 0) / 1024:.1f}); "
                    f"a line came over {fp.get('hops_median', 0):.1f} hops to a servant (the median of the servants' means; {fp.get('hops_max', 0)} at most); "
                    f"all servants {fp['rss_mib_total']:.0f} MiB RSS, {pss:.0f} MiB PSS; manager {fp['manager_rss_kb'] / 1024:.1f} MiB. Churn: {fp['churn']} killed with SIGKILL and as many started.\n")
    scale_md.append("| phase | lines | servants counted | lost | doubled | out of order | delivery p50 / p99 / max (ms) | last servant, p50 (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        scale_md.append(f"| {r['phase']} | {r['lines']} | {r['servants']} | {r['lost']} | {r['doubled']} | {r['out_of_order']} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} / {r['max_ms']:.0f} | {r['last_p50_ms']:.0f} |")
    scale_md.append("")

# ----------------------------------------------------------------------------- 7. transfer
xfer_table = []
resume_table = []
xs = sel("transfer-setup")
xs = xs[0] if xs else {}
xg = sel("transfer", system="genp2p")
xsoc = sel("transfer", system="socat")
xar = sel("transfer", system="aria2c")
xr = sel("transfer-resume")
if xs:
    gib = lambda rs: vals(rs, "gib_per_s")
    r_soc = ratio_runs(xg, xsoc, "gib_per_s")
    r_ar = ratio_runs(xg, xar, "gib_per_s")
    size_mib = xs.get("bytes", 0) / (1 << 20)
    goals.append((f"7. file transfer, {size_mib:,.0f} MiB over loopback (no numeric goal)", None,
                  f"genp2p {mmm(gib(xg), ' GiB/s', 2)}; ÷ socat {mmm(r_soc, 'x', 2) if xsoc else 'not run'}; ÷ aria2c -x8 {mmm(r_ar, 'x', 2) if xar else 'not run'}"))
    na = lambda rs, txt: txt if rs else "not run"
    xfer_table += [
        f"| GiB/s (`/get` typed → `downloaded` line; copy started → copy exited) | {mmm(gib(xg), '', 2)} | {na(xsoc, mmm(gib(xsoc), '', 2))} | {na(xar, mmm(gib(xar), '', 2))} | {mmm(r_soc, 'x', 2)} / {mmm(r_ar, 'x', 2)} |",
        f"| seconds | {mmm(vals(xg, 'secs'), '', 2)} | {na(xsoc, mmm(vals(xsoc, 'secs'), '', 2))} | {na(xar, mmm(vals(xar, 'secs'), '', 2))} | |",
        f"| rate printed by the downloading servant (MiB/s) | {mmm(vals(xg, 'printed_mib_per_s'), '', 1)} | | | |",
        f"| of which: `/get` → first piece recorded in `.NAME.state` (s) | {mmm(vals(xg, 'first_piece_secs'), '', 3)} | | | |",
        f"| of which: `/get` → all but the last 4 pieces recorded (s) | {mmm(vals(xg, 'all_but_4_secs'), '', 3)} | | | |",
        f"| of which: `/get` → every piece recorded (s); GiB/s up to there | {mmm(vals(xg, 'all_pieces_secs'), '', 3)}; {mmm([xs['bytes'] / (1 << 30) / r['all_pieces_secs'] for r in xg if r.get('all_pieces_secs')], '', 2)} | | | |",
        f"| of which: every piece recorded → `downloaded` line (s) (workers finishing, fsync, whole-file hash, rename) | {mmm([r['secs'] - r['all_pieces_secs'] for r in xg if r.get('all_pieces_secs') is not None], '', 3)} | | | |",
        f"| CPU ms, sharing + downloading servant (user+sys) | {mmm(vals(xg, 'cpu_ms'), '', 0)} | | | |",
        f"| one BLAKE3 pass over the file (the sharer's start → `sharing` line: the cost of the whole-file check) | {fmt(xs.get('index_secs'), ' s', 3)} | | | |",
    ]
    if xr:
        unint = med(vals(xg, "secs"))
        tot = vals(xr, "total_secs")
        resume_table += [
            f"| pieces recorded at the kill -9; verified again after the restart (K of N) | {mmm(vals(xr, 'recorded_at_kill'), '', 0)}; {mmm(vals(xr, 'kept'), '', 0)} of {int(med(vals(xr, 'pieces')) or 0):,} |",
            f"| `/get` → kill -9 (s) | {mmm(vals(xr, 'first_secs'), '', 3)} |",
            f"| restart → joined and hearing of the sharer (s) | {mmm(vals(xr, 'restart_joined_secs'), '', 3)} |",
            f"| restart → `resuming` line: re-verification (s) (of which `/get` → `resuming`: sources, manifest, re-hashing K pieces) | {mmm(vals(xr, 'reverify_secs'), '', 3)} ({mmm(vals(xr, 'get_to_resuming_secs'), '', 3)}) |",
            f"| `resuming` → `downloaded` (s) | {mmm(vals(xr, 'rest_secs'), '', 2)} |",
            f"| restart → `downloaded` (s) | {mmm(vals(xr, 'restart_to_done_secs'), '', 2)} |",
            f"| total with the interruption (first part + restart → done) vs uninterrupted (median above) (s) | {mmm(tot, '', 2)} vs {fmt(unint, '', 2)}{(' = ' + fmt(med(tot) / unint, 'x', 2)) if tot and unint else ''} |",
        ]
skips = sel("skipped")
errors = sel("error")

# ----------------------------------------------------------------------------- write
md.append("# genp2p benchmark results\n")
md.append("Written by `bench/run.sh` (`make bench`); raw figures in `bench/out/results.jsonl`, logs in `bench/out/logs/`. "
          "Every figure is the **median (min–max) over runs**; genp2p and its baseline run in the same invocation, alternating "
          "which goes first, and the ratio is taken run by run (genp2p ÷ baseline). The machine is shared and noisy: trust ratios over absolute values.\n")
md.append("## Machine and command\n")
md.append("| | |\n|---|---|")
for k, v in facts:
    md.append(f"| {k} | {v} |")
md.append("")
md.append("## Goals\n")
md.append("| goal | result | figures |\n|---|---|---|")
for gname, ok, detail in goals:
    md.append(f"| {gname} | {yes(ok) if ok is not None else 'reported'} | {detail} |")
md.append("")
md.append("![fan-out latency against the number of receivers](fanout.svg)\n")
md.append("## 1. Fan-out latency (ms, write to the sender's stdin → printed by the last receiver)\n")
md.append("Baseline: `examples/fanout_floor.rs` — one process writes each line to N persistent connections (TCP_NODELAY), each receiver a process that prints each line and flushes; driven through the same pipes. Within a run the two take turns message by message (which goes first alternates), so both meet the same machine: its speed drifts over seconds by as much as the difference measured. "
          "At N = 200 the receivers are `examples/servant_stub.rs` processes (a real servant needs ~2 threads per peer, so 201 servants need ~82,000 threads, beyond pid_max 32,768): only the sender is a real servant there.\n")
md.append("| N | figure | genp2p | floor | ratio | goal |\n|---|---|---|---|---|---|")
md += fan_table
for s in skips:
    md.append(f"| N = {s['n']} ({s.get('receivers')} receivers) | skipped | {s.get('why')} | | | |")
md.append("")
md.append("## 2. Burst (5,000 messages written to the sender's stdin as fast as it takes them)\n")
md.append("| N | figure | genp2p | floor | ratio | goal |\n|---|---|---|---|---|---|")
md += burst_table
md.append("")
if crypto_table:
    md.append("## 2a. Signing and checking one line (`examples/bench_crypto.rs`, median of 7 loops)\n")
    md.append("| figure | time |\n|---|---|")
    md += crypto_table
    md.append("")
md.append("## 3. Connection manager: `needs peer list` round trips, 50 concurrent persistent clients, 50 servants listed\n")
md.append("Baselines: `examples/echo_floor.rs` (thread-per-connection line echo, same load generator `examples/loadgen.rs`) and opentracker "
          "(Debian package, whitelist of one info-hash) under `wrk -t2 -c50 --latency` (opentracker closes the connection after each answer). "
          + ("" if ot_present else "**opentracker was not available in this run.**") + "\n")
md.append("| figure | genp2p | echo floor | opentracker | genp2p ÷ echo / ÷ opentracker | goal |\n|---|---|---|---|---|---|")
md += mgr_table
md.append("")
md.append("## 4. Join storm and churn (`examples/loadgen.rs storm`: clients speaking the servant's manager protocol)\n")
md.append("Baseline for the times: the same clients against the echo floor (connect at once, one line each, echoed). Bytes are what the clients received.\n")
md.append("| N | figure | genp2p | baseline | | goal |\n|---|---|---|---|---|---|")
md += storm_table
md.append("")
md.append("## 5. Capacity (clients connected one after another until refused)\n")
md.append("| server | held | RSS per connection | threads | dropped by the server | how the next newcomer is refused |\n|---|---|---|---|---|---|")
md += cap_table
md.append("")
md.append("## 6. Footprint\n")
md.append("| figure | genp2p | baseline |\n|---|---|---|")
md += foot_table
md.append("")
if xs:
    nginx_v = sh("dpkg-query -W -f='${Version}' nginx-light") or xs.get('nginx') or 'not installed'
    md.append(f"## 7. File transfer ({xs.get('bytes', 0) / (1 << 20):,.0f} MiB, one sharing servant → one downloading servant, 127.0.0.1)\n")
    md.append(f"Files in `{xs.get('where')}` (tmpfs: no disk in the way, fsync is free). Baselines in the same run, order rotated run by run: "
              f"`socat -u FILE tcp-listen:PORT` → `socat -u tcp:127.0.0.1:PORT OPEN:out,creat,trunc` (socat {xs.get('socat') or 'not installed'}); "
              f"`aria2c -x8 -s8` from nginx on 127.0.0.1 (Range requests; aria2 {xs.get('aria2') or 'not installed'}, nginx {nginx_v}). "
              "socat copies with its default 8 KiB buffer. "
              "genp2p verifies a BLAKE3 hash per 1 MiB piece and over the whole file; neither baseline checks anything."
              + (f" **Skipped: {xs.get('skipped')}.**" if xs.get('skipped') else "") + "\n")
    md.append("| figure | genp2p | socat | aria2c -x8 | genp2p ÷ socat / ÷ aria2c |\n|---|---|---|---|---|")
    md += xfer_table
    md.append("")
    if resume_table:
        md.append("Resume: the downloader is killed with SIGKILL once half of the pieces are recorded in `.NAME.state`, started again with the same downloads folder, and `/get` typed again.\n")
        md.append("| figure | genp2p |\n|---|---|")
        md += resume_table
        md.append("")
if sim_md:
    md.append("## 8. The overlay, simulated\n")
    md.append("The overlay's own state machine (`src/overlay/`) in the discrete-event simulator (`examples/sim.rs`): 5–50 ms one-way latencies, "
              "a fifth of the servants failing at once, a split in two halves for 8 s. Plumtree beside flooding in the same run; "
              "`make sim` runs the same at 100,000 servants and writes bench/SIM.md, which says what each measure is. "
              "Section 9 has the real servants.\n")
    md += sim_md
if real_md or scale_md:
    md.append("## 9. The overlay, real servants\n")
    md.append("The same fan-out as section 1, with a second network of real servants beside the full mesh: its own manager, the default `<fullmesh>` of 8 and `<degree>` of 6, "
              "measured once every servant has closed its links to every servant. The three systems take turns line by line. "
              "Bytes per line: the loopback's transmitted bytes over 50 lines of one system alone, divided by lines × receivers.\n")
    if real_md:
        md.append("| N | figure | overlay | full mesh | overlay ÷ full mesh |\n|---|---|---:|---:|---:|")
        md += real_md
        md.append("")
    if scale_md:
        md.append("`make lan-scale` (`examples/lan_scale.rs`): servants on loopback addresses of their own; 5 writers × 4 lines, one line a second (stable: 1,000 servants share 2 cores here, and a line a second leaves them room, so this is the overlay's latency), the same one line every 200 ms (busy: 5,000 deliveries a second, near what 2 cores carry, so this shows the machine's queue), "
                  "lines written while servants are killed and started (churn, counted over the servants up throughout), 10 writers × 50 lines at once (burst).\n")
        md += scale_md
md.append("## How it is measured\n")
md += [
    "- Everything runs on 127.0.0.1. Each load is bounded by a count and a time limit; every process started is killed by `bench_driver` when done (and by its dead-man timer), and the servants and floor processes also exit when the driver's end of their stdin closes.",
    "- Configurations written for the bench (`bench/out/conf/`): the manager with `<port>0</port>`, `<timeout>`/`<idletimeout>` 120 s (the fake clients never heartbeat; 3600 s for capacity), and `<maxperaddress>` equal to `<maxconnections>`, because every client of the bench comes from 127.0.0.1 (the default per-address caps, 64 for the manager and for a servant, would refuse them); servants with `<listen>0</listen>`, `<heartbeat>1</heartbeat>`, `<maxconnections>`/`<maxperaddress>` 1024. The manager's reachability probe stays on, so every fake client listens for real on the port it lists.",
    "- Fan-out: the driver writes `fK …` to the sender's stdin and timestamps it; a reader thread per receiver timestamps each printed line. One message at a time (the next after every receiver printed it, then 1–3 ms idle). Warm-up messages first, until every receiver printed one. Context switches: /proc/PID/task/*/status; CPU: /proc/PID/task/*/schedstat (nanoseconds), of the sender and of every receiver.",
    "- Burst: 5,000 lines in one `write` to the sender's stdin; done when every receiver printed every message, or 3 s without progress. CPU is user+system of every process of the system under test (manager and servants; floor sender and receivers), not of the driver.",
    "- Manager: `loadgen rtt` registers 50 fake servants (they drain their pushes), then 50 persistent connections send `needs peer list` and wait for the answer, for the stated time after 0.3 s of warm-up. The echo floor gets the same line from the same load generator. opentracker: `wrk -t2 -c50 --latency` on a whitelisted announce URL; wrk is a different (epoll, C) client.",
    "- Join storm: 1,000 client threads pre-spawned, each bound to a port, released by one barrier; a client is done when it holds every other id (from its `<peers>` answer plus `<join>` pushes). Then 10% say `bye`; done when every remaining client saw them leave. `listen-queue overflows` is the machine-wide TcpExt ListenOverflows counter over the storm.",
    "- File transfer: `bench_driver transfer` writes a pseudo-random file, starts a manager, a servant sharing the file (timed until its `sharing` log line) and, per run, a fresh downloading servant (empty `<downloads>` folder, default 4 workers), waits until it has heard of the sharer, types `/get NAME` and waits for the `downloaded` line; it polls `.NAME.state` meanwhile to split the time. socat and nginx listen on ports the OS chose (bound to 0, then released); the driver waits for the listening socket in /proc/net/tcp. Every copy's size is checked; the large files are deleted at the end.",
    "- Capacity: clients connect one after another (one thread), each asks for the list (connected) or lists itself (listed) and reads the answer; the RSS and thread figures are the server's /proc/PID/status.",
    "",
]
if errors:
    md.append("## Errors during the run\n")
    for e in errors:
        md.append(f"- {e.get('what')}")
    md.append("")

with open(args.md, "w") as f:
    f.write("\n".join(md) + "\n")

# ----------------------------------------------------------------------------- SVG
W, H = 880, 480
L, R, T, B = 70, 270, 60, 64
series_style = {
    "genp2p": ("#d9480f", "genp2p (real servants)"),
    "genp2p, stub receivers": ("#f08c00", "genp2p sender, stub receivers"),
    "floor": ("#1c7ed6", "raw-TCP floor"),
}
all_n = sorted({n for s in svg_points.values() for n in s})
all_y = [v for s in svg_points.values() for p in s.values() for v in [p[1], p[2]] + ([med(p[4])] if p[4] else [])]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="24" font-size="16" font-weight="bold">Fan-out latency: one line typed into a servant, until the last of N receivers prints it</text>',
       f'<text x="{L}" y="43" fill="#555">dots, solid: median over runs of p50; bars: min–max over runs; rings, dashed: p99. Log–log axes.</text>']
if all_n and all_y:
    import math
    xmin, xmax = math.log10(min(all_n)) - 0.15, math.log10(max(all_n)) + 0.15
    ticks = [t * 10 ** e for e in range(-2, 4) for t in (1, 2, 5)]
    lo = max([t for t in ticks if t <= min(all_y) * 0.9] or [ticks[0]])
    hi = min([t for t in ticks if t >= max(all_y) * 1.1] or [ticks[-1]])
    ylo, yhi = math.log10(lo), math.log10(hi)

    def X(n):
        return L + (math.log10(n) - xmin) / (xmax - xmin) * (W - L - R)

    def Y(v):
        return T + (1 - (math.log10(max(v, lo)) - ylo) / (yhi - ylo)) * (H - T - B)

    for y in ticks:
        if lo <= y <= hi:
            svg.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(y):.1f}" y2="{Y(y):.1f}" stroke="#e9ecef"/>')
            svg.append(f'<text x="{L - 8}" y="{Y(y) + 4:.1f}" text-anchor="end" fill="#555">{y:g}</text>')
    for n in all_n:
        svg.append(f'<line x1="{X(n):.1f}" x2="{X(n):.1f}" y1="{T}" y2="{H - B}" stroke="#f1f3f5"/>')
        svg.append(f'<text x="{X(n):.1f}" y="{H - B + 18}" text-anchor="middle">{n}</text>')
        if not any(c == (n, "servant") for c in configs):
            svg.append(f'<text x="{X(n):.1f}" y="{H - B + 32}" text-anchor="middle" fill="#777" font-size="11">(stub receivers)</text>')
    svg.append(f'<line x1="{L}" x2="{W - R}" y1="{H - B}" y2="{H - B}" stroke="#333"/>')
    svg.append(f'<line x1="{L}" x2="{L}" y1="{T}" y2="{H - B}" stroke="#333"/>')
    svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 18}" text-anchor="middle">receivers N (log scale)</text>')
    svg.append(f'<text transform="translate(22,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">milliseconds (log scale)</text>')
    ly = T + 10
    for name in ("genp2p", "genp2p, stub receivers", "floor"):
        pts = svg_points.get(name)
        if not pts:
            continue
        color, label = series_style[name]
        ns_ = sorted(pts)
        path = " ".join(f"{'M' if i == 0 else 'L'}{X(n):.1f},{Y(pts[n][0]):.1f}" for i, n in enumerate(ns_))
        svg.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        p99 = [(n, med(pts[n][4])) for n in ns_ if pts[n][4]]
        if p99:
            path = " ".join(f"{'M' if i == 0 else 'L'}{X(n):.1f},{Y(v):.1f}" for i, (n, v) in enumerate(p99))
            svg.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="5,4" opacity="0.8"/>')
        for n, v in p99:
            svg.append(f'<circle cx="{X(n):.1f}" cy="{Y(v):.1f}" r="3.5" fill="white" stroke="{color}" stroke-width="1.5"/>')
        for n in ns_:
            m, a, b = pts[n][:3]
            svg.append(f'<line x1="{X(n):.1f}" x2="{X(n):.1f}" y1="{Y(a):.1f}" y2="{Y(b):.1f}" stroke="{color}" stroke-width="1.5"/>')
            svg.append(f'<circle cx="{X(n):.1f}" cy="{Y(m):.1f}" r="4" fill="{color}"/>')
        svg.append(f'<line x1="{W - R + 16}" x2="{W - R + 40}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2.5"/>')
        svg.append(f'<text x="{W - R + 46}" y="{ly + 4}">{label}</text>')
        ly += 22
    # ratio labels under the points
    ly += 14
    svg.append(f'<text x="{W - R + 16}" y="{ly}" font-weight="bold">p50 ÷ floor</text>')
    ly += 20
    for n, rec in configs:
        g = sel("fanout", system="genp2p", n=n, receivers=rec)
        fl = sel("fanout", system="floor", n=n, receivers=rec)
        r = ratio_runs(g, fl, "p50_us")
        if r:
            lab = f"N={n}{' stub' if rec == 'stub' else ''}: {med(r):.2f}x"
            svg.append(f'<text x="{W - R + 16}" y="{ly}" fill="{"#2b8a3e" if med(r) <= 1.2 else "#c92a2a"}">{lab}</text>')
            ly += 18
    svg.append(f'<text x="{W - R + 16}" y="{ly + 6}" fill="#555" font-size="11">goal: ≤ 1.2x</text>')
else:
    svg.append(f'<text x="{L}" y="{H / 2}">no fan-out figures in this run</text>')
svg.append("</svg>")
with open(args.svg, "w") as f:
    f.write("\n".join(svg) + "\n")
print(f"wrote {args.md} and {args.svg}")
