#!/bin/bash
# packaging/check-units.sh - CI check of diskd's systemd units, offline (no running systemd
# needed, no root needed):
#   1. `systemd-analyze verify --man=no` passes on systemd/*.service, systemd/*.socket and
#      systemd/user/*.service;
#   2. `systemd-analyze security --offline=true` rates every service, diskd.service and the
#      user unit diskd-notify.service (with --user), at THRESHOLD tenths or better (default
#      14, an exposure of 1.4: diskd.service has 1.3, systemd-resolved 2.4). The scores are
#      printed.
#
# verify checks that every program in Exec*= exists. The system units are therefore verified
# in a scratch root (--root) holding this machine's own units (targets, dbus.socket, ...),
# ours, and an empty executable for each program our units run; the user units (--user has
# no --root) as copies whose Exec*= programs point at those executables. That checks the
# units, not the binaries (the package and `make e2e` check those).
set -euo pipefail
cd "$(dirname "$0")/.."

THRESHOLD=${THRESHOLD:-14}
command -v systemd-analyze >/dev/null || {
	echo "check-units: systemd-analyze is missing (apt-get install systemd)" >&2
	exit 2
}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
sysdir=$root/usr/lib/systemd/system
mkdir -p "$sysdir"
for d in /usr/lib/systemd/system /lib/systemd/system; do
	[ -d "$d" ] && cp -a "$d/." "$sysdir/"
done

shopt -s nullglob
system_units=(systemd/*.service systemd/*.socket)
user_units=(systemd/user/*.service)
((${#system_units[@]})) || {
	echo "check-units: no units in systemd/" >&2
	exit 1
}
cp "${system_units[@]}" "$sysdir/"

# An empty executable for every absolute program path in an Exec*= line (after the
# prefixes @ - : + !).
while read -r prog; do
	mkdir -p "$root$(dirname "$prog")"
	[ -e "$root$prog" ] || printf '#!/bin/sh\n' >"$root$prog"
	chmod 0755 "$root$prog"
done < <(sed -En 's/^Exec[A-Za-z]*=[-@:+!]*(\/[^[:space:]]+).*/\1/p' "${system_units[@]}" "${user_units[@]}" | sort -u)

status=0
# verify: its exit status catches only some errors; it reports others (an unknown key, a bad
# value) on stderr and still exits 0. Any message at all fails the check.
verify() {
	local out
	out=$(systemd-analyze verify --man=no "$@" 2>&1) || status=1
	if [ -n "$out" ]; then
		printf '%s\n' "$out" >&2
		status=1
	fi
}
names=()
for u in "${system_units[@]}"; do names+=("$(basename "$u")"); done
echo "verify: ${names[*]}"
verify --root="$root" "${names[@]}"
if ((${#user_units[@]})); then
	# --root does not work with --user: verify copies whose programs point into the
	# scratch root instead.
	mkdir -p "$root/user-check" "$root/xdg-runtime"
	chmod 0700 "$root/xdg-runtime"
	checked=()
	for u in "${user_units[@]}"; do
		sed -E "s#^(Exec[A-Za-z]*=[-@:+!]*)/#\\1$root/#" "$u" >"$root/user-check/$(basename "$u")"
		checked+=("$root/user-check/$(basename "$u")")
	done
	echo "verify --user: ${user_units[*]}"
	XDG_RUNTIME_DIR=$root/xdg-runtime verify --user "${checked[@]}"
fi

# security UNIT [--user]
security() {
	local u=$1 score
	shift
	score=$(XDG_RUNTIME_DIR=$root/xdg-runtime systemd-analyze security "$@" --offline=true --no-pager "$u" 2>/dev/null |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if XDG_RUNTIME_DIR=$root/xdg-runtime systemd-analyze security "$@" --offline=true --threshold="$THRESHOLD" \
		--no-pager "$u" >/dev/null 2>&1; then
		echo "security: $u exposure $score (threshold $THRESHOLD/10): ok"
	else
		echo "security: $u exposure ${score:-?} is above $THRESHOLD/10" >&2
		XDG_RUNTIME_DIR=$root/xdg-runtime systemd-analyze security "$@" --offline=true --no-pager "$u" | grep -v '✓' >&2 || true
		status=1
	fi
}
mkdir -p "$root/xdg-runtime"
chmod 0700 "$root/xdg-runtime"
for u in systemd/*.service; do security "$u"; done
for u in "${user_units[@]}"; do security "$u" --user; done
[ "$status" = 0 ] && echo "check-units: ok" || echo "check-units: FAILED" >&2
exit "$status"
