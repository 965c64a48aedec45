/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The file backend's data path: reads, writes, trim and zero. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "backends/file.h"

/* The largest piece moved through a bounce buffer or written as zeroes. */
#define PIECE ((size_t)1 << 20)
/* At least any O_DIRECT alignment we accept. */
#define BOUNCE_ALIGN 65536

/* Never written: a source of zeroes that costs no memory. */
static uint8_t zero_buf[PIECE] __attribute__((aligned(BOUNCE_ALIGN)));

static int io_error(const struct file *f, const char *op, uint64_t off, int err)
{
	nbdd_backend_error("file: %s %s at %llu: %s", op, f->path,
			   (unsigned long long)off, strerror(err));
	return -err;
}

static int sync_data(struct file *f)
{
	while (fdatasync(f->fd) < 0) {
		if (errno != EINTR)
			return io_error(f, "fdatasync", 0, errno);
	}
	return 0;
}

/* ---- full transfers ---- */

static int read_at(struct file *f, void *buf, size_t count, uint64_t off)
{
	char *p = buf;
	ssize_t n;

	while (count) {
		n = pread(f->fd, p, count, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return io_error(f, "read", off, errno);
		if (n == 0) { /* the file shrank under us: zeroes */
			memset(p, 0, count);
			return 0;
		}
		p += n;
		off += (uint64_t)n;
		count -= (size_t)n;
	}
	return 0;
}

/* One write; FUA through RWF_DSYNC where the kernel has it. */
static ssize_t write_once(struct file *f, const void *p, size_t count,
			  uint64_t off, bool *dsync)
{
	struct iovec iov = {(void *)p, count};
	ssize_t n;

	if (*dsync) {
		n = pwritev2(f->fd, &iov, 1, (off_t)off, RWF_DSYNC);
		if (n >= 0 || (errno != EOPNOTSUPP && errno != ENOSYS))
			return n;
		atomic_store(&f->no_dsync, true);
		*dsync = false;
	}
	return pwrite(f->fd, p, count, (off_t)off);
}

static int write_at(struct file *f, const void *buf, size_t count, uint64_t off,
		    bool fua)
{
	bool dsync =
	    fua && !atomic_load_explicit(&f->no_dsync, memory_order_relaxed);
	const char *p = buf;
	ssize_t n;

	while (count) {
		n = write_once(f, p, count, off, &dsync);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return io_error(f, "write", off,
					n < 0 ? errno : ENOSPC);
		p += n;
		off += (uint64_t)n;
		count -= (size_t)n;
	}
	return fua && !dsync ? sync_data(f) : 0;
}

/* ---- O_DIRECT: alignment and bounce buffers ---- */

static pthread_key_t bounce_key;
static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;
static bool bounce_ok;

static void bounce_init(void)
{
	bounce_ok = pthread_key_create(&bounce_key, free) == 0;
}

/* This thread's aligned PIECE-byte buffer, freed when the thread ends. */
static char *bounce(void)
{
	void *b;

	pthread_once(&bounce_once, bounce_init);
	if (!bounce_ok)
		return NULL;
	b = pthread_getspecific(bounce_key);
	if (!b && posix_memalign(&b, BOUNCE_ALIGN, PIECE) == 0 &&
	    pthread_setspecific(bounce_key, b)) {
		free(b);
		b = NULL;
	}
	if (!b)
		nbdd_backend_error("file: out of memory for a bounce buffer");
	return b;
}

static bool aligned(const struct file *f, const void *buf, uint64_t off,
		    uint64_t count)
{
	return !f->direct ||
	       !(((uintptr_t)buf | off | count) & (uint64_t)(f->lbs - 1));
}

/* One piece of an unaligned direct transfer: [a0, a0 + alen) aligned. */
struct piece {
	uint64_t a0;
	size_t skip, n, alen;
};

static struct piece piece_at(const struct file *f, uint64_t off, size_t count)
{
	uint64_t mask = f->lbs - 1;
	struct piece p;

	p.a0 = off & ~mask;
	p.skip = (size_t)(off - p.a0);
	p.n = MIN(count, PIECE - p.skip);
	p.alen = (size_t)((p.skip + p.n + mask) & ~mask);
	return p;
}

static int direct_read(struct file *f, char *buf, size_t count, uint64_t off)
{
	char *b = bounce();
	struct piece p;
	int r;

	if (!b)
		return -ENOMEM;
	while (count) {
		p = piece_at(f, off, count);
		r = read_at(f, b, p.alen, p.a0);
		if (r)
			return r;
		memcpy(buf, b + p.skip, p.n);
		buf += p.n;
		off += p.n;
		count -= p.n;
	}
	return 0;
}

/* Read the partial first and last blocks of @p around the new data. */
static int read_edges(struct file *f, char *b, const struct piece *p)
{
	bool tail = (p->skip + p->n) & (f->lbs - 1);
	int r = 0;

	if (p->skip)
		r = read_at(f, b, f->lbs, p->a0);
	/* A single block was read whole just above. */
	if (r == 0 && tail && (p->alen > f->lbs || !p->skip))
		r = read_at(f, b + p->alen - f->lbs, f->lbs,
			    p->a0 + p->alen - f->lbs);
	return r;
}

static int direct_write(struct file *f, const char *buf, size_t count,
			uint64_t off, bool fua)
{
	char *b = bounce();
	struct piece p;
	bool partial;
	int r;

	if (!b)
		return -ENOMEM;
	while (count) {
		p = piece_at(f, off, count);
		partial = p.skip || ((p.skip + p.n) & (f->lbs - 1));
		if (partial)
			pthread_mutex_lock(&f->rmw);
		r = partial ? read_edges(f, b, &p) : 0;
		if (r == 0) {
			memcpy(b + p.skip, buf, p.n);
			r = write_at(f, b, p.alen, p.a0, fua);
		}
		if (partial)
			pthread_mutex_unlock(&f->rmw);
		if (r)
			return r;
		buf += p.n;
		off += p.n;
		count -= p.n;
	}
	return 0;
}

int file_pread(void *h, void *buf, size_t count, uint64_t offset,
	       uint32_t flags)
{
	struct file *f = h;

	if (aligned(f, buf, offset, count))
		return read_at(f, buf, count, offset);
	return direct_read(f, buf, count, offset);
}

static int do_write(struct file *f, const void *buf, size_t count,
		    uint64_t offset, bool fua)
{
	if (aligned(f, buf, offset, count))
		return write_at(f, buf, count, offset, fua);
	return direct_write(f, buf, count, offset, fua);
}

int file_pwrite(void *h, const void *buf, size_t count, uint64_t offset,
		uint32_t flags)
{
	return do_write(h, buf, count, offset, flags & NBDD_F_FUA);
}

/* ---- trim and zero ---- */

/* fallocate(); -EOPNOTSUPP, remembered in *@unsupported, if it cannot. */
static int falloc(struct file *f, int mode, uint64_t off, uint64_t len,
		  atomic_bool *unsupported)
{
	if (unsupported &&
	    atomic_load_explicit(unsupported, memory_order_relaxed))
		return -EOPNOTSUPP;
	while (fallocate(f->fd, mode, (off_t)off, (off_t)len) < 0) {
		if (errno == EINTR)
			continue;
		if (errno != EOPNOTSUPP && errno != ENOSYS)
			return io_error(f, "fallocate", off, errno);
		if (unsupported)
			atomic_store(unsupported, true);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int write_zeroes(struct file *f, uint64_t count, uint64_t off)
{
	size_t n;
	int r;

	for (; count; count -= n, off += n) {
		n = (size_t)MIN(count, (uint64_t)PIECE);
		r = do_write(f, zero_buf, n, off, false);
		if (r)
			return r;
	}
	return 0;
}

/* The whole logical blocks inside [*off, *off + *len), if any. */
static bool inner_blocks(const struct file *f, uint64_t *off, uint64_t *len)
{
	uint64_t mask = f->lbs - 1;
	uint64_t s = (*off + mask) & ~mask, e = (*off + *len) & ~mask;

	if (e <= s)
		return false;
	*off = s;
	*len = e - s;
	return true;
}

/* Trim is advisory: a device or filesystem without it does nothing. */
int file_trim(void *h, uint64_t count, uint64_t offset, uint32_t flags)
{
	const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	struct file *f = h;
	uint64_t range[2] = {offset, count};
	int r = 0;

	if (f->blk && inner_blocks(f, &range[0], &range[1]) &&
	    ioctl(f->fd, BLKDISCARD, range) < 0 && errno != EOPNOTSUPP)
		r = io_error(f, "discard", offset, errno);
	if (!f->blk)
		r = falloc(f, punch, offset, count, &f->no_punch);
	if (r == -EOPNOTSUPP)
		r = 0;
	return r == 0 && (flags & NBDD_F_FUA) ? sync_data(f) : r;
}

static int reg_zero(struct file *f, uint64_t count, uint64_t off, bool may_trim)
{
	const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	int r;

	if (may_trim) {
		r = falloc(f, punch, off, count, &f->no_punch);
		if (r != -EOPNOTSUPP)
			return r;
	}
	r = falloc(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, count,
		   &f->no_zero_range);
	if (r != -EOPNOTSUPP || may_trim)
		return r;
	/* No ZERO_RANGE (tmpfs...): punch, then allocate the blocks again. */
	r = falloc(f, punch, off, count, &f->no_punch);
	if (r)
		return r;
	r = falloc(f, FALLOC_FL_KEEP_SIZE, off, count, NULL);
	return r == -EOPNOTSUPP ? 0 : r; /* zeroed, if not provisioned */
}

/*
 * On a block device, fallocate(PUNCH_HOLE) zeroes without ever falling
 * back to writing (so it is the FAST one); ZERO_RANGE and BLKZEROOUT may
 * write. Both want whole sectors: the edges are written as zeroes.
 */
static int blk_zero(struct file *f, uint64_t count, uint64_t off, bool may_trim,
		    bool fast)
{
	const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	uint64_t s = off, len = count, range[2];
	int r;

	/* Less than a sector: writing it is as fast as anything. */
	if (!inner_blocks(f, &s, &len))
		return write_zeroes(f, count, off);
	r = may_trim || fast ? falloc(f, punch, s, len, &f->no_punch)
			     : -EOPNOTSUPP;
	if (r == -EOPNOTSUPP && !fast)
		r = falloc(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, s,
			   len, &f->no_zero_range);
	if (r == -EOPNOTSUPP && !fast) {
		range[0] = s;
		range[1] = len;
		r = ioctl(f->fd, BLKZEROOUT, range) < 0
			? io_error(f, "zeroout", s, errno)
			: 0;
	}
	if (r == 0 && s > off)
		r = write_zeroes(f, s - off, off);
	if (r == 0 && s + len < off + count)
		r = write_zeroes(f, off + count - (s + len), s + len);
	return r;
}

int file_zero(void *h, uint64_t count, uint64_t offset, uint32_t flags)
{
	struct file *f = h;
	bool fast = flags & NBDD_F_FAST, may_trim = flags & NBDD_F_MAY_TRIM;
	int r;

	r = f->blk ? blk_zero(f, count, offset, may_trim, fast)
		   : reg_zero(f, count, offset, may_trim);
	if (r == -EOPNOTSUPP) {
		if (fast) {
			nbdd_backend_error("file: %s cannot zero quickly",
					   f->path);
			return -ENOTSUP;
		}
		r = write_zeroes(f, count, offset);
	}
	return r == 0 && (flags & NBDD_F_FUA) ? sync_data(f) : r;
}
