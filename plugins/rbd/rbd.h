/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The rbd plugin's instance, shared by rbd.c (opening) and io.c (data). */
#ifndef NBDD_PLUGIN_RBD_H
#define NBDD_PLUGIN_RBD_H

#include <stdbool.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include <nbdd/backend.h>

struct rbd {
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t image;
	char *name;    /* "pool/[namespace/]image[@snap]", for messages */
	bool writable; /* opened read-write: no snap=, not a read-only export */
	bool exclusive;
};

/* io.c: the data callbacks, one librbd aio request each; synchronous
 * ones wait for it, .aio_ ones end it from librbd's completion thread. */
int rbd_plugin_pread(void *handle, void *buf, size_t count, uint64_t offset,
		     uint32_t flags);
int rbd_plugin_pwrite(void *handle, const void *buf, size_t count,
		      uint64_t offset, uint32_t flags);
int rbd_plugin_flush(void *handle, uint32_t flags);
int rbd_plugin_trim(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags);
int rbd_plugin_zero(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags);
int rbd_plugin_aio_pread(void *handle, void *buf, size_t count,
			 uint64_t offset, uint32_t flags,
			 struct nbdd_request *req);
int rbd_plugin_aio_pwrite(void *handle, const void *buf, size_t count,
			  uint64_t offset, uint32_t flags,
			  struct nbdd_request *req);
int rbd_plugin_aio_flush(void *handle, uint32_t flags,
			 struct nbdd_request *req);
int rbd_plugin_aio_trim(void *handle, uint64_t count, uint64_t offset,
			uint32_t flags, struct nbdd_request *req);
int rbd_plugin_aio_zero(void *handle, uint64_t count, uint64_t offset,
			uint32_t flags, struct nbdd_request *req);
int rbd_plugin_extents(void *handle, uint64_t count, uint64_t offset,
		       uint32_t flags, struct nbdd_extents *out);

#endif
