/* Unit tests: vec, the checked growing array. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/vec.h"

Test(vec, grows_geometrically_and_keeps_contents)
{
	int *a = NULL;
	size_t cap = 0, n = 0;

	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(VEC_RESERVE(a, cap, n + 1), 0);
		cr_assert_geq(cap, n + 1);
		a[n++] = i;
	}
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(a[i], i);
	cr_expect_eq(cap, 1024);
	/* asking for less than the capacity changes nothing */
	int *before = a;
	cr_expect_eq(VEC_RESERVE(a, cap, 10), 0);
	cr_expect_eq(a, before);
	cr_expect_eq(cap, 1024);
	free(a);
}

Test(vec, overflowing_sizes_fail_and_leave_the_array_alone)
{
	struct big {
		char b[4096];
	} *a = NULL;
	size_t cap = 0;

	cr_assert_eq(VEC_RESERVE(a, cap, 3), 0);
	struct big *before = a;
	errno = 0;
	cr_expect_eq(VEC_RESERVE(a, cap, SIZE_MAX / 1024), -1);
	cr_expect_eq(errno, EOVERFLOW);
	cr_expect_eq(a, before);
	cr_expect_eq(cap, 8);
	size_t bytes = 0;
	cr_expect_eq(vec_bytes(SIZE_MAX / 2, 3, &bytes), -1);
	cr_expect_eq(vec_bytes(1000, 3, &bytes), 0);
	cr_expect_eq(bytes, 3000);
	free(a);
}

Test(vec, exact_reserve_takes_no_more_than_asked)
{
	int *a = NULL;
	size_t cap = 0;

	cr_assert_eq(vec_reserve_exact(&a, &cap, 1000, sizeof(*a)), 0);
	cr_expect_eq(cap, 1000);
	a[999] = 7;
	/* less than the capacity changes nothing; more grows to exactly that */
	cr_expect_eq(vec_reserve_exact(&a, &cap, 10, sizeof(*a)), 0);
	cr_expect_eq(cap, 1000);
	cr_assert_eq(vec_reserve_exact(&a, &cap, 1001, sizeof(*a)), 0);
	cr_expect_eq(cap, 1001);
	cr_expect_eq(a[999], 7);
	errno = 0;
	cr_expect_eq(vec_reserve_exact(&a, &cap, SIZE_MAX / 2, sizeof(*a)), -1);
	cr_expect_eq(errno, EOVERFLOW);
	cr_expect_eq(cap, 1001);
	free(a);
}
