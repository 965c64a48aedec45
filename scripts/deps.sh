#!/usr/bin/env bash
# The Debian 12 packages nbdd needs to build, test and demo, and nothing else.
#   scripts/deps.sh install   apt-get install them all
#   scripts/deps.sh ensure    install only if one is missing (make check/demo)
#   scripts/deps.sh list      print them
#   scripts/deps.sh ensure bench   only what `make bench` adds (bench/run)
set -euo pipefail

build=(build-essential clang pkg-config libnl-genl-3-dev libkmod-dev
       libjson-c-dev libcmocka-dev libsystemd-dev libgnutls28-dev
       libnbd-dev)
# Real peers the tests drive, and the kernel + emulator for tests/vm.
test=(libnbd-bin python3-libnbd nbdkit qemu-utils fio nbd-client e2fsprogs util-linux
      kmod udev linux-image-amd64 qemu-system-x86 busybox-static
      libclang-rt-14-dev python3 valgrind gnutls-bin)

# The rbd plugin (plugins/rbd) and the one-node Ceph cluster its test
# starts (tests/ceph/cluster.sh).
build+=(librbd-dev librados-dev)
test+=(ceph-mon ceph-mgr ceph-osd ceph-common)

# Only for `make bench`: the peer nbd-server, qemu's rbd driver (the
# rbd part's peer), the plot, profiles.
bench=(nbd-server qemu-block-extra gnuplot-nox linux-perf)

pkgs=("${build[@]}" "${test[@]}")
[ "${2:-}" = bench ] && pkgs=("${bench[@]}")

missing() {
	local p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || echo "$p"
	done
}

install_pkgs() {
	if [ "$(id -u)" != 0 ]; then
		echo "deps: installing packages needs root; run: sudo $0 install" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "$@"
}

case "${1:-ensure}" in
list) printf '%s\n' "${pkgs[@]}" ;;
install) install_pkgs "${pkgs[@]}" ;;
ensure)
	mapfile -t need < <(missing)
	if [ "${#need[@]}" -gt 0 ]; then
		echo "deps: installing ${need[*]}"
		install_pkgs "${need[@]}"
	fi
	;;
*) echo "usage: $0 install|ensure|list" >&2; exit 2 ;;
esac
