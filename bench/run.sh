#!/usr/bin/env bash
# `make bench` (QUICK=1 for about a minute): starts the real binaries on 127.0.0.1 beside
# their baselines, writes bench/RESULTS.md and bench/fanout.svg. Raw figures and logs go
# to bench/out/ (ignored by git). Only 127.0.0.1 is used; every load is bounded in count
# and time, and every process started is stopped by the driver (or its dead-man timer).
set -uo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
OUT=bench/out
CMD="make bench"
[ "$QUICK" = 1 ] && CMD="make bench QUICK=1"
START=$(date +%s)

# The storm and capacity tests hold thousands of sockets. Raise the descriptor limit as far
# as this machine allows (its hard limit may be below 65536).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The transfer baselines (section 7): socat, aria2c and nginx from Debian. Installed when
# missing (one apt-get update); a package that cannot be installed only skips its baseline.
NEED=""
command -v socat >/dev/null || NEED="$NEED socat"
command -v aria2c >/dev/null || NEED="$NEED aria2"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || NEED="$NEED nginx-light"
# The manager's baselines (section 3): opentracker, driven by wrk.
command -v opentracker >/dev/null || [ -x /usr/sbin/opentracker ] || NEED="$NEED opentracker"
command -v wrk >/dev/null || NEED="$NEED wrk"
if [ -n "$NEED" ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    echo "bench: installing$NEED (apt-get)"
    if $SUDO apt-get update -qq >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $NEED >/dev/null 2>&1 ||
            for p in $NEED; do
                DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$p" >/dev/null 2>&1 ||
                    echo "bench: $p is not available; its transfer baseline is skipped"
            done
    else
        echo "bench: apt-get update failed; missing transfer baselines are skipped"
    fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

echo "bench: building the bench tools (cargo build --release --examples)"
cargo build --release --quiet --bins --examples || { echo "bench: build failed"; exit 1; }
# The libp2p baseline: a cargo project of its own (bench/libp2p-chat), never a dependency
# of genp2p. Its first build fetches and compiles about 216 crates (a few minutes); if it
# cannot be built, its rows are left out.
LIBP2P_NS=""
echo "bench: building the libp2p baseline (bench/libp2p-chat)"
if cargo build --release --quiet --manifest-path bench/libp2p-chat/Cargo.toml; then
    LIBP2P_NS="10,50"
    [ "$QUICK" = 1 ] && LIBP2P_NS="10"
else
    echo "bench: the libp2p baseline did not build; its rows are skipped"
fi

# The full mesh of 101 servants beside the overlay holds about 24,000 threads; a pid_max
# of 32,768 leaves too little room for the rest. Raised for the run when this machine
# allows it (root), and put back at the end.
PID_MAX=$(cat /proc/sys/kernel/pid_max)
if [ "$PID_MAX" -lt 131072 ] && echo 131072 > /proc/sys/kernel/pid_max 2>/dev/null; then
    echo "bench: kernel.pid_max raised from $PID_MAX to 131072 for the run"
    trap 'echo "$PID_MAX" > /proc/sys/kernel/pid_max' EXIT
fi

rm -rf "$OUT"
mkdir -p "$OUT/logs"
cat /proc/loadavg > "$OUT/loadavg.start"

D=target/release/examples/bench_driver
FAILED=0
echo "bench: the cost of signing, checking and tagging one line"
target/release/examples/bench_crypto >> "$OUT/results.jsonl" || FAILED=1
echo "bench: the overlay's protocol, simulated for 10,000 servants (make sim runs 100,000)"
target/release/examples/sim --servants 10000 --flood --out "$OUT/results.jsonl" > "$OUT/logs/sim.txt" 2>&1 || FAILED=1
step() {
    local name=$1 t0
    shift
    echo "bench: $name"
    t0=$(date +%s)
    if ! "$D" "$@" --out "$OUT"; then
        echo "bench: $name failed (see above); continuing"
        FAILED=1
    fi
    echo "bench: ($name: $(( $(date +%s) - t0 )) s)"
}

if [ "$QUICK" = 1 ]; then
    LIMIT=240
    step "footprint: binary sizes" sizes
    step "ready before hashed (a servant with 2 GiB to hash, beside one with none)" ready
    step "fan-out and burst (N = 10, 50 servants; 200 stub receivers; libp2p at N = $LIBP2P_NS)" fanout --limit-secs $LIMIT \
        --ns 10,50 --stub-ns 200 --runs 3 --samples 50 \
        --burst-ns 10 --burst-runs 3 --burst-msgs 5000 --join-ns 10 --join-runs 3 --libp2p-ns "$LIBP2P_NS" \
        --overlay-ns 50
    step "manager round trips (genp2p, echo floor, opentracker)" manager --limit-secs $LIMIT --runs 3 --secs 1
    step "join storm and churn (N = 100, 1000)" storm --limit-secs $LIMIT --ns 100,1000 --runs 2
    step "capacity" capacity --limit-secs $LIMIT --max 1000 --listed-secs 3
    step "file transfer (256 MiB; genp2p, socat, aria2c -x8; a resume)" transfer --limit-secs $LIMIT \
        --mib 256 --runs 1 --resume-runs 1
else
    LIMIT=900
    step "footprint: binary sizes" sizes
    step "ready before hashed (a servant with 2 GiB to hash, beside one with none)" ready
    step "fan-out and burst (N = 10, 50, 100 servants, the overlay beside the full mesh at 50 and 100; 50, 200 stub receivers; libp2p at N = $LIBP2P_NS)" fanout --limit-secs $LIMIT \
        --ns 10,50,100 --stub-ns 50,200 --runs 5 --samples 300 \
        --burst-ns 10,50 --burst-runs 3 --burst-msgs 5000 --join-ns 10,50 --join-runs 5 --libp2p-ns "$LIBP2P_NS" \
        --overlay-ns 50,100
    step "manager round trips (genp2p, echo floor, opentracker)" manager --limit-secs $LIMIT --runs 5 --secs 3
    step "join storm and churn (N = 100, 1000)" storm --limit-secs $LIMIT --ns 100,1000 --runs 3
    step "capacity (cap 4000; listed servants for 60 s; beyond the limits)" capacity --limit-secs $LIMIT \
        --max 4000 --listed-secs 60 --stress 20000
    step "file transfer (1 GiB; genp2p, socat, aria2c -x8; a resume)" transfer --limit-secs $LIMIT \
        --mib 1024 --runs 3 --resume-runs 3
fi

SCALE=1000
[ "$QUICK" = 1 ] && SCALE=100
echo "bench: the overlay of $SCALE servants on their own loopback addresses (make lan-scale)"
t0=$(date +%s)
target/release/examples/lan_scale --servants $SCALE --limit-secs 1200 --json "$OUT/results.jsonl" \
    > "$OUT/logs/lan-scale.txt" 2>&1 || { echo "bench: lan-scale found losses or failed (see $OUT/logs/lan-scale.txt)"; FAILED=1; }
echo "bench: (lan-scale: $(( $(date +%s) - t0 )) s)"

# The transfer's scratch files (1 GiB each) are deleted by the driver; this catches a driver
# stopped by its time limit.
rm -rf /dev/shm/genp2p-bench-* "$OUT"/genp2p-bench-* 2>/dev/null

python3 bench/report.py --out "$OUT" --cmd "$CMD" --secs "$(( $(date +%s) - START ))" || FAILED=1
echo "bench: done in $(( $(date +%s) - START )) s; see bench/RESULTS.md and bench/fanout.svg"
exit $FAILED
