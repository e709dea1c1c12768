#!/usr/bin/env bash
# scripts/build-deb.sh — build the Debian package target/debian/dirwatcher_<version>_<arch>.deb.
#
#   scripts/build-deb.sh            build it (installs cargo-deb from crates.io if missing)
#   scripts/build-deb.sh --check    build it, then prove it: dpkg -i, run /usr/bin/dirwatcher --version,
#                                   check the files, the user and the unit (systemd-analyze verify), dpkg -r
#
# --check is implied when running as root with CI=true. It needs root and refuses to touch a dirwatcher
# package that was installed before it started.
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

say "cargo-deb"
if ! command -v cargo-deb >/dev/null; then
    cargo install cargo-deb --locked
fi
cargo deb --version

say "release build"
cargo build --release --locked
bin=target/release/dirwatcher

say "man pages and completions (from the CLI definition)"
rm -rf target/assets
"$bin" __generate man target/assets/man
"$bin" __generate completions target/assets/completions

say "package"
deb=$(cargo deb --no-build --locked --output target/debian/ | tail -n 1)
[ -f "$deb" ] || die "cargo deb did not report a .deb (got \`$deb\`)"
dpkg-deb --info "$deb" | sed -n '1,20p'
dpkg-deb --contents "$deb"
echo "built $deb"

[ "$check" = 1 ] || exit 0

say "check: install, run, remove"
[ "$(id -u)" = 0 ] || die "--check installs the package: run it as root"
if dpkg-query -W -f='${Status}' dirwatcher 2>/dev/null | grep -q 'install ok installed'; then
    die "a dirwatcher package is already installed; remove it first (dpkg -r dirwatcher), this check will not replace it"
fi
cleanup() { dpkg -r dirwatcher >/dev/null || true; }
trap cleanup EXIT
dpkg -i "$deb"
/usr/bin/dirwatcher --version
version=$(/usr/bin/dirwatcher --version)
want="dirwatcher $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1) (commit "
case "$version" in
    "$want"[0-9a-f]*", built "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]")" | "$want"unknown", built "*) ;;
    *) die "unexpected version output \`$version\` (want \`$want<commit>, built <date>)\`)" ;;
esac
for f in /lib/systemd/system/dirwatcher.service /lib/systemd/system/dirwatcher@.service \
         /usr/share/dirwatcher/process_dir.py \
         /usr/share/doc/dirwatcher/config.example.yaml /usr/share/doc/dirwatcher/README.package \
         /usr/share/bash-completion/completions/dirwatcher /usr/share/zsh/vendor-completions/_dirwatcher \
         /usr/share/fish/vendor_completions.d/dirwatcher.fish; do
    [ -f "$f" ] || die "the package lacks $f"
done
ls /usr/share/man/man1/dirwatcher.1* >/dev/null || die "the package lacks the man page"
man -w dirwatcher >/dev/null || die "man cannot find dirwatcher(1)"
# One page per command, as `dirwatcher __generate man` writes them.
for cmd in run status explain retry cancel forget check-config install uninstall; do
    man -w "dirwatcher-$cmd" >/dev/null || die "man cannot find dirwatcher-$cmd(1)"
done
getent passwd dirwatcher >/dev/null || die "postinst did not create the user dirwatcher"
[ "$(stat -c '%U %a' /var/lib/dirwatcher)" = "dirwatcher 750" ] || die "/var/lib/dirwatcher: $(stat -c '%U %a' /var/lib/dirwatcher)"
if command -v systemd-analyze >/dev/null; then
    # With the man page installed, verify checks Documentation=man:dirwatcher(1) too.
    systemd-analyze verify /lib/systemd/system/dirwatcher.service
    # A template is verified through an instance of it.
    systemd-analyze verify /lib/systemd/system/dirwatcher@check.service
    systemd-analyze security --offline=true /lib/systemd/system/dirwatcher.service | tail -n 1
elif [ "${CI:-}" = true ]; then
    die "systemd-analyze is required in CI"
fi
trap - EXIT
dpkg -r dirwatcher
! [ -e /usr/bin/dirwatcher ] || die "dpkg -r left /usr/bin/dirwatcher"
echo "package check passed: $deb"
