#!/usr/bin/env bash
# Bring up (or stop, or inspect) a real SLURM on this one machine, for tests and CI.
#
#   sudo scripts/local-slurm.sh up       # idempotent; a second run restarts nothing (< 2 s)
#   sudo scripts/local-slurm.sh status   # exit 0 iff the controller answers and every node is up
#   sudo scripts/local-slurm.sh down     # stops exactly the daemons whose pid files this script uses
#
# What `up` does: installs the Debian packages if missing (munge slurmctld slurmd slurm-client, plus
# slurmdbd mariadb-server for accounting), starts munged, MariaDB (127.0.0.1 only) + slurmdbd, writes
# /etc/slurm/slurm.conf, and starts slurmctld plus one `slurmd -N nX` per fake node. The fake nodes all
# run on this host (NodeAddr=127.0.0.1, own port/spool/pid/log each) and their names are added to
# /etc/hosts, so multi-node jobs (srun, torchrun, submitit nodes=2) work on a single machine.
# Every daemon listens on loopback only (slurmctld/slurmdbd bind to what this host's name resolves to,
# which is 127.0.0.1 on the machines we run on; if it is not, they fall back to all interfaces, with a
# warning). Logs: /var/log/slurm/.
#
# Knobs (environment):
#   SLURM_FAKE_NODES  number of fake nodes n1..nN (default 2; 0 = one node named after this host)
#   SLURM_ACCOUNTING  1 = MariaDB + slurmdbd, so sacct works and submitit sees failed jobs (default 1)
#   SLURM_STATE_DIR   slurmctld StateSaveLocation; kept between runs so job ids keep increasing
#                     (default /var/lib/synmed-slurm/state)
#   SLURM_UP_TIMEOUT  seconds to wait for daemons and nodes (default 60)
set -euo pipefail
export LC_ALL=C

FAKE_NODES=${SLURM_FAKE_NODES:-2}
ACCOUNTING=${SLURM_ACCOUNTING:-1}
STATE_DIR=${SLURM_STATE_DIR:-/var/lib/synmed-slurm/state}
UP_TIMEOUT=${SLURM_UP_TIMEOUT:-60}

CLUSTER=local
PARTITION=debug
CONF_DIR=/etc/slurm
SLURM_CONF=$CONF_DIR/slurm.conf
DBD_CONF=$CONF_DIR/slurmdbd.conf
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
SPOOL_DIR=/var/spool/slurmd
CTLD_PID=$RUN_DIR/slurmctld.pid
DBD_PID=$RUN_DIR/slurmdbd.pid
MUNGE_PID=/run/munge/munged.pid
MYSQL_RUN=/run/mysqld
MYSQL_PID=$MYSQL_RUN/mysqld.pid
MYSQL_SOCK=$MYSQL_RUN/mysqld.sock
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurmpw
CTLD_PORT=6817
SLURMD_PORT=6818
DBD_PORT=6819
NODE_PORT_BASE=17000

T0=$EPOCHREALTIME
RESTARTED=()

DAEMONS_LOG_NAME=local-slurm
# shellcheck source=lib/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemons.sh"

usage() {
    echo "usage: $0 up|down|status" >&2
    exit 2
}

# Slurm's NoInAddrAny/NoCtldInAddrAny make slurmctld, slurmdbd (and srun) bind to the address this
# host's name resolves to instead of 0.0.0.0 (slurmd binds to its NodeAddr). Use them only when that
# address is loopback: otherwise slurmdbd would listen on the LAN address and localhost could not reach it.
comm_params() {
    local host addr
    host=$(hostname)
    addr=$(getent ahostsv4 "$host" | awk 'NR == 1 {print $1}') || true
    if [[ $addr == 127.* ]]; then
        echo "$1"
    else
        log "WARNING: $host resolves to '${addr:-nothing}', not loopback: slurmctld/slurmdbd listen on all interfaces"
    fi
}

# --- nodes ---------------------------------------------------------------------------------------

node_names() {
    local i
    if ((FAKE_NODES == 0)); then
        hostname -s
    else
        for ((i = 1; i <= FAKE_NODES; i++)); do echo "n$i"; done
    fi
}

slurmd_pidfile() { echo "$RUN_DIR/slurmd-$1.pid"; }

# --- packages ------------------------------------------------------------------------------------

ensure_packages() {
    local pkgs=(munge slurmctld slurmd slurm-client) missing=() p policy_added=0
    ((ACCOUNTING)) && pkgs+=(slurmdbd mariadb-server)
    for p in "${pkgs[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] ||
            missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
    log "installing ${missing[*]}"
    # Keep the packages' maintainer scripts from starting daemons we do not manage.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
    } >"/tmp/local-slurm-apt.log" 2>&1 || rc=$?
    ((policy_added)) && rm -f /usr/sbin/policy-rc.d
    if ((rc)); then
        tail -n 30 /tmp/local-slurm-apt.log >&2
        die "apt-get failed (rc $rc); full log in /tmp/local-slurm-apt.log"
    fi
    RESTARTED+=("apt:${missing[*]}")
}

# --- munge ---------------------------------------------------------------------------------------

ensure_munge() {
    local key=/etc/munge/munge.key
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    if [[ ! -s $key ]]; then
        log "creating $key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$key" --force
        else
            dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge "$key" /run/munge /var/log/munge /var/lib/munge
    chmod 700 /etc/munge /var/log/munge
    chmod 755 /run/munge
    chmod 711 /var/lib/munge
    chmod 400 "$key"
    if pid_alive "$MUNGE_PID" munged >/dev/null; then
        return 0
    fi
    log "starting munged"
    rm -f "$MUNGE_PID"
    runuser -u munge -- /usr/sbin/munged </dev/null >>"$LOG_DIR/munged.start.log" 2>&1 ||
        die "munged failed to start: $(tail -n 5 "$LOG_DIR/munged.start.log" /var/log/munge/munged.log 2>/dev/null)"
    wait_for 10 bash -c 'munge -n | unmunge' || die "munge does not work (see /var/log/munge/munged.log)"
    RESTARTED+=(munged)
}

# backup_conf FILE: before FILE is replaced, keep a copy. A file this script wrote itself goes to
# FILE.prev (overwritten each time); anyone else's to FILE.bak.<timestamp>, never overwritten.
HEADER='# Written by scripts/local-slurm.sh'
backup_conf() {
    local file=$1 bak first=
    [[ -f $file ]] || return 0
    IFS= read -r first <"$file" || true
    if [[ $first == "$HEADER"* ]]; then
        bak=$file.prev
    else
        bak=$file.bak.$(date +%Y%m%d-%H%M%S)
    fi
    cp -p "$file" "$bak"
    log "${file##*/} changed; previous one saved as $bak"
}

# --- MariaDB + slurmdbd --------------------------------------------------------------------------

mysql_ping() { mariadb-admin --socket="$MYSQL_SOCK" ping; }

ensure_mariadb() {
    mkdir -p "$MYSQL_RUN"
    chown mysql:mysql "$MYSQL_RUN"
    if ! pid_alive "$MYSQL_PID" mariadbd >/dev/null; then
        if [[ ! -d /var/lib/mysql/mysql ]]; then
            log "initialising MariaDB data directory"
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>"$LOG_DIR/mariadb.log" 2>&1 ||
                die "mariadb-install-db failed (see $LOG_DIR/mariadb.log)"
        fi
        log "starting MariaDB on 127.0.0.1"
        rm -f "$MYSQL_PID"
        touch "$LOG_DIR/mariadb.log"
        chown mysql:mysql "$LOG_DIR/mariadb.log"
        setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 \
            --socket="$MYSQL_SOCK" --pid-file="$MYSQL_PID" --log-error="$LOG_DIR/mariadb.log" \
            </dev/null >>"$LOG_DIR/mariadb.log" 2>&1 &
        disown || true
        wait_for "$UP_TIMEOUT" mysql_ping || die "MariaDB did not come up (see $LOG_DIR/mariadb.log)"
        RESTARTED+=(mariadb)
    fi
    # Idempotent; cheap enough to run every time.
    mariadb --socket="$MYSQL_SOCK" -e "
        CREATE DATABASE IF NOT EXISTS $DB_NAME;
        CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';" ||
        die "could not create the accounting database/user"
}

dbd_conf() {
    local comm
    comm=$(comm_params NoInAddrAny)
    [[ -z $comm ]] || comm="CommunicationParameters=$comm"
    cat <<EOF
# Written by scripts/local-slurm.sh (synmed-suite); local test accounting, loopback only.
AuthType=auth/munge
$comm
DbdAddr=127.0.0.1
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$DB_PASS
EOF
}

sacctmgr_ok() { sacctmgr -n -P list cluster format=cluster; }

ensure_slurmdbd() {
    local changed=0 new
    new=$(dbd_conf)
    if [[ ! -f $DBD_CONF || $(<"$DBD_CONF") != "$new" ]]; then
        backup_conf "$DBD_CONF"
        (
            umask 077
            printf '%s\n' "$new" >"$DBD_CONF.tmp"
        )
        mv -f "$DBD_CONF.tmp" "$DBD_CONF"
        changed=1
    fi
    chown root:root "$DBD_CONF"
    chmod 600 "$DBD_CONF"
    if ((changed)); then
        stop_pidfile "$DBD_PID" slurmdbd
    fi
    if ! pid_alive "$DBD_PID" slurmdbd >/dev/null; then
        log "starting slurmdbd"
        slurmdbd </dev/null >>"$LOG_DIR/slurmdbd.start.log" 2>&1 ||
            die "slurmdbd failed to start: $(tail -n 5 "$LOG_DIR/slurmdbd.start.log" "$LOG_DIR/slurmdbd.log" 2>/dev/null)"
        wait_for "$UP_TIMEOUT" sacctmgr_ok || die "slurmdbd does not answer (see $LOG_DIR/slurmdbd.log)"
        RESTARTED+=(slurmdbd)
    fi
    local clusters
    clusters=$(sacctmgr -n -P list cluster format=cluster)
    if [[ $'\n'$clusters$'\n' != *$'\n'"$CLUSTER"$'\n'* ]]; then
        log "registering cluster $CLUSTER with slurmdbd"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

# --- slurm.conf ----------------------------------------------------------------------------------

slurm_conf() {
    local host hw cpus_line mem_total per_node n i=0 acct comm
    comm=$(comm_params NoInAddrAny,NoCtldInAddrAny)
    [[ -z $comm ]] || comm="CommunicationParameters=$comm"
    host=$(hostname -s)
    hw=$(slurmd -C | head -n 1)
    # "NodeName=vm CPUs=2 Boards=1 ... ThreadsPerCore=1 RealMemory=24105" -> the CPU part.
    cpus_line=$(sed -E 's/^NodeName=[^ ]+ //; s/ RealMemory=[0-9]+//' <<<"$hw")
    mem_total=$(free -m | awk '/^Mem:/ {print $2}')
    local nnodes=$((FAKE_NODES == 0 ? 1 : FAKE_NODES))
    # Leave 10 % for the OS, split the rest across the (fake) nodes.
    per_node=$((mem_total * 90 / 100 / nnodes))
    if ((ACCOUNTING)); then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT"
    else
        acct="AccountingStorageType=accounting_storage/none"
    fi
    cat <<EOF
# Written by scripts/local-slurm.sh (synmed-suite): a local test cluster, loopback only.
# Fake nodes: $FAKE_NODES (0 = this host). Edits are overwritten (a differing file is backed up).
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$comm
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Re-evaluate pending jobs (e.g. a requeued job whose BeginTime passed) every second, not every
# 60/30 s: with two nodes and a handful of jobs a pass costs nothing, and a test waits for each one.
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SlurmdParameters=config_overrides
ReturnToService=2
# Batch jobs may be requeued (scontrol requeue, preemption with PreemptMode=REQUEUE). A requeued
# job waits cred_expire+1 s before it may start again (default 120 s); 10 s keeps requeue tests short.
JobRequeue=1
AuthInfo=cred_expire=10
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmdSpoolDir=$SPOOL_DIR/%n
StateSaveLocation=$STATE_DIR
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=5
InactiveLimit=0
# Finished jobs stay visible to squeue/scontrol for 5 minutes.
MinJobAge=300
Waittime=0
$acct
EOF
    if ((FAKE_NODES == 0)); then
        echo "NodeName=$host NodeAddr=127.0.0.1 $cpus_line RealMemory=$per_node State=UNKNOWN"
    else
        while read -r n; do
            i=$((i + 1))
            echo "NodeName=$n NodeHostname=$host NodeAddr=127.0.0.1 Port=$((NODE_PORT_BASE + i)) $cpus_line RealMemory=$per_node State=UNKNOWN"
        done < <(node_names)
    fi
    echo "PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
}

# write_slurm_conf: prints 1 if the file changed, else 0.
write_slurm_conf() {
    local new
    new=$(slurm_conf)
    if [[ -f $SLURM_CONF && $(<"$SLURM_CONF") == "$new" ]]; then
        echo 0
        return
    fi
    backup_conf "$SLURM_CONF"
    printf '%s\n' "$new" >"$SLURM_CONF.tmp"
    chmod 644 "$SLURM_CONF.tmp"
    mv -f "$SLURM_CONF.tmp" "$SLURM_CONF"
    echo 1
}

ensure_hosts() {
    local n
    ((FAKE_NODES == 0)) && return 0
    while read -r n; do
        grep -qE "^127\.0\.0\.1([[:space:]]+[^[:space:]#]+)*[[:space:]]+$n([[:space:]]|#|$)" /etc/hosts &&
            continue
        # Append only (in containers /etc/hosts is often a bind mount that cannot be replaced).
        [[ ! -s /etc/hosts || $(tail -c 1 /etc/hosts) == "" ]] || echo >>/etc/hosts
        echo "127.0.0.1 $n" >>/etc/hosts
    done < <(node_names)
}

# --- slurmctld + slurmd --------------------------------------------------------------------------

ctld_up() {
    local out
    out=$(scontrol ping 2>/dev/null) || return 1
    [[ $out == *"is UP"* ]]
}

is_node() { [[ $'\n'$(node_names)$'\n' == *$'\n'"$1"$'\n'* ]]; }

stop_all_slurmd() {
    local f
    for f in "$RUN_DIR"/slurmd-*.pid; do
        [[ -e $f ]] || continue
        stop_pidfile "$f" slurmd
    done
}

ensure_slurm_daemons() {
    local conf_changed=$1 n
    if ((conf_changed)); then
        stop_all_slurmd
        stop_pidfile "$CTLD_PID" slurmctld
    else
        # slurmd of nodes no longer configured.
        local f
        for f in "$RUN_DIR"/slurmd-*.pid; do
            [[ -e $f ]] || continue
            n=${f##*/slurmd-}
            n=${n%.pid}
            is_node "$n" || stop_pidfile "$f" slurmd
        done
    fi
    # Start slurmctld if it is not running; also if it exits while we wait for it to answer (e.g.
    # an old one was still shutting down when we looked), but at most 3 times.
    local starts=0 deadline=$((${EPOCHREALTIME%.*} + UP_TIMEOUT))
    until ctld_up; do
        if ! pid_alive "$CTLD_PID" slurmctld >/dev/null; then
            ((starts < 3)) || die "slurmctld keeps exiting: $(tail -n 5 "$LOG_DIR/slurmctld.log" 2>/dev/null)"
            starts=$((starts + 1))
            log "starting slurmctld (state in $STATE_DIR)"
            slurmctld </dev/null >>"$LOG_DIR/slurmctld.start.log" 2>&1 ||
                die "slurmctld failed to start: $(tail -n 5 "$LOG_DIR/slurmctld.start.log" "$LOG_DIR/slurmctld.log" 2>/dev/null)"
            ((starts > 1)) || RESTARTED+=(slurmctld)
        fi
        ((${EPOCHREALTIME%.*} < deadline)) || die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"
        sleep 0.1
    done
    while read -r n; do
        if ! pid_alive "$(slurmd_pidfile "$n")" slurmd >/dev/null; then
            mkdir -p "$SPOOL_DIR/$n"
            log "starting slurmd for node $n"
            if ((FAKE_NODES == 0)); then
                slurmd </dev/null >>"$LOG_DIR/slurmd-$n.start.log" 2>&1
            else
                slurmd -N "$n" </dev/null >>"$LOG_DIR/slurmd-$n.start.log" 2>&1
            fi || die "slurmd $n failed to start: $(tail -n 5 "$LOG_DIR/slurmd-$n.start.log" "$LOG_DIR/slurmd-$n.log" 2>/dev/null)"
            RESTARTED+=("slurmd-$n")
        fi
    done < <(node_names)
}

# nodes_ready: resume DOWN/DRAIN/FAIL nodes; succeed when every configured node is usable.
node_states() { sinfo -h -N -p "$PARTITION" -o '%N %t'; }

nodes_ready() {
    local states n st all_ok=1
    states=$(node_states) || return 1
    while read -r n; do
        st=$(awk -v n="$n" '$1 == n {print $2; exit}' <<<"$states")
        case $st in
        idle | mix | alloc | comp) ;;
        down* | drain* | drng* | fail* | inval*)
            all_ok=0
            scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true
            ;;
        *) all_ok=0 ;;
        esac
    done < <(node_names)
    ((all_ok))
}

# --- commands ------------------------------------------------------------------------------------

cmd_up() {
    [[ $EUID -eq 0 ]] || die "must run as root (daemons, /etc/slurm, /etc/hosts)"
    [[ $FAKE_NODES =~ ^[0-9]+$ ]] || die "SLURM_FAKE_NODES must be a number"
    ensure_packages
    mkdir -p "$LOG_DIR" "$RUN_DIR" "$SPOOL_DIR" "$STATE_DIR" "$CONF_DIR"
    ensure_munge
    local conf_changed
    conf_changed=$(write_slurm_conf)
    ensure_hosts
    if ((ACCOUNTING)); then
        ensure_mariadb
        ensure_slurmdbd
    fi
    ensure_slurm_daemons "$conf_changed"
    if ! wait_for "$UP_TIMEOUT" nodes_ready; then
        node_states >&2 || true
        die "nodes not ready after ${UP_TIMEOUT}s (see $LOG_DIR/slurmd-*.log, $LOG_DIR/slurmctld.log)"
    fi
    local dt nodes
    dt=$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
    nodes=$(node_names | paste -sd,)
    local restarted="none"
    ((${#RESTARTED[@]})) && restarted="${RESTARTED[*]}"
    echo "local-slurm: up in ${dt}s: cluster $CLUSTER, partition $PARTITION, nodes $nodes ready," \
        "accounting $( ((ACCOUNTING)) && echo on || echo off), state $STATE_DIR, started: $restarted"
}

cmd_down() {
    [[ $EUID -eq 0 ]] || die "must run as root"
    stop_all_slurmd
    stop_pidfile "$CTLD_PID" slurmctld
    stop_pidfile "$DBD_PID" slurmdbd
    stop_pidfile "$MYSQL_PID" mariadbd
    stop_pidfile "$MUNGE_PID" munged
    echo "local-slurm: down"
}

cmd_status() {
    local ok=1 pid f n
    report() { # name pidfile comm
        if pid=$(pid_alive "$2" "$3"); then
            printf '  %-14s running (pid %s)\n' "$1" "$pid"
        else
            printf '  %-14s not running\n' "$1"
            return 1
        fi
    }
    echo "daemons:"
    report munged "$MUNGE_PID" munged || ok=0
    if ((ACCOUNTING)); then
        report mariadb "$MYSQL_PID" mariadbd || ok=0
        report slurmdbd "$DBD_PID" slurmdbd || ok=0
    fi
    report slurmctld "$CTLD_PID" slurmctld || ok=0
    while read -r n; do
        report "slurmd $n" "$(slurmd_pidfile "$n")" slurmd || ok=0
    done < <(node_names)
    for f in "$RUN_DIR"/slurmd-*.pid; do
        [[ -e $f ]] || continue
        n=${f##*/slurmd-}
        n=${n%.pid}
        is_node "$n" || report "slurmd $n" "$f" slurmd || true
    done
    # Exit status: the controller answers and every configured node is up.
    local healthy=1
    if ! command -v sinfo >/dev/null; then
        echo "sinfo: not installed"
        exit 1
    fi
    echo "sinfo:"
    if ! timeout 10 sinfo 2>&1 | sed 's/^/  /'; then
        healthy=0
    fi
    ctld_up || healthy=0
    if ((healthy)); then
        local states st
        states=$(timeout 10 sinfo -h -N -o '%N %t' 2>/dev/null) || healthy=0
        while read -r n; do
            st=$(awk -v n="$n" '$1 == n {print $2; exit}' <<<"$states")
            case $st in
            idle | mix | alloc | comp) ;;
            *)
                echo "node $n: ${st:-missing}"
                healthy=0
                ;;
            esac
        done < <(node_names)
    fi
    if ((healthy)); then
        ((ok)) || echo "(some daemon is not running under this script's pid files, but the cluster answers)"
        echo "status: up"
        exit 0
    fi
    echo "status: NOT up"
    exit 1
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*) usage ;;
esac
