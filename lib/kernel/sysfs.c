/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * /sys/block/nbdN, device listings and feature detection.
 *
 * sysfs tells what netlink does not: the serving pid (present only while
 * a server is bound), the size, the block size and, from 5.14, the
 * backend identifier.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "internal.h"
#include "kernel/kernel.h"

static const char *sysfs_root = "/sys";

void sysfs_set_root(const char *root)
{
	sysfs_root = root ? root : "/sys";
}

static void attr_path(char *buf, size_t len, int index, const char *attr)
{
	snprintf(buf, len, "%s/block/nbd%d%s%s", sysfs_root, index,
		 attr ? "/" : "", attr ? attr : "");
}

bool sysfs_device_exists(int index)
{
	char path[PATH_MAX];

	attr_path(path, sizeof(path), index, NULL);
	return access(path, F_OK) == 0;
}

/* Read one attribute into @buf without its trailing newline. */
static int read_attr(int index, const char *attr, char *buf, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd;

	attr_path(path, sizeof(path), index, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

static int read_u64(int index, const char *attr, uint64_t *out)
{
	char buf[32], *end;
	int r = read_attr(index, attr, buf, sizeof(buf));

	if (r < 0)
		return r;
	errno = 0;
	*out = strtoull(buf, &end, 10);
	if (errno || end == buf || *end)
		return -EPROTO;
	return 0;
}

static int attr_error(int r, int index, const char *attr)
{
	return set_error(r, "/sys/block/nbd%d/%s: %s", index, attr,
			 strerror(-r));
}

NBDD_EXPORT int nbdd_sysfs_size(int index, uint64_t *bytes)
{
	uint64_t sectors;
	int r = read_u64(index, "size", &sectors);

	if (r < 0)
		return attr_error(r, index, "size");
	*bytes = sectors * 512; /* always 512-byte units, whatever the disk */
	return 0;
}

NBDD_EXPORT int nbdd_sysfs_block_size(int index, uint32_t *bytes)
{
	uint64_t v;
	int r = read_u64(index, "queue/logical_block_size", &v);

	if (r < 0)
		return attr_error(r, index, "queue/logical_block_size");
	*bytes = (uint32_t)v;
	return 0;
}

NBDD_EXPORT int nbdd_sysfs_pid(int index, int *pid)
{
	uint64_t v;
	int r = read_u64(index, "pid", &v);

	if (r < 0)
		return attr_error(r, index, "pid");
	*pid = (int)v;
	return 0;
}

NBDD_EXPORT int nbdd_sysfs_backend(int index, char *buf, size_t len)
{
	int r;

	if (!len)
		return -EINVAL;
	r = read_attr(index, "backend", buf, len);
	if (r < 0) {
		buf[0] = '\0';
		return attr_error(r, index, "backend");
	}
	return 0;
}

/* Fill what sysfs knows; absent attributes leave zeroes. */
static void fill_sysfs(struct nbdd_kernel_device *d)
{
	uint64_t v;

	d->pid = read_u64(d->index, "pid", &v) == 0 ? (int)v : 0;
	d->size = read_u64(d->index, "size", &v) == 0 ? v * 512 : 0;
	d->logical_block_size =
		read_u64(d->index, "queue/logical_block_size", &v) == 0 ?
		(uint32_t)v : 0;
	if (read_attr(d->index, "backend", d->backend, sizeof(d->backend)))
		d->backend[0] = '\0';
}

NBDD_EXPORT int nbdd_kernel_device(int index, struct nbdd_kernel_device *out)
{
	struct knl_dev *v = NULL;
	struct knl *k;
	size_t n = 0;
	int r;

	clear_error();
	if (index < 0 || !sysfs_device_exists(index))
		return set_error(-ENODEV, "no such device /dev/nbd%d", index);
	r = knl_open(&k);
	if (r < 0)
		return r;
	r = knl_status(k, index, &v, &n);
	knl_close(k);
	if (r < 0)
		return r;
	memset(out, 0, sizeof(*out));
	out->index = index;
	out->connected = n > 0 && v[0].connected;
	free(v);
	fill_sysfs(out);
	return 0;
}

static int by_index(const void *a, const void *b)
{
	const struct nbdd_kernel_device *x = a, *y = b;

	return (x->index > y->index) - (x->index < y->index);
}

NBDD_EXPORT int nbdd_kernel_list(struct nbdd_kernel_device **out,
				 size_t *count)
{
	struct nbdd_kernel_device *d;
	struct knl_dev *v = NULL;
	struct knl *k;
	size_t n = 0, i;
	int r;

	clear_error();
	r = knl_open(&k);
	if (r < 0)
		return r;
	r = knl_status(k, -1, &v, &n);
	knl_close(k);
	if (r < 0)
		return r;
	d = calloc(n ? n : 1, sizeof(*d));
	if (!d) {
		free(v);
		return set_error(-ENOMEM, "out of memory");
	}
	for (i = 0; i < n; i++) {
		d[i].index = v[i].index;
		d[i].connected = v[i].connected;
		fill_sysfs(&d[i]);
	}
	free(v);
	qsort(d, n, sizeof(*d), by_index);
	*out = d;
	*count = n;
	return 0;
}

NBDD_EXPORT int nbdd_kernel_disconnect(int index)
{
	struct knl *k;
	int r;

	clear_error();
	if (index < 0)
		return set_error(-EINVAL, "device index %d", index);
	r = knl_open(&k);
	if (r < 0)
		return r;
	r = knl_disconnect(k, index);
	knl_close(k);
	return r;
}

NBDD_EXPORT int nbdd_kernel_fail_fast(int index)
{
	char ident[KNL_IDENTIFIER_MAX + 1] = "";
	struct knl_config c = { .index = index, .no_dead_conn_wait = true };

	clear_error();
	if (index < 0)
		return set_error(-EINVAL, "device index %d", index);
	/* RECONFIGURE must repeat the identifier the device was given. */
	if (nbdd_sysfs_backend(index, ident, sizeof(ident)) == 0 && ident[0])
		c.identifier = ident;
	clear_error();
	return knl_reconfigure_once(&c);
}

NBDD_EXPORT int nbdd_kernel_device_in_use(int index)
{
	char path[32];
	int fd;

	clear_error();
	snprintf(path, sizeof(path), "/dev/nbd%d", index);
	/* An exclusive open fails while a filesystem or dm holds the disk. */
	fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == EBUSY)
		return 1;
	return set_error(-errno, "%s: %s", path, strerror(errno));
}

/* ---- features ---- */

static pthread_once_t release_once = PTHREAD_ONCE_INIT;
static char release_buf[65];

static void release_init(void)
{
	struct utsname u;

	if (uname(&u) == 0)
		snprintf(release_buf, sizeof(release_buf), "%s", u.release);
}

const char *kernel_release(void)
{
	pthread_once(&release_once, release_init);
	return release_buf;
}

NBDD_EXPORT int nbdd_kernel_features(struct nbdd_kernel_features *out)
{
	const struct knl_family *f;
	struct knl *k;
	int r;

	clear_error();
	memset(out, 0, sizeof(*out));
	snprintf(out->release, sizeof(out->release), "%s", kernel_release());
	out->write_zeroes = kernel_release_has_write_zeroes(out->release);
	r = knl_open(&k);
	if (r < 0)
		return r;
	f = knl_family(k);
	out->genl_version = f->version;
	out->max_attr = f->maxattr;
	out->backend_identifier = knl_has_identifier(f);
	knl_close(k);
	return 0;
}
