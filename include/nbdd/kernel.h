/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libnbdd: low-level access to the kernel's nbd driver, for programs that
 * manage many devices (the nbdd daemon) rather than just attach one.
 *
 * Devices are named by their index: /dev/nbdINDEX. Everything here
 * returns 0 (or a count) or a negative errno with nbdd_last_error() set.
 *
 * ---- What happens when the serving process dies ----
 * The kernel holds its own references to the sockets of a mapping. When
 * the process that served them exits (or crashes), its ends close and
 * the kernel sees each socket die: it announces NBD_CMD_LINK_DEAD on the
 * "nbd_mc_group" multicast group and then
 *  - with dead_conn_timeout = 0: fails queued and new I/O with EIO at
 *    once. The device stays configured (sysfs pid, size) until someone
 *    sends DISCONNECT (nbdd_kernel_disconnect(), `nbd-client -d`);
 *  - with dead_conn_timeout = T: holds I/O for up to T seconds, waiting
 *    for RECONFIGURE to hand it new sockets. A new process can take the
 *    device over with nbdd_mapping_adopt() and nothing above the block
 *    device notices, beyond the pause.
 * RECONFIGURE only replaces sockets the kernel already considers dead;
 * it silently keeps live ones. nbdd_mapping_adopt() detects sockets the
 * kernel did not take and reports -EBUSY when it took none.
 *
 * ---- Why one socket per device by default ----
 * The driver reads each socket in a work item that lasts as long as the
 * socket, on a WQ_MEM_RECLAIM workqueue. If no kernel worker can be
 * started quickly when the sockets are handed over (memory pressure, or
 * simply the first use after boot on a slow VM), the workqueue's single
 * rescuer thread takes the pending receive works and runs them one after
 * another: every socket but the first is then never read, and each
 * request sent on one waits out the whole request timeout before the
 * kernel drops that socket. Observed on 6.1 (about one first attach in
 * four with two sockets, under emulation). One socket cannot starve;
 * asking for more (nbdd_attach_options.connections) is allowed when the
 * backend has multi-conn, at that risk.
 */
#ifndef NBDD_KERNEL_H
#define NBDD_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nbdd/nbdd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the driver ---- */

/*
 * Load the nbd module if it is neither loaded nor built in, asking for
 * @nbds_max pre-created devices (0: the module's default). The kernel
 * creates further devices on demand when asked to pick one, so a small
 * number (even 0) is fine for nbdd alone. nbdd_kernel_prepare() is this
 * with $NBDD_NBDS_MAX, or 0.
 */
int nbdd_kernel_load(unsigned nbds_max);

struct nbdd_kernel_features {
	char release[65];        /* uname -r */
	unsigned genl_version;   /* of the "nbd" netlink family */
	unsigned max_attr;       /* highest NBD_ATTR_* the driver knows */
	/* NBD_ATTR_BACKEND_IDENTIFIER (5.14+), from the family's maxattr. */
	bool backend_identifier;
	/*
	 * NBD_CMD_WRITE_ZEROES (6.12+). The driver publishes no sign of it,
	 * so this comes from the release number alone: a distribution
	 * kernel that back-ported it reads as false, and the kernel then
	 * writes zeroes as ordinary writes -- slower, never wrong.
	 */
	bool write_zeroes;
};

/* -ENOENT when the driver is not there (see nbdd_kernel_load()). */
int nbdd_kernel_features(struct nbdd_kernel_features *out);

/* ---- devices ---- */

struct nbdd_kernel_device {
	int index;
	/*
	 * The driver holds a configuration for the device (netlink STATUS):
	 * true while connected, but also while an unconnected device is
	 * merely held open (udev probing, a stray `blkid`).
	 */
	bool connected;
	/*
	 * sysfs pid: present while a server is bound (so also after that
	 * server died, until DISCONNECT). It names the thread that sent
	 * CONNECT -- a thread id if that was not the main thread -- and
	 * RECONFIGURE does not change it. 0: no server bound.
	 */
	int pid;
	uint64_t size;               /* bytes, 0 when not connected */
	uint32_t logical_block_size; /* bytes */
	char backend[256];           /* sysfs backend identifier, or "" */
};

/* One device; -ENODEV when /dev/nbdINDEX does not exist. */
int nbdd_kernel_device(int index, struct nbdd_kernel_device *out);
/* Every device, by index. *out is one malloc()ed array: free() it. */
int nbdd_kernel_list(struct nbdd_kernel_device **out, size_t *count);
/*
 * Tell the kernel to drop the device's sockets (and so its server).
 * I/O still queued fails. Works on any device, not only ours.
 */
int nbdd_kernel_disconnect(int index);

/*
 * Stop a device that lost its server from waiting for a new one
 * (RECONFIGURE with dead_conn_timeout 0): its I/O fails at once from
 * now on, instead of after the timeout. For a device nobody can serve
 * again; `nbdd_kernel_disconnect()` still releases it.
 */
int nbdd_kernel_fail_fast(int index);

/*
 * 1 when something holds the device exclusively (a mounted filesystem,
 * LVM, dm), 0 when not. Opens /dev/nbdINDEX for a moment: ask only about
 * connected devices, or the open itself makes udev probe an empty disk.
 */
int nbdd_kernel_device_in_use(int index);

/* sysfs, one value each; -ENOENT when the attribute is absent. */
int nbdd_sysfs_size(int index, uint64_t *bytes);
int nbdd_sysfs_block_size(int index, uint32_t *bytes);
int nbdd_sysfs_pid(int index, int *pid);
int nbdd_sysfs_backend(int index, char *buf, size_t len);

/* ---- link-dead events ---- */

struct nbdd_kernel_events;

/*
 * Index of a device whose socket died, or NBDD_EVENTS_LOST when the
 * socket's buffer overran and events were lost: look at every device.
 */
#define NBDD_EVENTS_LOST (-1)
typedef void (*nbdd_link_dead_fn)(void *opaque, int index);

int nbdd_kernel_events_open(struct nbdd_kernel_events **out);
/* A non-blocking fd for poll(): readable when events are pending. */
int nbdd_kernel_events_fd(const struct nbdd_kernel_events *ev);
/* Deliver what is pending to @fn, without blocking; returns the count. */
int nbdd_kernel_events_dispatch(struct nbdd_kernel_events *ev,
				nbdd_link_dead_fn fn, void *opaque);
void nbdd_kernel_events_close(struct nbdd_kernel_events *ev);

/* ---- more on mappings (see nbdd_attach() in nbdd.h) ---- */

/*
 * Take over a device whose previous server died, with new sockets
 * (RECONFIGURE). The device must still be configured (its dead-conn
 * timeout running, or I/O failing). @o: connections (0: as for
 * nbdd_attach()), timeouts; identifier NULL means the one the device
 * shows in sysfs. The size and server flags stay as the kernel has them,
 * so @e must be the same data the device was attached with. o->index is
 * ignored.
 */
int nbdd_mapping_adopt(struct nbdd_export *e, int index,
		       const struct nbdd_attach_options *o,
		       struct nbdd_mapping **out);

/*
 * An eventfd that becomes readable each time one of the mapping's
 * connections ends (the kernel disconnected, or a socket broke).
 * Read it to clear it, then look at nbdd_mapping_live().
 */
int nbdd_mapping_fd(const struct nbdd_mapping *m);
/* Connections still being served. */
unsigned nbdd_mapping_live(const struct nbdd_mapping *m);
/* The backend identifier given to the kernel ("" if none). */
const char *nbdd_mapping_identifier(const struct nbdd_mapping *m);
/*
 * Change the size of the backend and of its device together (the
 * kernel's RECONFIGURE with SIZE_BYTES): @new_size must be a multiple of
 * the device's block size and the backend must be able to resize
 * (NBDD_CAP_RESIZE). Shrinking under a mounted filesystem is the
 * caller's choice to make; nbdctl asks for --allow-shrink.
 */
int nbdd_mapping_resize(struct nbdd_mapping *m, uint64_t new_size);
/*
 * For a backend whose size can change outside nbdd
 * (NBDD_BACKEND_SIZE_CHANGES): ask it its size and give the device that
 * size if it differs. 1 changed, 0 unchanged, -ENOTSUP for a backend
 * whose size never changes by itself (no need to ask again), -errno.
 */
int nbdd_mapping_sync_size(struct nbdd_mapping *m);
/*
 * Let the device keep running without us: stop serving and free @m
 * without DISCONNECT. For handing devices over to a successor; the
 * kernel waits for it as long as dead_conn_timeout allows.
 */
void nbdd_mapping_abandon(struct nbdd_mapping *m);

#ifdef __cplusplus
}
#endif
#endif /* NBDD_KERNEL_H */
