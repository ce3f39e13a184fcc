"""The attackers of `make stress` and the legitimate client timed beside them: idle sockets
that never speak, junk clients, a `needs peer list` flood, `needs peer list` round trips.

Each worker runs in a process of its own (spawned, niced: they stand for hosts elsewhere)
and reports through a queue; start_attack() and stop_attack() run the three attacks
together against one address, rtt() and rtt_result() the timed client.
"""

import os
import random
import socket
import threading
import time

import stress_figures as figures
from stress_base import connect_from, log, now


def w_niced(nice, fn, *args):
    """Runs an attack worker at a lower priority. On loopback the attackers share the two
    CPUs with what they attack; niced, they stand for hosts elsewhere whose own CPU use is
    not charged to the manager (they still send as fast as the CPUs left over allow)."""
    if nice:
        os.nice(nice)
    fn(*args)


def w_slowloris(target, srcs, n, stop, out):
    """Opens n sockets round robin over srcs and holds them without a byte."""
    socks, failed = [], 0
    deadline = now() + 30
    for i in range(n):
        if stop.is_set() or now() > deadline:
            break
        try:
            socks.append(connect_from(srcs[i % len(srcs)], target, 2.0))
        except OSError:
            failed += 1
    time.sleep(1.5)
    held, refused = [], 0
    for s in socks:
        s.setblocking(False)
        try:
            s.recv(4096)  # a refusal line, or the end of the stream: refused
            refused += 1
            s.close()
        except BlockingIOError:
            held.append(s)
        except OSError:
            refused += 1
            s.close()
    out.put(("slowloris", dict(tried=n, connected=len(socks), failed=failed,
                               held=len(held), refused=refused)))
    stop.wait(300)
    still = 0
    for s in held:
        try:
            s.recv(1)
        except BlockingIOError:
            still += 1
        except OSError:
            pass
        s.close()
    out.put(("slowloris_end", dict(still_held=still)))


def w_junk(target, srcs, n, stop, out):
    """n clients: random bytes, a line that never ends, or endless junk lines; each
    reconnects (after 100 ms) when the target drops it."""
    lock = threading.Lock()
    stats = dict(connections=0, bytes=0, connect_failed=0, dropped_by_target=0)
    blob = os.urandom(1 << 16)
    endless = b"A" * 65536
    junk = b"hello? this is not a command at all, just a line\n" * 1000

    def client(i):
        mode = i % 3
        src = srcs[i % len(srcs)]
        rng = random.Random(i)
        for _ in range(100000):  # bounded: stops long before, on `stop`
            if stop.is_set():
                return
            try:
                s = connect_from(src, target, 2.0)
            except OSError:
                with lock:
                    stats["connect_failed"] += 1
                stop.wait(0.2)
                continue
            with lock:
                stats["connections"] += 1
            s.settimeout(0.5)
            sent = 0
            try:
                while not stop.is_set():
                    if mode == 0:
                        off = rng.randrange(0, len(blob) - 4096)
                        chunk = blob[off:off + 4096]
                    elif mode == 1:
                        chunk = endless
                    else:
                        chunk = junk
                    try:
                        s.sendall(chunk)
                        sent += len(chunk)
                    except socket.timeout:
                        continue
            except OSError:
                with lock:
                    stats["dropped_by_target"] += 1
            finally:
                s.close()
                with lock:
                    stats["bytes"] += sent
            stop.wait(0.1)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    stop.wait(300)
    for t in threads:
        t.join(3)
    out.put(("junk", stats))


def w_flood(target, src, stop, out):
    """One client writing `needs peer list` as fast as it can (and reading the answers)."""
    st = dict(requests=0, answer_lines=0, connections=0)
    payload = b"needs peer list\n" * 256
    for _ in range(100000):
        if stop.is_set():
            break
        try:
            s = connect_from(src, target, 2.0)
        except OSError:
            stop.wait(0.2)
            continue
        st["connections"] += 1
        s.settimeout(0.5)
        done = threading.Event()

        def reader(s=s, done=done):
            while not done.is_set():
                try:
                    d = s.recv(1 << 16)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not d:
                    break
                st["answer_lines"] += d.count(b"\n")
            done.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            while not stop.is_set() and not done.is_set():
                try:
                    s.sendall(payload)
                    st["requests"] += 256
                except socket.timeout:
                    continue
        except OSError:
            pass
        done.set()
        t.join(3)
        s.close()
        stop.wait(0.05)
    out.put(("flood", st))


def w_rtt(target, src, count, interval, out, tag):
    """A legitimate client: `needs peer list`, wait for the answer, `count` times."""
    samples, errors = [], 0
    s, buf = None, b""
    deadline = now() + 120
    for _ in range(count):
        if now() > deadline:
            break
        try:
            if s is None:
                s = connect_from(src, target, 3.0)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(5.0)
                buf = b""
            t0 = time.perf_counter()
            s.sendall(b"needs peer list\n")
            while b"\n" not in buf:
                d = s.recv(1 << 16)
                if not d:
                    raise ConnectionError("closed")
                buf += d
            _, buf = buf.split(b"\n", 1)
            samples.append(time.perf_counter() - t0)
        except OSError:
            errors += 1
            if s is not None:
                s.close()
            s = None
        time.sleep(interval)
    if s is not None:
        s.close()
    out.put((tag, dict(samples=samples, errors=errors)))


# ---------------------------------------------------------------------------------------
# Driving them from the run (ctx: a multiprocessing context, "spawn").


def start_attack(ctx, nice, target, tag):
    stop, q = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=w_niced, args=(nice, w_slowloris, target, figures.SLOW_SRCS, figures.IDLE_SOCKETS,
                                          stop, q), daemon=True),
        ctx.Process(target=w_niced, args=(nice, w_junk, target, figures.JUNK_SRCS, figures.JUNK_CLIENTS, stop, q),
                    daemon=True),
        ctx.Process(target=w_niced, args=(nice, w_flood, target, figures.FLOOD_SRC, stop, q), daemon=True),
    ]
    for p in procs:
        p.start()
    results = {}
    deadline = now() + 40
    while "slowloris" not in results and now() < deadline:
        try:
            k, v = q.get(timeout=0.5)
            results[k] = v
        except Exception:
            pass
    log(f"{tag}: idle sockets {results.get('slowloris')}")
    return stop, q, procs, results


def stop_attack(stop, q, procs, results):
    stop.set()
    deadline = now() + 20
    while now() < deadline and len(results) < 4:
        try:
            k, v = q.get(timeout=0.5)
            results[k] = v
        except Exception:
            if not any(p.is_alive() for p in procs):
                break
    for p in procs:
        p.join(max(0.1, deadline - now()))
        if p.is_alive():
            p.kill()
            p.join(2)
    return results


def rtt(ctx, addr, tag):
    q = ctx.Queue()
    p = ctx.Process(target=w_rtt, args=(addr, figures.LEGIT_SRC, figures.RTT_SAMPLES, figures.RTT_INTERVAL, q, tag),
                    daemon=True)
    p.start()
    return p, q


def rtt_result(p, q, timeout=90):
    try:
        _, v = q.get(timeout=timeout)
    except Exception:
        v = dict(samples=[], errors=-1)
    p.join(5)
    if p.is_alive():
        p.kill()
    return v
