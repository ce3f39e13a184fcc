"""Scenario 8 of `make stress` (lab/stress/manager-lost.toml): the manager lost. It is
killed (kill -9) while servants chat, stays down for the outage, and is restarted on the
same port; chat must go on throughout, exactly once, and the restarted manager's list must
fill up again within the limit.
"""

import os
import time

from stress_base import log, now
from stress_ledger import Chat, dump, evaluate, wait_delivered
from stress_procs import Manager


def manager_lost(run):
    log("scenario 8: the manager lost")
    fl = run.data[8]["manager_lost"]
    outage = run.outage()
    m = Manager(run, "manager-lost")
    group = run.start_servants([f"l{i}" for i in range(fl["servants"])], m.port)
    if any(s.joined_at is None for s in group):
        raise RuntimeError("scenario 8 servants did not join")
    time.sleep(2)
    chat = Chat(lambda: group).start()
    time.sleep(fl["chat_before"])
    t_kill = now()
    m.kill9()
    log(f"manager killed; outage of {outage} s")
    time.sleep(outage)
    t_restart = now()
    m2 = Manager(run, "manager-restarted", port=m.port)
    restart_took = now() - t_restart
    t_rejoin = None
    deadline = now() + fl["watch"]
    counts = []
    while now() < deadline:
        names = m2.listed() or []
        counts.append((round(now() - t_restart, 2), len(names)))
        if len(names) >= len(group):
            t_rejoin = now()
            break
        time.sleep(0.1)
    time.sleep(fl["chat_after"])
    chat.end()
    res_all = wait_delivered(group, chat.sent, fl["delivered_within"])
    t_out_end = t_rejoin or now()
    res_out = evaluate(group, chat.sent, t_lo=t_kill, t_hi=t_out_end)
    if run.args.dump:
        dump(os.path.join(run.dir, "manager-lost.json"), group, chat.sent, t_kill=t_kill,
             t_restart=t_restart, t_rejoin=t_rejoin)
    grace_seen = sum(1 for s in group if s.wait_log(b"restarted", 0.1))
    run.res["manager_lost"] = dict(all=res_all, outage=res_out,
                                   rejoin=(t_rejoin - t_restart) if t_rejoin else None,
                                   outage_s=t_out_end - t_kill, restart_took=restart_took,
                                   grace_seen=grace_seen)
    limit = fl["rejoin_limit"]
    run.check("8: servants rejoin the restarted manager", t_rejoin is not None and t_rejoin - t_restart <= limit,
              f"list full {None if t_rejoin is None else round(t_rejoin - t_restart, 2)} s after restart "
              f"(limit {limit:g} s); list sizes {counts[:3]}...{counts[-2:]}")
    run.check("8: chat through the outage, exactly once and in order",
              res_all["lost"] == 0 and res_all["duplicated"] == 0 and res_all["out_of_order"] == 0
              and res_out["owed"] > 0,
              f"outage: {res_out['typed']} typed, {res_out['owed']} owed, {res_out['delivered']} delivered, "
              f"{res_out['duplicated']} dup, {res_out['lost']} lost; whole: {res_all['owed']} owed, "
              f"{res_all['lost']} lost, {res_all['duplicated']} dup, {res_all['out_of_order']} out of order "
              f"{res_all['lost_examples']}")
    run.quit_all(group)
    m2.kill9()
