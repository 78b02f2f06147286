#!/usr/bin/env bash
# Local single-node Slurm cluster for development and the tests in tests/cluster.
#
#   bash tools/cluster/local_slurm.sh start    # install if needed, configure, start, wait for "idle"
#   bash tools/cluster/local_slurm.sh stop     # stop the daemons this script started
#   bash tools/cluster/local_slurm.sh status   # sinfo, or "not running" (exit 1)
#
# Exit codes: 0 ok; 1 failure (daemon did not come up; logs are printed); 2 usage;
# 3 Slurm/munge cannot be installed or started here (not root, apt failed): callers may skip.
#
# Environment:
#   VISTRA_SLURM_DIR      state dir: spool, state save, pid files, logs (default /tmp/vistra-slurm)
#   SLURM_CONF            where slurm.conf is written (default /etc/slurm/slurm.conf, which the
#                         Debian binaries read without SLURM_CONF, so plain srun/sbatch just work)
#   VISTRA_SLURM_CPUS     CPUs to declare for the node (default: nproc --all). More than the machine has
#                         is allowed (SlurmdParameters=config_overrides), e.g. to run -n 4 on 2 cores.
#   VISTRA_SLURM_CRED_EXPIRE  AuthInfo=cred_expire seconds, which is also how long a requeued job
#                         waits before it may start again (default 10; Slurm's own default is 120)
#   VISTRA_SLURMCTLD_PORT, VISTRA_SLURMD_PORT   ports (default: first free from 6817 / 6818)
#
# Runs as root: the daemons run as root (SlurmUser=root); munged runs as user munge.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
STATE_DIR=${VISTRA_SLURM_DIR:-/tmp/vistra-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARKER="# Written by tools/cluster/local_slurm.sh (vistra local cluster)"
PARTITION=dev
WAIT_S=60

log() { echo "local_slurm: $*" >&2; }
skip() {
    log "cannot provide a Slurm cluster here: $*"
    exit 3
}

# True when the pid in file $1 is alive and its command name is $2.
pid_alive() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(<"/proc/$pid/comm") == "$name" ]]
}

# True when something listens on TCP port $1 (IPv4 or IPv6), read from /proc so no ss/netstat is needed.
port_in_use() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="$hex" 'NR > 1 && $4 == "0A" { split($2, a, ":"); if (a[2] == p) found = 1 }
        END { exit found ? 0 : 1 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

free_port_from() {
    local p=$1 other=${2:-0}
    while port_in_use "$p" || [[ $p == "$other" ]]; do
        p=$((p + 1))
        ((p < 65000)) || return 1
    done
    echo "$p"
}

# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------
apt_install() {
    # Keep package scripts from starting services (there is no init system to start them with, and
    # we start the daemons ourselves). Docker-style images already ship a policy-rc.d; add one only
    # for the duration of the install when there is none.
    local added_policy=0 rc=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
    DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >"$STATE_DIR/apt.log" 2>&1 || {
        log "apt-get install failed; running apt-get update and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$STATE_DIR/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >>"$STATE_DIR/apt.log" 2>&1 ||
            rc=$?
    }
    ((added_policy)) && rm -f /usr/sbin/policy-rc.d
    if ((rc != 0)); then
        tail -n 15 "$STATE_DIR/apt.log" >&2
        skip "apt-get install $* failed (exit $rc); full log in $STATE_DIR/apt.log"
    fi
}

ensure_installed() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sinfo >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || skip "missing ${missing[*]} and there is no apt-get"
    log "installing slurm-wlm and munge (missing: ${missing[*]}) ..."
    local t0=$SECONDS
    apt_install slurm-wlm munge
    log "installed in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------------------------
# munge
# ---------------------------------------------------------------------------------------------
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    local key=/etc/munge/munge.key
    if [[ ! -s $key ]]; then
        log "creating munge key $key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$key" --force
        else
            dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
        fi
    fi
    # munged refuses keys and dirs that others can read or write.
    chown munge:munge "$key" /etc/munge
    chmod 0400 "$key"
    chmod 0700 /etc/munge
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    chmod 0700 /var/lib/munge /var/log/munge

    if munge_works; then
        return 0
    fi
    # A crashed munged leaves its socket and pid file behind; --force starts over them.
    runuser -u munge -- munged --force 9>&- || skip "munged failed to start (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$STATE_DIR/munged.pid" 2>/dev/null || true
    for _ in $(seq 50); do
        munge_works && return 0
        sleep 0.1
    done
    skip "munged started but munge -n | unmunge fails (see /var/log/munge/munged.log)"
}

# ---------------------------------------------------------------------------------------------
# slurm.conf
# ---------------------------------------------------------------------------------------------
# Echo the number KEY=<n> in the slurm.conf this script wrote before (so restarts keep their ports).
old_conf_value() {
    [[ -f $CONF ]] && grep -qF "$MARKER" "$CONF" || return 0
    sed -n "s/^$1=\([0-9]*\)$/\1/p" "$CONF" | head -n1
}

# Write slurm.conf; sets CONF_CHANGED=1 when its content differs from what was there.
CONF_CHANGED=0
write_conf() {
    local host addr cpus mem_total mem margin ctld_port d_port cred_expire
    cred_expire=${VISTRA_SLURM_CRED_EXPIRE:-10}
    host=$(hostname -s)
    # NodeAddr/SlurmctldHost address: what the name resolves to; loopback when it does not resolve
    # (Slurm would otherwise fail to look the node up).
    addr=$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }')
    [[ -n $addr ]] || addr=127.0.0.1
    # not plain nproc: it honours OMP_NUM_THREADS, which test runs set to 1
    cpus=${VISTRA_SLURM_CPUS:-$(nproc --all)}
    mem_total=$(free -m | awk '/^Mem:/ { print $2 }')
    # slurmd drains a node whose real memory is below RealMemory; leave 5% (>= 256 MiB) spare.
    margin=$((mem_total / 20))
    ((margin >= 256)) || margin=256
    mem=$((mem_total - margin))
    ((mem >= 1)) || mem=1

    ctld_port=${VISTRA_SLURMCTLD_PORT:-$(old_conf_value SlurmctldPort)}
    d_port=${VISTRA_SLURMD_PORT:-$(old_conf_value SlurmdPort)}
    # Ports of our own running daemons are busy by design; re-pick only when nothing of ours runs.
    if [[ -z $ctld_port ]] || { ! pid_alive "$STATE_DIR/slurmctld.pid" slurmctld && port_in_use "$ctld_port"; }; then
        ctld_port=$(free_port_from 6817)
    fi
    if [[ -z $d_port || $d_port == "$ctld_port" ]] ||
        { ! pid_alive "$STATE_DIR/slurmd.pid" slurmd && port_in_use "$d_port"; }; then
        d_port=$(free_port_from 6818 "$ctld_port")
    fi
    [[ -n $ctld_port && -n $d_port ]] || {
        log "no free TCP port for slurmctld/slurmd"
        exit 1
    }

    mkdir -p "$(dirname "$CONF")" "$STATE_DIR/ctld" "$STATE_DIR/spool"
    if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF" && [[ ! -f $CONF.vistra-backup ]]; then
        log "backing up existing $CONF to $CONF.vistra-backup"
        cp -p "$CONF" "$CONF.vistra-backup"
    fi
    cat >"$CONF.tmp.$$" <<EOF
$MARKER
# Single node, no cgroups, no accounting database. Regenerated by each 'start'.
ClusterName=vistra-local
SlurmctldHost=$host($addr)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also delays a requeued job's restart (Slurm default 120 s; minimum 5).
AuthInfo=cred_expire=$cred_expire
CredType=cred/munge
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
# Look at pending jobs often, so a requeued job starts within ~1 s of becoming eligible.
SchedulerParameters=bf_interval=1,sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
JobRequeue=1
ReturnToService=2
# Seconds between SIGTERM and SIGKILL at a time limit or scancel (Slurm's default).
KillWait=30
# Keep finished jobs visible to squeue/scontrol for 5 minutes (there is no accounting database).
MinJobAge=300
InactiveLimit=0
MailProg=/bin/true
NodeName=$host NodeAddr=$addr CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    if [[ -f $CONF ]] && cmp -s "$CONF" "$CONF.tmp.$$"; then
        rm -f "$CONF.tmp.$$"
    else
        mv "$CONF.tmp.$$" "$CONF"
        CONF_CHANGED=1
    fi
    cp "$CONF" "$STATE_DIR/slurm.conf"
}

# ---------------------------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------------------------
stop_pidfile() {
    local file=$1 name=$2 pid
    pid_alive "$file" "$name" || {
        rm -f "$file"
        return 0
    }
    pid=$(<"$file")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        log "$name did not exit in 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

# The node's short state (idle, mix, alloc, down, drain, idle* ...), or nothing while slurmctld is
# not answering yet.
node_state() { timeout 10 sinfo -h -p "$PARTITION" -o %t 2>/dev/null | head -n1 || true; }

# True once the slurmd started at epoch $2 or later has registered node $1 with slurmctld (a
# restarted slurmctld reports the saved node state before slurmd has spoken to it).
slurmd_registered() {
    local t
    t=$(timeout 10 scontrol show node "$1" 2>/dev/null | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')
    [[ -n $t && $t != None ]] || return 1
    t=$(date -d "$t" +%s 2>/dev/null) || return 1
    ((t >= $2 - 1))
}

show_logs() {
    local f
    for f in slurmctld.log slurmd.log; do
        [[ -f $STATE_DIR/$f ]] || continue
        log "--- last lines of $STATE_DIR/$f"
        tail -n 20 "$STATE_DIR/$f" >&2
    done
}

cmd_start() {
    [[ $EUID -eq 0 ]] || skip "start must run as root (it installs packages and starts daemons)"
    mkdir -p "$STATE_DIR"
    # Serialise concurrent starts (e.g. several pytest workers).
    exec 9>"$STATE_DIR/.lock"
    flock -w 120 9 || {
        log "another start holds $STATE_DIR/.lock"
        exit 1
    }
    local t0=$SECONDS host
    host=$(hostname -s)
    ensure_installed
    start_munge

    write_conf
    if ((CONF_CHANGED)); then
        if pid_alive "$STATE_DIR/slurmctld.pid" slurmctld || pid_alive "$STATE_DIR/slurmd.pid" slurmd; then
            log "slurm.conf changed; restarting the daemons"
            stop_pidfile "$STATE_DIR/slurmd.pid" slurmd
            stop_pidfile "$STATE_DIR/slurmctld.pid" slurmctld
        fi
    fi

    if pid_alive "$STATE_DIR/slurmctld.pid" slurmctld; then
        log "slurmctld already running (pid $(<"$STATE_DIR/slurmctld.pid"))"
    else
        slurmctld 9>&- || {
            show_logs
            log "slurmctld failed to start"
            exit 1
        }
    fi
    local slurmd_t0=0
    if pid_alive "$STATE_DIR/slurmd.pid" slurmd; then
        log "slurmd already running (pid $(<"$STATE_DIR/slurmd.pid"))"
    else
        slurmd_t0=$(date +%s)
        # -N: the node name in slurm.conf, whatever the resolver says the host is called.
        slurmd -N "$host" 9>&- || {
            show_logs
            log "slurmd failed to start"
            exit 1
        }
    fi

    local state="" deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        state=$(node_state)
        if ((slurmd_t0)) && ! slurmd_registered "$host" "$slurmd_t0"; then
            state="${state:-?} (slurmd not registered yet)"
        fi
        case $state in
        idle | mix | alloc | comp) break ;;
        down | drain | drng | fail | failg)
            log "node $host is $state; resuming it"
            scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
            ;;
        esac
        sleep 0.5
    done
    case $state in
    idle | mix | alloc | comp) ;;
    *)
        show_logs
        scontrol show node "$host" 2>/dev/null >&2 || true
        log "node $host did not become idle within $WAIT_S s (state: '${state:-no answer}')"
        exit 1
        ;;
    esac
    log "ready in $((SECONDS - t0)) s; config $CONF, state and logs in $STATE_DIR"
    sinfo
}

cmd_stop() {
    stop_pidfile "$STATE_DIR/slurmd.pid" slurmd
    stop_pidfile "$STATE_DIR/slurmctld.pid" slurmctld
    # Only the munged this script started (a system one stays).
    if [[ -s $STATE_DIR/munged.pid ]]; then
        stop_pidfile "$STATE_DIR/munged.pid" munged
    fi
    log "stopped (packages stay installed; job state stays in $STATE_DIR)"
}

cmd_status() {
    if ! pid_alive "$STATE_DIR/slurmctld.pid" slurmctld || ! command -v sinfo >/dev/null; then
        echo "not running"
        return 1
    fi
    timeout 15 sinfo 2>/dev/null || {
        echo "not running"
        return 1
    }
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
