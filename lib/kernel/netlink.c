/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The "nbd" generic-netlink family, over libnl-genl-3.
 *
 * One request at a time per struct knl: send, then read replies until
 * the kernel's ACK or error. Kernel errors are taken from the NLMSG_ERROR
 * itself (an error callback), because libnl's own error codes lose the
 * errno (EBUSY and EPERM both matter here and read differently).
 *
 * The family is resolved with an explicit CTRL_CMD_GETFAMILY rather than
 * genl_ctrl_resolve(): the same answer carries the driver's maxattr
 * (which tells whether BACKEND_IDENTIFIER is known: the kernel parses
 * requests leniently and would silently drop an attribute beyond it)
 * and the multicast group of LINK_DEAD.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include "internal.h"
#include "kernel/kernel.h"

struct knl {
	struct nl_sock *sk;
	struct knl_family fam;
};

/* State of one request while its replies are read. */
struct knl_req {
	int err;        /* the kernel's -errno, 0 */
	bool done;      /* ACK or error seen */
	int (*parse)(struct nlmsghdr *nlh, void *arg);
	void *arg;
	int parse_err;
};

/* ---- libnl plumbing ---- */

static int nle_to_errno(int nle)
{
	switch (-nle) {
	case NLE_NOMEM: return -ENOMEM;
	case NLE_AGAIN: return -EAGAIN;
	case NLE_PERM: return -EPERM;
	case NLE_BUSY: return -EBUSY;
	case NLE_OBJ_NOTFOUND: return -ENOENT;
	case NLE_INVAL: return -EINVAL;
	case NLE_MSGSIZE: return -EMSGSIZE;
	case NLE_NOACCESS: return -EACCES;
	default: return -EIO;
	}
}

static int on_error(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
	struct knl_req *q = arg;

	q->err = e->error < 0 ? e->error : -EIO;
	q->done = true;
	return NL_STOP;
}

static int on_ack(struct nl_msg *msg, void *arg)
{
	struct knl_req *q = arg;

	q->done = true;
	return NL_STOP;
}

static int on_valid(struct nl_msg *msg, void *arg)
{
	struct knl_req *q = arg;
	int r;

	if (!q->parse)
		return NL_OK;
	r = q->parse(nlmsg_hdr(msg), q->arg);
	if (r < 0 && !q->parse_err)
		q->parse_err = r;
	return NL_OK;
}

/*
 * Send @msg (consumed) and collect replies with @parse until the ACK.
 * Returns the kernel's -errno, a parse error, or 0.
 */
static int knl_transact(struct knl *k, struct nl_msg *msg,
			int (*parse)(struct nlmsghdr *, void *), void *arg)
{
	struct knl_req q = { .parse = parse, .arg = arg };
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	int r;

	if (!cb) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	nl_cb_err(cb, NL_CB_CUSTOM, on_error, &q);
	nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, &q);
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, &q);
	r = nl_send_auto(k->sk, msg);
	nlmsg_free(msg);
	while (r >= 0 && !q.done) {
		r = nl_recvmsgs(k->sk, cb);
		if (r == -NLE_INTR)
			r = 0;
	}
	nl_cb_put(cb);
	if (q.err)
		return q.err;
	if (r < 0)
		return set_error(nle_to_errno(r), "nbd netlink: %s",
				 nl_geterror(r));
	return q.parse_err;
}

/* ---- the family ---- */

static void parse_groups(struct nlattr *groups, struct knl_family *out)
{
	struct nlattr *g, *tb[CTRL_ATTR_MCAST_GRP_MAX + 1];
	int rem;

	nla_for_each_nested(g, groups, rem) {
		if (nla_parse_nested(tb, CTRL_ATTR_MCAST_GRP_MAX, g, NULL) < 0)
			continue;
		if (!tb[CTRL_ATTR_MCAST_GRP_NAME] || !tb[CTRL_ATTR_MCAST_GRP_ID])
			continue;
		if (!strcmp(nla_get_string(tb[CTRL_ATTR_MCAST_GRP_NAME]),
			    NBD_GENL_MCAST_GROUP_NAME))
			out->mcast_group =
				(int)nla_get_u32(tb[CTRL_ATTR_MCAST_GRP_ID]);
	}
}

int knl_parse_family(struct nlmsghdr *nlh, struct knl_family *out)
{
	struct nlattr *tb[CTRL_ATTR_MAX + 1];

	if (genlmsg_parse(nlh, 0, tb, CTRL_ATTR_MAX, NULL) < 0 ||
	    !tb[CTRL_ATTR_FAMILY_ID])
		return -EPROTO;
	out->id = nla_get_u16(tb[CTRL_ATTR_FAMILY_ID]);
	out->version = tb[CTRL_ATTR_VERSION] ?
		nla_get_u32(tb[CTRL_ATTR_VERSION]) : 0;
	out->maxattr = tb[CTRL_ATTR_MAXATTR] ?
		nla_get_u32(tb[CTRL_ATTR_MAXATTR]) : 0;
	out->mcast_group = -1;
	if (tb[CTRL_ATTR_MCAST_GROUPS])
		parse_groups(tb[CTRL_ATTR_MCAST_GROUPS], out);
	return 0;
}

static int parse_family_cb(struct nlmsghdr *nlh, void *arg)
{
	return knl_parse_family(nlh, arg);
}

static int resolve_family(struct knl *k)
{
	struct nl_msg *msg = nlmsg_alloc();
	int r;

	if (!msg)
		return -ENOMEM;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, GENL_ID_CTRL, 0, 0,
			 CTRL_CMD_GETFAMILY, 1) ||
	    nla_put_string(msg, CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME)) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	k->fam.id = -1;
	r = knl_transact(k, msg, parse_family_cb, &k->fam);
	if (r == -ENOENT || (r == 0 && k->fam.id < 0))
		return set_error(-ENOENT, "the nbd driver is not loaded "
				 "(nbdd_kernel_prepare(), or `modprobe nbd`)");
	if (r < 0)
		return set_error(r, "cannot look up the nbd netlink family: %s",
				 strerror(-r));
	return 0;
}

int knl_open(struct knl **out)
{
	struct knl *k = calloc(1, sizeof(*k));
	int r;

	if (!k)
		return set_error(-ENOMEM, "out of memory");
	k->sk = nl_socket_alloc();
	if (!k->sk) {
		free(k);
		return set_error(-ENOMEM, "out of memory for a netlink socket");
	}
	r = genl_connect(k->sk);
	if (r < 0) {
		r = set_error(nle_to_errno(r), "cannot open a generic netlink "
			      "socket: %s", nl_geterror(r));
		knl_close(k);
		return r;
	}
	r = resolve_family(k);
	if (r < 0) {
		knl_close(k);
		return r;
	}
	*out = k;
	return 0;
}

void knl_close(struct knl *k)
{
	if (!k)
		return;
	nl_socket_free(k->sk);
	free(k);
}

const struct knl_family *knl_family(const struct knl *k)
{
	return &k->fam;
}

bool knl_has_identifier(const struct knl_family *f)
{
	return f->maxattr >= NBD_ATTR_BACKEND_IDENTIFIER;
}

/* ---- messages ---- */

static int put_sockets(struct nl_msg *msg, const struct knl_config *c)
{
	struct nlattr *socks, *item;
	unsigned i;

	socks = nla_nest_start(msg, NBD_ATTR_SOCKETS);
	if (!socks)
		return -EMSGSIZE;
	for (i = 0; i < c->nfds; i++) {
		item = nla_nest_start(msg, NBD_SOCK_ITEM);
		if (!item || nla_put_u32(msg, NBD_SOCK_FD, (uint32_t)c->fds[i]))
			return -EMSGSIZE;
		nla_nest_end(msg, item);
	}
	nla_nest_end(msg, socks);
	return 0;
}

static int put_u64_nz(struct nl_msg *msg, int type, uint64_t v)
{
	return v ? nla_put_u64(msg, type, v) : 0;
}

int knl_build_config(struct nl_msg *msg, const struct knl_family *f,
		     uint8_t cmd, const struct knl_config *c)
{
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, f->id, 0, 0, cmd,
			 NBD_GENL_VERSION))
		return -EMSGSIZE;
	if (c->index >= 0 && nla_put_u32(msg, NBD_ATTR_INDEX,
					 (uint32_t)c->index))
		return -EMSGSIZE;
	if (put_u64_nz(msg, NBD_ATTR_SIZE_BYTES, c->size) ||
	    put_u64_nz(msg, NBD_ATTR_BLOCK_SIZE_BYTES, c->block_size) ||
	    put_u64_nz(msg, NBD_ATTR_SERVER_FLAGS, c->server_flags) ||
	    put_u64_nz(msg, NBD_ATTR_CLIENT_FLAGS, c->client_flags) ||
	    put_u64_nz(msg, NBD_ATTR_TIMEOUT, c->timeout) ||
	    put_u64_nz(msg, NBD_ATTR_DEAD_CONN_TIMEOUT, c->dead_conn_timeout))
		return -EMSGSIZE;
	if (c->no_dead_conn_wait &&
	    nla_put_u64(msg, NBD_ATTR_DEAD_CONN_TIMEOUT, 0))
		return -EMSGSIZE;
	/* An old driver would ignore it: say so rather than pretend. */
	if (c->identifier && !knl_has_identifier(f))
		return -EOPNOTSUPP;
	if (c->identifier &&
	    nla_put_string(msg, NBD_ATTR_BACKEND_IDENTIFIER, c->identifier))
		return -EMSGSIZE;
	return c->nfds ? put_sockets(msg, c) : 0;
}

int knl_parse_index(struct nlmsghdr *nlh)
{
	struct nlattr *tb[NBD_ATTR_MAX + 1];

	if (genlmsg_parse(nlh, 0, tb, NBD_ATTR_MAX, NULL) < 0 ||
	    !tb[NBD_ATTR_INDEX])
		return -1;
	return (int)(nla_get_u32(tb[NBD_ATTR_INDEX]) & 0x7fffffff);
}

static int add_dev(struct knl_dev **v, size_t *n, struct nlattr *item)
{
	struct nlattr *tb[NBD_DEVICE_ATTR_MAX + 1];
	struct knl_dev *nv;

	if (nla_parse_nested(tb, NBD_DEVICE_ATTR_MAX, item, NULL) < 0 ||
	    !tb[NBD_DEVICE_INDEX])
		return 0; /* not one we understand: skip it */
	nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n].index = (int)(nla_get_u32(tb[NBD_DEVICE_INDEX]) & 0x7fffffff);
	nv[*n].connected = tb[NBD_DEVICE_CONNECTED] &&
			   nla_get_u8(tb[NBD_DEVICE_CONNECTED]);
	(*n)++;
	return 0;
}

int knl_parse_status(struct nlmsghdr *nlh, struct knl_dev **v, size_t *n)
{
	struct nlattr *tb[NBD_ATTR_MAX + 1], *item;
	int rem, r;

	if (genlmsg_parse(nlh, 0, tb, NBD_ATTR_MAX, NULL) < 0)
		return -EPROTO;
	if (!tb[NBD_ATTR_DEVICE_LIST])
		return 0;
	nla_for_each_nested(item, tb[NBD_ATTR_DEVICE_LIST], rem) {
		if (nla_type(item) != NBD_DEVICE_ITEM)
			continue;
		r = add_dev(v, n, item);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- errors ---- */

static const char *cmd_name(uint8_t cmd)
{
	switch (cmd) {
	case NBD_CMD_CONNECT: return "connect";
	case NBD_CMD_DISCONNECT: return "disconnect";
	case NBD_CMD_RECONFIGURE: return "reconfigure";
	case NBD_CMD_STATUS: return "status";
	default: return "command";
	}
}

static const char *einval_text(char *buf, size_t len, uint8_t cmd,
			       int index, bool exists)
{
	if (index >= 0 && !exists && cmd != NBD_CMD_CONNECT)
		snprintf(buf, len, "no such device /dev/nbd%d (nbds_max too "
			 "small?)", index);
	else if (cmd == NBD_CMD_CONNECT && index >= 0 && !exists)
		snprintf(buf, len, "the kernel cannot create /dev/nbd%d "
			 "(index out of range?)", index);
	else if (cmd == NBD_CMD_CONNECT)
		snprintf(buf, len, "the kernel refused the configuration "
			 "(block size, size or socket; the kernel log says "
			 "which)");
	else if (cmd == NBD_CMD_RECONFIGURE)
		snprintf(buf, len, "cannot reconfigure /dev/nbd%d: it is not "
			 "connected, or its backend identifier differs",
			 index);
	else
		snprintf(buf, len, "%s /dev/nbd%d: invalid request (the "
			 "device may be going away)", cmd_name(cmd), index);
	return buf;
}

const char *knl_strerror(char *buf, size_t len, int err, uint8_t cmd,
			 int index, bool exists)
{
	switch (-err) {
	case EPERM:
	case EACCES:
		snprintf(buf, len, "nbd %s: not permitted (needs "
			 "CAP_SYS_ADMIN)", cmd_name(cmd));
		return buf;
	case EBUSY:
	case EEXIST:
		if (index >= 0)
			snprintf(buf, len, "device /dev/nbd%d is already in "
				 "use", index);
		else
			snprintf(buf, len, "no free nbd device");
		return buf;
	case EINVAL:
		return einval_text(buf, len, cmd, index, exists);
	case ENOENT:
		snprintf(buf, len, "the nbd driver is not loaded");
		return buf;
	case EBADF:
	case ENOTSOCK:
		snprintf(buf, len, "nbd %s: the kernel could not take the "
			 "socket", cmd_name(cmd));
		return buf;
	case EOPNOTSUPP:
		snprintf(buf, len, "nbd %s: this kernel does not know backend "
			 "identifiers (5.14+)", cmd_name(cmd));
		return buf;
	default:
		if (index >= 0)
			snprintf(buf, len, "nbd %s /dev/nbd%d failed: %s",
				 cmd_name(cmd), index, strerror(-err));
		else
			snprintf(buf, len, "nbd %s failed: %s", cmd_name(cmd),
				 strerror(-err));
		return buf;
	}
}

static int knl_error(int err, uint8_t cmd, int index)
{
	char msg[256];

	knl_strerror(msg, sizeof(msg), err, cmd, index,
		     index >= 0 && sysfs_device_exists(index));
	return set_error(err, "%s", msg);
}

/* ---- commands ---- */

static int send_config(struct knl *k, uint8_t cmd, const struct knl_config *c,
		       int (*parse)(struct nlmsghdr *, void *), void *arg)
{
	struct nl_msg *msg = nlmsg_alloc();
	int r;

	if (!msg)
		return set_error(-ENOMEM, "out of memory");
	r = knl_build_config(msg, &k->fam, cmd, c);
	if (r < 0) {
		nlmsg_free(msg);
		return knl_error(r, cmd, c->index);
	}
	r = knl_transact(k, msg, parse, arg);
	return r < 0 ? knl_error(r, cmd, c->index) : 0;
}

static int parse_connect_cb(struct nlmsghdr *nlh, void *arg)
{
	int *index = arg;
	int i = knl_parse_index(nlh);

	if (i >= 0)
		*index = i;
	return 0;
}

int knl_connect(struct knl *k, const struct knl_config *c, int *index)
{
	int got = -1, r;

	r = send_config(k, NBD_CMD_CONNECT, c, parse_connect_cb, &got);
	if (r < 0)
		return r;
	if (got < 0)
		got = c->index; /* every kernel replies; be safe anyway */
	if (got < 0)
		return set_error(-EPROTO, "the kernel connected a device but "
				 "did not say which");
	*index = got;
	return 0;
}

int knl_reconfigure(struct knl *k, const struct knl_config *c)
{
	return send_config(k, NBD_CMD_RECONFIGURE, c, NULL, NULL);
}

int knl_reconfigure_once(const struct knl_config *c)
{
	struct knl *k;
	int r = knl_open(&k);

	if (r < 0)
		return r;
	r = knl_reconfigure(k, c);
	knl_close(k);
	return r;
}

int knl_disconnect(struct knl *k, int index)
{
	struct knl_config c = { .index = index };

	return send_config(k, NBD_CMD_DISCONNECT, &c, NULL, NULL);
}

struct status_acc {
	struct knl_dev *v;
	size_t n;
};

static int parse_status_cb(struct nlmsghdr *nlh, void *arg)
{
	struct status_acc *a = arg;

	return knl_parse_status(nlh, &a->v, &a->n);
}

int knl_status(struct knl *k, int index, struct knl_dev **out, size_t *n)
{
	struct knl_config c = { .index = index };
	struct status_acc a = { 0 };
	int r;

	r = send_config(k, NBD_CMD_STATUS, &c, parse_status_cb, &a);
	if (r < 0) {
		free(a.v);
		return r;
	}
	*out = a.v;
	*n = a.n;
	return 0;
}
