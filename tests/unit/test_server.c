/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/server.c: listening addresses, the export table, client caps,
 * shutting clients down on nbdd_server_free(), and one client served end
 * to end (handshake, then conn.c) through a listening socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "nbd_test_client.h"

#define DISK_SIZE (1u << 20)

static int t_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	*h = NULL;
	return 0;
}

static int t_size(void *h, uint64_t *size)
{
	*size = DISK_SIZE;
	return 0;
}

/* Every byte reads as the low byte of its offset. */
static int t_pread(void *h, void *buf, size_t count, uint64_t off, uint32_t f)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < count; i++)
		p[i] = (uint8_t)(off + i);
	return 0;
}

static const struct nbdd_backend backend = {
	NBDD_BACKEND_HEADER,
	.name = "srvtest",
	.flags = NBDD_BACKEND_INLINE,
	.open = t_open,
	.get_size = t_size,
	.pread = t_pread,
};

static struct nbdd_server *new_server(unsigned max_clients,
				      unsigned max_negotiating)
{
	struct nbdd_server_options so = { .handshake_timeout = 30,
					  .max_clients = max_clients,
					  .max_negotiating = max_negotiating };
	struct nbdd_export_options eo = { .name = "disk" };
	struct nbdd_server *srv;
	struct nbdd_export *e;

	assert_int_equal(nbdd_server_new(&so, &srv), 0);
	assert_int_equal(nbdd_export_new(&backend, NULL, 0, &eo, &e), 0);
	assert_int_equal(nbdd_server_add_export(srv, e), 0);
	nbdd_export_unref(e);
	return srv;
}

/* A client on a socketpair, its server end handed to start_fd. */
static int connect_pair(struct nbdd_server *srv, int *ret)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				    sv), 0);
	*ret = nbdd_server_start_fd(srv, sv[1]);
	return sv[0];
}

static void go_default(int fd)
{
	uint8_t b[16];
	size_t len = tc_build_info(b, "", NULL, 0);
	struct tc_reply r;

	assert_int_equal(tc_start(fd), 0);
	assert_int_equal(tc_send_option(fd, NBD_OPT_GO, b, (uint32_t)len), 0);
	do {
		assert_int_equal(tc_read_reply(fd, &r), 0);
		tc_reply_free(&r);
	} while (r.type == NBD_REP_INFO);
	assert_int_equal(r.type, NBD_REP_ACK);
}

/* A READ on a GO'd connection with simple replies returns the pattern. */
static void read_check(int fd, uint64_t off)
{
	struct nbd_request req = { .type = NBD_CMD_READ, .cookie = 5,
				   .offset = off, .length = 512 };
	uint8_t hdr[NBD_SIMPLE_REQUEST_SIZE], rep[16 + 512];
	int i;

	nbd_encode_request(hdr, false, &req);
	assert_int_equal(tc_write(fd, hdr, sizeof(hdr)), 0);
	assert_int_equal(tc_read(fd, rep, sizeof(rep)), 0);
	assert_int_equal(nbd_get32(rep), NBD_SIMPLE_REPLY_MAGIC);
	assert_int_equal(nbd_get32(rep + 4), 0);
	assert_true(nbd_get64(rep + 8) == 5);
	for (i = 0; i < 512; i++)
		assert_int_equal(rep[16 + i], (uint8_t)(off + (uint64_t)i));
}

static void send_disc(int fd)
{
	struct nbd_request req = { .type = NBD_CMD_DISC };
	uint8_t hdr[NBD_SIMPLE_REQUEST_SIZE];

	nbd_encode_request(hdr, false, &req);
	assert_int_equal(tc_write(fd, hdr, sizeof(hdr)), 0);
}

/* ---- the export table ---- */

static void test_exports(void **state)
{
	struct nbdd_server *srv = new_server(0, 0);
	struct nbdd_export_options eo = { .name = "disk" };
	struct nbdd_export *dup, *first;

	assert_int_equal(server_export_count(srv), 1);
	first = server_export_at(srv, 0);
	assert_non_null(first);
	assert_null(server_export_at(srv, 1));
	assert_ptr_equal(server_find_export(srv, "", 0), first);
	assert_ptr_equal(server_find_export(srv, "disk", 4), first);
	assert_null(server_find_export(srv, "dis", 3));
	assert_null(server_find_export(srv, "disk\0", 5));
	assert_int_equal(server_handshake_timeout(srv), 30);
	/* names are unique */
	assert_int_equal(nbdd_export_new(&backend, NULL, 0, &eo, &dup), 0);
	assert_int_equal(nbdd_server_add_export(srv, dup), -EEXIST);
	nbdd_export_unref(dup);
	assert_int_equal(server_export_count(srv), 1);
	nbdd_server_free(srv);
}

static void test_defaults(void **state)
{
	struct nbdd_server *srv;

	assert_int_equal(nbdd_server_new(NULL, &srv), 0);
	assert_int_equal(server_handshake_timeout(srv), 10);
	assert_null(server_find_export(srv, "", 0)); /* no default yet */
	nbdd_server_free(srv);
	nbdd_server_free(NULL);
}

/* ---- listening ---- */

static void test_listen_unix(void **state)
{
	char dir[] = "/tmp/nbdd-test-XXXXXX", path[128], stale[64];
	struct stat st;
	int fd, fd2, c;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "unix:%s/s.sock", dir);
	fd = nbdd_listen(path);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(stat(path + 5, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	/* someone listens there: not stolen */
	assert_int_equal(nbdd_listen(path), -EADDRINUSE);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, path + 5);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(c);
	/* the listener died and left its socket: replaced */
	close(fd);
	fd2 = nbdd_listen(path);
	assert_true(fd2 >= 0);
	close(fd2);
	/* a regular file is never removed */
	snprintf(stale, sizeof(stale), "%s/file", dir);
	fd = open(stale, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "unix:%s", stale);
	assert_int_equal(nbdd_listen(path), -EEXIST);
	assert_int_equal(stat(stale, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(stale);
	snprintf(stale, sizeof(stale), "%s/s.sock", dir);
	unlink(stale);
	rmdir(dir);
	/* too long for sun_path, or empty */
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	memcpy(path, "unix:/", 6);
	assert_int_equal(nbdd_listen(path), -ENAMETOOLONG);
	assert_int_equal(nbdd_listen("unix:"), -ENAMETOOLONG);
}

static int bound_port(int fd, int family)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	assert_int_equal(ss.ss_family, family);
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		/* "tcp:PORT" means loopback, never every interface */
		assert_int_equal(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
		return ntohs(in->sin_port);
	}
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void test_listen_tcp(void **state)
{
	static const char *const bad[] = {
		"tcp:", "tcp:abc", "tcp:70000", "tcp:-1", "tcp:1x",
		"tcp:::1:80", "tcp:[::1]80", "tcp:[::1", "tcp::80",
		"foo:bar", "", "unix", "tcp:localhost:",
	};
	char addr[64];
	size_t i;
	int fd, fd2, port;

	fd = nbdd_listen("tcp:0");
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	port = bound_port(fd, AF_INET);
	assert_true(port > 0);
	/* the same port again while in use */
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", port);
	assert_true(nbdd_listen(addr) < 0);
	close(fd);
	/* SO_REUSEADDR: at once after close */
	fd = nbdd_listen(addr);
	assert_true(fd >= 0);
	assert_int_equal(bound_port(fd, AF_INET), port);
	close(fd);
	fd2 = nbdd_listen("tcp:[::1]:0");
	if (fd2 >= 0) { /* hosts without IPv6 loopback skip this part */
		assert_true(bound_port(fd2, AF_INET6) > 0);
		close(fd2);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		fd = nbdd_listen(bad[i]);
		if (fd >= 0)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(fd, -EINVAL);
	}
	assert_int_equal(nbdd_listen(NULL), -EINVAL);
}

/* ---- clients ---- */

/* Through a real listener: accept, handshake, transmission, DISC. */
static void test_end_to_end(void **state)
{
	struct nbdd_server *srv = new_server(0, 0);
	int lfd = nbdd_listen("tcp:0"), c;
	uint64_t t0;
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	assert_true(lfd >= 0);
	sa.sin_port = htons((uint16_t)bound_port(lfd, AF_INET));
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(nbdd_server_accept(srv, lfd), 0);
	go_default(c);
	read_check(c, 0);
	read_check(c, 4096 + 7);
	send_disc(c);
	assert_true(tc_peer_closed(c));
	close(c);
	/* a TCP client idle in transmission is woken by free() */
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(nbdd_server_accept(srv, lfd), 0);
	go_default(c);
	read_check(c, 512);
	t0 = now_ms();
	nbdd_server_free(srv);
	assert_true(now_ms() - t0 < 2000);
	assert_true(tc_peer_closed(c));
	close(c);
	close(lfd);
}

/* Over the negotiation cap: closed at once; room again once it frees. */
static void test_negotiating_cap(void **state)
{
	struct nbdd_server *srv = new_server(0, 1);
	int a, b, c, ra, rb, rc;

	a = connect_pair(srv, &ra);
	assert_int_equal(ra, 0);
	b = connect_pair(srv, &rb);
	assert_int_equal(rb, -EBUSY);
	assert_true(tc_peer_closed(b)); /* not even a greeting */
	close(b);
	/* a in transmission (a reply proves it): the slot is free again */
	go_default(a);
	read_check(a, 0);
	c = connect_pair(srv, &rc);
	assert_int_equal(rc, 0);
	go_default(c);
	read_check(c, 512);
	close(a);
	close(c);
	nbdd_server_free(srv);
}

static void test_client_cap(void **state)
{
	struct nbdd_server *srv = new_server(1, 0);
	int a, b, ra, rb;

	a = connect_pair(srv, &ra);
	assert_int_equal(ra, 0);
	go_default(a);
	/* in transmission, a still counts */
	b = connect_pair(srv, &rb);
	assert_int_equal(rb, -EBUSY);
	assert_true(tc_peer_closed(b));
	close(b);
	send_disc(a);
	assert_true(tc_peer_closed(a));
	close(a);
	nbdd_server_free(srv);
}

/* free() wakes clients wherever they are and waits for them. */
static void test_free_wakes_clients(void **state)
{
	struct nbdd_server *srv = new_server(0, 0);
	int idle, greeted, running, r;
	uint16_t hflags;
	uint64_t t0;

	idle = connect_pair(srv, &r); /* greeting unread */
	assert_int_equal(r, 0);
	greeted = connect_pair(srv, &r);
	assert_int_equal(r, 0);
	assert_int_equal(tc_greeting(greeted, &hflags), 0);
	running = connect_pair(srv, &r);
	assert_int_equal(r, 0);
	go_default(running);
	read_check(running, 0);
	t0 = now_ms();
	nbdd_server_free(srv); /* handshake_timeout is 30 s */
	assert_true(now_ms() - t0 < 5000);
	assert_true(tc_peer_closed(idle));
	assert_true(tc_peer_closed(greeted));
	assert_true(tc_peer_closed(running));
	close(idle);
	close(greeted);
	close(running);
}

/* A client that stops reading its replies cannot hold free() forever. */
static void test_free_stuck_client(void **state)
{
	struct nbdd_server *srv = new_server(0, 0);
	struct nbd_request req = { .type = NBD_CMD_READ, .length = DISK_SIZE };
	uint8_t hdr[NBD_SIMPLE_REQUEST_SIZE];
	uint64_t t0;
	int fd, r, i;

	fd = connect_pair(srv, &r);
	assert_int_equal(r, 0);
	go_default(fd);
	/* 16 MiB of replies asked for, none read: the server's send blocks */
	for (i = 0; i < 16; i++) {
		req.cookie = (uint64_t)i;
		nbd_encode_request(hdr, false, &req);
		assert_int_equal(tc_write(fd, hdr, sizeof(hdr)), 0);
	}
	usleep(200 * 1000);
	t0 = now_ms();
	nbdd_server_free(srv);
	assert_true(now_ms() - t0 < 5000 + 3000);
	assert_true(tc_peer_closed(fd));
	close(fd);
}

/* serve_fd blocks until the client leaves, and closes the fd. */
static void test_serve_fd(void **state)
{
	struct nbdd_server *srv = new_server(0, 0);
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				    sv), 0);
	/* the whole client conversation fits in the socket buffer */
	assert_int_equal(tc_send_client_flags(sv[0], NBD_FLAG_C_FIXED_NEWSTYLE),
			 0);
	assert_int_equal(tc_send_option(sv[0], NBD_OPT_ABORT, NULL, 0), 0);
	assert_true(nbdd_server_serve_fd(srv, sv[1]) < 0);
	assert_int_equal(fcntl(sv[1], F_GETFD), -1); /* closed */
	close(sv[0]);
	assert_int_equal(nbdd_server_serve_fd(srv, -1), -EINVAL);
	nbdd_server_free(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exports),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_listen_unix),
		cmocka_unit_test(test_listen_tcp),
		cmocka_unit_test(test_end_to_end),
		cmocka_unit_test(test_negotiating_cap),
		cmocka_unit_test(test_client_cap),
		cmocka_unit_test(test_free_wakes_clients),
		cmocka_unit_test(test_free_stuck_client),
		cmocka_unit_test(test_serve_fd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
