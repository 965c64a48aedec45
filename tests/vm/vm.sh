# Host side of the VM harness, sourced by tests/vm/run-vm and run-suite.
#
# Finds a kernel that has the nbd driver, builds (and caches) a busybox
# initramfs for it, and boots it under qemu with the host's / shared
# read-only; tests/vm/guest-init then runs the job described in the
# results directory and powers the VM off.
#
# Settings (environment):
#   NBDD_VM_KERNEL   kernel version to boot (default: newest under /boot
#                    whose modules have nbd)
#   NBDD_VM_MEM      guest memory (default 2G; run-vm --mem overrides)
#   NBDD_VM_SMP      guest CPUs (default 2)
#   NBDD_VM_INIT     "systemd": a real systemd boot (tests/vm/systemd-init,
#                    run-vm only); default: tests/vm/guest-init

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NBDD_TOP=$(cd "$VM_DIR/../.." && pwd)
export NBDD_TOP

# The modules stage 1 needs; their dependencies are added in load order.
VM_MODULES=(virtio_pci 9pnet_virtio 9p overlay)

vm_die() {
	echo "vm: $*" >&2
	exit 125
}

# Absolute build directory: the guest sees the host's paths, but its
# working directory may differ, so relative ones would not do.
vm_build_dir() {
	local b=${B:-build}
	case $b in
	/*) echo "$b" ;;
	*) echo "$NBDD_TOP/$b" ;;
	esac
}

# Newest kernel under /boot whose modules include nbd (or have it built in).
vm_find_kernel() {
	local v
	if [ -n "${NBDD_VM_KERNEL:-}" ]; then
		[ -r "/boot/vmlinuz-$NBDD_VM_KERNEL" ] ||
			vm_die "NBDD_VM_KERNEL=$NBDD_VM_KERNEL: no /boot/vmlinuz-$NBDD_VM_KERNEL"
		echo "$NBDD_VM_KERNEL"
		return
	fi
	for v in $(ls /boot 2>/dev/null | sed -n 's/^vmlinuz-//p' | sort -rV); do
		[ -r "/boot/vmlinuz-$v" ] || continue
		if modinfo -k "$v" nbd >/dev/null 2>&1; then
			echo "$v"
			return
		fi
	done
	vm_die "no kernel with the nbd driver under /boot (scripts/deps.sh install: linux-image-amd64)"
}

# Print the modules to insmod, dependencies first, one "name path" a line;
# modules built into the kernel are left out.
vm_module_order() { # kver
	local kver=$1 m
	declare -A seen=()
	_vm_visit() {
		local mod=$1 dep file
		[ -n "${seen[$mod]:-}" ] && return 0
		seen[$mod]=1
		file=$(modinfo -k "$kver" -F filename "$mod" 2>/dev/null) ||
			vm_die "kernel $kver has no module $mod"
		case $file in
		/*) ;;
		*) return 0 ;; # "(builtin)": nothing to load
		esac
		for dep in $(modinfo -k "$kver" -F depends "$mod" | tr , ' '); do
			_vm_visit "$dep"
		done
		echo "$mod $file"
	}
	for m in "${VM_MODULES[@]}"; do
		_vm_visit "$m"
	done
}

# Everything the initramfs is made of, hashed: a change to any of it (a new
# kernel, busybox, stage 1 or this file) rebuilds the image.
vm_initramfs_key() { # kver modules-order
	{
		echo "$1"
		sha256sum "$VM_DIR/initramfs-init" "$VM_DIR/vm.sh" /bin/busybox
		printf '%s\n' "$2" | while read -r _ f; do
			stat -c '%n %s %Y' "$f"
		done
	} | sha256sum | cut -d' ' -f1
}

# Build the initramfs if it is missing or stale; print its path.
vm_initramfs() { # kver
	local kver=$1 dir order key out tmp m f
	dir=$(vm_build_dir)/vm
	out=$dir/initramfs-$kver.cpio.gz
	order=$(vm_module_order "$kver")
	key=$(vm_initramfs_key "$kver" "$order")
	if [ -s "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
		echo "$out"
		return
	fi
	# The initramfs has no libraries: busybox must be the static build
	# (ldd fails on a static executable).
	if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
		vm_die "/bin/busybox must be busybox-static (scripts/deps.sh install)"
	fi
	mkdir -p "$dir"
	tmp=$(mktemp -d "$dir/initramfs.XXXXXX")
	mkdir -p "$tmp/bin" "$tmp/modules"
	cp /bin/busybox "$tmp/bin/busybox"
	install -m 0755 "$VM_DIR/initramfs-init" "$tmp/init"
	while read -r m f; do
		case $f in # busybox insmod wants plain .ko files
		*.xz) xz -dc "$f" >"$tmp/modules/$m.ko" ;;
		*.zst) zstd -qdc "$f" >"$tmp/modules/$m.ko" ;;
		*.gz) gzip -dc "$f" >"$tmp/modules/$m.ko" ;;
		*) cp "$f" "$tmp/modules/$m.ko" ;;
		esac
		echo "$m" >>"$tmp/modules.order"
	done <<<"$order"
	# busybox's own cpio: one package fewer to depend on.
	(cd "$tmp" && find . | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) >"$tmp.cpio.gz"
	echo "$key" >"$tmp.key"
	# Renames, so a VM booting in parallel never sees a half-written image.
	mv "$tmp.cpio.gz" "$out"
	mv "$tmp.key" "$out.key"
	rm -rf "$tmp"
	echo "vm: built $out" >&2
	echo "$out"
}

# A fresh results directory, shared writable with the guest. Several runs
# may go on at once in one checkout, so each has its own; old ones go.
vm_results_dir() { # kind
	local dir
	dir=$(vm_build_dir)/vm/runs
	mkdir -p "$dir"
	ls -1dt "$dir"/* 2>/dev/null | tail -n +20 | xargs -r rm -rf
	mktemp -d "$dir/$1.$(date +%Y%m%d-%H%M%S).XXXX"
}

# Time limit of a test script: its "# vm-timeout: SECONDS" line, else the
# default given.
vm_test_limit() { # script default
	local n
	n=$(sed -n 's/^# *vm-timeout: *\([0-9][0-9]*\).*/\1/p' "$1" | head -n1)
	echo "${n:-$2}"
}

# Describe the job for guest-init: shell assignments it sources. The
# caller adds VM_ARGS and VM_LIMIT(S); EXTRA are more paths it needs.
vm_write_job() { # results mode [extra-paths...]
	local results=$1 mode=$2 b bin ctl cwd keep
	shift 2
	b=$(vm_build_dir)
	bin=$(realpath -m "${NBDD_BIN:-$b/nbdd}")
	ctl=$(realpath -m "${NBDCTL_BIN:-$b/nbdctl}")
	cwd=${VM_CWD:-$NBDD_TOP}
	mapfile -t keep < <(vm_keep_paths "$NBDD_TOP" "$b" "$cwd" \
		"$(dirname "$bin")" "$(dirname "$ctl")" "$@")
	{
		printf 'VM_MODE=%q\n' "$mode"
		printf 'VM_CWD=%q\n' "$cwd"
		vm_job_array VM_KEEP "${keep[@]}"
		printf 'export NBDD_TOP=%q B=%q\n' "$NBDD_TOP" "$b"
		printf 'export NBDD_BIN=%q NBDCTL_BIN=%q\n' "$bin" "$ctl"
	} >"$results/job"
}

# A bash array assignment for the job file.
vm_job_array() { # name values...
	local name=$1
	shift
	printf '%s=(' "$name"
	[ $# -gt 0 ] && printf '%q ' "$@"
	printf ')\n'
}

# Whether the guest can see PATH as the host does: its /run is its own
# tmpfs, which hides the host's. (Its /tmp is a tmpfs too, but the paths
# under /tmp a job needs are bind-mounted back: see vm_keep_paths.)
vm_visible() { # path
	case $1 in
	/run | /run/*) return 1 ;;
	esac
}

vm_check_paths() { # paths...
	local p
	# These go on the kernel command line and into qemu's options.
	for p in "$NBDD_TOP" "$(vm_build_dir)"; do
		case $p in
		*[[:space:],]*) vm_die "$p: the VM cannot use a path with spaces or commas" ;;
		esac
	done
	for p in "$NBDD_TOP" "$(vm_build_dir)" "$@"; do
		vm_visible "$p" || vm_die "$p is not visible in the guest (its /run is a tmpfs)"
	done
}

# Of the PATHs, those under /tmp, less any inside another: guest-init
# bind-mounts them over its own tmpfs /tmp, so a tree checked out under
# /tmp (a CI clone, say) works the same.
vm_keep_paths() { # paths...
	local p k kept=()
	while IFS= read -r p; do # sorted: parents come first
		case $p in /tmp | /tmp/*) ;; *) continue ;; esac
		for k in "${kept[@]}"; do
			case $p in "$k" | "$k"/*) continue 2 ;; esac
		done
		kept+=("$p")
	done < <(printf '%s\n' "$@" | sort -u)
	[ ${#kept[@]} -eq 0 ] || printf '%s\n' "${kept[@]}"
}

# Stop the VM of a results directory if it still runs: for an EXIT trap.
vm_stop() { # results
	local pid
	pid=$(cat "$1/qemu.pid" 2>/dev/null) || return 0
	# The pid file may be stale: make sure it is still that qemu.
	grep -qF "$1/console.log" "/proc/$pid/cmdline" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
}

# Boot the VM on a prepared results directory and wait for it to power off.
# The console goes to results/console.log. Returns qemu's status (124 on
# timeout); the job's own status is in results/exit-code.
vm_boot() { # results timeout-seconds
	local results=$1 limit=$2 kver initrd stage2=guest-init
	# NBDD_VM_INIT=systemd: boot systemd as PID 1 (tests/vm/systemd-init).
	[ "${NBDD_VM_INIT:-}" = systemd ] && stage2=systemd-init
	vm_check_paths "$results"
	command -v qemu-system-x86_64 >/dev/null ||
		vm_die "qemu-system-x86_64 missing (scripts/deps.sh install)"
	kver=$(vm_find_kernel)
	initrd=$(vm_initramfs "$kver")
	echo "vm: booting $kver, ${NBDD_VM_MEM:-2G} memory, results in $results" >&2
	# TCG: KVM hangs or aborts on these machines. -nodefaults: no NIC (tests
	# use Unix sockets and loopback), no VGA, floppy or CD-ROM; the serial
	# console goes to a file, which keeps qemu off the terminal.
	# --foreground keeps qemu in our process group, so whoever stops us
	# (tests/run's own timeout, ^C) stops the VM too.
	timeout --foreground --kill-after=10 "$limit" qemu-system-x86_64 \
		-accel tcg -cpu max -smp "${NBDD_VM_SMP:-2}" -m "${NBDD_VM_MEM:-2G}" \
		-nographic -no-reboot -nodefaults \
		-serial "file:$results/console.log" -pidfile "$results/qemu.pid" \
		-kernel "/boot/vmlinuz-$kver" -initrd "$initrd" \
		-append "console=ttyS0 quiet panic=-1 nbddvm.init=$VM_DIR/$stage2" \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs "local,path=$results,mount_tag=results,security_model=none,multidevs=remap" \
		</dev/null
}
