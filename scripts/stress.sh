#!/usr/bin/env bash
# `make stress`: floods, churn and a lost manager against the release binaries on loopback
# (scripts/stress.py and the stress_*.py modules beside it do the work; python3, standard
# library only). Prints a Markdown table of what was sent and what survived, writes it to
# bench/STRESS.md, then runs the abuse attacks (examples/abuse.rs) into bench/ABUSE.md, and
# exits non-zero when a check fails. Takes about four minutes. The scenarios and their
# figures are data files in lab/stress/ (floods.toml, churn.toml, manager-lost.toml).
#
#   STRESS_ARGS="--only 7 --churn-seconds 10"   run part of it (see scripts/stress.py --help)
#   STRESS_KEEP=dir                            keep configs and logs in dir
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
command -v python3 >/dev/null || { echo "stress: python3 is needed"; exit 1; }
for b in servant connection-manager; do
    [ -x "$BIN/$b" ] || { echo "stress: $BIN/$b missing; run make release"; exit 1; }
done
# A thousand idle sockets plus the servers' own descriptors: raise the limit this shell
# hands down (to 20000, or the hard limit if it is lower).
hard=$(ulimit -Hn)
want=20000
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    echo "stress: needs at least 4096 file descriptors (ulimit -n is $(ulimit -n))"; exit 1
fi
args=(--bin "$BIN" --out bench/STRESS.md)
[ -n "${STRESS_KEEP:-}" ] && args+=(--workdir "$STRESS_KEEP")
# shellcheck disable=SC2086
status=0
timeout --kill-after=10 480 python3 scripts/stress.py "${args[@]}" ${STRESS_ARGS:-} || status=$?
# The abuse attacks (crowds of idle sockets, random origins and fresh keys, upload
# squatters, newcomers' complaints), each beside a genuine user: bench/ABUSE.md.
[ -x "$BIN/examples/abuse" ] || cargo build --release --example abuse
timeout --kill-after=10 400 "$BIN/examples/abuse" --bin "$BIN" --out bench/ABUSE.md || status=$?
exit "$status"
