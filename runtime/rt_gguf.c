/* SPDX-License-Identifier: MIT */
/*
 * rt_gguf.c - GGUF reader (validating, mmap'd) and writer.
 *
 * File layout (llama.cpp gguf.cpp, v2/v3 little endian):
 *   u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type,
 *                 u64 offset },
 *   padding to general.alignment (default 32), tensor data.
 * A string is u64 length + bytes; an array is u32 type, u64 n, elements.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_gguf.h"
#include "rt_ops.h"

static void gerr_msg(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void gerr_msg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
}

/*
 * Formats the message into @err and yields @ret.  A macro rather than a
 * variadic function returning @ret: the static analyzer does not inline
 * variadic calls, so it could not see that an error path never returns 0.
 */
#define gerr(err, errlen, ret, ...) ({				\
	int gerr_ret_ = (ret);					\
								\
	gerr_msg((err), (errlen), __VA_ARGS__);			\
	gerr_ret_;						\
})

size_t rt_gguf_vtype_size(uint32_t type)
{
	switch (type) {
	case RT_GGUF_UINT8: case RT_GGUF_INT8: case RT_GGUF_BOOL:
		return 1;
	case RT_GGUF_UINT16: case RT_GGUF_INT16:
		return 2;
	case RT_GGUF_UINT32: case RT_GGUF_INT32: case RT_GGUF_FLOAT32:
		return 4;
	case RT_GGUF_UINT64: case RT_GGUF_INT64: case RT_GGUF_FLOAT64:
		return 8;
	}
	return 0;
}

/* ---- reader ---- */

struct cur {
	const uint8_t *base;
	size_t size, pos;
	char *err;
	size_t errlen;
	const char *what;	/* context for messages */
};

static int need(struct cur *c, uint64_t n)
{
	if (n > c->size - c->pos)
		return gerr(c->err, c->errlen, -EINVAL,
			    "truncated file: %s needs %llu bytes at offset %zu, "
			    "file has %zu", c->what, (unsigned long long)n,
			    c->pos, c->size);
	return 0;
}

static int rd(struct cur *c, void *v, size_t n)
{
	int ret = need(c, n);

	if (ret)
		return ret;
	memcpy(v, c->base + c->pos, n);
	c->pos += n;
	return 0;
}

static int rd_u32(struct cur *c, uint32_t *v)
{
	return rd(c, v, 4);
}

static int rd_u64(struct cur *c, uint64_t *v)
{
	return rd(c, v, 8);
}

/* Reads a string header and checks its bytes are in the file. */
static int rd_str(struct cur *c, const char **s, uint64_t *len, uint64_t max)
{
	uint64_t n;
	int ret = rd_u64(c, &n);

	if (ret)
		return ret;
	if (n > max)
		return gerr(c->err, c->errlen, -EINVAL,
			    "%s: string length %llu exceeds limit %llu",
			    c->what, (unsigned long long)n,
			    (unsigned long long)max);
	ret = need(c, n);
	if (ret)
		return ret;
	*s = (const char *)c->base + c->pos;
	*len = n;
	c->pos += n;
	return 0;
}

/* Skips (validates) one value of @type; arrays are one level deep. */
static int skip_value(struct cur *c, uint32_t type, int nested,
		      uint32_t *arr_type, uint64_t *arr_n)
{
	const char *s;
	uint64_t n, i, sz;
	uint32_t at;
	int ret;

	if (type == RT_GGUF_STRING)
		return rd_str(c, &s, &n, RT_GGUF_MAX_STR);
	if (type == RT_GGUF_ARRAY) {
		if (nested)
			return gerr(c->err, c->errlen, -EINVAL,
				    "%s: nested arrays are not supported",
				    c->what);
		ret = rd_u32(c, &at);
		if (!ret)
			ret = rd_u64(c, &n);
		if (ret)
			return ret;
		if (at == RT_GGUF_ARRAY)
			return gerr(c->err, c->errlen, -EINVAL,
				    "%s: nested arrays are not supported",
				    c->what);
		if (at >= RT_GGUF_NTYPES)
			return gerr(c->err, c->errlen, -EINVAL,
				    "%s: bad array element type %u", c->what,
				    at);
		if (n > RT_GGUF_MAX_ARR)
			return gerr(c->err, c->errlen, -EINVAL,
				    "%s: array length %llu exceeds limit %u",
				    c->what, (unsigned long long)n,
				    RT_GGUF_MAX_ARR);
		*arr_type = at;
		*arr_n = n;
		if (at == RT_GGUF_STRING) {
			/* each string needs at least its 8-byte length */
			if (n > (c->size - c->pos) / 8)
				return gerr(c->err, c->errlen, -EINVAL,
					    "%s: array of %llu strings does not "
					    "fit in the file", c->what,
					    (unsigned long long)n);
			for (i = 0; i < n; i++) {
				ret = rd_str(c, &s, &sz, RT_GGUF_MAX_STR);
				if (ret)
					return ret;
			}
			return 0;
		}
		sz = rt_gguf_vtype_size(at);
		if (n > (c->size - c->pos) / sz)
			return gerr(c->err, c->errlen, -EINVAL,
				    "%s: array of %llu elements does not fit "
				    "in the file", c->what,
				    (unsigned long long)n);
		c->pos += n * sz;
		return 0;
	}
	sz = rt_gguf_vtype_size(type);
	if (!sz)
		return gerr(c->err, c->errlen, -EINVAL,
			    "%s: unknown value type %u", c->what, type);
	ret = need(c, sz);
	if (!ret)
		c->pos += sz;
	return ret;
}

static int name_eq(const char *a, uint32_t alen, const char *b)
{
	size_t bl = strlen(b);

	return alen == bl && memcmp(a, b, bl) == 0;
}

const struct rt_gguf_kv *rt_gguf_find_kv(const struct rt_gguf *g,
					 const char *key)
{
	uint64_t i;

	for (i = 0; g && i < g->n_kv; i++)
		if (name_eq(g->kv[i].key, g->kv[i].key_len, key))
			return &g->kv[i];
	return NULL;
}

const struct rt_gguf_tensor *rt_gguf_find_tensor(const struct rt_gguf *g,
						 const char *name)
{
	uint64_t i;

	for (i = 0; g && i < g->n_tensors; i++)
		if (name_eq(g->tensors[i].name, g->tensors[i].name_len, name))
			return &g->tensors[i];
	return NULL;
}

static int cmp_off(const void *a, const void *b)
{
	const struct rt_gguf_tensor *x = *(const struct rt_gguf_tensor *const *)a;
	const struct rt_gguf_tensor *y = *(const struct rt_gguf_tensor *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse_tensors(struct rt_gguf *g, struct cur *c)
{
	struct rt_gguf_tensor **ord = NULL;
	uint64_t i, j;
	int ret = 0;

	for (i = 0; i < g->n_tensors; i++) {
		struct rt_gguf_tensor *t = &g->tensors[i];
		uint64_t len, nel = 1, rowb;
		uint32_t d, blk;

		c->what = "tensor info";
		ret = rd_str(c, &t->name, &len, RT_GGUF_MAX_NAME);
		if (ret)
			return ret;
		t->name_len = (uint32_t)len;
		if (!len)
			return gerr(c->err, c->errlen, -EINVAL,
				    "tensor %llu: empty name",
				    (unsigned long long)i);
		ret = rd_u32(c, &t->n_dims);
		if (ret)
			return ret;
		if (t->n_dims < 1 || t->n_dims > RT_GGUF_MAX_DIMS)
			return gerr(c->err, c->errlen, -EINVAL,
				    "tensor '%.*s': n_dims %u not in 1..%d",
				    (int)len, t->name, t->n_dims,
				    RT_GGUF_MAX_DIMS);
		for (d = 0; d < RT_GGUF_MAX_DIMS; d++)
			t->ne[d] = 1;
		for (d = 0; d < t->n_dims; d++) {
			ret = rd_u64(c, &t->ne[d]);
			if (ret)
				return ret;
			if (!t->ne[d] || t->ne[d] > ((uint64_t)1 << 40))
				return gerr(c->err, c->errlen, -EINVAL,
					    "tensor '%.*s': bad dim %u = %llu",
					    (int)len, t->name, d,
					    (unsigned long long)t->ne[d]);
			if (nel > ((uint64_t)1 << 48) / t->ne[d])
				return gerr(c->err, c->errlen, -EINVAL,
					    "tensor '%.*s': too many elements",
					    (int)len, t->name);
			nel *= t->ne[d];
		}
		ret = rd_u32(c, &t->type);
		if (!ret)
			ret = rd_u64(c, &t->offset);
		if (ret)
			return ret;
		if (!rt_type_supported(t->type))
			return gerr(c->err, c->errlen, -EINVAL,
				    "tensor '%.*s': unsupported ggml type %u "
				    "(supported: f32, f16, bf16, q8_0)",
				    (int)len, t->name, t->type);
		blk = rt_type_block(t->type);
		if (t->ne[0] % blk)
			return gerr(c->err, c->errlen, -EINVAL,
				    "tensor '%.*s': ne[0] %llu not a multiple "
				    "of the %s block size %u", (int)len,
				    t->name, (unsigned long long)t->ne[0],
				    rt_type_name(t->type), blk);
		rowb = rt_type_row_bytes(t->type, t->ne[0]);
		t->size = rowb * (nel / t->ne[0]);	/* < 2^48 * 4 */
		for (j = 0; j < i; j++)
			if (g->tensors[j].name_len == t->name_len &&
			    !memcmp(g->tensors[j].name, t->name, len))
				return gerr(c->err, c->errlen, -EINVAL,
					    "duplicate tensor '%.*s'",
					    (int)len, t->name);
	}
	/* data section */
	g->data_off = ((uint64_t)c->pos + g->alignment - 1) /
		      g->alignment * g->alignment;
	if (g->n_tensors && g->data_off > g->size)
		return gerr(c->err, c->errlen, -EINVAL,
			    "truncated file: data section at %llu beyond file "
			    "size %zu", (unsigned long long)g->data_off,
			    g->size);
	for (i = 0; i < g->n_tensors; i++) {
		struct rt_gguf_tensor *t = &g->tensors[i];
		uint64_t avail = g->size - g->data_off;

		if (t->offset % g->alignment)
			return gerr(c->err, c->errlen, -EINVAL,
				    "tensor '%.*s': data offset %llu not "
				    "aligned to %u", (int)t->name_len, t->name,
				    (unsigned long long)t->offset,
				    g->alignment);
		if (t->offset > avail || t->size > avail - t->offset)
			return gerr(c->err, c->errlen, -EINVAL,
				    "tensor '%.*s': data [%llu, +%llu) outside "
				    "the file (%llu data bytes)",
				    (int)t->name_len, t->name,
				    (unsigned long long)t->offset,
				    (unsigned long long)t->size,
				    (unsigned long long)avail);
		t->data = g->base + g->data_off + t->offset;
	}
	if (g->n_tensors < 2)
		return 0;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers */
	ord = malloc(g->n_tensors * sizeof(*ord));
	if (!ord)
		return gerr(c->err, c->errlen, -ENOMEM, "out of memory");
	for (i = 0; i < g->n_tensors; i++)
		ord[i] = &g->tensors[i];
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers */
	qsort(ord, g->n_tensors, sizeof(*ord), cmp_off);
	for (i = 1; i < g->n_tensors; i++)
		if (ord[i - 1]->offset + ord[i - 1]->size > ord[i]->offset) {
			ret = gerr(c->err, c->errlen, -EINVAL,
				   "tensors '%.*s' and '%.*s' overlap",
				   (int)ord[i - 1]->name_len, ord[i - 1]->name,
				   (int)ord[i]->name_len, ord[i]->name);
			break;
		}
	free(ord);
	return ret;
}

static int parse(struct rt_gguf *g, char *err, size_t errlen)
{
	struct cur c = { g->base, g->size, 0, err, errlen, "header" };
	uint32_t magic;
	uint64_t i, j;
	int ret;

	ret = rd_u32(&c, &magic);
	if (ret)
		return ret;
	if (magic != RT_GGUF_MAGIC)
		return gerr(err, errlen, -EINVAL,
			    "bad magic 0x%08x (not a GGUF file)", magic);
	ret = rd_u32(&c, &g->version);
	if (ret)
		return ret;
	if (g->version != 2 && g->version != 3)
		return gerr(err, errlen, -EINVAL,
			    "unsupported GGUF version %u (need 2 or 3)",
			    g->version);
	ret = rd_u64(&c, &g->n_tensors);
	if (!ret)
		ret = rd_u64(&c, &g->n_kv);
	if (ret)
		return ret;
	/* a tensor info takes >= 32 bytes, a KV pair >= 13 */
	if (g->n_tensors > RT_GGUF_MAX_TENSORS ||
	    g->n_tensors > (g->size - c.pos) / 32)
		return gerr(err, errlen, -EINVAL,
			    "tensor count %llu too large for the file",
			    (unsigned long long)g->n_tensors);
	if (g->n_kv > RT_GGUF_MAX_KV || g->n_kv > (g->size - c.pos) / 13)
		return gerr(err, errlen, -EINVAL,
			    "metadata count %llu too large for the file",
			    (unsigned long long)g->n_kv);
	g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
	g->tensors = calloc(g->n_tensors ? g->n_tensors : 1,
			    sizeof(*g->tensors));
	if (!g->kv || !g->tensors)
		return gerr(err, errlen, -ENOMEM, "out of memory");
	g->alignment = RT_GGUF_DEFAULT_ALIGN;
	for (i = 0; i < g->n_kv; i++) {
		struct rt_gguf_kv *kv = &g->kv[i];
		uint64_t len;

		c.what = "metadata key";
		ret = rd_str(&c, &kv->key, &len, 65535);
		if (ret)
			return ret;
		kv->key_len = (uint32_t)len;
		for (j = 0; j < i; j++)
			if (g->kv[j].key_len == kv->key_len &&
			    !memcmp(g->kv[j].key, kv->key, len))
				return gerr(err, errlen, -EINVAL,
					    "duplicate metadata key '%.*s'",
					    (int)len, kv->key);
		ret = rd_u32(&c, &kv->type);
		if (ret)
			return ret;
		if (kv->type >= RT_GGUF_NTYPES)
			return gerr(err, errlen, -EINVAL,
				    "metadata '%.*s': unknown value type %u",
				    (int)len, kv->key, kv->type);
		c.what = "metadata value";
		kv->val = c.base + c.pos;
		ret = skip_value(&c, kv->type, 0, &kv->arr_type, &kv->arr_n);
		if (ret)
			return ret;
		if (kv->type == RT_GGUF_ARRAY)
			kv->val += 12;	/* past element type and count */
	}
	if (rt_gguf_find_kv(g, "general.alignment")) {
		uint32_t a;

		if (rt_gguf_get_u32(g, "general.alignment", &a) ||
		    !a || (a & (a - 1)) || a > (1u << 20))
			return gerr(err, errlen, -EINVAL,
				    "general.alignment must be a power of two "
				    "u32 <= 1 MiB");
		g->alignment = a;
	}
	return parse_tensors(g, &c);
}

void rt_gguf_close(struct rt_gguf *g)
{
	if (!g)
		return;
	if (g->mapped && g->base)
		munmap((void *)g->base, g->size);
	free(g->kv);
	free(g->tensors);
	free(g);
}

int rt_gguf_open_mem(const void *buf, size_t size, struct rt_gguf **gp,
		     char *err, size_t errlen)
{
	struct rt_gguf *g;
	int ret;

	if (!gp)
		return -EINVAL;
	*gp = NULL;
	if (!buf && size)
		return gerr(err, errlen, -EINVAL, "no buffer");
	g = calloc(1, sizeof(*g));
	if (!g)
		return gerr(err, errlen, -ENOMEM, "out of memory");
	g->base = buf;
	g->size = size;
	ret = parse(g, err, errlen);
	if (ret) {
		rt_gguf_close(g);
		return ret;
	}
	*gp = g;
	return 0;
}

int rt_gguf_open(const char *path, struct rt_gguf **gp, char *err,
		 size_t errlen)
{
	struct rt_gguf *g = NULL;
	struct stat st;
	void *map;
	int fd, ret;

	if (!gp || !path)
		return -EINVAL;
	*gp = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return gerr(err, errlen, -errno, "%s: %s", path,
			    strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = gerr(err, errlen, -errno, "%s: %s", path,
			   strerror(errno));
		close(fd);
		return ret;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 24) {
		close(fd);
		return gerr(err, errlen, -EINVAL,
			    "%s: not a GGUF file (too small or not regular)",
			    path);
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	ret = -errno;
	close(fd);
	if (map == MAP_FAILED)
		return gerr(err, errlen, ret, "%s: mmap: %s", path,
			    strerror(-ret));
	ret = rt_gguf_open_mem(map, (size_t)st.st_size, &g, err, errlen);
	if (ret) {
		munmap(map, (size_t)st.st_size);
		return ret;
	}
	g->mapped = 1;
	*gp = g;
	return 0;
}

/* ---- typed getters ---- */

static int get_int(const struct rt_gguf_kv *kv, int64_t *s, uint64_t *u,
		   int *is_signed)
{
	union {
		uint8_t u8; int8_t i8; uint16_t u16; int16_t i16;
		uint32_t u32; int32_t i32; uint64_t u64; int64_t i64;
	} v;
	size_t sz = rt_gguf_vtype_size(kv->type);

	if (!sz || kv->type == RT_GGUF_FLOAT32 ||
	    kv->type == RT_GGUF_FLOAT64)
		return -EINVAL;
	memcpy(&v, kv->val, sz);
	*is_signed = 0;
	switch (kv->type) {
	case RT_GGUF_UINT8: case RT_GGUF_BOOL: *u = v.u8; break;
	case RT_GGUF_UINT16: *u = v.u16; break;
	case RT_GGUF_UINT32: *u = v.u32; break;
	case RT_GGUF_UINT64: *u = v.u64; break;
	case RT_GGUF_INT8: *s = v.i8; *is_signed = 1; break;
	case RT_GGUF_INT16: *s = v.i16; *is_signed = 1; break;
	case RT_GGUF_INT32: *s = v.i32; *is_signed = 1; break;
	case RT_GGUF_INT64: *s = v.i64; *is_signed = 1; break;
	}
	return 0;
}

int rt_gguf_get_u64(const struct rt_gguf *g, const char *key, uint64_t *v)
{
	const struct rt_gguf_kv *kv = rt_gguf_find_kv(g, key);
	int64_t s = 0;
	uint64_t u = 0;
	int sg;

	if (!kv)
		return -ENOENT;
	if (get_int(kv, &s, &u, &sg))
		return -EINVAL;
	if (sg) {
		if (s < 0)
			return -EINVAL;
		u = (uint64_t)s;
	}
	*v = u;
	return 0;
}

int rt_gguf_get_u32(const struct rt_gguf *g, const char *key, uint32_t *v)
{
	uint64_t u;
	int ret = rt_gguf_get_u64(g, key, &u);

	if (ret)
		return ret;
	if (u > UINT32_MAX)
		return -EINVAL;
	*v = (uint32_t)u;
	return 0;
}

int rt_gguf_get_i64(const struct rt_gguf *g, const char *key, int64_t *v)
{
	const struct rt_gguf_kv *kv = rt_gguf_find_kv(g, key);
	int64_t s = 0;
	uint64_t u = 0;
	int sg;

	if (!kv)
		return -ENOENT;
	if (get_int(kv, &s, &u, &sg))
		return -EINVAL;
	if (!sg) {
		if (u > INT64_MAX)
			return -EINVAL;
		s = (int64_t)u;
	}
	*v = s;
	return 0;
}

int rt_gguf_get_f32(const struct rt_gguf *g, const char *key, float *v)
{
	const struct rt_gguf_kv *kv = rt_gguf_find_kv(g, key);
	int64_t s;

	if (!kv)
		return -ENOENT;
	if (kv->type == RT_GGUF_FLOAT32) {
		memcpy(v, kv->val, 4);
		return 0;
	}
	if (kv->type == RT_GGUF_FLOAT64) {
		double d;

		memcpy(&d, kv->val, 8);
		*v = (float)d;
		return 0;
	}
	if (rt_gguf_get_i64(g, key, &s))
		return -EINVAL;
	*v = (float)s;
	return 0;
}

int rt_gguf_get_bool(const struct rt_gguf *g, const char *key, int *v)
{
	const struct rt_gguf_kv *kv = rt_gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (kv->type != RT_GGUF_BOOL)
		return -EINVAL;
	*v = kv->val[0] != 0;
	return 0;
}

void rt_gguf_str_next(const uint8_t **p, const char **s, uint32_t *len)
{
	uint64_t n;

	memcpy(&n, *p, 8);
	*s = (const char *)*p + 8;
	*len = (uint32_t)n;
	*p += 8 + n;
}

int rt_gguf_get_str(const struct rt_gguf *g, const char *key,
		    const char **s, uint32_t *len)
{
	const struct rt_gguf_kv *kv = rt_gguf_find_kv(g, key);
	const uint8_t *p;

	if (!kv)
		return -ENOENT;
	if (kv->type != RT_GGUF_STRING)
		return -EINVAL;
	p = kv->val;
	rt_gguf_str_next(&p, s, len);
	return 0;
}

int rt_gguf_get_arr(const struct rt_gguf *g, const char *key,
		    uint32_t *elem_type, uint64_t *n, const uint8_t **data)
{
	const struct rt_gguf_kv *kv = rt_gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (kv->type != RT_GGUF_ARRAY)
		return -EINVAL;
	*elem_type = kv->arr_type;
	*n = kv->arr_n;
	*data = kv->val;
	return 0;
}

int rt_gguf_arr_str(const struct rt_gguf *g, const char *key, uint64_t i,
		    const char **s, uint32_t *len)
{
	const uint8_t *p;
	uint32_t et;
	uint64_t n, j;
	int ret = rt_gguf_get_arr(g, key, &et, &n, &p);

	if (ret)
		return ret;
	if (et != RT_GGUF_STRING)
		return -EINVAL;
	if (i >= n)
		return -ERANGE;
	for (j = 0; j <= i; j++)
		rt_gguf_str_next(&p, s, len);
	return 0;
}

/* ---- writer ---- */

struct wtensor {
	char name[RT_GGUF_MAX_NAME + 1];
	uint32_t type, n_dims;
	uint64_t ne[RT_GGUF_MAX_DIMS];
	uint64_t offset, size;
};

struct rt_gguf_writer {
	int fd;
	int err;
	uint32_t alignment;
	uint64_t n_kv;
	uint8_t *meta;			/* serialized KV pairs */
	size_t meta_len, meta_cap;
	struct wtensor *t;
	uint64_t nt, tcap;
	uint64_t data_size;		/* total data bytes incl. padding */
	int started;
	uint64_t cur;			/* tensor being filled */
	uint64_t cur_done;		/* bytes of it written */
	uint8_t *buf;			/* output buffer */
	size_t buf_len;
};

#define WBUF	(4u << 20)

static int w_flush(struct rt_gguf_writer *w)
{
	size_t off = 0;

	while (off < w->buf_len) {
		ssize_t n = write(w->fd, w->buf + off, w->buf_len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return w->err = -errno;
		}
		off += (size_t)n;
	}
	w->buf_len = 0;
	return 0;
}

static int w_out(struct rt_gguf_writer *w, const void *p, size_t n)
{
	const uint8_t *s = p;

	while (n) {
		size_t k = WBUF - w->buf_len < n ? WBUF - w->buf_len : n;

		memcpy(w->buf + w->buf_len, s, k);
		w->buf_len += k;
		s += k;
		n -= k;
		if (w->buf_len == WBUF && w_flush(w))
			return w->err;
	}
	return 0;
}

static int w_zero(struct rt_gguf_writer *w, size_t n)
{
	static const uint8_t z[64];

	while (n) {
		size_t k = n < sizeof(z) ? n : sizeof(z);

		if (w_out(w, z, k))
			return w->err;
		n -= k;
	}
	return 0;
}

int rt_gguf_writer_create(int fd, uint32_t alignment,
			  struct rt_gguf_writer **wp)
{
	struct rt_gguf_writer *w;

	*wp = NULL;
	if (!alignment)
		alignment = RT_GGUF_DEFAULT_ALIGN;
	if (alignment & (alignment - 1))
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->buf = malloc(WBUF);
	if (!w->buf) {
		free(w);
		return -ENOMEM;
	}
	w->fd = fd;
	w->alignment = alignment;
	*wp = w;
	return 0;
}

int rt_gguf_writer_destroy(struct rt_gguf_writer *w)
{
	int ret;

	if (!w)
		return 0;
	ret = w->err;
	free(w->meta);
	free(w->t);
	free(w->buf);
	free(w);
	return ret;
}

static int m_put(struct rt_gguf_writer *w, const void *p, size_t n)
{
	if (w->err)
		return w->err;
	if (w->started)
		return w->err = -EINVAL;
	if (w->meta_len + n > w->meta_cap) {
		size_t cap = w->meta_cap ? w->meta_cap : 4096;
		uint8_t *m;

		while (cap < w->meta_len + n)
			cap *= 2;
		m = realloc(w->meta, cap);
		if (!m)
			return w->err = -ENOMEM;
		w->meta = m;
		w->meta_cap = cap;
	}
	memcpy(w->meta + w->meta_len, p, n);
	w->meta_len += n;
	return 0;
}

static int m_str(struct rt_gguf_writer *w, const char *s)
{
	uint64_t n = strlen(s);

	if (m_put(w, &n, 8))
		return w->err;
	return m_put(w, s, n);
}

static int m_key(struct rt_gguf_writer *w, const char *key, uint32_t type)
{
	if (m_str(w, key) || m_put(w, &type, 4))
		return w->err;
	w->n_kv++;
	return 0;
}

int rt_gguf_w_str(struct rt_gguf_writer *w, const char *key, const char *s)
{
	if (m_key(w, key, RT_GGUF_STRING))
		return w->err;
	return m_str(w, s);
}

int rt_gguf_w_u32(struct rt_gguf_writer *w, const char *key, uint32_t v)
{
	if (m_key(w, key, RT_GGUF_UINT32))
		return w->err;
	return m_put(w, &v, 4);
}

int rt_gguf_w_i32(struct rt_gguf_writer *w, const char *key, int32_t v)
{
	if (m_key(w, key, RT_GGUF_INT32))
		return w->err;
	return m_put(w, &v, 4);
}

int rt_gguf_w_u64(struct rt_gguf_writer *w, const char *key, uint64_t v)
{
	if (m_key(w, key, RT_GGUF_UINT64))
		return w->err;
	return m_put(w, &v, 8);
}

int rt_gguf_w_f32(struct rt_gguf_writer *w, const char *key, float v)
{
	if (m_key(w, key, RT_GGUF_FLOAT32))
		return w->err;
	return m_put(w, &v, 4);
}

int rt_gguf_w_bool(struct rt_gguf_writer *w, const char *key, int v)
{
	uint8_t b = v ? 1 : 0;

	if (m_key(w, key, RT_GGUF_BOOL))
		return w->err;
	return m_put(w, &b, 1);
}

static int m_arr(struct rt_gguf_writer *w, const char *key, uint32_t et,
		 uint64_t n)
{
	if (m_key(w, key, RT_GGUF_ARRAY) || m_put(w, &et, 4))
		return w->err;
	return m_put(w, &n, 8);
}

int rt_gguf_w_arr_str(struct rt_gguf_writer *w, const char *key,
		      const char *const *s, uint64_t n)
{
	uint64_t i;

	if (m_arr(w, key, RT_GGUF_STRING, n))
		return w->err;
	for (i = 0; i < n; i++)
		if (m_str(w, s[i]))
			return w->err;
	return 0;
}

int rt_gguf_w_arr_f32(struct rt_gguf_writer *w, const char *key,
		      const float *v, uint64_t n)
{
	if (m_arr(w, key, RT_GGUF_FLOAT32, n))
		return w->err;
	return m_put(w, v, n * 4);
}

int rt_gguf_w_arr_i32(struct rt_gguf_writer *w, const char *key,
		      const int32_t *v, uint64_t n)
{
	if (m_arr(w, key, RT_GGUF_INT32, n))
		return w->err;
	return m_put(w, v, n * 4);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

int rt_gguf_w_tensor(struct rt_gguf_writer *w, const char *name,
		     uint32_t type, uint32_t n_dims, const uint64_t *ne)
{
	struct wtensor *t;
	uint64_t nel = 1, rowb;
	uint32_t d;

	if (w->err)
		return w->err;
	if (w->started || strlen(name) > RT_GGUF_MAX_NAME || !n_dims ||
	    n_dims > RT_GGUF_MAX_DIMS || !rt_type_supported(type))
		return w->err = -EINVAL;
	if (w->nt == w->tcap) {
		uint64_t cap = w->tcap ? w->tcap * 2 : 64;
		struct wtensor *nt = realloc(w->t, cap * sizeof(*nt));

		if (!nt)
			return w->err = -ENOMEM;
		w->t = nt;
		w->tcap = cap;
	}
	t = &w->t[w->nt];
	memset(t, 0, sizeof(*t));
	strcpy(t->name, name);
	t->type = type;
	t->n_dims = n_dims;
	for (d = 0; d < n_dims; d++) {
		if (!ne[d])
			return w->err = -EINVAL;
		t->ne[d] = ne[d];
		nel *= ne[d];
	}
	rowb = rt_type_row_bytes(type, ne[0]);
	if (!rowb)
		return w->err = -EINVAL;
	t->size = rowb * (nel / ne[0]);
	t->offset = align_up(w->data_size, w->alignment);
	w->data_size = t->offset + t->size;
	w->nt++;
	return 0;
}

static int w_start(struct rt_gguf_writer *w)
{
	uint32_t magic = RT_GGUF_MAGIC, ver = 3;
	uint64_t i, pos;

	if (w_out(w, &magic, 4) || w_out(w, &ver, 4) ||
	    w_out(w, &w->nt, 8) || w_out(w, &w->n_kv, 8) ||
	    w_out(w, w->meta, w->meta_len))
		return w->err;
	pos = 24 + w->meta_len;
	for (i = 0; i < w->nt; i++) {
		struct wtensor *t = &w->t[i];
		uint64_t n = strlen(t->name);

		if (w_out(w, &n, 8) || w_out(w, t->name, n) ||
		    w_out(w, &t->n_dims, 4) ||
		    w_out(w, t->ne, 8 * (size_t)t->n_dims) ||
		    w_out(w, &t->type, 4) || w_out(w, &t->offset, 8))
			return w->err;
		pos += 8 + n + 4 + 8 * t->n_dims + 4 + 8;
	}
	if (w_zero(w, align_up(pos, w->alignment) - pos))
		return w->err;
	w->started = 1;
	w->cur = 0;
	w->cur_done = 0;
	return 0;
}

/* Pads after a completed tensor up to the next one's offset. */
static int w_advance(struct rt_gguf_writer *w)
{
	while (w->cur < w->nt && w->cur_done == w->t[w->cur].size) {
		uint64_t end = w->t[w->cur].offset + w->t[w->cur].size;
		uint64_t next = w->cur + 1 < w->nt ? w->t[w->cur + 1].offset :
			        end;

		if (w_zero(w, next - end))
			return w->err;
		w->cur++;
		w->cur_done = 0;
	}
	return 0;
}

int rt_gguf_w_data(struct rt_gguf_writer *w, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	if (w->err)
		return w->err;
	if (!w->started && w_start(w))
		return w->err;
	while (n) {
		uint64_t room;
		size_t k;

		if (w_advance(w))
			return w->err;
		if (w->cur >= w->nt)
			return w->err = -EINVAL;	/* too much data */
		room = w->t[w->cur].size - w->cur_done;
		k = room < n ? (size_t)room : n;
		if (w_out(w, p, k))
			return w->err;
		w->cur_done += k;
		p += k;
		n -= k;
	}
	return w_advance(w);
}

int rt_gguf_w_finish(struct rt_gguf_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->started && w_start(w))
		return w->err;
	if (w_advance(w))
		return w->err;
	if (w->cur != w->nt)
		return w->err = -EINVAL;	/* missing tensor data */
	return w_flush(w);
}
