#!/usr/bin/env bash
# vm-timeout: 300
#
# The harness's own proof, and the baseline nbdd's attach tests mirror:
# the kernel's nbd driver works end to end with the peer tools, nbdkit's
# memory plugin on a Unix socket and nbd-client in netlink mode.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
need nbdkit nbd-client
devs=(/sys/block/nbd*)
log "nbd driver loaded, ${#devs[@]} devices"

start_nbdkit_memory 256M
nbd_client_attach "$NBDKIT_SOCK" /dev/nbd0
log "/dev/nbd0 connected: $(($(cat /sys/block/nbd0/size) / 2048)) MiB," \
	"block size $(cat /sys/block/nbd0/queue/logical_block_size)"
[ "$(cat /sys/block/nbd0/queue/logical_block_size)" = 4096 ] ||
	fail "nbd-client -b 4096 did not set the block size"
# Netlink mode: nbd-client hands the socket to the kernel and exits; with
# the old ioctls it would stay, blocked in NBD_DO_IT, as the device's pid.
! kill -0 "$(cat /sys/block/nbd0/pid)" 2>/dev/null ||
	fail "nbd-client is still running: it used the ioctl interface, not netlink"

fs_roundtrip /dev/nbd0 16

nbd_client_detach /dev/nbd0
log "/dev/nbd0 disconnected"
check_dmesg_clean
