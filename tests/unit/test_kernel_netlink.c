/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/kernel/netlink.c and sysfs.c: the messages we build, parsing what
 * the kernel sends, errors as sentences, sysfs attributes. No nbd driver
 * is needed; the live checks adapt to whether one is loaded.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include "internal.h"
#include "kernel/kernel.h"

static const struct knl_family fam_new = { .id = 30, .maxattr = 10 };
static const struct knl_family fam_old = { .id = 30, .maxattr = 9 };

static void parse(struct nl_msg *msg, struct nlattr **tb)
{
	assert_int_equal(genlmsg_parse(nlmsg_hdr(msg), 0, tb, NBD_ATTR_MAX,
				       NULL), 0);
}

static void test_build_connect(void **state)
{
	static const int fds[] = { 5, 6, 7 };
	struct knl_config c = {
		.index = -1, .size = 1u << 30, .block_size = 4096,
		.server_flags = 0x10d, .timeout = 0, .dead_conn_timeout = 60,
		.identifier = "memory:size=1G", .fds = fds, .nfds = 3,
	};
	struct nlattr *tb[NBD_ATTR_MAX + 1], *s, *item[NBD_SOCK_MAX + 1];
	struct nl_msg *msg = nlmsg_alloc();
	struct genlmsghdr *g;
	int rem, i = 0;

	assert_int_equal(knl_build_config(msg, &fam_new, NBD_CMD_CONNECT, &c),
			 0);
	assert_int_equal(nlmsg_hdr(msg)->nlmsg_type, 30);
	g = nlmsg_data(nlmsg_hdr(msg));
	assert_int_equal(g->cmd, NBD_CMD_CONNECT);
	assert_int_equal(g->version, NBD_GENL_VERSION);
	parse(msg, tb);
	assert_null(tb[NBD_ATTR_INDEX]); /* the kernel picks */
	assert_int_equal(nla_get_u64(tb[NBD_ATTR_SIZE_BYTES]), 1u << 30);
	assert_int_equal(nla_get_u64(tb[NBD_ATTR_BLOCK_SIZE_BYTES]), 4096);
	assert_int_equal(nla_get_u64(tb[NBD_ATTR_SERVER_FLAGS]), 0x10d);
	assert_int_equal(nla_get_u64(tb[NBD_ATTR_DEAD_CONN_TIMEOUT]), 60);
	assert_null(tb[NBD_ATTR_TIMEOUT]);      /* 0: the kernel's default */
	assert_null(tb[NBD_ATTR_CLIENT_FLAGS]);
	assert_string_equal(nla_get_string(tb[NBD_ATTR_BACKEND_IDENTIFIER]),
			    "memory:size=1G");
	nla_for_each_nested(s, tb[NBD_ATTR_SOCKETS], rem) {
		assert_int_equal(nla_type(s), NBD_SOCK_ITEM);
		assert_int_equal(nla_parse_nested(item, NBD_SOCK_MAX, s, NULL),
				 0);
		assert_int_equal(nla_get_u32(item[NBD_SOCK_FD]), fds[i]);
		i++;
	}
	assert_int_equal(i, 3);
	nlmsg_free(msg);
}

static void test_build_index_and_old_kernel(void **state)
{
	struct knl_config c = { .index = 3 };
	struct nlattr *tb[NBD_ATTR_MAX + 1];
	struct nl_msg *msg = nlmsg_alloc();

	assert_int_equal(knl_build_config(msg, &fam_old, NBD_CMD_DISCONNECT,
					  &c), 0);
	parse(msg, tb);
	assert_int_equal(nla_get_u32(tb[NBD_ATTR_INDEX]), 3);
	assert_null(tb[NBD_ATTR_SOCKETS]);
	assert_null(tb[NBD_ATTR_SIZE_BYTES]);
	nlmsg_free(msg);

	/* A pre-5.14 driver would drop the identifier without a word. */
	c.identifier = "x";
	msg = nlmsg_alloc();
	assert_int_equal(knl_build_config(msg, &fam_old, NBD_CMD_CONNECT, &c),
			 -EOPNOTSUPP);
	nlmsg_free(msg);
	assert_false(knl_has_identifier(&fam_old));
	assert_true(knl_has_identifier(&fam_new));
}

static void put_group(struct nl_msg *msg, int n, const char *name, int id)
{
	struct nlattr *g = nla_nest_start(msg, n);

	nla_put_string(msg, CTRL_ATTR_MCAST_GRP_NAME, name);
	nla_put_u32(msg, CTRL_ATTR_MCAST_GRP_ID, (uint32_t)id);
	nla_nest_end(msg, g);
}

static void test_parse_family(void **state)
{
	struct nl_msg *msg = nlmsg_alloc();
	struct knl_family f;
	struct nlattr *groups;

	genlmsg_put(msg, 0, 0, GENL_ID_CTRL, 0, 0, CTRL_CMD_NEWFAMILY, 1);
	nla_put_string(msg, CTRL_ATTR_FAMILY_NAME, "nbd");
	nla_put_u16(msg, CTRL_ATTR_FAMILY_ID, 34);
	nla_put_u32(msg, CTRL_ATTR_VERSION, 1);
	nla_put_u32(msg, CTRL_ATTR_MAXATTR, 10);
	groups = nla_nest_start(msg, CTRL_ATTR_MCAST_GROUPS);
	put_group(msg, 1, "other", 5);
	put_group(msg, 2, NBD_GENL_MCAST_GROUP_NAME, 17);
	nla_nest_end(msg, groups);
	assert_int_equal(knl_parse_family(nlmsg_hdr(msg), &f), 0);
	assert_int_equal(f.id, 34);
	assert_int_equal(f.version, 1);
	assert_int_equal(f.maxattr, 10);
	assert_int_equal(f.mcast_group, 17);
	nlmsg_free(msg);

	msg = nlmsg_alloc(); /* no groups, no maxattr */
	genlmsg_put(msg, 0, 0, GENL_ID_CTRL, 0, 0, CTRL_CMD_NEWFAMILY, 1);
	nla_put_u16(msg, CTRL_ATTR_FAMILY_ID, 34);
	assert_int_equal(knl_parse_family(nlmsg_hdr(msg), &f), 0);
	assert_int_equal(f.mcast_group, -1);
	assert_int_equal(f.maxattr, 0);
	nlmsg_free(msg);

	msg = nlmsg_alloc(); /* no id: not an answer we can use */
	genlmsg_put(msg, 0, 0, GENL_ID_CTRL, 0, 0, CTRL_CMD_NEWFAMILY, 1);
	assert_int_equal(knl_parse_family(nlmsg_hdr(msg), &f), -EPROTO);
	nlmsg_free(msg);
}

static void put_dev(struct nl_msg *msg, int index, int connected)
{
	struct nlattr *d = nla_nest_start(msg, NBD_DEVICE_ITEM);

	if (index >= 0)
		nla_put_u32(msg, NBD_DEVICE_INDEX, (uint32_t)index);
	if (connected >= 0)
		nla_put_u8(msg, NBD_DEVICE_CONNECTED, (uint8_t)connected);
	nla_nest_end(msg, d);
}

static void test_parse_status(void **state)
{
	struct nl_msg *msg = nlmsg_alloc();
	struct knl_dev *v = NULL;
	struct nlattr *list;
	size_t n = 0;

	genlmsg_put(msg, 0, 0, 30, 0, 0, NBD_CMD_STATUS, 1);
	list = nla_nest_start(msg, NBD_ATTR_DEVICE_LIST);
	put_dev(msg, 0, 1);
	put_dev(msg, 1, 0);
	put_dev(msg, -1, 1); /* no index: skipped */
	put_dev(msg, 9, -1); /* no CONNECTED: not connected */
	nla_nest_end(msg, list);
	assert_int_equal(knl_parse_status(nlmsg_hdr(msg), &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].index, 0);
	assert_true(v[0].connected);
	assert_int_equal(v[1].index, 1);
	assert_false(v[1].connected);
	assert_int_equal(v[2].index, 9);
	assert_false(v[2].connected);
	/* A second reply appends. */
	assert_int_equal(knl_parse_status(nlmsg_hdr(msg), &v, &n), 0);
	assert_int_equal(n, 6);
	free(v);
	nlmsg_free(msg);
}

static void test_parse_index(void **state)
{
	struct nl_msg *msg = nlmsg_alloc();

	genlmsg_put(msg, 0, 0, 30, 0, 0, NBD_CMD_LINK_DEAD, 1);
	assert_int_equal(knl_parse_index(nlmsg_hdr(msg)), -1);
	nla_put_u32(msg, NBD_ATTR_INDEX, 12);
	assert_int_equal(knl_parse_index(nlmsg_hdr(msg)), 12);
	nlmsg_free(msg);
}

static void expect_msg(int err, uint8_t cmd, int index, bool exists,
		       const char *want)
{
	char buf[256];

	knl_strerror(buf, sizeof(buf), err, cmd, index, exists);
	if (!strstr(buf, want))
		fail_msg("error %d cmd %u index %d: '%s' lacks '%s'", err, cmd,
			 index, buf, want);
}

static void test_errors(void **state)
{
	expect_msg(-EBUSY, NBD_CMD_CONNECT, 3, true,
		   "device /dev/nbd3 is already in use");
	expect_msg(-EBUSY, NBD_CMD_CONNECT, -1, false, "no free nbd device");
	expect_msg(-EPERM, NBD_CMD_CONNECT, -1, false,
		   "not permitted (needs CAP_SYS_ADMIN)");
	expect_msg(-EINVAL, NBD_CMD_DISCONNECT, 7, false,
		   "no such device /dev/nbd7 (nbds_max too small?)");
	expect_msg(-EINVAL, NBD_CMD_RECONFIGURE, 7, false,
		   "no such device /dev/nbd7");
	expect_msg(-EINVAL, NBD_CMD_RECONFIGURE, 7, true,
		   "cannot reconfigure /dev/nbd7");
	expect_msg(-EINVAL, NBD_CMD_CONNECT, -1, false,
		   "refused the configuration");
	expect_msg(-EINVAL, NBD_CMD_CONNECT, 1 << 30, false,
		   "cannot create /dev/nbd1073741824");
	expect_msg(-ENOENT, NBD_CMD_STATUS, -1, false, "not loaded");
	expect_msg(-ENOMEM, NBD_CMD_STATUS, 2, true,
		   "nbd status /dev/nbd2 failed: Cannot allocate memory");
	expect_msg(-EIO, NBD_CMD_DISCONNECT, -1, true,
		   "nbd disconnect failed: Input/output error");
}

/* ---- sysfs, on a fake tree ---- */

static char root[64];

static void put_file(const char *rel, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int sysfs_setup(void **state)
{
	char path[256];

	snprintf(root, sizeof(root), "/tmp/nbdd-sysfs.XXXXXX");
	assert_non_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/block", root);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/block/nbd3", root);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/block/nbd3/queue", root);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/block/nbd4", root);
	mkdir(path, 0755);
	put_file("block/nbd3/size", "2048\n");
	put_file("block/nbd3/queue/logical_block_size", "4096\n");
	put_file("block/nbd3/pid", "123\n");
	put_file("block/nbd3/backend", "memory:size=1M\n");
	put_file("block/nbd4/size", "garbage\n");
	sysfs_set_root(root);
	return 0;
}

static int sysfs_teardown(void **state)
{
	char cmd[128];

	sysfs_set_root(NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_sysfs(void **state)
{
	char buf[64];
	uint64_t size;
	uint32_t bs;
	int pid;

	assert_true(sysfs_device_exists(3));
	assert_false(sysfs_device_exists(5));
	assert_int_equal(nbdd_sysfs_size(3, &size), 0);
	assert_int_equal(size, 1u << 20); /* 512-byte sectors */
	assert_int_equal(nbdd_sysfs_block_size(3, &bs), 0);
	assert_int_equal(bs, 4096);
	assert_int_equal(nbdd_sysfs_pid(3, &pid), 0);
	assert_int_equal(pid, 123);
	assert_int_equal(nbdd_sysfs_backend(3, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "memory:size=1M");
	/* Truncated, still terminated. */
	assert_int_equal(nbdd_sysfs_backend(3, buf, 7), 0);
	assert_string_equal(buf, "memory");
	assert_int_equal(nbdd_sysfs_pid(4, &pid), -ENOENT);
	assert_non_null(strstr(nbdd_last_error(), "/sys/block/nbd4/pid"));
	assert_int_equal(nbdd_sysfs_size(4, &size), -EPROTO);
	assert_int_equal(nbdd_sysfs_backend(4, buf, sizeof(buf)), -ENOENT);
	assert_string_equal(buf, "");
}

/* ---- the running kernel ---- */

static void test_live_family(void **state)
{
	struct nbdd_kernel_features kf;
	struct nbdd_kernel_events *ev;
	bool loaded = access("/sys/module/nbd", F_OK) == 0;
	struct knl *k;
	int r = knl_open(&k);

	if (r != 0 && r != -ENOENT)
		skip(); /* no generic netlink here at all */
	if (!loaded) {
		/* The sentence a person sees when the driver is missing. */
		assert_int_equal(r, -ENOENT);
		assert_non_null(strstr(nbdd_last_error(),
				       "the nbd driver is not loaded"));
		assert_int_equal(nbdd_kernel_features(&kf), -ENOENT);
		assert_int_equal(nbdd_kernel_events_open(&ev), -ENOENT);
		return;
	}
	assert_int_equal(r, 0);
	assert_true(knl_family(k)->maxattr >= NBD_ATTR_DEVICE_LIST);
	assert_true(knl_family(k)->mcast_group >= 0);
	knl_close(k);
	assert_int_equal(nbdd_kernel_features(&kf), 0);
	assert_int_equal(kf.genl_version, NBD_GENL_VERSION);
	assert_int_equal(nbdd_kernel_events_open(&ev), 0);
	assert_true(nbdd_kernel_events_fd(ev) >= 0);
	assert_int_equal(nbdd_kernel_events_dispatch(ev, NULL, NULL), 0);
	nbdd_kernel_events_close(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_connect),
		cmocka_unit_test(test_build_index_and_old_kernel),
		cmocka_unit_test(test_parse_family),
		cmocka_unit_test(test_parse_status),
		cmocka_unit_test(test_parse_index),
		cmocka_unit_test(test_errors),
		cmocka_unit_test_setup_teardown(test_sysfs, sysfs_setup,
						sysfs_teardown),
		cmocka_unit_test(test_live_family),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
