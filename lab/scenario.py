"""A scenario file: reading it, checking it, and the small language inside its values.

A scenario is a TOML file under lab/scenarios/ (see docs/LAN-LAB.md for the format). It is
checked completely before the lab builds anything, so a typo costs one line of error
naming the file, the step and the problem, not a half-made lab. Inside values:

- host references: "h4", "last" (the lab's last host), "servants" (h2..hN), "all"
  (h1..hN), a manager's name ("manager", "manager2") where a log is meant, and "h${relay}"
  for a host only known while the scenario runs;
- "${name}" in any text is replaced by a knob (net, mgr_port, mgr_timeout, heartbeat,
  trust_after, loss, last) or by what an earlier step captured (relay, slot, ...);
- a number may be a small formula over the knobs: "mgr_timeout + 1", "grace".
"""

import ast
import os
import re
import tomllib

import hosts

VAR = re.compile(r"\$\{(\w+)\}")
HOST = re.compile(r"^h(\d+)$")
KEYWORDS = ("servants", "all", "last")
FORMULA_NAMES = ("mgr_timeout", "heartbeat", "trust_after", "loss", "grace", "last")


class ScenarioError(Exception):
    """A bad scenario file: the message names the file and the problem."""


def knobs_from_env(env=os.environ):
    """The env knobs (LAB_*), checked; raises ScenarioError with a one-line reason."""
    def num(name, default, kind):
        v = env.get(name, default)
        try:
            return kind(v)
        except ValueError:
            raise ScenarioError(f"{name} must be a number, got '{v}'")
    k = {
        "mgr_timeout": num("LAB_MGR_TIMEOUT", "3", int),
        "heartbeat": env.get("LAB_HEARTBEAT", "0.5"),
        "trust_after": env.get("LAB_TRUST_AFTER", "1"),
        "loss": num("LAB_LOSS", "10", int),
        "n": num("LAB_N", "5", int),
        "vanish": env.get("LAB_VANISH", "link"),
    }
    if k["mgr_timeout"] < 1:
        raise ScenarioError(f"LAB_MGR_TIMEOUT must be a whole number of seconds, got '{k['mgr_timeout']}'")
    if not 0 <= k["loss"] < 100:
        raise ScenarioError(f"LAB_LOSS must be a percentage from 0 to 99, got '{k['loss']}'")
    if k["n"] < 5:
        raise ScenarioError(f"LAB_N must be 5 or more for the test, got '{k['n']}'")
    if k["vanish"] not in ("link", "nft"):
        raise ScenarioError(f"LAB_VANISH must be link or nft, got '{k['vanish']}'")
    for name in ("heartbeat", "trust_after"):
        try:
            float(k[name])
        except ValueError:
            raise ScenarioError(f"LAB_{name.upper()} must be a number, got '{k[name]}'")
    # A servant's grace period after a manager change (max(timeout, 3 s) + 2 s), and 1 s more.
    k["grace"] = max(k["mgr_timeout"], 3) + 3
    return k


def text_vars(knobs):
    return {"net": hosts.NET, "mgr_port": str(hosts.MGR_PORT), "mgr_timeout": str(knobs["mgr_timeout"]),
            "heartbeat": str(knobs["heartbeat"]), "trust_after": str(knobs["trust_after"]),
            "loss": str(knobs["loss"]), "last": str(knobs["n"]),
            "vanish_how": "nft drops all its traffic" if knobs["vanish"] == "nft"
            else "its cable pulled: bridge port down"}


def formula(value, knobs):
    """A number, or a formula over the knobs: + - * / max() min() and numbers."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a number or a formula, got {value!r}")
    names = {n: float(knobs[n] if n != "last" else knobs["n"]) for n in FORMULA_NAMES}

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Div):
            a, b = ev(node.left), ev(node.right)
            return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b, ast.Div: a / b if b else 0}[type(node.op)]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("max", "min"):
            return (max if node.func.id == "max" else min)(ev(a) for a in node.args)
        raise ValueError(f"cannot read the formula '{value}' (names: {', '.join(FORMULA_NAMES)})")
    try:
        return ev(ast.parse(value, mode="eval"))
    except SyntaxError:
        raise ValueError(f"cannot read the formula '{value}'")


class Scenario:
    def __init__(self, path, data, knobs):
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.number = data.get("number")
        self.title = VAR.sub(lambda m: text_vars(knobs)[m.group(1)], data["title"])
        self.managers = data["managers"]      # [(name, host, port)]
        self.servants = data["servants"]      # {host: {"bans": [...]}}
        self.steps = data["step"]


def scenario_files(directory):
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".toml"))


def read_toml(path):
    """The file's name as messages show it (from the repository's root when it is inside)
    and its TOML; ScenarioError naming the file when it cannot be read or parsed."""
    short = os.path.relpath(path, hosts.ROOT)
    short = path if short.startswith("..") else short
    try:
        with open(path, "rb") as f:
            return short, tomllib.load(f)
    except OSError as e:
        raise ScenarioError(f"{short}: cannot read it: {e.strerror}")
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{short}: not valid TOML: {e}")


def load(path, knobs, spec):
    """Reads and checks one scenario file against the step vocabulary spec."""
    short, data = read_toml(path)
    Checker(short, knobs, spec).check(data)
    return Scenario(path, data, knobs)


class Checker:
    """Checks a scenario's data in order, so a step can only use the marks, chat tags,
    counters and captured names that an earlier step made."""

    TOP = {"number", "title", "about", "managers", "servants", "step"}

    def __init__(self, short, knobs, spec):
        self.short, self.knobs, self.spec = short, knobs, spec
        self.n = knobs["n"]
        self.vars = set(text_vars(knobs))
        self.defined = {"mark": {"start"}, "tag": set(), "counter": set(), "timer": set()}
        self.manager_names = set()

    def err(self, where, msg):
        raise ScenarioError(f"{self.short}: {where}{': ' if where else ''}{msg}")

    def check(self, data):
        for key in data:
            if key not in self.TOP:
                self.err("", f"unknown key '{key}' (known: {', '.join(sorted(self.TOP))})")
        if not isinstance(data.get("title"), str) or not data["title"]:
            self.err("", "missing field 'title'")
        self.text(data["title"], "title")
        if "number" in data and not (isinstance(data["number"], int) and data["number"] > 0):
            self.err("", "'number' must be a whole number above 0")
        self.check_managers(data)
        self.check_servants(data)
        steps = data.get("step")
        if not isinstance(steps, list) or not steps:
            self.err("", "no steps: add [[step]] tables, each with do = \"...\"")
        self.check_steps(steps, "step")
        if "start" not in [s.get("do") for s in steps]:
            self.err("", "no step with do = \"start\" (it starts the manager and the servants)")

    def check_managers(self, data):
        raw = data.get("managers", [{"host": "h1", "port": hosts.MGR_PORT}])
        if not isinstance(raw, list) or not raw:
            self.err("managers", "must be a list of {host = \"h1\", port = 8585}")
        out = []
        for k, m in enumerate(raw):
            where = f"managers[{k + 1}]"
            if not isinstance(m, dict):
                self.err(where, "must be a table {host = ..., port = ...}")
            for key in m:
                if key not in ("host", "port", "name"):
                    self.err(where, f"unknown field '{key}'")
            host = self.literal_host(m.get("host", "h1"), where, low=1)
            port = m.get("port", hosts.MGR_PORT)
            if not isinstance(port, int) or not 1 <= port <= 65535:
                self.err(where, f"bad port {port!r}")
            name = m.get("name", "manager" if k == 0 else f"manager{k + 1}")
            if name in self.manager_names or not re.fullmatch(r"manager[\w-]*", name):
                self.err(where, f"bad or repeated name '{name}' (names start with 'manager')")
            self.manager_names.add(name)
            out.append((name, host, port))
        data["managers"] = out

    def check_servants(self, data):
        raw = data.get("servants", {})
        if not isinstance(raw, dict):
            self.err("servants", "must be tables like [servants.h3]")
        out = {}
        for ref, conf in raw.items():
            host = self.literal_host(ref, f"servants.{ref}", low=2)
            if not isinstance(conf, dict):
                self.err(f"servants.{ref}", "must be a table")
            for key in conf:
                if key != "bans":
                    self.err(f"servants.{ref}", f"unknown field '{key}' (known: bans)")
            bans = conf.get("bans", [])
            if not isinstance(bans, list) or not all(isinstance(b, str) and b for b in bans):
                self.err(f"servants.{ref}", "bans must be a list of addresses or host names")
            tv = text_vars(self.knobs)
            out[host] = {"bans": [VAR.sub(lambda m: tv[m.group(1)], self.text(b, f"servants.{ref}")) for b in bans]}
        data["servants"] = out

    def literal_host(self, ref, where, low):
        m = HOST.match(ref) if isinstance(ref, str) else None
        if ref == "last":
            return self.n
        if not m:
            self.err(where, f"bad host '{ref}' (write h1 .. h{self.n})")
        i = int(m.group(1))
        if not low <= i <= self.n:
            what = "a servant host" if low == 2 else "a host"
            self.err(where, f"bad host number '{ref}': the lab's {self.n} hosts have {what} from h{low} to h{self.n}")
        return i

    def text(self, s, where):
        for name in VAR.findall(s):
            if name not in self.vars:
                self.err(where, f"unknown name '${{{name}}}' (known here: {', '.join(sorted(self.vars))})")
        return s

    def host_ref(self, ref, where, low=2, managers=False):
        if not isinstance(ref, str):
            self.err(where, f"expected a host name, got {ref!r}")
        if managers and ref in self.manager_names:
            return
        if VAR.search(ref):
            self.text(ref, where)
            if not re.fullmatch(r"h\$\{\w+\}", ref):
                self.err(where, f"bad host '{ref}' (write h4 or h${{name}})")
            return
        self.literal_host(ref, where, low)

    def host_set(self, value, where, low=2, managers=False):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.err(where, f"expected a host, a list of hosts or one of {', '.join(KEYWORDS)}")
        for ref in items:
            if ref in ("servants", "all"):
                if ref == "all" and low > 1:
                    self.err(where, "'all' includes h1, which runs no servant; write 'servants'")
                continue
            self.host_ref(ref, where, low, managers)

    def check_steps(self, steps, where0):
        for k, st in enumerate(steps):
            where = f"{where0} {k + 1}"
            if not isinstance(st, dict):
                self.err(where, "must be a table with do = \"...\"")
            do = st.get("do")
            if do is None:
                self.err(where, "missing field 'do'")
            if do not in self.spec:
                self.err(where, f"unknown step '{do}' (known: {', '.join(sorted(self.spec))})")
            where = f"{where} ({do})"
            fields, makes = self.spec[do][1], self.spec[do][2]
            for key in st:
                if key != "do" and key not in fields:
                    self.err(where, f"unknown field '{key}' (known: {', '.join(sorted(f.lstrip('!') for f in fields)) or 'none'})")
            for key, kind in fields.items():
                required = kind.startswith("!")
                kind = kind.lstrip("!")
                if key not in st:
                    if required:
                        self.err(where, f"missing field '{key}'")
                    continue
                self.check_field(st[key], kind, f"{where} field '{key}'")
            if "text" in fields and "regex" in fields:
                needs = do != "wait" or "log" in st
                if ("text" in st and "regex" in st) or (needs and "text" not in st and "regex" not in st):
                    self.err(where, "give exactly one of 'text' and 'regex'")
                if not needs and ("text" in st or "regex" in st):
                    self.err(where, "a text or regex to wait for needs 'log' (whose log)")
            self.vars.update(makes.get("vars", ()))
            self.defined["mark"].update(makes.get("marks", ()))

    def check_field(self, v, kind, where):
        if kind == "str":
            if not isinstance(v, str) or not v:
                self.err(where, "expected text")
            self.text(v, where)
        elif kind == "regex":
            if not isinstance(v, str) or not v:
                self.err(where, "expected a regular expression")
            self.text(v, where)
            try:
                re.compile(VAR.sub("0", v))
            except re.error as e:
                self.err(where, f"bad regular expression: {e}")
        elif kind == "int":
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                self.err(where, "expected a whole number")
        elif kind == "num":
            try:
                formula(v, self.knobs)
            except ValueError as e:
                self.err(where, str(e))
        elif kind == "bool":
            if not isinstance(v, bool):
                self.err(where, "expected true or false")
        elif kind == "hosts":
            self.host_set(v, where)
        elif kind == "nfthosts":
            self.host_set(v, where, low=1)
        elif kind == "host":
            self.host_ref(v, where)
        elif kind == "logs":
            self.host_set(v, where, managers=True)
        elif kind == "proc":
            self.host_ref(v, where, managers=True)
        elif kind == "manager":
            if v not in self.manager_names:
                self.err(where, f"no manager named '{v}' (managers: {', '.join(sorted(self.manager_names))})")
        elif kind == "strs":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                self.err(where, "expected a list of names")
        elif kind == "none":
            if not isinstance(v, dict):
                self.err(where, "expected a table: receiver = [senders whose lines it must not show]")
            for r, ss in v.items():
                self.host_ref(r, where)
                self.host_set(ss, where)
        elif kind == "steps":
            if not isinstance(v, list):
                self.err(where, "expected a list of steps")
            self.check_steps(v, where + " step")
        elif kind.startswith("new"):    # newmark, newtag, newcounter, newtimer, newvar
            if not isinstance(v, str) or not re.fullmatch(r"[\w-]+", v):
                self.err(where, "expected a name (letters, digits, - and _)")
            if kind == "newvar":
                self.vars.add(v)
            else:
                self.defined[kind[3:]].add(v)
        elif kind in self.defined:     # mark, tag, counter, timer made by an earlier step
            names = v if kind == "timer" and isinstance(v, list) else [v]
            for name in names:
                if name not in self.defined[kind]:
                    known = ", ".join(sorted(self.defined[kind])) or "none yet"
                    self.err(where, f"no earlier step makes the {kind} '{name}' (known: {known})")
        else:
            raise AssertionError(kind)


# ----------------------------------------------------------------------------------
# Loopback scenarios (scripts/stress.py): a named procedure and its figures as data
# ----------------------------------------------------------------------------------
FIGURE_KINDS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str) and v != "",
    "names": lambda v: isinstance(v, list) and v != [] and all(isinstance(x, str) and x for x in v),
    "range": lambda v: (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)
                        and 1 <= v[0] <= v[1] <= 254),
}
FIGURE_WORDS = {"int": "a whole number", "float": "a number", "str": "text", "names": "a list of names",
                "range": "[first, last] (the last byte of 127.0.0.x, 1 to 254)"}


def load_figures(path, procedures):
    """Reads a loopback scenario file: kind = "loopback", numbers, title, run (one of
    procedures' names), and one table per section that procedure reads, every figure
    checked against its kind. Raises ScenarioError naming the file and the problem."""
    short, data = read_toml(path)

    def err(msg):
        raise ScenarioError(f"{short}: {msg}")
    if data.get("kind") != "loopback":
        err("kind must be \"loopback\"")
    if not isinstance(data.get("title"), str) or not data["title"]:
        err("missing field 'title'")
    nums = data.get("numbers")
    if not (isinstance(nums, list) and nums and all(isinstance(n, int) and n > 0 for n in nums)):
        err("numbers must be a list of whole numbers, e.g. numbers = [7]")
    run = data.get("run")
    if run not in procedures:
        err(f"unknown run '{run}' (known: {', '.join(sorted(procedures))})")
    sections = procedures[run]
    for key in data:
        if key not in ("kind", "numbers", "title", "run") and key not in sections:
            err(f"unknown key '{key}' (run = \"{run}\" reads: {', '.join(sections)})")
    for sec, fields in sections.items():
        table = data.get(sec)
        if not isinstance(table, dict):
            err(f"missing table [{sec}]")
        for key in table:
            if key not in fields:
                err(f"[{sec}]: unknown field '{key}' (known: {', '.join(fields)})")
        for key, kind in fields.items():
            if key not in table:
                err(f"[{sec}]: missing field '{key}'")
            if not FIGURE_KINDS[kind](table[key]):
                err(f"[{sec}] {key}: expected {FIGURE_WORDS[kind]}, got {table[key]!r}")
    return data
