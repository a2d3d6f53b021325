#!/usr/bin/env bash
# A second local SLURM whose nodes are separate network hosts: network namespaces on this machine.
#
#   sudo scripts/netns-slurm.sh up       # idempotent
#   sudo scripts/netns-slurm.sh down     # stops its daemons by pid file, deletes its namespaces
#   scripts/netns-slurm.sh exec CMD...   # run a SLURM client (sbatch, squeue...) against it
#
# Why: on scripts/local-slurm.sh's cluster every node is 127.0.0.1, where Ray keeps one node (it
# joins a second only with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1, which listens on every interface of
# the host). Here the controller and the nodes h1, h2 each own a namespace and an address on a
# private bridge (10.231.0.0/24) that exists only inside the namespaces: a Ray head on h1 and a worker
# on h2 talk over a real network, and nothing listens on the host's own interfaces.
#
# Layout: namespace synmed-ctl holds the bridge (10.231.0.1) and slurmctld; synmed-h1/-h2 hold one
# slurmd each (10.231.0.11/.12). Daemons enter only the network namespace (nsenter --net: `ip netns
# exec` would remount /sys, hiding the cgroup file systems slurmd needs), so the node names go into
# /etc/hosts (appended, as scripts/local-slurm.sh does; the addresses exist only inside the
# namespaces). Munge (a unix socket) is shared with the loopback cluster: run
# scripts/local-slurm.sh up first.
# Clients: SLURM_CONF=/etc/slurm-netns/slurm.conf inside synmed-ctl (what `exec` does).
set -euo pipefail
export LC_ALL=C

PREFIX=synmed
NET=10.231.0
NODES=(synmed-h1 synmed-h2)
CONF_DIR=/etc/slurm-netns
CONF=$CONF_DIR/slurm.conf
RUN_DIR=/run/synmed-netns-slurm
LOG_DIR=/var/log/slurm-netns
STATE_DIR=/var/lib/synmed-slurm/netns-state
SPOOL_DIR=/var/spool/slurm-netns
PARTITION=net
CTLD_PORT=6917
SLURMD_PORT_BASE=6920

DAEMONS_LOG_NAME=netns-slurm
# shellcheck source=lib/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemons.sh"

ns_of() { echo "$PREFIX-${1#"$PREFIX"-}"; }   # ctl | synmed-hN -> namespace name
addr_of() {                                     # ctl | synmed-hN -> address on the bridge
    case $1 in ctl) echo "$NET.1" ;; *) echo "$NET.$((10 + ${1##*-h}))" ;; esac
}
in_ns() {
    local ns=$1
    shift
    SLURM_CONF=$CONF nsenter --net="/run/netns/$(ns_of "$ns")" "$@"
}

ensure_network() {
    local host ns
    for host in ctl "${NODES[@]}"; do
        ns=$(ns_of "$host")
        ip netns list | grep -qw "^$ns" || ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip -n "$(ns_of ctl)" link show br0 >/dev/null 2>&1 || {
        ip -n "$(ns_of ctl)" link add br0 type bridge
        ip -n "$(ns_of ctl)" addr add "$(addr_of ctl)/24" dev br0
        ip -n "$(ns_of ctl)" link set br0 up
    }
    for host in "${NODES[@]}"; do
        ns=$(ns_of "$host")
        ip -n "$ns" link show eth0 >/dev/null 2>&1 && continue
        # one veth per node: eth0 inside the node, the other end on the controller's bridge
        ip link add "veth-${host##*-}" netns "$(ns_of ctl)" type veth peer name eth0 netns "$ns"
        ip -n "$(ns_of ctl)" link set "veth-${host##*-}" master br0 up
        ip -n "$ns" addr add "$(addr_of "$host")/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    for host in "${NODES[@]}"; do
        grep -qE "^$(addr_of "$host")[[:space:]]+$host([[:space:]]|$)" /etc/hosts && continue
        # append only: in containers /etc/hosts is often a bind mount that cannot be replaced
        [[ ! -s /etc/hosts || $(tail -c 1 /etc/hosts) == "" ]] || echo >>/etc/hosts
        echo "$(addr_of "$host") $host" >>/etc/hosts
    done
}

write_conf() {
    local host cpus_line mem i=0
    host=$(hostname -s)
    cpus_line=$(slurmd -C | head -n 1 | sed -E 's/^NodeName=[^ ]+ //; s/ RealMemory=[0-9]+//')
    mem=$(($(free -m | awk '/^Mem:/ {print $2}') * 90 / 100 / ${#NODES[@]}))
    mkdir -p "$CONF_DIR"
    {
        cat <<EOF
# Written by scripts/netns-slurm.sh (synmed-suite): nodes in network namespaces on one machine.
ClusterName=netns
SlurmctldHost=$host($(addr_of ctl))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
SlurmctldPort=$CTLD_PORT
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmdSpoolDir=$SPOOL_DIR/%n
StateSaveLocation=$STATE_DIR
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
KillWait=5
InactiveLimit=0
MinJobAge=300
EOF
        for n in "${NODES[@]}"; do
            i=$((i + 1))
            echo "NodeName=$n NodeHostname=$host NodeAddr=$(addr_of "$n") Port=$((SLURMD_PORT_BASE + i)) $cpus_line RealMemory=$mem State=UNKNOWN"
        done
        echo "PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
    } >"$CONF.tmp"
    if [[ -f $CONF ]] && cmp -s "$CONF" "$CONF.tmp"; then
        rm -f "$CONF.tmp"
        return 0
    fi
    mv -f "$CONF.tmp" "$CONF"
    # a changed configuration: restart whatever runs with the old one
    stop_daemons
}

ensure_munge() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 ||
        die "munge does not answer: run scripts/local-slurm.sh up first (it sets munge up)"
}

stop_daemons() {
    local n
    for n in "${NODES[@]}"; do stop_pidfile "$RUN_DIR/slurmd-$n.pid" slurmd; done
    stop_pidfile "$RUN_DIR/slurmctld.pid" slurmctld
}

nodes_idle() {
    local states
    states=$(in_ns ctl sinfo -h -N -o '%N %t') || return 1
    [[ $(grep -cE ' (idle|mix|alloc|comp)$' <<<"$states") == "${#NODES[@]}" ]] || {
        local n
        for n in "${NODES[@]}"; do
            grep -qE "^$n (down|drain|fail)" <<<"$states" &&
                in_ns ctl scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1
        done
        return 1
    }
}

cmd_up() {
    [[ $EUID -eq 0 ]] || die "must run as root (namespaces, daemons)"
    command -v ip >/dev/null || die "ip (Debian's iproute2) is missing: apt-get install iproute2"
    command -v slurmctld >/dev/null || die "SLURM is missing: run scripts/local-slurm.sh up first"
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR"
    ensure_munge
    ensure_network
    write_conf
    if ! pid_alive "$RUN_DIR/slurmctld.pid" slurmctld >/dev/null; then
        log "starting slurmctld in $(ns_of ctl) ($(addr_of ctl):$CTLD_PORT)"
        # -c: a clean start; jobs of an earlier life of this test cluster are of no use
        in_ns ctl slurmctld -c </dev/null >>"$LOG_DIR/slurmctld.start.log" 2>&1 ||
            die "slurmctld failed: $(tail -n 5 "$LOG_DIR/slurmctld.log" 2>/dev/null)"
    fi
    wait_for 30 in_ns ctl scontrol ping || die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"
    local n
    for n in "${NODES[@]}"; do
        pid_alive "$RUN_DIR/slurmd-$n.pid" slurmd >/dev/null && continue
        mkdir -p "$SPOOL_DIR/$n"
        log "starting slurmd $n in $(ns_of "$n") ($(addr_of "$n"))"
        in_ns "$n" slurmd -N "$n" </dev/null >>"$LOG_DIR/slurmd-$n.start.log" 2>&1 ||
            die "slurmd $n failed: $(tail -n 5 "$LOG_DIR/slurmd-$n.log" 2>/dev/null)"
    done
    wait_for 60 nodes_idle || die "nodes not ready: $(in_ns ctl sinfo -N 2>&1)"
    echo "netns-slurm: up: partition $PARTITION, nodes ${NODES[*]}, controller $(addr_of ctl):$CTLD_PORT"
}

cmd_down() {
    [[ $EUID -eq 0 ]] || die "must run as root"
    stop_daemons
    local host pids
    for host in "${NODES[@]}" ctl; do
        ip netns list | grep -qw "^$(ns_of "$host")" || continue
        # whatever jobs left in the namespace (job steps, Ray nodes): all of it is this cluster's
        pids=$(ip netns pids "$(ns_of "$host")" | tr '\n' ' ')
        if [[ -n ${pids// /} ]]; then
            log "stopping what is left in $(ns_of "$host"): $pids"
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            sleep 2
            # shellcheck disable=SC2086
            kill -KILL $(ip netns pids "$(ns_of "$host")") 2>/dev/null || true
        fi
        ip netns del "$(ns_of "$host")"
    done
    echo "netns-slurm: down"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
exec)
    shift
    in_ns ctl "$@"
    ;;
*)
    sed -n '2,8p' "$0" >&2
    exit 2
    ;;
esac
