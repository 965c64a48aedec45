/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Defences for a process that serves block devices to its own kernel.
 * Under memory pressure the kernel writes dirty pages back, possibly to
 * one of our devices: if serving that writeback needs memory that only
 * the writeback can free, or if the OOM killer picks us, every process
 * using the device hangs or gets I/O errors. Each step is best effort:
 * without privileges we run anyway, and say so at debug level.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "daemon.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

#define CAP_IPC_LOCK_BIT 14
/* Well below ordinary processes, above "never kill" (-1000). */
#define OOM_SCORE_ADJ "-900"

static void set_oom_score_adj(void)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	ssize_t n = -1;

	if (fd >= 0) {
		n = write(fd, OOM_SCORE_ADJ, strlen(OOM_SCORE_ADJ));
		close(fd);
	}
	if (n < 0)
		log_debug("oom_score_adj %s: %s", OOM_SCORE_ADJ,
			  strerror(errno));
}

/* CAP_IPC_LOCK in the effective set: mlock is then free of RLIMIT_MEMLOCK. */
static bool can_lock_memory(void)
{
	unsigned long long caps = 0;
	char line[256];
	bool found = false;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "CapEff: %llx", &caps) == 1;
	fclose(f);
	return found && (caps & (1ull << CAP_IPC_LOCK_BIT));
}

/*
 * MCL_ONFAULT: lock pages as they are touched, not up front. A sparse
 * 1 GiB memory backend then costs only what was written, as it would
 * unlocked; plain MCL_FUTURE would fault the whole allocation in at
 * once. Without CAP_IPC_LOCK we do not lock at all: under a small
 * RLIMIT_MEMLOCK, MCL_FUTURE would make later allocations fail.
 */
static void lock_memory(void)
{
	if (!can_lock_memory()) {
		log_debug("not locking memory: no CAP_IPC_LOCK");
		return;
	}
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0)
		log_warning("mlockall: %s; running with swappable memory",
			    strerror(errno));
}

/*
 * Threads created after this inherit it; the library also sets it on
 * the threads that serve the kernel.
 */
static void set_io_flusher(void)
{
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		log_debug("PR_SET_IO_FLUSHER: %s", strerror(errno));
}

static bool mlock_asked;

bool harden_mlock(void)
{
	return mlock_asked;
}

void harden_process(bool mlock)
{
	mlock_asked = mlock;
	set_oom_score_adj();
	set_io_flusher();
	if (mlock)
		lock_memory();
}
