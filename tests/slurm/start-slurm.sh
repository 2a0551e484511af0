#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine for the Slurm tests
# (tests/slurm.rs): munged, slurmdbd (+ MariaDB), slurmctld and slurmd, all on
# `hostname -s`, one partition `debug`. Root only; installs nothing (.ci/run
# installs slurmctld slurmd slurm-client munge slurmdbd mariadb-server).
# Idempotent: a cluster that already answers with the node idle is left as it
# is; daemons already running are not started twice.
#
#   bash tests/slurm/start-slurm.sh      # then: sinfo, sbatch, sacct ...
#
# Why slurmdbd and MariaDB: `llem study status` reads Slurm's own view of the
# array with `sacct -j <job>`, as on a real cluster. With
# AccountingStorageType=accounting_storage/none (Slurm 22.05, Debian 12),
# `sacct -j` only answers "Slurm accounting storage is disabled"; the
# accounting_storage/filetxt plugin no longer exists, and
# JobCompType=jobcomp/filetxt is only read by `sacct --completion`, which knows
# finished jobs only (no PENDING/RUNNING) and is gone in later Slurm releases.
# So the smallest setup under which plain `sacct -j <job>` works is slurmdbd
# with a local MariaDB (socket auth as root, no password).
#
# GPUs: this configuration declares none. On a node with GPUs, add
# `GresTypes=gpu` and `Gres=gpu:<n>` to the NodeName line plus a gres.conf
# (`AutoDetect=nvml` or `Name=gpu File=/dev/nvidia[0-<n-1>]`); jobs then ask
# for them with `#SBATCH --gres=gpu:1` (llem's --slurm-gres gpu:1).
#
# Root jobs: Slurm runs jobs submitted by root unless DisableRootJobs=YES
# (default NO), so the tests, which run as root in CI, submit as root.
set -euo pipefail

timeout_s=${LLEM_SLURM_START_TIMEOUT:-60}
[ "$(id -u)" -eq 0 ] || { echo "start-slurm.sh: run as root" >&2; exit 1; }
for exe in munged slurmctld slurmd slurmdbd sinfo sacct mariadbd; do
    command -v "$exe" >/dev/null 2>&1 || [ -x "/usr/sbin/$exe" ] || {
        echo "start-slurm.sh: $exe not found; install slurmctld slurmd slurm-client munge slurmdbd mariadb-server (see .ci/run)" >&2
        exit 1
    }
done
export PATH="$PATH:/usr/sbin"

start=$(date +%s.%N)
host=$(hostname -s)
logdir=/var/log/slurm
conf=/etc/slurm/slurm.conf

node_state() { sinfo --noheader --nodes="$host" -o '%T' 2>/dev/null | head -n1 || true; }
# A live process of that name (a zombie left to a parent that does not reap,
# e.g. a container's PID 1, does not count).
running() {
    local pid
    for pid in $(pgrep -x "$1"); do
        case "$(ps -o stat= -p "$pid" 2>/dev/null)" in Z*|'') ;; *) return 0 ;; esac
    done
    return 1
}
# Stop a daemon and wait until it is gone.
stop() {
    local pid
    running "$1" || return 0
    for pid in $(pgrep -x "$1"); do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 100); do running "$1" || return 0; sleep 0.1; done
    for pid in $(pgrep -x "$1"); do kill -9 "$pid" 2>/dev/null || true; done
}
elapsed() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# Already up: nothing to do.
if [ -f "$conf" ] && running slurmctld && running slurmdbd && [ "$(node_state)" = idle ] && sacct -n -X -j 1 >/dev/null 2>&1; then
    echo "slurm: already up, node $host idle ($(elapsed) s)"
    exit 0
fi

mkdir -p "$logdir" /var/lib/slurm/slurmctld /var/spool/slurmd /run/slurm /run/munge /var/log/munge /var/lib/munge
chown slurm:slurm "$logdir" /var/lib/slurm/slurmctld /run/slurm
chown munge:munge /run/munge /var/log/munge /var/lib/munge

# --- munge -------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
if ! running munged; then
    runuser -u munge -- /usr/sbin/munged
fi

# --- slurm.conf ----------------------------------------------------------------
cpus=$(nproc)
# RealMemory as slurmd measures it, a little under MemTotal; a NodeName
# claiming more than slurmd finds would drain the node.
mem_mb=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mem_mb=${mem_mb:-$(( $(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024 - 256 ))}

new_conf=$(cat <<CONF
# Written by llem's tests/slurm/start-slurm.sh: a single-node test cluster.
ClusterName=llem
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$logdir/slurmctld.log
SlurmdLogFile=$logdir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$host
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MaxArraySize=10001
# Fast turnaround for tests: no minimum job age before purge is needed, but
# a short one keeps squeue small.
MinJobAge=30
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)

dbd_conf=/etc/slurm/slurmdbd.conf
new_dbd_conf=$(cat <<CONF
# Written by llem's tests/slurm/start-slurm.sh.
AuthType=auth/munge
DbdHost=$host
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=$logdir/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
CONF
)

changed=0
if [ "$(cat "$conf" 2>/dev/null)" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" > "$conf"
    changed=1
fi
if [ "$(cat "$dbd_conf" 2>/dev/null)" != "$new_dbd_conf" ]; then
    printf '%s\n' "$new_dbd_conf" > "$dbd_conf"
    changed=1
fi
chown slurm:slurm "$dbd_conf"
chmod 0600 "$dbd_conf"
chmod 0644 "$conf"

# --- MariaDB and slurmdbd ------------------------------------------------------
if ! running mariadbd; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$logdir/mariadb-install.log" 2>&1
    (mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
        --skip-networking=0 --bind-address=127.0.0.1 >"$logdir/mariadb.log" 2>&1 &)
fi
for _ in $(seq 1 "$((timeout_s * 5))"); do
    mariadb -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
done
# slurmdbd connects as `slurm` over the socket; unix_socket auth maps the
# slurm system user to it, no password anywhere.
mariadb <<'SQL'
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

[ "$changed" = 0 ] || stop slurmdbd
running slurmdbd || slurmdbd
for _ in $(seq 1 "$((timeout_s * 5))"); do
    sacctmgr -n -i list cluster >/dev/null 2>&1 && break
    sleep 0.2
done
sacctmgr -n -P list cluster format=Cluster 2>/dev/null | grep -qx llem || sacctmgr -i add cluster llem >/dev/null

# --- slurmctld and slurmd ------------------------------------------------------
if [ "$changed" = 1 ]; then
    stop slurmctld
    stop slurmd
fi
running slurmctld || slurmctld
running slurmd || slurmd

fail() {
    echo "start-slurm.sh: $*" >&2
    for f in "$logdir"/slurmctld.log "$logdir"/slurmd.log "$logdir"/slurmdbd.log "$logdir"/mariadb.log; do
        [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
    done
    sinfo -N -l >&2 2>&1 || true
    exit 1
}

deadline=$(( $(date +%s) + timeout_s ))
while :; do
    state=$(node_state)
    case "$state" in
        idle) break ;;
        down*|drain*|fail*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "node $host not idle after ${timeout_s} s (state: ${state:-no answer})"
    sleep 0.2
done
until sacct -n -X -j 1 >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "sacct does not answer after ${timeout_s} s"
    sleep 0.2
done
echo "slurm: node $host idle, accounting up ($(elapsed) s)"
