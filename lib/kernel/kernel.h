/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal interface of lib/kernel/: the kernel's nbd driver as libnbdd
 * meets it.
 *
 *   netlink.c  the "nbd" generic-netlink family over libnl-genl-3:
 *              CONNECT, DISCONNECT, RECONFIGURE, STATUS, and errors
 *              turned into sentences
 *   events.c   the "nbd_mc_group" multicast group (LINK_DEAD)
 *   plan.c     pure decisions: attach options, server flags, features
 *              that only the kernel release tells
 *   sysfs.c    /sys/block/nbdN, device listing, feature detection
 *   kmod.c     loading the driver with libkmod
 *   mapping.c  socketpairs + serving threads + CONNECT = a mapping
 *
 * Facts this relies on are in drivers/block/nbd.c (6.1 is the oldest
 * kernel supported; newer features are detected, never assumed).
 */
#ifndef NBDD_KERNEL_KERNEL_H
#define NBDD_KERNEL_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nbdd/kernel.h>

struct nl_msg;
struct nlmsghdr;

/* NBD_CFLAG_* of <linux/nbd.h>, which clashes with proto/wire.h. */
#define KNL_CFLAG_DESTROY_ON_DISCONNECT (1u << 0)
#define KNL_CFLAG_DISCONNECT_ON_CLOSE   (1u << 1)

/* The kernel prints a backend identifier into one sysfs page. */
#define KNL_IDENTIFIER_MAX 255

/* ---- netlink.c ---- */

/* What CTRL_CMD_GETFAMILY says about the running driver. */
struct knl_family {
	int id;
	uint32_t version;
	uint32_t maxattr;  /* NBD_ATTR_MAX of the running driver */
	int mcast_group;   /* "nbd_mc_group", or -1 */
};

/* Attributes of CONNECT and RECONFIGURE; zero means "leave out". */
struct knl_config {
	int index;                  /* -1: leave out (CONNECT: kernel picks) */
	uint64_t size;
	uint64_t block_size;
	uint64_t server_flags;
	uint64_t client_flags;
	uint64_t timeout;
	uint64_t dead_conn_timeout;
	const char *identifier;     /* NULL: leave out */
	bool no_dead_conn_wait;     /* send DEAD_CONN_TIMEOUT 0 (RECONFIGURE) */
	const int *fds;
	unsigned nfds;
};

struct knl_dev {
	int index;
	bool connected;
};

struct knl;

/*
 * A netlink socket bound to the "nbd" family. -ENOENT (with a message)
 * when the driver is not loaded.
 */
int knl_open(struct knl **out);
void knl_close(struct knl *k);
const struct knl_family *knl_family(const struct knl *k);
/* The kernel takes BACKEND_IDENTIFIER (5.14+); older ones ignore it. */
bool knl_has_identifier(const struct knl_family *f);

/* CONNECT; *index receives the device the kernel used. */
int knl_connect(struct knl *k, const struct knl_config *c, int *index);
int knl_reconfigure(struct knl *k, const struct knl_config *c);
/* The same on a socket of its own, opened and closed around it. */
int knl_reconfigure_once(const struct knl_config *c);
int knl_disconnect(struct knl *k, int index);
/* STATUS of @index, or of every device when @index is -1; free() *out. */
int knl_status(struct knl *k, int index, struct knl_dev **out, size_t *n);

/* Message building and parsing, apart from any socket (unit tested). */
int knl_build_config(struct nl_msg *msg, const struct knl_family *f,
		     uint8_t cmd, const struct knl_config *c);
int knl_parse_family(struct nlmsghdr *nlh, struct knl_family *out);
/* Appends the DEVICE_LIST of a STATUS reply to *v (*n entries so far). */
int knl_parse_status(struct nlmsghdr *nlh, struct knl_dev **v, size_t *n);
/* The INDEX attribute of a CONNECT reply or a LINK_DEAD event, or -1. */
int knl_parse_index(struct nlmsghdr *nlh);

/*
 * A sentence for a failed command: @err is the kernel's -errno, @index
 * the device asked for (-1: none), @exists whether /sys/block/nbdINDEX
 * is there. Returns @buf.
 */
const char *knl_strerror(char *buf, size_t len, int err, uint8_t cmd,
			 int index, bool exists);

/* ---- plan.c ---- */

/* What an attach depends on, gathered before any decision. */
struct attach_input {
	uint64_t size;            /* export size */
	uint16_t eflags;          /* export_eflags() */
	uint32_t min_block;       /* backend minimum block size (0, 1: none) */
	unsigned long page_size;
	bool write_zeroes;        /* the kernel sends NBD_CMD_WRITE_ZEROES */
};

struct attach_plan {
	unsigned connections;
	uint32_t block_size;
	uint64_t size;            /* rounded down to a whole block */
	uint16_t server_flags;
	uint64_t timeout;
	uint64_t dead_conn_timeout;
};

#define ATTACH_MAX_CONNECTIONS 16
#define ATTACH_DEFAULT_CONNECTIONS 1 /* see plan.c: rescuer starvation */

/*
 * Check @o against @in and decide; -EINVAL with a message when the
 * options cannot be honoured.
 */
int attach_plan_make(const struct nbdd_attach_options *o,
		     const struct attach_input *in, struct attach_plan *out);
/* Transmission flags as the kernel should see them. */
uint16_t kernel_server_flags(uint16_t eflags, bool readonly,
			     bool write_zeroes);
/* "6.1.0-56-amd64" -> 6, 1; -EINVAL when it does not start so. */
int kernel_release_parse(const char *release, unsigned *major,
			 unsigned *minor);
/* NBD_CMD_WRITE_ZEROES exists from 6.12 on; only the release tells. */
bool kernel_release_has_write_zeroes(const char *release);

/* ---- sysfs.c ---- */

/* Tests point this at a fake tree (default "/sys"). */
void sysfs_set_root(const char *root);
bool sysfs_device_exists(int index);
/* uname()'s release, cached. */
const char *kernel_release(void);

/* ---- kmod.c ---- */

/* Whether the driver is present (loaded or built in). */
bool kernel_driver_present(void);

#endif /* NBDD_KERNEL_KERNEL_H */
