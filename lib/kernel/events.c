/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LINK_DEAD events: the driver multicasts NBD_CMD_LINK_DEAD with the
 * device's INDEX on "nbd_mc_group" when a socket of a configured device
 * dies (not when it was asked to disconnect). A daemon polls the fd and
 * dispatches; nothing here blocks.
 */
#include <errno.h>
#include <stdlib.h>

#include <linux/nbd-netlink.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "internal.h"
#include "kernel/kernel.h"

struct nbdd_kernel_events {
	struct nl_sock *sk;
	struct nl_cb *cb;
	int family;
	nbdd_link_dead_fn fn;
	void *opaque;
	int count;
};

static int on_event(struct nl_msg *msg, void *arg)
{
	struct nbdd_kernel_events *ev = arg;
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct genlmsghdr *g = nlmsg_data(nlh);
	int index;

	if (nlh->nlmsg_type != ev->family || g->cmd != NBD_CMD_LINK_DEAD)
		return NL_OK;
	index = knl_parse_index(nlh);
	if (index < 0)
		return NL_OK;
	ev->count++;
	if (ev->fn)
		ev->fn(ev->opaque, index);
	return NL_OK;
}

/* Multicast messages carry no sequence number of ours: accept them all. */
static int any_seq(struct nl_msg *msg, void *arg)
{
	return NL_OK;
}

static int events_join(struct nbdd_kernel_events *ev)
{
	const struct knl_family *f;
	struct knl *k;
	int r;

	/* A separate request socket: the event socket stays pure. */
	r = knl_open(&k);
	if (r < 0)
		return r;
	f = knl_family(k);
	ev->family = f->id;
	r = f->mcast_group;
	knl_close(k);
	if (r < 0)
		return set_error(-ENOENT, "the nbd driver has no multicast "
				 "group " NBD_GENL_MCAST_GROUP_NAME);
	r = nl_socket_add_membership(ev->sk, r);
	if (r < 0)
		return set_error(-EIO, "cannot join the nbd event group: %s",
				 nl_geterror(r));
	return 0;
}

NBDD_EXPORT int nbdd_kernel_events_open(struct nbdd_kernel_events **out)
{
	struct nbdd_kernel_events *ev = calloc(1, sizeof(*ev));
	int r = -ENOMEM;

	clear_error();
	if (!ev)
		return set_error(-ENOMEM, "out of memory");
	ev->sk = nl_socket_alloc();
	ev->cb = nl_cb_alloc(NL_CB_DEFAULT);
	if (!ev->sk || !ev->cb)
		goto fail;
	r = genl_connect(ev->sk);
	if (r < 0) {
		r = set_error(-EIO, "cannot open a generic netlink socket: %s",
			      nl_geterror(r));
		goto fail;
	}
	r = events_join(ev);
	if (r < 0)
		goto fail;
	nl_socket_set_nonblocking(ev->sk);
	nl_cb_set(ev->cb, NL_CB_SEQ_CHECK, NL_CB_CUSTOM, any_seq, NULL);
	nl_cb_set(ev->cb, NL_CB_VALID, NL_CB_CUSTOM, on_event, ev);
	*out = ev;
	return 0;
fail:
	if (r == -ENOMEM)
		set_error(r, "out of memory");
	nbdd_kernel_events_close(ev);
	return r;
}

NBDD_EXPORT int nbdd_kernel_events_fd(const struct nbdd_kernel_events *ev)
{
	return nl_socket_get_fd(ev->sk);
}

NBDD_EXPORT int nbdd_kernel_events_dispatch(struct nbdd_kernel_events *ev,
					    nbdd_link_dead_fn fn, void *opaque)
{
	int r;

	ev->fn = fn;
	ev->opaque = opaque;
	ev->count = 0;
	/*
	 * nl_recvmsgs_report() counts messages, so "nothing pending" reads
	 * the same (0 or -NLE_AGAIN) across libnl versions.
	 */
	for (;;) {
		r = nl_recvmsgs_report(ev->sk, ev->cb);
		if (r > 0)
			continue;
		if (r == 0 || r == -NLE_AGAIN)
			break;
		if (r == -NLE_INTR)
			continue;
		if (r == -NLE_NOMEM && fn) {
			/* ENOBUFS: the buffer overran, events were lost. */
			fn(opaque, NBDD_EVENTS_LOST);
			ev->count++;
			continue;
		}
		if (r < 0)
			return set_error(-EIO, "reading nbd events: %s",
					 nl_geterror(r));
	}
	return ev->count;
}

NBDD_EXPORT void nbdd_kernel_events_close(struct nbdd_kernel_events *ev)
{
	if (!ev)
		return;
	nl_cb_put(ev->cb);
	nl_socket_free(ev->sk);
	free(ev);
}
