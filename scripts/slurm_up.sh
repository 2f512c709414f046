#!/usr/bin/env bash
# Bring up a one-node Slurm on this machine from Debian's packages (slurmctld, slurmd, slurm-client, munge),
# so `bench run --executor slurm` and its test run against a real scheduler.
#
# Idempotent and fast when already up: if `sinfo` answers and the node is idle or allocated, nothing is done.
# Otherwise it installs what is missing (apt-get), writes a munge key and /etc/slurm/slurm.conf for this host
# (one node with this machine's CPUs and memory, one default partition `debug`, accounting off as on many
# small clusters), starts munged, slurmctld and slurmd, and waits until the node takes jobs.
# Needs root. Exit 0 when Slurm answers; when it cannot be brought up (after one restart from a clean state),
# non-zero with the reason and the logs' last lines on stderr.
set -euo pipefail

say() { echo "slurm_up: $*" >&2; }

node_ready() {
  command -v sinfo >/dev/null 2>&1 || return 1
  local state
  state=$(timeout 10 sinfo -h -N -o '%t' 2>/dev/null | head -n1) || return 1
  [[ "$state" =~ ^(idle|mix|alloc|comp)$ ]]
}

if node_ready; then
  say "already up ($(sinfo -h -N -o '%N %c CPUs %t' | head -n1))"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  say "not root: cannot install or start Slurm here; run this script as root"
  exit 1
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
  || ! command -v sbatch >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  say "installing slurmctld slurmd slurm-client munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
# RealMemory a little under the machine's, so slurmd never reports less than the configuration claims.
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

# munge: a key readable by munge only, and the daemon running as munge.
install -d -o munge -g munge -m 700 /etc/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge /var/lib/munge /var/log/munge
if ! pgrep -u munge -x munged >/dev/null 2>&1; then
  # --force: a socket lock left by a munged that was killed (not stopped) must not keep the new one out
  su -s /bin/sh munge -c '/usr/sbin/munged --force' || { say "munged would not start; see /var/log/munge/munged.log"; exit 1; }
fi

install -d /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
conf=/etc/slurm/slurm.conf
new=$(mktemp)
cat >"$new" <<EOF
# One-node cluster written by scripts/slurm_up.sh (nerv-bench).
ClusterName=nervbench
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$new" "$conf"; then
  mv "$new" "$conf"
  chmod 644 "$conf"
  restart=1
else
  rm -f "$new"
  restart=0
fi

# A daemon is known by its name, never by its pid file alone: after a restart of the machine the pid in a
# left-over file can belong to an unrelated process, and trusting it would leave the daemon unstarted.
running() { pgrep -x "$1" >/dev/null 2>&1; }
stop() {
  pkill -x "$1" 2>/dev/null || true
  for _ in $(seq 50); do running "$1" || return 0; sleep 0.1; done
  pkill -9 -x "$1" 2>/dev/null || true
  for _ in $(seq 50); do running "$1" || return 0; sleep 0.1; done
}
start_daemons() {  # $@: extra slurmctld options
  running slurmctld || /usr/sbin/slurmctld "$@"
  running slurmd || /usr/sbin/slurmd
}
wait_ready() {  # $1: seconds
  local deadline=$(( $(date +%s) + $1 ))
  while (( $(date +%s) < deadline )); do
    if node_ready; then
      say "up: $(sinfo -h -N -o '%N %c CPUs %m MB %t' | head -n1)"
      return 0
    fi
    # a node left down or drained by an earlier run comes back once it is resumed
    timeout 10 scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    sleep 1
  done
  return 1
}

if [[ $restart -eq 1 ]]; then
  stop slurmd
  stop slurmctld
fi
start_daemons
wait_ready 60 && exit 0

# Second try from a clean slate: both daemons stopped, slurmctld started without its saved state (-c), so
# jobs and node states an earlier run left behind cannot keep the node out.
say "not ready after 60 s (node state: $(timeout 10 sinfo -h -N -o '%t %E' 2>/dev/null | head -n1 || echo 'no answer')); restarting both daemons from a clean state"
stop slurmd
stop slurmctld
rm -f /run/slurmctld.pid /run/slurmd.pid
start_daemons -c
wait_ready 60 && exit 0

say "Slurm did not come up within 120 s (node state: $(timeout 10 sinfo -h -N -o '%t %E' 2>/dev/null | head -n1 || echo 'no answer')); the logs' last lines follow"
for log in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; do
  [[ -f $log ]] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }
done
exit 1
