/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Signals arrive as loop events through a signalfd, so the handlers are
 * ordinary code on the loop thread rather than async-signal context.
 *
 * They are blocked before any thread starts: every thread the library
 * creates inherits the mask, and the kernel then keeps them pending for
 * the signalfd instead of running a default action on a random thread.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "daemon.h"

static struct loop_source sig_src = { .fd = -1 };
static int sig_fd = -1;
static bool interrupted;

bool signals_interrupted(void)
{
	return interrupted;
}

static void watched(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

int signals_block(void)
{
	struct sigaction sa = { .sa_handler = SIG_IGN };
	sigset_t set;

	/* A control client or NBD client that goes away must not kill us. */
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -errno;
	watched(&set);
	return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void on_hangup(void)
{
	log_notice("SIGHUP: %u mapping%s, %u control client%s; state file "
		   "rewritten",
		   mappings_count(), mappings_count() == 1 ? "" : "s",
		   control_client_count(),
		   control_client_count() == 1 ? "" : "s");
	mappings_save();
}

static void on_signal(struct loop_source *s, uint32_t events)
{
	struct signalfd_siginfo si;

	while (read(s->fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			if (!loop_quitting())
				log_notice("%s from pid %u: shutting down",
					   strsignal((int)si.ssi_signo),
					   si.ssi_pid);
			/* Ctrl-C means "all of it": detach, hand nothing over. */
			if (si.ssi_signo == SIGINT)
				interrupted = true;
			loop_quit();
			break;
		case SIGHUP:
			on_hangup();
			break;
		}
	}
}

int signals_watch(void)
{
	sigset_t set;
	int r;

	watched(&set);
	sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sig_fd < 0)
		return -errno;
	r = loop_add(&sig_src, sig_fd, EPOLLIN, on_signal, NULL);
	if (r < 0) {
		close(sig_fd);
		sig_fd = -1;
	}
	return r;
}

void signals_free(void)
{
	loop_remove(&sig_src);
	if (sig_fd >= 0)
		close(sig_fd);
	sig_fd = -1;
}
