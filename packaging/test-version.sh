#!/bin/bash
# packaging/test-version.sh - checks packaging/version.sh in a scratch git repository: releases
# are their tag, development builds sort after the last release and before the next one and
# in commit order (dpkg --compare-versions), a VERSION not raised after a release is refused.
# Run by `make test`; needs git and dpkg, not root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
mkdir packaging
cp "$here/version.sh" packaging/
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.invalid
git init -q -b main .
passed=0 failed=0
ok() {
	passed=$((passed + 1))
	echo "ok      $*"
}
bad() {
	failed=$((failed + 1))
	echo "FAIL    $*"
}
# commit WHEN: a commit dated WHEN (seconds since 1970)
commit() {
	echo "$1" >stamp
	git add -A
	GIT_COMMITTER_DATE="@$1 +0000" GIT_AUTHOR_DATE="@$1 +0000" git commit -q -m "at $1"
}
v() { packaging/version.sh; }
# order A OP B: dpkg --compare-versions
order() {
	if dpkg --compare-versions "$1" "$2" "$3"; then ok "$1 $2 $3"; else bad "$1 $2 $3"; fi
}
want() { # want WHAT GOT EXPECTED
	if [ "$2" = "$3" ]; then ok "$1: $2"; else bad "$1: got '$2', want '$3'"; fi
}
match() { # match WHAT GOT REGEX
	if [[ $2 =~ $3 ]]; then ok "$1: $2"; else bad "$1: '$2' does not match $3"; fi
}

echo 0.1.0 >packaging/VERSION
commit 1795000000 # 2026-11-18 12:26:40 UTC
dev0=$(v)
match "untagged, before any release" "$dev0" '^0\.1\.0~git20261118\.110640\.[0-9a-f]{7}$'
order "$dev0" lt 0.1.0
want "--date" "$(packaging/version.sh --date)" 2026-11-18
want "--epoch" "$(packaging/version.sh --epoch)" 1795000000
want "SOURCE_DATE_EPOCH" "$(SOURCE_DATE_EPOCH=1800000000 packaging/version.sh --date)" 2027-01-15

git tag v0.1.0
want "tagged commit" "$(v)" 0.1.0
echo change >>stamp
want "tagged commit, uncommitted change" "$(v)" 0.1.0+dirty
order 0.1.0 lt 0.1.0+dirty
order 0.1.0+dirty lt 0.2.0~git20261118.111000.0000000
git checkout -q -- stamp

commit 1795000100
if out=$(v 2>&1); then
	bad "VERSION not raised after the release v0.1.0 was accepted: $out"
else
	match "VERSION not raised after a release" "$out" 'not above the last release v0\.1\.0'
fi
echo 0.2.0 >packaging/VERSION
commit 1795000200
dev1=$(v)
commit 1795086600 # one day later
dev2=$(v)
match "development build" "$dev1" '^0\.2\.0~git20261118\.111000\.[0-9a-f]{7}$'
order 0.1.0 lt "$dev1"
order "$dev1" lt 0.2.0
order "$dev1" lt "$dev2"
order "$dev2" lt 0.2.0
order "$dev2" lt 0.2.0~rc1
echo change >>stamp
dirty=$(v)
want "dirty build" "$dirty" "$dev2.dirty"
order "$dev2" lt "$dirty"
order "$dirty" lt 0.2.0
git checkout -q -- stamp
git tag v0.2.0-rc1
want "release candidate tag" "$(v)" 0.2.0~rc1
order 0.2.0~rc1 lt 0.2.0

echo 'x.y' >packaging/VERSION
if v >/dev/null 2>&1; then bad "a malformed VERSION was accepted"; else ok "a malformed VERSION is refused"; fi
echo 0.2.0 >packaging/VERSION
rm -rf .git
want "no git (release tarball)" "$(v)" 0.2.0

echo "version: $passed passed, $failed failed"
[ "$failed" = 0 ]
