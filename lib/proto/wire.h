/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NBD wire format: constants from doc/proto.md of the NBD project, and the
 * pure (no I/O) encoders and decoders. Everything here works on byte
 * buffers so it can be unit tested and fuzzed without sockets.
 */
#ifndef NBDD_PROTO_WIRE_H
#define NBDD_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- handshake ---- */
#define NBD_MAGIC            0x4e42444d41474943ULL /* "NBDMAGIC" */
#define NBD_IHAVEOPT         0x49484156454F5054ULL /* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC  0x3e889045565a9ULL

#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_PEEK_EXPORT       4
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10
#define NBD_OPT_EXTENDED_HEADERS  11

#define NBD_REP_ACK          1
#define NBD_REP_SERVER       2
#define NBD_REP_INFO         3
#define NBD_REP_META_CONTEXT 4
#define NBD_REP_FLAG_ERROR   (1u << 31)
#define NBD_REP_ERR_UNSUP           (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY          (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID         (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM        (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD        (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN         (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN        (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG         (NBD_REP_FLAG_ERROR | 9)
#define NBD_REP_ERR_EXT_HEADER_REQD (NBD_REP_FLAG_ERROR | 10)

#define NBD_INFO_EXPORT      0
#define NBD_INFO_NAME        1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE  3

/* ---- transmission flags (per export) ---- */
#define NBD_FLAG_HAS_FLAGS          (1u << 0)
#define NBD_FLAG_READ_ONLY          (1u << 1)
#define NBD_FLAG_SEND_FLUSH         (1u << 2)
#define NBD_FLAG_SEND_FUA           (1u << 3)
#define NBD_FLAG_ROTATIONAL         (1u << 4)
#define NBD_FLAG_SEND_TRIM          (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1u << 6)
#define NBD_FLAG_SEND_DF            (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1u << 8)
#define NBD_FLAG_SEND_RESIZE        (1u << 9)
#define NBD_FLAG_SEND_CACHE         (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1u << 11)
#define NBD_FLAG_BLOCK_STAT_PAYLOAD (1u << 12)

/* ---- requests and replies ---- */
#define NBD_REQUEST_MAGIC          0x25609513u
#define NBD_EXTENDED_REQUEST_MAGIC 0x21e41c71u
#define NBD_SIMPLE_REPLY_MAGIC     0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu
#define NBD_EXTENDED_REPLY_MAGIC   0x6e8a278cu

#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_CACHE        5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7
#define NBD_CMD_RESIZE       8

#define NBD_CMD_FLAG_FUA         (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE     (1u << 1)
#define NBD_CMD_FLAG_DF          (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE     (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO   (1u << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN (1u << 5)

#define NBD_REPLY_FLAG_DONE (1u << 0)

#define NBD_REPLY_TYPE_NONE             0
#define NBD_REPLY_TYPE_OFFSET_DATA      1
#define NBD_REPLY_TYPE_OFFSET_HOLE      2
#define NBD_REPLY_TYPE_BLOCK_STATUS     5
#define NBD_REPLY_TYPE_BLOCK_STATUS_EXT 6
#define NBD_REPLY_TYPE_ERROR            ((1u << 15) + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET     ((1u << 15) + 2)

#define NBD_EPERM     1
#define NBD_EIO       5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP   95
#define NBD_ESHUTDOWN 108

/* ---- sizes and limits ---- */
#define NBD_SIMPLE_REQUEST_SIZE   28
#define NBD_EXTENDED_REQUEST_SIZE 32
#define NBD_SIMPLE_REPLY_SIZE     16
#define NBD_STRUCTURED_REPLY_SIZE 20
#define NBD_EXTENDED_REPLY_SIZE   32

#define NBDD_MAX_STRING      4096u            /* export names, descriptions */
#define NBDD_MAX_OPTION_LEN  (64u * 1024)     /* one option's payload */
#define NBDD_MAX_OPTIONS     256u             /* options before GO */
#define NBDD_MAX_INFO_REQS   32u              /* info requests in one GO/INFO */
#define NBDD_MAX_PAYLOAD     (32u << 20)      /* read/write payload */
#define NBDD_MAX_EXTENTS     (64u * 1024)     /* descriptors in one reply */

/* The one metadata context we serve. */
#define NBDD_META_BASE_ALLOCATION "base:allocation"
#define NBDD_META_ID_BASE_ALLOCATION 1u

/* ---- big-endian helpers ---- */
static inline void nbd_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void nbd_put32(uint8_t *p, uint32_t v)
{
	nbd_put16(p, (uint16_t)(v >> 16));
	nbd_put16(p + 2, (uint16_t)v);
}

static inline void nbd_put64(uint8_t *p, uint64_t v)
{
	nbd_put32(p, (uint32_t)(v >> 32));
	nbd_put32(p + 4, (uint32_t)v);
}

static inline uint16_t nbd_get16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t nbd_get32(const uint8_t *p)
{
	return (uint32_t)nbd_get16(p) << 16 | nbd_get16(p + 2);
}

static inline uint64_t nbd_get64(const uint8_t *p)
{
	return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4);
}

/* ---- requests ---- */

struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint64_t length; /* 64-bit only with extended headers */
};

/*
 * Decode one request header from @buf. Returns the header size consumed,
 * 0 when @len is too short, or -EPROTO on a bad magic (the stream is then
 * out of sync and the connection must be closed).
 */
int nbd_decode_request(const uint8_t *buf, size_t len, bool extended,
		       struct nbd_request *out);
/* For clients and tests: encode a request header, returns its size. */
size_t nbd_encode_request(uint8_t *buf, bool extended,
			  const struct nbd_request *r);

/* How many payload bytes follow the header of @r on the wire. */
uint64_t nbd_request_payload_len(const struct nbd_request *r, bool extended);

/* ---- replies ---- */

/* 16 bytes. */
size_t nbd_encode_simple_reply(uint8_t *buf, uint64_t cookie, uint32_t error);

/*
 * A structured (20 bytes) or extended (32 bytes) chunk header; @offset is
 * used only in the extended form. Returns the size written.
 */
size_t nbd_encode_chunk_header(uint8_t *buf, bool extended, uint16_t flags,
			       uint16_t type, uint64_t cookie, uint64_t offset,
			       uint64_t payload_len);

/* errno (positive) to NBD error number, never 0 for a non-zero input. */
uint32_t nbd_errno_to_wire(int err);

/* Names for logs: "NBD_CMD_READ" and so on; never NULL. */
const char *nbd_cmd_name(uint16_t type);
const char *nbd_opt_name(uint32_t opt);

/* ---- request validation ---- */

/* What transmission was negotiated; everything validation depends on. */
struct nbd_xmit_params {
	uint64_t size;
	uint16_t eflags;        /* NBD_FLAG_* sent to the peer */
	uint32_t min_block;     /* 1 when the peer accepted no constraints */
	uint32_t max_payload;   /* NBDD_MAX_PAYLOAD or the backend's maximum */
	bool structured;        /* structured replies negotiated */
	bool extended;          /* extended headers negotiated */
	bool base_allocation;   /* base:allocation context selected */
};

/*
 * Check a decoded request before any backend sees it. Returns 0 when it
 * may run, else the NBD error to reply with (NBD_EINVAL, NBD_EPERM,
 * NBD_ENOSPC, NBD_EOVERFLOW, NBD_ENOTSUP). DISC is always valid.
 */
uint32_t nbd_check_request(const struct nbd_xmit_params *p,
			   const struct nbd_request *r);

#endif /* NBDD_PROTO_WIRE_H */
