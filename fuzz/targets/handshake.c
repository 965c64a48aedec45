/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The handshake and option phase (lib/proto/handshake.c), and what follows
 * it: the fuzz input is everything a network client sends after the
 * server's greeting (client flags, options, then transmission requests).
 * A peer thread feeds it through a socketpair and reads the replies;
 * handshake_run() runs here and, when it ends in transmission, conn_run()
 * serves the rest of the input on the same socket, as server.c does.
 *
 * The server offers three exports: "disk" (the default, memory), "ro"
 * (read-only, with a description) and "blk" (a backend with block-size
 * constraints).
 */
#include "../fuzz.h"
#include "internal.h"

int fuzz_one(const uint8_t *data, size_t size);

static int hs_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	*h = NULL;
	return 0;
}

static int hs_size(void *h, uint64_t *size)
{
	*size = 1u << 20;
	return 0;
}

static int hs_block_size(void *h, struct nbdd_block_size *bs)
{
	bs->minimum = 512;
	bs->preferred = 4096;
	bs->maximum = 65536;
	return 0;
}

static int hs_pread(void *h, void *buf, size_t count, uint64_t off,
		    uint32_t f)
{
	FUZZ_CHECK(off <= (1u << 20) && count <= (1u << 20) - off);
	FUZZ_CHECK(off % 512 == 0 && count % 512 == 0 && count <= 65536);
	memset(buf, 0x5a, count);
	return 0;
}

static const struct nbdd_backend hs_backend = {
	NBDD_BACKEND_HEADER,
	.name = "fuzzblk",
	.thread_model = NBDD_THREAD_SERIALIZE,
	.flags = NBDD_BACKEND_INLINE,
	.open = hs_open,
	.get_size = hs_size,
	.block_size = hs_block_size,
	.pread = hs_pread,
};

static struct nbdd_server *hs_server(void)
{
	struct nbdd_server_options so = { .handshake_timeout = 1,
					  .max_clients = 4,
					  .max_negotiating = 4 };
	struct nbdd_export_options disk = { .name = "disk" };
	struct nbdd_export_options ro = { .name = "ro",
					  .description = "read-only disk",
					  .readonly = true };
	struct nbdd_export_options blk = { .name = "blk" };
	struct nbdd_server *srv;
	struct nbdd_export *e;

	FUZZ_CHECK(nbdd_server_new(&so, &srv) == 0);
	FUZZ_CHECK(nbdd_export_open("memory:size=1M", &disk, &e) == 0);
	FUZZ_CHECK(nbdd_server_add_export(srv, e) == 0);
	nbdd_export_unref(e);
	FUZZ_CHECK(nbdd_export_open("memory:size=64K", &ro, &e) == 0);
	FUZZ_CHECK(nbdd_server_add_export(srv, e) == 0);
	nbdd_export_unref(e);
	FUZZ_CHECK(nbdd_export_new(&hs_backend, NULL, 0, &blk, &e) == 0);
	FUZZ_CHECK(nbdd_server_add_export(srv, e) == 0);
	nbdd_export_unref(e);
	return srv;
}

int fuzz_one(const uint8_t *data, size_t size)
{
	struct nbdd_server *srv = hs_server();
	struct negotiated neg;
	struct fuzz_peer peer = { .on_reply = NULL };
	struct conn *c;
	int fd, ret;

	fd = fuzz_peer_start(&peer, data, size);
	FUZZ_CHECK(fd >= 0);
	memset(&neg, 0, sizeof(neg));
	ret = handshake_run(srv, fd, &neg);
	if (ret == 0) {
		FUZZ_CHECK(neg.export != NULL);
		FUZZ_CHECK(neg.min_block >= 1 && neg.min_block <= 65536 &&
			   (neg.min_block & (neg.min_block - 1)) == 0);
		/* extended headers imply structured replies */
		FUZZ_CHECK(!neg.extended || neg.structured);
		c = conn_new(fd, CONN_NETWORK, &neg);
		FUZZ_CHECK(c != NULL);
		FUZZ_CHECK(conn_run(c) <= 0);
		conn_free(c); /* closes fd, drops the export reference */
	} else {
		FUZZ_CHECK(ret < 0);
		FUZZ_CHECK(neg.export == NULL);
		close(fd);
	}
	fuzz_peer_join(&peer);
	nbdd_server_free(srv);
	return 0;
}
