/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * file:path=P[,direct=on][,readonly=on] — a regular file or a block device.
 *
 * pread/pwrite on one shared descriptor are thread-safe, so the backend is
 * NBDD_THREAD_PARALLEL. What the filesystem or device cannot do (punching
 * holes, zeroing ranges, RWF_DSYNC) is learned from the first EOPNOTSUPP
 * and not asked again.
 *
 * direct=on opens with O_DIRECT: the minimum block size becomes the
 * device's alignment, and requests that are still unaligned (clients that
 * ignore block sizes, and every buffer nbdd hands us) go through an
 * aligned per-thread bounce buffer; partial blocks are read, modified
 * and written under a lock so two writers of one block cannot lose data.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal.h"
#include "backends/file.h"

/* ---- opening ---- */

static bool parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(v, yes[i]) || !strcmp(v, no[i])) {
			*out = !strcmp(v, yes[i]);
			return true;
		}
	}
	return false;
}

static int parse_params(const struct nbdd_param *p, size_t n, const char **path,
			bool *direct, bool *readonly)
{
	bool *flag;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!strcmp(p[i].key, "path")) {
			*path = p[i].value;
			continue;
		}
		flag = !strcmp(p[i].key, "direct")     ? direct
		       : !strcmp(p[i].key, "readonly") ? readonly
						       : NULL;
		if (!flag) {
			nbdd_backend_error("file: unknown parameter '%s' (file "
					   "takes path=, direct=, readonly=)",
					   p[i].key);
			return -EINVAL;
		}
		if (!parse_bool(p[i].value, flag)) {
			nbdd_backend_error("file: %s must be on or off, not "
					   "'%s'",
					   p[i].key, p[i].value);
			return -EINVAL;
		}
	}
	if (!*path || !**path) {
		nbdd_backend_error("file: path=FILE is required (a regular "
				   "file or a block device)");
		return -EINVAL;
	}
	return 0;
}

/* /sys/dev/block/MAJ:MIN/queue/rotational, or its disk's for a partition. */
static bool rotational(dev_t dev)
{
	static const char *const where[] = {"", "../"};
	char path[128], c = '0';
	size_t i;
	int fd;

	for (i = 0; i < ARRAY_SIZE(where); i++) {
		snprintf(path, sizeof(path),
			 "/sys/dev/block/%u:%u/%squeue/rotational", major(dev),
			 minor(dev), where[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (read(fd, &c, 1) != 1)
			c = '0';
		close(fd);
		return c == '1';
	}
	return false;
}

/* O_DIRECT alignment of a regular file: statx knows; else a safe 4096. */
static uint32_t dio_align(int fd)
{
#ifdef STATX_DIOALIGN
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align)
		return MAX(sx.stx_dio_offset_align, sx.stx_dio_mem_align);
#endif
	return 4096;
}

static int open_error(const char *path, int err, bool direct, bool ro)
{
	switch (err) {
	case ENOENT:
		nbdd_backend_error("file: %s does not exist", path);
		break;
	case EACCES:
	case EPERM:
		nbdd_backend_error("file: no permission to open %s for %s",
				   path,
				   ro ? "reading" : "reading and writing");
		break;
	case EROFS:
		nbdd_backend_error("file: %s is on a read-only filesystem: "
				   "export it read-only",
				   path);
		break;
	case EISDIR:
		nbdd_backend_error("file: %s is a directory, not a regular "
				   "file or block device",
				   path);
		break;
	case EINVAL:
		if (direct) {
			nbdd_backend_error("file: %s: its filesystem does not "
					   "support direct=on (O_DIRECT)",
					   path);
			break;
		}
		/* fall through */
	default:
		nbdd_backend_error("file: cannot open %s: %s", path,
				   strerror(err));
	}
	return -err;
}

/* Size, alignment and what kind of file: the rest of file_open. */
static int file_probe(struct file *f, const struct stat *st)
{
	int lbs = 512;
	unsigned pbs = 0;

	f->blk = S_ISBLK(st->st_mode);
	if (!f->blk && !S_ISREG(st->st_mode)) {
		nbdd_backend_error("file: %s is %s, not a regular file or "
				   "block device",
				   f->path,
				   S_ISDIR(st->st_mode) ? "a directory"
							: "something else");
		return -EINVAL;
	}
	if (f->blk) {
		uint64_t size = 0;
		if (ioctl(f->fd, BLKGETSIZE64, &size) < 0) {
			nbdd_backend_error("file: %s: BLKGETSIZE64: %s",
					   f->path, strerror(errno));
			return -errno;
		}
		atomic_init(&f->size, size);
		(void)ioctl(f->fd, BLKSSZGET, &lbs);
		(void)ioctl(f->fd, BLKPBSZGET, &pbs);
		f->lbs = lbs > 0 ? (uint32_t)lbs : 512;
		f->pbs = pbs;
		f->rotational = rotational(st->st_rdev);
	} else {
		atomic_init(&f->size, (uint64_t)st->st_size);
		f->lbs = f->direct ? dio_align(f->fd) : 1;
		f->rotational = rotational(st->st_dev);
	}
	if (f->direct && (f->lbs & (f->lbs - 1) || f->lbs > 65536 ||
			  atomic_load(&f->size) % f->lbs)) {
		nbdd_backend_error("file: direct=on needs a size that is a "
				   "multiple of the alignment %u; %s is %llu "
				   "bytes",
				   f->lbs, f->path,
				   (unsigned long long)atomic_load(&f->size));
		return -EINVAL;
	}
	return 0;
}

/*
 * conf.c's rule for NAME.conf, for the file itself: a symlink is followed
 * only when root or the user running nbdd owns it, so a link another user
 * planted in a directory they can write cannot point the daemon at
 * /etc/shadow or a disk. O_NOFOLLOW keeps a path that was no link from
 * becoming one before the open.
 */
static int check_link(const char *path, int *flags)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return 0; /* open() says why */
	if (!S_ISLNK(st.st_mode)) {
		*flags |= O_NOFOLLOW;
		return 0;
	}
	if (st.st_uid == 0 || st.st_uid == geteuid())
		return 0;
	nbdd_backend_error("file: %s is a symlink owned by uid %u: only "
			   "symlinks owned by root or by the user running "
			   "nbdd are followed",
			   path, (unsigned)st.st_uid);
	return -EPERM;
}

static int file_open(const struct nbdd_param *params, size_t nparams,
		     int readonly, void **handle)
{
	const char *path = NULL;
	bool direct = false, ro_param = false;
	struct stat st;
	struct file *f;
	int r, flags;

	r = parse_params(params, nparams, &path, &direct, &ro_param);
	if (r)
		return r;
	f = calloc(1, sizeof(*f));
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return -ENOMEM;
	}
	f->readonly = readonly || ro_param;
	f->direct = direct;
	f->fd = -1;
	pthread_mutex_init(&f->rmw, NULL);
	/* O_NONBLOCK: a FIFO must not block the open; cleared below */
	flags = (f->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY |
		O_NONBLOCK | (direct ? O_DIRECT : 0);
	r = check_link(path, &flags);
	if (r)
		goto fail;
	f->fd = open(path, flags);
	if (f->fd < 0) {
		r = open_error(path, errno, direct, f->readonly);
		goto fail;
	}
	r = fstat(f->fd, &st) < 0 ? -errno : file_probe(f, &st);
	if (!r && fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) & ~O_NONBLOCK))
		r = -errno;
	if (r)
		goto fail;
	*handle = f;
	return 0;
fail:
	if (f->fd >= 0)
		close(f->fd);
	pthread_mutex_destroy(&f->rmw);
	free(f->path);
	free(f);
	return r;
}

static void file_close(void *h)
{
	struct file *f = h;

	close(f->fd);
	pthread_mutex_destroy(&f->rmw);
	free(f->path);
	free(f);
}

/* ---- the callbacks that are not data transfer (see file_io.c) ---- */

static int file_get_size(void *h, uint64_t *size)
{
	*size = atomic_load(&((struct file *)h)->size);
	return 0;
}

static int file_block_size(void *h, struct nbdd_block_size *bs)
{
	struct file *f = h;

	if (f->direct) {
		bs->minimum = f->lbs;
		bs->preferred = MAX(f->lbs, 4096u);
	} else if (f->blk) {
		bs->preferred = MAX(f->pbs, 4096u);
	}
	return 0;
}

static int file_capabilities(void *h, uint32_t *caps)
{
	struct file *f = h;
	uint32_t c = NBDD_CAP_FLUSH | NBDD_CAP_CACHE | NBDD_CAP_MULTI_CONN;

	/* One descriptor, one page cache: every connection sees the same. */
	if (!f->readonly)
		c |= NBDD_CAP_WRITE | NBDD_CAP_FUA | NBDD_CAP_TRIM |
		     NBDD_CAP_ZERO | NBDD_CAP_FAST_ZERO;
	if (!f->blk)
		c |= NBDD_CAP_EXTENTS | (f->readonly ? 0 : NBDD_CAP_RESIZE);
	if (f->rotational)
		c |= NBDD_CAP_ROTATIONAL;
	*caps = c;
	return 0;
}

static int file_flush(void *h, uint32_t flags)
{
	struct file *f = h;

	if (fdatasync(f->fd) < 0) {
		nbdd_backend_error("file: fdatasync %s: %s", f->path,
				   strerror(errno));
		return -errno;
	}
	return 0;
}

static int file_cache(void *h, uint64_t count, uint64_t offset, uint32_t flags)
{
	struct file *f = h;
	int r = posix_fadvise(f->fd, (off_t)offset, (off_t)count,
			      POSIX_FADV_WILLNEED);

	return -r;
}

/* Holes report as holes that read as zeroes; SEEK_DATA finds them. */
static int file_extents(void *h, uint64_t count, uint64_t offset,
			uint32_t flags, struct nbdd_extents *out)
{
	struct file *f = h;
	uint64_t end = offset + count;
	off_t d, e;
	int r = 0;

	while (r == 0 && offset < end && out->next < out->end) {
		d = lseek(f->fd, (off_t)offset, SEEK_DATA);
		if (d < 0 && errno != ENXIO) /* no SEEK_DATA: all data */
			return nbdd_extents_add(out, offset, end - offset, 0);
		if (d < 0 || (uint64_t)d > offset) {
			/* ENXIO: nothing but hole up to the end of file. */
			uint64_t to = d < 0 ? end : MIN(end, (uint64_t)d);
			r = nbdd_extents_add(out, offset, to - offset,
					     NBDD_EXTENT_HOLE |
						 NBDD_EXTENT_ZERO);
			offset = to;
			continue;
		}
		e = lseek(f->fd, (off_t)offset, SEEK_HOLE);
		if (e < 0 || (uint64_t)e <= offset)
			e = (off_t)end;
		e = (off_t)MIN(end, (uint64_t)e);
		r = nbdd_extents_add(out, offset, (uint64_t)e - offset, 0);
		offset = (uint64_t)e;
	}
	return r;
}

static int file_resize(void *h, uint64_t new_size)
{
	struct file *f = h;

	if (f->blk) {
		nbdd_backend_error("file: a block device cannot be resized");
		return -ENOTSUP;
	}
	if (f->direct && new_size % f->lbs) {
		nbdd_backend_error("file: with direct=on the size must be a "
				   "multiple of %u",
				   f->lbs);
		return -EINVAL;
	}
	if (new_size > INT64_MAX || ftruncate(f->fd, (off_t)new_size) < 0) {
		int err = new_size > INT64_MAX ? EFBIG : errno;
		nbdd_backend_error("file: resize %s: %s", f->path,
				   strerror(err));
		return -err;
	}
	atomic_store(&f->size, new_size);
	return 0;
}

const struct nbdd_backend nbdd_backend_file = {
    NBDD_BACKEND_HEADER,
    .name = "file",
    .description = "a regular file or a block device",
    .help = "path=FILE      the file or block device (required)\n"
	    "direct=on|off  O_DIRECT: bypass the page cache\n"
	    "readonly=on|off  open read-only",
    .thread_model = NBDD_THREAD_PARALLEL,
    .open = file_open,
    .close = file_close,
    .get_size = file_get_size,
    .block_size = file_block_size,
    .capabilities = file_capabilities,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .trim = file_trim,
    .zero = file_zero,
    .cache = file_cache,
    .extents = file_extents,
    .resize = file_resize,
};
