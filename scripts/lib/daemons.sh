# shellcheck shell=bash
# Helpers for the scripts that run daemons from pid files: scripts/local-slurm.sh, netns-slurm.sh.
#
#   DAEMONS_LOG_NAME=name; source "$(dirname "${BASH_SOURCE[0]}")/lib/daemons.sh"
#
# A pid file outlives its process and pids are reused, so a pid counts as "ours" only while that
# process lives, is not a zombie and has the expected command name: stopping by pid file then can
# never signal an unrelated process that happens to hold a recycled pid.

log() { printf '%s: %s\n' "${DAEMONS_LOG_NAME:-${0##*/}}" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# pid_alive PIDFILE NAME: print the pid in PIDFILE if that process lives, is not a zombie and its
# command name is NAME (or NAME-wlm, Debian's alternative-linked binaries; mysqld for mariadbd).
pid_alive() {
    local file=$1 want=$2 pid comm stat
    [[ -r $file ]] || return 1
    { pid=$(tr -dc '0-9' <"$file"); } 2>/dev/null || return 1
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    { comm=$(<"/proc/$pid/comm"); } 2>/dev/null || return 1
    { stat=$(<"/proc/$pid/stat"); } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]] || return 1
    case $comm in
    "$want" | "$want-wlm") ;;
    mysqld) [[ $want == mariadbd ]] || return 1 ;;
    *) return 1 ;;
    esac
    echo "$pid"
}

# stop_pidfile PIDFILE NAME: SIGTERM exactly that pid, wait for it to exit (SIGKILL after 20 s).
stop_pidfile() {
    local file=$1 name=$2 pid i
    if ! pid=$(pid_alive "$file" "$name"); then
        rm -f "$file"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        pid_alive "$file" "$name" >/dev/null || break
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]] && pid_alive "$file" "$name" >/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
    fi
    rm -f "$file"
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds; fail after SECONDS.
wait_for() {
    local secs=$1 deadline
    shift
    deadline=$((${EPOCHREALTIME%.*} + secs))
    until "$@" >/dev/null 2>&1; do
        ((${EPOCHREALTIME%.*} < deadline)) || return 1
        sleep 0.1
    done
}
