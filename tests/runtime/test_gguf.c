/* SPDX-License-Identifier: MIT */
/*
 * test_gguf.c - GGUF loader: a table of malformed files (each must fail
 * with a clear message and no crash), every truncation of a valid file,
 * model-level checks (missing keys, wrong shapes / types) and synthetic
 * model round trips.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cu_main.h"
#include "rt_gguf.h"
#include "rt_model.h"
#include "rt_ops.h"
#include "rt_synth.h"

/* ---- a byte builder for hand-made files ---- */

struct bb {
	uint8_t *p;
	size_t n, cap;
};

static void bb_put(struct bb *b, const void *v, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 256;
		b->p = realloc(b->p, b->cap);
		CU_ASSERT_FATAL(b->p != NULL);
	}
	memcpy(b->p + b->n, v, n);
	b->n += n;
}

static void u32(struct bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void u64(struct bb *b, uint64_t v) { bb_put(b, &v, 8); }

static void str(struct bb *b, const char *s)
{
	u64(b, strlen(s));
	bb_put(b, s, strlen(s));
}

static void pad(struct bb *b, size_t a)
{
	static const uint8_t z[64];

	while (b->n % a)
		bb_put(b, z, 1);
	(void)z;
}

/*
 * Description of a small file; fields are tweaked per test case.
 */
struct spec {
	uint32_t magic, version;
	int64_t n_tensors_override, n_kv_override;	/* -1: real count */
	uint32_t align;				/* 0: no key */
	int key_len_huge;			/* string len 2^40 */
	int arr_len_huge;
	int arr_str_len_huge;
	uint32_t bad_vtype;			/* != 0: KV with that type */
	int nested_arr;
	int dup_key;
	/* tensor a: F32 [8]; tensor b: F16 [32, 2] */
	uint32_t a_ndims, a_type;
	uint64_t a_ne0;
	uint64_t a_off, b_off;
	int dup_name;
	int long_name;
	uint64_t trail;				/* extra bytes at end */
	int short_data;				/* drop last byte */
};

static void spec_default(struct spec *s)
{
	memset(s, 0, sizeof(*s));
	s->magic = RT_GGUF_MAGIC;
	s->version = 3;
	s->n_tensors_override = -1;
	s->n_kv_override = -1;
	s->align = 32;
	s->a_ndims = 1;
	s->a_type = RT_TYPE_F32;
	s->a_ne0 = 8;
	s->a_off = 0;
	s->b_off = 32;
}

static void build(const struct spec *s, struct bb *b)
{
	uint32_t nkv = 3 + (s->align ? 1 : 0) + (s->bad_vtype ? 1 : 0) +
		       (s->nested_arr ? 1 : 0) + (s->dup_key ? 1 : 0);
	uint64_t i, size_b = 32 * 2 * 2, size_a;

	memset(b, 0, sizeof(*b));
	u32(b, s->magic);
	u32(b, s->version);
	u64(b, s->n_tensors_override >= 0 ? (uint64_t)s->n_tensors_override : 2);
	u64(b, s->n_kv_override >= 0 ? (uint64_t)s->n_kv_override : nkv);
	/* KV */
	if (s->key_len_huge) {
		u64(b, 1ull << 40);
		bb_put(b, "x", 1);
	} else {
		str(b, "general.architecture");
	}
	u32(b, RT_GGUF_STRING);
	str(b, "llama");
	str(b, "test.array");
	u32(b, RT_GGUF_ARRAY);
	u32(b, RT_GGUF_STRING);
	u64(b, s->arr_len_huge ? (1ull << 27) : 2);
	str(b, "one");
	if (s->arr_str_len_huge) {
		u64(b, 1ull << 23);
		bb_put(b, "tw", 2);
	} else {
		str(b, "two");
	}
	str(b, "test.u8arr");
	u32(b, RT_GGUF_ARRAY);
	u32(b, RT_GGUF_UINT8);
	u64(b, 3);
	bb_put(b, "\1\2\3", 3);
	if (s->align) {
		str(b, "general.alignment");
		u32(b, RT_GGUF_UINT32);
		u32(b, s->align);
	}
	if (s->bad_vtype) {
		str(b, "test.bad");
		u32(b, s->bad_vtype);
		u32(b, 0);
	}
	if (s->nested_arr) {
		str(b, "test.nested");
		u32(b, RT_GGUF_ARRAY);
		u32(b, RT_GGUF_ARRAY);
		u64(b, 1);
	}
	if (s->dup_key) {
		str(b, "test.u8arr");
		u32(b, RT_GGUF_UINT32);
		u32(b, 1);
	}
	/* tensor infos */
	str(b, s->long_name ? "a_very_long_tensor_name_that_goes_past_the_"
		"ggml_limit_of_64_characters" : "a");
	u32(b, s->a_ndims);
	for (i = 0; i < s->a_ndims; i++)
		u64(b, i == 0 ? s->a_ne0 : 1);
	u32(b, s->a_type);
	u64(b, s->a_off);
	str(b, s->dup_name ? "a" : "b");
	u32(b, 2);
	u64(b, 32);
	u64(b, 2);
	u32(b, RT_TYPE_F16);
	u64(b, s->b_off);
	pad(b, s->align ? s->align : 32);
	/* data: a then b */
	size_a = rt_type_row_bytes(s->a_type, s->a_ne0);
	if (!size_a)
		size_a = 32;
	for (i = 0; i < 32 + size_b - (s->short_data ? 1 : 0); i++) {
		uint8_t v = (uint8_t)(i * 7);

		bb_put(b, &v, 1);
	}
	for (i = 0; i < s->trail; i++)
		bb_put(b, "", 1);
	(void)size_a;
}

static int open_spec(const struct spec *s, char *err, size_t errlen,
		     struct rt_gguf **g)
{
	struct bb b;
	int ret;

	build(s, &b);
	ret = rt_gguf_open_mem(b.p, b.n, g, err, errlen);
	if (ret == 0) {
		/* keep the buffer alive: caller closes quickly */
		rt_gguf_close(*g);
		*g = NULL;
	}
	free(b.p);
	return ret;
}

static void test_valid(void)
{
	struct spec s;
	struct bb b;
	struct rt_gguf *g;
	char err[256] = "";
	const char *str_;
	uint32_t len, et, v;
	uint64_t n;
	const uint8_t *data;
	const struct rt_gguf_tensor *t;

	spec_default(&s);
	build(&s, &b);
	CU_ASSERT_EQUAL_FATAL(rt_gguf_open_mem(b.p, b.n, &g, err, sizeof(err)),
			      0);
	CU_ASSERT_EQUAL(g->n_tensors, 2);
	CU_ASSERT_EQUAL(g->alignment, 32);
	CU_ASSERT_EQUAL(rt_gguf_get_str(g, "general.architecture", &str_,
					&len), 0);
	CU_ASSERT(len == 5 && !memcmp(str_, "llama", 5));
	CU_ASSERT_EQUAL(rt_gguf_get_u32(g, "general.alignment", &v), 0);
	CU_ASSERT_EQUAL(v, 32);
	CU_ASSERT_EQUAL(rt_gguf_get_u32(g, "nope", &v), -ENOENT);
	CU_ASSERT_EQUAL(rt_gguf_get_u32(g, "general.architecture", &v),
			-EINVAL);
	CU_ASSERT_EQUAL(rt_gguf_arr_str(g, "test.array", 1, &str_, &len), 0);
	CU_ASSERT(len == 3 && !memcmp(str_, "two", 3));
	CU_ASSERT_EQUAL(rt_gguf_arr_str(g, "test.array", 2, &str_, &len),
			-ERANGE);
	CU_ASSERT_EQUAL(rt_gguf_get_arr(g, "test.u8arr", &et, &n, &data), 0);
	CU_ASSERT(et == RT_GGUF_UINT8 && n == 3 && data[2] == 3);
	t = rt_gguf_find_tensor(g, "b");
	CU_ASSERT_FATAL(t != NULL);
	CU_ASSERT(t->ne[0] == 32 && t->ne[1] == 2 && t->size == 128);
	CU_ASSERT_EQUAL((const uint8_t *)t->data - b.p, (long)g->data_off + 32);
	CU_ASSERT_PTR_NULL(rt_gguf_find_tensor(g, "c"));
	rt_gguf_close(g);
	/* v2 is accepted too; no alignment key = default 32 */
	s.version = 2;
	s.align = 0;
	CU_ASSERT_EQUAL(open_spec(&s, err, sizeof(err), &g), 0);
	free(b.p);
}

/* Every truncation of a valid file fails cleanly. */
static void test_truncated(void)
{
	struct spec s;
	struct bb b;
	struct rt_gguf *g;
	char err[256];
	size_t n;
	int bad = 0;

	spec_default(&s);
	build(&s, &b);
	for (n = 0; n < b.n; n++) {
		uint8_t *copy = malloc(n ? n : 1);

		CU_ASSERT_FATAL(copy != NULL);
		memcpy(copy, b.p, n);
		err[0] = 0;
		if (rt_gguf_open_mem(copy, n, &g, err, sizeof(err)) != -EINVAL ||
		    !err[0]) {
			bad++;
			if (g)
				rt_gguf_close(g);
		}
		free(copy);
	}
	CU_ASSERT_EQUAL(bad, 0);
	free(b.p);
}

struct bad_case {
	const char *name;
	void (*tweak)(struct spec *s);
	const char *msg;	/* substring expected in the error */
};

#define TW(n, body) static void tw_##n(struct spec *s) { body; }
TW(magic, s->magic = 0x46554746)
TW(ver1, s->version = 1)
TW(ver4, s->version = 4)
TW(ntens, s->n_tensors_override = 1ll << 40)
TW(nkv, s->n_kv_override = 1ll << 40)
TW(ntens_more, s->n_tensors_override = 3)
TW(keylen, s->key_len_huge = 1)
TW(arrlen, s->arr_len_huge = 1)
TW(arrstr, s->arr_str_len_huge = 1)
TW(vtype, s->bad_vtype = 13)
TW(nested, s->nested_arr = 1)
TW(dupkey, s->dup_key = 1)
TW(ndims0, s->a_ndims = 0)
TW(ndims5, s->a_ndims = 5)
TW(dim0, s->a_ne0 = 0)
TW(q4_0, s->a_type = 2)
TW(type99, s->a_type = 99)
TW(q8blk, s->a_type = RT_TYPE_Q8_0; s->a_ne0 = 33)
TW(outfile, s->b_off = 1ull << 30)
TW(offwrap, s->b_off = ~0ull - 31)
TW(misalign, s->b_off = 40)
TW(overlap, s->a_ne0 = 16)
TW(overlap2, s->b_off = 0)
TW(dupname, s->dup_name = 1)
TW(longname, s->long_name = 1)
TW(align3, s->align = 3)
TW(short_data, s->short_data = 1)
TW(hugedim, s->a_ne0 = 1ull << 62)

static const struct bad_case bad_cases[] = {
	{ "wrong magic", tw_magic, "magic" },
	{ "version 1", tw_ver1, "version" },
	{ "version 4", tw_ver4, "version" },
	{ "huge tensor count", tw_ntens, "tensor count" },
	{ "huge kv count", tw_nkv, "metadata count" },
	{ "one tensor too many", tw_ntens_more, "tensor" },
	{ "huge key length", tw_keylen, "length" },
	{ "huge array length", tw_arrlen, "array" },
	{ "huge string in array", tw_arrstr, "truncated" },
	{ "bad value type", tw_vtype, "type" },
	{ "nested array", tw_nested, "nested" },
	{ "duplicate key", tw_dupkey, "duplicate" },
	{ "n_dims 0", tw_ndims0, "n_dims" },
	{ "n_dims 5", tw_ndims5, "n_dims" },
	{ "zero dim", tw_dim0, "dim" },
	{ "q4_0 tensor", tw_q4_0, "unsupported" },
	{ "unknown type", tw_type99, "unsupported" },
	{ "q8_0 not block multiple", tw_q8blk, "block" },
	{ "tensor out of file", tw_outfile, "outside" },
	{ "offset wraps", tw_offwrap, "outside" },
	{ "misaligned data", tw_misalign, "aligned" },
	{ "overlapping tensors", tw_overlap, "overlap" },
	{ "same offset", tw_overlap2, "overlap" },
	{ "duplicate tensor", tw_dupname, "duplicate" },
	{ "name too long", tw_longname, "length" },
	{ "alignment 3", tw_align3, "alignment" },
	{ "data cut short", tw_short_data, "outside" },
	{ "huge dim", tw_hugedim, "dim" },
};

static void test_bad_files(void)
{
	size_t i;

	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct spec s;
		struct rt_gguf *g = NULL;
		char err[256] = "";
		int ret;

		spec_default(&s);
		bad_cases[i].tweak(&s);
		ret = open_spec(&s, err, sizeof(err), &g);
		if (ret >= 0 || !strstr(err, bad_cases[i].msg))
			fprintf(stderr, "  case '%s': ret %d err '%s'\n",
				bad_cases[i].name, ret, err);
		CU_ASSERT(ret < 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad_cases[i].msg));
	}
}

static void test_open_errors(void)
{
	struct rt_gguf *g;
	char err[256] = "";
	char path[] = "/tmp/csd-test-gguf-XXXXXX";
	int fd;

	CU_ASSERT_EQUAL(rt_gguf_open("/nonexistent/x.gguf", &g, err,
				     sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "nonexistent"));
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, "GGUF", 4), 4);
	close(fd);
	CU_ASSERT_EQUAL(rt_gguf_open(path, &g, err, sizeof(err)), -EINVAL);
	unlink(path);
}

/* ---- model level: tiny llama files written with the writer ---- */

struct mspec {
	int skip_key;		/* index into keys to leave out, -1 none */
	const char *arch;
	uint64_t q_rows;	/* attn_q ne[1] */
	uint32_t norm_type;
	int skip_tensor;	/* leave out blk.0.ffn_down */
};

static const char *const mkeys[] = {
	"llama.block_count", "llama.embedding_length",
	"llama.feed_forward_length", "llama.attention.head_count",
	"llama.context_length", "llama.attention.layer_norm_rms_epsilon",
};

static int write_model(const char *path, const struct mspec *ms)
{
	struct rt_gguf_writer *w;
	const char *toks[4] = { "<unk>", "<s>", "</s>", "<0x41>" };
	static const char *const tn[] = {
		"token_embd.weight", "output_norm.weight", "output.weight",
		"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight",
		"blk.0.attn_q.weight", "blk.0.attn_k.weight",
		"blk.0.attn_v.weight", "blk.0.attn_output.weight",
		"blk.0.ffn_gate.weight", "blk.0.ffn_up.weight",
		"blk.0.ffn_down.weight",
	};
	uint64_t ne[12][2] = {
		{ 64, 4 }, { 64, 1 }, { 64, 4 }, { 64, 1 }, { 64, 1 },
		{ 64, 64 }, { 64, 64 }, { 64, 64 }, { 64, 64 },
		{ 64, 96 }, { 64, 96 }, { 96, 64 },
	};
	uint8_t zero[4096] = { 0 };
	int fd, ret, i;

	ne[5][1] = ms->q_rows;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	ret = rt_gguf_writer_create(fd, 32, &w);
	if (ret) {
		close(fd);
		return ret;
	}
	rt_gguf_w_str(w, "general.architecture", ms->arch);
	for (i = 0; i < 6; i++) {
		if (i == ms->skip_key)
			continue;
		if (i == 5)
			rt_gguf_w_f32(w, mkeys[i], 1e-5f);
		else
			rt_gguf_w_u32(w, mkeys[i], i == 0 ? 1 : i == 1 ? 64 :
				      i == 2 ? 96 : i == 3 ? 1 : 128);
	}
	rt_gguf_w_str(w, "tokenizer.ggml.model", "llama");
	rt_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
	for (i = 0; i < 12; i++) {
		uint32_t type = (i == 1 || i == 3 || i == 4) ? ms->norm_type :
				RT_TYPE_F16;

		if (i == 11 && ms->skip_tensor)
			continue;
		rt_gguf_w_tensor(w, tn[i], type, (i == 1 || i == 3 || i == 4) ?
				 1 : 2, ne[i]);
	}
	for (i = 0; i < 12; i++) {
		uint32_t type = (i == 1 || i == 3 || i == 4) ? ms->norm_type :
				RT_TYPE_F16;
		size_t sz = rt_type_row_bytes(type, ne[i][0]) * ne[i][1];

		if (i == 11 && ms->skip_tensor)
			continue;
		while (sz) {
			size_t k = sz < sizeof(zero) ? sz : sizeof(zero);

			rt_gguf_w_data(w, zero, k);
			sz -= k;
		}
	}
	ret = rt_gguf_w_finish(w);
	i = rt_gguf_writer_destroy(w);
	close(fd);
	return ret ? ret : i;
}

static void test_model_checks(void)
{
	char path[] = "/tmp/csd-test-model-XXXXXX";
	struct rt_model *m;
	char err[256];
	struct mspec ms;
	int fd, i;

	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	/* the good one loads */
	ms = (struct mspec){ -1, "llama", 64, RT_TYPE_F32, 0 };
	CU_ASSERT_EQUAL_FATAL(write_model(path, &ms), 0);
	err[0] = 0;
	CU_ASSERT_EQUAL(rt_model_open(path, &m, err, sizeof(err)), 0);
	if (err[0])
		fprintf(stderr, "  good model: %s\n", err);
	if (m) {
		CU_ASSERT_EQUAL(m->hp.n_vocab, 4);
		CU_ASSERT_EQUAL(m->hp.head_dim, 64);
		CU_ASSERT_EQUAL(m->hp.n_head_kv, 1);
		CU_ASSERT_EQUAL(m->byte_tok['A'], 3);
		rt_model_close(m);
	}
	for (i = 0; i < 6; i++) {
		ms = (struct mspec){ i, "llama", 64, RT_TYPE_F32, 0 };
		CU_ASSERT_EQUAL_FATAL(write_model(path, &ms), 0);
		err[0] = 0;
		CU_ASSERT_EQUAL(rt_model_open(path, &m, err, sizeof(err)),
				-EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, mkeys[i]));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing"));
	}
	ms = (struct mspec){ -1, "gptx", 64, RT_TYPE_F32, 0 };
	CU_ASSERT_EQUAL_FATAL(write_model(path, &ms), 0);
	CU_ASSERT_EQUAL(rt_model_open(path, &m, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "architecture"));
	ms = (struct mspec){ -1, "llama", 32, RT_TYPE_F32, 0 };
	CU_ASSERT_EQUAL_FATAL(write_model(path, &ms), 0);
	CU_ASSERT_EQUAL(rt_model_open(path, &m, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "blk.0.attn_q.weight"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "shape"));
	ms = (struct mspec){ -1, "llama", 64, RT_TYPE_F16, 0 };
	CU_ASSERT_EQUAL_FATAL(write_model(path, &ms), 0);
	CU_ASSERT_EQUAL(rt_model_open(path, &m, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "f32"));
	ms = (struct mspec){ -1, "llama", 64, RT_TYPE_F32, 1 };
	CU_ASSERT_EQUAL_FATAL(write_model(path, &ms), 0);
	CU_ASSERT_EQUAL(rt_model_open(path, &m, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing tensor 'blk.0.ffn_down"));
	unlink(path);
}

/* ---- synthetic models ---- */

static uint8_t *slurp(const char *path, size_t *n)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st)) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	p = malloc((size_t)st.st_size + 1);
	if (p && read(fd, p, (size_t)st.st_size) != st.st_size) {
		free(p);
		p = NULL;
	}
	close(fd);
	*n = (size_t)st.st_size;
	return p;
}

static void test_synth_roundtrip(void)
{
	static const uint32_t wt[] = { RT_TYPE_F16, RT_TYPE_F32, RT_TYPE_BF16,
				       RT_TYPE_Q8_0 };
	char p1[] = "/tmp/csd-test-synth-XXXXXX", p2[] = "/tmp/csd-test-synth-XXXXXX";
	struct rt_synth_opts o;
	struct rt_model *m;
	char err[256];
	uint8_t *a, *b;
	size_t na, nb;
	size_t i;
	int fd;

	fd = mkstemp(p1);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	fd = mkstemp(p2);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	for (i = 0; i < 4; i++) {
		memset(&o, 0, sizeof(o));
		o.preset = "small";
		o.layers = 2;
		o.wtype = (int)wt[i];
		o.seed = 5;
		CU_ASSERT_EQUAL_FATAL(rt_synth_write(p1, &o, err, sizeof(err)),
				      0);
		CU_ASSERT_EQUAL_FATAL(rt_model_open(p1, &m, err, sizeof(err)),
				      0);
		CU_ASSERT_EQUAL(m->hp.n_layer, 2);
		CU_ASSERT_EQUAL(m->hp.n_embd, 512);
		CU_ASSERT_EQUAL(m->hp.n_head, 8);
		CU_ASSERT_EQUAL(m->hp.n_head_kv, 2);
		CU_ASSERT_EQUAL(m->hp.n_ff, 1376);
		CU_ASSERT_EQUAL(m->hp.n_vocab, RT_SYNTH_VOCAB);
		CU_ASSERT_EQUAL(m->layers[1].wq.type, wt[i]);
		CU_ASSERT_EQUAL(m->layers[1].wk.n, 128);
		CU_ASSERT_EQUAL(m->bos, 1);
		CU_ASSERT_EQUAL(m->eos, 2);
		CU_ASSERT_EQUAL(m->tok_kind, RT_TOK_LLAMA);
		CU_ASSERT_EQUAL(m->byte_tok[0], 3);
		CU_ASSERT_EQUAL(m->byte_tok[255], 258);
		CU_ASSERT(rt_gguf_find_kv(m->gguf, "tokenizer.ggml.scores") !=
			  NULL);
		CU_ASSERT(rt_gguf_find_kv(m->gguf, "llama.rope.freq_base") !=
			  NULL);
		rt_model_close(m);
	}
	/* deterministic: same options, same bytes (any thread count) */
	o.threads = 1;
	CU_ASSERT_EQUAL_FATAL(rt_synth_write(p1, &o, err, sizeof(err)), 0);
	o.threads = 3;
	CU_ASSERT_EQUAL_FATAL(rt_synth_write(p2, &o, err, sizeof(err)), 0);
	a = slurp(p1, &na);
	b = slurp(p2, &nb);
	CU_ASSERT_FATAL(a && b);
	CU_ASSERT(na == nb && memcmp(a, b, na) == 0);
	free(b);
	o.seed = 6;
	CU_ASSERT_EQUAL_FATAL(rt_synth_write(p2, &o, err, sizeof(err)), 0);
	b = slurp(p2, &nb);
	CU_ASSERT_FATAL(b != NULL);
	CU_ASSERT(na == nb && memcmp(a, b, na) != 0);
	free(a);
	free(b);
	o.preset = "nope";
	CU_ASSERT_EQUAL(rt_synth_write(p2, &o, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "preset"));
	CU_ASSERT_PTR_NOT_NULL(rt_synth_preset_find("7b-gqa"));
	CU_ASSERT_EQUAL(rt_synth_preset_find("13b")->n_ff, 13824);
	unlink(p1);
	unlink(p2);
}

static CU_TestInfo gguf_tests[] = {
	{ "valid_file", test_valid },
	{ "every_truncation", test_truncated },
	{ "bad_files_table", test_bad_files },
	{ "open_errors", test_open_errors },
	{ "model_checks", test_model_checks },
	{ "synth_roundtrip", test_synth_roundtrip },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "gguf", NULL, NULL, gguf_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
