/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdctl [--control PATH] [--json] COMMAND [ARGS]: global options first,
 * then the command with its own. The control socket is --control, else
 * $NBDD_CONTROL, else /run/nbdd/control.sock.
 */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <nbdd/nbdd.h>

#include "nbdctl.h"

static void usage(FILE *f)
{
	const struct command *c;

	fprintf(f, "Usage: nbdctl [--control PATH] [--json] COMMAND [ARGS]\n"
		   "Attach storage backends to /dev/nbdX through nbdd.\n\n"
		   "Commands:\n");
	for (c = commands; c->name; c++)
		fprintf(f, "  %-8s %s\n", c->name, c->help);
	fprintf(f, "\nOptions:\n"
		   "  --control PATH   nbdd's control socket (default "
		   "$NBDD_CONTROL or %s)\n"
		   "  --json           print the daemon's replies as JSON\n"
		   "  -h, --help       this text; COMMAND --help for a "
		   "command's\n"
		   "  -V, --version    nbdctl's version\n"
		   "\nExit status: 0 done, 1 failed, 2 bad usage. See "
		   "nbdctl(8).\n",
		   CTL_DEFAULT_PATH);
}

static int parse_global(struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	/* '+': stop at the command; its options are its own. */
	while ((c = getopt_long(argc, argv, "+c:jhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (!*optarg)
				exit(usage_error(NULL, "--control: empty path"));
			g->control = optarg;
			break;
		case 'j':
			g->json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("nbdctl %s\n", NBDD_VERSION_STRING);
			exit(0);
		default:
			fputs("See nbdctl --help.\n", stderr);
			exit(EXIT_USAGE);
		}
	}
	return optind;
}

int main(int argc, char **argv)
{
	struct global g = { .control = getenv("NBDD_CONTROL") };
	const struct command *cmd;
	int first;

	signal(SIGPIPE, SIG_IGN);
	if (!g.control || !*g.control)
		g.control = CTL_DEFAULT_PATH;
	first = parse_global(&g, argc, argv);
	if (first >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = command_find(argv[first]);
	if (!cmd)
		return usage_error(NULL, "unknown command '%s'", argv[first]);
	return cmd->run(&g, argc - first, argv + first);
}
