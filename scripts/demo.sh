#!/usr/bin/env bash
# `make demo`: a connection manager and three servants on this machine, chatting, then a
# clean stop. Needs only bash and the release binaries (make demo builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/genp2p-demo.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting the connection manager (port chosen by the OS)"
cat > "$RUN/manager.xml" <<EOF
<manager><port>0</port><bind>127.0.0.1</bind><firstport>2224</firstport><timeout>3</timeout></manager>
EOF
RUST_LOG=info "$BIN/connection-manager" --config "$RUN/manager.xml" </dev/null 2>"$RUN/manager.log" &
pids+=($!)
port=""
for _ in $(seq 50); do
    port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$RUN/manager.log" | head -n1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "demo: the manager did not start:"; cat "$RUN/manager.log"; exit 1; }
echo "manager on 127.0.0.1:$port"

# Each servant reads its lines from a FIFO the script writes to, and prints what it
# receives; the demo shows both, prefixed with the servant's name.
names=(alice bob carol)
for n in "${names[@]}"; do
    cat > "$RUN/$n.xml" <<EOF
<config><connectionmgr>127.0.0.1</connectionmgr><port>$port</port><name>$n</name><heartbeat>1</heartbeat></config>
EOF
    mkfifo "$RUN/$n.in"
done
say "starting alice, bob and carol; each asks the manager for the list and listens on the port it is given"
for n in "${names[@]}"; do
    RUST_LOG=info "$BIN/servant" --config "$RUN/$n.xml" <"$RUN/$n.in" \
        > >(sed -u "s/^/  [$n sees] /") 2> >(sed -u "s/^/  [$n log]  /" >&2) &
    pids+=($!)
done
exec 3>"$RUN/alice.in" 4>"$RUN/bob.in" 5>"$RUN/carol.in"
sleep 1.5

say "what a telnet user sees: 'needs peer list' sent to the manager"
exec 6<>"/dev/tcp/127.0.0.1/$port"
printf 'needs peer list\n' >&6
read -r -t 3 doc <&6 || true
exec 6>&- 6<&-
echo "$doc" | sed 's/<peer>/\n  <peer>/g; s/<\/peers>/\n<\/peers>/'

say "chatting: each line typed into one servant appears on the other two"
echo "hello everyone, alice here" >&3; sleep 0.4
echo "hi alice! bob on port two-two-something" >&4; sleep 0.4
echo "carol joining in: <tags> & ünïcödé arrive exactly as typed" >&5; sleep 0.4
echo "/peers" >&3; sleep 0.6

say "leaving: bob types /quit, carol gets SIGTERM, alice's input ends (Ctrl-D)"
echo "/quit" >&4; sleep 1
kill -TERM "${pids[3]}"; sleep 1
exec 3>&- 4>&- 5>&-
sleep 1.5

say "the manager's log: a line per join and leave"
sed 's/^/  /' "$RUN/manager.log"
kill -TERM "${pids[0]}" 2>/dev/null || true
wait "${pids[0]}" 2>/dev/null || true
say "done: every servant left cleanly and the manager stopped"
