#!/bin/sh
# packaging/deb-changelog.sh VERSION: the Debian changelog of this build on stdout.
#
# packaging/debian/changelog holds the releases. A development build (a VERSION that is not the
# newest entry's) gets an entry of its own on top, dated with the commit's date (see
# packaging/version.sh), so that the installed /usr/share/doc/diskd/changelog.gz names the
# version that is installed and the build stays reproducible.
set -eu
cd "$(dirname "$0")/.."
version=${1:?usage: $0 VERSION}
top=$(sed -n '1s/^diskd (\([^)]*\)).*/\1/p' packaging/debian/changelog)
if [ "$version" != "$top" ]; then
	commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
	maint=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' packaging/debian/changelog | head -n 1)
	cat <<-END
		diskd ($version) UNRELEASED; urgency=medium

		  * Development build of commit $commit, not a release.

		 -- $maint  $(LC_ALL=C date -u -R -d "@$(packaging/version.sh --epoch)")

	END
fi
cat packaging/debian/changelog
