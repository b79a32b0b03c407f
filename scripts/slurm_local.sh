#!/usr/bin/env bash
# Start, stop or check a one-node Slurm cluster on this machine, for the tests (submitit's Slurm executor).
#   scripts/slurm_local.sh start|stop|status        (as root, on Debian/Ubuntu, no systemd needed)
# start: installs slurmctld, slurmd (slurm-wlm), slurm-client, munge, slurmdbd and mariadb-server where missing,
#   writes /etc/slurm/slurm.conf and slurmdbd.conf (any earlier ones not written here are kept as *.before-lenet_exp),
#   then starts munged, MariaDB, slurmdbd, slurmctld and slurmd by hand, each unless already running,
#   and waits until `sinfo` shows the node ready and `sacct` answers. Partition `debug`, one node, all CPUs.
# stop: stops what `start` started (pid files in the state folder), in reverse order. Running jobs are not cancelled.
# status: exit 0 if `sinfo` and `sacct` answer, 1 otherwise.
# State, logs and pid files live in $SLURM_LOCAL_DIR (default /tmp/lenet_exp_slurm); MariaDB listens on
# 127.0.0.1:$SLURM_LOCAL_DB_PORT (default 3307) only.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/lenet_exp_slurm}
DB_PORT=${SLURM_LOCAL_DB_PORT:-3307}
CLUSTER=lenet_exp
PARTITION=debug
NODE=$(hostname -s)
ETC=/etc/slurm
MARK="# Written by lenet_exp scripts/slurm_local.sh"
LOG=$DIR/log
MDB=$DIR/mariadb # owned by mysql: data/, socket, pid file and log
export PATH=$PATH:/usr/sbin:/sbin

die() { echo "slurm_local: $*" >&2; exit 1; }

# running NAME PIDFILE: true if the pid file names a live process called NAME
running() {
  local pid
  pid=$(cat "$2" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

# wait_for SECONDS NAME PIDFILE COMMAND...: retry COMMAND every half second until it succeeds;
# give up after SECONDS, or sooner if daemon NAME is not running 5 s on (it died at startup)
wait_for() {
  local end=$((SECONDS + $1)) grace=$((SECONDS + 5)) name=$2 pidfile=$3
  shift 3
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    [ "$SECONDS" -lt "$grace" ] || running "$name" "$pidfile" || return 1
    sleep 0.5
  done
}

install_packages() {
  local missing=() cmd
  for cmd in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge slurmdbd:slurmdbd \
    mariadbd:mariadb-server; do
    command -v "${cmd%%:*}" >/dev/null || missing+=("${cmd#*:}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "slurm_local: installing ${missing[*]} ..."
  # Keep apt from starting the services itself (we start them by hand below).
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$LOG/apt.log" 2>&1 || rc=$?
  [ -z "$made_policy" ] || rm -f $policy
  [ $rc = 0 ] || die "apt-get install failed; read $LOG/apt.log"
}

# write_etc NAME MODE: move $DIR/NAME.new to /etc/slurm/NAME, keeping a foreign original once
write_etc() {
  local target=$ETC/$1
  mkdir -p $ETC
  if [ -e "$target" ] && ! grep -qF "$MARK" "$target" && [ ! -e "$target.before-lenet_exp" ]; then
    cp -p "$target" "$target.before-lenet_exp"
  fi
  chmod "$2" "$DIR/$1.new"
  mv -f "$DIR/$1.new" "$target"
}

write_configs() {
  # Node line from slurmd -C (CPUs, sockets, cores, threads, RealMemory); nproc/free if that fails.
  local hw cpus mem
  hw=$(slurmd -C 2>/dev/null | head -n1 | grep -o 'CPUs=.*' | sed 's/Boards=[0-9]* //') || true
  if [ -z "$hw" ]; then
    hw="CPUs=$(nproc) RealMemory=$(free -m | awk '/^Mem:/{print $2}')"
  fi
  cpus=$(grep -o 'CPUs=[0-9]*' <<<"$hw" | cut -d= -f2)
  mem=$(grep -o 'RealMemory=[0-9]*' <<<"$hw" | cut -d= -f2)
  cat >"$DIR/slurm.conf.new" <<EOF
$MARK (state in $DIR); rewritten by each start.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Step credentials live 10 s (default 120): a requeued job may start again after that long, not 2 minutes.
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/slurmctld
SlurmdSpoolDir=$DIR/slurmd
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups: plain process tracking, no task binding, no usage sampling.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# Cores and memory are consumable, so jobs share the node; a job without --mem gets its CPUs' share of memory.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
SchedulerType=sched/backfill
# Look at pending jobs every second (default 60/30), so a queued or requeued job starts as soon as CPUs free up.
SchedulerParameters=sched_interval=1,bf_interval=1
ReturnToService=2
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
NodeName=$NODE NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/slurmdbd.conf.new" <<EOF
$MARK (state in $DIR); rewritten by each start.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$DIR/db.pass")
StorageLoc=slurm_acct_db
EOF
  write_etc slurm.conf 644
  write_etc slurmdbd.conf 600 # slurmdbd insists: owned by SlurmUser (root), mode 600
}

munge_answers() { { munge -n </dev/null | unmunge; } >/dev/null 2>&1; }

start_munged() {
  running munged "$DIR/munge/munged.pid" && return 0
  if munge_answers; then echo "slurm_local: using the munged already running"; return 0; fi
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 "$DIR/munge"
  runuser -u munge -- munged --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    >>"$LOG/munged.out" 2>&1 || die "munged did not start; read $DIR/munge/munged.log and $LOG/munged.out"
  wait_for 20 munged "$DIR/munge/munged.pid" munge_answers ||
    die "munged does not answer; read $DIR/munge/munged.log"
}

db_sql() { mariadb --no-defaults --socket="$MDB/mariadb.sock" -u root "$@"; }

start_mariadb() {
  [ -s "$DIR/db.pass" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/db.pass")
  if ! running mariadbd "$MDB/mariadb.pid"; then
    install -d -o mysql -g mysql -m 750 "$MDB"
    if [ ! -d "$MDB/data/mysql" ]; then
      mariadb-install-db --no-defaults --user=mysql --datadir="$MDB/data" --skip-test-db \
        --auth-root-authentication-method=socket >"$LOG/mariadb-install-db.log" 2>&1 ||
        die "mariadb-install-db failed; read $LOG/mariadb-install-db.log"
    fi
    setsid mariadbd --no-defaults --user=mysql --datadir="$MDB/data" --socket="$MDB/mariadb.sock" \
      --pid-file="$MDB/mariadb.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
      --innodb-lock-wait-timeout=900 --log-error="$MDB/mariadb.log" \
      </dev/null >>"$LOG/mariadb.out" 2>&1 &
  fi
  wait_for 60 mariadbd "$MDB/mariadb.pid" db_sql -e 'SELECT 1' || die "MariaDB did not start; read $MDB/mariadb.log"
  local pw
  pw=$(cat "$DIR/db.pass")
  db_sql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
    ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
    die "could not create the slurmdbd database user; read $MDB/mariadb.log"
}

dbd_answers() { timeout 10 sacctmgr -n -P list cluster format=cluster; }

start_slurmdbd() {
  running slurmdbd "$DIR/slurmdbd.pid" || slurmdbd >>"$LOG/slurmdbd.out" 2>&1 ||
    die "slurmdbd did not start; read $LOG/slurmdbd.log"
  wait_for 90 slurmdbd "$DIR/slurmdbd.pid" dbd_answers ||
    die "slurmdbd does not answer; read $LOG/slurmdbd.log"
  dbd_answers | grep -qx "$CLUSTER" || timeout 30 sacctmgr -i add cluster "$CLUSTER" >>"$LOG/slurmdbd.out" 2>&1 ||
    die "sacctmgr could not add cluster $CLUSTER; read $LOG/slurmdbd.log"
}

start_slurmctld() {
  running slurmctld "$DIR/slurmctld.pid" || slurmctld >>"$LOG/slurmctld.out" 2>&1 ||
    die "slurmctld did not start; read $LOG/slurmctld.log"
  wait_for 60 slurmctld "$DIR/slurmctld.pid" bash -c 'timeout 5 scontrol ping | grep -q UP' ||
    die "slurmctld does not answer; read $LOG/slurmctld.log"
}

node_ready() { timeout 5 sinfo -h -n "$NODE" -o %T | grep -Eqx 'idle|mixed|allocated|completing'; }

start_slurmd() {
  running slurmd "$DIR/slurmd.pid" || slurmd >>"$LOG/slurmd.out" 2>&1 ||
    die "slurmd did not start; read $LOG/slurmd.log"
  wait_for 60 slurmd "$DIR/slurmd.pid" node_ready ||
    die "node $NODE is $(sinfo -h -n "$NODE" -o '%T %E' 2>/dev/null), not idle; read $LOG/slurmd.log"
}

all_running() {
  { running munged "$DIR/munge/munged.pid" || munge_answers; } && running mariadbd "$MDB/mariadb.pid" &&
    running slurmdbd "$DIR/slurmdbd.pid" && running slurmctld "$DIR/slurmctld.pid" && running slurmd "$DIR/slurmd.pid"
}

answers() { timeout 10 sinfo -h >/dev/null 2>&1 && timeout 10 sacct -n -X >/dev/null 2>&1; }

summary() {
  local cpus
  cpus=$(sinfo -h -p $PARTITION -o %C | cut -d/ -f4)
  echo "Slurm up: partition $PARTITION, 1 node, $cpus CPUs (config in $ETC, state in $DIR)"
}

start() {
  [ "$(id -u)" = 0 ] || die "run as root (installs packages, writes $ETC, starts daemons)"
  mkdir -p "$DIR" "$LOG"
  if all_running && answers; then summary; return 0; fi
  install_packages
  start_mariadb # before the configs: slurmdbd.conf holds its password
  write_configs
  start_munged
  start_slurmdbd
  start_slurmctld
  start_slurmd
  wait_for 30 slurmctld "$DIR/slurmctld.pid" answers ||
    die "sinfo/sacct do not answer; read $LOG/slurmctld.log and $LOG/slurmdbd.log"
  summary
}

# stop_one NAME PIDFILE: TERM the process, wait up to 30 s for it to exit, then KILL
stop_one() {
  running "$1" "$2" || { rm -f "$2"; return 0; }
  local pid
  pid=$(cat "$2")
  kill -TERM "$pid"
  for _ in $(seq 60); do [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || break; sleep 0.5; done
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then kill -KILL "$pid"; sleep 0.5; fi
  rm -f "$2"
  echo "slurm_local: stopped $1 ($pid)"
}

stop() {
  stop_one slurmd "$DIR/slurmd.pid"
  stop_one slurmctld "$DIR/slurmctld.pid"
  stop_one slurmdbd "$DIR/slurmdbd.pid"
  stop_one mariadbd "$MDB/mariadb.pid"
  stop_one munged "$DIR/munge/munged.pid"
  if pgrep -x slurmstepd >/dev/null; then
    echo "slurm_local: job steps still run (slurmstepd); the next start picks them up again"
  fi
}

status() {
  if answers; then
    echo "Slurm answers: $(sinfo -h -o '%P %D node(s) %T' | head -n1), sacct ok"
  else
    echo "Slurm does not answer (sinfo/sacct)"
    return 1
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status   (state in \$SLURM_LOCAL_DIR, default /tmp/lenet_exp_slurm)" >&2; exit 2 ;;
esac
