/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Full reads and writes with deadlines, clocks, size parsing. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Wait until @fd is ready for @events or the deadline passes. */
int wait_fd(int fd, short events, uint64_t deadline_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	uint64_t now;
	int r;

	if (!deadline_ms)
		return 0;
	for (;;) {
		now = now_ms();
		if (now >= deadline_ms)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)MIN(deadline_ms - now, (uint64_t)INT_MAX));
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int read_full(int fd, void *buf, size_t len, uint64_t deadline_ms)
{
	char *p = buf;
	ssize_t n;
	int r;

	while (len) {
		r = wait_fd(fd, POLLIN, deadline_ms);
		if (r < 0)
			return r;
		n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int write_full(int fd, const void *buf, size_t len, uint64_t deadline_ms)
{
	const char *p = buf;
	ssize_t n;
	int r;

	while (len) {
		r = wait_fd(fd, POLLOUT, deadline_ms);
		if (r < 0)
			return r;
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int writev_full(int fd, struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { 0 };
	ssize_t n;

	while (iovcnt > 0) {
		msg.msg_iov = iov;
		msg.msg_iovlen = (size_t)MIN(iovcnt, IOV_MAX);
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = writev(fd, iov, (int)msg.msg_iovlen);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		/* Skip what was written; a partial iovec is advanced in place. */
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

NBDD_EXPORT int nbdd_parse_size(const char *text, uint64_t *out)
{
	static const char units[] = "KMGTPE";
	const char *u;
	char *end;
	double frac = 0;
	unsigned long long whole;
	uint64_t fpart;
	unsigned shift = 0;

	if (!text || !*text || *text == '-' || *text == '+')
		return -EINVAL;
	errno = 0;
	whole = strtoull(text, &end, 10);
	if (errno || end == text)
		return errno == ERANGE ? -ERANGE : -EINVAL;
	if (*end == '.') {
		/* digits only: strtod would also take "e300", "inf", hex */
		size_t digits = strspn(end + 1, "0123456789");
		char *fend;

		frac = strtod(end, &fend);
		if (!digits || fend != end + 1 + digits)
			return -EINVAL;
		end = fend;
	}
	if (*end) {
		u = strchr(units, *end >= 'a' ? *end - 32 : *end);
		if (!u || !*u)
			return -EINVAL;
		shift = 10 * (unsigned)(u - units + 1);
		end++;
		/* accept "K", "KB", "KiB" alike: all binary */
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return -EINVAL;
	} else if (frac) {
		return -EINVAL; /* "1.5" bytes means nothing */
	}
	if (shift && whole > (UINT64_MAX >> shift))
		return -ERANGE;
	/* frac is in [0, 1]: ".99999999999999999" rounds up to 1 */
	fpart = (uint64_t)(frac * (double)((uint64_t)1 << shift));
	if (fpart > UINT64_MAX - ((uint64_t)whole << shift))
		return -ERANGE;
	*out = ((uint64_t)whole << shift) + fpart;
	return 0;
}
