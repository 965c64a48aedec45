/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memory:size=SIZE — a sparse RAM disk of up to 2^63 bytes.
 *
 * Data lives in 64 KiB chunks, allocated on the first write and found
 * through a radix tree: a top array indexed by the offset's high bits
 * (reserved address space, so only the pages touched cost memory), then
 * two levels of 512-slot nodes and 32-slot leaves, allocated on demand.
 * Leaves are small because scattered writes touch one each: 4k writes
 * spread over a TiB cost a 256-byte leaf per 2 MiB (~5% of the data),
 * where 512-slot leaves cost a 4 KiB one per 32 MiB (12.5%). Sequential
 * data costs a leaf per 2 MiB (0.01%).
 *
 * Chunks come from large anonymous mappings. A fresh chunk is already
 * zero, and one given back is zeroed by madvise(MADV_DONTNEED), which
 * also returns its pages: written pages are all a chunk ever costs, and
 * trimmed data stops costing anything at once. On locked memory (the
 * daemon's mlockall) MADV_DONTNEED_LOCKED does the same; on kernels
 * before 5.18 zeroes are written instead, and the pages stay.
 *
 * Concurrency (NBDD_THREAD_PARALLEL, and NBDD_BACKEND_INLINE since no
 * call sleeps): tree nodes and chunks are published with compare-and-swap
 * and nodes are never freed before close. A chunk taken out of the tree
 * (trim, zero, shrink) may be reused for another offset, so:
 *  - writers hold the read side of the chunk's stripe rwlock, and taking
 *    a chunk out holds the write side: nobody copies into a chunk that
 *    has been given away;
 *  - readers take no lock (a locked instruction after a 4 KiB memcpy
 *    costs as much as the copy): taking a chunk out bumps its stripe's
 *    sequence number before the chunk can be reused, and a reader that
 *    sees the number change retries, as with a seqlock. Slabs stay
 *    mapped until close, so a stale read never faults.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define CHUNK_SHIFT 16
#define CHUNK_SIZE ((size_t)1 << CHUNK_SHIFT)
#define NODE_SHIFT 9
#define NODE_SLOTS (1u << NODE_SHIFT)
#define LEAF_SHIFT 5
#define LEAF_SLOTS (1u << LEAF_SHIFT)
/* Chunk-index bits below the top array: two levels of nodes, leaves. */
#define TREE_SHIFT (2 * NODE_SHIFT + LEAF_SHIFT)
#define MAX_SIZE ((uint64_t)1 << 63)
#define TOP_SLOTS ((size_t)(MAX_SIZE >> (CHUNK_SHIFT + TREE_SHIFT)))
#define NSTRIPES 1024u
#define SLAB_MAX ((size_t)256 << 20)

typedef _Atomic(void *) slot_t;

struct node {
	slot_t slot[NODE_SLOTS];
};

/* Slots of chunk pointers (nodes' slots point to nodes, then leaves). */
struct leaf {
	slot_t slot[LEAF_SLOTS];
};

struct stripe {
	pthread_rwlock_t lock; /* read: writing into a chunk; write: taking
				  one out of the tree */
	atomic_uint seq;       /* bumped when a chunk is taken out */
} __attribute__((aligned(64)));

struct slab {
	void *base;
	size_t len;
};

/* Where chunks come from and go back to. */
struct arena {
	pthread_mutex_t lock;
	char *cur, *end; /* unused tail of the newest slab */
	void **free;	 /* chunks given back, zeroed */
	size_t nfree, free_cap;
	struct slab *slabs;
	size_t nslabs, slabs_cap;
};

struct mem {
	_Atomic uint64_t size;
	uint64_t max_size; /* largest size ever (arena.lock): bounds close */
	slot_t *top;
	atomic_size_t chunks;
	atomic_int advice; /* how chunk_clear() zeroes: see there */
	struct arena arena;
	struct stripe stripes[NSTRIPES];
};

/* ---- the arena ---- */

static int slab_new(struct mem *m)
{
	struct arena *a = &m->arena;
	uint64_t want = atomic_load(&m->size);
	size_t len = SLAB_MAX;
	struct slab *v;
	void *p;

	/* A small disk does not reserve a large slab. */
	if (want < len)
		len = MAX(CHUNK_SIZE,
			  (size_t)(want + CHUNK_SIZE - 1) & ~(CHUNK_SIZE - 1));
	if (a->nslabs == a->slabs_cap) {
		size_t cap = a->slabs_cap ? a->slabs_cap * 2 : 16;
		v = realloc(a->slabs, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		a->slabs = v;
		a->slabs_cap = cap;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	/* A huge page would make one small write cost 2 MiB. */
	(void)madvise(p, len, MADV_NOHUGEPAGE);
	a->slabs[a->nslabs++] = (struct slab){p, len};
	a->cur = p;
	a->end = (char *)p + len;
	return 0;
}

/* A zeroed chunk, or NULL. */
static void *chunk_alloc(struct mem *m)
{
	struct arena *a = &m->arena;
	void *c = NULL;

	pthread_mutex_lock(&a->lock);
	if (a->nfree) {
		c = a->free[--a->nfree];
	} else if (a->cur < a->end || slab_new(m) == 0) {
		c = a->cur;
		a->cur += CHUNK_SIZE;
	}
	pthread_mutex_unlock(&a->lock);
	if (c)
		atomic_fetch_add_explicit(&m->chunks, 1, memory_order_relaxed);
	return c;
}

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* Linux 5.18 */
#endif

/*
 * Zero a whole chunk and give its pages back. nbdd runs under mlockall(),
 * and the kernel refuses MADV_DONTNEED on locked pages (EINVAL), but since
 * 5.18 takes MADV_DONTNEED_LOCKED; where neither works, write the zeroes,
 * or a trimmed or zeroed range would still read its old data.
 */
static void chunk_clear(struct mem *m, void *c)
{
	int advice = atomic_load_explicit(&m->advice, memory_order_relaxed);

	while (advice >= 0 && madvise(c, CHUNK_SIZE, advice) < 0) {
		advice = advice == MADV_DONTNEED ? MADV_DONTNEED_LOCKED : -1;
		atomic_store_explicit(&m->advice, advice, memory_order_relaxed);
	}
	if (advice < 0)
		memset(c, 0, CHUNK_SIZE);
}

/* Give a chunk back; @dirty: it was written, so zero it and drop its pages. */
static void chunk_release(struct mem *m, void *c, bool dirty)
{
	struct arena *a = &m->arena;

	if (dirty)
		chunk_clear(m, c);
	pthread_mutex_lock(&a->lock);
	if (a->nfree == a->free_cap) {
		size_t cap = a->free_cap ? a->free_cap * 2 : 256;
		void **v = realloc(a->free, cap * sizeof(*v));
		if (v) {
			a->free = v;
			a->free_cap = cap;
		}
	}
	/* Out of memory for the list: the chunk stays mapped, unused. */
	if (a->nfree < a->free_cap)
		a->free[a->nfree++] = c;
	pthread_mutex_unlock(&a->lock);
	atomic_fetch_sub_explicit(&m->chunks, 1, memory_order_relaxed);
}

/* ---- the tree ---- */

static struct stripe *stripe(struct mem *m, uint64_t ci)
{
	return &m->stripes[ci & (NSTRIPES - 1)];
}

/*
 * Install a node or leaf of @size bytes in the empty *@p, or return the
 * one a racer installed.
 */
static void *node_install(slot_t *p, size_t size)
{
	void *n = calloc(1, size);
	void *seen = NULL;

	if (!n)
		return NULL;
	if (!atomic_compare_exchange_strong_explicit(
		p, &seen, n, memory_order_acq_rel, memory_order_acquire)) {
		free(n);
		return seen;
	}
	return n;
}

/* Index bits of each level below the top array, and its node's size. */
static const struct level {
	int shift;
	uint64_t mask;
	size_t size;
} levels[] = {
	{ LEAF_SHIFT + NODE_SHIFT, NODE_SLOTS - 1, sizeof(struct node) },
	{ LEAF_SHIFT, NODE_SLOTS - 1, sizeof(struct node) },
	{ 0, LEAF_SLOTS - 1, sizeof(struct leaf) },
};

/* The leaf slot of chunk @ci; NULL if a node on the way is missing. */
static slot_t *walk(struct mem *m, uint64_t ci, bool create)
{
	slot_t *p = &m->top[ci >> TREE_SHIFT];
	slot_t *n;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(levels); i++) {
		n = atomic_load_explicit(p, memory_order_acquire);
		if (!n && (!create || !(n = node_install(p, levels[i].size))))
			return NULL;
		p = &n[(ci >> levels[i].shift) & levels[i].mask];
	}
	return p;
}

/*
 * The first chunk index >= @ci whose leaf node exists: everything in
 * between lies in subtrees that were never written.
 */
static uint64_t next_present(struct mem *m, uint64_t ci)
{
	slot_t *p = &m->top[ci >> TREE_SHIFT];
	int shift = TREE_SHIFT;
	slot_t *n;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(levels); i++) {
		n = atomic_load_explicit(p, memory_order_acquire);
		if (!n)
			return ((ci >> shift) + 1) << shift;
		shift = levels[i].shift;
		p = &n[(ci >> shift) & levels[i].mask];
	}
	return ci;
}

static void *chunk_get(struct mem *m, uint64_t ci)
{
	slot_t *p = walk(m, ci, false);

	return p ? atomic_load_explicit(p, memory_order_acquire) : NULL;
}

/* The chunk in *@p, installing a zeroed one if there is none. */
static void *chunk_make(struct mem *m, slot_t *p)
{
	void *c = atomic_load_explicit(p, memory_order_acquire), *seen = NULL;

	if (c)
		return c;
	c = chunk_alloc(m);
	if (!c)
		return NULL;
	if (!atomic_compare_exchange_strong_explicit(
		p, &seen, c, memory_order_acq_rel, memory_order_acquire)) {
		chunk_release(m, c, false);
		return seen;
	}
	return c;
}

/* ---- per-chunk operations, each under its stripe lock ---- */

static void chunk_read(struct mem *m, uint64_t ci, size_t off, char *buf,
		       size_t n)
{
	struct stripe *s = stripe(m, ci);
	unsigned seq;
	char *c;

	do {
		seq = atomic_load_explicit(&s->seq, memory_order_acquire);
		c = chunk_get(m, ci);
		if (c)
			memcpy(buf, c + off, n);
		else
			memset(buf, 0, n);
		/* Our copy happened before we look at the number again. */
		atomic_thread_fence(memory_order_acquire);
	} while (atomic_load_explicit(&s->seq, memory_order_relaxed) != seq);
}

static int chunk_write(struct mem *m, uint64_t ci, size_t off, const char *buf,
		       size_t n)
{
	pthread_rwlock_t *l = &stripe(m, ci)->lock;
	slot_t *p;
	char *c = NULL;

	pthread_rwlock_rdlock(l);
	p = walk(m, ci, true);
	if (p)
		c = chunk_make(m, p);
	if (c)
		memcpy(c + off, buf, n);
	pthread_rwlock_unlock(l);
	return c ? 0 : -ENOMEM;
}

/* Take the whole chunk out of the tree: it reads as zeroes again. */
static void chunk_drop(struct mem *m, uint64_t ci)
{
	struct stripe *s = stripe(m, ci);
	slot_t *p;
	void *c = NULL;

	pthread_rwlock_wrlock(&s->lock);
	p = walk(m, ci, false);
	if (p)
		c = atomic_exchange_explicit(p, NULL, memory_order_acq_rel);
	/* Before the chunk can be reused: readers of it will retry. */
	if (c)
		atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
	pthread_rwlock_unlock(&s->lock);
	if (c)
		chunk_release(m, c, true);
}

/* Zero part of a chunk, if it exists. */
static void chunk_zero(struct mem *m, uint64_t ci, size_t off, size_t n)
{
	pthread_rwlock_t *l = &stripe(m, ci)->lock;
	char *c;

	pthread_rwlock_rdlock(l);
	c = chunk_get(m, ci);
	if (c)
		memset(c + off, 0, n);
	pthread_rwlock_unlock(l);
}

/* Zero [offset, offset + count): whole chunks go, partial ones are zeroed. */
static void zero_range(struct mem *m, uint64_t offset, uint64_t count)
{
	uint64_t end = offset + count, ci, next;
	size_t off, n;

	while (offset < end) {
		ci = offset >> CHUNK_SHIFT;
		next = next_present(m, ci);
		if (next > ci) { /* nothing was ever written there */
			offset = MAX(offset, next << CHUNK_SHIFT);
			continue;
		}
		off = (size_t)(offset & (CHUNK_SIZE - 1));
		n = (size_t)MIN(end - offset, (uint64_t)(CHUNK_SIZE - off));
		if (n == CHUNK_SIZE)
			chunk_drop(m, ci);
		else
			chunk_zero(m, ci, off, n);
		offset += n;
	}
}

/* ---- callbacks ---- */

static bool in_range(struct mem *m, uint64_t offset, uint64_t count)
{
	uint64_t size = atomic_load_explicit(&m->size, memory_order_relaxed);

	/* The size may have shrunk since the engine checked the request. */
	if (offset > size || count > size - offset) {
		nbdd_backend_error("memory: %llu bytes at %llu lie beyond the "
				   "end (%llu)",
				   (unsigned long long)count,
				   (unsigned long long)offset,
				   (unsigned long long)size);
		return false;
	}
	return true;
}

static int mem_pread(void *h, void *buf, size_t count, uint64_t offset,
		     uint32_t flags)
{
	struct mem *m = h;
	char *p = buf;
	size_t off, n;

	if (!in_range(m, offset, count))
		return -EINVAL;
	while (count) {
		off = (size_t)(offset & (CHUNK_SIZE - 1));
		n = MIN(count, CHUNK_SIZE - off);
		chunk_read(m, offset >> CHUNK_SHIFT, off, p, n);
		p += n;
		offset += n;
		count -= n;
	}
	return 0;
}

static int mem_pwrite(void *h, const void *buf, size_t count, uint64_t offset,
		      uint32_t flags)
{
	struct mem *m = h;
	const char *p = buf;
	size_t off, n;

	if (!in_range(m, offset, count))
		return -ENOSPC;
	while (count) {
		off = (size_t)(offset & (CHUNK_SIZE - 1));
		n = MIN(count, CHUNK_SIZE - off);
		if (chunk_write(m, offset >> CHUNK_SHIFT, off, p, n)) {
			nbdd_backend_error("memory: out of memory");
			return -ENOMEM;
		}
		p += n;
		offset += n;
		count -= n;
	}
	return 0;
}

static int mem_trim(void *h, uint64_t count, uint64_t offset, uint32_t flags)
{
	struct mem *m = h;

	if (!in_range(m, offset, count))
		return -EINVAL;
	zero_range(m, offset, count);
	return 0;
}

static int mem_zero(void *h, uint64_t count, uint64_t offset, uint32_t flags)
{
	struct mem *m = h;

	if (!in_range(m, offset, count))
		return -ENOSPC;
	/*
	 * Even without NBDD_F_MAY_TRIM (NO_HOLE): RAM is committed when it
	 * is written, never before, so keeping a chunk "provisioned" would
	 * promise nothing and cost table memory for the whole range.
	 */
	zero_range(m, offset, count);
	return 0;
}

static int mem_extents(void *h, uint64_t count, uint64_t offset, uint32_t flags,
		       struct nbdd_extents *out)
{
	struct mem *m = h;
	uint64_t size = atomic_load(&m->size), end, ci, next, len;
	uint32_t f;
	int r;

	end = offset + MIN(count, size > offset ? size - offset : 0);
	/* out->next passing out->end: the collector has all it wants. */
	while (offset < end && out->next < out->end) {
		ci = offset >> CHUNK_SHIFT;
		next = next_present(m, ci);
		if (next == ci)
			next = ci + 1;
		len = MIN(end, next << CHUNK_SHIFT) - offset;
		f = next == ci + 1 && chunk_get(m, ci)
			? 0
			: NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO;
		r = nbdd_extents_add(out, offset, len, f);
		if (r)
			return r;
		offset += len;
	}
	return 0;
}

static int mem_get_size(void *h, uint64_t *size)
{
	*size = atomic_load(&((struct mem *)h)->size);
	return 0;
}

static int mem_resize(void *h, uint64_t new_size)
{
	struct mem *m = h;
	uint64_t old;

	if (new_size > MAX_SIZE) {
		nbdd_backend_error("memory: size is at most 8E (2^63 bytes)");
		return -EINVAL;
	}
	pthread_mutex_lock(&m->arena.lock);
	old = atomic_exchange(&m->size, new_size);
	if (new_size > m->max_size)
		m->max_size = new_size;
	pthread_mutex_unlock(&m->arena.lock);
	/* Growing must read zeroes: drop what lay beyond the new end. */
	if (new_size < old)
		zero_range(m, new_size, old - new_size);
	return 0;
}

static int mem_capabilities(void *h, uint32_t *caps)
{
	*caps = NBDD_CAP_WRITE | NBDD_CAP_FLUSH | NBDD_CAP_FUA | NBDD_CAP_TRIM |
		NBDD_CAP_ZERO | NBDD_CAP_FAST_ZERO | NBDD_CAP_CACHE |
		NBDD_CAP_EXTENTS | NBDD_CAP_MULTI_CONN | NBDD_CAP_RESIZE;
	return 0;
}

/* Memory is as durable and as cached as it will ever be. */
static int mem_flush(void *h, uint32_t flags)
{
	return 0;
}

static int mem_cache(void *h, uint64_t count, uint64_t offset, uint32_t flags)
{
	return 0;
}

/* ---- lifecycle ---- */

/* @level 2: a node of nodes, 1: a node of leaves, 0: a leaf. */
static void free_subtree(struct node *n, int level)
{
	unsigned i;

	for (i = 0; level > 0 && i < NODE_SLOTS; i++) {
		struct node *c = atomic_load(&n->slot[i]);
		if (c)
			free_subtree(c, level - 1);
	}
	free(n);
}

static void mem_close(void *h)
{
	struct mem *m = h;
	struct arena *a = &m->arena;
	size_t i,
	    ntop =
		(size_t)((m->max_size - 1) >> (CHUNK_SHIFT + TREE_SHIFT)) + 1;
	struct node *n;

	for (i = 0; m->max_size && i < ntop; i++) {
		n = atomic_load(&m->top[i]);
		if (n)
			free_subtree(n, 2);
	}
	for (i = 0; i < a->nslabs; i++)
		munmap(a->slabs[i].base, a->slabs[i].len);
	munmap(m->top, TOP_SLOTS * sizeof(slot_t));
	for (i = 0; i < NSTRIPES; i++)
		pthread_rwlock_destroy(&m->stripes[i].lock);
	pthread_mutex_destroy(&a->lock);
	free(a->slabs);
	free(a->free);
	free(m);
}

static int parse_params(const struct nbdd_param *p, size_t n, uint64_t *size)
{
	bool have = false;
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(p[i].key, "size")) {
			nbdd_backend_error("memory: unknown parameter '%s' "
					   "(memory takes size=SIZE)",
					   p[i].key);
			return -EINVAL;
		}
		if (nbdd_parse_size(p[i].value, size) || *size > MAX_SIZE) {
			nbdd_backend_error("memory: size '%s' is not a size "
					   "from 0 to 8E (e.g. 1G, 1T)",
					   p[i].value);
			return -EINVAL;
		}
		have = true;
	}
	if (!have) {
		nbdd_backend_error("memory: size=SIZE is required (e.g. "
				   "memory:size=1G)");
		return -EINVAL;
	}
	return 0;
}

static int mem_open(const struct nbdd_param *params, size_t nparams,
		    int readonly, void **handle)
{
	pthread_rwlockattr_t attr;
	struct mem *m;
	uint64_t size;
	size_t i;
	int r;

	r = parse_params(params, nparams, &size);
	if (r)
		return r;
	if (posix_memalign((void **)&m, 64, sizeof(*m)))
		return -ENOMEM;
	memset(m, 0, sizeof(*m));
	m->top = mmap(NULL, TOP_SLOTS * sizeof(slot_t), PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->top == MAP_FAILED) {
		free(m);
		return -ENOMEM;
	}
	atomic_init(&m->size, size);
	atomic_init(&m->advice, MADV_DONTNEED);
	m->max_size = size;
	pthread_mutex_init(&m->arena.lock, NULL);
	/* Trim must not starve behind a stream of reads on its stripe. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(
	    &attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	for (i = 0; i < NSTRIPES; i++)
		pthread_rwlock_init(&m->stripes[i].lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	*handle = m;
	return 0;
}

const struct nbdd_backend nbdd_backend_memory = {
    NBDD_BACKEND_HEADER,
    .name = "memory",
    .description = "sparse RAM disk: only written data uses memory",
    .help = "size=SIZE  the disk's size, up to 8E (required)",
    .thread_model = NBDD_THREAD_PARALLEL,
    .flags = NBDD_BACKEND_INLINE | NBDD_BACKEND_VOLATILE,
    .open = mem_open,
    .close = mem_close,
    .get_size = mem_get_size,
    .capabilities = mem_capabilities,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .flush = mem_flush,
    .trim = mem_trim,
    .zero = mem_zero,
    .cache = mem_cache,
    .extents = mem_extents,
    .resize = mem_resize,
};
