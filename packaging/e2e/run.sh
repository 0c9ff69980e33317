#!/bin/bash
# packaging/e2e/run.sh - end-to-end test of the diskd Debian package on real systemd.
#
#   packaging/e2e/run.sh bin/diskd_VERSION_ARCH.deb    as root; `make e2e` builds the package and runs this
#   KEEP=1 packaging/e2e/run.sh DEB                     leave the machines up afterwards, then
#   packaging/e2e/run.sh down WORKDIR                   remove what a KEEP=1 run left
#
# Boots two Debian 12 machines with systemd-nspawn (systemd as PID 1, a real system bus) on a
# bridge of their own, gives each its own loop-device disk (bound into that machine only),
# installs the package in both with apt, exactly as README's Install section says, and checks
# the daemon the way an administrator would: package contents and version, log priorities in
# the journal, unit state, STATUS=, the README's key recipe, control socket and its group,
# D-Bus and diskctl, the sandboxed user unit in a real user manager, restart, watchdog,
# goodbye, package removal, purge and installing again.
#
# The Debian 12 root file system is made once with debootstrap and kept as a zstd tarball in
# $DISKD_E2E_CACHE (default /var/cache/diskd-e2e): debootstrap (~40s) runs once, later runs
# unpack the image in a few seconds. A whole run takes about 45s warm, 90s cold.
# MIRROR overrides the Debian mirror (default: the one this machine's apt uses).
#
# Safety: nothing leaves the bridge this script makes (no address on it in the root
# namespace, the machines have no route out, multicast TTL 1). Only processes this script
# started are stopped, by PID. Everything made is removed on exit, also on failure.
#
# The host needs root, Debian 12, systemd-container, debootstrap, zstd, e2fsprogs, iproute2,
# util-linux, overlayfs, veth and bridge support; missing packages are installed with apt.
# Host PID 1 need not be systemd: nspawn runs with --register=no --keep-unit, each machine in
# a cgroup of its own made here.
set -euo pipefail

SUITE=bookworm
# What the machines need besides the minimal base: a real init, the system bus, blkid, ip.
ROOTFS_PKGS=systemd,systemd-sysv,dbus,iproute2,util-linux
CACHE=${DISKD_E2E_CACHE:-/var/cache/diskd-e2e}
# Bump ROOTFS_REV when the image tweaks below change: the cache key changes with it.
ROOTFS_REV=2
TARBALL=$CACHE/$SUITE-$(printf '%s\n' "$SUITE" "$ROOTFS_PKGS" "$ROOTFS_REV" | sha256sum | cut -c1-12).tar.zst
PATHS=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SOCK=/run/diskd/diskd.sock

T0=$(date +%s.%N)
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
log() { printf '[%6.1fs] %s\n' "$(dt "$T0" "$(now)")" "$*" >&2; }
PASSED=()
pass() {
	PASSED+=("$*")
	log "PASS    $*"
}
die() {
	log "FAIL    $*"
	log "e2e: ${#PASSED[@]} passed, 1 failed"
	exit 1
}

# ---------- host ----------
# cgroup hierarchies each nspawn is placed in: hybrid host (v1 + name=systemd + cgroup2 at
# /sys/fs/cgroup/unified) -> both; pure cgroup2 host -> the root.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	CGS=(/sys/fs/cgroup)
else
	CGS=(/sys/fs/cgroup/systemd /sys/fs/cgroup/unified)
fi

ensure_host_pkgs() {
	local missing=() c p
	for c in systemd-nspawn:systemd-container debootstrap:debootstrap zstd:zstd \
		mkfs.ext4:e2fsprogs ip:iproute2 losetup:mount nsenter:util-linux; do
		command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
	done
	if ((${#missing[@]})); then
		log "installing on the host: ${missing[*]}"
		apt-get update -q >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
	fi
	for p in overlay veth bridge loop; do modprobe -q "$p" 2>/dev/null || true; done
}

mirror() {
	local m=${MIRROR:-}
	[ -n "$m" ] || m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
	echo "${m:-http://deb.debian.org/debian}"
}

# The cached image: debootstrap once, then a tarball that unpacks in under a second.
ensure_tarball() {
	[ -f "$TARBALL" ] && return
	mkdir -p "$CACHE"
	local b t
	b=$(mktemp -d "$CACHE/build.XXXXXX")
	t=$(now)
	log "building the $SUITE image (debootstrap; only the first run does this)"
	if ! debootstrap --variant=minbase --include="$ROOTFS_PKGS" "$SUITE" "$b/root" "$(mirror)" \
		>"$b/debootstrap.log" 2>&1; then
		tail -n 20 "$b/debootstrap.log" >&2
		rm -rf "$b"
		die "debootstrap failed"
	fi
	log "debootstrap took $(dt "$t" "$(now)")s"
	# Image tweaks: networkd configures host0 (networkd's Also= enables wait-online, so
	# network-online.target means "host0 has its address"); no baked-in identity. The
	# machines have no network beyond the bridge: every dependency of the package must be in
	# ROOTFS_PKGS already, and `apt install ./x.deb` then needs no package lists.
	systemctl --root="$b/root" enable systemd-networkd.service >/dev/null 2>&1
	: >"$b/root/etc/machine-id"
	echo localhost >"$b/root/etc/hostname"
	tar --numeric-owner --xattrs --xattrs-include='*' -I 'zstd -T0 -3' -C "$b/root" -cpf "$b/image.tar.zst" .
	find "$CACHE" -maxdepth 1 -name "$SUITE-*.tar.zst" -delete # older revisions of the image
	mv "$b/image.tar.zst" "$TARBALL"
	rm -rf "$b"
	log "cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}

# ---------- machines ----------
# machine_up NAME IP [extra systemd-nspawn args...]
machine_up() {
	local n=$1 ip=$2 d=$WORK/c/$1 h
	shift 2
	mkdir -p "$d"/{upper,work,merged}
	mount -t overlay overlay -o "lowerdir=$WORK/rootfs,upperdir=$d/upper,workdir=$d/work" "$d/merged"
	echo "$n" >>"$WORK/machines"
	echo "$n" >"$d/merged/etc/hostname"
	systemd-id128 new >"$d/merged/etc/machine-id"
	mkdir -p "$d/merged/etc/systemd/network"
	cat >"$d/merged/etc/systemd/network/10-host0.network" <<-EOF
		[Match]
		Name=host0
		[Network]
		Address=$ip/24
		LinkLocalAddressing=no
		IPv6AcceptRA=no
		[Route]
		Destination=224.0.0.0/4
	EOF
	for h in "${CGS[@]}"; do mkdir -p "$h/diskd-e2e-$n"; done
	(
		for h in "${CGS[@]}"; do echo "$BASHPID" >"$h/diskd-e2e-$n/cgroup.procs"; done
		# The machine gets a pure cgroup2 /sys/fs/cgroup, like a Debian 12 host. bpf() is let
		# through nspawn's seccomp filter so that the machine's systemd can attach device
		# programs to cgroups: DevicePolicy=/DeviceAllow= are then enforced as on a real host
		# (without it they are silently not applied).
		export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
		exec systemd-nspawn -q -D "$d/merged" -M "$n" -b \
			--register=no --keep-unit --console=passive \
			--network-bridge="$BR" --system-call-filter=bpf "$@"
	) </dev/null >"$d/console.log" 2>&1 &
	echo $! >"$d/nspawn.pid"
}

# Wait until PID 1 of the machine is systemd and the boot has finished.
machine_wait() {
	local n=$1 d=$WORK/c/$1 np leader='' st='' i c kids
	np=$(cat "$d/nspawn.pid")
	for ((i = 0; i < 300; i++)); do
		kids=()
		# (no newline at its end: read fails at EOF but fills kids)
		read -ra kids <"/proc/$np/task/$np/children" 2>/dev/null || true
		for c in "${kids[@]}"; do
			[ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && leader=$c
		done
		[ -n "$leader" ] && break
		kill -0 "$np" 2>/dev/null || {
			cat "$d/console.log" >&2
			die "systemd-nspawn for $n exited"
		}
		sleep 0.1
	done
	[ -n "$leader" ] || die "$n: no systemd inside after 30s"
	echo "$leader" >"$d/leader.pid"
	for ((i = 0; i < 120; i++)); do
		st=$(nsenter -t "$leader" -a -- env -i PATH=$PATHS systemctl is-system-running --wait 2>/dev/null) || true
		case $st in running | degraded) break ;; esac
		sleep 0.5
	done
	case $st in running | degraded) ;; *) die "$n: boot did not finish (state '$st')" ;; esac
	log "$n: booted ($st), leader pid $leader"
}

# mexec NAME CMD...: run CMD as root inside the machine (all its namespaces); stdin, stdout,
# stderr and the exit status pass through.
mexec() {
	local n=$1
	shift
	nsenter -t "$(cat "$WORK/c/$n/leader.pid")" -a -- \
		env -i PATH=$PATHS LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive SYSTEMD_COLORS=0 "$@"
}

machine_down() {
	local n=$1 d=$WORK/c/$1 np i h p
	if [ -f "$d/nspawn.pid" ]; then
		np=$(cat "$d/nspawn.pid")
		if kill -0 "$np" 2>/dev/null; then
			kill -TERM "$np" # nspawn passes it on as SIGRTMIN+3: a clean halt of the machine
			for ((i = 0; i < 150; i++)); do
				kill -0 "$np" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$np" 2>/dev/null && kill -KILL "$np"
		fi
	fi
	# Whatever is still in the machine's cgroups was started by it: end it by PID.
	for h in "${CGS[@]}"; do
		[ -d "$h/diskd-e2e-$n" ] || continue
		while read -r p; do
			kill -KILL "$p" 2>/dev/null || true
		done < <(find "$h/diskd-e2e-$n" -name cgroup.procs -exec cat {} + 2>/dev/null)
	done
	sleep 0.1
	if mountpoint -q "$d/merged"; then umount "$d/merged" 2>/dev/null || umount -l "$d/merged"; fi
	for h in "${CGS[@]}"; do
		[ -d "$h/diskd-e2e-$n" ] && find "$h/diskd-e2e-$n" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	rm -rf "/run/systemd/nspawn/propagate/$n"
	return 0
}

teardown() {
	local rc=$? n l
	[ -n "${WORK:-}" ] && [ -d "$WORK" ] || return "$rc"
	if [ -n "${KEEP:-}" ] && [ "${1:-}" != force ]; then
		log "KEEP=1: left up; remove with: $0 down $WORK"
		return "$rc"
	fi
	if [ -f "$WORK/machines" ]; then
		while read -r n; do machine_down "$n"; done <"$WORK/machines"
	fi
	[ -f "$WORK/bridge" ] && ip link del "$(cat "$WORK/bridge")" 2>/dev/null
	if [ -f "$WORK/loops" ]; then
		while read -r l mode uid gid; do
			losetup -d "$l" 2>/dev/null || true
			chown "$uid:$gid" "$l" && chmod "$mode" "$l"
		done <"$WORK/loops"
	fi
	rm -rf "$WORK"
	log "torn down"
	return "$rc"
}

# ---------- checks ----------
# wait_for SECONDS CMD...: run CMD every 0.1s until it succeeds; WAITED is how long it took.
WAITED=0
wait_for() {
	local limit=$1 t
	shift
	t=$(now)
	while :; do
		if "$@" >/dev/null 2>&1; then
			WAITED=$(dt "$t" "$(now)")
			return 0
		fi
		if awk -v a="$t" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
			WAITED=$(dt "$t" "$(now)")
			return 1
		fi
		sleep 0.1
	done
}

# ctl NAME LINE: one request on NAME's control socket, as root.
ctl() { printf '%s\n' "$2" | mexec "$1" diskd --socket "$SOCK"; }
# sees NAME LABEL / sees_not NAME LABEL: NAME's daemon lists a disk labelled LABEL (or not).
sees() { ctl "$1" list | grep -qw -- "$2"; }
sees_not() {
	local out
	out=$(ctl "$1" list) || return 1
	! grep -qw -- "$2" <<<"$out"
}
prop() { mexec "$1" systemctl show -p "$2" --value diskd.service; }
active() { [ "$(mexec "$1" systemctl is-active diskd.service)" = active ]; }
journal_count() { mexec "$1" journalctl -q -o cat -u diskd.service | grep -c -- "$2" || true; }
has_status() { [ -n "$(prop "$1" StatusText)" ]; }
sees_mounted() { ctl "$1" list | grep -w -- "$2" | grep -q "$3"; }
count_above() { [ "$(journal_count "$1" "$2")" -gt "$3" ]; }
restarted() { [ "$(prop "$1" NRestarts)" -gt "$2" ] && active "$1"; }
on_bus() { mexec "$1" busctl status org.diskd; }

# ---------- main ----------
if [ "${1:-}" = down ]; then
	WORK=${2:?usage: $0 down WORKDIR}
	[ -f "$WORK/bridge" ] || { echo "$WORK is not a diskd e2e work directory" >&2; exit 2; }
	trap 'teardown force' EXIT
	exit 0
fi
DEB=${1:?usage: $0 DEB (as root), or: $0 down WORKDIR}
[ "$(id -u)" = 0 ] || { echo "$0: needs root" >&2; exit 2; }
[ -f "$DEB" ] || { echo "$0: no such package: $DEB" >&2; exit 2; }
DEB=$(realpath "$DEB")

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/diskd-e2e.XXXXXX")
trap teardown EXIT
trap 'exit 130' INT TERM
RID=$$
BR=dke2e$((RID % 1000000))
A=diskd-a-$RID
B=diskd-b-$RID
LABEL_A=e2e-a-$((RID % 1000000))
LABEL_B=e2e-b-$((RID % 1000000))
log "work directory $WORK, machines $A and $B on bridge $BR"

ensure_host_pkgs
ensure_tarball
t=$(now)
mkdir -p "$WORK/rootfs"
tar --numeric-owner --xattrs --xattrs-include='*' -I zstd -C "$WORK/rootfs" -xpf "$TARBALL"
log "image unpacked in $(dt "$t" "$(now)")s"

# The bridge: no address in the root namespace, multicast flooded (there is no IGMP querier).
ip link add "$BR" type bridge
echo "$BR" >"$WORK/bridge"
ip link set "$BR" type bridge mcast_snooping 0
ip link set "$BR" up

# One disk per machine: a loop device with a labelled ext4, bound into that machine only.
new_disk() { # new_disk NAME LABEL: prints the loop device
	truncate -s 64M "$WORK/disk-$1.img"
	local l
	l=$(losetup -f --show "$WORK/disk-$1.img")
	echo "$l $(stat -c '%a %u %g' "$l")" >>"$WORK/loops"
	# What udev does on a Debian host (50-udev-default.rules: block devices are root:disk
	# 0660); this host may have no udev. Put back on teardown.
	chgrp disk "$l"
	chmod 0660 "$l"
	mkfs.ext4 -q -F -L "$2" "$l"
	echo "$l"
}
LOOP_A=$(new_disk a "$LABEL_A")
LOOP_B=$(new_disk b "$LABEL_B")
log "disks: $LOOP_A ($LABEL_A) for $A, $LOOP_B ($LABEL_B) for $B"

t=$(now)
machine_up "$A" 10.88.0.11 --bind="$LOOP_A"
machine_up "$B" 10.88.0.12 --bind="$LOOP_B"
machine_wait "$A"
machine_wait "$B"
log "both machines up in $(dt "$t" "$(now)")s"

mexec "$A" test -b "$LOOP_A" || die "$A cannot see its own disk $LOOP_A"
mexec "$B" test -b "$LOOP_B" || die "$B cannot see its own disk $LOOP_B"
mexec "$A" test -e "$LOOP_B" && die "$A can see $B's device node $LOOP_B"
mexec "$B" test -e "$LOOP_A" && die "$B can see $A's device node $LOOP_A"
pass "each machine sees its own loop device and not the other's"

# ---- install, the README way ----
# README's Install section, in a copy of the tree's bin/ in /root (-y: no one to say yes).
debname=$(basename "$DEB")
for m in "$A" "$B"; do
	mkdir -p "$WORK/c/$m/merged/root/bin"
	cp "$DEB" "$WORK/c/$m/merged/root/bin/$debname"
	t=$(now)
	mexec "$m" sh -c 'cd /root && apt install -y -q ./bin/diskd_*.deb' >"$WORK/apt-$m.log" 2>&1 ||
		{ cat "$WORK/apt-$m.log" >&2; die "$m: apt install ./bin/$debname failed"; }
	log "$m: apt install took $(dt "$t" "$(now)")s"
done
for m in "$A" "$B"; do
	[ "$(mexec "$m" systemctl is-enabled diskd.service)" = enabled ] || die "$m: postinst did not enable diskd.service"
	[ "$(mexec "$m" systemctl is-enabled diskd.socket)" = enabled ] || die "$m: postinst did not enable diskd.socket"
	wait_for 10 active "$m" || die "$m: postinst did not start diskd.service"
	mexec "$m" getent passwd diskd >/dev/null || die "$m: no user diskd"
	mexec "$m" id -nG diskd | grep -qw disk && die "$m: user diskd is in group disk (only the service should be)"
done
pass "apt install: user diskd created, diskd.socket + diskd.service enabled and started by postinst"
files=$(mexec "$A" dpkg -L diskd)
for f in /usr/bin/diskd /usr/bin/diskctl /usr/lib/systemd/system/diskd.service /usr/lib/systemd/system/diskd.socket \
	/usr/lib/systemd/user/diskd-notify.service /usr/lib/sysusers.d/diskd.conf /etc/default/diskd \
	/usr/share/dbus-1/system.d/org.diskd.conf /usr/share/dbus-1/system-services/org.diskd.service \
	/usr/share/dbus-1/interfaces/org.diskd.Finder.xml /usr/share/man/man8/diskd.8.gz \
	/usr/share/man/man1/diskctl.1.gz /usr/share/bash-completion/completions/diskctl \
	/usr/share/bash-completion/completions/diskd /usr/share/zsh/vendor-completions/_diskd \
	/usr/share/zsh/vendor-completions/_diskctl /usr/share/fish/vendor_completions.d/diskd.fish \
	/usr/share/fish/vendor_completions.d/diskctl.fish /usr/share/doc/diskd/copyright \
	/usr/share/doc/diskd/changelog.gz /usr/share/lintian/overrides/diskd /etc/diskd; do
	grep -qx -- "$f" <<<"$files" || die "the package lacks $f"
	mexec "$A" test -e "$f" || die "$A: $f is not installed"
done
[ "$(mexec "$A" stat -c '%a %U:%G' /etc/diskd)" = "755 root:root" ] || die "$A: /etc/diskd is not root:root 0755"
ver=$(mexec "$A" dpkg-query -W -f "\${Version}" diskd)
got=$(mexec "$A" diskd --version)
[ "$got" = "diskd $ver" ] || die "diskd --version says '$got', the package is $ver"
[ "$(mexec "$A" diskd -V)" = "$got" ] || die "diskd -V does not print the version"
mexec "$A" sh -c 'zcat /usr/share/doc/diskd/changelog.gz | head -n 1' | grep -qF "diskd ($ver)" ||
	die "the changelog's newest entry is not $ver"
mexec "$A" sh -c 'zcat /usr/share/man/man8/diskd.8.gz | head -n 1' | grep -qE "^\.TH DISKD 8 \"[0-9]{4}-[0-9]{2}-[0-9]{2}\" \"diskd $ver\"" ||
	die "diskd(8) is not dated and versioned: $(mexec "$A" sh -c 'zcat /usr/share/man/man8/diskd.8.gz | head -n 1')"
pass "package contents in place (completion, copyright, changelog, /etc/diskd); diskd --version: $got"

# ---- logs in the journal: priorities, --log-level ----
# A second daemon of its own (its own group, socket, no store (the service holds
# /var/lib/diskd) and no bus: the bus is missing, which is
# a warning) as a transient service, so that its stderr is the journal.
logtest() { # logtest UNIT [flags]: run it until it has warned, then stop it
	local u=$1
	shift
	mexec "$A" systemd-run --quiet --unit="$u" --collect /usr/bin/diskd -d --group 239.255.77.78:4278 \
		--interface host0 --device /dev/diskd-none --socket "/run/$u.sock" --state-dir none \
		--bus unix:path=/nonexistent/bus "$@"
	warned() { mexec "$A" journalctl -q -o cat -u "$u" | grep -q "D-Bus: cannot connect"; }
	wait_for 10 warned || die "$u: no warning about the missing bus in the journal"
	mexec "$A" systemctl stop "$u"
}
logtest diskd-logtest
warnings=$(mexec "$A" journalctl -q -o cat -u diskd-logtest -p warning)
everything=$(mexec "$A" journalctl -q -o cat -u diskd-logtest)
grep -q "D-Bus: cannot connect" <<<"$warnings" || die "journalctl -p warning lacks the warning: $warnings"
grep -q "msg=\"diskd starting\"" <<<"$everything" || die "the journal lacks the info line 'diskd starting': $everything"
grep -q "level=INFO" <<<"$warnings" && die "journalctl -p warning shows info lines: $warnings"
grep -q '^<[0-9]>' <<<"$everything" && die "the priority prefix was not taken by the journal: $everything"
prio=$(mexec "$A" journalctl -q -o verbose -u diskd-logtest -p warning | sed -n 's/^ *PRIORITY=//p' | sort -u | tr '\n' ' ')
[ "$prio" = "4 " ] || die "the warning's PRIORITY is '$prio', want 4"
logtest diskd-logtest-quiet --log-level warning
quiet=$(mexec "$A" journalctl -q -o cat -u diskd-logtest-quiet)
grep -q "level=INFO" <<<"$quiet" && die "--log-level warning still logs info lines: $quiet"
pass "journal: warnings at PRIORITY=4, journalctl -p warning shows no info line; --log-level warning drops them"

# Configure as the README and diskd(8) say: a key made with the README's recipe on A (in the
# /etc/diskd the package made), copied to B, then the README's last line.
mexec "$A" sh -c '(umask 077; head -c 32 /dev/urandom | base64 > /etc/diskd/key) && chown diskd:diskd /etc/diskd/key' ||
	die "$A: the README's key recipe failed"
mexec "$A" cat /etc/diskd/key | mexec "$B" sh -c '(umask 077; cat > /etc/diskd/key) && chown diskd:diskd /etc/diskd/key'
for m in "$A" "$B"; do
	mexec "$m" sed -i 's|^DISKD_OPTS=.*|DISKD_OPTS="--interface host0 --device /dev/loop* --key-file /etc/diskd/key"|' /etc/default/diskd
	mexec "$m" systemctl enable --now diskd
	mexec "$m" systemctl restart diskd
done
for m in "$A" "$B"; do
	wait_for 10 active "$m" || die "$m: diskd is $(mexec "$m" systemctl is-active diskd.service) after restart"
	[ "$(mexec "$m" systemctl is-active diskd.socket)" = active ] || die "$m: diskd.socket is not active"
done
pass "systemctl is-active diskd: active on both"

for m in "$A" "$B"; do
	wait_for 5 has_status "$m" || true
	st=$(prop "$m" StatusText)
	case $st in *"1 local disk"*) ;; *) die "$m: StatusText is '$st' (want the daemon's status, 1 local disk)" ;; esac
	log "$m: StatusText=$st"
done
pass "systemctl show -p StatusText: the daemon's READY=1 and STATUS= arrive"

# ---- the sandbox, as the running daemon has it ----
for m in "$A" "$B"; do
	pid=$(prop "$m" MainPID)
	st=$(mexec "$m" cat "/proc/$pid/status")
	uid=$(mexec "$m" id -u diskd)
	disk_gid=$(mexec "$m" getent group disk | cut -d: -f3)
	grep -Eq "^Uid:[[:space:]]+${uid}[[:space:]]" <<<"$st" || die "$m: diskd does not run as user diskd"
	grep -Eq "^Groups:.*\b$disk_gid\b" <<<"$st" || die "$m: diskd is not in group disk"
	grep -Eq "^CapEff:[[:space:]]+0+$" <<<"$st" || die "$m: diskd has capabilities"
	grep -Eq "^CapBnd:[[:space:]]+0+$" <<<"$st" || die "$m: diskd's bounding set is not empty"
	grep -Eq "^NoNewPrivs:[[:space:]]+1$" <<<"$st" || die "$m: diskd may gain privileges"
	grep -Eq "^Seccomp:[[:space:]]+2$" <<<"$st" || die "$m: diskd has no system call filter"
done
pass "diskd runs as user diskd + group disk, no capabilities, no_new_privs, seccomp filter"
# The device ACL: a process in diskd.service's cgroup (even root) may read the disk, not write it.
# shellcheck disable=SC2016 # expanded by the machine's shell
in_cg='echo $$ >/sys/fs/cgroup/system.slice/diskd.service/cgroup.procs && exec "$@"'
mexec "$B" sh -c "$in_cg" _ sh -c "exec 3<$LOOP_B" || die "$B: diskd.service cannot open its disk for reading"
if out=$(mexec "$B" sh -c "$in_cg" _ sh -c "exec 3<>$LOOP_B" 2>&1); then
	die "$B: diskd.service could open $LOOP_B for writing (DeviceAllow= not applied)"
fi
grep -q "not permitted" <<<"$out" || die "$B: writing $LOOP_B failed, but not for the device ACL: $out"
pass "device ACL: diskd.service may open the disk read-only, not read-write"
# The system call filter lets everything the daemon and blkid do through: with violations
# made fatal (SIGSYS instead of EPERM), diskd still starts, scans and answers.
mexec "$B" mkdir -p /run/systemd/system/diskd.service.d
printf '[Service]\nSystemCallErrorNumber=\n' | mexec "$B" tee /run/systemd/system/diskd.service.d/e2e-kill.conf >/dev/null
mexec "$B" systemctl daemon-reload
mexec "$B" systemctl restart diskd
[ "$(prop "$B" SystemCallErrorNumber)" != 1 ] || die "$B: drop-in not applied (SystemCallErrorNumber is still EPERM)"
pid=$(prop "$B" MainPID)
ctl "$B" refresh >/dev/null || die "$B: refresh failed with a fatal system call filter"
sees "$B" "$LABEL_B" || die "$B: no local disk with a fatal system call filter"
{ active "$B" && [ "$(prop "$B" MainPID)" = "$pid" ]; } || die "$B: diskd died with a fatal system call filter"
mexec "$B" rm -r /run/systemd/system/diskd.service.d
mexec "$B" systemctl daemon-reload
mexec "$B" systemctl restart diskd
pass "system call filter: diskd and blkid run with violations fatal (no filtered call made)"
# Why group disk: blkid as user diskd finds the disk only with it.
blk() { mexec "$B" systemd-run --quiet --wait --pipe --collect -p User=diskd "$@" blkid -c /dev/null -o export "$LOOP_B" 2>/dev/null; }
out=$(blk) || true
grep -q "LABEL=$LABEL_B" <<<"$out" && die "$B: blkid as user diskd read $LOOP_B without group disk"
out=$(blk -p SupplementaryGroups=disk) || true
grep -q "LABEL=$LABEL_B" <<<"$out" || die "$B: blkid as user diskd + group disk cannot read $LOOP_B"
pass "blkid as user diskd: needs group disk (root:disk 0660 device nodes) and nothing else"

# ---- the network view ----
wait_for 15 sees "$A" "$LABEL_B" || die "$A does not list $B's disk $LABEL_B after 15s"
log "$A lists $B's disk after ${WAITED}s"
wait_for 15 sees "$B" "$LABEL_A" || die "$B does not list $A's disk $LABEL_A after 15s"
log "$B lists $A's disk after ${WAITED}s"
ctl "$A" list | sed 's/^/    /' >&2
ctl "$A" peers | grep -w "$B" | grep -qw yes || die "$A: $B is not authenticated (AUTH yes) with the shared key: $(ctl "$A" peers)"
pass "control socket (root): each machine lists the other's disk, sealed with the README's key (AUTH yes)"

# Group diskd may use the socket, others may not.
mexec "$A" useradd -m -s /bin/sh alice
mexec "$A" useradd -m -s /bin/sh bob
mexec "$A" usermod -aG diskd alice
out=$(printf 'list\n' | mexec "$A" setpriv --reuid=alice --regid=alice --init-groups \
	env HOME=/home/alice diskd --socket "$SOCK" 2>&1) || die "alice (group diskd) cannot use $SOCK: $out"
grep -qw -- "$LABEL_B" <<<"$out" || die "alice's list lacks $LABEL_B: $out"
if out=$(printf 'list\n' | mexec "$A" setpriv --reuid=bob --regid=bob --init-groups \
	env HOME=/home/bob diskd --socket "$SOCK" 2>&1); then
	die "bob (not in group diskd) could use $SOCK: $out"
fi
grep -qi "permission denied" <<<"$out" || die "bob was refused, but not for permissions: $out"
pass "control socket: group diskd member may use it, a non-member gets 'permission denied'"

# A mount on the machine shows in the daemon's mount table (through ProtectSystem= etc.) and
# travels to the peer.
mexec "$B" mkdir -p /mnt/e2e
mexec "$B" mount "$LOOP_B" /mnt/e2e
wait_for 10 sees_mounted "$A" "$LABEL_B" /mnt/e2e ||
	die "$A does not see $B's disk mounted at /mnt/e2e"
log "mount on $B seen on $A after ${WAITED}s"
mexec "$B" umount /mnt/e2e
pass "mount table: a mount on $B reaches $A's view"

# Kernel uevents reach the sandboxed daemon: relabel B's disk (no mount, so the mount watch
# says nothing), have the kernel announce a change of the loop device, and A sees the new label
# long before the 60s safety rescan.
[ "$(journal_count "$B" "uevents unavailable")" = 0 ] || die "$B: diskd says kernel uevents are unavailable"
for label in "e2e-c-$((RID % 1000000))" "$LABEL_B"; do
	mexec "$B" e2label "$LOOP_B" "$label"
	echo change >"/sys/block/${LOOP_B#/dev/}/uevent"
	wait_for 5 sees "$A" "$label" || die "$A does not see $B's relabelled disk after a kernel uevent"
	log "relabelled $B's disk to $label: $A sees it after ${WAITED}s"
done
pass "kernel uevents: a change of $B's disk reaches $A at once"

# ---- D-Bus and diskctl ----
{
	wait_for 10 on_bus "$A" || die "$A: org.diskd is not on the system bus"
	out=$(mexec "$A" busctl call org.diskd /org/diskd/Finder org.diskd.Finder List) || die "busctl List failed: $out"
	grep -q -- "$LABEL_B" <<<"$out" || die "busctl List on $A lacks $LABEL_B: $out"
	pass "busctl call org.diskd /org/diskd/Finder org.diskd.Finder List on $A lists $B's disk"
	out=$(mexec "$A" setpriv --reuid=bob --regid=bob --init-groups \
		busctl call org.diskd /org/diskd/Finder org.diskd.Finder List 2>&1) || die "busctl List as an ordinary user failed: $out"
	grep -q -- "$LABEL_B" <<<"$out" || die "busctl List as bob lacks $LABEL_B"
	if out=$(mexec "$A" setpriv --reuid=bob --regid=bob --init-groups \
		busctl call org.diskd /org/diskd/Finder org.diskd.Finder Refresh 2>&1); then
		die "an ordinary user may call Refresh"
	fi
	pass "D-Bus policy: an ordinary user may List, may not Refresh"
	out=$(mexec "$A" diskctl list 2>&1) || die "diskctl list on $A failed: $out"
	grep -qw -- "$LABEL_B" <<<"$out" || die "diskctl list on $A lacks $LABEL_B: $out"
	printf '    %s\n' "${out//$'\n'/$'\n'    }" >&2
	pass "diskctl list on $A lists $B's disk"
	# Bus activation: a call to org.diskd while diskd is stopped starts diskd.service.
	mexec "$A" systemctl stop diskd.service 2>/dev/null
	mexec "$A" busctl call org.diskd /org/diskd/Finder org.diskd.Finder List >/dev/null ||
		die "$A: a D-Bus call did not activate diskd"
	active "$A" || die "$A: diskd.service is not active after a D-Bus call"
	wait_for 15 sees "$A" "$LABEL_B" || die "$A: no view of $B after the D-Bus activation"
	pass "D-Bus activation: a call to org.diskd starts diskd.service"
}

# ---- the user unit, sandboxed, in a real user manager ----
# alice's user manager (user@UID.service) and a session bus where dbus-user-session puts it;
# diskd-notify.service must reach the system bus (diskd) and the session bus from its sandbox.
{
	uid=$(mexec "$A" id -u alice)
	# What pam_systemd would give the user manager (the image has no libpam-systemd).
	mexec "$A" mkdir -p "/run/systemd/system/user@$uid.service.d"
	printf '[Service]\nEnvironment=XDG_RUNTIME_DIR=/run/user/%%i\n' |
		mexec "$A" tee "/run/systemd/system/user@$uid.service.d/e2e.conf" >/dev/null
	mexec "$A" systemctl daemon-reload
	mexec "$A" systemctl start "user@$uid.service" || die "$A: cannot start alice's user manager"
	as_alice() {
		mexec "$A" setpriv --reuid=alice --regid=alice --init-groups \
			env HOME=/home/alice XDG_RUNTIME_DIR="/run/user/$uid" DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" "$@"
	}
	bus_pid=$(as_alice dbus-daemon --session --address="unix:path=/run/user/$uid/bus" --fork --print-pid) ||
		die "$A: cannot start alice's session bus"
	as_alice systemctl --user set-environment "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus"
	as_alice systemctl --user start diskd-notify.service || die "$A: diskd-notify.service did not start"
	on_session() { as_alice busctl --user list --no-legend | grep -qw diskctl; }
	on_system() { mexec "$A" busctl list --no-legend | grep -qw diskctl; }
	wait_for 10 on_session || die "$A: diskd-notify.service is not on the session bus: $(as_alice systemctl --user status diskd-notify.service 2>&1)"
	wait_for 10 on_system || die "$A: diskd-notify.service is not on the system bus: $(as_alice systemctl --user status diskd-notify.service 2>&1)"
	sleep 1
	[ "$(as_alice systemctl --user is-active diskd-notify.service)" = active ] ||
		die "$A: diskd-notify.service is not active: $(as_alice systemctl --user status diskd-notify.service 2>&1)"
	pid=$(as_alice systemctl --user show -p MainPID --value diskd-notify.service)
	st=$(mexec "$A" cat "/proc/$pid/status")
	grep -Eq "^NoNewPrivs:[[:space:]]+1$" <<<"$st" || die "$A: diskd-notify may gain privileges"
	grep -Eq "^Seccomp:[[:space:]]+2$" <<<"$st" || die "$A: diskd-notify has no system call filter"
	[ "$(mexec "$A" readlink "/proc/$pid/ns/net")" != "$(mexec "$A" readlink /proc/1/ns/net)" ] ||
		die "$A: diskd-notify has the machine's network (PrivateNetwork= not applied)"
	[ "$(mexec "$A" readlink "/proc/$pid/ns/user")" != "$(mexec "$A" readlink /proc/1/ns/user)" ] ||
		die "$A: diskd-notify has no user namespace of its own (PrivateUsers= not applied)"
	as_alice systemctl --user stop diskd-notify.service
	mexec "$A" systemctl stop "user@$uid.service"
	mexec "$A" sh -c "kill $bus_pid"
	pass "diskd-notify.service: runs sandboxed in alice's user manager (no_new_privs, seccomp, own user and network namespace) and reaches the system and session bus"
}

# ---- restart ----
pid0=$(prop "$B" MainPID)
n0=$(journal_count "$A" "disk appeared.*label=$LABEL_B")
t=$(now)
mexec "$B" systemctl restart diskd
wait_for 15 count_above "$A" "disk appeared.*label=$LABEL_B" "$n0" ||
	die "$A did not see $B's disk come back after restarting diskd on $B"
[ "$(prop "$B" MainPID)" != "$pid0" ] || die "$B: MainPID unchanged by restart"
sees "$A" "$LABEL_B" || die "$A does not list $B's disk after the restart"
took=$(dt "$t" "$(now)")
log "$A saw $B's disk again ${took}s after 'systemctl restart diskd' on $B"
if awk -v d="$took" 'BEGIN { exit !(d > 2) }'; then # slow: show why
	ctl "$A" status | sed 's/^/    status: /' >&2
	mexec "$A" journalctl -q -o short-precise -u diskd.service --since=-20s | grep -v '^ *$' | tail -n 12 | sed 's/^/    /' >&2
	mexec "$B" journalctl -q -o short-precise -u diskd.service --since=-20s | grep -v '^ *$' | tail -n 12 | sed 's/^/    /' >&2
fi
pass "systemctl restart diskd on $B: $A sees $B's disk again"

# ---- watchdog ----
wd=$(prop "$B" WatchdogUSec)
wd_s=$(awk -v v="$wd" 'BEGIN { if (v ~ /min/) { split(v, p, "min"); s = p[1] * 60 + p[2] } else s = v + 0; print s }')
[ "${wd_s%.*}" -gt 0 ] || die "$B: no WatchdogSec in diskd.service ($wd)"
pid0=$(prop "$B" MainPID)
r0=$(prop "$B" NRestarts)
t=$(now)
mexec "$B" systemctl kill -s SIGSTOP diskd
limit=$((${wd_s%.*} + 10))
wait_for "$limit" restarted "$B" "$r0" ||
	die "$B: the watchdog did not restart a stopped diskd within ${limit}s"
took=$(dt "$t" "$(now)")
[ "$(prop "$B" MainPID)" != "$pid0" ] || die "$B: MainPID unchanged after the watchdog restart"
mexec "$B" journalctl -q -o cat -u diskd.service | grep -i "watchdog timeout" | tail -n 1 | sed 's/^/    /' >&2
[ "$(journal_count "$B" "atchdog timeout")" -gt 0 ] || die "$B: no watchdog message in the journal"
log "$B: SIGSTOP -> watchdog -> restarted in ${took}s (WatchdogSec=$wd)"
pass "watchdog: a SIGSTOPped diskd is restarted in ${took}s (WatchdogSec=$wd), NRestarts $r0 -> $(prop "$B" NRestarts)"
wait_for 15 sees "$A" "$LABEL_B" || die "$A lost $B's disk after the watchdog restart"

# ---- goodbye ----
sees "$A" "$LABEL_B" || die "$A does not list $B's disk before the stop"
n0=$(journal_count "$A" "lost (bye)")
t=$(now)
mexec "$B" systemctl stop diskd 2>/dev/null # (it warns that diskd.socket can start it again)
t1=$(now)
wait_for 5 sees_not "$A" "$LABEL_B" || die "$A still lists $B's disk 5s after 'systemctl stop diskd' on $B"
t2=$(now)
took=$(dt "$t" "$t2")
log "$A dropped $B's disk ${took}s after the stop began ($(dt "$t1" "$t2")s after systemctl returned)"
awk -v d="$took" 'BEGIN { exit !(d <= 1.5) }' || die "the goodbye took ${took}s (want about 1s at most)"
count_above "$A" "lost (bye)" "$n0" || die "$A's journal has no new \"peer ... lost (bye)\" line"
pass "systemctl stop diskd on $B: $A drops $B's disk within ${took}s (goodbye, reason=bye)"

# ---- upgrade (reinstall): conffile kept, daemon restarted ----
pid0=$(prop "$A" MainPID)
mexec "$A" sh -c 'cd /root && apt install -y -q --reinstall ./bin/diskd_*.deb' >"$WORK/apt-reinstall.log" 2>&1 ||
	{ cat "$WORK/apt-reinstall.log" >&2; die "$A: reinstall failed"; }
wait_for 10 active "$A" || die "$A: diskd not active after the reinstall"
[ "$(prop "$A" MainPID)" != "$pid0" ] || die "$A: diskd was not restarted by the reinstall"
mexec "$A" grep -q '^DISKD_OPTS="--interface host0' /etc/default/diskd || die "$A: /etc/default/diskd was replaced"
pass "reinstall: /etc/default/diskd kept, diskd restarted"

# ---- removal and purge ----
# A: diskd running; B: diskd stopped but its socket listening.
for m in "$A" "$B"; do
	mexec "$m" apt-get remove -y -q diskd >"$WORK/remove-$m.log" 2>&1 || { cat "$WORK/remove-$m.log" >&2; die "$m: remove failed"; }
	for u in diskd.service diskd.socket; do
		s=$(mexec "$m" systemctl is-active "$u" || true)
		[ "$s" != active ] || die "$m: $u still active after removal"
	done
	# shellcheck disable=SC2016 # expanded by the machine's shell
	left=$(mexec "$m" sh -c 'for p in /proc/[0-9]*; do [ "$(stat -c %U "$p" 2>/dev/null)" = diskd ] && cat "$p/comm"; done; true')
	[ -z "$left" ] || die "$m: processes of user diskd left after removal: $left"
	mexec "$m" test -e "$SOCK" && die "$m: $SOCK left after removal"
	mexec "$m" apt-get purge -y -q diskd >"$WORK/purge-$m.log" 2>&1 || { cat "$WORK/purge-$m.log" >&2; die "$m: purge failed"; }
	for f in /var/lib/diskd /etc/default/diskd /usr/bin/diskd /usr/share/doc/diskd; do
		mexec "$m" test -e "$f" && die "$m: $f left after purge"
	done
	# The admin's key stays (dpkg keeps /etc/diskd while it holds it); so do the user and
	# group, as with every Debian package that makes a system user.
	mexec "$m" test -f /etc/diskd/key || die "$m: purge removed the admin's /etc/diskd/key"
	mexec "$m" getent passwd diskd >/dev/null || die "$m: purge removed user diskd"
	# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
	[ "$(mexec "$m" dpkg-query -W -f '${db:Status-Status}' diskd 2>/dev/null || true)" != installed ] ||
		die "$m: diskd still installed after purge"
done
pass "apt remove stops diskd and its socket (nothing of user diskd runs); purge removes state, config, files"
# Installed again after the purge: the user is reused, the daemon starts.
mexec "$A" sh -c 'cd /root && apt install -y -q ./bin/diskd_*.deb' >"$WORK/apt-again.log" 2>&1 ||
	{ cat "$WORK/apt-again.log" >&2; die "$A: install after purge failed"; }
wait_for 10 active "$A" || die "$A: diskd not active after installing again"
pass "apt install after purge: diskd runs again"

log "all done in $(dt "$T0" "$(now)")s"
echo "e2e: ${#PASSED[@]} passed, 0 failed"
