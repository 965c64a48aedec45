/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The server's TLS credentials, loaded once and checked before the first
 * client: X.509 in the layout qemu-nbd and nbdkit use (a directory with
 * ca-cert.pem, server-cert.pem, server-key.pem and optionally
 * ca-crl.pem), and pre-shared keys in psktool's "username:hexkey" file.
 *
 * Every mistake a user can make here names the file and the fix: a
 * missing or unreadable file, a private key others may read, a PSK line
 * that is not USERNAME:HEXKEY, a certificate that does not match its key.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "internal.h"
#include "proto/tls-internal.h"

/* PSK ciphersuites are not in NORMAL; they are added when a file is given. */
#define PRIORITY_X509 "NORMAL"
#define PRIORITY_PSK "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"

static const char *path_in(char *buf, size_t size, const char *dir,
			   const char *file)
{
	snprintf(buf, size, "%s/%s", dir, file);
	return buf;
}

/*
 * A secret (private key, PSK file) must be readable by us and by nobody
 * but its owner and group: gnutls would read it either way, so say it.
 */
static int check_secret(const char *what, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return set_error(-errno, "%s %s: %s", what, path,
				 strerror(errno));
	if (!S_ISREG(st.st_mode))
		return set_error(-EINVAL, "%s %s: not a regular file", what,
				 path);
	if (access(path, R_OK) < 0)
		return set_error(-errno, "%s %s: cannot read it: %s", what,
				 path, strerror(errno));
	if (st.st_mode & (S_IRWXO | S_IWGRP))
		return set_error(-EPERM, "%s %s: others may read or change "
				 "it (mode %04o); chmod 0600 (or 0640 for a "
				 "service group) and try again", what, path,
				 (unsigned)(st.st_mode & 07777));
	return 0;
}

static int check_readable(const char *what, const char *path)
{
	if (access(path, R_OK) < 0)
		return set_error(-errno, "%s %s: %s", what, path,
				 errno == ENOENT ? "no such file (see nbdd(8), "
						   "TLS SETUP)"
						 : strerror(errno));
	return 0;
}

static int load_x509(struct tls_creds *c, const char *dir)
{
	char ca[4096], crl[4096], cert[4096], key[4096];
	struct stat st;
	int r;

	if (stat(dir, &st) < 0)
		return set_error(-errno, "TLS certificates directory %s: %s",
				 dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return set_error(-ENOTDIR, "TLS certificates directory %s: "
				 "not a directory", dir);

	path_in(ca, sizeof(ca), dir, "ca-cert.pem");
	path_in(crl, sizeof(crl), dir, "ca-crl.pem");
	path_in(cert, sizeof(cert), dir, "server-cert.pem");
	path_in(key, sizeof(key), dir, "server-key.pem");
	r = check_readable("TLS certificate", cert);
	if (r == 0)
		r = check_secret("TLS private key", key);
	if (r == 0 && (c->verify_peer || access(ca, F_OK) == 0))
		r = check_readable("TLS CA certificate", ca);
	if (r < 0)
		return r;
	r = gnutls_certificate_allocate_credentials(&c->x509);
	if (r < 0)
		return set_error(-ENOMEM, "TLS: %s", gnutls_strerror(r));
	if (access(ca, F_OK) == 0) {
		r = gnutls_certificate_set_x509_trust_file(c->x509, ca,
							   GNUTLS_X509_FMT_PEM);
		if (r <= 0)
			return set_error(-EINVAL, "TLS CA certificate %s: %s",
					 ca, r < 0 ? gnutls_strerror(r)
						   : "no certificate in it");
	}
	if (access(crl, F_OK) == 0) {
		r = check_readable("TLS revocation list", crl);
		if (r < 0)
			return r;
		r = gnutls_certificate_set_x509_crl_file(c->x509, crl,
							 GNUTLS_X509_FMT_PEM);
		if (r < 0)
			return set_error(-EINVAL, "TLS revocation list %s: %s",
					 crl, gnutls_strerror(r));
	}
	r = gnutls_certificate_set_x509_key_file(c->x509, cert, key,
						 GNUTLS_X509_FMT_PEM);
	if (r < 0)
		return set_error(-EINVAL, "TLS certificate %s with key %s: %s",
				 cert, key, gnutls_strerror(r));
	gnutls_certificate_set_known_dh_params(c->x509,
					       GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

static bool all_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/*
 * gnutls reads the file only when a client names a user, and then says
 * nothing useful about a broken line: check every line now.
 */
static int check_psk_file(const char *path)
{
	char *line = NULL, *colon;
	size_t cap = 0, klen, n = 0, users = 0;
	ssize_t len;
	FILE *f;
	int r = 0;

	f = fopen(path, "re");
	if (!f)
		return set_error(-errno, "TLS PSK file %s: %s", path,
				 strerror(errno));
	while (r == 0 && (len = getline(&line, &cap, f)) >= 0) {
		n++;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		colon = strchr(line, ':');
		klen = colon ? strlen(colon + 1) : 0;
		if (!colon || colon == line || !klen || klen % 2 ||
		    !all_hex(colon + 1, klen))
			r = set_error(-EINVAL, "TLS PSK file %s, line %zu: "
				      "expected USERNAME:HEXKEY (make one "
				      "with psktool -u NAME -p %s)", path, n,
				      path);
		users++;
	}
	free(line);
	fclose(f);
	if (r == 0 && users == 0)
		r = set_error(-EINVAL, "TLS PSK file %s has no keys (make one "
			      "with psktool -u NAME -p %s)", path, path);
	return r;
}

static int load_psk(struct tls_creds *c, const char *path)
{
	int r = check_secret("TLS PSK file", path);

	if (r == 0)
		r = check_psk_file(path);
	if (r < 0)
		return r;
	r = gnutls_psk_allocate_server_credentials(&c->psk);
	if (r < 0)
		return set_error(-ENOMEM, "TLS: %s", gnutls_strerror(r));
	r = gnutls_psk_set_server_credentials_file(c->psk, path);
	if (r < 0)
		return set_error(-EINVAL, "TLS PSK file %s: %s", path,
				 gnutls_strerror(r));
	gnutls_psk_set_server_known_dh_params(c->psk, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

int tls_creds_load(const struct nbdd_tls_options *o, struct tls_creds **out)
{
	struct tls_creds *c;
	const char *where;
	int r;

	if (!o->certificates_dir && !o->psk_file)
		return set_error(-EINVAL, "TLS needs certificates "
				 "(--tls-certificates DIR) or pre-shared keys "
				 "(--tls-psk FILE)");
	if (o->verify_peer && !o->certificates_dir)
		return set_error(-EINVAL, "verifying TLS clients "
				 "(--tls-verify-peer) needs --tls-certificates "
				 "DIR with ca-cert.pem");
	c = calloc(1, sizeof(*c));
	if (!c)
		return set_error(-ENOMEM, "out of memory for TLS credentials");
	c->verify_peer = o->verify_peer;
	r = o->certificates_dir ? load_x509(c, o->certificates_dir) : 0;
	if (r == 0 && o->psk_file)
		r = load_psk(c, o->psk_file);
	if (r == 0) {
		r = gnutls_priority_init(&c->prio, c->psk ? PRIORITY_PSK
							  : PRIORITY_X509,
					 &where);
		if (r < 0)
			r = set_error(-EINVAL, "TLS priority string at '%s': %s",
				      where, gnutls_strerror(r));
	}
	if (r < 0) {
		tls_creds_free(c);
		return r;
	}
	*out = c;
	return 0;
}

void tls_creds_free(struct tls_creds *c)
{
	if (!c)
		return;
	if (c->prio)
		gnutls_priority_deinit(c->prio);
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->psk)
		gnutls_psk_free_server_credentials(c->psk);
	free(c);
}
