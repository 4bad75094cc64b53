#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm executor's tests.
#   .ci/slurm.sh up DIR     installs Debian's slurm and munge if missing, starts munged, slurmctld and slurmd with
#                           state, spool and logs under DIR; prints the `export SLURM_CONF=… PIPELINE_TEST_UNSHARED_DIR=…`
#                           the tests need
#   .ci/slurm.sh down DIR   stops what `up` started
# Runs as root (jobs run as root). ProctrackType=proctrack/linuxproc and TaskPlugin=task/none need no cgroups.
set -euo pipefail
cmd=${1:?up or down}
dir=$(realpath -m "${2:?a state directory}")

stop_pid() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null || true; }

if [ "$cmd" = down ]; then
    if [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ]; then
        SLURM_CONF=$dir/slurm.conf timeout 10 scancel --user=root 2>/dev/null || true
    fi
    stop_pid "$dir/slurmd.pid"
    stop_pid "$dir/slurmctld.pid"
    stop_pid "$dir/munged.pid"
    exit 0
fi

if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >&2
fi
mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
chmod 700 "$dir/munge"

# munge: a key of our own, a socket in DIR.
[ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
socket=$dir/munge/munge.socket
munged --force --key-file="$dir/munge/munge.key" --socket="$socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" >&2

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=pipeline
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
# Jobs here are small: let four share a core, so the tests' jobs do not queue behind each other.
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

# slurmd (and so every job) runs in a mount namespace of its own where DIR/unshared is an empty tmpfs: to the jobs
# it is a different directory than to this machine, as a node-local disk is on a real cluster. The tests put a
# cache there to see the executor refuse a cache the nodes cannot reach.
mkdir -p "$dir/unshared"
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF" >&2
unshare --mount --propagation private \
    sh -c "mount -t tmpfs -o size=1m pipeline-unshared '$dir/unshared' && exec slurmd -f '$SLURM_CONF'" >&2
for _ in $(seq 1 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        echo "export SLURM_CONF=$SLURM_CONF PIPELINE_TEST_UNSHARED_DIR=$dir/unshared"
        exit 0
    fi
    sleep 0.5
done
echo "error: the one-node Slurm cluster did not come up; see $dir/log/" >&2
sinfo >&2 || true
exit 1
