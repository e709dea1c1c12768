#!/usr/bin/env bash
# scripts/build-prev-deb.sh — build the .deb of the previous release into target/debian/previous/, for
# the upgrade check of tests/site (install it, run jobs, install this checkout's .deb over it).
#
#   scripts/build-prev-deb.sh
#
# The previous release is named in packaging/previous-release: its tag and commit (the commit is used
# when a clone has no tags). Its source is exported with `git archive` and built by its own
# scripts/build-deb.sh, in a target directory seeded with a copy of this checkout's release build: the
# same dependency pins are reused, so only dirwatcher itself is compiled again.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "error: $*" >&2; exit 1; }
case "${1:-}" in
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) die "unknown argument \`$1\` (try --help)" ;;
esac

read -r tag commit <packaging/previous-release || die "packaging/previous-release must hold: TAG COMMIT"
have=$(git rev-parse -q --verify "refs/tags/$tag^{commit}" || git rev-parse -q --verify "$commit^{commit}") \
    || die "this clone has neither the tag $tag nor its commit $commit: fetch them (git fetch --unshallow --tags)"
[ "$have" = "$commit" ] || die "the tag $tag is $have, packaging/previous-release says $commit: correct one of them"

t=$(date +%s)
rm -rf target/previous target/debian/previous
mkdir -p target/previous/src/target target/debian/previous
git archive "$commit" | tar -x -C target/previous/src
if [ -d target/release ]; then cp -a target/release target/previous/src/target/; fi
# Not CI: its --check would install the package on this host; the site check installs it where it belongs.
(cd target/previous/src && env -u CI DIRWATCHER_BUILD_COMMIT="${commit:0:12}" bash scripts/build-deb.sh >../build.log 2>&1) \
    || { tail -n 30 target/previous/build.log >&2; die "the build of $tag failed (log: target/previous/build.log)"; }
cp target/previous/src/target/debian/dirwatcher_*.deb target/debian/previous/
rm -rf target/previous
echo "built $(ls target/debian/previous/*.deb) ($tag, $commit) in $(( $(date +%s) - t )) s"
