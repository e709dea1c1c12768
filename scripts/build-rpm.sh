#!/usr/bin/env bash
# scripts/build-rpm.sh — build the RPM target/rpm/dirwatcher-<version>-1.<arch>.rpm beside the .deb.
#
#   scripts/build-rpm.sh            build it with rpmbuild (packaging/rpm/dirwatcher.spec) and lint it
#   scripts/build-rpm.sh --check    build it, then prove it as far as a Debian host can (needs root):
#                                   its files against the .deb's, rpmlint, and its scriptlets in a scratch
#                                   root (rpm --root): install under two preset policies, upgrade, erase
#
# --check is implied when running as root with CI=true. rpm and rpmlint come from Debian's packages
# (installed when missing and root). What the check cannot show here: docs/install.md, "The RPM".
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
die() { echo "error: $*" >&2; exit 1; }

check=0
for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument \`$arg\` (try --help)" ;;
    esac
done
if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ]; then check=1; fi

say "rpm tools"
if ! command -v rpmbuild >/dev/null || ! command -v rpmlint >/dev/null; then
    [ "$(id -u)" = 0 ] || die "rpmbuild or rpmlint missing: sudo apt-get install rpm rpmlint"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q rpm rpmlint ||
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rpm rpmlint; }; } >/dev/null
fi
rpmbuild --version
rpmlint --version

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(rpm --eval '%{_arch}')
top=$PWD/target/rpm

say "release build"
cargo build --release --locked
bin=target/release/dirwatcher

say "man pages and completions (from the CLI definition)"
rm -rf target/assets
"$bin" __generate man target/assets/man
"$bin" __generate completions target/assets/completions

# rpmbuild RELEASE: the package built from this tree; release 2 is only the --check's upgrade.
build() {
    rpmbuild -bb --quiet --define "_topdir $top" --define "dw_src $PWD" --define "dw_version $version" \
        --define "dw_release $1" packaging/rpm/dirwatcher.spec >/dev/null
    echo "$top/RPMS/$arch/dirwatcher-$version-$1.$arch.rpm"
}

say "package"
rm -rf "$top"
rpm=$(build 1)
[ -f "$rpm" ] || die "rpmbuild did not make $rpm"
rpm -qip "$rpm"
rpm -qlvp "$rpm"
echo "built $rpm"

say "rpmlint (each remaining finding is explained in docs/install.md, \"The RPM\")"
lint=$(rpmlint -c packaging/rpm/rpmlint.toml -r packaging/rpm/rpmlintrc "$rpm" 2>&1) || { echo "$lint"; die "rpmlint found errors"; }
echo "$lint" | tail -n 3
# A warning fails too: each accepted finding is filtered in packaging/rpm/rpmlintrc, with its reason.
echo "$lint" | grep -q ' 0 errors, 0 warnings' || { echo "$lint"; die "rpmlint found something new: fix it, or filter and explain it"; }

[ "$check" = 1 ] || exit 0
[ "$(id -u)" = 0 ] || die "--check installs the package into a scratch root: run it as root"

say "check: the same files as the .deb"
deb=$(ls -t target/debian/dirwatcher_"$version"[-_]*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ] || [ "$deb" -ot "$bin" ]; then
    bash scripts/build-deb.sh >target/rpm/build-deb.log 2>&1 || { tail -n 20 target/rpm/build-deb.log >&2; die "build-deb.sh failed"; }
    deb=$(ls -t target/debian/dirwatcher_"$version"[-_]*.deb | head -n 1)
fi
echo "against $deb"
# Each package's regular files as "MODE PATH", in one layout: Debian's places mapped to RHEL's
# (/lib/systemd → /usr/lib/systemd, zsh's vendor-completions → site-functions), man pages uncompressed.
# The .deb's copyright file is Debian's (the RPM states the licence in its header).
dpkg-deb --fsys-tarfile "$deb" | tar -tvf - | awk '$1 ~ /^-/ {print substr($1, 2), $6}' \
    | sed -e 's| \./| /|' -e 's| /lib/systemd/| /usr/lib/systemd/|' \
          -e 's|/zsh/vendor-completions/|/zsh/site-functions/|' -e 's|\.gz$||' \
    | grep -v ' /usr/share/doc/dirwatcher/copyright$' | sort >target/rpm/deb-files.txt
rpm_files() { rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm"; }
rpm_files | awk '$1 ~ /^-/ {print substr($1, 2), $3}' | sed -e 's|\.gz$||' | sort >target/rpm/rpm-files.txt
if ! diff -u target/rpm/deb-files.txt target/rpm/rpm-files.txt; then
    die "the .rpm and the .deb ship different files (above: - only in $deb, + only in $rpm)"
fi
echo "$(wc -l <target/rpm/rpm-files.txt) files, the same in both"
# The directories the .deb's postinst makes, the RPM owns: same owner and mode.
for d in /var/lib/dirwatcher /var/log/dirwatcher; do
    rpm_files | grep -qx "drwxr-x--- dirwatcher:dirwatcher $d" || die "the RPM does not own $d (0750 dirwatcher)"
done

say "check: scriptlets in a scratch root (rpm --root; no systemd running in it)"
R=$PWD/target/rpm/root
base_cache=/var/tmp/dirwatcher-rpm-root.tar.zst
# scripts/site-cluster.sh's cached Debian 13 root, whichever cache version is newest (test.sh runs this
# after the site lines, so a fresh machine has it by then).
site_cache=$(ls -t "${DIRWATCHER_SITE_CACHE:-/var/tmp/dirwatcher-site-cache}"/rootfs-trixie-slurm-v*.tar.zst 2>/dev/null | head -n 1 || true)
rm -rf --one-file-system "$R"
mkdir -p "$R"
if [ -s "$base_cache" ]; then
    tar -C "$R" -I zstd -xpf "$base_cache"
elif [ -n "$site_cache" ] && [ -s "$site_cache" ]; then
    # scripts/site-cluster.sh's Debian 13 (systemd 257): already on this machine.
    tar -C "$R" -I zstd -xpf "$site_cache"
else
    # A minimal Debian 13 with systemd (systemctl, presets) and passwd (useradd), cached for next time.
    command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >/dev/null
    mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)
    mmdebstrap --variant=minbase --include=systemd,passwd trixie "$base_cache" "deb ${mirror:-http://deb.debian.org/debian} trixie main" \
        >target/rpm/mmdebstrap.log 2>&1 || { tail -n 20 target/rpm/mmdebstrap.log >&2; die "mmdebstrap failed"; }
    tar -C "$R" -I zstd -xpf "$base_cache"
fi
in_root() { chroot "$R" "$@"; }
wants=/etc/systemd/system/multi-user.target.wants
enabled() { [ -L "$R$wants/$1" ]; }
rpm --root "$R" --initdb
# --nodeps: the scratch root's rpm database knows none of its (Debian) packages. --force-debian: Debian's
# rpm otherwise warns that dpkg owns this system (here it does not own the scratch root).
debian_flag=$(rpm --help 2>/dev/null | grep -o -- '--force-debian' | head -n 1 || true)
inst() { rpm --root "$R" --nodeps $debian_flag "$@"; }
preset_policy() {
    mkdir -p "$R/etc/systemd/system-preset"
    printf '%s\n' "$1" >"$R/etc/systemd/system-preset/00-dirwatcher-check.preset"
}

# 1. RHEL's default policy (disable *): installed, user and directories made, nothing enabled.
preset_policy 'disable *'
getent_in() { in_root getent passwd dirwatcher; }
! getent_in >/dev/null || die "the scratch root already has a user dirwatcher"
inst -i "$rpm"
user=$(getent_in) || die "%pre did not create the user dirwatcher"
echo "user: $user"
case "$user" in dirwatcher:x:*:*:dirwatcher\ service:/var/lib/dirwatcher:/sbin/nologin) ;; *) die "user: $user" ;; esac
uid=$(echo "$user" | cut -d: -f3)
[ "$uid" -lt 1000 ] || die "dirwatcher is not a system user (uid $uid)"
for d in /var/lib/dirwatcher /var/log/dirwatcher; do
    [ "$(stat -c '%u %a' "$R$d")" = "$uid 750" ] || die "$d: $(stat -c '%u %a' "$R$d")"
done
[ -x "$R/usr/bin/dirwatcher" ] && [ -f "$R/usr/lib/systemd/system/dirwatcher@.service" ] || die "files missing"
in_root /usr/bin/dirwatcher --version
! enabled dirwatcher.service || die "installed under 'disable *' yet enabled"
inst -e dirwatcher

# 2. A site policy that enables it: %post's preset enables the plain service (and starts nothing).
preset_policy 'enable dirwatcher.service'
inst -i "$rpm"
enabled dirwatcher.service || die "installed under 'enable dirwatcher.service' yet not enabled"
# An instance the admin enabled, and a ledger the service wrote.
in_root systemctl enable dirwatcher@check.service >/dev/null 2>&1
enabled dirwatcher@check.service || die "could not enable dirwatcher@check in the scratch root"
echo ledger >"$R/var/lib/dirwatcher/state.db"

# 3. Upgrade (release 2 over 1): nothing disabled, the ledger and the user kept, the new files in place.
rpm2=$(build 2)
inst -U "$rpm2"
installed=$(rpm --root "$R" -q dirwatcher)
[ "$installed" = "dirwatcher-$version-2.$arch" ] || die "upgrade: $installed is installed"
enabled dirwatcher.service && enabled dirwatcher@check.service || die "the upgrade disabled a unit"
[ "$(cat "$R/var/lib/dirwatcher/state.db")" = ledger ] || die "the upgrade lost the ledger"
[ "$(getent_in)" = "$user" ] || die "the upgrade changed the user: $(getent_in)"
# A downgrade (release 1 over 2) is refused by rpm itself (no --oldpackage): release 2 stays, untouched.
if inst -U "$rpm" >"$R/downgrade.log" 2>&1; then die "rpm let a downgrade through"; fi
grep -q "newer" "$R/downgrade.log" || die "the downgrade was refused for another reason: $(cat "$R/downgrade.log")"
[ "$(rpm --root "$R" -q dirwatcher)" = "$installed" ] || die "the refused downgrade changed the package"
enabled dirwatcher.service || die "the refused downgrade disabled the service"

# 4. Erase: the service and every instance disabled, the files gone; the ledger, its directory and
#    the user stay (as `dpkg -r`; RPM has no purge).
inst -e dirwatcher
! enabled dirwatcher.service || die "erase left dirwatcher.service enabled"
! enabled dirwatcher@check.service || die "erase left dirwatcher@check.service enabled"
! [ -e "$R/usr/bin/dirwatcher" ] || die "erase left /usr/bin/dirwatcher"
[ -f "$R/var/lib/dirwatcher/state.db" ] || die "erase removed the ledger"
getent_in >/dev/null || die "erase removed the user"
rm -rf --one-file-system "$R"
echo "package check passed: $rpm"
