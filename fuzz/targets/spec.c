/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backend specs and NAME.conf files (lib/spec.c, lib/conf.c), and the
 * size parser they use. Specs arrive from the control socket and the
 * command line; a NAME.conf is written by an administrator, but a parser
 * that a typo can crash is still a bug.
 *
 * Input: SPEC '\0' CONF   (no '\0': all of it is the spec, no file)
 * CONF becomes fz.conf in a private config directory, so the spec "fz"
 * or "fz:k=v" resolves through it. Nothing is opened or loaded.
 */
#include <sys/stat.h>

#include "../fuzz.h"
#include "internal.h"
#include "spec.h"

int fuzz_one(const uint8_t *data, size_t size);

static char spec_dir[64];
static char spec_file[96];

static void spec_cleanup(void)
{
	unlink(spec_file);
	rmdir(spec_dir);
}

static void spec_setup(void)
{
	if (spec_dir[0])
		return;
	snprintf(spec_dir, sizeof(spec_dir), "/tmp/nbdd-fuzz-spec.XXXXXX");
	FUZZ_CHECK(mkdtemp(spec_dir) != NULL);
	snprintf(spec_file, sizeof(spec_file), "%s/fz.conf", spec_dir);
	nbdd_set_config_dir(spec_dir);
	atexit(spec_cleanup);
}

static bool spec_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static void spec_check(const struct backend_spec *s, bool resolved)
{
	size_t i, j;

	FUZZ_CHECK(s->backend && s->backend[0]);
	FUZZ_CHECK(spec_printable(s->backend));
	FUZZ_CHECK(strchr(s->backend, ':') == NULL);
	FUZZ_CHECK(s->nparams <= SPEC_MAX_PARAMS);
	FUZZ_CHECK(s->readonly >= -1 && s->readonly <= 1);
	for (i = 0; i < s->nparams; i++) {
		const char *k = s->params[i].key, *v = s->params[i].value;

		FUZZ_CHECK(k && k[0] && strlen(k) <= SPEC_MAX_KEY);
		for (j = 0; k[j]; j++)
			FUZZ_CHECK(spec_key_char(k[j]));
		FUZZ_CHECK(v && strlen(v) <= SPEC_MAX_VALUE);
		for (j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(s->params[j].key, k) != 0);
	}
	/* a NAME.conf names a built-in or a plugin, never another NAME */
	if (resolved)
		FUZZ_CHECK(builtin_backend(s->backend) ||
			   spec_is_plugin_path(s->backend));
}

/*
 * A size that parsed is the number written, in the unit written: its
 * whole part survives the shift (no wrap past 2^64).
 */
static void spec_size_check(const char *text, uint64_t v)
{
	static const char units[] = "KMGTPE";
	unsigned long long whole;
	const char *u;
	char *end;
	unsigned shift = 0;

	whole = strtoull(text, &end, 10);
	while (*end == '.' || (*end >= '0' && *end <= '9'))
		end++;
	if (*end && (u = strchr(units, *end & ~0x20)))
		shift = 10 * (unsigned)(u - units + 1);
	/* ".99999999999999999" may round up to the next whole unit */
	FUZZ_CHECK(shift < 64 && (v >> shift == whole || v >> shift == whole + 1));
}

int fuzz_one(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t tlen = nul ? (size_t)(nul - data) : size;
	struct backend_spec s;
	char *text;
	uint64_t bytes;
	FILE *f;

	spec_setup();
	text = malloc(tlen + 1);
	FUZZ_CHECK(text != NULL);
	memcpy(text, data, tlen);
	text[tlen] = '\0';

	if (spec_parse(text, &s) == 0) {
		spec_check(&s, false);
		spec_free(&s);
	} else {
		FUZZ_CHECK(s.backend == NULL && s.nparams == 0);
		FUZZ_CHECK(nbdd_last_error()[0] != '\0');
	}

	unlink(spec_file);
	if (nul) {
		f = fopen(spec_file, "wb");
		FUZZ_CHECK(f != NULL);
		FUZZ_CHECK(fwrite(nul + 1, 1, size - tlen - 1, f) ==
			   size - tlen - 1);
		FUZZ_CHECK(fclose(f) == 0);
		chmod(spec_file, 0644);
	}
	if (spec_resolve(text, &s) == 0) {
		spec_check(&s, true);
		spec_free(&s);
	} else {
		FUZZ_CHECK(s.backend == NULL && s.nparams == 0);
		FUZZ_CHECK(nbdd_last_error()[0] != '\0');
	}

	if (nbdd_parse_size(text, &bytes) == 0)
		spec_size_check(text, bytes);
	free(text);
	return 0;
}
