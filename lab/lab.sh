#!/usr/bin/env bash
# genp2p LAN lab: N hosts, each a network namespace on one bridge, for the connection
# manager and servants to meet as they would on a real LAN. See docs/LAN-LAB.md.
#
#   lab.sh up [N]          N hosts gp2p-h1..gp2p-hN (h1..hN, 10.77.0.1..N) on bridge gp2p-br0
#   lab.sh demo [N]        manager on h1, a servant on every other host, scripted chat, clean stop
#   lab.sh test [S...]     the LAN scenarios (all, or the numbers given), PASS/FAIL each
#   lab.sh status          what the lab has up now
#   lab.sh down            remove everything the lab made (safe to repeat)
#
# Needs root, ip (iproute2) with network namespaces, python3; `test` also needs nft.
# Traffic goes only to the 10.77.0.0/24 addresses of the namespaces made here.

set -uo pipefail
export LC_ALL=C

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$LAB")
RUN=/run/genp2p-lab                 # state, binaries, configs, FIFOs, pid files
LOGROOT=/tmp/genp2p-lab-logs        # per-run logs: demo/, test/ (removed by `down`)
SW=gp2p-sw                          # the namespace that holds the bridge (the "switch")
BR=gp2p-br0
NSP=gp2p-h                          # host namespaces: gp2p-h1 .. gp2p-hN
NET=10.77.0                         # host i is $NET.i/24
MGR_PORT=8585
MGR_TIMEOUT=${LAB_MGR_TIMEOUT:-3}   # manager <timeout>: seconds of silence before a drop
HEARTBEAT=${LAB_HEARTBEAT:-0.5}     # servant <heartbeat>
# manager <trustafter>: how long a servant is listed before it may relay or complain. The
# default (30 s) would have every scenario wait half a minute for a relay in a network that
# has just started; LAB_TRUST_AFTER=30 shows that.
TRUST_AFTER=${LAB_TRUST_AFTER:-1}
LOSS=${LAB_LOSS:-10}                # scenario 6: percent of packets dropped on the lossy host
TEST_N=${LAB_N:-5}                  # hosts for `test` (at least 5)
BIN_SRC=${GENP2P_BIN:-$ROOT/target/release}
BIN=$RUN/bin
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3 || echo python3)

say_err() { echo "lab.sh: $*" >&2; }
die() { say_err "$*"; exit 1; }
us_now() { local t=$EPOCHREALTIME; echo "${t/./}"; }
secs_since() { local d=$(( $(us_now) - $1 )); printf '%d.%01d' $((d / 1000000)) $(((d % 1000000) / 100000)); }
ns() { echo "$NSP$1"; }
alive() { # pid: running (not gone, not a zombie waiting to be reaped)
    local st
    st=$(grep '^State:' "/proc/$1/status" 2>/dev/null) || return 1
    [[ ! $st =~ ^State:[[:space:]]*[ZX] ]]
}

# ------------------------------------------------------------------------------------
# Preflight: one line and a non-zero exit when this machine cannot run the lab.
# ------------------------------------------------------------------------------------
preflight() { # target [nft]
    [[ $(id -u) -eq 0 ]] || die "the LAN lab needs root (network namespaces, a bridge, nft); run it as root, e.g. sudo make $1"
    command -v ip >/dev/null || die "the LAN lab needs ip (iproute2): apt-get install iproute2"
    local probe=gp2p-probe$$ out
    if ! out=$(ip netns add "$probe" 2>&1); then
        die "network namespaces are not available here (ip netns add: ${out//$'\n'/ })"
    fi
    if ! out=$(ip netns exec "$probe" true 2>&1); then
        ip netns del "$probe" 2>/dev/null
        tidy_run_netns
        die "network namespaces are not usable here (ip netns exec: ${out//$'\n'/ })"
    fi
    ip netns del "$probe" 2>/dev/null
    tidy_run_netns
    command -v "$PY" >/dev/null || die "the LAN lab needs python3 (to query the connection manager)"
    if [[ ${2:-} == nft ]]; then
        command -v nft >/dev/null || die "lan-test needs nft: apt-get install -y nftables"
    fi
}

check_binaries() {
    local b
    for b in servant connection-manager; do
        [[ -x $BIN_SRC/$b ]] || die "no $BIN_SRC/$b: build first (cargo build --release, or make release)"
    done
}

copy_binaries() {
    check_binaries
    # Copies, so a rebuild during a run does not swap a binary under a running test, and
    # so every lab process is recognisable by its path ($RUN/bin/...).
    mkdir -p "$BIN" && cp -f "$BIN_SRC/servant" "$BIN_SRC/connection-manager" "$BIN/" ||
        die "cannot copy the binaries into $BIN"
}

lab_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^($SW|${NSP}[0-9]+)\$"; }
lab_is_up() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$SW"; }
lab_hosts() { # the N of the lab that is up
    if [[ -r $RUN/state ]]; then sed -n 's/^N=//p' "$RUN/state"; else lab_namespaces | grep -c "^$NSP"; fi
}

# ------------------------------------------------------------------------------------
# down: processes first (a namespace lives on while a process is in it), then the rest.
# ------------------------------------------------------------------------------------
lab_pids() { # every process in a lab namespace, and any lab binary still running from $RUN/bin
    local n p f
    for n in $(lab_namespaces); do ip netns pids "$n" 2>/dev/null; done
    for f in "$RUN"/pids/*.pid; do
        [[ -r $f ]] || continue
        p=$(<"$f")
        [[ $p =~ ^[0-9]+$ ]] || continue
        [[ $(readlink "/proc/$p/exe" 2>/dev/null) == "$BIN"/* ]] && echo "$p"
    done
}

# /run/netns is iproute2's bind mount for named namespaces; once no namespace is named
# there, it goes too (ip netns add makes it again on demand).
tidy_run_netns() {
    local k
    [[ -d /run/netns && -z $(ls -A /run/netns 2>/dev/null) ]] || return 0
    for ((k = 0; k < 3; k++)); do mountpoint -q /run/netns && umount /run/netns 2>/dev/null || break; done
    rmdir /run/netns 2>/dev/null
}

KILLED=0
kill_lab_processes() { # sets KILLED to the number of processes ended
    local pids k p
    pids=$(lab_pids | sort -un | tr '\n' ' ')
    KILLED=$(wc -w <<<"$pids")
    ((KILLED)) || return 0
    kill -TERM $pids 2>/dev/null
    for ((k = 0; k < 50; k++)); do # at most 5 s for a clean exit
        pids=$(for p in $pids; do alive "$p" && echo "$p"; done | tr '\n' ' ')
        [[ -n ${pids// /} ]] || return 0
        sleep 0.1
    done
    kill -KILL $pids 2>/dev/null
    sleep 0.2
}

lab_down() { # [quiet] [keep-logs]
    local quiet=${1:-} keep=${2:-} n k gone=() nss=()
    kill_lab_processes
    ((KILLED)) && gone+=("$KILLED process(es)")
    for n in $(lab_namespaces); do
        ip netns del "$n" 2>/dev/null && nss+=("$n")
    done
    ((${#nss[@]})) && gone+=("namespaces ${nss[*]} (with the bridge, veths and nft rules in them)")
    for n in /etc/netns/$SW /etc/netns/${NSP}[0-9]*; do
        [[ -e $n ]] && rm -rf "$n" && gone+=("$n")
    done
    rmdir /etc/netns 2>/dev/null # only if empty: it may hold other namespaces' files
    tidy_run_netns
    [[ -e $RUN ]] && rm -rf "$RUN" && gone+=("$RUN")
    if [[ -z $keep && -e $LOGROOT ]]; then rm -rf "$LOGROOT" && gone+=("$LOGROOT"); fi
    [[ -n $quiet ]] && return 0
    if ((${#gone[@]})); then
        local IFS=$'\n'
        echo "lab removed:"
        printf '  %s\n' "${gone[@]}"
    else
        echo "nothing to remove: no lab is up"
    fi
}

# ------------------------------------------------------------------------------------
# up
# ------------------------------------------------------------------------------------
run_or_undo() { # command... : run it; on failure undo the half-made lab and stop
    local out
    if ! out=$("$@" 2>&1); then
        lab_down quiet keep-logs
        die "could not build the lab: '$*' failed: ${out//$'\n'/ }"
    fi
}

lab_up() { # N [quiet]
    local n=$1 quiet=${2:-} i h
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 2 && n <= 250)) || die "N must be a number from 2 to 250, got '$n'"
    if lab_is_up || [[ -n $(lab_namespaces) ]]; then
        [[ -n $quiet ]] || echo "a lab is up already: removing it first"
        lab_down quiet keep-logs
    fi
    mkdir -p "$RUN/pids" && echo "N=$n" >"$RUN/state"
    run_or_undo ip netns add "$SW"
    run_or_undo ip -n "$SW" link set lo up
    run_or_undo ip -n "$SW" link add "$BR" type bridge
    run_or_undo ip -n "$SW" link set "$BR" up
    local hosts="127.0.0.1 localhost"$'\n'"::1 localhost ip6-localhost ip6-loopback"$'\n'
    for ((i = 1; i <= n; i++)); do hosts+="$NET.$i h$i"$'\n'; done
    for ((i = 1; i <= n; i++)); do
        h=$(ns "$i")
        run_or_undo ip netns add "$h"
        # IPv6 off: the lab is IPv4 only, and this keeps router solicitations off the bridge.
        ip netns exec "$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1
        run_or_undo ip -n "$SW" link add "h$i" type veth peer name eth0 netns "$h"
        run_or_undo ip -n "$SW" link set "h$i" master "$BR"
        run_or_undo ip -n "$SW" link set "h$i" up
        run_or_undo ip -n "$h" link set lo up
        run_or_undo ip -n "$h" addr add "$NET.$i/24" dev eth0
        run_or_undo ip -n "$h" link set eth0 up
        # `ip netns exec NS` bind-mounts /etc/netns/NS/hosts over /etc/hosts.
        mkdir -p "/etc/netns/$h" && printf '%s' "$hosts" >"/etc/netns/$h/hosts" ||
            { lab_down quiet keep-logs; die "cannot write /etc/netns/$h/hosts"; }
    done
    # Every host resolves every name and reaches host 1 (and host 1 reaches the last one).
    local probe
    if ! probe=$(ip netns exec "$(ns 1)" "$PY" "$LAB/labtool.py" probe "h$n" 2>&1); then
        lab_down quiet keep-logs
        die "the lab does not work: from h1: ${probe//$'\n'/; }"
    fi
    for ((i = 2; i <= n; i++)); do
        if ! probe=$(ip netns exec "$(ns "$i")" "$PY" "$LAB/labtool.py" probe h1 2>&1); then
            lab_down quiet keep-logs
            die "the lab does not work: from h$i: ${probe//$'\n'/; }"
        fi
    done
    [[ -n $quiet ]] && return 0
    echo "lab up: $n hosts on bridge $BR (in namespace $SW), $NET.0/24"
    echo
    echo "   namespace $SW: bridge $BR"
    for ((i = 1; i <= n; i++)); do
        printf '     +-- port h%-3s ==veth== eth0 %-12s namespace %-9s host h%s%s\n' "$i" "$NET.$i" "$(ns "$i")" "$i" "$([[ $i == 1 ]] && echo '  (connection manager in demo/test)')"
    done
    echo
    echo "hosts file in each: /etc/netns/${NSP}I/hosts names h1..h$n; all hosts resolve and reach h1"
    echo "run something on a host:   ip netns exec ${NSP}2 bash"
    echo "remove it all:             make lan-down"
}

# ------------------------------------------------------------------------------------
# Processes: the manager on h1, servants on h2..hN, each servant's stdin a FIFO we hold.
# ------------------------------------------------------------------------------------
declare -A PID=() FD=() BANS=()
MPID=""
SD=""        # this run's directory (configs, FIFOs, logs)
HOSTS_N=0    # hosts in the lab
SERV=""      # servant host numbers, "2 3 4 5"

write_manager_config() {
    cat >"$SD/manager.xml" <<EOF
<manager>
  <port>$MGR_PORT</port>
  <timeout>$MGR_TIMEOUT</timeout>
  <trustafter>$TRUST_AFTER</trustafter>
</manager>
EOF
}

# Scenario 10 names a second manager, on h2, in every servant's config.
SECOND_MGR=0
MGR2_PORT=$((MGR_PORT + 1000))

write_servant_config() { # i
    local i=$1 t bans=""
    for t in ${BANS[$i]:-}; do bans+="    <ban><target>$t</target></ban>"$'\n'; done
    {
        echo "<config>"
        echo "  <connectionmgr>h1</connectionmgr>"
        ((SECOND_MGR)) && echo "  <connectionmgr port=\"$MGR2_PORT\">h2</connectionmgr>"
        echo "  <port>$MGR_PORT</port>"
        echo "  <name>h$i</name>"
        echo "  <heartbeat>$HEARTBEAT</heartbeat>"
        [[ -n $bans ]] && printf '  <bans>\n%s  </bans>\n' "$bans"
        echo "</config>"
    } >"$SD/h$i.xml"
}

start_manager() { # logname
    ip netns exec "$(ns 1)" "$BIN/connection-manager" --config "$SD/manager.xml" \
        </dev/null >"$SD/$1.out" 2>"$SD/$1.log" &
    MPID=$!
    echo "$MPID" >"$RUN/pids/manager.pid"
}

start_servant() { # i
    local i=$1 f fifo=$SD/h$1.in
    write_servant_config "$i"
    rm -f "$fifo" && mkfifo "$fifo"
    exec {f}<>"$fifo" # held open read-write: opening never blocks, and no EOF until we close it
    FD[$i]=$f
    ip netns exec "$(ns "$i")" "$BIN/servant" --config "$SD/h$i.xml" \
        <"$fifo" >"$SD/h$i.out" 2>"$SD/h$i.log" &
    PID[$i]=$!
    echo "${PID[$i]}" >"$RUN/pids/h$i.pid"
}

say() { # i text: a line typed into servant i
    [[ -n ${FD[$1]:-} ]] && printf '%s\n' "$2" >&"${FD[$1]}"
}

mgr() { # labtool subcommand args...: run from host 1 against the manager
    ip netns exec "$(ns 1)" "$PY" "$LAB/labtool.py" "$1" h1 "$MGR_PORT" "${@:2}"
}

names_of() { local i out=""; for i in "$@"; do out+="${out:+,}h$i"; done; echo "$out"; }


REAPED=""
reap() { # pid seconds: wait for the process to end (SIGKILL after the limit); sets REAPED
    local p=$1 lim=$2 k t
    for ((k = 0; k < lim * 10; k++)); do alive "$p" || break; sleep 0.1; done
    if alive "$p"; then
        # Evidence for whoever debugs the hang: each thread's name, state and kernel wait.
        if [[ -n $SD && -d $SD ]]; then
            {
                head -n 6 /proc/"$p"/status; ls /proc/"$p"/task
                for t in /proc/"$p"/task/*; do
                    echo "$(cat "$t/comm" 2>/dev/null) $(grep '^State:' "$t/status" 2>/dev/null | cut -f2) wchan=$(cat "$t/wchan" 2>/dev/null)"
                    cat "$t/stack" 2>/dev/null | head -n 8
                done
                for k in $(seq 30); do alive "$p" || { echo "gone after $k/10 s more"; break; }; sleep 0.1; done
            } >"$SD/hung-$p.txt" 2>&1
        fi
        disown "$p" 2>/dev/null # no "Killed" job report from bash
        kill -KILL "$p" 2>/dev/null
        REAPED="hung (killed after ${lim}s)"
    else
        wait "$p" 2>/dev/null
        REAPED=$?
    fi
}

log_lines() { [[ -r $1 ]] && wc -l <"$1" || echo 0; }
log_since() { tail -n +"$(($2 + 1))" "$1" 2>/dev/null; } # file mark

wait_log() { # file fixed-string seconds [mark]: 0 when the log has the string
    local k
    for ((k = 0; k <= $3 * 10; k++)); do
        log_since "$1" "${4:-0}" | grep -qF -- "$2" && return 0
        sleep 0.1
    done
    return 1
}

# Starts the manager and a servant on every other host; waits until all are listed and
# each servant has every other one as a peer (except those in START_NOJOIN: nobody need
# log "peer joined:" for them). 1 (with a FAIL line) when that does not happen.
START_NOJOIN=""
start_net() { # tag
    SD=$LOGDIR/$1
    rm -rf "$SD" && mkdir -p "$SD"
    write_manager_config
    start_manager manager
    local out i j t0
    t0=$(us_now)
    if ! out=$(mgr wait --within 5); then
        fail "the manager did not answer on h1:$MGR_PORT within 5s ($SD/manager.log: $(tail -n 2 "$SD/manager.log" | tr '\n' ' '))"
        return 1
    fi
    for i in $SERV; do start_servant "$i"; done
    if ! out=$(mgr wait --has "$(names_of $SERV)" --within 15); then
        fail "not every servant joined within 15s: the manager lists ${out#* }"
        return 1
    fi
    for i in $SERV; do
        for j in $SERV; do
            [[ $i == "$j" ]] && continue
            # A host behind a firewall (scenarios 7-8) may be relayed before a late
            # servant hears of it; then nobody starts a sender for it: not required.
            [[ " $START_NOJOIN " == *" $j "* ]] && continue
            if ! wait_log "$SD/h$i.log" "peer joined: h$j " 10; then
                fail "h$i did not take h$j as a peer within 10s ($SD/h$i.log)"
                return 1
            fi
        done
    done
    note "network up in $(secs_since "$t0")s: manager on h1, servants on $(names_of $SERV | tr ',' ' ')"
}

# Stops servants (SIGTERM, or the given line, e.g. /quit), then the manager (SIGTERM);
# a process that does not exit 0 is a failure.
stop_net() { # [line]
    local i f bad="" how=${1:-SIGTERM}
    for i in $SERV; do
        [[ -n ${PID[$i]:-} ]] || continue
        if [[ -n ${1:-} ]]; then say "$i" "$1"; else kill -TERM "${PID[$i]}" 2>/dev/null; fi
    done
    for i in $SERV; do
        [[ -n ${PID[$i]:-} ]] || continue
        reap "${PID[$i]}" 8
        [[ $REAPED == 0 ]] || bad+=" h$i:$REAPED"
        unset "PID[$i]"
        rm -f "$RUN/pids/h$i.pid"
    done
    if [[ -n $MPID ]]; then
        kill -TERM "$MPID" 2>/dev/null
        reap "$MPID" 5
        [[ $REAPED == 0 ]] || bad+=" manager:$REAPED"
        MPID=""
        rm -f "$RUN/pids/manager.pid"
    fi
    for i in "${!FD[@]}"; do f=${FD[$i]}; exec {f}>&-; done
    FD=()
    if [[ -n $bad ]]; then
        fail "not a clean stop on $how: exit codes$bad (logs in $SD)"
    else
        note "clean stop on $how: every servant and the manager exited 0"
    fi
}

# Emergency stop for traps: everything we started, no checks.
stop_all_quietly() {
    local i f p
    for p in "${PID[@]}" $MPID $MPID2; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PID[@]}" $MPID $MPID2; do reap "$p" 5; done
    PID=() MPID="" MPID2=""
    rm -f "$RUN/pids/manager2.pid"
    SECOND_MGR=0
    for i in "${!FD[@]}"; do f=${FD[$i]}; exec {f}>&- 2>/dev/null; done
    FD=()
}

# ------------------------------------------------------------------------------------
# Chat and its checks. Message texts are unique: TAG-hS-#J is servant S's J-th line.
# ------------------------------------------------------------------------------------
CHAT_T0=0
CHAT_GAP=0.02
chat() { # tag k senders...: round-robin, k lines each, CHAT_GAP seconds between rounds
    local tag=$1 k=$2 j s
    shift 2
    CHAT_T0=$(us_now)
    for ((j = 1; j <= k; j++)); do
        for s in "$@"; do say "$s" "$tag-h$s-#$j"; done
        sleep "$CHAT_GAP"
    done
}

pair_stats() { # receiver sender tag k -> "lines distinct dups inorder missing..."
    awk -v p="<h$2> $3-h$2-#" -v k="$4" '
        index($0, p) == 1 {
            j = substr($0, length(p) + 1)
            if (j !~ /^[0-9]+$/) next
            j += 0; n++; c[j]++
            if (j <= last) bad = 1
            last = j
        }
        END {
            d = 0; dup = 0; miss = ""
            for (i = 1; i <= k; i++) { if (c[i] > 0) d++; if (c[i] > 1) dup += c[i] - 1; if (!c[i]) miss = miss " #" i }
            printf "%d %d %d %s%s\n", n, d, dup, (bad ? "no" : "yes"), miss
        }' "$SD/h$1.out" 2>/dev/null || echo "0 0 0 yes"
}

all_pairs() { # hosts... -> "r<s" for every ordered pair
    local r s
    for r in "$@"; do for s in "$@"; do [[ $r != "$s" ]] && echo "$r<$s"; done; done
}

# Waits (at most `within` s) until every "r<s" pair shows all k lines, lets `settle` s
# pass for anything extra to arrive, then checks: "r<s": each of s's k lines exactly once,
# in order; "r!s": none of s's lines. Notes one summary line, or a FAIL line per bad pair.
expect_chat() { # tag k within settle pairs...
    local tag=$1 k=$2 within=$3 settle=$4 p r s st n d dup ord miss done_ all k2 bad=0 want=0 forb=0
    shift 4
    for ((k2 = 0; k2 <= within * 10; k2++)); do
        all=1
        for p in "$@"; do
            [[ $p == *"<"* ]] || continue
            r=${p%<*} s=${p#*<}
            read -r n d dup ord miss <<<"$(pair_stats "$r" "$s" "$tag" "$k")"
            ((d == k)) || { all=0; break; }
        done
        ((all)) && break
        sleep 0.1
    done
    done_=$(secs_since "$CHAT_T0")
    sleep "$settle"
    for p in "$@"; do
        if [[ $p == *"<"* ]]; then
            r=${p%<*} s=${p#*<}
            want=$((want + 1))
            read -r n d dup ord miss <<<"$(pair_stats "$r" "$s" "$tag" "$k")"
            if ((d != k || dup != 0 || n != k)) || [[ $ord != yes ]]; then
                fail "h$r shows $d of h$s's $k '$tag' lines ($n shown, $dup duplicate(s), in order: $ord${miss:+, missing$miss})"
                bad=1
            fi
        else
            r=${p%!*} s=${p#*!}
            forb=$((forb + 1))
            read -r n d dup ord miss <<<"$(pair_stats "$r" "$s" "$tag" "$k")"
            if ((n != 0)); then
                fail "h$r shows $n of h$s's '$tag' lines; it should show none"
                bad=1
            fi
        fi
    done
    ((bad)) && return 1
    local extra=""
    ((forb)) && extra="; $forb banned pair(s) got none"
    note "'$tag': $want receiver/sender pair(s) got all $k lines exactly once, in order (complete ${done_}s after the first was typed)$extra"
}

# ------------------------------------------------------------------------------------
# Scenario bookkeeping
# ------------------------------------------------------------------------------------
S_FAILED=0
note() { echo "      $*"; }
fail() { echo "      FAIL: $*"; S_FAILED=1; }
RESULTS=()

grace_us() { # a servant's grace period after a manager change (max(timeout, 3 s) + 2 s), and 1 s more, in µs
    awk -v t="$MGR_TIMEOUT" 'BEGIN {printf "%d", ((t > 3 ? t : 3) + 3) * 1000000}'
}

nft_in() { # host-number: nft -f - inside that host
    ip netns exec "$(ns "$1")" nft -f -
}

nft_counter_sum() { # host-number chain [table]: sum of the packet counters in table inet TABLE (gp2plab) chain
    ip netns exec "$(ns "$1")" nft list chain inet "${3:-gp2plab}" "$2" 2>/dev/null |
        grep -o 'packets [0-9]*' | awk '{s += $2} END {print s + 0}'
}

# 1 --------------------------------------------------------------------------------------
s1_title="chat crosses hosts"
s1() {
    start_net s1 || return
    chat s1 5 $SERV
    expect_chat s1 5 10 1 $(all_pairs $SERV)
    stop_net
}

# 2 and 3: host 3 bans host 4 -----------------------------------------------------------
ban_scenario() { # tag target
    local tag=$1 target=$2 p pairs=()
    BANS=([3]="$target")
    start_net "$tag" || { BANS=(); return; }
    BANS=()
    if [[ $target != "$NET.4" ]]; then
        if grep -qF "ban: $target is $NET.4" "$SD/h3.log"; then
            note "h3 resolved its ban '$target' to $NET.4 through /etc/netns/$(ns 3)/hosts"
        else
            fail "h3 did not resolve '$target' to $NET.4: $(grep -F 'ban:' "$SD/h3.log" | tail -n 1)"
        fi
    fi
    chat "$tag" 4 $SERV
    for p in $(all_pairs $SERV); do
        [[ $p == "3<4" ]] && p="3!4"
        pairs+=("$p")
    done
    # 2 s of settling: time enough for h4's sender to have tried h3 several times.
    if expect_chat "$tag" 4 10 2 "${pairs[@]}"; then
        note "so: h3 shows nothing from h4; $(names_of $(for p in $SERV; do [[ $p == 3 || $p == 4 ]] || echo "$p"; done) | sed 's/,/ and /g') show h4's lines; h4 shows h3's"
    fi
    if grep -qF "refused a connection from banned $NET.4" "$SD/h3.log"; then
        note "h3 logged: $(grep -F "refused a connection from banned $NET.4" "$SD/h3.log" | head -n 1 | sed 's/^\[[^]]*\] //')"
    else
        fail "h3 never logged refusing $NET.4 ($SD/h3.log)"
    fi
    stop_net
}
s2_title="IP ban: h3 bans h4's address"
s2() { ban_scenario s2 "$NET.4"; }
s3_title="host-name ban: h3 bans the name h4"
s3() { ban_scenario s3 h4; }

# 4 --------------------------------------------------------------------------------------
# LAB_VANISH=link (default): h4's cable is pulled, i.e. its port on the bridge is set down.
# LAB_VANISH=nft: h4's namespace drops every packet in and out (nft policy drop).
VANISH=${LAB_VANISH:-link}
vanish() { # i
    if [[ $VANISH == nft ]]; then
        nft_in "$1" <<EOF
table inet gp2pvanish {
    chain in { type filter hook input priority -10; policy drop; iif "lo" accept; }
    chain out { type filter hook output priority -10; policy drop; oif "lo" accept; }
}
EOF
    else
        ip -n "$SW" link set "h$1" down
    fi
}
unvanish() { # i
    if [[ $VANISH == nft ]]; then
        ip netns exec "$(ns "$1")" nft delete table inet gp2pvanish
    else
        ip -n "$SW" link set "h$1" up
    fi
}
if [[ $VANISH == nft ]]; then
    s4_title="a host vanishes (nft drops all its traffic) and comes back"
else
    s4_title="a host vanishes (its cable pulled: bridge port down) and comes back"
fi
s4() {
    local v=4 others="" i t0 t1 out limit left_at=() marks=() all k missing syn0 syn1 lst
    for i in $SERV; do [[ $i != "$v" ]] && others+="$i "; done
    start_net s4 || return
    chat s4-before 2 $SERV
    expect_chat s4-before 2 10 0 $(all_pairs $SERV) || { stop_net; return; }
    # Count connection attempts (SYNs) towards h4 from every other host, the manager's too.
    for ((i = 1; i <= HOSTS_N; i++)); do
        [[ $i == "$v" ]] && continue
        nft_in "$i" <<EOF
table inet gp2plab {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr $NET.$v tcp flags & (syn | ack) == syn counter
    }
}
EOF
    done
    for i in $others; do marks[$i]=$(log_lines "$SD/h$i.log"); done
    # h4's process keeps running and closes nothing; its packets just stop arriving.
    t0=$(us_now)
    vanish "$v" || { fail "could not cut h$v off"; stop_net; return; }
    limit=$((MGR_TIMEOUT + 1))
    if out=$(mgr wait --lacks "h$v" --within $((limit + 4))); then
        lst=${out#* }
        note "the manager dropped h$v after ${out%% *}s (timeout ${MGR_TIMEOUT}s); it lists: $lst"
        awk -v a="${out%% *}" -v b="$limit" 'BEGIN {exit !(a <= b)}' ||
            fail "the manager took ${out%% *}s to drop h$v, more than ${limit}s"
    else
        fail "the manager still lists h$v $(secs_since "$t0")s after it vanished: ${out#* }"
    fi
    # Every other servant drops it (its log says "peer left: h4").
    for ((k = 0; k <= (limit + 4) * 10; k++)); do
        all=1
        for i in $others; do
            [[ -n ${left_at[$i]:-} ]] && continue
            if log_since "$SD/h$i.log" "${marks[$i]}" | grep -qF "peer left: h$v "; then
                left_at[$i]=$(secs_since "$t0")
            else
                all=0
            fi
        done
        ((all)) && break
        sleep 0.1
    done
    missing=""
    out=""
    for i in $others; do
        if [[ -n ${left_at[$i]:-} ]]; then out+=" h$i:${left_at[$i]}s"; else missing+=" h$i"; fi
    done
    [[ -n $out ]] && note "servants dropped h$v after:$out"
    [[ -z $missing ]] || fail "still had h$v as a peer $(secs_since "$t0")s after the cut:$missing"
    for i in $others; do
        [[ -n ${left_at[$i]:-} ]] || continue
        awk -v a="${left_at[$i]}" -v b="$((limit + 1))" 'BEGIN {exit !(a <= b)}' ||
            fail "h$i dropped h$v only after ${left_at[$i]}s (limit $((limit + 1))s)"
    done
    # /peers on each: h4 is not in any list.
    local omark=()
    for i in $others; do omark[$i]=$(log_lines "$SD/h$i.out"); say "$i" /peers; done
    for i in $others; do
        if wait_log "$SD/h$i.out" "(this servant)" 3 "${omark[$i]}"; then
            if log_since "$SD/h$i.out" "${omark[$i]}" | grep -qE "^  h$v "; then
                fail "h$i's /peers still lists h$v: $(log_since "$SD/h$i.out" "${omark[$i]}" | grep -E "^  h$v " | head -n 1)"
            fi
        else
            fail "h$i did not answer /peers"
        fi
    done
    # Nobody keeps trying to reach it: while the others chat for 4 s, no SYN goes to h4.
    syn0=0
    for ((i = 1; i <= HOSTS_N; i++)); do [[ $i == "$v" ]] || syn0=$((syn0 + $(nft_counter_sum "$i" out))); done
    t1=$(us_now)
    chat s4-away 3 $others
    expect_chat s4-away 3 10 0 $(all_pairs $others)
    while (($(us_now) - t1 < 4000000)); do sleep 0.2; done
    syn1=0
    for ((i = 1; i <= HOSTS_N; i++)); do [[ $i == "$v" ]] || syn1=$((syn1 + $(nft_counter_sum "$i" out))); done
    if ((syn1 == syn0)); then
        note "no host tried to connect to h$v in the $(secs_since "$t1")s after it left (nft SYN counters on h1..h$HOSTS_N: $syn0 before and after)"
    else
        fail "$((syn1 - syn0)) connection attempt(s) (SYN) towards h$v in the $(secs_since "$t1")s after it left"
    fi
    out=""
    for i in $others; do
        log_since "$SD/h$i.log" "${marks[$i]}" | sed -n "/peer left: h$v /,\$p" | grep -qF "cannot reach h$v " && out+=" h$i"
    done
    [[ -z $out ]] || fail "after dropping h$v these still tried to reach it:$out"
    # h4 comes back: it rejoins by itself.
    for i in $others; do marks[$i]=$(log_lines "$SD/h$i.log"); done
    t1=$(us_now)
    unvanish "$v"
    if out=$(mgr wait --has "$(names_of $SERV)" --within 20); then
        note "h$v is back in the manager's list $(secs_since "$t1")s after it came back"
    else
        fail "h$v did not rejoin within 20s; the manager lists ${out#* }"
    fi
    for i in $others; do
        wait_log "$SD/h$i.log" "peer joined: h$v " 10 "${marks[$i]}" || fail "h$i did not take h$v back as a peer"
    done
    chat s4-after 3 $SERV
    expect_chat s4-after 3 15 1 $(all_pairs $SERV)
    stop_net
}

# 5 --------------------------------------------------------------------------------------
s5_title="the manager is killed and restarted"
s5() {
    local i t0 t1 t2 out marks=() missing left back grace
    start_net s5 || return
    chat s5-before 2 $SERV
    expect_chat s5-before 2 10 0 $(all_pairs $SERV) || { stop_net; return; }
    for i in $SERV; do marks[$i]=$(log_lines "$SD/h$i.log"); done
    t0=$(us_now)
    disown "$MPID" # no "Killed" job report from bash
    kill -KILL "$MPID"
    for ((i = 0; i < 30; i++)); do alive "$MPID" || break; sleep 0.1; done
    MPID=""
    note "manager killed with SIGKILL"
    missing=""
    for i in $SERV; do
        wait_log "$SD/h$i.log" "lost the connection manager" 5 "${marks[$i]}" || missing+=" h$i"
    done
    if [[ -z $missing ]]; then
        note "every servant noticed within $(secs_since "$t0")s (\"lost the connection manager\")"
    else
        fail "did not notice the manager was gone:$missing"
    fi
    # While the manager is gone, they keep chatting with the peers they know.
    chat s5-during 3 $SERV
    expect_chat s5-during 3 10 0 $(all_pairs $SERV)
    if mgr peers >/dev/null 2>&1; then fail "something answers on h1:$MGR_PORT while the manager is dead"; fi
    while (($(us_now) - t0 < 3000000)); do sleep 0.1; done # down for 3 s at least
    start_manager manager-restarted
    t1=$(us_now)
    note "manager restarted after $(secs_since "$t0")s down"
    if out=$(mgr wait --has "$(names_of $SERV)" --within 15); then
        t2=$(us_now)
        note "every servant is listed again $(secs_since "$t1")s after the restart (by itself: the lab did nothing)"
        awk -v a="${out%% *}" 'BEGIN {exit !(a <= 10)}' || fail "rejoining took ${out%% *}s, more than 10s"
    else
        fail "not every servant rejoined within 15s; the restarted manager lists ${out#* }"
        t2=$(us_now)
    fi
    back=0
    for i in $SERV; do
        log_since "$SD/h$i.log" "${marks[$i]}" | grep -qE "connection manager is back|connection manager restarted" && back=$((back + 1))
    done
    note "$back of $(wc -w <<<"$SERV") servants logged the manager's return"
    chat s5-after 3 $SERV
    expect_chat s5-after 3 10 0 $(all_pairs $SERV)
    # A servant that finds a restarted manager keeps the peers it knows for a grace period
    # (max(timeout, 3 s) + 2 s) while they re-register; when it ends, nobody may be dropped.
    grace=$(grace_us)
    while (($(us_now) - t2 < grace)); do sleep 0.2; done
    left=""
    for i in $SERV; do
        log_since "$SD/h$i.log" "${marks[$i]}" | grep -qF "peer left:" && left+=" h$i"
    done
    if [[ -z $left ]]; then
        note "no servant dropped a peer during the outage, nor when the restart's grace period ended"
    else
        fail "servants dropped peers around the restart:$left ($(for i in $left; do log_since "$SD/$i.log" 0 | grep -F 'peer left:' | head -n 1; done | sed 's/^\[[^]]*\] //' | tr '\n' ';'))"
    fi
    stop_net
}

# 6 --------------------------------------------------------------------------------------
s6_title="lossy link: ${LOSS}% of packets dropped at random on one host"
s6() {
    local v=$HOSTS_N din dout k=40 gaps
    start_net s6 || return
    nft_in "$v" <<EOF || { fail "cannot install the loss rules on h$v"; stop_net; return; }
table inet gp2plab {
    chain in {
        type filter hook input priority 0; policy accept;
        iif "lo" accept
        numgen random mod 100 < $LOSS counter drop
    }
    chain out {
        type filter hook output priority 0; policy accept;
        oif "lo" accept
        numgen random mod 100 < $LOSS counter drop
    }
}
EOF
    note "h$v drops ${LOSS}% of its packets each way (nft numgen random mod 100 < $LOSS drop)"
    CHAT_GAP=0.05 # 2 s of chat: many packets, each with its chance to be lost
    chat s6 $k $SERV
    CHAT_GAP=0.02
    expect_chat s6 $k 40 2 $(all_pairs $SERV)
    din=$(nft_counter_sum "$v" in)
    dout=$(nft_counter_sum "$v" out)
    if ((din + dout > 0)); then
        note "nft on h$v dropped $din incoming and $dout outgoing packets meanwhile"
    else
        fail "nft on h$v dropped nothing: the scenario did not test a lossy link"
    fi
    gaps=$(grep -hF "never arrived" "$SD"/h*.log 2>/dev/null | head -n 3 | sed 's/^\[[^]]*\] //' | tr '\n' ';')
    [[ -z $gaps ]] || fail "servants logged lost messages: $gaps"
    ip netns exec "$(ns "$v")" nft delete table inet gp2plab 2>/dev/null
    stop_net
}

# 7, 8, 9: servants behind firewalls -------------------------------------------------------
# The manager probes each servant that lists itself (connects back to its port) and counts
# complaints (`complain ID`) from servants that fail to connect to a peer. A servant found
# unreachable is listed with <relay>N</relay> (others stop connecting to it) and told to
# <pull> from a relay, which it connects OUT to; the relay forwards it every message.

wait_log_re() { # file extended-regex seconds [mark]: 0 when the log has a line matching it
    local k
    for ((k = 0; k <= $3 * 10; k++)); do
        log_since "$1" "${4:-0}" | grep -qE -- "$2" && return 0
        sleep 0.1
    done
    return 1
}
last_match() { # file extended-regex [mark]: the last matching line, without its log prefix
    log_since "$1" "${3:-0}" | grep -E -- "$2" | tail -n 1 | sed 's/^\[[^]]*\] //'
}

# In the background (a subshell, bounded by `seconds`): when the log gets a line matching
# the fixed string (-F) or extended regex (-E), writes the milliseconds since t0 (us_now)
# into outfile (checked every 50 ms).
WATCHERS=""
watch_bg() { # -F|-E file pattern seconds mark t0 outfile
    local mode=$1 file=$2 pat=$3 lim=$4 mark=$5 t0=$6 outf=$7
    (
        for ((k = 0; k <= lim * 20; k++)); do
            if log_since "$file" "$mark" | grep -q "$mode" -- "$pat"; then echo $((($(us_now) - t0) / 1000)) >"$outf"; exit 0; fi
            sleep 0.05
        done
    ) &
    WATCHERS+=" $!"
}
watchers_wait() { local p; for p in $WATCHERS; do wait "$p" 2>/dev/null; done; WATCHERS=""; }
took() { [[ -s $1 ]] && echo "$(<"$1") ms" || echo "(not seen)"; } # outfile of watch_bg

fw_clear() { ip netns exec "$(ns "$1")" nft delete table inet gp2pfw 2>/dev/null; return 0; }

# Host i drops every new inbound TCP connection (SYN without ACK, conntrack state new):
# the only port it listens on is its servant's, and that is assigned by the manager, so the
# rule holds for every port. Loopback, established connections and everything outbound
# (its own connections, and the answers to them) still pass.
firewall_inbound() { # i
    fw_clear "$1"
    nft_in "$1" <<EOF
table inet gp2pfw {
    chain in {
        type filter hook input priority 0; policy accept;
        iif "lo" accept
        tcp flags & (syn | ack) == syn ct state new counter drop
    }
}
EOF
}

# Host i cannot open connections to the other servants: its outbound SYNs to any lab
# address are dropped, except those to the manager's port. Inbound still works.
firewall_outbound() { # i
    fw_clear "$1"
    nft_in "$1" <<EOF
table inet gp2pfw {
    chain out {
        type filter hook output priority 0; policy accept;
        oif "lo" accept
        ip daddr $NET.0/24 tcp dport != $MGR_PORT tcp flags & (syn | ack) == syn counter drop
    }
}
EOF
}

# Starts the network with host v behind an inbound firewall (installed before its servant
# starts, so the manager's probe meets it). 1 (with a FAIL line) on failure.
START_T=0
start_firewalled() { # tag v
    firewall_inbound "$2" || { fail "cannot install the inbound firewall on h$2"; return 1; }
    START_NOJOIN=$2
    start_net "$1" || { START_NOJOIN=""; return 1; }
    START_NOJOIN=""
    START_T=$(us_now)
    note "h$2 drops every new inbound TCP connection (nft: tcp flags & (syn | ack) == syn ct state new counter drop)"
}

# Waits until the manager relays to host v and v pulls from the relay. Sets RELAY (the
# relay's host number), RSLOT (v's slot), RELAYED_AT (us_now when seen). 1 (with a FAIL
# line) on failure.
RELAY="" RSLOT="" RELAYED_AT=0
wait_relayed() { # v
    local v=$1 line
    RELAY="" RSLOT=""
    if ! wait_log_re "$SD/manager.log" "h$v \\(slot [0-9]+\\) pulls from h[0-9]+ \\(serving" 10; then
        fail "the manager did not relay to h$v within 10s of the network being up: $(last_match "$SD/manager.log" "h$v \\(slot|complaint" || true)"
        return 1
    fi
    RELAYED_AT=$(us_now)
    line=$(last_match "$SD/manager.log" "h$v \\(slot [0-9]+\\) is unreachable")
    if [[ -n $line ]]; then
        note "manager: $line"
    else
        fail "the manager relays to h$v but never logged that it is unreachable"
    fi
    line=$(last_match "$SD/manager.log" "h$v \\(slot [0-9]+\\) pulls from h[0-9]+ \\(serving")
    note "manager: $line ($(secs_since "$START_T")s after the network was up)"
    RELAY=$(sed -E 's/.* pulls from h([0-9]+) \(serving.*/\1/' <<<"$line")
    RSLOT=$(sed -E 's/^h[0-9]+ \(slot ([0-9]+)\).*/\1/' <<<"$line")
    [[ $RELAY =~ ^[0-9]+$ && $RSLOT =~ ^[0-9]+$ && $RELAY != "$v" ]] ||
        { fail "cannot read the relay from the manager's log: '$line'"; return 1; }
    if wait_log "$SD/h$v.log" "pulling from relay h$RELAY at" 10; then
        note "h$v: $(last_match "$SD/h$v.log" "the manager finds us unreachable; pulling from h$RELAY")"
        note "h$v: $(last_match "$SD/h$v.log" "pulling from relay h$RELAY at")"
    else
        fail "h$v did not connect to its relay h$RELAY within 10s: $(last_match "$SD/h$v.log" "pull|relay")"
        return 1
    fi
    if wait_log "$SD/h$RELAY.log" "relaying to h$v at" 5; then
        note "h$RELAY: $(last_match "$SD/h$RELAY.log" "relaying to h$v at")"
    else
        fail "the relay h$RELAY did not log 'relaying to h$v' within 5s"
    fi
}

peers_table() { # i seconds: types /peers into servant i, prints its answer (the lines since)
    local i=$1 m
    m=$(log_lines "$SD/h$i.out")
    say "$i" /peers
    # The table ends with the servant's own line, "  hI   (this servant)...".
    wait_log_re "$SD/h$i.out" "^  h$i +\\(this servant\\)" "$2" "$m" || return 1
    log_since "$SD/h$i.out" "$m" | sed -n -E "/ peer\\(s\\); manager /,/^  h$i +\\(this servant\\)/p"
}

# 7 --------------------------------------------------------------------------------------
s7_title="firewalled host: h4 drops every inbound connection and is relayed"
s7() {
    local v=4 others="" i out c0 c1 k t1 t_last stable first
    for i in $SERV; do [[ $i != "$v" ]] && others+="$i "; done
    start_firewalled s7 "$v" || { stop_net; fw_clear "$v"; return; }
    # Typed at once, before the manager has found h4 unreachable (its probe waits 2 s):
    # the senders to h4 are stuck connecting and are then stopped; these lines must reach
    # h4 anyway, from the relay's history when h4 attaches (the catch-up).
    chat s7-early 3 $SERV
    wait_relayed "$v" || { stop_net; fw_clear "$v"; return; }
    expect_chat s7-early 3 15 0 $(all_pairs $SERV)
    # Every other servant stops connecting to h4 (it had started a sender when h4 joined).
    out=""
    for i in $others; do
        if grep -qF "peer joined: h$v " "$SD/h$i.log"; then
            wait_log "$SD/h$i.log" "h$v is behind a firewall: no longer connecting to it" 5 || out+=" h$i"
        fi
    done
    if [[ -z $out ]]; then
        note "every other servant logged 'h$v is behind a firewall: no longer connecting to it' (or never connected)"
    else
        fail "still connecting to h$v (no 'behind a firewall' line within 5s):$out"
    fi
    # Chat both ways, through the relay to h4 and directly from h4.
    chat s7 5 $SERV
    expect_chat s7 5 15 1 $(all_pairs $SERV)
    # /peers: h4 says it pulls; the others show h4 as relayed.
    if out=$(peers_table "$v" 3); then
        if grep -qF "behind a firewall, pulling from h$RELAY at" <<<"$out"; then
            note "h$v /peers: $(grep -E "^  h$v +\\(this servant\\)" <<<"$out" | sed 's/  */ /g; s/^ //')"
        else
            fail "h$v's /peers does not say 'behind a firewall, pulling from h$RELAY': $(tr '\n' '|' <<<"$out")"
        fi
    else
        fail "h$v did not answer /peers"
    fi
    for i in $others; do
        if ! out=$(peers_table "$i" 3); then fail "h$i did not answer /peers"; continue; fi
        first=$(grep -E "^  h$v " <<<"$out")
        if [[ $i == "$RELAY" ]]; then
            # On the relay itself the relay is "this servant", not a listed peer: accept
            # "relayed through hR (this servant)" and the older "relayed through slot N".
            if grep -qE "behind a firewall, relayed through (h$RELAY|slot [0-9]+)" <<<"$first" &&
                grep -qF "relaying to h$v" <<<"$out"; then
                note "h$i (the relay) /peers: $(sed 's/  */ /g' <<<"$first" | sed 's/^ //'); $(grep -E "^  h$i +\\(this servant\\)" <<<"$out" | sed 's/  */ /g; s/^ //')"
            else
                fail "the relay h$i's /peers does not show h$v relayed / 'relaying to h$v': $(tr '\n' '|' <<<"$out")"
            fi
        elif grep -qF "behind a firewall, relayed through h$RELAY" <<<"$first"; then
            [[ $i == "${others%% *}" ]] && note "h$i /peers: $(sed 's/  */ /g' <<<"$first" | sed 's/^ //')"
        else
            fail "h$i's /peers does not show h$v 'behind a firewall, relayed through h$RELAY': '${first:-no line for h$v}'"
        fi
    done
    # Nobody keeps trying to connect to h4: its drop counter stops (a connect already under
    # way when the relay was announced may run out its 3 s, plus one last try to deliver
    # what it held), then stays still for 4 s while everyone chats again.
    c0=$(nft_counter_sum "$v" in gp2pfw)
    t_last=$(us_now)
    stable=0
    for ((k = 0; k < 60; k++)); do # at most 15 s
        sleep 0.25
        c1=$(nft_counter_sum "$v" in gp2pfw)
        if ((c1 != c0)); then c0=$c1 t_last=$(us_now); fi
        (($(us_now) - t_last >= 4000000)) && { stable=1; break; }
    done
    if ((stable)); then
        note "h$v's drop rule stopped counting $(awk -v a="$t_last" -v b="$RELAYED_AT" 'BEGIN {printf "%.1f", (a - b) / 1e6}')s after the relay was seen chosen ($c0 SYN(s) dropped in all: the manager's probe, the peers' first tries)"
        t1=$(us_now)
        chat s7-after 3 $SERV
        expect_chat s7-after 3 10 0 $(all_pairs $SERV)
        while (($(us_now) - t1 < 4000000)); do sleep 0.2; done
        c1=$(nft_counter_sum "$v" in gp2pfw)
        if ((c1 == c0)); then
            note "no connection attempt reached h$v in the $(secs_since "$t1")s of chat after that (drop counter still $c0)"
        else
            fail "$((c1 - c0)) connection attempt(s) (SYN) to h$v in the $(secs_since "$t1")s of chat after it was relayed"
        fi
    else
        fail "connection attempts to h$v never stopped: its drop counter is $c1 and still moving 15s after it was relayed"
    fi
    out=""
    for i in $others; do
        k=$(sed -n "/h$v is behind a firewall: no longer connecting/,\$p" "$SD/h$i.log" | grep -cF "cannot reach h$v ")
        ((k)) && out+=" h$i:$k"
    done
    [[ -z $out ]] || note "'cannot reach h$v' logged after 'no longer connecting' (a try already under way):$out"
    stop_net
    fw_clear "$v"
}

# 8 --------------------------------------------------------------------------------------
s8_title="relay failover: the firewalled h4's relay is killed (SIGKILL)"
s8() {
    local v=4 r rest="" senders i j k out line t0 new mm m4 rp
    start_firewalled s8 "$v" || { stop_net; fw_clear "$v"; return; }
    wait_relayed "$v" || { stop_net; fw_clear "$v"; return; }
    r=$RELAY
    for i in $SERV; do [[ $i != "$v" && $i != "$r" ]] && rest+="$i "; done
    senders="$rest$v"
    chat s8-before 3 $SERV
    expect_chat s8-before 3 10 0 $(all_pairs $SERV) || { stop_net; fw_clear "$v"; return; }
    rp=${PID[$r]}
    if [[ $(readlink "/proc/$rp/exe" 2>/dev/null) != "$BIN/servant" ]]; then
        fail "pid $rp of h$r is not the servant ($(readlink "/proc/$rp/exe" 2>/dev/null))"
        stop_net; fw_clear "$v"; return
    fi
    mm=$(log_lines "$SD/manager.log")
    m4=$(log_lines "$SD/h$v.log")
    # The remaining hosts and h4 type 20 lines each, 0.1 s apart; after the 5th round the
    # relay's servant is killed: lines typed just before, during and after the switch.
    CHAT_T0=$(us_now)
    for ((j = 1; j <= 20; j++)); do
        for i in $senders; do say "$i" "s8-switch-h$i-#$j"; done
        if ((j == 5)); then
            t0=$(us_now)
            rm -f "$SD"/t-*
            watch_bg -F "$SD/manager.log" "relay h$r left; finding another for slot $RSLOT" 15 "$mm" "$t0" "$SD/t-left"
            watch_bg -E "$SD/manager.log" "h$v \\(slot $RSLOT\\) pulls from h[0-9]+ \\(serving" 15 "$mm" "$t0" "$SD/t-chosen"
            watch_bg -E "$SD/h$v.log" "pulling from relay h[0-9]+ at" 15 "$m4" "$t0" "$SD/t-pulling"
            disown "$rp" 2>/dev/null # no "Killed" job report from bash
            kill -KILL "$rp"
            for ((k = 0; k < 30; k++)); do alive "$rp" || break; sleep 0.05; done
            unset "PID[$r]"
            rm -f "$RUN/pids/h$r.pid"
        fi
        sleep 0.1
    done
    note "the relay h$r (pid $rp) got SIGKILL after the 5th of 20 rounds of 'during' chat (0.1 s apart) from $(names_of $senders | tr ',' ' ')"
    if wait_log "$SD/manager.log" "relay h$r left; finding another for slot $RSLOT" 10 "$mm"; then
        note "manager: $(last_match "$SD/manager.log" "relay h$r left; finding another" "$mm")"
    else
        fail "the manager did not log 'relay h$r left; finding another for slot $RSLOT' within 10s"
    fi
    if wait_log_re "$SD/manager.log" "h$v \\(slot $RSLOT\\) pulls from h[0-9]+ \\(serving" 10 "$mm"; then
        line=$(last_match "$SD/manager.log" "h$v \\(slot $RSLOT\\) pulls from h[0-9]+ \\(serving" "$mm")
        new=$(sed -E 's/.* pulls from h([0-9]+) \(serving.*/\1/' <<<"$line")
        note "manager: $line"
        watchers_wait
        note "after the kill: the manager saw the relay leave in $(took "$SD/t-left"), chose h$new in $(took "$SD/t-chosen"); h$v pulled from it in $(took "$SD/t-pulling")"
        if [[ $new == "$r" || " $rest " != *" $new "* ]]; then
            fail "the new relay h$new is not one of the remaining servants ($(names_of $rest))"
        fi
    else
        fail "the manager did not choose another relay for h$v within 10s of the kill"
        watchers_wait
        stop_net; fw_clear "$v"; return
    fi
    if wait_log "$SD/h$v.log" "pulling from relay h$new at" 10 "$m4"; then
        t_pull=$(secs_since "$t0")
        note "h$v: $(last_match "$SD/h$v.log" "the manager finds us unreachable; pulling from h$new" "$m4")"
        note "h$v: $(last_match "$SD/h$v.log" "pulling from relay h$new at" "$m4")"
    else
        fail "h$v did not connect to its new relay h$new within 10s: $(last_match "$SD/h$v.log" "pull|relay" "$m4")"
    fi
    if wait_log "$SD/h$new.log" "relaying to h$v at" 5; then
        note "h$new: $(last_match "$SD/h$new.log" "relaying to h$v at")"
    else
        fail "the new relay h$new did not log 'relaying to h$v'"
    fi
    # Everything typed around the switch reaches h4 (and everyone else left) once, in order.
    expect_chat s8-switch 20 20 1 $(all_pairs $senders)
    chat s8-after 5 $senders
    expect_chat s8-after 5 10 1 $(all_pairs $senders)
    if out=$(peers_table "$v" 3) && grep -qF "behind a firewall, pulling from h$new at" <<<"$out"; then
        note "h$v /peers: $(grep -E "^  h$v +\\(this servant\\)" <<<"$out" | sed 's/  */ /g; s/^ //')"
    else
        fail "h$v's /peers does not say 'behind a firewall, pulling from h$new': $(tr '\n' '|' <<<"$out")"
    fi
    out=$(grep -hF "never arrived" "$SD/h$v.log" | head -n 3 | sed 's/^\[[^]]*\] //' | tr '\n' ';')
    [[ -z $out ]] || fail "h$v logged lost messages: $out"
    stop_net
    fw_clear "$v"
}

# 9 --------------------------------------------------------------------------------------
s9_title="outbound trouble only: h5 cannot connect out to servants; never marked"
s9() {
    local v=5 others="" i t0 d0 d1 n_c out line k
    for i in $SERV; do [[ $i != "$v" ]] && others+="$i "; done
    firewall_outbound "$v" || { fail "cannot install the outbound rule on h$v"; return; }
    start_net s9 || { stop_net; fw_clear "$v"; return; }
    t0=$(us_now)
    note "h$v drops its outbound SYNs to every lab address but port $MGR_PORT (nft: ip daddr $NET.0/24 tcp dport != $MGR_PORT tcp flags & (syn | ack) == syn counter drop); inbound untouched"
    d0=$(nft_counter_sum "$v" out gp2pfw)
    # Everyone chats; h5's lines cannot go out (expected), everyone else's must reach h5.
    chat s9 5 $SERV
    local pairs=()
    for i in $others; do pairs+=("$v<$i"); done
    pairs+=($(all_pairs $others))
    expect_chat s9 5 10 0 "${pairs[@]}"
    # Watch while h5 keeps failing and complaining: at least 10 s, and until it has
    # complained past the threshold about every other servant (the manager then says its
    # complaints count against nobody), at most 20 s. Its connects time out (3 s) and back
    # off, so the third complaint about each comes after ~13 s.
    while (($(us_now) - t0 < 20000000)); do
        if (($(us_now) - t0 >= 10000000)) && grep -qE "h$v \\(slot [0-9]+\\) cannot reach anyone" "$SD/manager.log"; then break; fi
        sleep 0.2
    done
    d1=$(nft_counter_sum "$v" out gp2pfw)
    if ((d1 > 0)); then
        note "h$v's rule dropped $d1 outbound SYN(s) in $(secs_since "$t0")s ($d0 by the time the network was up)"
    else
        fail "h$v's rule dropped nothing: the scenario did not test outbound trouble"
    fi
    n_c=$(grep -cE "complaint about h[0-9]+ \\(slot [0-9]+\\) from h$v \\(slot" "$SD/manager.log")
    if ((n_c > 0)); then
        note "the manager got $n_c complaint(s) from h$v, e.g.: $(last_match "$SD/manager.log" "complaint about h[0-9]+ \\(slot [0-9]+\\) from h$v")"
    else
        fail "the manager logged no complaint from h$v (h$v.log: $(last_match "$SD/h$v.log" "cannot reach"))"
    fi
    line=$(last_match "$SD/manager.log" "h$v \\(slot [0-9]+\\) cannot reach anyone")
    if [[ -n $line ]]; then
        note "manager: $line"
    else
        note "h$v did not complain past the threshold about every other servant in $(secs_since "$t0")s (no 'cannot reach anyone')"
    fi
    line=$(last_match "$SD/h$v.log" "cannot reach h[0-9]+ at")
    [[ -n $line ]] && note "h$v: $line"
    out=$(grep -E "is unreachable|pulls from" "$SD/manager.log" | sed 's/^\[[^]]*\] //' | head -n 3 | tr '\n' ';')
    if [[ -z $out ]]; then
        note "in $(secs_since "$t0")s the manager marked nobody unreachable (not h$v, not those it complained about) and chose no relay"
    else
        fail "the manager marked servants because of h$v's trouble: $out"
    fi
    out=""
    for i in $SERV; do
        grep -qF "the manager finds us unreachable" "$SD/h$i.log" && out+=" h$i"
    done
    [[ -z $out ]] || fail "told to pull from a relay:$out"
    stop_net
    fw_clear "$v"
}

# 10 -------------------------------------------------------------------------------------
s10_title="a second manager on h2 takes over while h1's is down, and hands back"
MPID2=""
s10() {
    local i t0 out marks=() missing left grace
    SECOND_MGR=1
    start_net s10 || { SECOND_MGR=0; return; }
    sed "s|<port>$MGR_PORT</port>|<port>$MGR2_PORT</port>|" "$SD/manager.xml" >"$SD/manager2.xml"
    ip netns exec "$(ns 2)" "$BIN/connection-manager" --config "$SD/manager2.xml" \
        </dev/null >"$SD/manager2.out" 2>"$SD/manager2.log" &
    MPID2=$!
    echo "$MPID2" >"$RUN/pids/manager2.pid"
    mgr2() { ip netns exec "$(ns 1)" "$PY" "$LAB/labtool.py" "$1" h2 "$MGR2_PORT" "${@:2}"; }
    if ! out=$(mgr2 wait --within 5); then
        fail "the second manager did not answer on h2:$MGR2_PORT within 5s"
        stop_net; SECOND_MGR=0; return
    fi
    out=$(mgr2 peers 2>&1 | tr '\n' ' ')
    if [[ -z ${out// /} ]]; then
        note "every servant names h1 then h2:$MGR2_PORT; all registered with h1, the one on h2 lists nobody"
    else
        fail "the second manager lists servants while the first answers: $out"
    fi
    for i in $SERV; do marks[$i]=$(log_lines "$SD/h$i.log"); done
    t0=$(us_now)
    disown "$MPID"
    kill -KILL "$MPID"
    for ((i = 0; i < 30; i++)); do alive "$MPID" || break; sleep 0.1; done
    MPID=""
    rm -f "$RUN/pids/manager.pid"
    note "h1's manager killed with SIGKILL"
    if out=$(mgr2 wait --has "$(names_of $SERV)" --within 15); then
        note "every servant is listed by h2's manager $(secs_since "$t0")s later"
    else
        fail "not every servant moved to h2's manager within 15s; it lists ${out#* }"
    fi
    chat s10-moved 3 $SERV
    expect_chat s10-moved 3 10 0 $(all_pairs $SERV)
    # Down past the grace period of the move (the manager's time-out, at least 3 s, + 2 s):
    # the leaves h2's manager pushes as servants move back must not drop anyone.
    grace=$(grace_us)
    while (($(us_now) - t0 < grace)); do sleep 0.1; done
    start_manager manager-restarted
    t0=$(us_now)
    note "h1's manager restarted"
    if out=$(mgr wait --has "$(names_of $SERV)" --within 20); then
        note "every servant is back with h1's manager $(secs_since "$t0")s after its restart (they look back every 3 heartbeats)"
    else
        fail "not every servant went back to h1's manager within 20s; it lists ${out#* }"
    fi
    if out=$(mgr2 wait --lacks "$(names_of $SERV)" --within 10); then
        note "h2's manager lists nobody again"
    else
        fail "h2's manager still lists ${out#* }: the network is split between two managers"
    fi
    missing=""
    for i in $SERV; do
        log_since "$SD/h$i.log" "${marks[$i]}" | grep -qF "named earlier in the config, which answers again" || missing+=" h$i"
    done
    [[ -z $missing ]] && note "each servant logged: $(last_match "$SD/h2.log" "which answers again")" ||
        fail "did not log the move back:$missing"
    chat s10-back 3 $SERV
    expect_chat s10-back 3 10 0 $(all_pairs $SERV)
    left=""
    for i in $SERV; do
        log_since "$SD/h$i.log" "${marks[$i]}" | grep -qF "peer left:" && left+=" h$i"
    done
    [[ -z $left ]] && note "no servant dropped a peer across both moves" ||
        fail "servants dropped peers while moving between managers:$left"
    stop_net
    kill -TERM "$MPID2" 2>/dev/null
    reap "$MPID2" 5
    [[ $REAPED == 0 ]] || fail "h2's manager did not exit 0 on SIGTERM: $REAPED"
    MPID2=""
    rm -f "$RUN/pids/manager2.pid"
    SECOND_MGR=0
}

# ------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------
DEMO_MADE_LAB=0
TAIL_PID=""
demo_exit() {
    local rc=$?
    [[ -n $TAIL_PID ]] && kill "$TAIL_PID" 2>/dev/null
    stop_all_quietly
    if ((DEMO_MADE_LAB)); then lab_down quiet keep-logs; fi
    exit "$rc"
}

cmd_demo() {
    local want=${1:-5} i t lines
    preflight lan-demo
    check_binaries
    if lab_is_up; then
        HOSTS_N=$(lab_hosts)
        [[ $HOSTS_N == "$want" ]] || echo "(the lab is up with $HOSTS_N hosts; using those. make lan-down first for $want)"
    else
        [[ $want =~ ^[0-9]+$ ]] && ((want >= 3)) || die "the demo needs N of 3 or more, got '$want'"
        echo "no lab is up: making one with $want hosts for the demo (removed afterwards)"
        lab_up "$want" quiet
        DEMO_MADE_LAB=1
        HOSTS_N=$want
    fi
    ((HOSTS_N >= 3)) || die "the demo needs at least 3 hosts; the lab has $HOSTS_N (make lan-down; make lan-up N=5)"
    copy_binaries
    trap demo_exit EXIT
    trap 'exit 130' INT TERM HUP
    SERV=$(seq 2 "$HOSTS_N" | tr '\n' ' ')
    LOGDIR=$LOGROOT
    echo "== genp2p LAN demo: connection manager on h1 ($NET.1:$MGR_PORT), servants on $(names_of $SERV | tr ',' ' ')"
    start_net demo || exit 1
    echo "   the manager lists: $(mgr peers | tr '\n' ' ')"
    echo "== chat (each line as shown on the receiving host: 'HOST | <SENDER> TEXT')"
    # One reader for every servant's standard output, each line prefixed with its host.
    local files=()
    for i in $SERV; do files+=("$SD/h$i.out"); done
    "$PY" "$LAB/labtool.py" follow 120 "${files[@]}" &
    TAIL_PID=$!
    lines=(
        "hello from h%d - is anybody out there?"
        "h%d here: I hear you, and the manager only told me where you are"
        "h%d: no server in between, every line goes straight to each peer"
        "h%d signing off"
    )
    for t in "${lines[@]}"; do
        for i in $SERV; do
            # shellcheck disable=SC2059
            say "$i" "$(printf "$t" "$i")"
            sleep 0.4
        done
    done
    sleep 1.5
    echo "== /peers typed on h2"
    say 2 /peers
    sleep 1
    kill "$TAIL_PID" 2>/dev/null
    TAIL_PID=""
    sleep 0.2
    echo "== clean stop: /quit typed on every servant, then SIGTERM to the manager"
    stop_net /quit
    echo "== logs: $SD (hN.out what hN showed, hN.log its log, manager.log)"
    ((DEMO_MADE_LAB)) && echo "== the demo's lab is removed; its logs stay until make lan-down"
    ((S_FAILED == 0))
}

# ------------------------------------------------------------------------------------
# test
# ------------------------------------------------------------------------------------
test_exit() {
    local rc=$?
    stop_all_quietly
    lab_down quiet keep-logs
    if ((rc == 0)) && [[ -z ${KEEP_LOGS:-} ]]; then
        rm -rf "$LOGDIR"
        rmdir "$LOGROOT" 2>/dev/null
    elif [[ -d $LOGDIR ]]; then
        echo "logs kept in $LOGDIR (make lan-down removes them)"
    fi
    echo "lab cleaned up"
    exit "$rc"
}

cmd_test() {
    local s list=() t0 t_all failed=0 r
    for s in "$@"; do
        [[ $s =~ ^([1-9]|10)$ ]] || die "unknown scenario '$s': the scenarios are 1 to 10"
        list+=("$s")
    done
    ((${#list[@]})) || list=(1 2 3 4 5 6 7 8 9 10)
    preflight lan-test nft
    check_binaries
    [[ $TEST_N =~ ^[0-9]+$ ]] && ((TEST_N >= 5)) || die "LAB_N must be 5 or more for the test, got '$TEST_N'"
    [[ $MGR_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "LAB_MGR_TIMEOUT must be a whole number of seconds, got '$MGR_TIMEOUT'"
    [[ $LOSS =~ ^[0-9]+$ ]] && ((LOSS < 100)) || die "LAB_LOSS must be a percentage from 0 to 99, got '$LOSS'"
    LOGDIR=$LOGROOT/test
    trap test_exit EXIT
    trap 'echo; echo "interrupted"; exit 130' INT TERM HUP
    t_all=$(us_now)
    lab_is_up && echo "a lab is up: the test replaces it with its own and removes that at the end"
    lab_down quiet keep-logs
    rm -rf "$LOGDIR"
    lab_up "$TEST_N" quiet
    copy_binaries
    mkdir -p "$LOGDIR"
    HOSTS_N=$TEST_N
    SERV=$(seq 2 "$HOSTS_N" | tr '\n' ' ')
    echo "genp2p LAN test: $HOSTS_N hosts (manager on h1, servants on $(names_of $SERV | tr ',' ' ')), manager timeout ${MGR_TIMEOUT}s, heartbeat ${HEARTBEAT}s"
    for s in "${list[@]}"; do
        local title_var="s${s}_title"
        echo "[$s] ${!title_var}"
        S_FAILED=0
        t0=$(us_now)
        "s$s"
        stop_all_quietly # in case the scenario left early
        if ((S_FAILED)); then r=FAIL failed=1; else r=PASS; fi
        echo "    $r  [$s] ${!title_var} ($(secs_since "$t0")s)"
        RESULTS+=("$r  [$s] ${!title_var} ($(secs_since "$t0")s)")
    done
    echo
    echo "summary ($(secs_since "$t_all")s):"
    for r in "${RESULTS[@]}"; do echo "  $r"; done
    return $failed
}

cmd_status() {
    if ! lab_is_up; then echo "no lab is up"; return 0; fi
    local n i p
    n=$(lab_hosts)
    echo "lab up: $n hosts on bridge $BR in namespace $SW"
    for ((i = 1; i <= n; i++)); do
        p=$(ip netns pids "$(ns "$i")" 2>/dev/null | while read -r q; do tr '\0' ' ' <"/proc/$q/cmdline" 2>/dev/null | awk '{print $1}' | xargs -r basename; done | tr '\n' ' ')
        printf '  %-9s h%-3s %-12s %s\n' "$(ns "$i")" "$i" "$(ip -n "$(ns "$i")" -br -4 addr show dev eth0 2>/dev/null | awk '{print $3 " " $2}')" "${p:+running: $p}"
    done
}

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
    up)
        preflight lan-up
        check_binaries
        lab_up "${1:-5}"
        copy_binaries
        ;;
    demo) cmd_demo "${1:-5}" ;;
    test) cmd_test "$@" ;;
    down)
        [[ $(id -u) -eq 0 ]] || die "the LAN lab needs root to remove its namespaces; run it as root, e.g. sudo make lan-down"
        lab_down
        ;;
    status) cmd_status ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
