/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/proto/wire.c: request codec, reply headers, errno mapping, names,
 * and every rule of nbd_check_request(), including the 64-bit edges.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* ---- codec ---- */

static void test_decode_simple(void **state)
{
	static const uint8_t wire[NBD_SIMPLE_REQUEST_SIZE] = {
		0x25, 0x60, 0x95, 0x13,  /* magic */
		0x00, 0x01,              /* flags: FUA */
		0x00, 0x01,              /* WRITE */
		1, 2, 3, 4, 5, 6, 7, 8,  /* cookie */
		0, 0, 0, 1, 0, 0, 0, 0,  /* offset 4 GiB */
		0xff, 0xff, 0xff, 0xff,  /* length */
	};
	struct nbd_request r;
	uint8_t enc[NBD_EXTENDED_REQUEST_SIZE];

	assert_int_equal(nbd_decode_request(wire, sizeof(wire), false, &r),
			 NBD_SIMPLE_REQUEST_SIZE);
	assert_int_equal(r.flags, NBD_CMD_FLAG_FUA);
	assert_int_equal(r.type, NBD_CMD_WRITE);
	assert_true(r.cookie == 0x0102030405060708ull);
	assert_true(r.offset == 4 * GiB);
	assert_true(r.length == UINT32_MAX);
	assert_int_equal(nbd_encode_request(enc, false, &r),
			 NBD_SIMPLE_REQUEST_SIZE);
	assert_memory_equal(enc, wire, sizeof(wire));
	/* one byte short: not yet a request */
	assert_int_equal(nbd_decode_request(wire, sizeof(wire) - 1, false, &r),
			 0);
	/* an extended connection does not accept the compact magic */
	memcpy(enc, wire, sizeof(wire));
	memset(enc + sizeof(wire), 0, 4);
	assert_int_equal(nbd_decode_request(enc, NBD_EXTENDED_REQUEST_SIZE,
					    true, &r), -EPROTO);
}

static void test_decode_extended(void **state)
{
	struct nbd_request in = { .flags = NBD_CMD_FLAG_PAYLOAD_LEN,
				  .type = NBD_CMD_WRITE,
				  .cookie = UINT64_MAX,
				  .offset = UINT64_MAX - 1,
				  .length = 5 * GiB };
	struct nbd_request out;
	uint8_t b[NBD_EXTENDED_REQUEST_SIZE];

	assert_int_equal(nbd_encode_request(b, true, &in),
			 NBD_EXTENDED_REQUEST_SIZE);
	assert_int_equal(nbd_get32(b), NBD_EXTENDED_REQUEST_MAGIC);
	assert_true(nbd_get64(b + 24) == 5 * GiB);
	assert_int_equal(nbd_decode_request(b, sizeof(b), true, &out),
			 NBD_EXTENDED_REQUEST_SIZE);
	assert_int_equal(out.flags, in.flags);
	assert_int_equal(out.type, in.type);
	assert_true(out.cookie == in.cookie && out.offset == in.offset);
	assert_true(out.length == 5 * GiB); /* all 64 bits survive */
	assert_int_equal(nbd_decode_request(b, sizeof(b) - 1, true, &out), 0);
	/* the compact decoder refuses the extended magic */
	assert_int_equal(nbd_decode_request(b, sizeof(b), false, &out),
			 -EPROTO);
	b[0] ^= 1;
	assert_int_equal(nbd_decode_request(b, sizeof(b), true, &out),
			 -EPROTO);
}

/* The compact form keeps only 32 bits of length. */
static void test_encode_simple_truncates(void **state)
{
	struct nbd_request in = { .type = NBD_CMD_READ, .length = 4 * GiB + 7 };
	struct nbd_request out;
	uint8_t b[NBD_SIMPLE_REQUEST_SIZE];

	nbd_encode_request(b, false, &in);
	assert_int_equal(nbd_decode_request(b, sizeof(b), false, &out),
			 NBD_SIMPLE_REQUEST_SIZE);
	assert_true(out.length == 7);
}

static void test_payload_len(void **state)
{
	struct nbd_request r = { .type = NBD_CMD_WRITE, .length = 4096 };

	assert_true(nbd_request_payload_len(&r, false) == 4096);
	/* extended WRITE without PAYLOAD_LEN: no payload follows */
	assert_true(nbd_request_payload_len(&r, true) == 0);
	r.flags = NBD_CMD_FLAG_PAYLOAD_LEN;
	assert_true(nbd_request_payload_len(&r, true) == 4096);
	/* compact: WRITE carries its length whatever the flags */
	assert_true(nbd_request_payload_len(&r, false) == 4096);
	r.type = NBD_CMD_READ;
	r.flags = 0;
	assert_true(nbd_request_payload_len(&r, false) == 0);
	assert_true(nbd_request_payload_len(&r, true) == 0);
	/* compact: a stray PAYLOAD_LEN flag carries nothing */
	r.flags = NBD_CMD_FLAG_PAYLOAD_LEN;
	assert_true(nbd_request_payload_len(&r, false) == 0);
	/* BLOCK_STATUS payload form: refused, but its bytes follow */
	r.type = NBD_CMD_BLOCK_STATUS;
	r.length = 12;
	assert_true(nbd_request_payload_len(&r, true) == 12);
	r.flags = 0;
	r.length = 8 * GiB;
	assert_true(nbd_request_payload_len(&r, true) == 0);
}

static void test_reply_headers(void **state)
{
	uint8_t b[NBD_EXTENDED_REPLY_SIZE];

	assert_int_equal(nbd_encode_simple_reply(b, 0xabcdefull, NBD_EIO),
			 NBD_SIMPLE_REPLY_SIZE);
	assert_int_equal(nbd_get32(b), NBD_SIMPLE_REPLY_MAGIC);
	assert_int_equal(nbd_get32(b + 4), NBD_EIO);
	assert_true(nbd_get64(b + 8) == 0xabcdefull);

	assert_int_equal(nbd_encode_chunk_header(b, false, NBD_REPLY_FLAG_DONE,
						 NBD_REPLY_TYPE_OFFSET_DATA, 9,
						 12345, 4104),
			 NBD_STRUCTURED_REPLY_SIZE);
	assert_int_equal(nbd_get32(b), NBD_STRUCTURED_REPLY_MAGIC);
	assert_int_equal(nbd_get16(b + 4), NBD_REPLY_FLAG_DONE);
	assert_int_equal(nbd_get16(b + 6), NBD_REPLY_TYPE_OFFSET_DATA);
	assert_true(nbd_get64(b + 8) == 9);
	assert_int_equal(nbd_get32(b + 16), 4104);

	memset(b, 0xee, sizeof(b));
	assert_int_equal(nbd_encode_chunk_header(b, true, 0,
						 NBD_REPLY_TYPE_ERROR, 10,
						 UINT64_MAX, 6 * GiB),
			 NBD_EXTENDED_REPLY_SIZE);
	assert_int_equal(nbd_get32(b), NBD_EXTENDED_REPLY_MAGIC);
	assert_int_equal(nbd_get16(b + 4), 0);
	assert_int_equal(nbd_get16(b + 6), NBD_REPLY_TYPE_ERROR);
	assert_true(nbd_get64(b + 8) == 10);
	assert_true(nbd_get64(b + 16) == UINT64_MAX);
	assert_true(nbd_get64(b + 24) == 6 * GiB);
}

static void test_errno_mapping(void **state)
{
	static const struct {
		int err;
		uint32_t wire;
	} cases[] = {
		{ 0, 0 },
		{ EPERM, NBD_EPERM },   { EROFS, NBD_EPERM },
		{ ENOMEM, NBD_ENOMEM }, { EINVAL, NBD_EINVAL },
		{ ENOSPC, NBD_ENOSPC }, { EDQUOT, NBD_ENOSPC },
		{ EFBIG, NBD_ENOSPC },  { EOVERFLOW, NBD_EOVERFLOW },
		{ ENOTSUP, NBD_ENOTSUP }, { EOPNOTSUPP, NBD_ENOTSUP },
		{ ESHUTDOWN, NBD_ESHUTDOWN },
		{ EIO, NBD_EIO },       { EBADF, NBD_EIO },
		{ ENOENT, NBD_EIO },    { EAGAIN, NBD_EIO },
		{ 4095, NBD_EIO },      { 1 << 30, NBD_EIO },
		/* a negative errno by mistake still maps sensibly */
		{ -ENOSPC, NBD_ENOSPC }, { INT32_MIN, NBD_EIO },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++)
		assert_int_equal(nbd_errno_to_wire(cases[i].err),
				 cases[i].wire);
}

static void test_names(void **state)
{
	assert_string_equal(nbd_cmd_name(NBD_CMD_READ), "NBD_CMD_READ");
	assert_string_equal(nbd_cmd_name(NBD_CMD_BLOCK_STATUS),
			    "NBD_CMD_BLOCK_STATUS");
	assert_string_equal(nbd_cmd_name(9), "NBD_CMD_unknown");
	assert_string_equal(nbd_cmd_name(UINT16_MAX), "NBD_CMD_unknown");
	assert_string_equal(nbd_opt_name(NBD_OPT_GO), "NBD_OPT_GO");
	assert_string_equal(nbd_opt_name(NBD_OPT_EXTENDED_HEADERS),
			    "NBD_OPT_EXTENDED_HEADERS");
	assert_string_equal(nbd_opt_name(0), "NBD_OPT_unknown");
	assert_string_equal(nbd_opt_name(12), "NBD_OPT_unknown");
	assert_string_equal(nbd_opt_name(UINT32_MAX), "NBD_OPT_unknown");
}

/* ---- validation ---- */

#define ALL_EFLAGS                                                       \
	(NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |  \
	 NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |               \
	 NBD_FLAG_SEND_DF | NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO)

/* A writable 1 MiB export, structured replies, base:allocation. */
static struct nbd_xmit_params base_params(void)
{
	return (struct nbd_xmit_params){
		.size = MiB,
		.eflags = ALL_EFLAGS,
		.min_block = 1,
		.max_payload = NBDD_MAX_PAYLOAD,
		.structured = true,
		.base_allocation = true,
	};
}

static uint32_t check(const struct nbd_xmit_params *p, uint16_t type,
		      uint16_t flags, uint64_t off, uint64_t len)
{
	struct nbd_request r = { .type = type, .flags = flags, .cookie = 1,
				 .offset = off, .length = len };

	return nbd_check_request(p, &r);
}

static void test_check_valid(void **state)
{
	struct nbd_xmit_params p = base_params();

	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, 4096, 4096), 0);
	assert_int_equal(check(&p, NBD_CMD_FLUSH, 0, 0, 0), 0);
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, MiB), 0);
	assert_int_equal(check(&p, NBD_CMD_CACHE, 0, 0, MiB), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 1, MiB - 1), 0);
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, 0, 0, MiB), 0);
	/* DISC is always accepted, whatever it carries */
	assert_int_equal(check(&p, NBD_CMD_DISC, 0xffff, 5, 5), 0);
	p.eflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;
	assert_int_equal(check(&p, NBD_CMD_DISC, 0, 0, 0), 0);
}

static void test_check_unknown_command(void **state)
{
	struct nbd_xmit_params p = base_params();

	assert_int_equal(check(&p, NBD_CMD_RESIZE, 0, 0, 512), NBD_EINVAL);
	assert_int_equal(check(&p, 9, 0, 0, 512), NBD_EINVAL);
	assert_int_equal(check(&p, UINT16_MAX, 0, 0, 512), NBD_EINVAL);
}

static void test_check_flags(void **state)
{
	struct nbd_xmit_params p = base_params();
	uint16_t bit;

	/* FUA: accepted on every command once SEND_FUA is out */
	assert_int_equal(check(&p, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FUA, 0,
			       512), 0);
	assert_int_equal(check(&p, NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0), 0);
	/* NO_HOLE and FAST_ZERO: WRITE_ZEROES only */
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE,
			       0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0,
			       512), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES,
			       NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE,
			       0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_TRIM, NBD_CMD_FLAG_FAST_ZERO, 0,
			       512), NBD_EINVAL);
	/* DF: READ only */
	assert_int_equal(check(&p, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 512),
			 NBD_EINVAL);
	/* REQ_ONE: BLOCK_STATUS only */
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE,
			       0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512),
			 NBD_EINVAL);
	/* no flag at all on FLUSH or CACHE besides FUA */
	assert_int_equal(check(&p, NBD_CMD_FLUSH, NBD_CMD_FLAG_NO_HOLE, 0, 0),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_CACHE, NBD_CMD_FLAG_DF, 0, 512),
			 NBD_EINVAL);
	/* every undefined bit, on every command */
	for (bit = 6; bit < 16; bit++) {
		assert_int_equal(check(&p, NBD_CMD_READ, (uint16_t)(1u << bit),
				       0, 512), NBD_EINVAL);
		assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES,
				       (uint16_t)(1u << bit), 0, 512),
				 NBD_EINVAL);
	}
}

/* A flag is valid only if what it depends on was negotiated. */
static void test_check_flags_negotiated(void **state)
{
	struct nbd_xmit_params p = base_params();

	p.eflags &= (uint16_t)~NBD_FLAG_SEND_FUA;
	assert_int_equal(check(&p, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512),
			 NBD_EINVAL);
	p = base_params();
	p.eflags &= (uint16_t)~NBD_FLAG_SEND_FAST_ZERO;
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES,
			       NBD_CMD_FLAG_FAST_ZERO, 0, 512), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 0, 512), 0);
	p = base_params();
	p.eflags &= (uint16_t)~NBD_FLAG_SEND_DF;
	assert_int_equal(check(&p, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512),
			 NBD_EINVAL);
	/* DF needs structured replies even when the export offers it */
	p = base_params();
	p.structured = false;
	assert_int_equal(check(&p, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512),
			 NBD_EINVAL);
	p.extended = true;
	p.structured = true;
	assert_int_equal(check(&p, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512), 0);
}

static void test_check_payload_len_flag(void **state)
{
	struct nbd_xmit_params p = base_params();
	uint16_t pl = NBD_CMD_FLAG_PAYLOAD_LEN;

	/* compact headers: the flag does not exist */
	assert_int_equal(check(&p, NBD_CMD_WRITE, pl, 0, 512), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_READ, pl, 0, 512), NBD_EINVAL);
	p.extended = true;
	/* extended: WRITE needs it */
	assert_int_equal(check(&p, NBD_CMD_WRITE, pl, 0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE, pl | NBD_CMD_FLAG_FUA, 0,
			       512), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, 0, 512), NBD_EINVAL);
	/* no other command takes a payload; BLOCK_STAT_PAYLOAD not offered */
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, pl, 0, 12),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_READ, pl, 0, 512), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_TRIM, pl, 0, 512), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_FLUSH, pl, 0, 0), NBD_EINVAL);
	/* even if a peer claimed the flag was advertised */
	p.eflags |= NBD_FLAG_BLOCK_STAT_PAYLOAD;
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, pl, 0, 12),
			 NBD_EINVAL);
}

static void test_check_readonly(void **state)
{
	struct nbd_xmit_params p = base_params();

	p.eflags |= NBD_FLAG_READ_ONLY;
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, 0, 512), NBD_EPERM);
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, 512), NBD_EPERM);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 0, 512),
			 NBD_EPERM);
	/* EPERM even when a read-only export does not offer the command */
	p.eflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, 512), NBD_EPERM);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 0, 512),
			 NBD_EPERM);
	/* reading is fine, and so is an out-of-range write's EPERM */
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, MiB, 512), NBD_EPERM);
}

static void test_check_not_advertised(void **state)
{
	struct nbd_xmit_params p = base_params();

	p.eflags = NBD_FLAG_HAS_FLAGS;
	assert_int_equal(check(&p, NBD_CMD_FLUSH, 0, 0, 0), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, 512), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 0, 512),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_CACHE, 0, 0, 512), NBD_EINVAL);
	/* READ and WRITE need nothing advertised */
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, 0, 512), 0);
	/* BLOCK_STATUS: base:allocation, and reply chunks to carry it */
	p = base_params();
	p.base_allocation = false;
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, 0, 0, 512),
			 NBD_EINVAL);
	p = base_params();
	p.structured = false;
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, 0, 0, 512),
			 NBD_EINVAL);
	p.extended = true;
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, 0, 0, 512), 0);
}

static void test_check_flush_fields(void **state)
{
	struct nbd_xmit_params p = base_params();

	assert_int_equal(check(&p, NBD_CMD_FLUSH, 0, 512, 0), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_FLUSH, 0, 0, 512), NBD_EINVAL);
}

/* off > size || len > size - off, never off + len: wrap-around edges. */
static void test_check_range(void **state)
{
	struct nbd_xmit_params p = base_params();

	/* the last byte, and the whole export */
	assert_int_equal(check(&p, NBD_CMD_READ, 0, MiB - 1, 1), 0);
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, MiB), 0);
	/* one byte past the end: EINVAL for reads, ENOSPC for writes */
	assert_int_equal(check(&p, NBD_CMD_READ, 0, MiB - 511, 512),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, MiB - 511, 512),
			 NBD_ENOSPC);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, MiB, 1),
			 NBD_ENOSPC);
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, MiB, 1), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_CACHE, 0, MiB, 1), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, 0, 0, MiB + 1),
			 NBD_EINVAL);
	/* offsets that would wrap a naive off + len */
	assert_int_equal(check(&p, NBD_CMD_READ, 0, UINT64_MAX, 1),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, UINT64_MAX, 2),
			 NBD_ENOSPC);
	assert_int_equal(check(&p, NBD_CMD_READ, 0, UINT64_MAX - 511, 512),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, 512,
			       (uint64_t)UINT32_MAX), NBD_ENOSPC);
	p.extended = true;
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 512, UINT64_MAX - 511),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 1, UINT64_MAX),
			 NBD_ENOSPC);
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, 0, UINT64_MAX,
			       UINT64_MAX), NBD_EINVAL);
}

/* Around 4 GiB, and an export near 2^64. */
static void test_check_range_large(void **state)
{
	struct nbd_xmit_params p = base_params();

	p.size = 8 * GiB;
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, (uint64_t)UINT32_MAX),
			 0);
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 8 * GiB - UINT32_MAX,
			       (uint64_t)UINT32_MAX), 0);
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 8 * GiB - UINT32_MAX + 1,
			       (uint64_t)UINT32_MAX), NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, 0, 4 * GiB - 512,
			       1024), 0);
	/* compact headers: a length past 32 bits cannot be genuine */
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, 4 * GiB), NBD_EINVAL);
	p.extended = true;
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, 4 * GiB), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 0, 8 * GiB), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 0, 8 * GiB + 1),
			 NBD_ENOSPC);
	p.size = UINT64_MAX;
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, UINT64_MAX), 0);
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 1, UINT64_MAX),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_READ, 0, UINT64_MAX - 512, 512), 0);
	assert_int_equal(check(&p, NBD_CMD_READ, 0, UINT64_MAX - 511, 512),
			 NBD_EINVAL);
}

static void test_check_zero_length(void **state)
{
	struct nbd_xmit_params p = base_params();
	static const uint16_t types[] = {
		NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_CACHE,
		NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS,
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(types); i++) {
		assert_int_equal(check(&p, types[i], 0, 0, 0), NBD_EINVAL);
		/* at the very end too, where the range itself is fine */
		assert_int_equal(check(&p, types[i], 0, MiB, 0), NBD_EINVAL);
	}
}

static void test_check_max_payload(void **state)
{
	struct nbd_xmit_params p = base_params();

	p.size = 1ull << 40;
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, NBDD_MAX_PAYLOAD), 0);
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, NBDD_MAX_PAYLOAD + 1),
			 NBD_EOVERFLOW);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, 0, NBDD_MAX_PAYLOAD), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, 0, NBDD_MAX_PAYLOAD + 1),
			 NBD_EINVAL);
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, UINT32_MAX),
			 NBD_EOVERFLOW);
	/* a backend's smaller maximum */
	p.max_payload = 65536;
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, 65536), 0);
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, 65537), NBD_EOVERFLOW);
	assert_int_equal(check(&p, NBD_CMD_WRITE, 0, 0, 65537), NBD_EINVAL);
	/* commands without payload are not bound by it */
	assert_int_equal(check(&p, NBD_CMD_TRIM, 0, 0, GiB), 0);
	assert_int_equal(check(&p, NBD_CMD_WRITE_ZEROES, 0, 0, GiB), 0);
	assert_int_equal(check(&p, NBD_CMD_CACHE, 0, 0, GiB), 0);
	assert_int_equal(check(&p, NBD_CMD_BLOCK_STATUS, 0, 0, GiB), 0);
	/* extended: a 64-bit read is still bounded */
	p.extended = true;
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 0, 8 * GiB),
			 NBD_EOVERFLOW);
	assert_int_equal(check(&p, NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 0,
			       8 * GiB), NBD_EINVAL);
}

static void test_check_alignment(void **state)
{
	struct nbd_xmit_params p = base_params();
	static const uint16_t types[] = {
		NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_CACHE,
		NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS,
	};
	size_t i;

	p.min_block = 4096;
	for (i = 0; i < ARRAY_SIZE(types); i++) {
		assert_int_equal(check(&p, types[i], 0, 4096, 8192), 0);
		assert_int_equal(check(&p, types[i], 0, 512, 4096),
				 NBD_EINVAL);
		assert_int_equal(check(&p, types[i], 0, 4096, 4095),
				 NBD_EINVAL);
		assert_int_equal(check(&p, types[i], 0, 4095, 1), NBD_EINVAL);
	}
	/* min_block 0 from a careless caller means 1 */
	p.min_block = 0;
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 3, 5), 0);
	p.min_block = 65536;
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 65536, 65536), 0);
	assert_int_equal(check(&p, NBD_CMD_READ, 0, 65536, 32768), NBD_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_simple),
		cmocka_unit_test(test_decode_extended),
		cmocka_unit_test(test_encode_simple_truncates),
		cmocka_unit_test(test_payload_len),
		cmocka_unit_test(test_reply_headers),
		cmocka_unit_test(test_errno_mapping),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_check_valid),
		cmocka_unit_test(test_check_unknown_command),
		cmocka_unit_test(test_check_flags),
		cmocka_unit_test(test_check_flags_negotiated),
		cmocka_unit_test(test_check_payload_len_flag),
		cmocka_unit_test(test_check_readonly),
		cmocka_unit_test(test_check_not_advertised),
		cmocka_unit_test(test_check_flush_fields),
		cmocka_unit_test(test_check_range),
		cmocka_unit_test(test_check_range_large),
		cmocka_unit_test(test_check_zero_length),
		cmocka_unit_test(test_check_max_payload),
		cmocka_unit_test(test_check_alignment),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
