/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Loading the nbd driver with libkmod, as modprobe would (aliases,
 * dependencies, blacklist, options from /etc/modprobe.d).
 *
 * /sys/module/nbd exists for a loaded module and for a built-in driver
 * (it has parameters), so it alone says "nothing to do".
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libkmod.h>

#include "internal.h"
#include "kernel/kernel.h"

#define FAMILY_WAIT_MS 3000

bool kernel_driver_present(void)
{
	return access("/sys/module/nbd", F_OK) == 0;
}

#define REMEDY_INSTALL "install the modules of this kernel (its linux-image " \
	"or linux-modules package) or run `modprobe nbd`"

static int load_error(int err, const char *why, const char *remedy)
{
	return set_error(err, "the nbd module cannot be loaded: %s (kernel "
			 "%s) -- %s", why, kernel_release(), remedy);
}

static int insert(struct kmod_ctx *ctx, const char *options)
{
	struct kmod_list *list = NULL, *l;
	struct kmod_module *mod;
	int r;

	r = kmod_module_new_from_lookup(ctx, "nbd", &list);
	if (r < 0)
		return load_error(r, "the module index cannot be read",
				  REMEDY_INSTALL);
	if (!list)
		return load_error(-ENOENT, "this kernel has no module nbd",
				  REMEDY_INSTALL);
	r = -ENOENT;
	kmod_list_foreach(l, list) {
		mod = kmod_module_get_module(l);
		r = kmod_module_probe_insert_module(mod,
						    KMOD_PROBE_APPLY_BLACKLIST,
						    options, NULL, NULL, NULL);
		kmod_module_unref(mod);
		if (r == 0 || r == -EEXIST)
			break;
	}
	kmod_module_unref_list(list);
	if (r == -EEXIST)
		return 0; /* someone else loaded it meanwhile */
	if (r > 0) /* KMOD_PROBE_APPLY_BLACKLIST: refused by configuration */
		return load_error(-EPERM, "it is blacklisted",
				  "remove the blacklist from modprobe.d, or "
				  "load it yourself: `modprobe nbd`");
	if (r == -EPERM || r == -EACCES)
		return load_error(r, "not permitted (needs CAP_SYS_MODULE)",
				  "run as root, or `modprobe nbd` first");
	if (r == -ENOSYS)
		return load_error(r, "this kernel does not load modules",
				  "use a kernel with nbd built in or loadable");
	if (r < 0)
		return load_error(r, strerror(-r), REMEDY_INSTALL);
	return 0;
}

/*
 * module_init() registers the family before init_module() returns, but
 * a driver loaded by somebody else may still be on its way: wait a
 * little for the family rather than fail the caller's next command.
 */
static int wait_for_family(void)
{
	uint64_t end = now_ms() + FAMILY_WAIT_MS;
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	struct knl *k;
	int r;

	for (;;) {
		r = knl_open(&k);
		if (r == 0) {
			knl_close(k);
			return 0;
		}
		if (r != -ENOENT || now_ms() >= end)
			return r;
		nanosleep(&ts, NULL);
	}
}

NBDD_EXPORT int nbdd_kernel_load(unsigned nbds_max)
{
	struct kmod_ctx *ctx;
	char options[32] = "";
	int r;

	clear_error();
	if (kernel_driver_present())
		return wait_for_family();
	if (nbds_max)
		snprintf(options, sizeof(options), "nbds_max=%u", nbds_max);
	ctx = kmod_new(NULL, NULL);
	if (!ctx)
		return load_error(-ENOMEM, "libkmod cannot start",
				  "run `modprobe nbd`");
	r = insert(ctx, nbds_max ? options : NULL);
	kmod_unref(ctx);
	if (r < 0)
		return r;
	log_info("loaded the nbd module%s%s", nbds_max ? " with " : "",
		 options);
	return wait_for_family();
}

NBDD_EXPORT int nbdd_kernel_prepare(void)
{
	const char *env = getenv("NBDD_NBDS_MAX");
	unsigned long n = 0;
	char *end;

	if (env && *env) {
		errno = 0;
		n = strtoul(env, &end, 10);
		if (errno || *end || n > 1u << 20)
			return set_error(-EINVAL, "NBDD_NBDS_MAX=%s: not a "
					 "device count", env);
	}
	return nbdd_kernel_load((unsigned)n);
}
