/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A scripted NBD client for unit tests: the option-haggling side of the
 * protocol, built by hand so a test can also send what a real client
 * never would. Plain libc only (linked into every unit test); every read
 * gives up after TC_TIMEOUT_MS so a silent server fails a test instead
 * of hanging it.
 */
#ifndef NBDD_TESTS_NBD_TEST_CLIENT_H
#define NBDD_TESTS_NBD_TEST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TC_TIMEOUT_MS 10000

/* Exactly @len bytes, or -ETIMEDOUT / -ECONNRESET (EOF) / -errno. */
int tc_read(int fd, void *buf, size_t len);
int tc_write(int fd, const void *buf, size_t len);

/* Read the 18-byte greeting; 0 if both magics are right. */
int tc_greeting(int fd, uint16_t *handshake_flags);
int tc_send_client_flags(int fd, uint32_t flags);
/* Greeting, then FIXED_NEWSTYLE | NO_ZEROES. */
int tc_start(int fd);

/* An option header announcing @len bytes, then @data (may be shorter). */
int tc_send_option_raw(int fd, uint32_t opt, uint32_t len, const void *data,
		       size_t data_len);
int tc_send_option(int fd, uint32_t opt, const void *data, uint32_t len);

struct tc_reply {
	uint32_t opt;
	uint32_t type;
	uint32_t len;
	uint8_t *data; /* len bytes plus a NUL, or NULL */
};

/* One option reply (magic checked); replies over 1 MiB fail -E2BIG. */
int tc_read_reply(int fd, struct tc_reply *r);
void tc_reply_free(struct tc_reply *r);

/* Payloads of INFO/GO and LIST/SET_META_CONTEXT; return their size. */
size_t tc_build_info(uint8_t *buf, const char *name, const uint16_t *reqs,
		     uint16_t nreqs);
size_t tc_build_meta(uint8_t *buf, const char *name,
		     const char *const *queries, uint32_t nqueries);

/* True once the peer has closed: EOF or reset within the timeout. */
bool tc_peer_closed(int fd);

#endif /* NBDD_TESTS_NBD_TEST_CLIENT_H */
