/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A mapping: an export served to the kernel's nbd driver as /dev/nbdN.
 *
 *   socketpair() per connection -> CONNECT hands the kernel one end ->
 *   we close that end (the kernel holds its own reference) -> one thread
 *   per connection runs the transmission engine (conn_run, CONN_KERNEL)
 *   on the other end until the kernel disconnects.
 *
 * The serving threads block every signal (the program's handlers run on
 * its own threads, and conn_run never sees EINTR) and run with
 * PR_SET_IO_FLUSHER (set by conn_run for CONN_KERNEL): a request we serve
 * may be the writeback that frees the memory our own allocation waits
 * for, and the flag keeps reclaim from recursing into our device. That
 * flag needs CAP_SYS_RESOURCE and 5.6+; without it we run anyway. An
 * asynchronous backend's replies leave from the backend's own threads
 * (librbd's); the daemon sets the flag on the process before it opens
 * the backend, so those threads inherit it.
 * mlockall() and oom_score_adj are whole-process choices left to the
 * program (the daemon makes them).
 *
 * When this process dies the kernel sees its sockets close; see
 * include/nbdd/kernel.h for what follows and for nbdd_mapping_adopt(),
 * which takes such a device over with RECONFIGURE.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/nbd-netlink.h>

#include "internal.h"
#include "kernel/kernel.h"

/* udev's probe of a fresh device holds it open for a moment. */
#define CONNECT_TRIES     8
#define CONNECT_BACKOFF_MS 50
/* After DISCONNECT the kernel closes our sockets at once; allow slack. */
#define DETACH_WAIT_MS    10000

struct kconn {
	struct nbdd_mapping *m;
	struct conn *c;
	int fd;        /* our end, until conn_new() owns it */
	pthread_t thread;
	bool started;
	int result;
};

struct nbdd_mapping {
	struct nbdd_export *e;
	int index;
	unsigned nconns;
	struct kconn *kc;
	uint32_t min_block;
	char identifier[KNL_IDENTIFIER_MAX + 1];
	int efd;                /* readable when a connection ended */
	pthread_mutex_t lock;
	pthread_cond_t ended;
	unsigned live;          /* serving threads not yet finished */
};

/* What to call an export in logs: its name, else its spec or backend. */
static const char *label(const struct nbdd_export *e)
{
	if (e->name && *e->name)
		return e->name;
	return e->spec ? e->spec : e->b.name ? e->b.name : "export";
}

/* ---- life cycle of the pieces ---- */

static void mapping_free(struct nbdd_mapping *m)
{
	unsigned i;

	for (i = 0; i < m->nconns; i++) {
		if (m->kc[i].c)
			conn_free(m->kc[i].c); /* closes the fd */
		else if (m->kc[i].fd >= 0)
			close(m->kc[i].fd);
	}
	if (m->efd >= 0)
		close(m->efd);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->ended);
	nbdd_export_unref(m->e);
	free(m->kc);
	free(m);
}

static int mapping_new(struct nbdd_export *e, unsigned n,
		       struct nbdd_mapping **out)
{
	struct nbdd_mapping *m = calloc(1, sizeof(*m));
	pthread_condattr_t ca;
	unsigned i;

	if (!m)
		return set_error(-ENOMEM, "out of memory");
	m->kc = calloc(n, sizeof(*m->kc));
	m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->ended, &ca);
	pthread_condattr_destroy(&ca);
	m->e = nbdd_export_ref(e);
	m->index = -1;
	m->nconns = n;
	m->min_block = e->bs.minimum > 1 ? e->bs.minimum : 1;
	for (i = 0; m->kc && i < n; i++) {
		m->kc[i].m = m;
		m->kc[i].fd = -1;
	}
	if (!m->kc || m->efd < 0) {
		mapping_free(m);
		return set_error(-ENOMEM, "out of memory");
	}
	*out = m;
	return 0;
}

/* One socketpair per connection: our ends in m->kc, the kernel's in @kfd. */
static int make_sockets(struct nbdd_mapping *m, int *kfd)
{
	int sv[2];
	unsigned i;

	for (i = 0; i < m->nconns; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return set_error(-errno, "socketpair: %s",
					 strerror(errno));
		m->kc[i].fd = sv[0];
		kfd[i] = sv[1];
	}
	return 0;
}

static void close_fds(int *fd, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		if (fd[i] >= 0)
			close(fd[i]);
		fd[i] = -1;
	}
}

/* ---- serving ---- */

static void *serve_main(void *arg)
{
	struct kconn *k = arg;
	struct nbdd_mapping *m = k->m;
	uint64_t one = 1;

	k->result = conn_run(k->c);
	if (k->result < 0)
		log_warning("/dev/nbd%d: a connection ended: %s", m->index,
			    strerror(-k->result));
	pthread_mutex_lock(&m->lock);
	m->live--;
	pthread_cond_broadcast(&m->ended);
	pthread_mutex_unlock(&m->lock);
	if (write(m->efd, &one, sizeof(one)) < 0)
		log_debug("eventfd: %s", strerror(errno));
	return NULL;
}

static int start_one(struct kconn *k)
{
	struct nbdd_mapping *m = k->m;
	struct negotiated neg = {
		.export = nbdd_export_ref(m->e),
		.min_block = m->min_block,
	};
	int r;

	k->c = conn_new(k->fd, CONN_KERNEL, &neg);
	if (!k->c) {
		nbdd_export_unref(m->e);
		return set_error(-ENOMEM, "out of memory for a connection");
	}
	k->fd = -1; /* the conn owns it */
	pthread_mutex_lock(&m->lock);
	m->live++;
	pthread_mutex_unlock(&m->lock);
	r = pthread_create(&k->thread, NULL, serve_main, k);
	if (r) {
		pthread_mutex_lock(&m->lock);
		m->live--;
		pthread_mutex_unlock(&m->lock);
		return set_error(-r, "cannot start a serving thread: %s",
				 strerror(r));
	}
	k->started = true;
	return 0;
}

/* Threads for every connection, with all signals blocked in them. */
static int start_serving(struct nbdd_mapping *m)
{
	sigset_t all, old;
	unsigned i;
	int r = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < m->nconns && r == 0; i++)
		r = start_one(&m->kc[i]);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

/* Wait until no thread serves, or @ms pass (0: forever). */
static bool wait_idle(struct nbdd_mapping *m, uint64_t ms)
{
	struct timespec ts;
	uint64_t end;
	bool idle;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	end = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + ms;
	ts.tv_sec = (time_t)(end / 1000);
	ts.tv_nsec = (long)(end % 1000) * 1000000;
	pthread_mutex_lock(&m->lock);
	while (m->live) {
		if (!ms)
			pthread_cond_wait(&m->ended, &m->lock);
		else if (pthread_cond_timedwait(&m->ended, &m->lock, &ts) ==
			 ETIMEDOUT)
			break;
	}
	idle = m->live == 0;
	pthread_mutex_unlock(&m->lock);
	return idle;
}

/* Stop serving: ask every connection to end, join, free everything. */
static void stop_and_free(struct nbdd_mapping *m, uint64_t grace_ms)
{
	unsigned i;

	if (grace_ms && !wait_idle(m, grace_ms))
		log_warning("/dev/nbd%d: the kernel kept its sockets open; "
			    "closing ours", m->index);
	for (i = 0; i < m->nconns; i++)
		if (m->kc[i].started)
			conn_shutdown(m->kc[i].c);
	for (i = 0; i < m->nconns; i++)
		if (m->kc[i].started)
			pthread_join(m->kc[i].thread, NULL);
	mapping_free(m);
}

/* ---- attach ---- */

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/*
 * The identifier shown in /sys/block/nbdN/backend and required again by
 * RECONFIGURE. Default: the export's spec ("memory:size=1G"), else its
 * backend's name. Left out, with a warning if one was asked for, on
 * kernels before 5.14 which would silently drop it.
 */
static int pick_identifier(struct nbdd_mapping *m, const char *asked,
			   bool supported)
{
	const char *id = asked;

	if (asked && (strlen(asked) > KNL_IDENTIFIER_MAX || !printable(asked)))
		return set_error(-EINVAL, "backend identifier: at most %d "
				 "printable characters", KNL_IDENTIFIER_MAX);
	if (!supported) {
		if (asked)
			log_warning("kernel %s keeps no backend identifier; "
				    "'%s' is not set", kernel_release(), asked);
		return 0;
	}
	if (!id)
		id = m->e->spec ? m->e->spec : m->e->b.name;
	if (!id || !printable(id))
		return 0;
	snprintf(m->identifier, sizeof(m->identifier), "%s", id);
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * EBUSY for a device that no server is bound to (no sysfs pid) means
 * something holds it open -- typically udev probing it -- and is worth
 * a few retries; a bound device is simply taken.
 */
static int connect_retry(struct knl *k, const struct knl_config *c,
			 int *index)
{
	unsigned delay = CONNECT_BACKOFF_MS;
	int r, tries, pid;

	for (tries = 1;; tries++) {
		r = knl_connect(k, c, index);
		if (r != -EBUSY && r != -EEXIST)
			return r;
		if (c->index >= 0 && nbdd_sysfs_pid(c->index, &pid) == 0)
			return set_error(r, "device /dev/nbd%d is already in "
					 "use (served by process %d)",
					 c->index, pid);
		if (tries == CONNECT_TRIES && c->index < 0)
			return r; /* netlink.c said it */
		if (tries == CONNECT_TRIES)
			return set_error(r, "device /dev/nbd%d is already in "
					 "use (held open by another program)",
					 c->index);
		log_debug("nbd connect: busy (udev probing?), retry %d", tries);
		sleep_ms(delay);
		delay = MIN(delay * 2, 1000u);
	}
}

static int gather_input(struct nbdd_export *e, struct attach_input *in)
{
	long page = sysconf(_SC_PAGESIZE);

	memset(in, 0, sizeof(*in));
	in->size = nbdd_export_size(e);
	in->eflags = export_eflags(e);
	in->min_block = e->bs.minimum;
	in->page_size = page > 0 ? (unsigned long)page : 4096;
	in->write_zeroes = kernel_release_has_write_zeroes(kernel_release());
	return 0;
}

static int do_attach(struct knl *k, struct nbdd_export *e,
		     const struct nbdd_attach_options *o,
		     struct nbdd_mapping **out)
{
	int kfd[ATTACH_MAX_CONNECTIONS];
	struct attach_input in;
	struct attach_plan p;
	struct nbdd_mapping *m;
	struct knl_config c;
	int r;

	gather_input(e, &in);
	r = attach_plan_make(o, &in, &p);
	if (r < 0)
		return r;
	if (p.size != in.size)
		log_notice("%s: size %llu is not a multiple of %u; the last "
			   "%llu bytes are not visible", label(e),
			   (unsigned long long)in.size, p.block_size,
			   (unsigned long long)(in.size - p.size));
	r = mapping_new(e, p.connections, &m);
	if (r < 0)
		return r;
	memset(kfd, -1, sizeof(kfd));
	r = pick_identifier(m, o->identifier,
			    knl_has_identifier(knl_family(k)));
	if (r == 0)
		r = make_sockets(m, kfd);
	c = (struct knl_config){
		.index = o->index, .size = p.size, .block_size = p.block_size,
		.server_flags = p.server_flags, .timeout = p.timeout,
		.dead_conn_timeout = p.dead_conn_timeout,
		.identifier = m->identifier[0] ? m->identifier : NULL,
		.fds = kfd, .nfds = m->nconns,
	};
	if (r == 0)
		r = connect_retry(k, &c, &m->index);
	close_fds(kfd, m->nconns); /* the kernel has its own references */
	if (r < 0) {
		mapping_free(m);
		return r;
	}
	r = start_serving(m);
	if (r < 0) {
		knl_disconnect(k, m->index);
		stop_and_free(m, 0);
		return r;
	}
	log_info("%s: attached to /dev/nbd%d (%u connection%s, %u-byte "
		 "blocks, flags 0x%x)", label(e), m->index,
		 m->nconns, m->nconns == 1 ? "" : "s", p.block_size,
		 p.server_flags);
	*out = m;
	return 0;
}

NBDD_EXPORT int nbdd_attach(struct nbdd_export *e,
			    const struct nbdd_attach_options *o,
			    struct nbdd_mapping **out)
{
	static const struct nbdd_attach_options defaults = { .index = -1 };
	struct knl *k;
	int r;

	clear_error();
	if (!e || !out)
		return set_error(-EINVAL, "nbdd_attach: no export");
	r = nbdd_kernel_prepare();
	if (r < 0)
		return r;
	r = knl_open(&k);
	if (r < 0)
		return r;
	r = do_attach(k, e, o ? o : &defaults, out);
	knl_close(k);
	return r;
}

/* ---- the device's size ---- */

static int kernel_set_size(const struct nbdd_mapping *m, uint64_t size)
{
	struct knl_config c = {
		.index = m->index, .size = size,
		/* The kernel refuses a RECONFIGURE without the identifier. */
		.identifier = m->identifier[0] ? m->identifier : NULL,
	};

	return knl_reconfigure_once(&c);
}

/* The device's logical block size (512 when sysfs cannot tell). */
static uint32_t device_block_size(const struct nbdd_mapping *m)
{
	uint32_t kbs = 0;

	if (nbdd_sysfs_block_size(m->index, &kbs) < 0 || kbs == 0)
		kbs = 512;
	return kbs;
}

/*
 * Give the device the size its backend has now, in whole blocks: after
 * a resize elsewhere, or on taking over a device whose backend comes
 * back another size. 1 changed, 0 already so, else -errno.
 */
static int follow_backend(struct nbdd_mapping *m, const char *why)
{
	uint32_t kbs = device_block_size(m);
	uint64_t size = nbdd_export_size(m->e) / kbs * kbs, dev = 0;
	int r;

	if (nbdd_sysfs_size(m->index, &dev) < 0 || dev == size || size == 0)
		return 0;
	r = kernel_set_size(m, size);
	if (r < 0)
		return r;
	log_notice("%s: %s; /dev/nbd%d now has %llu bytes (was %llu)",
		   label(m->e), why, m->index, (unsigned long long)size,
		   (unsigned long long)dev);
	return 1;
}

/* ---- adopt ---- */

/*
 * Our end of a socket the kernel did not take sees the peer closed as
 * soon as we close the kernel's end: RECONFIGURE keeps live sockets and
 * stops at the first one it has no dead slot for.
 */
static unsigned drop_refused(struct nbdd_mapping *m)
{
	unsigned i, kept = 0;
	char c;

	for (i = 0; i < m->nconns; i++) {
		/* 0 is EOF; data or EAGAIN means the kernel holds the peer. */
		ssize_t n = recv(m->kc[i].fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

		if (n == 0) {
			close(m->kc[i].fd);
			continue;
		}
		m->kc[kept++].fd = m->kc[i].fd;
	}
	m->nconns = kept;
	return kept;
}

static int adopt_identifier(struct nbdd_mapping *m, int index,
			    const char *asked)
{
	char cur[KNL_IDENTIFIER_MAX + 1];

	if (asked)
		return pick_identifier(m, asked, true);
	if (nbdd_sysfs_backend(index, cur, sizeof(cur)) == 0)
		snprintf(m->identifier, sizeof(m->identifier), "%s", cur);
	clear_error();
	return 0;
}

static int do_adopt(struct knl *k, struct nbdd_export *e, int index,
		    const struct nbdd_attach_options *o,
		    struct nbdd_mapping **out)
{
	int kfd[ATTACH_MAX_CONNECTIONS], pid;
	struct attach_input in;
	struct attach_plan p;
	struct nbdd_mapping *m;
	struct knl_config c;
	int r;

	if (nbdd_sysfs_pid(index, &pid) < 0)
		return set_error(-ENODEV, "/dev/nbd%d is not connected: "
				 "nothing to adopt (attach it instead)", index);
	gather_input(e, &in);
	r = attach_plan_make(o, &in, &p);
	if (r < 0)
		return r;
	r = mapping_new(e, p.connections, &m);
	if (r < 0)
		return r;
	m->index = index;
	memset(kfd, -1, sizeof(kfd));
	r = adopt_identifier(m, index, o->identifier);
	if (r == 0)
		r = make_sockets(m, kfd);
	c = (struct knl_config){
		.index = index, .timeout = p.timeout,
		.dead_conn_timeout = p.dead_conn_timeout,
		.identifier = m->identifier[0] ? m->identifier : NULL,
		.fds = kfd, .nfds = m->nconns,
	};
	if (r == 0)
		r = knl_reconfigure(k, &c);
	close_fds(kfd, m->nconns);
	if (r == 0 && drop_refused(m) == 0)
		r = set_error(-EBUSY, "/dev/nbd%d kept its old sockets: they "
			      "are still alive (is process %d still serving "
			      "it?)", index, pid);
	if (r == 0)
		r = start_serving(m);
	if (r < 0) {
		stop_and_free(m, 0);
		return r;
	}
	/* A backend sized by its spec (null) comes back at that size. */
	if (follow_backend(m, "its backend came back with another size") < 0)
		log_warning("/dev/nbd%d: its size differs from its backend's: %s",
			    index, nbdd_last_error());
	log_info("%s: adopted /dev/nbd%d with %u connection%s",
		 label(e), index, m->nconns,
		 m->nconns == 1 ? "" : "s");
	*out = m;
	return 0;
}

NBDD_EXPORT int nbdd_mapping_adopt(struct nbdd_export *e, int index,
				   const struct nbdd_attach_options *o,
				   struct nbdd_mapping **out)
{
	static const struct nbdd_attach_options defaults = { .index = -1 };
	struct knl *k;
	int r;

	clear_error();
	if (!e || !out || index < 0)
		return set_error(-EINVAL, "nbdd_mapping_adopt: no export or "
				 "device");
	r = nbdd_kernel_prepare();
	if (r < 0)
		return r;
	r = knl_open(&k);
	if (r < 0)
		return r;
	r = do_adopt(k, e, index, o ? o : &defaults, out);
	knl_close(k);
	return r;
}

/* ---- detach ---- */

/*
 * Push out what the kernel still caches for the device. Nobody holding
 * it open means its last close already did; read-only so that closing
 * does not make udev probe the device again.
 */
static void sync_device(int index)
{
	char path[32];
	int fd;

	snprintf(path, sizeof(path), "/dev/nbd%d", index);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return;
	if (fsync(fd) < 0)
		log_debug("%s: fsync: %s", path, strerror(errno));
	close(fd);
}

static int disconnect_device(int index)
{
	struct knl *k;
	int r;

	r = knl_open(&k);
	if (r == 0) {
		r = knl_disconnect(k, index);
		knl_close(k);
	}
	/* Gone already (destroyed by someone else): nothing to undo. */
	if (r == -EINVAL && !sysfs_device_exists(index))
		r = 0;
	return r;
}

NBDD_EXPORT int nbdd_detach(struct nbdd_mapping *m)
{
	int r;

	if (!m)
		return 0;
	clear_error();
	if (nbdd_mapping_live(m))
		sync_device(m->index);
	if (!m->e->readonly && (m->e->caps & NBDD_CAP_FLUSH) &&
	    (r = export_flush(m->e)) < 0)
		log_warning("%s: flush before detach: %s", label(m->e),
			    strerror(-r));
	r = disconnect_device(m->index);
	if (r < 0)
		log_warning("/dev/nbd%d: %s; closing our sockets anyway",
			    m->index, nbdd_last_error());
	stop_and_free(m, DETACH_WAIT_MS);
	return r;
}

/* ---- resize ---- */

/* What nbdd_export_resize() would refuse, asked before the kernel moves. */
static int check_resizable(const struct nbdd_mapping *m, uint64_t size,
			   uint32_t kbs)
{
	const struct nbdd_export *e = m->e;

	if (size == 0 || size % kbs)
		return set_error(-EINVAL, "/dev/nbd%d: a size of %llu bytes is "
				 "not a positive multiple of its block size "
				 "(%u bytes)", m->index,
				 (unsigned long long)size, kbs);
	if (e->readonly)
		return set_error(-EROFS, "/dev/nbd%d is read-only: its size "
				 "stays", m->index);
	if (!(e->caps & NBDD_CAP_RESIZE))
		return set_error(-ENOTSUP, "/dev/nbd%d: backend %s cannot "
				 "resize %s", m->index, e->b.name, label(e));
	if (size % e->bs.minimum)
		return set_error(-EINVAL, "/dev/nbd%d: a size of %llu bytes is "
				 "not a multiple of the backend's minimum "
				 "block size (%u bytes)", m->index,
				 (unsigned long long)size, e->bs.minimum);
	return 0;
}

/*
 * The kernel never sees a device bigger than its backend: growing
 * resizes the backend first, shrinking the device first. Both steps are
 * decided by what each side has now, so asking again after a partial
 * failure completes the change. The kernel tells udev (a change event
 * with RESIZE=1) and whoever holds the device open.
 */
NBDD_EXPORT int nbdd_mapping_resize(struct nbdd_mapping *m, uint64_t new_size)
{
	uint64_t old = nbdd_export_size(m->e), dev = old;
	uint32_t kbs = device_block_size(m);
	int r;

	clear_error();
	nbdd_sysfs_size(m->index, &dev);
	r = check_resizable(m, new_size, kbs);
	if (r < 0)
		return r;
	if (new_size < dev) {
		r = kernel_set_size(m, new_size);
		if (r < 0)
			return r;
	}
	if (new_size != old)
		r = nbdd_export_resize(m->e, new_size);
	if (r < 0) {
		/* Give the device back what its backend still has. */
		if (new_size < dev && kernel_set_size(m, dev) < 0)
			log_warning("/dev/nbd%d: shrank to %llu bytes, but "
				    "its backend did not", m->index,
				    (unsigned long long)new_size);
		return r;
	}
	/* The backend may round up; the device takes whole blocks of it. */
	new_size = nbdd_export_size(m->e) / kbs * kbs;
	if (new_size > dev) {
		r = kernel_set_size(m, new_size);
		if (r < 0) {
			char why[512];

			snprintf(why, sizeof(why), "%s", nbdd_last_error());
			return set_error(r, "/dev/nbd%d: the backend now has "
					 "%llu bytes, but the kernel kept %llu: "
					 "%s (asking again retries)", m->index,
					 (unsigned long long)new_size,
					 (unsigned long long)dev, why);
		}
	}
	log_notice("%s: /dev/nbd%d resized from %llu to %llu bytes",
		   label(m->e), m->index, (unsigned long long)dev,
		   (unsigned long long)new_size);
	return 0;
}

NBDD_EXPORT int nbdd_mapping_sync_size(struct nbdd_mapping *m)
{
	int r;

	clear_error();
	r = nbdd_export_refresh_size(m->e);
	if (r < 0)
		return r;
	return follow_backend(m, "the backend's size changed outside nbdd");
}

NBDD_EXPORT void nbdd_mapping_abandon(struct nbdd_mapping *m)
{
	if (m)
		stop_and_free(m, 0);
}

/* ---- accessors ---- */

NBDD_EXPORT int nbdd_mapping_wait(struct nbdd_mapping *m)
{
	wait_idle(m, 0);
	return 0;
}

NBDD_EXPORT int nbdd_mapping_index(const struct nbdd_mapping *m)
{
	return m->index;
}

NBDD_EXPORT struct nbdd_export *nbdd_mapping_export(const struct nbdd_mapping *m)
{
	return m->e;
}

NBDD_EXPORT unsigned nbdd_mapping_connections(const struct nbdd_mapping *m)
{
	return m->nconns;
}

NBDD_EXPORT int nbdd_mapping_stats(const struct nbdd_mapping *m,
				   unsigned conn, struct nbdd_conn_stats *out)
{
	if (conn >= m->nconns || !m->kc[conn].c)
		return set_error(-EINVAL, "/dev/nbd%d has no connection %u",
				 m->index, conn);
	conn_stats(m->kc[conn].c, out);
	return 0;
}

NBDD_EXPORT int nbdd_mapping_fd(const struct nbdd_mapping *m)
{
	return m->efd;
}

NBDD_EXPORT unsigned nbdd_mapping_live(const struct nbdd_mapping *m)
{
	struct nbdd_mapping *w = (struct nbdd_mapping *)m; /* lock only */
	unsigned n;

	pthread_mutex_lock(&w->lock);
	n = w->live;
	pthread_mutex_unlock(&w->lock);
	return n;
}

NBDD_EXPORT const char *nbdd_mapping_identifier(const struct nbdd_mapping *m)
{
	return m->identifier;
}
