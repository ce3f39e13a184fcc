#!/usr/bin/env python3
"""Small network helpers for the LAN lab (lab/lab.py), run inside a lab namespace (`ip netns exec`).

nc is not installed on the lab machine, so the lab talks to the connection manager and
probes hosts from here. Every wait is bounded by --within; nothing here loops forever.

  labtool.py peers HOST PORT
      Ask the manager "needs peer list", print the listed servants' names, one per line.
  labtool.py wait HOST PORT [--has h2,h3] [--lacks h4] [--within SECONDS]
      Ask every 0.1 s until the list has every name in --has and none in --lacks.
      Prints "<seconds> <names...>" (how long it took, and the last list seen).
      Exit 0 when the condition held in time, 1 when it did not (the last list is printed).
  labtool.py probe HOST...
      Resolve each name (through this namespace's /etc/hosts) and check it answers
      at the IP level (a TCP connect to port 9 is refused rather than timing out).
      Prints "name address ok|unreachable|unresolved"; exit 1 if any is not ok.
  labtool.py follow SECONDS FILE...
      Print every line appended to the files as "   NAME | line" (NAME: the file's name
      without its extension), checking every 50 ms, for at most SECONDS (or until killed).
"""

import socket
import sys
import time
import xml.etree.ElementTree as ET


def peer_list(host, port, timeout=2.0):
    """The names (or ip:port) of the servants the manager lists, not counting the asker."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"needs peer list\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode("utf-8", "replace")
        try:
            s.sendall(b"bye\n")
        except OSError:
            pass
    root = ET.fromstring(line)
    if root.tag != "peers":
        raise ValueError("expected <peers>, got <%s>" % root.tag)
    names = []
    for p in root.findall("peer"):
        if (p.findtext("me") or "").strip().upper() == "TRUE":
            continue
        name = (p.findtext("name") or "").strip()
        if not name:
            name = "%s:%s" % ((p.findtext("ip") or "").strip(), (p.findtext("port") or "").strip())
        names.append(name)
    return sorted(names)


def names_arg(v):
    return [n for n in v.split(",") if n]


def cmd_peers(args):
    host, port = args[0], int(args[1])
    try:
        names = peer_list(host, port)
    except (OSError, ValueError, ET.ParseError) as e:
        print("labtool: cannot read the peer list from %s:%d: %s" % (host, port, e), file=sys.stderr)
        return 1
    for n in names:
        print(n)
    return 0


def cmd_wait(args):
    host, port = args[0], int(args[1])
    has, lacks, within = [], [], 10.0
    rest = args[2:]
    i = 0
    while i < len(rest):
        opt, val = rest[i], rest[i + 1] if i + 1 < len(rest) else ""
        if opt == "--has":
            has = names_arg(val)
        elif opt == "--lacks":
            lacks = names_arg(val)
        elif opt == "--within":
            within = float(val)
        else:
            print("labtool: unknown option %s" % opt, file=sys.stderr)
            return 2
        i += 2
    start = time.monotonic()
    deadline = start + within
    last, last_err = None, None
    for _ in range(int(within * 20) + 20):  # bounded in count as well as in time
        try:
            last = peer_list(host, port, timeout=1.0)
            last_err = None
            if all(n in last for n in has) and not any(n in last for n in lacks):
                print("%.2f %s" % (time.monotonic() - start, " ".join(last) or "(none)"))
                return 0
        except (OSError, ValueError, ET.ParseError) as e:
            last_err = e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    seen = " ".join(last) if last is not None else "(no list: %s)" % last_err
    print("%.2f %s" % (time.monotonic() - start, seen or "(none)"))
    return 1


def cmd_probe(args):
    bad = 0
    for name in args:
        try:
            addr = socket.gethostbyname(name)
        except OSError:
            print("%s - unresolved" % name)
            bad += 1
            continue
        state = "unreachable"
        try:
            socket.create_connection((addr, 9), timeout=2.0).close()
            state = "ok"  # something listens on port 9: reachable anyway
        except ConnectionRefusedError:
            state = "ok"  # the host answered with a reset: it is there
        except OSError:
            pass
        if state != "ok":
            bad += 1
        print("%s %s %s" % (name, addr, state))
    return 1 if bad else 0


def cmd_follow(args):
    import os
    limit, paths = float(args[0]), args[1:]
    offsets = {p: 0 for p in paths}
    partial = {p: b"" for p in paths}
    deadline = time.monotonic() + limit
    for _ in range(int(limit * 20) + 1):  # bounded in count as well as in time
        for p in paths:
            try:
                with open(p, "rb") as f:
                    f.seek(offsets[p])
                    data = f.read()
            except OSError:
                continue
            offsets[p] += len(data)
            lines = (partial[p] + data).split(b"\n")
            partial[p] = lines.pop()
            name = os.path.splitext(os.path.basename(p))[0]
            for line in lines:
                if line:
                    print("   %-3s | %s" % (name, line.decode("utf-8", "replace")), flush=True)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return 0


def main(argv):
    cmds = {"peers": (cmd_peers, 2), "wait": (cmd_wait, 2), "probe": (cmd_probe, 1),
            "follow": (cmd_follow, 2)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 < cmds[argv[1]][1]:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    fn, _ = cmds[argv[1]]
    return fn(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
