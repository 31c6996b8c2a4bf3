#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (Debian's slurm-wlm + munge, as root), to try profiles/slurm-local and
# to run tests/workflow/test_slurm.py. No cgroups, no accounting daemon (sacct fails: the profiles ask squeue instead).
# Usage: bash scripts/slurm_local.sh install | up [--fake-gpus] | down | status
#   install       apt-get update, then apt-get install slurmctld slurmd slurm-client munge (Debian/Ubuntu)
#   up            write /etc/slurm/slurm.conf, start munged (unless one already answers), slurmctld and slurmd,
#                 wait until `sinfo` shows the node idle (PGPO_SLURM_TIMEOUT seconds, default 60). Idempotent.
#                 The node is this machine: CPUs = nproc, memory = 90% of MemTotal. Partitions: local (default), gpu.
#   --fake-gpus   scheduling only: the node claims 8 H100s (gres files linked to /dev/null), 64 CPUs and ~1 TB,
#                 and a prolog holds every allocated job before its script starts until it is cancelled: jobs
#                 are scheduled with the paper profile's requests and never run. Cancel them with scancel.
#   down          cancel the cluster's jobs, stop exactly the daemons `up` started (their PID files), remove the
#                 configs it wrote.
#   status        exit 0 and print the node line when our cluster is up, exit 1 otherwise.
# Why /etc/slurm/slurm.conf and not a private SLURM_CONF: the executor plugin's job step
# (snakemake-executor-plugin-slurm-jobstep 0.6.1) removes SLURM_CONF from the environment of its inner srun, so
# jobs only find a config at the system path (upstream bug). A config there that this script did not write (no
# header line below) is never touched: `up` refuses. State, logs and PID files: PGPO_SLURM_STATE
# (default /var/tmp/pgpo-slurm-local).
set -euo pipefail
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES=$CONF_DIR/gres.conf
HEADER="# pgpo-slurm-local: written by scripts/slurm_local.sh; 'scripts/slurm_local.sh down' removes it"
STATE=${PGPO_SLURM_STATE:-/var/tmp/pgpo-slurm-local}
TIMEOUT=${PGPO_SLURM_TIMEOUT:-60}
NODE=localhost

die() { echo "slurm_local.sh: $*" >&2; exit 1; }

ours() {  # $1 = a config path: true when absent or written by this script
  [ ! -e "$1" ] || [ "$(head -n 1 "$1")" = "$HEADER" ]
}

alive() {  # $1 = PID file, $2 = process name: true when the PID file names a live process of that name
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}

stop() {  # $1 = PID file, $2 = process name: stop that process (only if the file names one of that name)
  local pid i
  if alive "$1" "$2"; then
    pid=$(cat "$1")  # read once: the daemon removes its own PID file as it shuts down
    kill "$pid"
    for i in $(seq 1 100); do
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || break
      sleep 0.1
    done
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then kill -9 "$pid"; fi
  fi
  rm -f "$1"
}

mode_of() {  # the mode our config was written for (empty when there is none)
  [ -e "$CONF" ] && ours "$CONF" && sed -n 's/^# mode: //p' "$CONF" || true
}

node_line() { sinfo -h -N -o '%N %T %c %m %G' 2>/dev/null | head -n 1 || true; }

write_config() {  # $1 = mode (cpu | fake-gpus)
  local cpus mem node gres_line="" prolog=""
  cpus=$(nproc)
  mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  node="NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  if [ "$1" = fake-gpus ]; then
    # slurmd would drain a node that claims more than it has; config_overrides makes it take the config's word
    node="NodeName=$NODE NodeAddr=127.0.0.1 CPUs=64 RealMemory=1000000 Gres=gpu:h100:8 State=UNKNOWN"
    gres_line=$'GresTypes=gpu\nSlurmdParameters=config_overrides'
    prolog="Prolog=$STATE/hold_prolog.sh"
    mkdir -p "$STATE/dev"
    for i in 0 1 2 3 4 5 6 7; do ln -sfn /dev/null "$STATE/dev/nvidia$i"; done
    cat > "$STATE/hold_prolog.sh" <<EOF
#!/bin/sh
# fake-GPU mode: the job has its allocation (scheduled) but its script must never start on fake GPUs. Hold it
# here until it is cancelled (any state but running/configuring), then return so slurmd can finish the cancel.
while squeue -h -j "\$SLURM_JOB_ID" -o %T 2>/dev/null | grep -q -E '^(RUNNING|CONFIGURING)\$'; do sleep 1; done
exit 0
EOF
    chmod 755 "$STATE/hold_prolog.sh"
    cat > "$GRES" <<EOF
$HEADER
AutoDetect=off
NodeName=$NODE Name=gpu Type=h100 File=$STATE/dev/nvidia[0-7]
EOF
  fi
  cat > "$CONF" <<EOF
$HEADER
# mode: $1
ClusterName=pgpolocal
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# no accounting database: finished jobs stay visible to squeue for 10 minutes (the profiles' status command)
MinJobAge=600
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
$gres_line
$prolog
$node
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi  # one answers already: use it, leave it
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 "$STATE/munge"
  [ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing (run: bash scripts/slurm_local.sh install)"
  runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log"
  for _ in $(seq 1 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "munged did not answer; see $STATE/munge/munged.log"
}

up() {  # $1 = mode
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
    && command -v munged >/dev/null || die "Slurm or munge is not installed (run: bash scripts/slurm_local.sh install)"
  [ "$(id -u)" = 0 ] || die "must run as root (it writes $CONF and starts slurmd as root)"
  ours "$CONF" || die "$CONF exists and was not written by this script: not touching it (a real cluster?)"
  ours "$GRES" || die "$GRES exists and was not written by this script: not touching it (a real cluster?)"
  local running
  running=$(mode_of)
  if alive "$STATE/slurmctld.pid" slurmctld && alive "$STATE/slurmd.pid" slurmd; then
    [ "$running" = "$1" ] || die "already up in mode '$running'; run 'bash scripts/slurm_local.sh down' first"
  else
    stop "$STATE/slurmd.pid" slurmd  # a half-up cluster (one daemon died): start both afresh
    stop "$STATE/slurmctld.pid" slurmctld
    rm -rf "$STATE/ctld" "$STATE/slurmd"
    mkdir -p "$STATE/ctld" "$STATE/slurmd" "$CONF_DIR"
    [ "$1" = fake-gpus ] || rm -f "$GRES"
    write_config "$1"
    start_munge
    slurmctld -i
    slurmd -N "$NODE"
  fi
  local deadline=$((SECONDS + TIMEOUT)) line d
  while :; do
    line=$(node_line)
    for d in slurmctld slurmd; do
      alive "$STATE/$d.pid" "$d" || die "$d exited: $(grep -h -E 'fatal|error' "$STATE/$d.log" | tail -n 1)"
    done
    case "$line" in "$NODE idle "*) echo "up ($1): $line"; return 0 ;; esac
    [ $SECONDS -lt $deadline ] || die "node not idle after ${TIMEOUT}s (sinfo: '${line:-no answer}'); logs in $STATE"
    sleep 0.2
  done
}

down() {
  local ids
  if alive "$STATE/slurmctld.pid" slurmctld; then
    # our cluster's jobs first: a job's slurmstepd outlives slurmd and would keep running without a cluster
    ids=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      for _ in $(seq 1 100); do
        [ -z "$(squeue -h -t running,completing,configuring -o %i 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  stop "$STATE/slurmd.pid" slurmd
  stop "$STATE/slurmctld.pid" slurmctld
  stop "$STATE/munge/munged.pid" munged  # only the munged `up` started has its PID file here
  for f in "$CONF" "$GRES"; do
    if [ -e "$f" ] && ours "$f"; then rm -f "$f"; fi
  done
  echo "down"
}

case "${1:-}" in
  install)
    [ "$(id -u)" = 0 ] || die "install must run as root (apt-get)"
    command -v apt-get >/dev/null || die "apt-get not found: install slurmctld, slurmd, slurm-client and munge yourself"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge
    ;;
  up)
    case "${2:-}" in
      "") up cpu ;;
      --fake-gpus) up fake-gpus ;;
      *) die "unknown option '$2' (usage: up [--fake-gpus])" ;;
    esac
    ;;
  down) down ;;
  status)
    if alive "$STATE/slurmctld.pid" slurmctld && alive "$STATE/slurmd.pid" slurmd; then
      echo "up ($(mode_of)): $(node_line)"
    else
      echo "down"; exit 1
    fi
    ;;
  *) die "usage: bash scripts/slurm_local.sh install | up [--fake-gpus] | down | status" ;;
esac
