"""Scenario 7 of `make stress` (lab/stress/churn.toml): churn. A group of servants on the
manager scenarios 2 to 4 left up (or a fresh one); every second one of them is killed
(kill -9) or leaves (/quit) and a newcomer starts, while every member types a numbered
message every chat_every seconds. Each message typed while both ends were members must
reach the other exactly once and in order.
"""

import os
import random
import threading
import time

from stress_base import log, now
from stress_ledger import Chat, dump, exactly_once, wait_delivered
from stress_procs import Servant


def churn(run):
    log("scenario 7: churn")
    m = run.manager
    fc = run.data[7]["churn"]
    # All servants reach each other from 127.0.0.1 here, so the servant's per-address
    # cap (16 by default) must exceed the group size, as it would with real hosts.
    extra = f"<maxperaddress>{fc['max_per_address']}</maxperaddress>"
    serial = [0]

    def name():
        serial[0] += 1
        return f"c{serial[0]:03d}"

    everyone = run.start_servants([name() for _ in range(fc["servants"])], m.port, extra)
    not_joined = [s.name for s in everyone if s.joined_at is None]
    if not_joined:
        raise RuntimeError(f"churn servants did not join: {not_joined}")
    time.sleep(2)
    stop = threading.Event()

    def watch():  # notices joins of the newcomers
        for _ in range(100000):
            if stop.is_set():
                return
            for s in list(everyone):
                if s.joined_at is None and s.proc.poll() is None:
                    s.scan_log()
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    chat = Chat(lambda: everyone).start()
    rng = random.Random(run.args.seed)
    kills = quits = 0
    t0 = now()
    seconds = run.args.churn_seconds if run.args.churn_seconds is not None else fc["seconds"]
    for i in range(seconds):
        next_t = t0 + i + 1
        time.sleep(max(0, next_t - now()))
        live = [s for s in everyone if s.member()]
        if not live:
            break
        victim = rng.choice(live)
        if i % 2 == 0:
            victim.kill9()
            kills += 1
        else:
            victim.quit()
            quits += 1
        everyone.append(Servant(run, name(), m.port, extra))
    time.sleep(1.0)
    chat.end()
    duration = now() - t0
    res = wait_delivered(everyone, chat.sent, fc["delivered_within"])
    if run.args.dump:
        dump(os.path.join(run.dir, "churn.json"), everyone, chat.sent, t0=t0)
    stop.set()
    watcher.join(2)
    late = [s.name for s in everyone if s.joined_at is None]
    run.res["churn"] = dict(res=res, kills=kills, quits=quits, started=len(everyone), servants=fc["servants"],
                            late=late, duration=duration)
    run.check("7: churn, exactly once and in order", *exactly_once(res))
    run.check("7: every newcomer joined", not late, f"{len(everyone) - len(late)}/{len(everyone)} joined {late}")
    run.quit_all([s for s in everyone if s.proc.poll() is None], 15)
