/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Loading a backend table: from a plugin (dlopen) or from the program,
 * with the ABI checks that keep an old plugin working and refuse a new or
 * broken one with a message saying what to do.
 *
 * The rules are nbdkit's: the table grows only at its end, its header
 * (abi_version, struct_size) never moves, and we copy only the
 * struct_size bytes the plugin knows about, treating the rest as NULL.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#ifndef NBDD_PLUGINDIR
#define NBDD_PLUGINDIR "/usr/local/lib/nbdd"
#endif

/*
 * The smallest table worth reading: up to .pread, the last callback ABI 1
 * requires. What a shorter struct_size leaves out counts as absent.
 */
#define MIN_SIZE                                                               \
	(offsetof(struct nbdd_backend, pread) +                                \
	 sizeof(((struct nbdd_backend *)0)->pread))
/* No version of the table will ever be this large: garbage. */
#define MAX_STRUCT_SIZE 65536u
#define MAX_NAME 64

static bool valid_backend_name(const char *name)
{
	const char *p;

	if (!name || !*name || strlen(name) > MAX_NAME)
		return false;
	for (p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-'))
			return false;
	return true;
}

/* What is wrong with a copied table, or NULL. */
static const char *table_problem(const struct nbdd_backend *b)
{
	if (!valid_backend_name(b->name))
		return "its .name must be 1 to 64 characters of a-z 0-9 _ -";
	if (b->thread_model != NBDD_THREAD_SERIALIZE &&
	    b->thread_model != NBDD_THREAD_PARALLEL)
		return "its .thread_model is neither NBDD_THREAD_SERIALIZE "
		       "nor NBDD_THREAD_PARALLEL";
	if (b->flags & ~(NBDD_BACKEND_INLINE | NBDD_BACKEND_VOLATILE |
			 NBDD_BACKEND_SIZE_CHANGES))
		return "its .flags has bits this ABI does not define";
	if (!b->open || !b->get_size || !b->pread)
		return "it lacks one of the required callbacks .open, "
		       ".get_size and .pread";
	if ((b->aio_pwrite && !b->pwrite) || (b->aio_flush && !b->flush) ||
	    (b->aio_trim && !b->trim) || (b->aio_zero && !b->zero))
		return "each of its .aio_ callbacks needs its synchronous "
		       "twin (.aio_pwrite needs .pwrite, and so on)";
	if (backend_has_aio(b) && (b->thread_model != NBDD_THREAD_PARALLEL ||
				   (b->flags & NBDD_BACKEND_INLINE)))
		return "it has .aio_ callbacks, which run concurrently: its "
		       ".thread_model must be NBDD_THREAD_PARALLEL and its "
		       ".flags must not have NBDD_BACKEND_INLINE";
	return NULL;
}

int backend_copy(const struct nbdd_backend *in, struct nbdd_backend *out,
		 const char *origin)
{
	const char *why;

	memset(out, 0, sizeof(*out));
	if (!in)
		return set_error(-EINVAL, "%s: the backend table is NULL",
				 origin);
	if (in->abi_version > NBDD_BACKEND_ABI_VERSION)
		return set_error(-EINVAL,
				 "%s was built for nbdd backend ABI "
				 "%u; this nbdd supports up to %u: rebuild it "
				 "against this nbdd",
				 origin, in->abi_version,
				 NBDD_BACKEND_ABI_VERSION);
	if (in->abi_version == 0)
		return set_error(-EINVAL,
				 "%s: abi_version is 0; initialise "
				 "the table with NBDD_BACKEND_HEADER",
				 origin);
	/* Within what ABI 1 up to ours defines, in whole pointers. */
	if (in->struct_size < MIN_SIZE || in->struct_size > sizeof(*out) ||
	    in->struct_size > MAX_STRUCT_SIZE ||
	    in->struct_size % sizeof(void *))
		return set_error(-EINVAL,
				 "%s: struct_size %u is impossible "
				 "for backend ABI %u (%zu to %zu bytes); "
				 "initialise the table with "
				 "NBDD_BACKEND_HEADER",
				 origin, in->struct_size, in->abi_version,
				 (size_t)MIN_SIZE, sizeof(*out));
	memcpy(out, in, MIN((size_t)in->struct_size, sizeof(*out)));
	why = table_problem(out);
	if (why) {
		memset(out, 0, sizeof(*out));
		return set_error(-EINVAL, "%s: %s", origin, why);
	}
	return 0;
}

static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;
static char *dir_set;

NBDD_EXPORT void nbdd_set_plugin_dir(const char *dir)
{
	char *copy = dir && *dir ? strdup(dir) : NULL;

	pthread_mutex_lock(&dir_lock);
	free(dir_set);
	dir_set = copy;
	pthread_mutex_unlock(&dir_lock);
}

void plugin_dir(char *buf, size_t size)
{
	pthread_mutex_lock(&dir_lock);
	snprintf(buf, size, "%s", dir_set ? dir_set : NBDD_PLUGINDIR);
	pthread_mutex_unlock(&dir_lock);
}

/*
 * Backends that need a large library (rbd: librbd, nbd: libnbd) ship as
 * plugins in the plugin directory, so libnbdd itself does not depend on
 * them; "rbd:pool=p,..." finds PLUGINDIR/rbd.so by its name.
 */
bool plugin_installed(const char *name)
{
	char dir[4096], path[4200];
	struct stat st;

	if (!valid_backend_name(name))
		return false;
	plugin_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s.so", dir, name);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * "x.so" alone means the plugin directory; "./x.so" the current one;
 * a bare NAME an installed plugin (plugin_installed()).
 */
static int plugin_path(const char *spec, char *buf, size_t size)
{
	char dir[4096];
	bool bare = !strchr(spec, '/');
	size_t len = strlen(spec);
	int n;

	if (bare)
		plugin_dir(dir, sizeof(dir));
	if (!bare)
		n = snprintf(buf, size, "%s", spec);
	else if (len > 3 && !strcmp(spec + len - 3, ".so"))
		n = snprintf(buf, size, "%s/%s", dir, spec);
	else
		n = snprintf(buf, size, "%s/%s.so", dir, spec);

	if (n < 0 || (size_t)n >= size)
		return set_error(-ENAMETOOLONG, "plugin path too long");
	return 0;
}

typedef const struct nbdd_backend *(*backend_fn)(void);

int plugin_load(const char *spec, struct nbdd_backend *out, void **dl)
{
	char path[4096], origin[4200];
	struct stat st;
	backend_fn fn;
	void *h;
	int r;

	*dl = NULL;
	r = plugin_path(spec, path, sizeof(path));
	if (r)
		return r;
	if (stat(path, &st) < 0)
		return set_error(-errno, "plugin %s: %s", path,
				 strerror(errno));
	if (!S_ISREG(st.st_mode))
		return set_error(-EINVAL, "plugin %s is not a regular file",
				 path);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return set_error(-ENOEXEC, "plugin %s cannot be loaded: %s",
				 path, dlerror());
	/* The C standard has no function pointer from void *; POSIX has. */
	*(void **)&fn = dlsym(h, NBDD_BACKEND_SYMBOL);
	if (!fn) {
		dlclose(h);
		return set_error(-ENOEXEC,
				 "plugin %s has no %s(): build it "
				 "with NBDD_BACKEND_REGISTER() from "
				 "<nbdd/backend.h>",
				 path, NBDD_BACKEND_SYMBOL);
	}
	snprintf(origin, sizeof(origin), "plugin %s", path);
	r = backend_copy(fn(), out, origin);
	if (r) {
		dlclose(h);
		return r;
	}
	*dl = h;
	return 0;
}
