#!/bin/sh
# packaging/version.sh - the version of this build, Debian-safe, on stdout.
#
#   packaging/version.sh            the version (used by the Makefile for binaries and the .deb)
#   packaging/version.sh --date     the build date, YYYY-MM-DD (man pages' .TH, changelog)
#   packaging/version.sh --epoch    the same as seconds since 1970 (SOURCE_DATE_EPOCH)
#
# packaging/VERSION names the NEXT release. A commit tagged vX.Y.Z (with a clean tree) is
# release X.Y.Z. Any other build is a development build of the next release:
#
#     0.2.0~git20261201.153012.abc1234         (commit date and time in UTC, short hash)
#     0.2.0~git20261201.153012.abc1234.dirty   (uncommitted changes)
#     0.1.0+dirty                              (uncommitted changes on the release v0.1.0)
#
# "~" sorts before everything, so a development build sorts after the last release and before
# the next (dpkg --compare-versions; packaging/test-version.sh checks it), and the date and
# time order development builds of one branch. A "-" in a tag (v1.0.0-rc1) becomes "~".
# After a release, raise packaging/VERSION: this script refuses a VERSION that is not above
# the newest release tag, since its development builds would sort before that release.
#
# The date is the commit's (git log %ct) so that builds are reproducible; SOURCE_DATE_EPOCH
# overrides it; without git it is the modification time of packaging/VERSION.
set -eu
cd "$(dirname "$0")/.."

base=$(tr -d ' \n' <packaging/VERSION)
case $base in
'' | *[!0-9.]* | .* | *.)
	echo "packaging/VERSION: '$base' is not a version such as 1.2.0" >&2
	exit 1
	;;
esac

git_ok() { git rev-parse --is-inside-work-tree >/dev/null 2>&1; }

epoch=${SOURCE_DATE_EPOCH:-}
if [ -z "$epoch" ]; then
	if git_ok; then
		epoch=$(git log -1 --format=%ct)
	else
		epoch=$(stat -c %Y packaging/VERSION)
	fi
fi
case ${1:-} in
--epoch)
	echo "$epoch"
	exit 0
	;;
--date)
	date -u -d "@$epoch" +%Y-%m-%d
	exit 0
	;;
'') ;;
*)
	echo "usage: $0 [--date|--epoch]" >&2
	exit 2
	;;
esac

if ! git_ok; then
	# A source tree without git (an unpacked release tarball): the release itself.
	echo "$base"
	exit 0
fi

dirty=
git diff --quiet HEAD -- 2>/dev/null || dirty=.dirty

# The newest release tag reachable from HEAD, and whether HEAD is it.
last=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || true)
if [ -n "$last" ] && [ "$(git rev-list -n1 "$last")" = "$(git rev-parse HEAD)" ]; then
	# The release; with uncommitted changes on top, after it (and before the next).
	echo "$(echo "${last#v}" | tr - '~')${dirty:++dirty}"
	exit 0
fi
if [ -n "$last" ] && command -v dpkg >/dev/null 2>&1; then
	rel=$(echo "${last#v}" | tr - '~')
	if ! dpkg --compare-versions "$base" gt "$rel"; then
		echo "packaging/VERSION ($base) is not above the last release $last: raise it to the next release" >&2
		exit 1
	fi
fi
stamp=$(date -u -d "@$(git log -1 --format=%ct)" +%Y%m%d.%H%M%S)
echo "$base~git$stamp.$(git rev-parse --short=7 HEAD)$dirty"
