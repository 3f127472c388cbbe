/* SPDX-License-Identifier: MIT */
/*
 * rt_gguf.h - GGUF (v2/v3, little endian) reader and writer.
 *
 * The reader maps the file read-only and validates everything against the
 * file size before exposing it: counts, string and array lengths, tensor
 * dims (n_dims <= 4, every dim > 0), types (F32, F16, BF16, Q8_0 only),
 * data offsets (aligned, inside the file, not overlapping).  Errors return
 * -errno and a human-readable message in @err.
 *
 * Strings inside the file are not NUL-terminated: they are exposed as
 * (pointer, length) pairs into the mapping.
 */
#ifndef CSD_RT_GGUF_H
#define CSD_RT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#define RT_GGUF_MAGIC		0x46554747u	/* "GGUF" little endian */
#define RT_GGUF_DEFAULT_ALIGN	32
#define RT_GGUF_MAX_DIMS	4
#define RT_GGUF_MAX_NAME	63		/* tensor name bytes */
#define RT_GGUF_MAX_TENSORS	(1u << 20)
#define RT_GGUF_MAX_KV		(1u << 20)
#define RT_GGUF_MAX_STR		(1u << 24)	/* one string's bytes */
#define RT_GGUF_MAX_ARR		(1u << 28)	/* one array's elements */

enum rt_gguf_vtype {
	RT_GGUF_UINT8 = 0,
	RT_GGUF_INT8 = 1,
	RT_GGUF_UINT16 = 2,
	RT_GGUF_INT16 = 3,
	RT_GGUF_UINT32 = 4,
	RT_GGUF_INT32 = 5,
	RT_GGUF_FLOAT32 = 6,
	RT_GGUF_BOOL = 7,
	RT_GGUF_STRING = 8,
	RT_GGUF_ARRAY = 9,
	RT_GGUF_UINT64 = 10,
	RT_GGUF_INT64 = 11,
	RT_GGUF_FLOAT64 = 12,
	RT_GGUF_NTYPES
};

struct rt_gguf_kv {
	const char *key;	/* into the mapping, not NUL-terminated */
	uint32_t key_len;
	uint32_t type;		/* enum rt_gguf_vtype */
	uint32_t arr_type;	/* element type if type == ARRAY */
	uint64_t arr_n;		/* elements if ARRAY */
	const uint8_t *val;	/* value bytes (scalar, string len+bytes,
				 * or first array element) */
};

struct rt_gguf_tensor {
	const char *name;	/* into the mapping, not NUL-terminated */
	uint32_t name_len;
	uint32_t n_dims;
	uint64_t ne[RT_GGUF_MAX_DIMS];	/* unused dims are 1 */
	uint32_t type;		/* enum rt_type */
	uint64_t offset;	/* relative to the data section */
	uint64_t size;		/* bytes */
	const void *data;
};

struct rt_gguf {
	uint32_t version;
	uint32_t alignment;
	uint64_t n_kv, n_tensors;
	struct rt_gguf_kv *kv;
	struct rt_gguf_tensor *tensors;
	const uint8_t *base;	/* mapping */
	size_t size;
	uint64_t data_off;	/* start of the data section */
	int mapped;		/* base is ours to munmap */
};

int rt_gguf_open(const char *path, struct rt_gguf **g, char *err,
		 size_t errlen);
/* Parses @size bytes at @buf in place (not copied; keep it alive). */
int rt_gguf_open_mem(const void *buf, size_t size, struct rt_gguf **g,
		     char *err, size_t errlen);
void rt_gguf_close(struct rt_gguf *g);

const struct rt_gguf_kv *rt_gguf_find_kv(const struct rt_gguf *g,
					 const char *key);
const struct rt_gguf_tensor *rt_gguf_find_tensor(const struct rt_gguf *g,
						 const char *name);
/*
 * Typed getters: -ENOENT if missing, -EINVAL if the type does not fit
 * (integers convert between widths when the value is in range; get_f32
 * accepts FLOAT32/FLOAT64 and integers).
 */
int rt_gguf_get_u32(const struct rt_gguf *g, const char *key, uint32_t *v);
int rt_gguf_get_u64(const struct rt_gguf *g, const char *key, uint64_t *v);
int rt_gguf_get_i64(const struct rt_gguf *g, const char *key, int64_t *v);
int rt_gguf_get_f32(const struct rt_gguf *g, const char *key, float *v);
int rt_gguf_get_bool(const struct rt_gguf *g, const char *key, int *v);
int rt_gguf_get_str(const struct rt_gguf *g, const char *key,
		    const char **s, uint32_t *len);
/* Array: element type and count; @data points at the first element. */
int rt_gguf_get_arr(const struct rt_gguf *g, const char *key,
		    uint32_t *elem_type, uint64_t *n, const uint8_t **data);
/*
 * i-th string of a STRING array (walks the array; O(i), callers iterating
 * should use rt_gguf_str_next).  -EINVAL / -ERANGE on error.
 */
int rt_gguf_arr_str(const struct rt_gguf *g, const char *key, uint64_t i,
		    const char **s, uint32_t *len);
/* Reads the string at *p (already validated) and advances *p. */
void rt_gguf_str_next(const uint8_t **p, const char **s, uint32_t *len);
/* Size in bytes of one scalar of @type (0 for STRING / ARRAY / bad). */
size_t rt_gguf_vtype_size(uint32_t type);

/* ---- writer (used by rt_synth and tests) ---- */
struct rt_gguf_writer;
/* Writes to @fd (owned by caller, positioned at 0). */
int rt_gguf_writer_create(int fd, uint32_t alignment,
			  struct rt_gguf_writer **wp);
/* Frees; returns the first error seen (or 0). */
int rt_gguf_writer_destroy(struct rt_gguf_writer *w);
int rt_gguf_w_str(struct rt_gguf_writer *w, const char *key, const char *s);
int rt_gguf_w_u32(struct rt_gguf_writer *w, const char *key, uint32_t v);
int rt_gguf_w_i32(struct rt_gguf_writer *w, const char *key, int32_t v);
int rt_gguf_w_u64(struct rt_gguf_writer *w, const char *key, uint64_t v);
int rt_gguf_w_f32(struct rt_gguf_writer *w, const char *key, float v);
int rt_gguf_w_bool(struct rt_gguf_writer *w, const char *key, int v);
int rt_gguf_w_arr_str(struct rt_gguf_writer *w, const char *key,
		      const char *const *s, uint64_t n);
int rt_gguf_w_arr_f32(struct rt_gguf_writer *w, const char *key,
		      const float *v, uint64_t n);
int rt_gguf_w_arr_i32(struct rt_gguf_writer *w, const char *key,
		      const int32_t *v, uint64_t n);
/* Declares a tensor (data written later, in declaration order). */
int rt_gguf_w_tensor(struct rt_gguf_writer *w, const char *name,
		     uint32_t type, uint32_t n_dims, const uint64_t *ne);
/*
 * Appends tensor data: the first call writes the header, KV and tensor
 * infos; data fills tensors in declaration order (padding is inserted
 * automatically when a tensor is complete).
 */
int rt_gguf_w_data(struct rt_gguf_writer *w, const void *buf, size_t n);
/* Checks every declared tensor got its bytes and flushes. */
int rt_gguf_w_finish(struct rt_gguf_writer *w);

#endif /* CSD_RT_GGUF_H */
