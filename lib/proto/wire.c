/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NBD wire format: request decoding, reply encoding and the validation
 * every request passes before a backend sees it. Pure functions on byte
 * buffers: no I/O, no allocation, no global state.
 */
#include <errno.h>
#include <limits.h>

#include "proto/wire.h"

/* ---- requests ---- */

int nbd_decode_request(const uint8_t *buf, size_t len, bool extended,
		       struct nbd_request *out)
{
	size_t need = extended ? NBD_EXTENDED_REQUEST_SIZE
			       : NBD_SIMPLE_REQUEST_SIZE;
	uint32_t magic = extended ? NBD_EXTENDED_REQUEST_MAGIC
				  : NBD_REQUEST_MAGIC;

	if (len < need)
		return 0;
	if (nbd_get32(buf) != magic)
		return -EPROTO;
	out->flags = nbd_get16(buf + 4);
	out->type = nbd_get16(buf + 6);
	out->cookie = nbd_get64(buf + 8);
	out->offset = nbd_get64(buf + 16);
	out->length = extended ? nbd_get64(buf + 24) : nbd_get32(buf + 24);
	return (int)need;
}

size_t nbd_encode_request(uint8_t *buf, bool extended,
			  const struct nbd_request *r)
{
	nbd_put32(buf, extended ? NBD_EXTENDED_REQUEST_MAGIC
				: NBD_REQUEST_MAGIC);
	nbd_put16(buf + 4, r->flags);
	nbd_put16(buf + 6, r->type);
	nbd_put64(buf + 8, r->cookie);
	nbd_put64(buf + 16, r->offset);
	if (extended) {
		nbd_put64(buf + 24, r->length);
		return NBD_EXTENDED_REQUEST_SIZE;
	}
	nbd_put32(buf + 24, (uint32_t)r->length);
	return NBD_SIMPLE_REQUEST_SIZE;
}

/*
 * With compact headers only WRITE carries a payload. With extended
 * headers the PAYLOAD_LEN flag alone decides, whatever the command:
 * a request we refuse (BLOCK_STATUS with a payload, a stray flag on
 * another command) still has its bytes on the wire, and the engine
 * must read them to stay in sync.
 */
uint64_t nbd_request_payload_len(const struct nbd_request *r, bool extended)
{
	if (extended)
		return (r->flags & NBD_CMD_FLAG_PAYLOAD_LEN) ? r->length : 0;
	return r->type == NBD_CMD_WRITE ? r->length : 0;
}

/* ---- replies ---- */

size_t nbd_encode_simple_reply(uint8_t *buf, uint64_t cookie, uint32_t error)
{
	nbd_put32(buf, NBD_SIMPLE_REPLY_MAGIC);
	nbd_put32(buf + 4, error);
	nbd_put64(buf + 8, cookie);
	return NBD_SIMPLE_REPLY_SIZE;
}

size_t nbd_encode_chunk_header(uint8_t *buf, bool extended, uint16_t flags,
			       uint16_t type, uint64_t cookie, uint64_t offset,
			       uint64_t payload_len)
{
	nbd_put32(buf, extended ? NBD_EXTENDED_REPLY_MAGIC
				: NBD_STRUCTURED_REPLY_MAGIC);
	nbd_put16(buf + 4, flags);
	nbd_put16(buf + 6, type);
	nbd_put64(buf + 8, cookie);
	if (extended) {
		nbd_put64(buf + 16, offset);
		nbd_put64(buf + 24, payload_len);
		return NBD_EXTENDED_REPLY_SIZE;
	}
	nbd_put32(buf + 16, (uint32_t)payload_len);
	return NBD_STRUCTURED_REPLY_SIZE;
}

uint32_t nbd_errno_to_wire(int err)
{
	if (err < 0)
		err = err == INT_MIN ? EIO : -err;
	switch (err) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
	case EOPNOTSUPP:
#endif
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

/* ---- names ---- */

static const char *const cmd_names[] = {
	[NBD_CMD_READ] = "NBD_CMD_READ",
	[NBD_CMD_WRITE] = "NBD_CMD_WRITE",
	[NBD_CMD_DISC] = "NBD_CMD_DISC",
	[NBD_CMD_FLUSH] = "NBD_CMD_FLUSH",
	[NBD_CMD_TRIM] = "NBD_CMD_TRIM",
	[NBD_CMD_CACHE] = "NBD_CMD_CACHE",
	[NBD_CMD_WRITE_ZEROES] = "NBD_CMD_WRITE_ZEROES",
	[NBD_CMD_BLOCK_STATUS] = "NBD_CMD_BLOCK_STATUS",
	[NBD_CMD_RESIZE] = "NBD_CMD_RESIZE",
};

static const char *const opt_names[] = {
	[NBD_OPT_EXPORT_NAME] = "NBD_OPT_EXPORT_NAME",
	[NBD_OPT_ABORT] = "NBD_OPT_ABORT",
	[NBD_OPT_LIST] = "NBD_OPT_LIST",
	[NBD_OPT_PEEK_EXPORT] = "NBD_OPT_PEEK_EXPORT",
	[NBD_OPT_STARTTLS] = "NBD_OPT_STARTTLS",
	[NBD_OPT_INFO] = "NBD_OPT_INFO",
	[NBD_OPT_GO] = "NBD_OPT_GO",
	[NBD_OPT_STRUCTURED_REPLY] = "NBD_OPT_STRUCTURED_REPLY",
	[NBD_OPT_LIST_META_CONTEXT] = "NBD_OPT_LIST_META_CONTEXT",
	[NBD_OPT_SET_META_CONTEXT] = "NBD_OPT_SET_META_CONTEXT",
	[NBD_OPT_EXTENDED_HEADERS] = "NBD_OPT_EXTENDED_HEADERS",
};

const char *nbd_cmd_name(uint16_t type)
{
	if (type < sizeof(cmd_names) / sizeof(cmd_names[0]))
		return cmd_names[type];
	return "NBD_CMD_unknown";
}

const char *nbd_opt_name(uint32_t opt)
{
	if (opt < sizeof(opt_names) / sizeof(opt_names[0]) && opt_names[opt])
		return opt_names[opt];
	return "NBD_OPT_unknown";
}

/* ---- request validation ---- */

/* What each command may carry and needs; one row per known command. */
struct cmd_rule {
	bool known;
	uint16_t flags;     /* command flags valid on it (more checks below) */
	uint16_t needs;     /* transmission flag that must have been sent */
	bool writes;        /* refused on a read-only export */
	bool ranged;        /* offset/length address the export */
	bool no_range;      /* offset and length are reserved: must be 0 */
	uint32_t out_of_range; /* error for a range past the end */
};

static const struct cmd_rule cmd_rules[] = {
	[NBD_CMD_READ] = { .known = true, .ranged = true,
			   .flags = NBD_CMD_FLAG_DF,
			   .out_of_range = NBD_EINVAL },
	[NBD_CMD_WRITE] = { .known = true, .ranged = true, .writes = true,
			    .flags = NBD_CMD_FLAG_PAYLOAD_LEN,
			    .out_of_range = NBD_ENOSPC },
	[NBD_CMD_DISC] = { .known = true },
	[NBD_CMD_FLUSH] = { .known = true, .no_range = true,
			    .needs = NBD_FLAG_SEND_FLUSH },
	[NBD_CMD_TRIM] = { .known = true, .ranged = true, .writes = true,
			   .needs = NBD_FLAG_SEND_TRIM,
			   .out_of_range = NBD_EINVAL },
	[NBD_CMD_CACHE] = { .known = true, .ranged = true,
			    .needs = NBD_FLAG_SEND_CACHE,
			    .out_of_range = NBD_EINVAL },
	[NBD_CMD_WRITE_ZEROES] = { .known = true, .ranged = true,
				   .writes = true,
				   .flags = NBD_CMD_FLAG_NO_HOLE |
					    NBD_CMD_FLAG_FAST_ZERO,
				   .needs = NBD_FLAG_SEND_WRITE_ZEROES,
				   .out_of_range = NBD_ENOSPC },
	[NBD_CMD_BLOCK_STATUS] = { .known = true, .ranged = true,
				   .flags = NBD_CMD_FLAG_REQ_ONE,
				   .out_of_range = NBD_EINVAL },
	/* NBD_CMD_RESIZE: we never advertise NBD_FLAG_SEND_RESIZE. */
};

static const struct cmd_rule *rule_of(uint16_t type)
{
	if (type < sizeof(cmd_rules) / sizeof(cmd_rules[0]) &&
	    cmd_rules[type].known)
		return &cmd_rules[type];
	return NULL;
}

/* Flags: each must be documented for the command and negotiated. */
static bool flags_ok(const struct nbd_xmit_params *p,
		     const struct cmd_rule *rule, const struct nbd_request *r)
{
	uint16_t f = r->flags;

	/*
	 * The spec has the server accept FUA on every command once
	 * SEND_FUA is out (clients are known to set it on reads);
	 * it is a no-op on commands that write nothing.
	 */
	if ((f & NBD_CMD_FLAG_FUA) && !(p->eflags & NBD_FLAG_SEND_FUA))
		return false;
	f &= (uint16_t)~NBD_CMD_FLAG_FUA;
	if (f & ~rule->flags)
		return false;
	if ((f & NBD_CMD_FLAG_DF) &&
	    (!(p->eflags & NBD_FLAG_SEND_DF) ||
	     !(p->structured || p->extended)))
		return false;
	if ((f & NBD_CMD_FLAG_FAST_ZERO) &&
	    !(p->eflags & NBD_FLAG_SEND_FAST_ZERO))
		return false;
	/* PAYLOAD_LEN: only with extended headers, where WRITE needs it. */
	if (r->type == NBD_CMD_WRITE && p->extended &&
	    !(f & NBD_CMD_FLAG_PAYLOAD_LEN))
		return false;
	if ((f & NBD_CMD_FLAG_PAYLOAD_LEN) && !p->extended)
		return false;
	return true;
}

/* Is the command's feature on for this connection? */
static bool advertised(const struct nbd_xmit_params *p,
		       const struct cmd_rule *rule, uint16_t type)
{
	if (rule->needs && !(p->eflags & rule->needs))
		return false;
	if (type == NBD_CMD_BLOCK_STATUS)
		return p->base_allocation && (p->structured || p->extended);
	return true;
}

/* Offset, length, payload size and alignment of a ranged command. */
static uint32_t check_range(const struct nbd_xmit_params *p,
			    const struct cmd_rule *rule,
			    const struct nbd_request *r)
{
	uint32_t min_block = p->min_block ? p->min_block : 1;

	/* Overflow-proof: never compute offset + length. */
	if (r->offset > p->size || r->length > p->size - r->offset)
		return rule->out_of_range;
	/*
	 * The spec leaves zero-length requests unspecified (no
	 * disconnect). Refusing them means no backend ever sees a
	 * zero-byte call and no reply needs a zero-byte chunk, which
	 * structured replies forbid.
	 */
	if (r->length == 0)
		return NBD_EINVAL;
	/*
	 * READ and WRITE move their length as payload. An oversized
	 * read gets EOVERFLOW (the spec's error for "too large to
	 * send"); a write's payload was sent, so it is plain EINVAL.
	 */
	if (r->type == NBD_CMD_READ && r->length > p->max_payload)
		return NBD_EOVERFLOW;
	if (r->type == NBD_CMD_WRITE && r->length > p->max_payload)
		return NBD_EINVAL;
	if (r->offset % min_block || r->length % min_block)
		return NBD_EINVAL;
	return 0;
}

uint32_t nbd_check_request(const struct nbd_xmit_params *p,
			   const struct nbd_request *r)
{
	const struct cmd_rule *rule = rule_of(r->type);

	if (!rule)
		return NBD_EINVAL;
	if (r->type == NBD_CMD_DISC)
		return 0;
	/* Compact headers carry 32 bits; anything else was forged. */
	if (!p->extended && r->length > UINT32_MAX)
		return NBD_EINVAL;
	if (!flags_ok(p, rule, r))
		return NBD_EINVAL;
	/* Before "advertised": a read-only export may not offer TRIM. */
	if (rule->writes && (p->eflags & NBD_FLAG_READ_ONLY))
		return NBD_EPERM;
	if (!advertised(p, rule, r->type))
		return NBD_EINVAL;
	if (rule->no_range && (r->offset || r->length))
		return NBD_EINVAL;
	if (rule->ranged)
		return check_range(p, rule, r);
	return 0;
}
