/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replays the fuzz seeds (fuzz/corpus/NAME) and every input that once
 * crashed a fuzz target (fuzz/regressions/NAME) through the same harness
 * code libFuzzer runs (fuzz/targets/NAME.c), so `make check` and
 * `make check-asan` keep each fixed bug fixed without clang's libFuzzer.
 *
 *   test_fuzz_regressions                  every target, every input
 *   test_fuzz_regressions NAME FILE...     these inputs through NAME
 *
 * A harness aborts on a broken promise (FUZZ_CHECK), so a regression
 * kills this program with the input's name as the last line printed.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define fuzz_one fuzz_wire
#include "../../fuzz/targets/wire.c"
#undef fuzz_one
#define fuzz_one fuzz_xmit
#include "../../fuzz/targets/xmit.c"
#undef fuzz_one
#define fuzz_one fuzz_handshake
#include "../../fuzz/targets/handshake.c"
#undef fuzz_one
#define fuzz_one fuzz_spec
#include "../../fuzz/targets/spec.c"
#undef fuzz_one
#define fuzz_one fuzz_control
#include "../../fuzz/targets/control.c"
#undef fuzz_one

static const struct {
	const char *name;
	int (*run)(const uint8_t *data, size_t size);
} targets[] = {
	{ "wire", fuzz_wire },
	{ "xmit", fuzz_xmit },
	{ "handshake", fuzz_handshake },
	{ "spec", fuzz_spec },
	{ "control", fuzz_control },
};

static int replay_file(int (*run)(const uint8_t *, size_t), const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f) {
		perror(path);
		return -1;
	}
	do {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	printf("  %s (%zu bytes)\n", path, len);
	fflush(stdout);
	run(buf, len);
	free(buf);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file of @dir in name order; returns how many, or -1. */
static int replay_dir(int (*run)(const uint8_t *, size_t), const char *dir,
		      bool must_exist)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL, path[4096];
	size_t n = 0, i;
	int ret = 0;

	if (!d) {
		if (must_exist)
			perror(dir);
		return must_exist ? -1 : 0;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		if (!names || !(names[n] = strdup(de->d_name)))
			abort();
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (replay_file(run, path) < 0)
			ret = -1;
		free(names[i]);
	}
	free(names);
	return ret < 0 ? -1 : (int)n;
}

int main(int argc, char **argv)
{
	const char *top = getenv("NBDD_TOP");
	char dir[4096];
	size_t i;
	int n, total, failed = 0;

	if (!top)
		top = ".";
	if (argc > 2) {
		for (i = 0; i < ARRAY_SIZE(targets); i++)
			if (!strcmp(argv[1], targets[i].name))
				break;
		if (i == ARRAY_SIZE(targets)) {
			fprintf(stderr, "unknown target %s\n", argv[1]);
			return 2;
		}
		for (n = 2; n < argc; n++)
			if (replay_file(targets[i].run, argv[n]) < 0)
				failed = 1;
		return failed;
	}
	for (i = 0; i < ARRAY_SIZE(targets); i++) {
		printf("%s:\n", targets[i].name);
		snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", top,
			 targets[i].name);
		n = replay_dir(targets[i].run, dir, true);
		/* an empty seed directory would make this test vacuous */
		if (n <= 0) {
			fprintf(stderr, "%s: no seeds replayed\n", dir);
			failed = 1;
			continue;
		}
		total = n;
		snprintf(dir, sizeof(dir), "%s/fuzz/regressions/%s", top,
			 targets[i].name);
		n = replay_dir(targets[i].run, dir, false);
		if (n < 0)
			failed = 1;
		else
			total += n;
		printf("%s: %d inputs replayed\n", targets[i].name, total);
	}
	return failed;
}
