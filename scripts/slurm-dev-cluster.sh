#!/usr/bin/env bash
# slurm-dev-cluster.sh - a real single-node Slurm test cluster WITH accounting
# (munged + MariaDB + slurmdbd + slurmctld + slurmd) for dirwatcher's
# integration tests, on Debian 12 as root, without systemd.
#
# Run with --help for usage. Design notes are at the end of usage().
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: slurm-dev-cluster.sh COMMAND [OPTIONS]

Run a single-node Slurm cluster with accounting for dirwatcher's tests.
Debian 12 only, run as root, no systemd needed.

Commands:
  up              Install any missing packages (slurm-wlm slurmdbd
                  mariadb-server munge) and start munged, MariaDB, slurmdbd,
                  slurmctld and slurmd. Register cluster, account and users.
                  Idempotent: a second run starts only what is not running.
                  It also restarts slurmctld/slurmd or slurmdbd if their
                  config changed. Exits 0 only when the node is usable (idle,
                  or mixed/allocated if jobs run) and slurmctld knows every
                  user's association.
  down [--purge]  Cancel queued and running jobs, then stop only the daemons
                  whose PIDs this script recorded (reverse start order).
                  --purge also deletes the state directory (accounting DB,
                  job state, logs) and the /etc/slurm/slurm.conf symlink.
  status          Print each daemon as running/stopped and the node state.
                  Exit 0 iff all 5 daemons run and sinfo shows the node
                  usable, else 1.
  stop DAEMON     Stop one daemon (munged, mariadbd, slurmdbd, slurmctld or
                  slurmd) without cancelling jobs: for outage tests. `up`
                  starts it again.
  reset-job-ids   Make slurmctld forget its jobs and start job ids again at
                  FirstJobId (1), while accounting keeps every old job: stop
                  slurmctld, delete job_state* in its StateSaveLocation, start
                  it. Reproduces job-id reuse (a reinstall, a wiped state
                  directory); jobs queued or running are lost to the
                  controller, so run it only when no other test needs it.
  -h, --help      Show this help.

Cluster: cluster "devcluster", node = `hostname -s`, partition "main"
(default), account "dev", one fake GPU (--gres gpu:1). Settings: KillWait=2,
OverTimeLimit=0, MinJobAge=300, batch_sched_delay=0, and
AccountingStoreFlags=job_comment. Users root, dwtest and
$SLURM_DEV_EXTRA_USERS are in account dev.

Environment:
  SLURM_DEV_DIR          state directory (default /var/tmp/slurm-dev)
  SLURM_DEV_EXTRA_USERS  more users for account dev, separated by spaces or
                         commas. They must exist as Unix users. Use this
                         when the code under test submits as a non-root user.
  SLURM_DEV_USER         test user, created if missing (default dwtest)
  SLURM_DEV_CLUSTER      cluster name (default devcluster)
  SLURM_DEV_ACCOUNT      account name (default dev)
  SLURM_DEV_DB_PORT      port of the private MariaDB (default 3307)
  SLURM_DEV_KILLWAIT     KillWait seconds (default 2)
  SLURM_DEV_MAX_JOBS     MaxJobCount (default 50000: the scale bench holds
                         20,000 jobs; a change restarts slurmctld at `up`)

Written outside $SLURM_DEV_DIR: the Debian packages, the user dwtest, and the
symlink /etc/slurm/slurm.conf -> $SLURM_DEV_DIR/etc/slurm.conf. The symlink
lets plain sbatch/sacct/squeue work without SLURM_CONF.

Examples:
  sudo scripts/slurm-dev-cluster.sh up
  sbatch --parsable -p main -A dev --gres gpu:1 --time 00:10:00 --wrap 'echo hi'
  sacct -X -n -P -j ID --format=JobID,State,ExitCode     # -> ID|COMPLETED|0:0
  runuser -u dwtest -- sbatch -p main -A dev --chdir /tmp --wrap id
  scripts/slurm-dev-cluster.sh status
  sudo scripts/slurm-dev-cluster.sh down --purge

Notes for test writers (Slurm 22.05):
  * sacct lags at job start: for about 0.5 s there is no row (sacct prints
    nothing and exits 0). Then for 2-5 s a placeholder row reads
    JobName=allocation, State=PENDING. Final states appear about 0.2 s after
    the job ends. Use squeue/scontrol for live state.
  * "scancel" gives State "CANCELLED by <uid>", so match states by prefix.
  * TIMEOUT takes 60-90 s: --time has minute granularity and limits are
    checked about every 30 s.
  * If slurmctld is down, sbatch/squeue/scancel fail only after about 9 s.
    sacct still works.
EOF
}

# ------------------------------------------------------------------ settings
STATE=${SLURM_DEV_DIR:-/var/tmp/slurm-dev}
STATE=$(realpath -m -- "$STATE")
CLUSTER=${SLURM_DEV_CLUSTER:-devcluster}
ACCOUNT=${SLURM_DEV_ACCOUNT:-dev}
TEST_USER=${SLURM_DEV_USER:-dwtest}
DB_PORT=${SLURM_DEV_DB_PORT:-3307}        # our own MariaDB, not the system one
DB_PASS=slurmdevpass                      # local-only (127.0.0.1) accounting DB
KILL_WAIT=${SLURM_DEV_KILLWAIT:-2}
MAX_JOBS=${SLURM_DEV_MAX_JOBS:-50000}
EXTRA_USERS=${SLURM_DEV_EXTRA_USERS:-}
EXTRA_USERS=${EXTRA_USERS//,/ }
NODE=$(hostname -s)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order
PACKAGES=(slurm-wlm slurmdbd mariadb-server munge)
BINARIES=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr scontrol sinfo squeue
          scancel munged munge unmunge mariadbd mariadb mariadb-install-db
          mariadb-admin)
MARKER="$STATE/.slurm-dev-cluster"        # proves $STATE is ours (for --purge)
MSOCK="$STATE/munge/munge.socket"
DSOCK="$STATE/run/mysqld/mariadb.sock"
export SLURM_CONF="$STATE/etc/slurm.conf"
export PATH="$PATH:/usr/sbin:/sbin"
CMD=${1:-}

log() { printf '[slurm-dev %s] %s\n' "$(date +%T)" "$*"; }
die() { printf '[slurm-dev %s] ERROR: %s\n' "$(date +%T)" "$*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "'$CMD' must run as root"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# Serialise up/down (e.g. several test runs calling `up` at once). Daemons
# are started with fd 9 closed, so they never inherit (and hold) the lock.
take_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 300 9 || die "another slurm-dev-cluster.sh holds $STATE/.lock"
}

# ------------------------------------------------------------------ pid helpers
# A pid file holds "PID STARTTIME CMD". The PID counts as ours only while
# /proc/PID/stat shows the same start time, so a reused PID is never
# signalled. A zombie counts as gone: PID 1 (not systemd here) can take about
# 2 s to reap a daemon started by an earlier run.
procinfo() { # pid -> "STATE STARTTIME"
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo "$1 ${20}"
}
alive() { # name -> 0 if the recorded process is still the one we started
  local f="$STATE/pids/$1.pid" pid st info
  [ -s "$f" ] || return 1
  read -r pid st _ <"$f" || return 1
  info=$(procinfo "$pid") || return 1
  [ "${info#* }" = "$st" ] && [ "${info%% *}" != Z ]
}
recpid() { cut -d' ' -f1 "$STATE/pids/$1.pid"; }

start() { # name cmd... : cmd runs in the foreground, in its own session
  local name=$1 pid info
  shift
  if alive "$name"; then
    log "$name already running (pid $(recpid "$name"))"
    return 0
  fi
  # No job control in a script, so setsid need not fork and $! is the daemon. It runs in /: a daemon
  # started from a checkout that is later deleted keeps a deleted working directory, and slurmstepd then
  # writes "Unable to get current working directory" into every job's output.
  (cd / && exec setsid "$@") >>"$STATE/log/$name.out" 2>&1 </dev/null 9>&- &
  pid=$!
  sleep 0.05
  info=$(procinfo "$pid") || die "$name died at once; see $STATE/log/$name.out"
  echo "$pid ${info#* } $1" >"$STATE/pids/$name.pid"
  log "started $name (pid $pid)"
}

stop_one() { # name [timeout_s]: TERM, then KILL; only the recorded pid
  local name=$1 tries=$(( ${2:-15} * 10 )) pid i
  if ! alive "$name"; then
    if [ -e "$STATE/pids/$name.pid" ]; then
      log "$name not running (stale pid file removed)"
      rm -f "$STATE/pids/$name.pid"
    fi
    return 0
  fi
  pid=$(recpid "$name")
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < tries; i++ )); do
    alive "$name" || break
    sleep 0.1
  done
  if alive "$name"; then
    log "$name (pid $pid) ignored SIGTERM: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$STATE/pids/$name.pid"
  log "stopped $name (pid $pid)"
}

wait_for() { # desc timeout_s cmd... ; desc = daemon name => fail fast if it died
  local desc=$1 to=$2 end
  shift 2
  end=$(( $(date +%s) + to ))
  until "$@" >/dev/null 2>&1; do
    if [ -e "$STATE/pids/$desc.pid" ] && ! alive "$desc"; then
      tail -n 20 "$STATE/log/$desc.out" "$STATE/log/$desc.log" >&2 2>/dev/null || true
      die "$desc exited during startup; logs in $STATE/log"
    fi
    [ "$(date +%s)" -lt "$end" ] || die "timeout (${to}s) waiting for $desc; logs in $STATE/log"
    sleep 0.2
  done
}

write_if_changed() { # path mode <content ; returns 0 if the file changed
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  chmod "$2" "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$1"
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | awk 'NR == 1' || true; }
node_usable() { # a trailing '*' (not responding) or drain/down => not usable
  case "$(node_state)" in idle|mixed|allocated|completing) return 0;; esac
  return 1
}

# ------------------------------------------------------------------ up
install_packages() {
  local b need=0 own_policy=0 rc=0
  for b in "${BINARIES[@]}"; do command -v "$b" >/dev/null 2>&1 || need=1; done
  if [ "$need" = 1 ]; then
    log "installing ${PACKAGES[*]} (log: $STATE/log/apt.log)"
    # Without systemd, postinsts would try to start the system's own munge,
    # mariadb and slurm services via invoke-rc.d. A policy-rc.d forbids that
    # during our install; we add one only if none exists, and remove it again.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      own_policy=1
    fi
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}"; } >"$STATE/log/apt.log" 2>&1 || rc=$?
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ "$rc" != 0 ]; then
      tail -n 20 "$STATE/log/apt.log" >&2
      die "apt-get failed (rc=$rc)"
    fi
    log "packages installed"
  fi
  for b in "${BINARIES[@]}"; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found after installing ${PACKAGES[*]}"
  done
  id -u mysql >/dev/null 2>&1 || die "user mysql missing (mariadb-server broken?)"
}

prepare_layout() {
  mkdir -p "$STATE"/{etc,log,pids,run/mysqld,munge,spool/ctld,spool/d,db,dev}
  touch "$MARKER"
  chmod 755 "$STATE" "$STATE"/{etc,log,pids,run,spool,dev}
  chmod 700 "$STATE/spool/ctld"
  # Non-root users' jobs exec their script from SlurmdSpoolDir, which must
  # stay 0755 (0700 => "execve(): .../slurm_script: Permission denied").
  chmod 755 "$STATE/spool/d"
  chmod 711 "$STATE/munge"        # the socket must be reachable by all users
  # mariadbd runs as mysql: its own dir for socket + pid, and a pre-created
  # error log (else "Bind on unix socket: Permission denied" / errno 13).
  chown mysql:mysql "$STATE/db" "$STATE/run/mysqld"
  chmod 750 "$STATE/db"
  chmod 755 "$STATE/run/mysqld"
  touch "$STATE/log/mariadb.err"
  chown mysql:mysql "$STATE/log/mariadb.err"

  # Seen once on this kind of VM: /dev/null had turned into a regular file.
  if [ ! -c /dev/null ]; then
    log "WARNING: /dev/null is not a character device; recreating it"
    rm -f /dev/null
    mknod -m 666 /dev/null c 1 3
  fi
  # Fake GPU. A gpu GRES without File= is dropped ("Removing file-less GPU")
  # and the node goes INVAL. File= must stat() as a char/block device whose
  # name ends in a digit: our own null device, or a symlink to /dev/null.
  if [ ! -c "$STATE/dev/gpu0" ]; then
    rm -f "$STATE/dev/gpu0"
    mknod -m 666 "$STATE/dev/gpu0" c 1 3 2>/dev/null || ln -sfn /dev/null "$STATE/dev/gpu0"
  fi

  if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    useradd -m -s /bin/bash "$TEST_USER"
    log "created user $TEST_USER"
  fi
}

# Sets CONF_CHANGED / DBD_CHANGED to 1 if slurm or slurmdbd configs changed.
write_configs() {
  local cpus mem
  # CPUs = nproc, memory = 90% of MemTotal. With config_overrides slurmd
  # reports these values, so a topology or memory mismatch never drains the node. (More job slots than
  # cores were tried: a requeued job then restarts at once, while slurmd is still cleaning up its first
  # run, and Slurm 22.05 fails that launch.)
  cpus=$(nproc)
  mem=$(awk '/^MemTotal:/{printf "%d", $2/1024*0.9}' /proc/meminfo)
  CONF_CHANGED=0
  DBD_CHANGED=0
  write_if_changed "$STATE/etc/slurm.conf" 644 <<EOF && CONF_CHANGED=1
# generated by slurm-dev-cluster.sh - edits are overwritten
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket=$MSOCK
# Private munge socket: clients and slurmctld take it from AccountingStoragePass
# (with AuthInfo alone sacct/sacctmgr try /run/munge/munge.socket.2).
AccountingStoragePass=$MSOCK
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroup-based tracking (VMs/containers without delegated cgroups)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
PropagateResourceLimits=NONE
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# the default batch_sched_delay=3 puts job starts on a 3 s grid
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=$KILL_WAIT
OverTimeLimit=0
InactiveLimit=0
MinJobAge=300
# room for the scale bench's 20,000 held jobs beside the suite's (the default is 10,000)
MaxJobCount=$MAX_JOBS
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
# without job_comment, sbatch --comment is not stored (sacct Comment empty)
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  write_if_changed "$STATE/etc/gres.conf" 644 <<EOF && CONF_CHANGED=1
AutoDetect=off
NodeName=$NODE Name=gpu File=$STATE/dev/gpu0
EOF
  # slurmd loads a cgroup plugin even with linuxproc + task/none; a
  # cgroup-v2-only host without systemd needs IgnoreSystemd=yes.
  write_if_changed "$STATE/etc/cgroup.conf" 644 <<EOF && CONF_CHANGED=1
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
  # slurmdbd has no -f option: it reads slurmdbd.conf next to $SLURM_CONF;
  # the file must be mode 600 and owned by SlurmUser.
  write_if_changed "$STATE/etc/slurmdbd.conf" 600 <<EOF && DBD_CHANGED=1
AuthType=auth/munge
AuthInfo=socket=$MSOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  # Clients without a config fail ("Could not establish a configuration source").
  mkdir -p /etc/slurm
  if [ -L /etc/slurm/slurm.conf ] || [ ! -e /etc/slurm/slurm.conf ]; then
    ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
  else
    log "WARNING: /etc/slurm/slurm.conf is a real file; clients need SLURM_CONF=$SLURM_CONF"
  fi
}

start_munged() {
  if [ ! -s "$STATE/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 400 "$STATE/munge/munge.key"
  # with -F munged logs to stderr, i.e. log/munged.out
  start munged /usr/sbin/munged -F --force \
    --key-file="$STATE/munge/munge.key" --socket="$MSOCK" \
    --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed"
  # shellcheck disable=SC2016  # $1 expands in the child bash
  wait_for munged 20 bash -c 'munge -S "$1" -n | unmunge -S "$1"' _ "$MSOCK"
}

start_mariadb() {
  if [ ! -d "$STATE/db/mysql" ]; then
    log "initialising MariaDB datadir"
    mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/db" \
      --auth-root-authentication-method=socket --skip-test-db \
      >"$STATE/log/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
  fi
  # --no-defaults keeps /etc/mysql (system socket, port 3306) out.
  start mariadbd /usr/sbin/mariadbd --no-defaults --user=mysql \
    --datadir="$STATE/db" --socket="$DSOCK" --pid-file="$STATE/run/mysqld/mariadbd.pid" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
    --log-error="$STATE/log/mariadb.err" \
    --innodb-buffer-pool-size=1024M --innodb-log-file-size=64M \
    --innodb-lock-wait-timeout=900 --max-allowed-packet=16M
  wait_for mariadbd 60 mariadb-admin --no-defaults -S "$DSOCK" -uroot ping
  # --skip-name-resolve: slurmdbd connects as 'slurm'@'127.0.0.1'
  mariadb --no-defaults -S "$DSOCK" -uroot <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurmdbd() {
  if [ "$DBD_CHANGED" = 1 ] && alive slurmdbd; then
    log "slurmdbd.conf changed: restarting slurmdbd"
    stop_one slurmdbd
  fi
  start slurmdbd /usr/sbin/slurmdbd -D
  wait_for slurmdbd 60 sacctmgr -n -P show cluster format=cluster
  # the cluster must exist in the DB before slurmctld registers
  if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    log "registered cluster $CLUSTER"
  fi
}

start_slurm() {
  if [ "$CONF_CHANGED" = 1 ] && { alive slurmctld || alive slurmd; }; then
    log "slurm.conf/gres.conf/cgroup.conf changed: restarting slurmctld and slurmd"
    stop_one slurmd
    stop_one slurmctld
  fi
  start slurmctld /usr/sbin/slurmctld -D -f "$SLURM_CONF"
  wait_for slurmctld 60 bash -c 'scontrol ping | grep -q "is UP"'
  start slurmd /usr/sbin/slurmd -D -f "$SLURM_CONF" -N "$NODE"
}

add_account_and_users() {
  local u
  if ! sacctmgr -n -P show account "$ACCOUNT" format=account | grep -qx "$ACCOUNT"; then
    sacctmgr -i add account "$ACCOUNT" Description=dev Organization=dev >/dev/null
    log "created account $ACCOUNT"
  fi
  for u in $USERS; do
    if ! sacctmgr -n -P show assoc where user="$u" account="$ACCOUNT" cluster="$CLUSTER" \
         format=user | grep -qx "$u"; then
      sacctmgr -i add user "$u" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
      log "added user $u to account $ACCOUNT"
    fi
    if [ "$(sacctmgr -n -P show user "$u" format=defaultaccount)" != "$ACCOUNT" ]; then
      sacctmgr -i modify user "$u" set DefaultAccount="$ACCOUNT" >/dev/null
    fi
  done
}

wait_ready() {
  local end st resumed=0 u
  end=$(( $(date +%s) + 60 ))
  # 'idle*' (not responding) lasts ~2 s until slurmd registers.
  until node_usable; do
    st=$(node_state)
    case "$st" in
      *drain*|down*|fail*)
        if [ "$resumed" = 0 ]; then
          log "node state '$st': resuming"
          scontrol update nodename="$NODE" state=resume || true
          resumed=1
        fi;;
    esac
    if [ "$(date +%s)" -ge "$end" ]; then
      die "node $NODE not usable (state '$st', reason '$(sinfo -h -n "$NODE" -o %E)'); see $STATE/log/slurmd.log"
    fi
    sleep 0.2
  done
  # sacctmgr changes reach slurmctld's association cache asynchronously.
  for u in $USERS; do
    # shellcheck disable=SC2016  # $1/$2 expand in the child bash
    wait_for "association $u/$ACCOUNT in slurmctld" 30 bash -c \
      'scontrol show assoc_mgr users="$1" accounts="$2" flags=assoc | grep -q "Account=$2 UserName=$1("' \
      _ "$u" "$ACCOUNT"
  done
}

cmd_up() {
  local t0 u
  need_root
  t0=$(date +%s.%N)
  USERS="root $TEST_USER"
  for u in $EXTRA_USERS; do
    id -u "$u" >/dev/null 2>&1 || die "SLURM_DEV_EXTRA_USERS: no such Unix user '$u'"
    case " $USERS " in *" $u "*) ;; *) USERS="$USERS $u";; esac
  done
  take_lock
  mkdir -p "$STATE/log"
  install_packages
  prepare_layout
  write_configs
  start_munged
  start_mariadb
  start_slurmdbd
  start_slurm
  add_account_and_users
  wait_ready
  log "cluster up in $(elapsed "$t0")s: node $NODE is $(node_state), partition main, account $ACCOUNT, users: $USERS"
  cat <<EOF

  Slurm dev cluster "$CLUSTER" is running. State and logs: $STATE
  Try:   sbatch --parsable -p main -A $ACCOUNT --gres gpu:1 --wrap 'echo hi'
         sacct -X -n -P -j ID --format=JobID,State,ExitCode
  Stop:  $0 down [--purge]
EOF
}

# ------------------------------------------------------------------ down
cmd_down() {
  local purge=0 t0 ids i d
  case "${1:-}" in
    '') ;;
    --purge) purge=1;;
    *) die "unknown option for down: $1 (see --help)";;
  esac
  need_root
  t0=$(date +%s.%N)
  if [ "$purge" = 1 ] && [ -d "$STATE" ] && [ ! -e "$MARKER" ]; then
    die "$STATE has no $(basename "$MARKER") marker; refusing to purge it"
  fi
  if [ ! -d "$STATE/pids" ]; then
    log "no state at $STATE (nothing to stop)"
  else
    take_lock
    # Cancel jobs while slurmctld is up, so no slurmstepd/job is left behind.
    if alive slurmctld && [ -f "$SLURM_CONF" ]; then
      ids=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
      if [ -n "${ids// /}" ]; then
        log "cancelling jobs: $ids"
        # shellcheck disable=SC2086
        scancel $ids 2>/dev/null || true
        for (( i = 0; i < 100; i++ )); do
          [ -z "$(squeue -h -o %A 2>/dev/null || true)" ] && break
          sleep 0.2
        done
      fi
    fi
    for (( i = ${#DAEMONS[@]} - 1; i >= 0; i-- )); do
      d=${DAEMONS[i]}
      stop_one "$d"
    done
  fi
  if [ "$purge" = 1 ]; then
    if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$SLURM_CONF" ]; then
      rm -f /etc/slurm/slurm.conf
    fi
    rm -rf "$STATE"
    log "purged $STATE"
  fi
  log "down in $(elapsed "$t0")s"
}

# ------------------------------------------------------------------ stop one
cmd_stop() {
  local d=$1 known=0 x
  for x in "${DAEMONS[@]}"; do [ "$x" = "$d" ] && known=1; done
  [ "$known" = 1 ] || die "unknown daemon '$d' (one of: ${DAEMONS[*]})"
  need_root
  take_lock
  stop_one "$d"
}

# ------------------------------------------------------------------ reset job ids
cmd_reset_job_ids() {
  need_root
  take_lock
  alive slurmctld || die "slurmctld is not running; start the cluster with 'up' first"
  stop_one slurmctld
  rm -f "$STATE"/spool/ctld/job_state*
  log "deleted job_state* in $STATE/spool/ctld: job ids start again at FirstJobId"
  start slurmctld /usr/sbin/slurmctld -D -f "$SLURM_CONF"
  wait_for slurmctld 60 bash -c 'scontrol ping | grep -q "is UP"'
  USERS="root $TEST_USER $EXTRA_USERS"
  wait_ready
}

# ------------------------------------------------------------------ status
cmd_status() {
  local d ok=0 st reason
  for d in "${DAEMONS[@]}"; do
    if alive "$d"; then
      printf '%-10s running (pid %s)\n' "$d" "$(recpid "$d")"
    else
      printf '%-10s stopped\n' "$d"
      ok=1
    fi
  done
  st=""
  if alive slurmctld && [ -f "$SLURM_CONF" ]; then st=$(node_state || true); fi
  if [ -z "$st" ]; then
    printf '%-10s unknown (slurmctld not reachable)\n' "node"
    ok=1
  elif node_usable; then
    printf '%-10s %s %s (usable)\n' "node" "$NODE" "$st"
  else
    reason=$(sinfo -h -n "$NODE" -o %E 2>/dev/null || true)
    printf '%-10s %s %s (NOT usable%s)\n' "node" "$NODE" "$st" "${reason:+: $reason}"
    ok=1
  fi
  return "$ok"
}

case "$CMD" in
  up) shift; [ $# -eq 0 ] || die "up takes no arguments (see --help)"; cmd_up;;
  down) shift; [ $# -le 1 ] || die "too many arguments (see --help)"; cmd_down "$@";;
  status) shift; [ $# -eq 0 ] || die "status takes no arguments (see --help)"; cmd_status;;
  stop) shift; [ $# -eq 1 ] || die "stop takes one daemon name (see --help)"; cmd_stop "$1";;
  reset-job-ids) shift; [ $# -eq 0 ] || die "reset-job-ids takes no arguments (see --help)"; cmd_reset_job_ids;;
  -h|--help|help) usage;;
  '') usage >&2; exit 2;;
  *) printf 'unknown command: %s\n\n' "$CMD" >&2; usage >&2; exit 2;;
esac
