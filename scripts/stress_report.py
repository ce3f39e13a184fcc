"""The report of `make stress` (bench/STRESS.md): a Markdown table of what each scenario sent
and what survived, the checks with their details, and what "owed" means. It only reads what
the scenarios recorded in the Run (run.res, run.checks).
"""

import os
import platform
import time

import stress_figures as figures
from stress_base import ROOT, load_average, pct


def report(run, elapsed, entry):
    """The Markdown report: one table row per scenario part, then every check; `entry` is
    the script that ran (named in the report's first line)."""
    r = run.res
    out = []
    out.append("# genp2p stress results")
    out.append("")
    out.append(f"`make stress` ({os.path.relpath(entry, ROOT)}), {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
               f"{platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
               f"loopback only; run took {elapsed:.0f} s, seed {run.args.seed}; load average "
               f"{run.load_start} at the start, {load_average()} at the end.")
    out.append("")
    out.append("| # | Scenario | What was sent | What survived | Check |")
    out.append("|---|---|---|---|---|")

    def ok(prefix):
        cs = [c for c in run.checks if c[0].startswith(prefix)]
        if not cs:
            return "not run"
        return "PASS" if all(c[1] for c in cs) else "FAIL"

    def fmt_atk(res):
        s = res.get("slowloris", {})
        j = res.get("junk", {})
        f = res.get("flood", {})
        return (f"{s.get('connected', '?')} idle sockets from {len(figures.SLOW_SRCS)} addresses; "
                f"{figures.JUNK_CLIENTS} junk clients ({j.get('connections', '?')} connections, "
                f"{j.get('bytes', 0) / 1e6:.0f} MB); `needs peer list` flood "
                f"({f.get('requests', 0):,} requests)"), s, j, f

    if "manager_attack" in r:
        ma = r["manager_attack"]
        sent, s, j, f = fmt_atk(ma["results"])
        out.append(f"| 2 | floods against the manager | {sent} | {s.get('held')} idle held, "
                   f"{s.get('refused')} refused by the per-address cap; junk dropped "
                   f"{j.get('dropped_by_target', '?')} times; flood answered {f.get('answer_lines', 0):,} lines "
                   f"over {f.get('connections', '?')} connection(s) | {ok('2:')} |")
        qs, as_ = ma["quiet"]["samples"], ma["attack"]["samples"]
        n = figures.RTT_SAMPLES
        out.append(f"| 2 | legit `needs peer list` RTT | {n} quiet, {n} under attack | "
                   f"quiet p50 {pct(qs, 50) * 1e3:.3f} ms, p99 {pct(qs, 99) * 1e3:.3f} ms; attack p50 "
                   f"{pct(as_, 50) * 1e3:.3f} ms, p99 {pct(as_, 99) * 1e3:.3f} ms ({len(as_)} answered) | "
                   f"{ok('2: legit needs')} |")
        dj = ma["d_join"]
        ep = ma["e_push"]
        out.append(f"| 2 | legit servant joins under attack | s-d starts, then s-e | s-d joined in "
                   f"{'-' if dj is None else f'{dj:.2f} s'} with {ma['d_peers']} peers listed; "
                   f"saw s-e's join {'never' if ep is None else f'{ep:.2f} s'} after s-e started | "
                   f"{ok('2: legit servant')} |")
    if "servant_attack" in r:
        sa = r["servant_attack"]
        sent, s, j, f = fmt_atk(sa["results"])
        ca, ck = sa["chat_all"], sa["chat_atk"]
        out.append(f"| 3 | floods against a servant's port | {sent} | {s.get('held')} idle held, "
                   f"{s.get('refused')} refused; {sa['noise']:,} junk lines shown on its stdout; "
                   f"its log grew to {sa['log_mb']:.1f} MB | {ok('3: per')} |")
        out.append(f"| 3 | its chat with 4 real peers | {ca['typed']} messages typed ({ck['typed']} during "
                   f"the attack), {ca['owed']} deliveries owed | {ca['delivered']} delivered, "
                   f"{ca['duplicated']} duplicated, {ca['lost']} lost, {ca['out_of_order']} out of order "
                   f"(during the attack: {ck['delivered']}/{ck['owed']}, latency p50 "
                   f"{ck['latency_p50_ms']:.1f} ms, p99 {ck['latency_p99_ms']:.1f} ms) | {ok('3: chat')} |")
    if "manager_attack" in r and "servant_attack" in r:
        ma, sa = r["manager_attack"], r["servant_attack"]

        def tr(x):
            return f"{x[0]} threads, {x[1] / 1024:.1f} MiB" if x and x[0] is not None else "-"

        out.append(f"| 4 | manager threads / RSS | start, peak, after | {tr(ma['start'])} → peak "
                   f"{tr(ma['peak'])} → {tr(ma['after'])} | {ok('4: manager')} |")
        out.append(f"| 4 | servant threads / RSS | start, peak, after | {tr(sa['start'])} → peak "
                   f"{tr(sa['peak'])} → {tr(sa['after'])} | {ok('4: servant')} |")
    if "churn" in r:
        c = r["churn"]
        x = c["res"]
        out.append(f"| 7 | churn, {c['servants']} servants, {c['duration']:.0f} s | {c['kills']} kill -9, {c['quits']} /quit, "
                   f"{c['started']} started; {x['typed']} messages typed, {x['owed']} deliveries owed | "
                   f"{x['delivered']} delivered, {x['duplicated']} duplicated, {x['lost']} lost, "
                   f"{x['out_of_order']} out of order; latency p50 {x['latency_p50_ms']:.1f} ms, "
                   f"p99 {x['latency_p99_ms']:.1f} ms | {ok('7:')} |")
    if "manager_lost" in r:
        ml = r["manager_lost"]
        o, a = ml["outage"], ml["all"]
        rj = ml["rejoin"]
        out.append(f"| 8 | manager killed, {run.outage()} s outage, restarted | outage "
                   f"({ml['outage_s']:.1f} s until the list was full again): {o['typed']} typed, "
                   f"{o['owed']} owed; whole run: {a['typed']} typed, {a['owed']} owed | "
                   f"outage: {o['delivered']} delivered, {o['duplicated']} duplicated, {o['lost']} lost "
                   f"(latency p99 {o['latency_p99_ms']:.1f} ms); "
                   f"whole: {a['delivered']} delivered, {a['duplicated']} dup, {a['lost']} lost, "
                   f"{a['out_of_order']} out of order; list full "
                   f"{'never' if rj is None else f'{rj:.2f} s'} after restart | {ok('8:')} |")
    out.append("")
    out.append("Checks:")
    out.append("")
    for name, good, detail in run.checks:
        out.append(f"- {'PASS' if good else '**FAIL**'} {name}: {detail}")
    out.append("")
    out.append("Owed: a message typed while sender and receiver were both members, from "
               f"{figures.JOIN_MARGIN:.0f} s after the later join to {figures.LEAVE_MARGIN} s before either left "
               "(kill -9 or /quit). Attackers use 127.0.0.2-11 (idle), 127.0.0.30-39 (junk) and "
               "127.0.0.50 (flood); legitimate servants and clients 127.0.0.1. The attack "
               f"processes run at nice {run.args.attacker_nice}, standing for hosts elsewhere: "
               "on loopback they share the CPUs with what they attack (`--attacker-nice 0` "
               "charges their CPU to the servers too).")
    return "\n".join(out) + "\n"
