#include "base/rangeset.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/vec.h"

/* Index granularity: about this many keys per radix bucket (2: 4.3x a plain binary
 * search at 1M ranges for ~1.5 bytes a range; bench/rangeset), and at most 2^MAX_BITS
 * buckets (16 MiB of index). */
#define KEYS_PER_BUCKET 2
#define MAX_BITS        22

/* Both families are built in parallel when each has at least this many ranges (a thread
 * costs some 50 us; tests lower it to take the threaded path with small sets). */
#ifndef PARALLEL_MIN
#define PARALLEL_MIN 4096
#endif

struct table {
	size_t n;        /* segments; keys[0] == 0 */
	uint32_t *keys4; /* IPv4 segment starts, or */
	u128 *keys6;     /* IPv6 segment starts */
	uint16_t *vals;  /* owner of each segment */
	uint32_t *idx;   /* (1 << bits) + 1 bucket starts into keys */
	unsigned width;  /* 32 or 128 */
	unsigned cpl;    /* common prefix length of keys[1..n) */
	unsigned bits;   /* radix bits below the prefix */
	u128 prefix;     /* the common prefix, right-aligned */
};

struct rangeset {
	struct table t4, t6;
};

/* malloc of n elements, with the product checked (vec.h) */
static void *
alloc_array(size_t n, size_t elem)
{
	size_t bytes;

	void *p;

	if (vec_bytes(n, elem, &bytes) < 0)
		return NULL;
	if ((p = malloc(bytes ? bytes : 1)))
		vec_hint_huge(p, bytes);
	return p;
}

/* Gives back the unused tail of an array of n elements; NULL (p untouched) on failure. */
static void *
shrink_array(void *p, size_t n, size_t elem)
{
	size_t bytes;

	if (vec_bytes(n, elem, &bytes) < 0)
		return NULL;
	return realloc(p, bytes ? bytes : 1);
}

/* The conflicts one family's build found, in the order found: reported to the caller's
 * callback after the build, from the calling thread (a family may be built on another). */
struct conflict {
	uint32_t a, b;
	enum rangeset_conflict kind;
};

struct conflicts {
	struct conflict *v;
	size_t n, cap;
	bool wanted; /* the caller has a callback */
	bool failed; /* out of memory: the build fails */
};

static void
conflict_add(struct conflicts *c, enum rangeset_conflict kind, size_t a, size_t b)
{
	if (!c->wanted || c->failed)
		return;
	if (VEC_RESERVE(c->v, c->cap, c->n + 1) < 0) {
		c->failed = true;
		return;
	}
	c->v[c->n++] = (struct conflict){.a = (uint32_t)a, .b = (uint32_t)b, .kind = kind};
}

/*
 * Runs fn(a) on a thread of its own and fn(b) on the caller's, then joins; both on the
 * caller's, one after the other, when parallel is false or no thread can be had.  The
 * thread starts with every signal blocked: the daemon's signals are for its own threads.
 */
static void
run_pair(void *(*fn)(void *), void *a, void *b, bool parallel)
{
	sigset_t all, old;
	pthread_t th;
	bool started = false;

	if (parallel) {
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		started = pthread_create(&th, NULL, fn, a) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	fn(b);
	if (started)
		pthread_join(th, NULL);
	else
		fn(a);
}

/* One of the caller's ranges, as sorted and swept.  Each family has its own: IPv4 items
 * hold their bounds in 32 bits (16 bytes an item, a third of IPv6's 48), so a million of
 * them are sorted and swept with a third of the memory traffic. */
#define DEFINE_ITEM(SFX, KEY)                                                                      \
	struct item##SFX {                                                                         \
		KEY lo, hi;                                                                        \
		uint32_t entry; /* index into the caller's entries */                              \
		uint16_t owner;                                                                    \
		uint8_t prio;                                                                      \
	};                                                                                         \
	struct build##SFX {                                                                        \
		struct item##SFX *it;                                                              \
		size_t n;                                                                          \
		struct conflicts *cf;                                                              \
		bool spawn; /* may start a thread of its own */                                    \
	};

DEFINE_ITEM(4, uint32_t)
DEFINE_ITEM(6, u128)

#define KEY_LESS(a, b) (*(a) < *(b))

/*
 * Introsort specialised per element type (qsort's indirect calls and byte copies cost
 * half the build time at 1M ranges): median-of-three quicksort, insertion sort for short
 * runs, heapsort when the recursion gets deep.
 */
#define DEFINE_SORT(NAME, T, LESS)                                                                 \
	static void NAME##_heapify(T *a, size_t n, size_t i)                                       \
	{                                                                                          \
		for (;;) {                                                                         \
			size_t m = i, l = 2 * i + 1, r = l + 1;                                    \
			if (l < n && LESS(&a[m], &a[l]))                                           \
				m = l;                                                             \
			if (r < n && LESS(&a[m], &a[r]))                                           \
				m = r;                                                             \
			if (m == i)                                                                \
				return;                                                            \
			T t = a[i];                                                                \
			a[i] = a[m];                                                               \
			a[m] = t;                                                                  \
			i = m;                                                                     \
		}                                                                                  \
	}                                                                                          \
	static void NAME##_rec(T *a, size_t n, int depth)                                          \
	{                                                                                          \
		while (n > 16) {                                                                   \
			if (depth-- == 0) {                                                        \
				for (size_t i = n / 2; i-- > 0;)                                   \
					NAME##_heapify(a, n, i);                                   \
				for (size_t i = n - 1; i > 0; i--) {                               \
					T t = a[0];                                                \
					a[0] = a[i];                                               \
					a[i] = t;                                                  \
					NAME##_heapify(a, i, 0);                                   \
				}                                                                  \
				return;                                                            \
			}                                                                          \
			size_t mid = n / 2;                                                        \
			if (LESS(&a[mid], &a[0])) {                                                \
				T t = a[mid];                                                      \
				a[mid] = a[0];                                                     \
				a[0] = t;                                                          \
			}                                                                          \
			if (LESS(&a[n - 1], &a[mid])) {                                            \
				T t = a[mid];                                                      \
				a[mid] = a[n - 1];                                                 \
				a[n - 1] = t;                                                      \
				if (LESS(&a[mid], &a[0])) {                                        \
					t = a[mid];                                                \
					a[mid] = a[0];                                             \
					a[0] = t;                                                  \
				}                                                                  \
			}                                                                          \
			T pivot = a[mid];                                                          \
			size_t i = 0, j = n - 1;                                                   \
			for (;;) {                                                                 \
				while (LESS(&a[i], &pivot))                                        \
					i++;                                                       \
				while (LESS(&pivot, &a[j]))                                        \
					j--;                                                       \
				if (i >= j)                                                        \
					break;                                                     \
				T t = a[i];                                                        \
				a[i] = a[j];                                                       \
				a[j] = t;                                                          \
				i++;                                                               \
				j--;                                                               \
			}                                                                          \
			/* recurse into the smaller part, loop on the larger */                    \
			if (j + 1 < n - j - 1) {                                                   \
				NAME##_rec(a, j + 1, depth);                                       \
				a += j + 1;                                                        \
				n -= j + 1;                                                        \
			} else {                                                                   \
				NAME##_rec(a + j + 1, n - j - 1, depth);                           \
				n = j + 1;                                                         \
			}                                                                          \
		}                                                                                  \
		for (size_t i = 1; i < n; i++) {                                                   \
			T t = a[i];                                                                \
			size_t j = i;                                                              \
			for (; j > 0 && LESS(&t, &a[j - 1]); j--)                                  \
				a[j] = a[j - 1];                                                   \
			a[j] = t;                                                                  \
		}                                                                                  \
	}                                                                                          \
	static void NAME(T *a, size_t n)                                                           \
	{                                                                                          \
		int depth = 0;                                                                     \
		for (size_t m = n; m > 1; m >>= 1)                                                 \
			depth += 2;                                                                \
		NAME##_rec(a, n, depth);                                                           \
	}

#ifndef MAX_SORT_BITS
#define MAX_SORT_BITS 8
#endif

/* A bucket of at least this many items gets a radix pass of its own on the next bits
 * (from ~2,000 items a bucket at 500k to ~8: one pass in cache instead of some eight
 * levels of quicksort); smaller ones go to the comparison sort. */
#ifndef RADIX_MIN
#define RADIX_MIN 64
#endif

static unsigned
top_bit(u128 x)
{
	uint64_t h = (uint64_t)(x >> 64), l = (uint64_t)x;

	return h ? 127u - (unsigned)__builtin_clzll(h) : 63u - (unsigned)__builtin_clzll(l);
}

/* A segment-tree node: up to two items of distinct owners found in its span. */
struct pair {
	int32_t a, b;
};

static unsigned
clz128(u128 x, unsigned width)
{
	unsigned n = 0;
	for (int bit = (int)width - 1; bit >= 0 && !((x >> bit) & 1); bit--)
		n++;
	return n;
}

static u128
low_mask(unsigned k)
{
	return k >= 128 ? ~(u128)0 : (((u128)1 << k) - 1);
}

/* The segment list being built: starts ascending, each with its owner; adjacent
 * segments of one owner are merged as they come.  IPv4 starts are kept in 32 bits from
 * the start (a 1M-range table would touch 16 MiB of u128 keys to keep 4 of them). */
struct segs {
	u128 *keys;      /* IPv6, or */
	uint32_t *keys4; /* IPv4 */
	uint16_t *vals;
	size_t n;
};

static inline u128
seg_key(const struct segs *o, size_t i)
{
	return o->keys4 ? (u128)o->keys4[i] : o->keys[i];
}

/* Builds the radix index over the segment starts. */
static int
build_index(struct table *t, const struct segs *o)
{
	unsigned want = 0, freebits;
	size_t nb, i = 0;

	t->cpl = 0;
	t->prefix = 0;
	if (t->n >= 2) {
		t->cpl = clz128(seg_key(o, 1) ^ seg_key(o, t->n - 1), t->width);
		if (t->cpl > t->width)
			t->cpl = t->width;
		t->prefix = t->cpl == 0 ? 0 : seg_key(o, 1) >> (t->width - t->cpl);
	}
	while (want < MAX_BITS && ((size_t)KEYS_PER_BUCKET << (want + 1)) <= t->n)
		want++;
	freebits = t->width - t->cpl;
	t->bits = want < freebits ? want : freebits;
	nb = (size_t)1 << t->bits;
	t->idx = alloc_array(nb + 1, sizeof(*t->idx));
	if (!t->idx)
		return -1;
	u128 base = t->cpl == 0 ? 0 : t->prefix << (t->width - t->cpl);
	unsigned shift = t->width - t->cpl - t->bits;
	for (size_t b = 0; b < nb; b++) {
		u128 start = base | (shift >= 128 ? 0 : ((u128)b << shift));
		while (i < t->n && seg_key(o, i) < start)
			i++;
		t->idx[b] = (uint32_t)i;
	}
	t->idx[nb] = (uint32_t)t->n;
	return 0;
}

static void
emit(struct segs *o, u128 pos, uint16_t owner)
{
	if (o->n > 0 && seg_key(o, o->n - 1) == pos) {
		o->vals[o->n - 1] = owner;
		if (o->n > 1 && o->vals[o->n - 2] == owner)
			o->n--;
		return;
	}
	if (o->n > 0 && o->vals[o->n - 1] == owner)
		return;
	if (o->keys4)
		o->keys4[o->n] = (uint32_t)pos;
	else
		o->keys[o->n] = pos;
	o->vals[o->n++] = owner;
}
/* Gives the segments o to t, with their radix index; o's arrays are t's or freed after. */
static int
finish_table(struct table *t, struct segs *o)
{
	t->n = o->n;
	if (build_index(t, o) < 0)
		return -1;
	t->vals = shrink_array(o->vals, o->n, sizeof(*o->vals));
	if (!t->vals) {
		t->vals = o->vals;
		o->vals = NULL;
		return -1;
	}
	o->vals = NULL;
	if (o->keys4) {
		if (!(t->keys4 = shrink_array(o->keys4, o->n, sizeof(*o->keys4))))
			return -1;
		o->keys4 = NULL;
	} else {
		if (!(t->keys6 = shrink_array(o->keys, o->n, sizeof(*o->keys))))
			return -1;
		o->keys = NULL;
	}
	return 0;
}

/*
 * The build of one family's table, generic over its item (SFX: 4 or 6) and key type.
 *
 * Sorting: items in item_less order (lo asc, hi desc: the containing range first, then
 * prio, owner, entry).  An in-place radix pass (American flag sort) on up to
 * MAX_SORT_BITS of the leading bits in which their lo differ, then each bucket by
 * comparison; lo is the first key, so the buckets are in order.  256 buckets keep the
 * pass's 256 write positions in cache (with 65,536 every move missed it) and leave
 * buckets the comparison sort finishes in cache.  Without memory for the counts it is
 * the comparison sort alone.
 */
#define DEFINE_SORT_ITEMS(SFX, KEY)                                                                \
	static inline bool item##SFX##_less(const struct item##SFX *a, const struct item##SFX *b)  \
	{                                                                                          \
		if (a->lo != b->lo)                                                                \
			return a->lo < b->lo;                                                      \
		if (a->hi != b->hi)                                                                \
			return a->hi > b->hi;                                                      \
		if (a->prio != b->prio)                                                            \
			return a->prio < b->prio;                                                  \
		if (a->owner != b->owner)                                                          \
			return a->owner < b->owner;                                                \
		return a->entry < b->entry;                                                        \
	}                                                                                          \
	DEFINE_SORT(sort_items##SFX, struct item##SFX, item##SFX##_less)                           \
	DEFINE_SORT(sort_keys##SFX, KEY, KEY_LESS)                                                 \
	struct bucketjob##SFX {                                                                    \
		struct item##SFX *it;                                                              \
		const size_t *start;                                                               \
		size_t b0, b1; /* buckets [b0, b1) */                                              \
	};                                                                                         \
	static void sort_bucketed##SFX(struct item##SFX *it, size_t n, bool spawn);                \
	static void *sort_buckets##SFX(void *arg)                                                  \
	{                                                                                          \
		const struct bucketjob##SFX *j = arg;                                              \
		for (size_t b = j->b0; b < j->b1; b++) {                                           \
			size_t nb = j->start[b + 1] - j->start[b];                                 \
			if (nb >= RADIX_MIN)                                                       \
				sort_bucketed##SFX(j->it + j->start[b], nb, false);                \
			else                                                                       \
				sort_items##SFX(j->it + j->start[b], nb);                          \
		}                                                                                  \
		return NULL;                                                                       \
	}                                                                                          \
	static void sort_bucketed##SFX(struct item##SFX *it, size_t n, bool spawn)                 \
	{                                                                                          \
		unsigned nbits = 0, shift;                                                         \
		size_t nb, *start = NULL, *next = NULL;                                            \
		KEY mn, mx;                                                                        \
                                                                                                   \
		if (n < 16) {                                                                      \
			sort_items##SFX(it, n);                                                    \
			return;                                                                    \
		}                                                                                  \
		mn = mx = it[0].lo;                                                                \
		for (size_t i = 1; i < n; i++) {                                                   \
			mn = it[i].lo < mn ? it[i].lo : mn;                                        \
			mx = it[i].lo > mx ? it[i].lo : mx;                                        \
		}                                                                                  \
		while (nbits < MAX_SORT_BITS && ((size_t)4 << (nbits + 1)) <= n)                   \
			nbits++;                                                                   \
		if (mn != mx && top_bit(mn ^ mx) + 1 < nbits)                                      \
			nbits = top_bit(mn ^ mx) + 1;                                              \
		nb = (size_t)1 << nbits;                                                           \
		if (mn == mx || !(start = calloc(nb + 1, sizeof(*start))) ||                       \
		    !(next = malloc(nb * sizeof(*next)))) {                                        \
			free(start);                                                               \
			sort_items##SFX(it, n);                                                    \
			return;                                                                    \
		}                                                                                  \
		shift = top_bit(mn ^ mx) + 1 - nbits;                                              \
		for (size_t i = 0; i < n; i++)                                                     \
			start[((size_t)(it[i].lo >> shift) & (nb - 1)) + 1]++;                     \
		for (size_t b = 0; b < nb; b++) {                                                  \
			start[b + 1] += start[b];                                                  \
			next[b] = start[b];                                                        \
		}                                                                                  \
		for (size_t b = 0; b < nb; b++) {                                                  \
			while (next[b] < start[b + 1]) {                                           \
				struct item##SFX t = it[next[b]];                                  \
				size_t d = (size_t)(t.lo >> shift) & (nb - 1);                     \
				while (d != b) {                                                   \
					struct item##SFX u = it[next[d]];                          \
					it[next[d]++] = t;                                         \
					t = u;                                                     \
					d = (size_t)(t.lo >> shift) & (nb - 1);                    \
				}                                                                  \
				it[next[b]++] = t;                                                 \
			}                                                                          \
		}                                                                                  \
		/* the buckets are independent: two threads sort about half of the items each */   \
		size_t half = 0;                                                                   \
		while (half < nb && start[half] < n / 2)                                           \
			half++;                                                                    \
		struct bucketjob##SFX lo = {it, start, 0, half}, hi = {it, start, half, nb};       \
		run_pair(sort_buckets##SFX, &hi, &lo, (spawn && n >= PARALLEL_MIN));               \
		free(start);                                                                       \
		free(next);                                                                        \
	}

/*
 * Conflict checks over the sorted items.  Identical: equal neighbours.  Partial: item q
 * partially overlaps an earlier item p exactly when lo_p <= lo_q <= hi_p < hi_q.  Earlier
 * items are kept in a segment tree over their (compressed) hi; q asks for one of another
 * owner with hi in [lo_q, hi_q).
 */
#define DEFINE_CHECKS(SFX, KEY)                                                                    \
	static void check_identical##SFX(struct build##SFX *b)                                     \
	{                                                                                          \
		for (size_t i = 0; i < b->n;) {                                                    \
			size_t j = i + 1;                                                          \
			while (j < b->n && b->it[j].lo == b->it[i].lo &&                           \
			       b->it[j].hi == b->it[i].hi)                                         \
				j++;                                                               \
			/* sorted by prio: it[i] holds the best priority of the run */             \
			for (size_t k = i + 1; k < j && b->it[k].prio == b->it[i].prio; k++) {     \
				if (b->it[k].owner != b->it[i].owner) {                            \
					conflict_add(b->cf, RANGESET_IDENTICAL, b->it[i].entry,    \
					             b->it[k].entry);                              \
					break;                                                     \
				}                                                                  \
			}                                                                          \
			i = j;                                                                     \
		}                                                                                  \
	}                                                                                          \
	static struct pair pair_merge##SFX(const struct item##SFX *it, struct pair x,              \
	                                   struct pair y) {                                        \
		int32_t c[2] = {y.a, y.b};                                                         \
                                                                                                   \
		for (int k = 0; k < 2; k++) {                                                      \
			if (c[k] < 0)                                                              \
				continue;                                                          \
			if (x.a < 0)                                                               \
				x.a = c[k];                                                        \
			else if (x.b < 0 && it[c[k]].owner != it[x.a].owner)                       \
				x.b = c[k];                                                        \
		}                                                                                  \
		return x;                                                                          \
	} static size_t lower_bound##SFX(const KEY *v, size_t n, KEY x)                            \
	{                                                                                          \
		size_t lo = 0, hi = n;                                                             \
		while (lo < hi) {                                                                  \
			size_t mid = lo + (hi - lo) / 2;                                           \
			if (v[mid] < x)                                                            \
				lo = mid + 1;                                                      \
			else                                                                       \
				hi = mid;                                                          \
		}                                                                                  \
		return lo;                                                                         \
	}                                                                                          \
	static int check_partial##SFX(struct build##SFX *b)                                        \
	{                                                                                          \
		size_t m = 0, cap = 1;                                                             \
		KEY *his;                                                                          \
		struct pair *tree;                                                                 \
                                                                                                   \
		his = alloc_array(b->n, sizeof(*his));                                             \
		if (!his)                                                                          \
			return -1;                                                                 \
		for (size_t i = 0; i < b->n; i++)                                                  \
			his[i] = b->it[i].hi;                                                      \
		sort_keys##SFX(his, b->n);                                                         \
		for (size_t i = 0; i < b->n; i++)                                                  \
			if (m == 0 || his[m - 1] != his[i])                                        \
				his[m++] = his[i];                                                 \
		while (cap < m)                                                                    \
			cap <<= 1;                                                                 \
		tree = alloc_array(2 * cap, sizeof(*tree));                                        \
		if (!tree) {                                                                       \
			free(his);                                                                 \
			return -1;                                                                 \
		}                                                                                  \
		for (size_t i = 0; i < 2 * cap; i++)                                               \
			tree[i] = (struct pair){-1, -1};                                           \
                                                                                                   \
		for (size_t q = 0; q < b->n; q++) {                                                \
			const struct item##SFX *iq = &b->it[q];                                    \
			size_t l = lower_bound##SFX(his, m, iq->lo),                               \
			       r = lower_bound##SFX(his, m, iq->hi);                               \
			struct pair res = {-1, -1};                                                \
                                                                                                   \
			for (size_t lo = l + cap, hi = r + cap; lo < hi; lo >>= 1, hi >>= 1) {     \
				if (lo & 1)                                                        \
					res = pair_merge##SFX(b->it, res, tree[lo++]);             \
				if (hi & 1)                                                        \
					res = pair_merge##SFX(b->it, res, tree[--hi]);             \
			}                                                                          \
			if (res.a >= 0 && b->it[res.a].owner != iq->owner)                         \
				conflict_add(b->cf, RANGESET_PARTIAL, b->it[res.a].entry,          \
				             iq->entry);                                           \
			else if (res.b >= 0)                                                       \
				conflict_add(b->cf, RANGESET_PARTIAL, b->it[res.b].entry,          \
				             iq->entry);                                           \
                                                                                                   \
			size_t i = r + cap;                                                        \
			tree[i] = pair_merge##SFX(b->it, tree[i], (struct pair){(int32_t)q, -1});  \
			for (i >>= 1; i; i >>= 1)                                                  \
				tree[i] = pair_merge##SFX(b->it, tree[2 * i], tree[2 * i + 1]);    \
		}                                                                                  \
		free(tree);                                                                        \
		free(his);                                                                         \
		return 0;                                                                          \
	}

/*
 * Flattening into segments.  The common case, sweep_laminar: ranges that are pairwise
 * nested or disjoint (CIDR blocks always are).  Then the smallest range containing a
 * point is the innermost one, the top of a stack swept in (lo asc, hi desc) order: O(n).
 * It returns 0, or 1 when two ranges overlap partly (the caller then takes the general
 * path), -1 without memory.  The general case, sweep_heap: a sweep over every boundary
 * with a heap of the ranges in force, smallest on top.  O(n log n).
 */
#define DEFINE_SWEEPS(SFX, KEY)                                                                    \
	struct heap##SFX {                                                                         \
		uint32_t *v;                                                                       \
		size_t n;                                                                          \
		const struct item##SFX *it;                                                        \
	};                                                                                         \
	static bool heap_less##SFX(const struct heap##SFX *h, uint32_t a, uint32_t b)              \
	{                                                                                          \
		const struct item##SFX *x = &h->it[a], *y = &h->it[b];                             \
		KEY sx = x->hi - x->lo, sy = y->hi - y->lo;                                        \
                                                                                                   \
		if (sx != sy)                                                                      \
			return sx < sy;                                                            \
		if (x->prio != y->prio)                                                            \
			return x->prio < y->prio;                                                  \
		return x->owner < y->owner;                                                        \
	}                                                                                          \
	static void heap_push##SFX(struct heap##SFX *h, uint32_t x)                                \
	{                                                                                          \
		size_t i = h->n++;                                                                 \
		while (i > 0) {                                                                    \
			size_t p = (i - 1) / 2;                                                    \
			if (!heap_less##SFX(h, x, h->v[p]))                                        \
				break;                                                             \
			h->v[i] = h->v[p];                                                         \
			i = p;                                                                     \
		}                                                                                  \
		h->v[i] = x;                                                                       \
	}                                                                                          \
	static void heap_pop##SFX(struct heap##SFX *h)                                             \
	{                                                                                          \
		uint32_t x = h->v[--h->n];                                                         \
		size_t i = 0;                                                                      \
                                                                                                   \
		for (;;) {                                                                         \
			size_t c = 2 * i + 1;                                                      \
			if (c >= h->n)                                                             \
				break;                                                             \
			if (c + 1 < h->n && heap_less##SFX(h, h->v[c + 1], h->v[c]))               \
				c++;                                                               \
			if (!heap_less##SFX(h, h->v[c], x))                                        \
				break;                                                             \
			h->v[i] = h->v[c];                                                         \
			i = c;                                                                     \
		}                                                                                  \
		if (h->n > 0)                                                                      \
			h->v[i] = x;                                                               \
	}                                                                                          \
	static int sweep_laminar##SFX(const struct build##SFX *b, struct segs *o, KEY max)         \
	{                                                                                          \
		const struct item##SFX **st = alloc_array(b->n + 1, sizeof(*st));                  \
		size_t sp = 0;                                                                     \
                                                                                                   \
		if (!st)                                                                           \
			return -1;                                                                 \
		o->n = 0;                                                                          \
		emit(o, 0, RANGESET_NONE);                                                         \
		for (size_t i = 0; i < b->n; i++) {                                                \
			const struct item##SFX *q = &b->it[i];                                     \
			while (sp > 0 && st[sp - 1]->hi < q->lo) {                                 \
				const struct item##SFX *p = st[--sp];                              \
				emit(o, (u128)p->hi + 1,                                           \
				     sp > 0 ? st[sp - 1]->owner : RANGESET_NONE);                  \
			}                                                                          \
			if (sp > 0 && st[sp - 1]->lo == q->lo && st[sp - 1]->hi == q->hi)          \
				continue; /* an equal range that lost the tie */                   \
			if (sp > 0 && q->hi > st[sp - 1]->hi) {                                    \
				free(st);                                                          \
				return 1;                                                          \
			}                                                                          \
			emit(o, q->lo, q->owner);                                                  \
			st[sp++] = q;                                                              \
		}                                                                                  \
		while (sp > 0) {                                                                   \
			const struct item##SFX *p = st[--sp];                                      \
			if (p->hi != max)                                                          \
				emit(o, (u128)p->hi + 1,                                           \
				     sp > 0 ? st[sp - 1]->owner : RANGESET_NONE);                  \
		}                                                                                  \
		free(st);                                                                          \
		return 0;                                                                          \
	}                                                                                          \
	static int sweep_heap##SFX(const struct build##SFX *b, struct segs *o, KEY max)            \
	{                                                                                          \
		KEY *ends = alloc_array(b->n + 1, sizeof(*ends));                                  \
		struct heap##SFX h = {.it = b->it, .v = alloc_array(b->n + 1, sizeof(*h.v))};      \
		size_t ne = 0, si = 0, ei = 0;                                                     \
                                                                                                   \
		if (!ends || !h.v) {                                                               \
			free(ends);                                                                \
			free(h.v);                                                                 \
			return -1;                                                                 \
		}                                                                                  \
		for (size_t i = 0; i < b->n; i++)                                                  \
			if (b->it[i].hi < max)                                                     \
				ends[ne++] = b->it[i].hi + 1;                                      \
		sort_keys##SFX(ends, ne);                                                          \
		o->n = 0;                                                                          \
		for (KEY p = 0;;) {                                                                \
			while (si < b->n && b->it[si].lo == p)                                     \
				heap_push##SFX(&h, (uint32_t)si++);                                \
			while (ei < ne && ends[ei] == p)                                           \
				ei++;                                                              \
			while (h.n > 0 && b->it[h.v[0]].hi < p)                                    \
				heap_pop##SFX(&h);                                                 \
			emit(o, p, h.n > 0 ? b->it[h.v[0]].owner : RANGESET_NONE);                 \
			bool more_s = si < b->n, more_e = ei < ne;                                 \
			if (!more_s && !more_e)                                                    \
				break;                                                             \
			if (more_s && (!more_e || b->it[si].lo <= ends[ei]))                       \
				p = b->it[si].lo;                                                  \
			else                                                                       \
				p = ends[ei];                                                      \
		}                                                                                  \
		free(ends);                                                                        \
		free(h.v);                                                                         \
		return 0;                                                                          \
	}

/* Compiles the items of one family (b->it, sorted here; the caller frees it). */
#define DEFINE_BUILD_FAMILY(SFX, KEY, FAMILY)                                                      \
	static bool has_many_owners##SFX(const struct build##SFX *b)                               \
	{                                                                                          \
		for (size_t i = 1; i < b->n; i++)                                                  \
			if (b->it[i].owner != b->it[0].owner)                                      \
				return true;                                                       \
		return false;                                                                      \
	}                                                                                          \
	static int build_family##SFX(struct table *t, struct build##SFX *b)                        \
	{                                                                                          \
		struct segs o = {0};                                                               \
		KEY max = (KEY)ipaddr_max(FAMILY);                                                 \
		size_t n = b->n;                                                                   \
		bool many_owners = has_many_owners##SFX(b);                                        \
		int rc = -1, lam;                                                                  \
                                                                                                   \
		t->width = (unsigned)ipaddr_bits(FAMILY);                                          \
		if (FAMILY == AF_INET)                                                             \
			o.keys4 = alloc_array(2 * n + 1, sizeof(*o.keys4));                        \
		else                                                                               \
			o.keys = alloc_array(2 * n + 1, sizeof(*o.keys));                          \
		o.vals = alloc_array(2 * n + 1, sizeof(*o.vals));                                  \
		if (!(o.keys || o.keys4) || !o.vals)                                               \
			goto out;                                                                  \
		sort_bucketed##SFX(b->it, b->n, b->spawn);                                         \
		if (many_owners)                                                                   \
			check_identical##SFX(b);                                                   \
		if ((lam = sweep_laminar##SFX(b, &o, max)) < 0)                                    \
			goto out;                                                                  \
		if (lam == 1) {                                                                    \
			/* some ranges overlap partly: find those between owners, then flatten */  \
			if (many_owners && check_partial##SFX(b) < 0)                              \
				goto out;                                                          \
			if (sweep_heap##SFX(b, &o, max) < 0)                                       \
				goto out;                                                          \
		}                                                                                  \
		rc = b->cf->failed ? -1 : finish_table(t, &o);                                     \
	out:                                                                                       \
		free(o.keys);                                                                      \
		free(o.keys4);                                                                     \
		free(o.vals);                                                                      \
		return rc;                                                                         \
	}

DEFINE_SORT_ITEMS(4, uint32_t)
DEFINE_SORT_ITEMS(6, u128)
DEFINE_CHECKS(4, uint32_t)
DEFINE_CHECKS(6, u128)
DEFINE_SWEEPS(4, uint32_t)
DEFINE_SWEEPS(6, u128)
DEFINE_BUILD_FAMILY(4, uint32_t, AF_INET)
DEFINE_BUILD_FAMILY(6, u128, AF_INET6)

/* What a table is built from: the caller's entries, or its runs. */
struct source {
	const struct rangeset_entry *e;
	const struct rangeset_run *runs;
	size_t n_runs;
	size_t n;   /* ranges in all */
	int family; /* the only one compiled, or 0: both */
};

/* The items being filled from a source. */
struct fill {
	struct item4 *it4;
	struct item6 *it6;
	size_t n4, n6;
};

static inline void
fill_one(struct fill *f, const struct range *r, size_t entry, uint16_t owner, uint8_t prio)
{
	if (r->family == AF_INET)
		f->it4[f->n4++] = (struct item4){.lo = (uint32_t)r->lo,
		                                 .hi = (uint32_t)r->hi,
		                                 .entry = (uint32_t)entry,
		                                 .owner = owner,
		                                 .prio = prio};
	else if (r->family == AF_INET6)
		f->it6[f->n6++] = (struct item6){.lo = r->lo,
		                                 .hi = r->hi,
		                                 .entry = (uint32_t)entry,
		                                 .owner = owner,
		                                 .prio = prio};
}

/* Puts each range of src into f, in entry order: one pass over the caller's ranges for
 * both families. */
static void
fill_items(struct fill *f, const struct source *src)
{
	size_t entry = 0;

	f->n4 = f->n6 = 0;
	for (size_t i = 0; src->e && i < src->n; i++)
		fill_one(f, &src->e[i].r, i, src->e[i].owner, src->e[i].prio);
	for (size_t k = 0; k < src->n_runs; k++) {
		const struct rangeset_run *run = &src->runs[k];
		const char *p = (const char *)run->first;
		for (size_t i = 0; i < run->n; i++, p += run->stride) {
			const struct range *r = (const struct range *)(const void *)p;
			if (!src->family || r->family == src->family)
				fill_one(f, r, entry + i, run->owner, run->prio);
		}
		entry += run->n;
	}
}

/* One family's build, to be run on either thread. */
struct job {
	struct table *t;
	void *b; /* struct build4 or build6 */
	bool v6;
	int rc;
};

static void *
job_run(void *arg)
{
	struct job *j = arg;

	j->rc = j->v6 ? build_family6(j->t, j->b) : build_family4(j->t, j->b);
	return NULL;
}

/* Builds both tables: in parallel when both families are large enough to pay for a thread
 * (they share nothing but the read-only source), else each with its sort split in two. */
static int
build_tables(struct rangeset *rs, struct build4 *b4, struct build6 *b6)
{
	struct job j4 = {.t = &rs->t4, .b = b4, .rc = -1},
	           j6 = {.t = &rs->t6, .b = b6, .v6 = true, .rc = -1};
	bool both = b4->n >= PARALLEL_MIN && b6->n >= PARALLEL_MIN;

	b4->spawn = b6->spawn = !both;
	run_pair(job_run, &j6, &j4, both);
	return j4.rc < 0 || j6.rc < 0 ? -1 : 0;
}

static void
report_conflicts(const struct conflicts *c, rangeset_conflict_cb cb, void *arg)
{
	for (size_t i = 0; i < c->n; i++)
		cb(c->v[i].kind, c->v[i].a, c->v[i].b, arg);
}

static struct rangeset *
build_source(const struct source *src, rangeset_conflict_cb cb, void *arg)
{
	struct rangeset *rs;
	struct fill f = {0};
	struct conflicts cf4 = {.wanted = cb != NULL}, cf6 = {.wanted = cb != NULL};
	struct build4 b4 = {.cf = &cf4};
	struct build6 b6 = {.cf = &cf6};

	if (src->n > UINT32_MAX)
		return NULL;
	if (!(rs = calloc(1, sizeof(*rs))))
		return NULL;
	/* room for every range in each family compiled: the pages of a large array are
	 * faulted (and zeroed) only when filled, so the bound costs address space alone,
	 * and counting first cost one more pass over the caller's records */
	f.it4 = alloc_array(src->family == AF_INET6 ? 1 : src->n + 1, sizeof(*f.it4));
	f.it6 = alloc_array(src->family == AF_INET ? 1 : src->n + 1, sizeof(*f.it6));
	if (!f.it4 || !f.it6)
		goto fail;
	fill_items(&f, src);
	b4.it = f.it4;
	b4.n = f.n4;
	b6.it = f.it6;
	b6.n = f.n6;
	if (build_tables(rs, &b4, &b6) < 0)
		goto fail;
	report_conflicts(&cf4, cb, arg);
	report_conflicts(&cf6, cb, arg);
	free(cf4.v);
	free(cf6.v);
	free(f.it4);
	free(f.it6);
	return rs;
fail:
	free(cf4.v);
	free(cf6.v);
	free(f.it4);
	free(f.it6);
	rangeset_free(rs);
	return NULL;
}

struct rangeset *
rangeset_build(const struct rangeset_entry *entries, size_t n, rangeset_conflict_cb cb, void *arg)
{
	struct source src = {.e = entries, .n = n};

	return build_source(&src, cb, arg);
}

struct rangeset *
rangeset_build_runs(const struct rangeset_run *runs, size_t n_runs, int family,
                    rangeset_conflict_cb cb, void *arg)
{
	struct source src = {.runs = runs, .n_runs = n_runs, .family = family};

	for (size_t k = 0; k < n_runs; k++)
		if (__builtin_add_overflow(src.n, runs[k].n, &src.n))
			return NULL;
	return build_source(&src, cb, arg);
}

static void
table_release(struct table *t)
{
	free(t->keys4);
	free(t->keys6);
	free(t->vals);
	free(t->idx);
}

void
rangeset_free(struct rangeset *rs)
{
	if (!rs)
		return;
	table_release(&rs->t4);
	table_release(&rs->t6);
	free(rs);
}

static unsigned
lookup4(const struct table *t, uint32_t x)
{
	size_t lo, hi;
	uint32_t b = 0;

	if (t->cpl > 0 && (uint32_t)((uint64_t)x >> (32 - t->cpl)) != (uint32_t)t->prefix)
		return x < t->keys4[1] ? t->vals[0] : t->vals[t->n - 1];
	if (t->bits > 0)
		b = (uint32_t)(((uint64_t)x & (0xffffffffu >> t->cpl)) >> (32 - t->cpl - t->bits));
	lo = t->idx[b];
	hi = t->idx[b + 1];
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->keys4[mid] <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return t->vals[lo - 1];
}

static unsigned
lookup6(const struct table *t, u128 x)
{
	size_t lo, hi;
	size_t b = 0;

	if (t->cpl > 0 && (x >> (128 - t->cpl)) != t->prefix)
		return x < t->keys6[1] ? t->vals[0] : t->vals[t->n - 1];
	if (t->bits > 0)
		b = (size_t)((x & low_mask(128 - t->cpl)) >> (128 - t->cpl - t->bits));
	lo = t->idx[b];
	hi = t->idx[b + 1];
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->keys6[mid] <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return t->vals[lo - 1];
}

unsigned
rangeset_lookup(const struct rangeset *rs, const struct ipaddr *a)
{
	if (a->family == AF_INET)
		return lookup4(&rs->t4, (uint32_t)a->v);
	return lookup6(&rs->t6, a->v);
}

static size_t
table_memory(const struct table *t)
{
	size_t keysz = t->keys4 ? sizeof(uint32_t) : sizeof(u128);
	return t->n * (keysz + sizeof(uint16_t)) + (((size_t)1 << t->bits) + 1) * sizeof(uint32_t);
}

size_t
rangeset_memory(const struct rangeset *rs)
{
	return sizeof(*rs) + table_memory(&rs->t4) + table_memory(&rs->t6);
}

size_t
rangeset_export(const struct rangeset *rs, int family, u128 *keys, uint16_t *vals, size_t cap)
{
	const struct table *t = family == AF_INET ? &rs->t4 : &rs->t6;

	for (size_t i = 0; keys && i < t->n && i < cap; i++) {
		keys[i] = family == AF_INET ? t->keys4[i] : t->keys6[i];
		vals[i] = t->vals[i];
	}
	return t->n;
}
