/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The file backend's instance, shared by file.c (setup) and file_io.c. */
#ifndef NBDD_BACKENDS_FILE_H
#define NBDD_BACKENDS_FILE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <nbdd/backend.h>

struct file {
	int fd;
	char *path;
	bool blk;    /* a block device, else a regular file */
	bool direct; /* opened with O_DIRECT */
	bool readonly;
	bool rotational;
	uint32_t lbs; /* O_DIRECT alignment, or the device's sector size */
	uint32_t pbs; /* physical block size of a device (0: unknown) */
	_Atomic uint64_t size;
	/* What the kernel told us it cannot do, so we stop asking. */
	atomic_bool no_punch, no_zero_range, no_dsync;
	pthread_mutex_t rmw; /* read-modify-write of partial direct blocks */
};

int file_pread(void *h, void *buf, size_t count, uint64_t offset,
	       uint32_t flags);
int file_pwrite(void *h, const void *buf, size_t count, uint64_t offset,
		uint32_t flags);
int file_trim(void *h, uint64_t count, uint64_t offset, uint32_t flags);
int file_zero(void *h, uint64_t count, uint64_t offset, uint32_t flags);

#endif /* NBDD_BACKENDS_FILE_H */
