/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What tls-creds.c hands to tls.c: loaded once, read-only after. */
#ifndef NBDD_PROTO_TLS_INTERNAL_H
#define NBDD_PROTO_TLS_INTERNAL_H

#include <stdbool.h>

#include <gnutls/gnutls.h>

#include "proto/tls.h"

struct tls_creds {
	gnutls_certificate_credentials_t x509; /* NULL: no certificates */
	gnutls_psk_server_credentials_t psk;   /* NULL: no PSK file */
	gnutls_priority_t prio;
	bool verify_peer;
};

#endif /* NBDD_PROTO_TLS_INTERNAL_H */
