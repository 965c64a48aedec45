/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/proto/handshake.c, second part: INFO and GO (information items,
 * block-size agreement, malformed requests), STRUCTURED_REPLY and
 * EXTENDED_HEADERS (ordering, duplicates), LIST/SET_META_CONTEXT, and
 * the state handed to the transmission phase.
 */
#include "handshake_fixture.h"

static const uint16_t all_infos[] = { NBD_INFO_NAME, NBD_INFO_DESCRIPTION,
				      NBD_INFO_BLOCK_SIZE };

static void info(int fd, uint32_t opt, const char *name, const uint16_t *reqs,
		 uint16_t n)
{
	uint8_t b[256];
	size_t len = tc_build_info(b, name, reqs, n);

	assert_int_equal(tc_send_option(fd, opt, b, (uint32_t)len), 0);
}

/* ---- INFO and GO ---- */

/*
 * INFO answers and leaves us negotiating; GO with the same request
 * repeats it exactly, and what follows GO's ACK is the transmission
 * phase: the handshake has not read a byte of it.
 */
static void test_info_then_go(void **state)
{
	struct fx *f = *state;
	struct infos a, b;
	struct nbd_request req = { .type = NBD_CMD_READ, .cookie = 77,
				   .length = 512 };
	uint8_t hdr[NBD_SIMPLE_REQUEST_SIZE], got[NBD_SIMPLE_REQUEST_SIZE];

	fx_start(f);
	info(f->cfd, NBD_OPT_INFO, "disk", all_infos, 3);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_INFO, &a), NBD_REP_ACK);
	assert_true(a.export && a.name && a.description && a.block_size);
	assert_true(a.size == DISK_SIZE);
	assert_true(a.eflags & NBD_FLAG_HAS_FLAGS);
	assert_false(a.eflags & NBD_FLAG_READ_ONLY);
	assert_true(a.eflags & NBD_FLAG_SEND_FLUSH);
	assert_string_equal(a.text, "disk");
	assert_string_equal(a.desc, "the test disk");
	assert_int_equal(a.bs[0], 1);
	assert_int_equal(a.bs[1], 4096);
	assert_int_equal(a.bs[2], NBDD_MAX_PAYLOAD);

	info(f->cfd, NBD_OPT_GO, "disk", all_infos, 3);
	nbd_encode_request(hdr, false, &req);
	assert_int_equal(tc_write(f->cfd, hdr, sizeof(hdr)), 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &b), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_ptr_equal(f->neg.export, f->disk);
	assert_false(f->neg.structured || f->neg.extended);
	assert_false(f->neg.base_allocation);
	assert_int_equal(f->neg.min_block, 1);
	assert_int_equal(read_full(f->sfd, got, sizeof(got), now_ms() + 5000),
			 0);
	assert_memory_equal(got, hdr, sizeof(hdr));
}

/* With no item asked for: the export, and our block sizes anyway. */
static void test_info_minimal(void **state)
{
	struct fx *f = *state;
	struct infos in;

	fx_start(f);
	info(f->cfd, NBD_OPT_INFO, "ro", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_INFO, &in), NBD_REP_ACK);
	assert_true(in.export && in.block_size);
	assert_false(in.name || in.description);
	assert_true(in.eflags & NBD_FLAG_READ_ONLY);
	/* no description exists for "ro": none is sent even if asked */
	info(f->cfd, NBD_OPT_INFO, "ro", all_infos, 3);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_INFO, &in), NBD_REP_ACK);
	assert_true(in.name && !in.description);
	abort_ok(f);
}

/* Unknown items are ignored, duplicates answered once, up to the cap. */
static void test_info_requests(void **state)
{
	struct fx *f = *state;
	uint16_t reqs[NBDD_MAX_INFO_REQS + 1];
	struct tc_reply r;
	unsigned i, names = 0;

	for (i = 0; i < ARRAY_SIZE(reqs); i++)
		reqs[i] = i % 2 ? NBD_INFO_NAME : (uint16_t)(1000 + i);
	fx_start(f);
	info(f->cfd, NBD_OPT_INFO, "disk", reqs, NBDD_MAX_INFO_REQS);
	for (;;) {
		assert_int_equal(tc_read_reply(f->cfd, &r), 0);
		if (r.type == NBD_REP_INFO && nbd_get16(r.data) == NBD_INFO_NAME)
			names++;
		if (r.type != NBD_REP_INFO)
			break;
		tc_reply_free(&r);
	}
	assert_int_equal(r.type, NBD_REP_ACK);
	tc_reply_free(&r);
	assert_int_equal(names, 1);
	info(f->cfd, NBD_OPT_INFO, "disk", reqs, NBDD_MAX_INFO_REQS + 1);
	assert_int_equal(reply_type(f->cfd, NBD_OPT_INFO), NBD_REP_ERR_TOO_BIG);
	info(f->cfd, NBD_OPT_GO, "disk", reqs, NBDD_MAX_INFO_REQS + 1);
	assert_int_equal(reply_type(f->cfd, NBD_OPT_GO), NBD_REP_ERR_TOO_BIG);
	still_usable(f->cfd);
	abort_ok(f);
}

static void test_go_unknown_export(void **state)
{
	struct fx *f = *state;
	struct tc_reply r;

	fx_start(f);
	info(f->cfd, NBD_OPT_GO, "no-such-export", NULL, 0);
	assert_int_equal(tc_read_reply(f->cfd, &r), 0);
	assert_int_equal(r.type, NBD_REP_ERR_UNKNOWN);
	assert_null(memmem(r.data, r.len, "no-such", 7));
	tc_reply_free(&r);
	info(f->cfd, NBD_OPT_INFO, "DISK", NULL, 0); /* names are exact */
	assert_int_equal(reply_type(f->cfd, NBD_OPT_INFO), NBD_REP_ERR_UNKNOWN);
	still_usable(f->cfd);
	abort_ok(f);
}

/* The counts must add up exactly to the option's length. */
static void test_go_malformed(void **state)
{
	struct fx *f = *state;
	uint8_t b[64];
	size_t len;

	fx_start(f);
	len = tc_build_info(b, "disk", all_infos, 2);
	nbd_put16(b + 8, 3); /* claims one request more than sent */
	expect(f->cfd, NBD_OPT_GO, b, (uint32_t)len, NBD_REP_ERR_INVALID);
	nbd_put16(b + 8, 1); /* claims one fewer: trailing bytes */
	expect(f->cfd, NBD_OPT_GO, b, (uint32_t)len, NBD_REP_ERR_INVALID);
	/* an odd byte where a request would be */
	len = tc_build_info(b, "disk", NULL, 0);
	b[len] = 0;
	expect(f->cfd, NBD_OPT_INFO, b, (uint32_t)len + 1,
	       NBD_REP_ERR_INVALID);
	still_usable(f->cfd);
	abort_ok(f);
}

/* "blk" has a 512-byte minimum: GO must promise to honour it. */
static void test_go_block_size_required(void **state)
{
	static const uint16_t bsreq[] = { NBD_INFO_BLOCK_SIZE };
	struct fx *f = *state;
	struct infos in;

	fx_start(f);
	info(f->cfd, NBD_OPT_GO, "blk", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in),
			 NBD_REP_ERR_BLOCK_SIZE_REQD);
	/* the sizes came first, to save the client a round trip */
	assert_true(in.block_size);
	assert_int_equal(in.bs[0], 512);
	/* INFO commits to nothing: it may go without the request */
	info(f->cfd, NBD_OPT_INFO, "blk", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_INFO, &in), NBD_REP_ACK);
	assert_true(in.size == BLK_SIZE);
	assert_int_equal(in.bs[0], 512);
	assert_int_equal(in.bs[1], 4096);
	assert_int_equal(in.bs[2], 65536);
	info(f->cfd, NBD_OPT_GO, "blk", bsreq, 1);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_ptr_equal(f->neg.export, f->blk);
	assert_int_equal(f->neg.min_block, 512);
}

/* min_block is the export's only when the client asked for it. */
static void test_go_min_block_default(void **state)
{
	static const uint16_t bsreq[] = { NBD_INFO_BLOCK_SIZE };
	struct fx *f = *state;
	struct infos in;

	fx_start(f);
	info(f->cfd, NBD_OPT_GO, "disk", bsreq, 1);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_int_equal(f->neg.min_block, 1);
	assert_int_equal(in.bs[0], 1);
}

/* ---- STRUCTURED_REPLY and EXTENDED_HEADERS ---- */

static void test_structured_reply(void **state)
{
	struct fx *f = *state;
	struct infos in;

	fx_start(f);
	info(f->cfd, NBD_OPT_INFO, "disk", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_INFO, &in), NBD_REP_ACK);
	assert_false(in.eflags & NBD_FLAG_SEND_DF); /* only with chunks */
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, "x", 1, NBD_REP_ERR_INVALID);
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ACK);
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ERR_INVALID);
	info(f->cfd, NBD_OPT_GO, "disk", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_true(in.eflags & NBD_FLAG_SEND_DF);
	assert_false(in.eflags & NBD_FLAG_BLOCK_STAT_PAYLOAD);
	assert_int_equal(fx_join(f), 0);
	assert_true(f->neg.structured);
	assert_false(f->neg.extended);
}

static void test_extended_headers(void **state)
{
	struct fx *f = *state;
	struct infos in;

	fx_start(f);
	expect(f->cfd, NBD_OPT_EXTENDED_HEADERS, "x", 1, NBD_REP_ERR_INVALID);
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ACK);
	/* structured first is fine; extended takes precedence */
	expect(f->cfd, NBD_OPT_EXTENDED_HEADERS, NULL, 0, NBD_REP_ACK);
	expect(f->cfd, NBD_OPT_EXTENDED_HEADERS, NULL, 0, NBD_REP_ERR_INVALID);
	/* no downgrade once extended */
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0,
	       NBD_REP_ERR_EXT_HEADER_REQD);
	info(f->cfd, NBD_OPT_GO, "disk", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_true(f->neg.extended && f->neg.structured);
}

/* Extended headers alone imply structured replies. */
static void test_extended_alone(void **state)
{
	struct fx *f = *state;
	struct infos in;

	fx_start(f);
	expect(f->cfd, NBD_OPT_EXTENDED_HEADERS, NULL, 0, NBD_REP_ACK);
	info(f->cfd, NBD_OPT_GO, "", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_true(in.eflags & NBD_FLAG_SEND_DF);
	assert_int_equal(fx_join(f), 0);
	assert_true(f->neg.extended && f->neg.structured);
	assert_ptr_equal(f->neg.export, f->disk);
}

/* ---- metadata contexts ---- */

/* Send a META option; return how many base:allocation replies came. */
static int meta(int fd, uint32_t opt, const char *name,
		const char *const *q, uint32_t n, uint32_t *final,
		uint32_t *id)
{
	uint8_t b[512];
	size_t len = tc_build_meta(b, name, q, n);
	struct tc_reply r;
	int count = 0;

	assert_int_equal(tc_send_option(fd, opt, b, (uint32_t)len), 0);
	for (;;) {
		assert_int_equal(tc_read_reply(fd, &r), 0);
		assert_int_equal(r.opt, opt);
		if (r.type != NBD_REP_META_CONTEXT)
			break;
		assert_int_equal(r.len, 4 + strlen(NBDD_META_BASE_ALLOCATION));
		assert_memory_equal(r.data + 4, NBDD_META_BASE_ALLOCATION,
				    r.len - 4);
		*id = nbd_get32(r.data);
		count++;
		tc_reply_free(&r);
	}
	*final = r.type;
	tc_reply_free(&r);
	return count;
}

static void test_list_meta_context(void **state)
{
	static const char *const wild[] = { "base:" };
	static const char *const exact[] = { "base:allocation", "base:" };
	static const char *const other[] = { "x-foo:bar", "base:nothing",
					     "qemu:dirty-bitmap:a", "nocolon" };
	struct fx *f = *state;
	uint32_t final, id = 99;
	uint8_t b[64];
	size_t len;

	fx_start(f);
	/* no queries: everything; allowed before structured replies */
	assert_int_equal(meta(f->cfd, NBD_OPT_LIST_META_CONTEXT, "disk", NULL,
			      0, &final, &id), 1);
	assert_int_equal(final, NBD_REP_ACK);
	assert_int_equal(id, 0); /* reserved in LIST replies */
	assert_int_equal(meta(f->cfd, NBD_OPT_LIST_META_CONTEXT, "disk", wild,
			      1, &final, &id), 1);
	assert_int_equal(final, NBD_REP_ACK);
	/* two queries matching the one context: listed once */
	assert_int_equal(meta(f->cfd, NBD_OPT_LIST_META_CONTEXT, "", exact, 2,
			      &final, &id), 1);
	assert_int_equal(meta(f->cfd, NBD_OPT_LIST_META_CONTEXT, "disk", other,
			      4, &final, &id), 0);
	assert_int_equal(final, NBD_REP_ACK);
	assert_int_equal(meta(f->cfd, NBD_OPT_LIST_META_CONTEXT, "nope", NULL,
			      0, &final, &id), 0);
	assert_int_equal(final, NBD_REP_ERR_UNKNOWN);
	/* bytes left over after the last query: malformed */
	len = tc_build_meta(b, "disk", wild, 1);
	b[len] = 'x';
	expect(f->cfd, NBD_OPT_LIST_META_CONTEXT, b, (uint32_t)len + 1,
	       NBD_REP_ERR_INVALID);
	/* a name longer than the option */
	nbd_put32(b, 9);
	expect(f->cfd, NBD_OPT_LIST_META_CONTEXT, b, 12, NBD_REP_ERR_INVALID);
	still_usable(f->cfd);
	abort_ok(f);
}

static void test_set_meta_context(void **state)
{
	static const char *const q[] = { "x-foo:bar", "base:allocation" };
	struct fx *f = *state;
	uint32_t final, id = 0;
	struct infos in;

	fx_start(f);
	/* SET needs structured replies first */
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "disk", q, 2,
			      &final, &id), 0);
	assert_int_equal(final, NBD_REP_ERR_INVALID);
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ACK);
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "disk", q, 2,
			      &final, &id), 1);
	assert_int_equal(final, NBD_REP_ACK);
	assert_int_equal(id, NBDD_META_ID_BASE_ALLOCATION);
	info(f->cfd, NBD_OPT_GO, "disk", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_true(f->neg.base_allocation);
	assert_true(f->neg.structured);
}

/* The selection belongs to the export it was made for. */
static void test_set_meta_other_export(void **state)
{
	static const char *const q[] = { "base:allocation" };
	struct fx *f = *state;
	uint32_t final, id;
	struct infos in;

	fx_start(f);
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ACK);
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "disk", q, 1,
			      &final, &id), 1);
	info(f->cfd, NBD_OPT_GO, "ro", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_ptr_equal(f->neg.export, f->ro);
	assert_false(f->neg.base_allocation);
}

/* Each SET replaces the selection, even an empty or failed one. */
static void test_set_meta_replaces(void **state)
{
	static const char *const q[] = { "base:allocation" };
	static const char *const wild[] = { "base:" };
	struct fx *f = *state;
	uint32_t final, id;
	uint8_t bad[12];
	struct infos in;

	fx_start(f);
	expect(f->cfd, NBD_OPT_EXTENDED_HEADERS, NULL, 0, NBD_REP_ACK);
	/* selected, then an empty SET: nothing selected */
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "disk", q, 1,
			      &final, &id), 1);
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "disk", NULL,
			      0, &final, &id), 0);
	assert_int_equal(final, NBD_REP_ACK);
	/* "base:" selects nothing in a SET */
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "disk", wild,
			      1, &final, &id), 0);
	/* selected, then a malformed SET: nothing selected */
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "disk", q, 1,
			      &final, &id), 1);
	nbd_put32(bad, 0);
	nbd_put32(bad + 4, 1);
	nbd_put32(bad + 8, 100); /* a query longer than the option */
	expect(f->cfd, NBD_OPT_SET_META_CONTEXT, bad, sizeof(bad),
	       NBD_REP_ERR_INVALID);
	info(f->cfd, NBD_OPT_GO, "disk", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_false(f->neg.base_allocation);
}

/* SET for an unknown export fails, and clears an earlier selection. */
static void test_set_meta_unknown_export(void **state)
{
	static const char *const q[] = { "base:allocation" };
	struct fx *f = *state;
	uint32_t final, id;
	struct infos in;

	fx_start(f);
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ACK);
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "", q, 1,
			      &final, &id), 1);
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "nope", q, 1,
			      &final, &id), 0);
	assert_int_equal(final, NBD_REP_ERR_UNKNOWN);
	info(f->cfd, NBD_OPT_GO, "", NULL, 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_false(f->neg.base_allocation);
}

/* The default name and the export's own name select the same export. */
static void test_set_meta_then_export_name(void **state)
{
	static const char *const q[] = { "base:allocation" };
	struct fx *f = *state;
	uint32_t final, id;
	uint8_t b[10];

	fx_start(f);
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ACK);
	assert_int_equal(meta(f->cfd, NBD_OPT_SET_META_CONTEXT, "", q, 1,
			      &final, &id), 1);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_EXPORT_NAME, "disk",
					4), 0);
	assert_int_equal(tc_read(f->cfd, b, sizeof(b)), 0);
	assert_int_equal(fx_join(f), 0);
	assert_true(f->neg.base_allocation && f->neg.structured);
	assert_true(nbd_get16(b + 8) & NBD_FLAG_SEND_DF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_info_then_go),
		T(test_info_minimal),
		T(test_info_requests),
		T(test_go_unknown_export),
		T(test_go_malformed),
		T(test_go_block_size_required),
		T(test_go_min_block_default),
		T(test_structured_reply),
		T(test_extended_headers),
		T(test_extended_alone),
		T(test_list_meta_context),
		T(test_set_meta_context),
		T(test_set_meta_other_export),
		T(test_set_meta_replaces),
		T(test_set_meta_unknown_export),
		T(test_set_meta_then_export_name),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
