#!/usr/bin/env bash
# vm-timeout: 400
# vm-init: systemd
#
# A real boot with systemd as PID 1 (its own VM: see run-suite): a
# persistent mapping in /etc/nbdd/mappings.d and an /etc/fstab line on
# /dev/disk/by-nbd/data with x-systemd.requires=nbdd.service. After the
# boot nbdd.service is active (Type=notify), the device is attached, its
# stable name exists, the filesystem is mounted and holds what was put in
# it, unconnected devices are SYSTEMD_READY=0, and the kernel log has no
# I/O errors. `systemctl restart nbdd` under the mount: the new daemon
# takes the device over and the mount keeps working. Then the mount and
# the daemon stop cleanly, in that order.
#
# Called twice by tests/vm/systemd-init: `prepare` before systemd starts
# (install, write the configuration), `check` after the boot.
. "$NBDD_TOP/tests/vm/lib.sh"

IMG=/var/lib/nbdd-vm/disk.img
MNT=/mnt/data

prepare() {
	need mkfs.ext4 systemctl
	make -s -C "$NBDD_TOP" B="$B" install DESTDIR=/ PREFIX=/usr/local >/dev/null
	mkdir -p "$(dirname "$IMG")" "$TMPDIR/content" "$MNT"
	echo "written before the boot" >"$TMPDIR/content/canary"
	truncate -s 64M "$IMG"
	mkfs.ext4 -q -F -L nbddvm -d "$TMPDIR/content" "$IMG"
	mkdir -p /etc/nbdd/mappings.d
	# What `nbdctl attach --persistent --name data file:path=$IMG` writes.
	cat >/etc/nbdd/mappings.d/data.conf <<-EOF
		spec = file:path=$IMG
	EOF
	cat >/etc/fstab <<-EOF
		/dev/disk/by-nbd/data $MNT ext4 defaults,x-systemd.requires=nbdd.service,x-systemd.device-timeout=120s 0 2
	EOF
	systemctl enable nbdd.service
	log "prepared: $IMG, /etc/nbdd/mappings.d/data.conf, /etc/fstab"
}

check() {
	local dev src
	need jq
	# (systemd-analyze time needs a finished boot; this test is part of it.)
	log "boot reached the test at $(cut -d' ' -f1 /proc/uptime)s of uptime"
	systemd-analyze critical-chain "$(systemd-escape -p --suffix=mount "$MNT")" 2>/dev/null | sed 's/^/    /' || true
	systemctl is-active --quiet nbdd.service ||
		fail "nbdd.service is not active: $(systemctl status nbdd.service 2>&1 | tail -n 20)"
	# READY=1 (with its STATUS=) comes before attach-configured runs.
	systemctl show -p StatusText nbdd.service | grep -q 'StatusText=serving' ||
		fail "status: $(systemctl show -p StatusText nbdd.service)"
	mountpoint -q "$MNT" || fail "$MNT not mounted: $(systemctl status "$MNT" 2>&1 | tail -n 20)"
	src=$(findmnt -n -o SOURCE "$MNT")
	dev=$(readlink -f /dev/disk/by-nbd/data)
	[ "$src" = "$dev" ] && [[ $dev == /dev/nbd* ]] || fail "$MNT is on $src, by-nbd/data is $dev"
	[ "$(cat /sys/block/"${dev#/dev/}"/backend)" = data ] || fail "backend identifier"
	[ "$(cat "$MNT/canary")" = "written before the boot" ] || fail "canary: $(cat "$MNT/canary")"
	NBDD_CONTROL=/run/nbdd/control.sock nbdctl list
	log "the mount waited for nbdd: $(systemctl show -p After "$MNT" | tr ' ' '\n' | grep -x 'nbdd.service')"
	# Unconnected devices: not for systemd, never probed.
	udevadm info /dev/nbd9 | grep -q 'SYSTEMD_READY=0' || fail "nbd9: $(udevadm info /dev/nbd9)"
	journalctl -b -u nbdd.service --no-pager | grep -q 'ready' || fail "no 'ready' in the journal"
	echo "written after the boot" >"$MNT/after"
	sync

	# A restart (an upgrade) under the mounted filesystem: the new nbdd
	# takes the device over, and the mount never notices.
	systemctl restart nbdd.service
	systemctl is-active --quiet nbdd.service || fail "nbdd.service is not active after a restart"
	wait_until 60 "the device taken over after the restart" sh -c \
		"NBDD_CONTROL=/run/nbdd/control.sock $NBDCTL_BIN --json list | jq -e '.mappings[0].state == \"connected\" and .mappings[0].recoveries == 1' >/dev/null"
	journalctl -b -u nbdd.service --no-pager | grep -q 'taken over from the previous nbdd' ||
		fail "no take-over in the journal: $(journalctl -b -u nbdd.service --no-pager | tail -n 20)"
	echo "written after the restart" >"$MNT/restart"
	sync
	grep -q 'written after the boot' "$MNT/after" || fail "$MNT/after unreadable after the restart"
	log "systemctl restart nbdd: the mount kept working"

	log "shutdown order: the mount, then nbdd (detach --all first: a plain stop hands devices over)"
	systemctl stop "$MNT"
	NBDD_CONTROL=/run/nbdd/control.sock nbdctl detach --all
	systemctl stop nbdd.service
	[ ! -e "/sys/block/${dev#/dev/}/pid" ] || fail "$dev still connected after nbdd stopped"
	[ ! -e /run/nbdd/mappings.json ] || fail "state file left behind"
	# The data reached the backend.
	debugfs -R 'cat /after' "$IMG" 2>/dev/null | grep -q 'written after the boot' ||
		fail "data written through the mount is not in $IMG"
	debugfs -R 'cat /restart' "$IMG" 2>/dev/null | grep -q 'written after the restart' ||
		fail "data written after the restart is not in $IMG"
	# The restart drops the old sockets by design ("Receive control
	# failed", "Dead connection"); what matters is that no I/O failed.
	hits=$(test_dmesg | grep -E 'I/O error, dev nbd|Buffer I/O error|EXT4-fs error|BUG:|WARNING:|Oops|Call Trace|blocked for more than' || true)
	[ -z "$hits" ] || fail "kernel log has errors:
$hits"
}

case ${1:-} in
prepare) prepare ;;
check) check ;;
*) fail "run by tests/vm/systemd-init (NBDD_VM_INIT=systemd tests/vm/run-vm $0)" ;;
esac
