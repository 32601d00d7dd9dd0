/* Unit tests: tlsmem, the pool of slots for OpenSSL's big buffers.  Each test runs in its
 * own process (Criterion forks), so each starts with an untouched pool. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tlsmem.h"

Test(tlsmem, takes_only_the_big_sizes)
{
	cr_assert_null(tlsmem_alloc(TLSMEM_MIN - 1));
	cr_assert_null(tlsmem_alloc(TLSMEM_SLOT + 1));
	cr_assert_null(tlsmem_alloc(0));
	void *p = tlsmem_alloc(16584); /* OpenSSL 3.0's write buffer */
	void *q = tlsmem_alloc(TLSMEM_SLOT);
	cr_assert_not_null(p);
	cr_assert_not_null(q);
	cr_assert_neq(p, q);
	cr_assert(tlsmem_owns(p) && tlsmem_owns(q));
	int local;
	cr_assert_not(tlsmem_owns(&local));
	void *h = malloc(16584);
	cr_assert_not(tlsmem_owns(h));
	free(h);
	/* slots are page-aligned and do not overlap */
	cr_assert_eq((uintptr_t)p % 4096, 0);
	cr_assert_geq((char *)q - (char *)p >= 0 ? (size_t)((char *)q - (char *)p)
	                                         : (size_t)((char *)p - (char *)q),
	              TLSMEM_SLOT);
	memset(p, 0xab, 16584);
	memset(q, 0xcd, TLSMEM_SLOT);
	cr_assert_eq(((unsigned char *)p)[16583], 0xab);
	struct tlsmem_stats s = tlsmem_stats();
	cr_assert_eq(s.used, 2);
	cr_assert_eq(s.touched, 2);
	tlsmem_free(p);
	tlsmem_free(q);
	s = tlsmem_stats();
	cr_assert_eq(s.used, 0);
	cr_assert_eq(s.hot, 2);
	cr_assert_not(s.installed); /* only tlsmem_install() gives it to OpenSSL */
}

Test(tlsmem, a_freed_slot_is_taken_again_first)
{
	void *p = tlsmem_alloc(20000);
	tlsmem_free(p);
	void *q = tlsmem_alloc(13000);
	cr_assert_eq(p, q);
	cr_assert_eq(tlsmem_stats().touched, 1);
	tlsmem_free(q);
}

/* Past TLSMEM_HOT free slots the rest are given back to the kernel: their contents are
 * gone (zero pages) when taken again, and the hot ones are taken first. */
Test(tlsmem, keeps_only_the_hot_ones_resident)
{
	enum { N = TLSMEM_HOT + 8 };
	unsigned char *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = tlsmem_alloc(TLSMEM_SLOT);
		cr_assert_not_null(p[i]);
		memset(p[i], 0x5a, TLSMEM_SLOT);
	}
	for (int i = 0; i < N; i++)
		tlsmem_free(p[i]);
	struct tlsmem_stats s = tlsmem_stats();
	cr_assert_eq(s.used, 0);
	cr_assert_eq(s.hot, TLSMEM_HOT);
	/* the first TLSMEM_HOT taken are the resident ones (their bytes still there) */
	for (int i = 0; i < (int)TLSMEM_HOT; i++) {
		unsigned char *q = tlsmem_alloc(TLSMEM_SLOT);
		cr_assert_eq(q[0], 0x5a);
	}
	/* then the cold ones: given back, so zero pages */
	for (int i = 0; i < 8; i++) {
		unsigned char *q = tlsmem_alloc(TLSMEM_SLOT);
		cr_assert_eq(q[0], 0);
		cr_assert_eq(q[TLSMEM_SLOT - 1], 0);
	}
	cr_assert_eq(tlsmem_stats().touched, N);
}

/* Every slot taken: the next request is refused (the caller mallocs) and counted. */
Test(tlsmem, when_every_slot_is_taken_requests_go_to_malloc)
{
	static void *p[TLSMEM_SLOTS];
	for (unsigned i = 0; i < TLSMEM_SLOTS; i++)
		cr_assert_not_null(p[i] = tlsmem_alloc(TLSMEM_MIN)); /* untouched: no memory */
	cr_assert_null(tlsmem_alloc(TLSMEM_MIN));
	cr_assert_null(tlsmem_alloc(TLSMEM_SLOT));
	struct tlsmem_stats s = tlsmem_stats();
	cr_assert_eq(s.fallbacks, 2);
	cr_assert_eq(s.used, TLSMEM_SLOTS);
	tlsmem_free(p[7]);
	cr_assert_eq(tlsmem_alloc(TLSMEM_SLOT), p[7]);
}
