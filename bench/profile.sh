#!/usr/bin/env bash
# bench/profile.sh: the counts behind bench/RESULTS.md's misses (not part of `make bench`).
# Needs perf (Debian: linux-perf) and the bench tools (`make bench` builds them).
#
#  1. a join storm of 1000 clients against a fresh manager: syscalls and context switches of
#     the manager (perf stat), and where its CPU goes (perf record, by thread and symbol);
#  2. fan-out to 50 stub receivers: the same counts for the sending servant and for the
#     floor's sender, per message;
#  3. fan-out to 10 real servants: the same counts for one receiving servant.
# Everything on 127.0.0.1, bounded in time; results in bench/out/profile/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/profile
rm -rf "$OUT"
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
EX=target/release/examples
EV=context-switches,syscalls:sys_enter_sched_yield,syscalls:sys_enter_futex,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom

pid_of() { # first process whose command line contains $1
    for d in /proc/[0-9]*; do
        if tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -qF -- "$1"; then
            basename "$d"
            return 0
        fi
    done
    return 1
}

echo "profile: 1. join storm of 1000"
printf '<manager><port>0</port><bind>127.0.0.1</bind><timeout>120</timeout><idletimeout>120</idletimeout></manager>\n' > "$OUT/manager.xml"
target/release/connection-manager --config "$OUT/manager.xml" < /dev/null 2> "$OUT/manager.log" &
MPID=$!
for _ in $(seq 50); do grep -q "listening on" "$OUT/manager.log" && break; sleep 0.1; done
ADDR=$(grep -o 'listening on [0-9.:]*' "$OUT/manager.log" | awk '{print $3}')
perf stat -e "$EV" -p "$MPID" -o "$OUT/storm-manager.stat" &
PS=$!
sleep 0.3
timeout 60 "$EX/loadgen" storm --addr "$ADDR" --n 1000 --leave 100 --pid "$MPID" > "$OUT/storm.json"
kill -INT "$PS"; wait "$PS" 2>/dev/null
perf record -F 499 -g -p "$MPID" -o "$OUT/storm.perf" 2>/dev/null &
PR=$!
sleep 0.3
timeout 60 "$EX/loadgen" storm --addr "$ADDR" --n 1000 --leave 100 --pid "$MPID" > "$OUT/storm2.json"
kill -INT "$PR"; wait "$PR" 2>/dev/null
kill "$MPID"; wait "$MPID" 2>/dev/null
perf report -i "$OUT/storm.perf" --no-children --sort comm --stdio 2>/dev/null \
    | awk '/%/{c=$2; sub(/-.*/,"",c); s[c]+=$1} END{for(k in s) printf "%6.1f%%  %s threads\n", s[k], k}' \
    | sort -rn > "$OUT/storm-manager.by-thread.txt"
perf report -i "$OUT/storm.perf" --no-children --sort sym --stdio -g caller,0.5,callee --percent-limit 2 2>/dev/null \
    | grep -v '^$' | head -80 > "$OUT/storm-manager.by-symbol.txt"
cat "$OUT/storm.json"
grep -E "context|sys_enter" "$OUT/storm-manager.stat"
cat "$OUT/storm-manager.by-thread.txt"

echo "profile: 2. fan-out to 50 stub receivers (sender side)"
timeout 300 "$EX/bench_driver" fanout --out "$OUT/fan" --ns "" --stub-ns 50 --runs 1 --samples 500 \
    --burst-ns "" --join-ns "" 2> "$OUT/fan.log" &
DRV=$!
SP=""; FP=""
for _ in $(seq 200); do
    SP=$(pid_of "servant-n50-stub-0.xml") && FP=$(pid_of "fanout_floor send") && break
    sleep 0.05
done
if [ -n "$SP" ] && [ -n "$FP" ]; then
    perf stat -e "$EV" -p "$SP" -o "$OUT/fan-servant-sender.stat" &
    P1=$!
    perf stat -e "$EV" -p "$FP" -o "$OUT/fan-floor-sender.stat" &
    P2=$!
    wait "$DRV"
    kill -INT "$P1" "$P2" 2>/dev/null; wait "$P1" "$P2" 2>/dev/null
    echo "(each sender got about 500 measured + ~40 warm-up messages)"
    for f in fan-servant-sender fan-floor-sender; do
        echo "$f:"; grep -E "context|sys_enter" "$OUT/$f.stat"
    done
else
    echo "profile: could not find the fan-out processes"; wait "$DRV"
fi

echo "profile: 3. fan-out to 10 real servants (receiver side)"
timeout 300 "$EX/bench_driver" fanout --out "$OUT/fan10" --ns 10 --runs 1 --samples 500 \
    --burst-ns "" --join-ns "" 2> "$OUT/fan10.log" &
DRV=$!
RP=""
for _ in $(seq 200); do RP=$(pid_of "servant-n10-1.xml") && break; sleep 0.05; done
if [ -n "$RP" ]; then
    perf stat -e "$EV" --per-thread -p "$RP" -o "$OUT/fan10-servant-receiver.stat" &
    P1=$!
    wait "$DRV"
    kill -INT "$P1" 2>/dev/null; wait "$P1" 2>/dev/null
    echo "fan10-servant-receiver (per thread, threads with counts only):"
    grep -E "context|sys_enter" "$OUT/fan10-servant-receiver.stat" | awk '$2 != "0"' | sort -k2 -rn | head -20
else
    echo "profile: could not find the receiving servant"; wait "$DRV"
fi
echo "profile: done; files in $OUT"
