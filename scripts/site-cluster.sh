#!/usr/bin/env bash
# site-cluster.sh - the site-test machines: a Debian container with systemd as PID 1 and a one-node
# Slurm cluster with accounting, run by that systemd from Debian's own units, as a real site runs it.
# Two suites, each its own machine (name, root file system, cache, state, cgroup: nothing shared):
# trixie (Debian 13: Slurm 24.11, systemd 257; the default) and sid (Slurm 26.05, systemd 262).
# dirwatcher's service checks (tests/site) install the .deb there; the Slurm integration tests run
# there too (scripts/test.sh does both, one container at a time).
#
# Run with --help for usage.
set -euo pipefail

# ------------------------------------------------------------------ the suite (everything suite-specific)
# `--suite NAME` before the command, else DIRWATCHER_SITE_SUITE, else trixie. Exported, so the tests'
# own calls of this script (e.g. `down`/`up` in a reboot check) reach the same container.
if [ "${1:-}" = --suite ]; then
  [ $# -ge 2 ] || { echo "error: --suite needs a value: trixie or sid" >&2; exit 2; }
  DIRWATCHER_SITE_SUITE=$2; shift 2
fi
SUITE=${DIRWATCHER_SITE_SUITE:-trixie}
export DIRWATCHER_SITE_SUITE=$SUITE
case "$SUITE" in
  trixie)
    SLURM_LINE=24.11 SYSTEMD_LINE=257
    CODENAME=trixie        # VERSION_CODENAME in the root's /etc/os-release
    MACHINE=dwsite         # host name, node name, nspawn machine name
    SUFFIX=""              # appended to the state, cache and cgroup names (trixie keeps the old ones)
    EXTRA_SUITES="updates security"
    MMDEBSTRAP_OPTS=()
    ;;
  sid)
    SLURM_LINE=26.05 SYSTEMD_LINE=262
    CODENAME=forky         # sid's os-release names the next release
    MACHINE=dwsid
    SUFFIX=-sid
    EXTRA_SUITES=""        # sid has no -updates and no -security suite
    # A mirror's (or proxy's) sid index may be older than its Valid-Until; the option stays in the
    # root's apt configuration, so the download inside works too.
    MMDEBSTRAP_OPTS=(--aptopt='Acquire::Check-Valid-Until "false"')
    ;;
  *) echo "error: unknown suite \`$SUITE\` (from --suite or DIRWATCHER_SITE_SUITE): use trixie or sid" >&2; exit 2;;
esac
# How this suite's container is named in hints: `$ME up`.
ME="scripts/site-cluster.sh${SUFFIX:+ --suite $SUITE}"

usage() {
  cat <<'EOF'
Usage: site-cluster.sh [--suite trixie|sid] COMMAND [ARGS]

A Debian container, booted with systemd-nspawn (systemd as its PID 1,
private network), with Slurm, slurmdbd, MariaDB and munge from Debian's
packages. The suite picks the lines (default: DIRWATCHER_SITE_SUITE, else
trixie):
  trixie  Debian 13: Slurm 24.11, systemd 257; machine dwsite
  sid     Debian unstable: Slurm 26.05, systemd 262; machine dwsid
Each suite is its own machine with its own root file system, cache, state
and cgroup: both may exist side by side (run one at a time on a small
host). Runs as root on a Debian 12 host; never touches the
host's own test cluster (scripts/slurm-dev-cluster.sh: ports 6817-6819/3307,
/var/tmp/slurm-dev): the container has its own network namespace, /run and
ports.

Commands:
  up [--fresh]    Build or reuse the root file system, boot it, bring the
                  cluster up. Idempotent: what exists is reused, what runs
                  keeps running. A fresh build (about 1 min) is cached as a
                  tarball; later builds unpack it (about 15 s). --fresh
                  deletes the root file system first (not the cache).
                  Installs systemd-container and mmdebstrap on the host if
                  missing. Exits 0 only when the node is idle and the
                  controller knows the associations.
  down [--purge]  Power the container off cleanly (SIGTERM to the recorded
                  systemd-nspawn; SIGKILL to exactly that container after
                  60 s) and remove its cgroups. --purge also deletes the
                  state directory (root file system); the cache stays.
  status          Say whether it runs, with systemd's state, the Slurm
                  version and the node state. Exit 0 iff usable, else 3.
  run CMD...      Run CMD inside the container (all its namespaces, a clean
                  environment, stdin/stdout/stderr passed through). Its exit
                  status is CMD's. Without CMD: a shell.
  run-tests BIN [ARGS...]
                  Run a Rust test binary (e.g. target/debug/deps/it-HASH)
                  against the container's Slurm: BIN, the dirwatcher
                  binary beside it (../dirwatcher) and the source tree are
                  copied to the same absolute paths inside, then BIN ARGS
                  runs there as root with DIRWATCHER_REQUIRE_SLURM=1 and
                  DIRWATCHER_REQUIRE_SLURMREST=1 (its slurmrestd too).
  -h, --help      Show this help.

Cluster inside: cluster "site", node dwsite or dwsid (127.0.0.1), partition
"main", account "dev" (users root and dwtest), one fake GRES gpu:1,
AccountingStoreFlags=job_comment, CgroupPlugin=disabled (see below).
slurmrestd (Debian's unit, user slurmrestd) on 127.0.0.1:6820 and
unix:/run/slurmrestd/slurmrestd.socket, authenticating JWTs (auth/jwt with
the HS256 key /var/lib/slurm/jwt_hs256.key); a token for user U:
  scripts/site-cluster.sh run scontrol token username=U lifespan=SECONDS

Environment:
  DIRWATCHER_SITE_SUITE  trixie (default) or sid; --suite overrides it
  DIRWATCHER_SITE_DIR    state (root file system, logs; default
                         /var/tmp/dirwatcher-site, about 850 MB); the suite
                         sid appends -sid to it
  DIRWATCHER_SITE_CACHE  cache folder (default /var/tmp/dirwatcher-site-cache;
                         one tarball, about 220 MB); sid appends -sid
  DIRWATCHER_SITE_MIRROR Debian mirror (default: the host's, else
                         http://deb.debian.org/debian)

Examples:
  scripts/site-cluster.sh up
  scripts/site-cluster.sh --suite sid up
  scripts/site-cluster.sh run sbatch -p main -A dev --wrap hostname
  scripts/site-cluster.sh run journalctl -u dirwatcher -o verbose
  scripts/site-cluster.sh down

Notes (measured on a 2-core Debian 12 VM with hybrid cgroups):
  * Packages are installed in the BOOTED container, so their postinsts run
    under systemd as PID 1 (munge, mariadb started by their packages). The
    booted container has no network: packages are downloaded first in a
    chroot on the host's network.
  * slurm.conf is written before the packages: trixie's slurmd.service has
    no ConditionPathExists and its postinst starts it; without a config it
    waits for DNS SRV records and apt hangs 90 s.
  * --private-network leaves only `lo`, and Slurm 24.11 resolves names with
    getaddrinfo(AI_ADDRCONFIG), which fails even for localhost then. A veth
    pair with both ends inside (unit site-net.service) gives one address
    and no route out.
  * On a hybrid-cgroup host Slurm's cgroup/v2 plugin refuses to run
    ("Hybrid mode is not supported"): CgroupPlugin=disabled and
    proctrack/linuxproc. Job containment by cgroups is not tested here.
EOF
}

# ------------------------------------------------------------------ settings
STATE=${DIRWATCHER_SITE_DIR:-/var/tmp/dirwatcher-site}$SUFFIX
CACHE=${DIRWATCHER_SITE_CACHE:-/var/tmp/dirwatcher-site-cache}$SUFFIX
ROOT=$STATE/rootfs
CG_NAME=dirwatcher-site$SUFFIX
PIDFILE=$STATE/nspawn.pid
# Bump when the root file system's content changes (packages, files written at build time): the
# cache tarball carries it in its name, so an old cache is never reused.
CACHE_VERSION=3
CACHE_TARBALL=$CACHE/rootfs-$SUITE-slurm-v$CACHE_VERSION.tar.zst
# curl: no longer needed (the daemon speaks SMTP and HTTPS itself); kept so the cached root file
# system stays valid: drop it at the next CACHE_VERSION bump. faketime: the clock-step test of tests/it, which runs here too.
# slurmrestd: Slurm's REST API, with JWT (auth/jwt is in slurm-wlm-jwt-plugin, pulled in by slurm-wlm),
# for the REST back end's tests (rest_setup below).
PKGS="slurm-wlm slurmdbd mariadb-server munge python3 curl faketime slurmrestd"
NPKGS=8
# slurmrestd: TCP on the container's loopback (no route out of it), and a unix socket.
REST_PORT=6820
REST_SOCKET=/run/slurmrestd/slurmrestd.socket
# The HS256 key Slurm signs and checks JWTs with (slurmctld, slurmdbd), readable by SlurmUser only.
JWT_KEY=/var/lib/slurm/jwt_hs256.key
# Which cgroup hierarchies nspawn uses on the host: name=systemd (v1) and the unified one on a hybrid
# host, /sys/fs/cgroup itself on a cgroup2-only host (untested here).
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
  CG_HIERARCHIES="."
else
  CG_HIERARCHIES="systemd unified"
fi

host_mirror() {
  local m
  m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)
  [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

log() { printf '[site %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[site %s] error: %s\n' "$(date +%T)" "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
phase_done() { log "$1 took $(since "$2") s"; printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$1" "$(since "$2")" >>"$STATE/timings.tsv"; }

# ------------------------------------------------------------------ the container's processes
# Only processes we started are signalled: the nspawn PID is recorded with its start time and used only
# while /proc/PID/stat still shows that start time.
proc_state_start() { # pid -> "STATE STARTTIME"
  local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s; echo "$1 ${20}"
}
nspawn_alive() {
  local pid st info
  [ -s "$PIDFILE" ] || return 1
  read -r pid st <"$PIDFILE" || return 1
  info=$(proc_state_start "$pid") || return 1
  [ "${info#* }" = "$st" ] && [ "${info%% *}" != Z ]
}
nspawn_pid() { cut -d' ' -f1 "$PIDFILE"; }
leader_pid() { # the container's PID 1, as the host sees it (nspawn's only child)
  nspawn_alive || return 1
  local p; p=$(awk '{print $1}' "/proc/$(nspawn_pid)/task/$(nspawn_pid)/children" 2>/dev/null)
  [ -n "$p" ] || return 1
  echo "$p"
}
# ct CMD...: CMD inside the container with a clean environment (nothing of the host's, e.g. SLURM_CONF).
ct() {
  local l; l=$(leader_pid) || die "the site container is not running; start it with \`$ME up\`"
  nsenter -t "$l" -m -u -i -n -p -C -r -w -- /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive "$@"
}
wait_until() { # what seconds cmd...
  local what=$1 end=$(( $(date +%s) + $2 )); shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out waiting for $what"
    sleep 0.3
  done
}

# ------------------------------------------------------------------ up: the phases
host_tools() {
  [ "$(id -u)" = 0 ] || die "run as root (it boots a container)"
  local need=()
  command -v systemd-nspawn >/dev/null || need+=("systemd-container=$(dpkg-query -W -f='${Version}' systemd)")
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  command -v zstd >/dev/null || need+=(zstd)
  [ ${#need[@]} = 0 ] && return
  log "installing on the host: ${need[*]} (systemd-container pinned to the installed systemd: nothing is upgraded)"
  apt-get install -y -q "${need[@]}" >"$STATE/host-apt.log" 2>&1 \
    || { apt-get update -q >>"$STATE/host-apt.log" 2>&1 && apt-get install -y -q "${need[@]}" >>"$STATE/host-apt.log" 2>&1; } \
    || { tail -n 20 "$STATE/host-apt.log" >&2; die "cannot install ${need[*]} on the host"; }
}

build_rootfs() {
  local t; t=$(now)
  rm -rf --one-file-system "$ROOT"
  if [ -s "$CACHE_TARBALL" ]; then
    log "unpacking the cached root file system $CACHE_TARBALL"
    mkdir -p "$ROOT"
    tar -C "$ROOT" -I zstd -xpf "$CACHE_TARBALL"
    phase_done rootfs-from-cache "$t"
    return
  fi
  local mirror=${DIRWATCHER_SITE_MIRROR:-$(host_mirror)}
  log "mmdebstrap $SUITE from $mirror (log: $STATE/mmdebstrap.log)"
  local sources=("deb $mirror $SUITE main") x
  for x in $EXTRA_SUITES; do
    case $x in
      updates) sources+=("deb $mirror $SUITE-updates main");;
      security) sources+=("deb ${mirror%/debian}/debian-security $SUITE-security main");;
    esac
  done
  nice -n 10 mmdebstrap --variant=minbase "${MMDEBSTRAP_OPTS[@]}" \
    --include=systemd,systemd-sysv,dbus,procps,iproute2,ca-certificates \
    "$SUITE" "$ROOT" "${sources[@]}" \
    >"$STATE/mmdebstrap.log" 2>&1 || { tail -n 20 "$STATE/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
  phase_done rootfs "$t"
}

# Files the container needs before it boots: identity, an address besides lo, no gettys.
machine_files() {
  echo "$MACHINE" >"$ROOT/etc/hostname"
  printf '127.0.0.1 localhost %s\n::1 localhost ip6-localhost ip6-loopback\n' "$MACHINE" >"$ROOT/etc/hosts"
  cat >"$ROOT/etc/systemd/system/site-net.service" <<'EOF'
[Unit]
Description=An address besides lo for getaddrinfo(AI_ADDRCONFIG); both ends inside, no route out
DefaultDependencies=no
Before=network.target network-online.target
Wants=network.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip link show dw0 >/dev/null 2>&1 || ip link add dw0 type veth peer name dw1; ip addr replace 10.254.0.1/24 dev dw0; ip link set dw1 up; ip link set dw0 up'
[Install]
WantedBy=sysinit.target
EOF
  mkdir -p "$ROOT/etc/systemd/system/sysinit.target.wants"
  ln -sfn ../site-net.service "$ROOT/etc/systemd/system/sysinit.target.wants/site-net.service"
  ln -sfn /dev/null "$ROOT/etc/systemd/system/console-getty.service"
  ln -sfn /dev/null "$ROOT/etc/systemd/system/getty@.service"
}

installed_in() { # "chroot DIR" or "ct": how many of $PKGS are installed
  # shellcheck disable=SC2086
  # shellcheck disable=SC2016 # ${Status} is dpkg-query's, not the shell's
  $1 dpkg-query -W -f='${Status}\n' $PKGS 2>/dev/null | grep -c 'install ok installed' || true
}

download_packages() {
  local t; t=$(now)
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  log "downloading $PKGS in a chroot (log: $STATE/apt-download.log)"
  # A private mount namespace holds the /proc mount: nothing stays mounted on the host.
  unshare --mount --fork -- sh -c "mount -t proc proc '$ROOT/proc' && chroot '$ROOT' apt-get update -q && \
      chroot '$ROOT' apt-get install -y -q --download-only $PKGS" \
    >"$STATE/apt-download.log" 2>&1 || { tail -n 20 "$STATE/apt-download.log" >&2; die "package download failed"; }
  phase_done download "$t"
}

boot() {
  local t pid info l st; t=$(now)
  for h in $CG_HIERARCHIES; do
    [ -d "/sys/fs/cgroup/$h" ] || die "/sys/fs/cgroup/$h missing: unexpected cgroup layout"
  done
  log "booting $SUITE with systemd-nspawn (console: $STATE/console.log)"
  (
    # nspawn puts its supervisor/ and payload/ cgroups under the cgroup it starts in: ours, removed by
    # `down`. --register=no and --keep-unit: the host has no machined and no systemd as PID 1.
    for h in $CG_HIERARCHIES; do
      mkdir -p "/sys/fs/cgroup/$h/$CG_NAME"
      echo "$BASHPID" >"/sys/fs/cgroup/$h/$CG_NAME/cgroup.procs"
    done
    # A pure cgroup2 tree inside (without it systemd 257 boots in hybrid mode, tainted "cgroupsv1").
    export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
    exec setsid systemd-nspawn -D "$ROOT" -M "$MACHINE" --boot --register=no --keep-unit \
      --private-network --console=passive --link-journal=no --resolv-conf=off --timezone=off
  ) >"$STATE/console.log" 2>&1 </dev/null &
  pid=$!
  info=$(proc_state_start "$pid") || { cat "$STATE/console.log" >&2; die "systemd-nspawn died at once"; }
  echo "$pid ${info#* }" >"$PIDFILE"
  local end=$(( $(date +%s) + 120 ))
  until l=$(leader_pid) && [ -S "/proc/$l/root/run/systemd/private" ]; do
    nspawn_alive || { tail -n 30 "$STATE/console.log" >&2; die "systemd-nspawn exited during boot"; }
    [ "$(date +%s)" -lt "$end" ] || die "timed out waiting for the container's systemd"
    sleep 0.2
  done
  st=$(ct timeout 120 systemctl is-system-running --wait 2>&1 || true)
  case "$st" in
    running) ;;
    degraded) log "booted degraded: $(ct systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')";;
    *) die "the container did not boot (is-system-running: $st); see $STATE/console.log";;
  esac
  phase_done boot "$t"
}

write_if_changed() { # path mode <content; status 0 iff the file changed
  local tmp; tmp=$(mktemp "$1.XXXX")
  cat >"$tmp"; chmod "$2" "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$1"
}

SLURM_CHANGED=0
slurm_files() {
  local cpus mem
  cpus=$(nproc)
  mem=$(awk '/^MemTotal:/{printf "%d", $2/1024*0.5}' /proc/meminfo)
  mkdir -p "$ROOT/etc/slurm" "$ROOT/var/lib/slurm/fakegpu"
  if write_if_changed "$ROOT/etc/slurm/slurm.conf" 644 <<EOF; then SLURM_CHANGED=1; fi
# written by dirwatcher's scripts/site-cluster.sh; edits are overwritten
ClusterName=site
SlurmctldHost=$MACHINE
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
# no *LogFile: the daemons log to the journal (journalctl -u slurmctld)
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
PropagateResourceLimits=NONE
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=2
OverTimeLimit=0
InactiveLimit=0
MinJobAge=300
# 20,000 held jobs for the scale benchmark (benches/scale.sh), beside the suite's own
MaxJobCount=50000
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$MACHINE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # A gpu GRES needs a File= that is a character device: a null device.
  [ -c "$ROOT/var/lib/slurm/fakegpu/gpu0" ] || { rm -f "$ROOT/var/lib/slurm/fakegpu/gpu0"; mknod -m 666 "$ROOT/var/lib/slurm/fakegpu/gpu0" c 1 3; }
  if write_if_changed "$ROOT/etc/slurm/gres.conf" 644 <<EOF; then SLURM_CHANGED=1; fi
AutoDetect=off
NodeName=$MACHINE Name=gpu File=/var/lib/slurm/fakegpu/gpu0
EOF
  # /proc/self/cgroup lists the host's v1 hierarchies in every namespace on a hybrid host, and Slurm's
  # cgroup/v2 plugin then refuses to run; autodetect would pick it.
  if write_if_changed "$ROOT/etc/slurm/cgroup.conf" 644 <<<"CgroupPlugin=disabled"; then SLURM_CHANGED=1; fi
}

install_packages() {
  local t; t=$(now)
  log "installing $PKGS inside, under its systemd (log: $STATE/apt-install.log)"
  # shellcheck disable=SC2086
  ct nice -n 10 apt-get install -y -q --no-download $PKGS >"$STATE/apt-install.log" 2>&1 \
    || { tail -n 30 "$STATE/apt-install.log" >&2; die "apt-get install failed inside the container"; }
  ct apt-get clean
  phase_done install "$t"
}

cluster() {
  local t pass; t=$(now)
  if write_if_changed "$ROOT/etc/mysql/mariadb.conf.d/90-slurmdbd.cnf" 644 <<'EOF'
[mysqld]
innodb_buffer_pool_size=256M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
max_allowed_packet=16M
EOF
  then ct systemctl restart mariadb; fi
  ct systemctl enable --now munge mariadb >/dev/null 2>&1
  wait_until mariadb 60 ct mariadb-admin ping
  if [ ! -s "$ROOT/etc/slurm/slurmdbd.conf" ]; then
    pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    ct install -m 600 -o slurm -g slurm /dev/null /etc/slurm/slurmdbd.conf
    cat >"$ROOT/etc/slurm/slurmdbd.conf" <<EOF
# written by dirwatcher's scripts/site-cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
DebugLevel=info
PidFile=/run/slurmdbd/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
  fi
  jwt_key
  local dbd_changed=$SLURM_CHANGED
  if ! grep -q '^AuthAltTypes=' "$ROOT/etc/slurm/slurmdbd.conf"; then
    printf 'AuthAltTypes=auth/jwt\nAuthAltParameters=jwt_key=%s\n' "$JWT_KEY" >>"$ROOT/etc/slurm/slurmdbd.conf"
    dbd_changed=1
  fi
  pass=$(sed -n 's/^StoragePass=//p' "$ROOT/etc/slurm/slurmdbd.conf")
  ct mariadb <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
  ct systemctl enable --now slurmdbd >/dev/null 2>&1
  if [ "$dbd_changed" = 1 ]; then ct systemctl restart slurmdbd; fi
  wait_until "slurmdbd (sacct)" 60 dbd_up
  ct sacctmgr -n -P show cluster format=cluster | grep -qx site || ct sacctmgr -i add cluster site >/dev/null
  # The package's postinst may have started slurmctld before accounting was there (it then dies).
  local s; s=$(ct systemctl is-active slurmctld || true)
  if [ "$s" != active ] || [ "$SLURM_CHANGED" = 1 ]; then
    ct systemctl enable slurmctld >/dev/null 2>&1
    ct systemctl restart slurmctld
  fi
  wait_until "slurmctld (scontrol ping)" 60 ctld_up
  s=$(ct systemctl is-active slurmd || true)
  if [ "$s" != active ] || [ "$SLURM_CHANGED" = 1 ]; then
    ct systemctl enable slurmd >/dev/null 2>&1
    ct systemctl restart slurmd
  fi
  ct sacctmgr -n -P show account dev format=account | grep -qx dev \
    || ct sacctmgr -i add account dev Description=dev Organization=dev >/dev/null
  # dwtest: the integration tests' unprivileged user, as on the host's test cluster.
  ct id -u dwtest >/dev/null 2>&1 || ct useradd -m -s /bin/bash dwtest
  for u in root dwtest; do
    ct sacctmgr -n -P show assoc where user=$u account=dev cluster=site format=user | grep -qx $u \
      || ct sacctmgr -i add user $u account=dev cluster=site >/dev/null
  done
  rest_setup
  node_usable
  # Every daemon the tests use answers before `up` returns (a restarted container's slurmdbd may still be
  # refusing connections after slurmctld is up: the tests' own sacct then fails).
  wait_until "slurmdbd (sacct)" 60 dbd_up
  wait_until "slurmctld (scontrol ping)" 60 ctld_up
  wait_until "slurmd (scontrol show slurmd)" 60 slurmd_up
  wait_until "slurmrestd (GET /openapi/v3 with a token)" 60 rest_up
  phase_done cluster "$t"
}

# The JWT key, made once (a new key would invalidate every token handed out).
jwt_key() {
  [ -s "$ROOT$JWT_KEY" ] && return
  ct sh -c "umask 077 && head -c 32 /dev/urandom >$JWT_KEY.tmp && chown slurm:slurm $JWT_KEY.tmp && mv $JWT_KEY.tmp $JWT_KEY"
  SLURM_CHANGED=1
}

# slurmrestd under Debian's own unit, as an unprivileged user of its own (it refuses root and SlurmUser),
# on TCP and a unix socket in a folder it owns (the unit's own listeners, 0.0.0.0 and a socket directly
# in /run, are replaced); a client authenticates with a token from `scontrol token` (rest_auth/jwt only).
rest_setup() {
  ct id -u slurmrestd >/dev/null 2>&1 || ct useradd -r -M -s /usr/sbin/nologin slurmrestd
  local changed=0 s
  if write_if_changed "$ROOT/etc/default/slurmrestd" 644 <<EOF; then changed=1; fi
# written by dirwatcher's scripts/site-cluster.sh
SLURMRESTD_OPTIONS="-a rest_auth/jwt"
EOF
  mkdir -p "$ROOT/etc/systemd/system/slurmrestd.service.d"
  if write_if_changed "$ROOT/etc/systemd/system/slurmrestd.service.d/site.conf" 644 <<EOF; then changed=1; fi
# written by dirwatcher's scripts/site-cluster.sh
[Service]
User=slurmrestd
Group=slurmrestd
RuntimeDirectory=slurmrestd
RuntimeDirectoryMode=0755
ExecStart=
ExecStart=/usr/sbin/slurmrestd \$SLURMRESTD_OPTIONS 127.0.0.1:$REST_PORT unix:$REST_SOCKET
EOF
  if [ "$changed" = 1 ]; then ct systemctl daemon-reload; fi
  s=$(ct systemctl is-active slurmrestd || true)
  if [ "$s" != active ] || [ "$changed" = 1 ] || [ "$SLURM_CHANGED" = 1 ]; then
    ct systemctl enable slurmrestd >/dev/null 2>&1
    ct systemctl restart slurmrestd
  fi
}

rest_up() {
  local tok
  tok=$(ct scontrol token username=root lifespan=60 2>/dev/null | sed -n 's/^SLURM_JWT=//p')
  [ -n "$tok" ] && ct curl -fsS -o /dev/null -H "X-SLURM-USER-TOKEN: $tok" "http://127.0.0.1:$REST_PORT/openapi/v3"
}

ctld_up() { ct scontrol ping 2>/dev/null | grep -q UP; }
# slurmd itself answers (the controller may still show the node idle from its saved state while a
# restarted slurmd has not registered yet).
slurmd_up() { ct scontrol show slurmd 2>/dev/null | grep -q "^Hostname *= *$MACHINE\$"; }
# sacct talks to slurmdbd itself; a refused connection may still exit 0 with an error line, so both count.
dbd_up() {
  local out
  out=$(ct sacct -n -X -P --starttime=now-60 -o JobID 2>&1) && ! grep -qi error <<<"$out"
}

node_usable() {
  local end=$(( $(date +%s) + 60 )) resumed=0 st
  while :; do
    st=$(ct sinfo -h -n "$MACHINE" -o %T 2>/dev/null | head -n 1 || true)
    case "$st" in
      idle|mixed|allocated|completing) break;;
      *drain*|down*|fail*|inval*)
        [ "$resumed" = 1 ] || { ct scontrol update nodename="$MACHINE" state=resume || true; resumed=1; };;
    esac
    [ "$(date +%s)" -lt "$end" ] || die "node $MACHINE not usable: '$st' $(ct sinfo -h -n "$MACHINE" -o %E); see \`$ME run journalctl -u slurmd\`"
    sleep 0.3
  done
  local end2=$(( $(date +%s) + 30 )) u
  for u in root dwtest; do
    until ct scontrol show assoc_mgr users=$u accounts=dev flags=assoc 2>/dev/null | grep -q "UserName=$u("; do
      [ "$(date +%s)" -lt "$end2" ] || die "slurmctld does not know the association $u/dev"
      sleep 0.3
    done
  done
}

save_cache() {
  local t; t=$(now)
  # A consistent copy needs the databases closed: power off, archive, boot again.
  cmd_down
  log "caching the root file system in $CACHE_TARBALL"
  mkdir -p "$CACHE"
  rm -f "$CACHE"/rootfs-*.tar.zst
  tar -C "$ROOT" --one-file-system -I 'zstd -T2 -3' -cpf "$CACHE_TARBALL.tmp" \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' --exclude='./tmp/*' \
    --exclude='./var/cache/apt/*.bin' .
  mv -f "$CACHE_TARBALL.tmp" "$CACHE_TARBALL"
  phase_done save-cache "$t"
}

cmd_up() {
  local fresh=0 t built=0
  [ "${1:-}" = --fresh ] && fresh=1
  mkdir -p "$STATE"; chmod 755 "$STATE"
  host_tools
  t=$(now)
  if [ "$fresh" = 1 ] && [ -d "$ROOT" ]; then cmd_down; rm -rf --one-file-system "$ROOT"; fi
  if [ ! -x "$ROOT/usr/lib/systemd/systemd" ]; then build_rootfs; built=1; fi
  grep -q "VERSION_CODENAME=$CODENAME" "$ROOT/etc/os-release" || die "$ROOT is not Debian $SUITE; try \`scripts/site-cluster.sh --suite $SUITE up --fresh\`"
  machine_files
  slurm_files
  [ "$(installed_in "chroot $ROOT")" = "$NPKGS" ] || download_packages
  nspawn_alive || boot
  [ "$(installed_in ct)" = "$NPKGS" ] || install_packages
  cluster
  if [ "$built" = 1 ] && [ ! -s "$CACHE_TARBALL" ]; then save_cache; boot; cluster; fi
  local slurm systemd
  slurm=$(ct sinfo -V); systemd=$(ct systemctl --version | awk 'NR==1{print $2}')
  log "up in $(since "$t") s: $slurm, node $(ct sinfo -h -o %T | head -n 1), systemd $systemd"
  # sid moves: say so when it no longer has the lines this suite stands for (tests/site asserts them).
  case "$slurm" in "slurm-wlm $SLURM_LINE."*) ;; *) log "warning: $SUITE should have Slurm $SLURM_LINE, has $slurm";; esac
  [ "$systemd" = "$SYSTEMD_LINE" ] || log "warning: $SUITE should have systemd $SYSTEMD_LINE, has $systemd"
}

cmd_down() {
  local purge=0 pid leader leader_st t
  [ "${1:-}" = --purge ] && purge=1
  [ "$(id -u)" = 0 ] || die "run as root"
  t=$(now)
  if nspawn_alive; then
    pid=$(nspawn_pid)
    leader=$(leader_pid || true)
    leader_st=
    [ -n "$leader" ] && leader_st=$(proc_state_start "$leader" | cut -d' ' -f2)
    # SIGTERM makes nspawn ask the container's systemd to power off: every unit stops in order.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 600); do nspawn_alive || break; sleep 0.1; done
    if nspawn_alive; then
      log "no clean power-off within 60 s: SIGKILL to the container's PID 1 and to nspawn"
      if [ -n "$leader" ] && [ "$(proc_state_start "$leader" | cut -d' ' -f2)" = "$leader_st" ]; then
        kill -KILL "$leader" 2>/dev/null || true
      fi
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do nspawn_alive || break; sleep 0.1; done
    fi
    log "container stopped in $(since "$t") s"
  fi
  rm -f "$PIDFILE"
  for h in $CG_HIERARCHIES; do
    [ -d "/sys/fs/cgroup/$h/$CG_NAME" ] || continue
    find "/sys/fs/cgroup/$h/$CG_NAME" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "/sys/fs/cgroup/$h/$CG_NAME" ] && log "warning: /sys/fs/cgroup/$h/$CG_NAME is not empty"
  done
  rmdir "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null || true
  if [ "$purge" = 1 ] && [ -d "$STATE" ]; then
    grep -q " $STATE" /proc/mounts && die "something is still mounted under $STATE; not purging"
    rm -rf --one-file-system "$STATE"
    log "purged $STATE"
  fi
  return 0
}

cmd_status() {
  if ! nspawn_alive; then echo "site container: not running"; exit 3; fi
  local st node
  st=$(ct systemctl is-system-running 2>/dev/null || true)
  node=$(ct sinfo -h -n "$MACHINE" -o %T 2>/dev/null | head -n 1 || true)
  echo "site container: running (nspawn pid $(nspawn_pid)), systemd $st, $(ct sinfo -V 2>/dev/null), node ${node:-not answering}"
  case "$node" in idle|mixed|allocated|completing) exit 0;; *) exit 3;; esac
}

# The integration tests find the binary at its build path (CARGO_BIN_EXE_dirwatcher) and read a few
# files of the source tree: both are put at the same paths inside, so the very binary runs unchanged.
cmd_run_tests() {
  [ $# -ge 1 ] || die "usage: run-tests BIN [ARGS...]"
  local bin dw repo
  bin=$(readlink -f "$1"); shift
  dw=$(dirname "$(dirname "$bin")")/dirwatcher
  repo=$(cd "$(dirname "$0")/.." && pwd -P)
  [ -x "$bin" ] || die "no test binary \`$bin\`"
  [ -x "$dw" ] || die "no dirwatcher binary \`$dw\` beside the test binary: build it (cargo test --no-run)"
  nspawn_alive || die "the site container is not running; start it with \`$ME up\`"
  # Copied through the container's own view of its file system, not into $ROOT: a checkout under /tmp
  # would land below the container's /tmp, which its systemd mounts a tmpfs over (CI clones may be there).
  # A fresh copy each time: the root file system outlives a run, and a file a later commit removed
  # (a module split in two) must not stay behind for the tests that read the source tree.
  [ "$repo" != / ] || die "the repository cannot be /"
  ct rm -rf --one-file-system -- "$repo"
  ct mkdir -p "$(dirname "$bin")" "$(dirname "$dw")" "$repo"
  tar -C / -cf - "${bin#/}" "${dw#/}" | ct tar -C / -xf -
  if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$repo" ls-files -z | (cd "$repo" && tar --null -T - -cf -) | ct tar -C "$repo" -xf -
  fi
  ct env DIRWATCHER_REQUIRE_SLURM=1 DIRWATCHER_REQUIRE_SLURMREST=1 "$bin" "$@"
}

case "${1:-}" in
  up) shift; cmd_up "$@";;
  down) shift; cmd_down "$@";;
  status) cmd_status;;
  run) shift; [ "${1:-}" = -- ] && shift; [ $# -gt 0 ] || set -- bash -l; ct "$@";;
  run-tests) shift; cmd_run_tests "$@";;
  -h|--help) usage;;
  *) usage >&2; exit 2;;
esac
