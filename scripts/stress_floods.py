"""Scenarios 2, 3 and 4 of `make stress` (lab/stress/floods.toml): the floods of
stress_attacks.py against the manager, then against a servant's listen port while it chats
with four real peers, and the threads and memory of both before, at the peak of and after
each attack.

They run together and in this order: the servants started for scenario 2 are the chat
group of scenario 3, and the manager stays up for the churn (scenario 7).
"""

import os
import time

import stress_attacks as attacks
import stress_figures as figures
from stress_base import log, now, pct
from stress_ledger import Chat, evaluate, exactly_once, wait_delivered
from stress_procs import Manager, Sampler, Servant, wait_threads


def floods(run):
    flood_servant(run, flood_manager(run))


def flood_manager(run):
    """Scenario 2 and the manager's half of 4; leaves the manager up as run.manager and
    returns the five servants that joined it (s-a first)."""
    fig = run.data[2]
    fm, fr = fig["manager"], fig["rtt"]
    m = Manager(run, "manager-floods")
    run.manager = m
    first = run.start_servants(fm["servants"], m.port, timeout=fm["join_within"])
    a = first[0]
    for s in first:
        if s.joined_at is None:
            raise RuntimeError(f"{s.name} did not join: see {s.log_path}")
    time.sleep(2)
    m_start, a_start = m.status(), a.status()
    log(f"manager at start: threads {m_start[0]}, RSS {m_start[1]} KiB; servant s-a: {a_start}")

    # Quiet round trips.
    p, q = attacks.rtt(run.ctx, m.addr, "quiet")
    quiet = attacks.rtt_result(p, q)

    log("scenario 2: floods against the manager")
    sampler = Sampler({"manager": m.pid})
    atk = attacks.start_attack(run.ctx, run.args.attacker_nice, m.addr, "manager")
    time.sleep(1.0)
    p, q = attacks.rtt(run.ctx, m.addr, "attack")
    t0 = now()
    d = Servant(run, "s-d", m.port)
    d_ok = d.wait_joined(fm["join_within"])
    d_join = (d.joined_at - t0) if d_ok else None
    t1 = now()
    e = Servant(run, "s-e", m.port)
    e.wait_joined(fm["join_within"])
    seen_e = d.wait_log(b"peer joined: s-e ", fm["join_within"])
    e_push = (seen_e - t1) if seen_e else None
    attack = attacks.rtt_result(p, q)
    m_during = m.status()
    results = attacks.stop_attack(*atk)
    m_peak = sampler.end()["manager"]
    log(f"manager attack results: {results}")
    # Two threads (reader and pusher) per legitimate connection added: s-d and s-e.
    m_limit = m_start[0] + 2 * 2 + fm["thread_slack"]
    m_after = wait_threads(m.pid, m_limit)
    run.res["manager_attack"] = dict(results=results, quiet=quiet, attack=attack,
                                     start=m_start, during=m_during, peak=m_peak,
                                     after=m_after, limit=m_limit, d_join=d_join,
                                     d_peers=d.peers_at_join, e_push=e_push)
    run.check("2: legit servant joins under attack",
              d_ok and (d.peers_at_join or 0) >= fm["peers_at_join"],
              f"s-d joined in {d_join if d_join is None else round(d_join, 2)} s "
              f"with {d.peers_at_join} peers listed (want >= {fm['peers_at_join']})")
    run.check("2: legit servant gets pushes under attack", e_push is not None,
              f"s-d saw s-e join {e_push if e_push is None else round(e_push, 2)} s after s-e started")
    qs, as_ = quiet["samples"], attack["samples"]
    q50, q99, a50, a99 = (pct(qs, 50) * 1e3, pct(qs, 99) * 1e3, pct(as_, 50) * 1e3, pct(as_, 99) * 1e3)
    # "A small multiple of the quiet case". Quiet loopback round trips take about 0.1 ms
    # and the attackers share the machine's CPUs with the manager, so the tail gets a
    # floor (other work on a shared machine shows up there first).
    lim50 = max(fr["p50_factor"] * q50, fr["p50_floor_ms"])
    lim99 = max(fr["p99_factor"] * q99, fr["p99_floor_ms"])
    run.check("2: legit needs-peer-list RTT under attack",
              len(as_) >= figures.RTT_SAMPLES * fr["answered"] and a50 <= lim50 and a99 <= lim99,
              f"quiet p50 {q50:.3f} ms p99 {q99:.3f} ms; attack p50 {a50:.3f} ms p99 {a99:.3f} ms "
              f"(limits {lim50:.2f} / {lim99:.2f} ms); {len(as_)}/{figures.RTT_SAMPLES} answered, "
              f"{attack['errors']} errors")
    check_cap(run, "2: per-address cap bites on idle sockets", results,
              fm["per_address_cap"] * len(figures.SLOW_SRCS))
    check_returned(run, "manager", m_start, m_peak, m_after, m_limit, fm["rss_slack_mib"])
    return first + [d, e]


def flood_servant(run, group):
    """Scenario 3 and the servant's half of 4: the floods against s-a (group[0]) while the
    group chats; every message typed must arrive exactly once, in order."""
    fs = run.data[2]["servant"]
    a = group[0]
    log("scenario 3: floods against servant s-a while it chats")
    for s in group:
        if s.joined_at is None:
            raise RuntimeError(f"{s.name} did not join: see {s.log_path}")
    time.sleep(2)  # let the pushes about s-d and s-e settle
    a_start = a.status()
    chat = Chat(lambda: group).start()
    time.sleep(2)
    sampler = Sampler({"servant": a.pid})
    atk_t0 = now()
    atk = attacks.start_attack(run.ctx, run.args.attacker_nice, ("127.0.0.1", a.port), "servant")
    time.sleep(fs["attack_seconds"])
    a_during = a.status()
    results = attacks.stop_attack(*atk)
    atk_t1 = now()
    a_peak = sampler.end()["servant"]
    log(f"servant attack results: {results}")
    time.sleep(2)
    chat.end()
    chat_all = wait_delivered(group, chat.sent, fs["delivered_within"])
    chat_atk = evaluate(group, chat.sent, t_lo=atk_t0, t_hi=atk_t1)
    a_limit = a_start[0] + fs["thread_slack"]
    a_after = wait_threads(a.pid, a_limit)
    log_mb = os.path.getsize(a.log_path) / 1e6
    run.res["servant_attack"] = dict(results=results, start=a_start, during=a_during,
                                     peak=a_peak, after=a_after, limit=a_limit,
                                     chat_all=chat_all, chat_atk=chat_atk, noise=a.noise,
                                     log_mb=log_mb)
    run.check("3: chat during the servant attack, exactly once and in order", *exactly_once(chat_all))
    # The servant's defaults: <maxperaddress>64</maxperaddress>, <maxconnections>512.
    check_cap(run, "3: per-address cap bites on idle sockets (servant)", results,
              min(fs["per_address_cap"] * len(figures.SLOW_SRCS), fs["max_connections"]))
    check_returned(run, "servant", a_start, a_peak, a_after, a_limit, fs["rss_slack_mib"])
    run.quit_all(group)


def check_cap(run, name, results, held_cap):
    """The per-address cap bit: no more idle sockets held than it allows, some refused."""
    slow = results.get("slowloris", {})
    run.check(name, slow.get("held", 0) <= held_cap and slow.get("refused", 0) > 0,
              f"{slow.get('held')} held, {slow.get('refused')} refused of {slow.get('connected')}")


def check_returned(run, who, start, peak, after, limit, rss_slack_mib):
    """Scenario 4 for one process: its threads and RSS came back after the attack."""
    run.check(f"4: {who} threads return after the attack", after[0] is not None and after[0] <= limit,
              f"start {start[0]}, peak {peak[0]}, after {after[0]} (limit {limit})")
    # Freed heap stays with the allocator (glibc does not give back a fragmented heap);
    # it is reused by the next attack rather than added to, so the bound is generous.
    rss_limit = start[1] + rss_slack_mib * 1024
    run.check(f"4: {who} RSS returns after the attack", after[1] is not None and after[1] <= rss_limit,
              f"start {start[1]} KiB, peak {peak[1]} KiB, after {after[1]} KiB (limit {rss_limit})")
