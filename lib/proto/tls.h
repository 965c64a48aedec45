/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TLS for network clients (NBD_OPT_STARTTLS), on gnutls.
 *
 *   struct tls_creds    the server's credentials and priorities, loaded
 *                       once by nbdd_server_set_tls(), read-only after
 *   struct tls_session  one client's session over its socket
 *
 * A session may have one thread receiving while another sends (gnutls
 * allows that much and no more): conn.c's reader receives, and every
 * send happens under its write lock. Functions return 0 or -errno.
 */
#ifndef NBDD_PROTO_TLS_H
#define NBDD_PROTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nbdd/nbdd.h>

struct tls_creds;
struct tls_session;

/* Load and check everything @o names; errors say which file and why. */
int tls_creds_load(const struct nbdd_tls_options *o, struct tls_creds **out);
void tls_creds_free(struct tls_creds *c);

/*
 * Run the server side of the TLS handshake on @fd, bounded by
 * @deadline_ms (absolute, as read_full()). A failure is logged with the
 * peer and the reason; the connection is then to be closed.
 */
int tls_session_start(const struct tls_creds *c, int fd, uint64_t deadline_ms,
		      struct tls_session **out);

/* Exactly @len bytes, as read_full()/write_full() on a plain socket. */
int tls_read_full(struct tls_session *t, void *buf, size_t len,
		  uint64_t deadline_ms);
int tls_write_full(struct tls_session *t, const void *buf, size_t len,
		   uint64_t deadline_ms);

/*
 * Up to @len decrypted bytes, as recv(2): > 0, or -EAGAIN when @nonblock
 * and nothing whole is waiting, -ECONNRESET at the end, another -errno.
 */
ssize_t tls_recv(struct tls_session *t, void *buf, size_t len, bool nonblock);

/* The deadline of both sides from now on (0: none, for transmission). */
void tls_session_set_deadline(struct tls_session *t, uint64_t deadline_ms);

/* Say goodbye (close_notify) without waiting for the peer's. */
void tls_session_bye(struct tls_session *t);
void tls_session_free(struct tls_session *t);

#endif /* NBDD_PROTO_TLS_H */
