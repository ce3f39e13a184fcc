"""The figures of `make stress`: what each procedure reads from its data file in lab/stress/
(floods.toml, churn.toml, manager-lost.toml), the loading and checking of those files with
the LAN lab's loader (lab/scenario.py), and the module-wide figures the attack and
bookkeeping helpers read.

The helpers read those figures as attributes of this module (`figures.SLOW_SRCS`), never
copied at import, so that what use_figures() sets from the files is what they see.
"""

import os
import sys

from stress_base import ROOT

if sys.version_info < (3, 11):  # tomllib reads the scenario files
    sys.exit(f"stress: needs Python 3.11 or later (tomllib); this is {sys.version.split()[0]}")
sys.path.insert(0, os.path.join(ROOT, "lab"))
import scenario  # noqa: E402  (the LAN lab's scenario loader, shared)

STRESS_DIR = os.path.join(ROOT, "lab", "stress")
# What each procedure reads from its file: {table: {figure: kind}}.
PROCEDURES = {
    "floods": {
        "attack": {"idle_sockets": "int", "idle_sources": "range", "junk_clients": "int",
                   "junk_sources": "range", "flood_source": "int", "legit_source": "int", "nice": "int"},
        "rtt": {"samples": "int", "interval": "float", "answered": "float", "p50_factor": "float",
                "p50_floor_ms": "float", "p99_factor": "float", "p99_floor_ms": "float"},
        "manager": {"servants": "names", "join_within": "float", "peers_at_join": "int",
                    "per_address_cap": "int", "thread_slack": "int", "rss_slack_mib": "int"},
        "servant": {"attack_seconds": "float", "per_address_cap": "int", "max_connections": "int",
                    "delivered_within": "float", "thread_slack": "int", "rss_slack_mib": "int"},
    },
    "churn": {
        "churn": {"servants": "int", "seconds": "int", "max_per_address": "int", "chat_every": "float",
                  "join_margin": "float", "leave_margin": "float", "delivered_within": "float"},
    },
    "manager_lost": {
        "manager_lost": {"servants": "int", "chat_before": "float", "outage": "float", "rejoin_limit": "float",
                         "watch": "float", "chat_after": "float", "delivered_within": "float"},
    },
}

# Source addresses of the attackers (the legitimate servants and clients use 127.0.0.1).
SLOW_SRCS = [f"127.0.0.{i}" for i in range(2, 12)]  # 10 addresses x 100 idle sockets
JUNK_SRCS = [f"127.0.0.{i}" for i in range(30, 40)]  # 10 addresses x 10 junk clients
FLOOD_SRC = "127.0.0.50"
LEGIT_SRC = "127.0.0.1"

IDLE_SOCKETS = 1000
JUNK_CLIENTS = 100
RTT_SAMPLES = 300
RTT_INTERVAL = 0.01

JOIN_MARGIN = 2.0  # s after the later join of two servants before they must hear each other
LEAVE_MARGIN = 2.0  # s before a leave (kill -9 or /quit) after which nothing is owed
CHAT_EVERY = 0.1  # s between two numbered messages of one servant


def load_scenarios(directory):
    """Every loopback scenario file in the directory, checked: {number: data}."""
    by_number = {}
    for path in sorted(os.listdir(directory)):
        if not path.endswith(".toml"):
            continue
        data = scenario.load_figures(os.path.join(directory, path), PROCEDURES)
        data["file"] = path
        for n in data["numbers"]:
            if n in by_number:
                raise scenario.ScenarioError(f"{path}: scenario {n} is also in {by_number[n]['file']}")
            by_number[n] = data
    return by_number


def use_figures(by_number):
    """The figures the attack and bookkeeping helpers read, from the data files."""
    global SLOW_SRCS, JUNK_SRCS, FLOOD_SRC, LEGIT_SRC, IDLE_SOCKETS, JUNK_CLIENTS, RTT_SAMPLES, RTT_INTERVAL
    global JOIN_MARGIN, LEAVE_MARGIN, CHAT_EVERY
    for data in by_number.values():
        if data["run"] == "floods":
            a, r = data["attack"], data["rtt"]
            SLOW_SRCS = [f"127.0.0.{i}" for i in range(a["idle_sources"][0], a["idle_sources"][1] + 1)]
            JUNK_SRCS = [f"127.0.0.{i}" for i in range(a["junk_sources"][0], a["junk_sources"][1] + 1)]
            FLOOD_SRC, LEGIT_SRC = f"127.0.0.{a['flood_source']}", f"127.0.0.{a['legit_source']}"
            IDLE_SOCKETS, JUNK_CLIENTS = a["idle_sockets"], a["junk_clients"]
            RTT_SAMPLES, RTT_INTERVAL = r["samples"], r["interval"]
        elif data["run"] == "churn":
            c = data["churn"]
            JOIN_MARGIN, LEAVE_MARGIN, CHAT_EVERY = c["join_margin"], c["leave_margin"], c["chat_every"]
