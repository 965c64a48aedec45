/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdd: serve backends as /dev/nbdX (through nbdctl) and, with --listen,
 * to NBD clients. Runs in the foreground, logs to stderr: made to be a
 * systemd service (Type=notify works; Type=simple too).
 *
 * Start-up order matters: signals are blocked before any thread exists,
 * the control socket is claimed before the state file is touched (a
 * second daemon must fail without disturbing the first), and readiness
 * is announced only once everything listens.
 * Shutdown (SIGTERM/SIGINT): stop accepting, drop control clients, let
 * the worker finish, detach every mapping, disconnect network clients.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "notify.h"

#define MAX_LISTEN 16
#define MAX_EXPORTS 64

struct options {
	struct control_options control;
	struct exports_options net;
	const char *listen[MAX_LISTEN];
	struct export_arg exports[MAX_EXPORTS];
	const char *config_dir;
	const char *pidfile;
	char state_file[PATH_MAX];
	int log_level;
	bool mlock;
	bool detach_on_exit;
	unsigned poll_max_us;
	uint32_t timeout;           /* defaults for attach requests */
	uint32_t dead_conn_timeout;
};

/*
 * A device waits this long for a restarted nbdd before its I/O fails:
 * long enough for systemd's restart (RestartSec=1s) on a busy machine
 * and for backends that take a while to open.
 */
#define DEFAULT_DEAD_CONN_TIMEOUT 60

enum {
	OPT_CONTROL = 256,
	OPT_LISTEN,
	OPT_EXPORT,
	OPT_EXPORT_RO,
	OPT_CONFIG_DIR,
	OPT_PLUGIN_DIR,
	OPT_CONTROL_GROUP,
	OPT_MAX_CLIENTS,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_LOG_LEVEL,
	OPT_PIDFILE,
	OPT_STATE_FILE,
	OPT_NO_MLOCK,
	OPT_TIMEOUT,
	OPT_DEAD_CONN_TIMEOUT,
	OPT_DETACH_ON_EXIT,
	OPT_TLS,
	OPT_TLS_CERTIFICATES,
	OPT_TLS_PSK,
	OPT_TLS_VERIFY_PEER,
	OPT_POLL_MAX_US,
};

static const struct option long_options[] = {
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "export", required_argument, NULL, OPT_EXPORT },
	{ "export-ro", required_argument, NULL, OPT_EXPORT_RO },
	{ "config-dir", required_argument, NULL, OPT_CONFIG_DIR },
	{ "plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR },
	{ "control-group", required_argument, NULL, OPT_CONTROL_GROUP },
	{ "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
	{ "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "state-file", required_argument, NULL, OPT_STATE_FILE },
	{ "no-mlock", no_argument, NULL, OPT_NO_MLOCK },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "dead-conn-timeout", required_argument, NULL, OPT_DEAD_CONN_TIMEOUT },
	{ "detach-on-exit", no_argument, NULL, OPT_DETACH_ON_EXIT },
	{ "tls", required_argument, NULL, OPT_TLS },
	{ "tls-certificates", required_argument, NULL, OPT_TLS_CERTIFICATES },
	{ "tls-psk", required_argument, NULL, OPT_TLS_PSK },
	{ "tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY_PEER },
	{ "poll-max-us", required_argument, NULL, OPT_POLL_MAX_US },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: nbdd [OPTION]...\n"
		"Serve storage backends as /dev/nbdX (attached with nbdctl) "
		"and to NBD clients.\n"
		"\n"
		"  --control PATH           control socket (default %s)\n"
		"  --control-group GROUP    members may attach and detach\n"
		"  --state-file PATH        mappings state (default: next to "
		"the control socket)\n"
		"  --listen ADDR            serve exports on unix:PATH, "
		"tcp:HOST:PORT or tcp:PORT\n"
		"                           (127.0.0.1); repeatable; off "
		"unless given\n"
		"  --export NAME=SPEC       a network export; repeatable\n"
		"  --export-ro NAME=SPEC    the same, read-only\n"
		"  --config-dir DIR         NAME specs come from "
		"DIR/backends.d/NAME.conf\n"
		"                           (default /etc/nbdd)\n"
		"  --plugin-dir DIR         NAME:... loads DIR/NAME.so "
		"when NAME is not\n"
		"                           built in (default " NBDD_PLUGINDIR ")\n"
		"  --max-clients N          network clients at once "
		"(default 1024)\n"
		"  --handshake-timeout S    seconds for a client's handshake "
		"(default 10)\n"
		"  --tls=off|on|require     TLS for network clients: off "
		"(default), on (their\n"
		"                           choice) or require\n"
		"  --tls-certificates DIR   ca-cert.pem, server-cert.pem, "
		"server-key.pem\n"
		"  --tls-psk FILE           pre-shared keys, psktool's "
		"USERNAME:HEXKEY lines\n"
		"  --tls-verify-peer        clients need a certificate "
		"signed by ca-cert.pem\n"
		"  --log-level LEVEL        err, warning, notice (default), "
		"info, debug\n"
		"  --pidfile PATH           write the pid there\n"
		"  --no-mlock               do not lock the daemon's memory\n"
		"  --timeout S              request timeout for mappings "
		"that set none\n"
		"                           (default 0: the kernel's)\n"
		"  --dead-conn-timeout S    how long a device waits for a "
		"restarted nbdd\n"
		"                           (default 60; 0: fail I/O at "
		"once)\n"
		"  --detach-on-exit         SIGTERM detaches every device "
		"too\n"
		"  --poll-max-us US         poll a busy socket up to US "
		"microseconds before\n"
		"                           sleeping (default 0: never; "
		"see nbdd(8))\n"
		"  -h, --help               this text\n"
		"  -V, --version            the version\n"
		"\n"
		"SIGTERM leaves devices to the next nbdd (they wait up to "
		"their dead-conn\ntimeout); SIGINT detaches every device. "
		"See nbdd(8).\n",
		CTL_DEFAULT_PATH);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("nbdd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see nbdd --help)\n", stderr);
	exit(2);
}

/* A whole number from @min to @max, or exit naming the option. */
static unsigned long parse_ranged(const char *opt, const char *arg,
				  unsigned long min, unsigned long max,
				  const char *what)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v < min || v > max)
		bad_usage("%s %s: expected %s from %lu to %lu", opt, arg, what,
			  min, max);
	return v;
}

static unsigned parse_count(const char *opt, const char *arg,
			    unsigned long max)
{
	return (unsigned)parse_ranged(opt, arg, 1, max, "a number");
}

static uint32_t parse_seconds(const char *opt, const char *arg)
{
	return (uint32_t)parse_ranged(opt, arg, 0, 86400, "seconds");
}

static void add_export(struct options *o, const char *arg, bool readonly)
{
	const char *eq = strchr(arg, '=');
	struct export_arg *x;
	char *name;

	if (!eq || eq == arg || !eq[1])
		bad_usage("--export%s %s: expected NAME=SPEC",
			  readonly ? "-ro" : "", arg);
	if (o->net.nexports >= MAX_EXPORTS)
		bad_usage("more than %d exports", MAX_EXPORTS);
	name = strndup(arg, (size_t)(eq - arg));
	if (!name)
		bad_usage("out of memory");
	x = &o->exports[o->net.nexports++];
	x->name = name;
	x->spec = eq + 1;
	x->readonly = readonly;
}

static void default_state_file(struct options *o)
{
	char dir[PATH_MAX];

	if (o->state_file[0])
		return;
	snprintf(dir, sizeof(dir), "%s", o->control.path);
	snprintf(o->state_file, sizeof(o->state_file), "%s/mappings.json",
		 dirname(dir));
}

static const char *option_name(int c)
{
	const struct option *lo;

	for (lo = long_options; lo->name; lo++)
		if (lo->val == c)
			return lo->name;
	return "?";
}

static void parse_option(struct options *o, int c, const char *arg)
{
	/* An empty path, group or address is a mistake, never a default. */
	if (arg && !*arg)
		bad_usage("--%s: empty value", option_name(c));
	switch (c) {
	case OPT_CONTROL:
		o->control.path = arg;
		break;
	case OPT_LISTEN:
		if (o->net.nlisten >= MAX_LISTEN)
			bad_usage("more than %d --listen", MAX_LISTEN);
		o->listen[o->net.nlisten++] = arg;
		break;
	case OPT_EXPORT:
	case OPT_EXPORT_RO:
		add_export(o, arg, c == OPT_EXPORT_RO);
		break;
	case OPT_CONFIG_DIR:
		o->config_dir = arg;
		break;
	case OPT_PLUGIN_DIR:
		nbdd_set_plugin_dir(arg);
		break;
	case OPT_CONTROL_GROUP:
		o->control.group = arg;
		break;
	case OPT_MAX_CLIENTS:
		o->net.max_clients = parse_count("--max-clients", arg, 1000000);
		break;
	case OPT_HANDSHAKE_TIMEOUT:
		o->net.handshake_timeout =
			parse_count("--handshake-timeout", arg, 3600);
		break;
	case OPT_LOG_LEVEL:
		o->log_level = log_level_parse(arg);
		if (o->log_level < 0)
			bad_usage("--log-level %s: use err, warning, notice, "
				  "info or debug", arg);
		break;
	case OPT_PIDFILE:
		o->pidfile = arg;
		break;
	case OPT_STATE_FILE:
		if (strlen(arg) >= sizeof(o->state_file))
			bad_usage("--state-file: path too long");
		snprintf(o->state_file, sizeof(o->state_file), "%s", arg);
		break;
	case OPT_NO_MLOCK:
		o->mlock = false;
		break;
	case OPT_TIMEOUT:
		o->timeout = parse_seconds("--timeout", arg);
		break;
	case OPT_DEAD_CONN_TIMEOUT:
		o->dead_conn_timeout = parse_seconds("--dead-conn-timeout", arg);
		break;
	case OPT_DETACH_ON_EXIT:
		o->detach_on_exit = true;
		break;
	case OPT_POLL_MAX_US:
		o->poll_max_us = (unsigned)parse_ranged("--poll-max-us", arg, 0,
							NBDD_POLL_MAX_LIMIT,
							"microseconds");
		break;
	case OPT_TLS:
		if (!strcmp(arg, "off"))
			o->net.tls.mode = NBDD_TLS_OFF;
		else if (!strcmp(arg, "on"))
			o->net.tls.mode = NBDD_TLS_ON;
		else if (!strcmp(arg, "require"))
			o->net.tls.mode = NBDD_TLS_REQUIRE;
		else
			bad_usage("--tls=%s: use off, on or require", arg);
		break;
	case OPT_TLS_CERTIFICATES:
		o->net.tls.certificates_dir = arg;
		break;
	case OPT_TLS_PSK:
		o->net.tls.psk_file = arg;
		break;
	case OPT_TLS_VERIFY_PEER:
		o->net.tls.verify_peer = true;
		break;
	case 'h':
		usage(stdout);
		exit(0);
	case 'V':
		printf("nbdd %s\n", NBDD_VERSION_STRING);
		exit(0);
	default:
		fputs("See nbdd --help.\n", stderr);
		exit(2);
	}
}

/* Credentials without a mode, or a mode without them, is a mistake. */
static void check_tls_options(struct nbdd_tls_options *t)
{
	bool creds = t->certificates_dir || t->psk_file;

	t->struct_size = sizeof(*t);
	if (t->mode == NBDD_TLS_OFF && (creds || t->verify_peer))
		bad_usage("--tls-certificates, --tls-psk and --tls-verify-peer "
			  "need --tls=on or --tls=require");
	if (t->mode != NBDD_TLS_OFF && !creds)
		bad_usage("--tls=%s needs --tls-certificates DIR or "
			  "--tls-psk FILE",
			  t->mode == NBDD_TLS_ON ? "on" : "require");
	if (t->verify_peer && !t->certificates_dir)
		bad_usage("--tls-verify-peer needs --tls-certificates DIR "
			  "(its ca-cert.pem checks the clients)");
}

static void parse_options(struct options *o, int argc, char **argv)
{
	int c;

	o->control.path = CTL_DEFAULT_PATH;
	o->log_level = NBDD_LOG_NOTICE;
	o->mlock = true;
	o->dead_conn_timeout = DEFAULT_DEAD_CONN_TIMEOUT;
	while ((c = getopt_long(argc, argv, "hV", long_options, NULL)) != -1)
		parse_option(o, c, optarg);
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	if (strlen(o->control.path) >=
	    sizeof(((struct sockaddr_un *)0)->sun_path))
		bad_usage("--control %s: path too long for a Unix socket",
			  o->control.path);
	o->net.listen = o->listen;
	o->net.exports = o->exports;
	check_tls_options(&o->net.tls);
	default_state_file(o);
}

/* ---- pid file ---- */

static int write_pidfile(const char *path)
{
	char buf[32];
	int fd, n;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_err("--pidfile %s: %s", path, strerror(errno));
		return -errno;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		log_err("--pidfile %s: %s", path, strerror(errno));
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

/* ---- run ---- */

static int min_timeout(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

static int run_loop(void)
{
	int r;

	while (!loop_quitting()) {
		r = loop_dispatch(min_timeout(control_expire(),
					      exports_expire()));
		if (r < 0) {
			log_err("event loop: %s", strerror(-r));
			return r;
		}
	}
	return 0;
}

static int start(struct options *o)
{
	int r;

	harden_process(o->mlock);
	nbdd_set_poll_max(o->poll_max_us); /* in range: parse_option() */
	mapproc_set_poll_max(o->poll_max_us);
	if (o->config_dir) {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%s/backends.d", o->config_dir);
		nbdd_set_config_dir(dir);
	}
	r = loop_init();
	if (r == 0)
		r = signals_watch();
	if (r < 0) {
		log_err("start-up: %s", strerror(-r));
		return r;
	}
	r = control_open(&o->control);
	if (r == 0)
		r = mappings_init(o->state_file, o->timeout,
				  o->dead_conn_timeout);
	if (r == 0)
		r = exports_open(&o->net);
	if (r == 0)
		r = worker_start();
	if (r == 0) {
		recovery_restore(); /* the worker takes the devices over */
		mappings_save();
		r = recovery_start();
	}
	if (r == 0 && o->pidfile)
		r = write_pidfile(o->pidfile);
	return r;
}

/* Also the path out of a failed start: each step undoes only its own. */
static int stop(const struct options *o)
{
	int r;

	notify_stopping();
	control_stop_listening();
	exports_stop_listening();
	control_close();
	worker_stop();
	recovery_stop();
	r = mappings_shutdown(!o->detach_on_exit && !signals_interrupted());
	exports_close();
	signals_free();
	loop_free();
	if (o->pidfile)
		unlink(o->pidfile);
	return r;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	size_t i;
	int r;

	/* A mapping's own process (mapproc.c starts it). */
	if (argc > 1 && !strcmp(argv[1], "--serve-mapping"))
		return mapserver_main(argc, argv);
	mapproc_set_program(argv[0]);
	parse_options(&o, argc, argv);
	log_setup(o.log_level);
	r = signals_block();
	if (r < 0) {
		log_err("signals: %s", strerror(-r));
		return 1;
	}
	r = start(&o);
	if (r == 0) {
		log_notice("nbdd %s ready (control %s)", NBDD_VERSION_STRING,
			   o.control.path);
		notify_ready(mappings_count());
		r = run_loop();
	}
	if (stop(&o) < 0 && r == 0)
		r = -EIO;
	for (i = 0; i < o.net.nexports; i++)
		free((char *)o.exports[i].name);
	if (r == 0)
		log_notice("exiting");
	return r < 0 ? 1 : 0;
}
