/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The decisions of an attach, apart from any kernel: which options are
 * acceptable, how many sockets, which block size, which server flags.
 *
 * Connections: 0 means one socket. Several sockets are allowed only when
 * the export has NBD_FLAG_CAN_MULTI_CONN: the kernel refuses them without
 * it (EINVAL from CONNECT), and without it writes on one socket need not
 * be visible on another, so such a request is refused here with a
 * sentence rather than silently clamped.
 *
 * Why not one per CPU by default: the driver runs each socket's receive
 * loop as a work item on a WQ_MEM_RECLAIM workqueue, for the socket's
 * whole life. When no kworker can be created within the mayday timeout
 * at CONNECT time (first use after boot on a slow VM, or memory pressure)
 * the workqueue's rescuer takes the pending receive works and runs them
 * one after another -- so the second socket is never read, and every
 * request sent on it waits out the full timeout before the kernel gives
 * up on that socket. Seen on 6.1 under emulation, about one first attach
 * in four with two sockets (sysrq-t: "in-flight: N(RESCUER):recv_work
 * recv_work"). One socket cannot starve that way; more is the caller's
 * informed choice.
 *
 * Block size: the kernel takes a power of two from 512 to the page size.
 * 0 means the backend's minimum if it has one above 512, else 512, so the
 * kernel never sends a request the backend would refuse for alignment.
 * The size given to the kernel is rounded down to a whole block: a
 * partial last block could not be read through the block layer anyway.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "kernel/kernel.h"

/*
 * Flags the driver acts on. The rest (DF, RESIZE, CACHE, FAST_ZERO,
 * BLOCK_STAT_PAYLOAD) describe commands the kernel never sends.
 */
#define KERNEL_FLAGS                                                     \
	(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH |   \
	 NBD_FLAG_SEND_FUA | NBD_FLAG_ROTATIONAL | NBD_FLAG_SEND_TRIM |    \
	 NBD_FLAG_CAN_MULTI_CONN)

uint16_t kernel_server_flags(uint16_t eflags, bool readonly,
			     bool write_zeroes)
{
	uint16_t f = eflags & KERNEL_FLAGS;

	if (write_zeroes)
		f |= eflags & NBD_FLAG_SEND_WRITE_ZEROES;
	/* The kernel honours FUA only on a device with a write cache. */
	if (!(f & NBD_FLAG_SEND_FLUSH))
		f &= (uint16_t)~NBD_FLAG_SEND_FUA;
	if (readonly)
		f |= NBD_FLAG_READ_ONLY;
	return f | NBD_FLAG_HAS_FLAGS;
}

int kernel_release_parse(const char *release, unsigned *major,
			 unsigned *minor)
{
	unsigned long ma, mi;
	char *end;

	if (!release || *release < '0' || *release > '9')
		return -EINVAL;
	ma = strtoul(release, &end, 10);
	if (*end != '.' || end[1] < '0' || end[1] > '9')
		return -EINVAL;
	mi = strtoul(end + 1, &end, 10);
	if (ma > 65535 || mi > 65535)
		return -EINVAL;
	*major = (unsigned)ma;
	*minor = (unsigned)mi;
	return 0;
}

bool kernel_release_has_write_zeroes(const char *release)
{
	unsigned ma, mi;

	if (kernel_release_parse(release, &ma, &mi) < 0)
		return false; /* unknown: the safe answer */
	return ma > 6 || (ma == 6 && mi >= 12);
}

static bool power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int plan_connections(const struct nbdd_attach_options *o,
			    const struct attach_input *in, unsigned *out)
{
	bool multi = in->eflags & NBD_FLAG_CAN_MULTI_CONN;
	unsigned n = o->connections;

	if (n > ATTACH_MAX_CONNECTIONS)
		return set_error(-EINVAL,
				 "%u connections asked for; at most %u",
				 n, ATTACH_MAX_CONNECTIONS);
	if (n > 1 && !multi)
		return set_error(-EINVAL,
				 "%u connections asked for, but the backend "
				 "does not promise a consistent image across "
				 "connections (no multi-conn): use 1", n);
	*out = n ? n : ATTACH_DEFAULT_CONNECTIONS;
	return 0;
}

static int plan_block_size(const struct nbdd_attach_options *o,
			   const struct attach_input *in, uint32_t *out)
{
	uint64_t page = in->page_size ? in->page_size : 4096;
	uint32_t min = in->min_block > 1 ? in->min_block : 1;
	uint32_t bs = o->block_size;

	if (bs == 0) {
		bs = MAX(min, 512u);
		if (bs > page)
			return set_error(-EINVAL,
					 "the backend needs %u-byte blocks; the "
					 "kernel takes at most %llu",
					 min, (unsigned long long)page);
	}
	if (bs < 512 || bs > page || !power_of_two(bs))
		return set_error(-EINVAL,
				 "block size %u: must be a power of two from "
				 "512 to %llu", bs, (unsigned long long)page);
	if (bs < min || bs % min)
		return set_error(-EINVAL,
				 "block size %u: the backend needs multiples "
				 "of %u bytes", bs, min);
	*out = bs;
	return 0;
}

int attach_plan_make(const struct nbdd_attach_options *o,
		     const struct attach_input *in, struct attach_plan *out)
{
	int r;

	if (o->index < -1)
		return set_error(-EINVAL, "device index %d: use -1 to let "
				 "the kernel pick", o->index);
	r = plan_connections(o, in, &out->connections);
	if (r < 0)
		return r;
	r = plan_block_size(o, in, &out->block_size);
	if (r < 0)
		return r;
	out->size = in->size - in->size % out->block_size;
	if (out->size == 0)
		return set_error(-EINVAL,
				 "the export (%llu bytes) is smaller than one "
				 "%u-byte block",
				 (unsigned long long)in->size, out->block_size);
	out->server_flags = kernel_server_flags(in->eflags, o->readonly,
						in->write_zeroes);
	out->timeout = o->timeout;
	out->dead_conn_timeout = o->dead_conn_timeout;
	return 0;
}
