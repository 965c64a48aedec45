/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One client's TLS session over its socket.
 *
 * gnutls reads and writes through our own transport functions, so that
 *  - the handshake's deadline bounds the TLS handshake too (a client that
 *    goes silent halfway through it costs no more than a plain one);
 *  - conn.c can ask for "what is there, without blocking" the way it
 *    does with recv(MSG_DONTWAIT): a partial record stays in gnutls's
 *    buffer and the caller flushes its replies before it blocks.
 * The receiving side and the sending side keep separate settings, so a
 * reader and one writer may use the session at the same time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "proto/tls-internal.h"

#define PEER_MAX 64
/* gnutls_bye() may not hold a closing connection longer than this. */
#define BYE_MS 1000

struct tls_session {
	gnutls_session_t s;
	int fd;
	/* receiving side: the reader's thread only */
	uint64_t rdeadline;
	bool nonblock;
	int rerr; /* the errno behind GNUTLS_E_PULL_ERROR */
	/* sending side: whoever holds the connection's write lock */
	uint64_t wdeadline;
	int werr;
	char peer[PEER_MAX];
};

static void describe_peer(int fd, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	const struct sockaddr_in *in4 = (const void *)&ss;
	const struct sockaddr_in6 *in6 = (const void *)&ss;

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(buf, size, "an unknown peer");
	} else if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(in4->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, size, "a Unix socket client");
	}
}

/* ---- the transport gnutls reads and writes through ---- */

static ssize_t pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct tls_session *t = p;
	ssize_t n;
	int r;

	if (!t->nonblock) {
		r = wait_fd(t->fd, POLLIN, t->rdeadline);
		if (r < 0) {
			t->rerr = -r;
			gnutls_transport_set_errno(t->s, -r);
			return -1;
		}
	}
	n = recv(t->fd, buf, len, t->nonblock ? MSG_DONTWAIT : 0);
	if (n < 0) {
		t->rerr = errno;
		gnutls_transport_set_errno(t->s, errno);
	}
	return n;
}

/* gnutls asks this before some reads; it must not see our struct as an fd. */
static int pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
	struct tls_session *t = p;
	struct pollfd pfd = { .fd = t->fd, .events = POLLIN };
	int r;

	do
		r = poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		gnutls_transport_set_errno(t->s, errno);
	return r;
}

static ssize_t push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
	struct tls_session *t = p;
	ssize_t n;
	int r;

	for (;;) {
		r = wait_fd(t->fd, POLLOUT, t->wdeadline);
		if (r < 0) {
			t->werr = -r;
			gnutls_transport_set_errno(t->s, -r);
			return -1;
		}
		/* Under a deadline a send must not block past it. */
		n = send(t->fd, buf, len,
			 MSG_NOSIGNAL | (t->wdeadline ? MSG_DONTWAIT : 0));
		if (n >= 0)
			return n;
		if (errno == EINTR || (t->wdeadline && errno == EAGAIN))
			continue;
		t->werr = errno;
		gnutls_transport_set_errno(t->s, errno);
		return -1;
	}
}

/* ---- errors ---- */

/* A gnutls error as an errno; @err is what our transport saw, if any. */
static int to_errno(ssize_t r, int err)
{
	switch (r) {
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		return err ? -err : -EIO;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case 0: /* close_notify */
		return -ECONNRESET;
	case GNUTLS_E_MEMORY_ERROR:
		return -ENOMEM;
	default:
		return -EPROTO;
	}
}

static void log_handshake_failure(struct tls_session *t, int r)
{
	gnutls_datum_t why = { 0 };
	unsigned status;

	if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		status = gnutls_session_get_verify_cert_status(t->s);
		if (gnutls_certificate_verification_status_print(
			    status, GNUTLS_CRT_X509, &why, 0) == 0) {
			log_warning("TLS handshake with %s failed: client "
				    "certificate refused: %s", t->peer,
				    (const char *)why.data);
			gnutls_free(why.data);
			return;
		}
	}
	if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		log_warning("TLS handshake with %s failed: the client sent "
			    "alert '%s' (does it trust our certificate?)",
			    t->peer, gnutls_alert_get_name(gnutls_alert_get(t->s)));
		return;
	}
	if (r == GNUTLS_E_PULL_ERROR && t->rerr == ETIMEDOUT) {
		log_warning("TLS handshake with %s failed: timed out", t->peer);
		return;
	}
	if (r == GNUTLS_E_PREMATURE_TERMINATION ||
	    (r == GNUTLS_E_PULL_ERROR && t->rerr == ECONNRESET)) {
		log_warning("TLS handshake with %s failed: the client hung up "
			    "(does it trust our certificate, or have the right "
			    "key?)", t->peer);
		return;
	}
	log_warning("TLS handshake with %s failed: %s", t->peer,
		    r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR
			    ? strerror(t->rerr ? t->rerr : t->werr ? t->werr : EIO)
			    : gnutls_strerror(r));
}

/* ---- the session ---- */

static int session_setup(struct tls_session *t, const struct tls_creds *c)
{
	int r = gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL);

	if (r < 0)
		return r;
	r = gnutls_priority_set(t->s, c->prio);
	if (r == 0 && c->x509)
		r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE,
					   c->x509);
	if (r == 0 && c->psk)
		r = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, c->psk);
	if (r < 0)
		return r;
	if (c->verify_peer) {
		/* gnutls checks the chain against ca-cert.pem itself. */
		gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(t->s, NULL, 0);
	}
	gnutls_transport_set_ptr(t->s, t);
	gnutls_transport_set_pull_function(t->s, pull);
	gnutls_transport_set_pull_timeout_function(t->s, pull_timeout);
	gnutls_transport_set_push_function(t->s, push);
	return 0;
}

int tls_session_start(const struct tls_creds *c, int fd, uint64_t deadline_ms,
		      struct tls_session **out)
{
	struct tls_session *t = calloc(1, sizeof(*t));
	const char *user;
	char *desc;
	int r;

	if (!t)
		return -ENOMEM;
	t->fd = fd;
	t->rdeadline = t->wdeadline = deadline_ms;
	describe_peer(fd, t->peer, sizeof(t->peer));
	r = session_setup(t, c);
	if (r < 0) {
		log_warning("TLS with %s: cannot set up a session: %s", t->peer,
			    gnutls_strerror(r));
		tls_session_free(t);
		return -ENOMEM;
	}
	do
		r = gnutls_handshake(t->s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0) {
		log_handshake_failure(t, r);
		r = t->rerr == ETIMEDOUT ? -ETIMEDOUT : -ECONNABORTED;
		tls_session_free(t);
		return r;
	}
	desc = gnutls_session_get_desc(t->s);
	user = c->psk && gnutls_auth_get_type(t->s) == GNUTLS_CRD_PSK
		       ? gnutls_psk_server_get_username(t->s)
		       : NULL;
	log_info("TLS with %s: %s%s%s", t->peer, desc ? desc : "?",
		 user ? ", PSK user " : "", user ? user : "");
	gnutls_free(desc);
	*out = t;
	return 0;
}

ssize_t tls_recv(struct tls_session *t, void *buf, size_t len, bool nonblock)
{
	ssize_t r;

	t->nonblock = nonblock;
	t->rerr = 0;
	for (;;) {
		r = gnutls_record_recv(t->s, buf, len);
		if (r > 0)
			return r;
		if (r == GNUTLS_E_AGAIN && nonblock)
			return -EAGAIN;
		/* A warning alert or a signal: nothing lost, go on. */
		if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN ||
		    r == GNUTLS_E_WARNING_ALERT_RECEIVED)
			continue;
		if (r != 0 && r != GNUTLS_E_PREMATURE_TERMINATION &&
		    r != GNUTLS_E_PULL_ERROR)
			log_warning("TLS with %s: %s", t->peer,
				    gnutls_strerror((int)r));
		return to_errno(r, t->rerr);
	}
}

int tls_read_full(struct tls_session *t, void *buf, size_t len,
		  uint64_t deadline_ms)
{
	uint8_t *p = buf;
	ssize_t n;

	t->rdeadline = deadline_ms;
	while (len) {
		n = tls_recv(t, p, len, false);
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int tls_write_full(struct tls_session *t, const void *buf, size_t len,
		   uint64_t deadline_ms)
{
	const uint8_t *p = buf;
	ssize_t n;

	t->wdeadline = deadline_ms;
	t->werr = 0;
	while (len) {
		n = gnutls_record_send(t->s, p, len);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			return to_errno(n, t->werr);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void tls_session_set_deadline(struct tls_session *t, uint64_t deadline_ms)
{
	t->rdeadline = t->wdeadline = deadline_ms;
}

void tls_session_bye(struct tls_session *t)
{
	int r;

	t->wdeadline = now_ms() + BYE_MS;
	do
		r = gnutls_bye(t->s, GNUTLS_SHUT_WR);
	while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
}

void tls_session_free(struct tls_session *t)
{
	if (!t)
		return;
	if (t->s)
		gnutls_deinit(t->s);
	free(t);
}
