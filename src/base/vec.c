#include "base/vec.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int
vec_bytes(size_t n, size_t elem, size_t *out)
{
	if (__builtin_mul_overflow(n, elem, out)) {
		errno = EOVERFLOW;
		return -1;
	}
	return 0;
}

void
vec_hint_huge(void *p, size_t len)
{
	/* The whole pages of the block, not only its 2 MiB-aligned interior: a large block is
	 * a mapping of its own (glibc's mmap threshold), and advising part of it would split
	 * the mapping in three, after which realloc can no longer mremap it and copies. */
	const uintptr_t page = 4096;
	uintptr_t lo = (uintptr_t)p & ~(page - 1);
	uintptr_t hi = ((uintptr_t)p + len + page - 1) & ~(page - 1);

	if (len < VEC_HUGE_MIN)
		return;
	/* advice only: a kernel without THP says EINVAL, and the block works as before */
	(void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
}

static int
grow_to(void *arrp, size_t *cap, size_t nc, size_t elem)
{
	void *arr, *grown;
	size_t bytes;

	if (vec_bytes(nc, elem, &bytes) < 0)
		return -1;
	/* the holder's pointer may be any object pointer type: copy its representation */
	memcpy(&arr, arrp, sizeof(arr));
	grown = realloc(arr, bytes);
	if (!grown) {
		errno = ENOMEM;
		return -1;
	}
	memcpy(arrp, &grown, sizeof(grown));
	*cap = nc;
	vec_hint_huge(grown, bytes);
	return 0;
}

int
vec_reserve(void *arrp, size_t *cap, size_t need, size_t elem)
{
	size_t nc;

	if (need <= *cap)
		return 0;
	nc = *cap < 8 ? 8 : *cap;
	while (nc < need) {
		if (nc > SIZE_MAX / 2) {
			nc = need;
			break;
		}
		nc *= 2;
	}
	return grow_to(arrp, cap, nc, elem);
}

int
vec_reserve_exact(void *arrp, size_t *cap, size_t need, size_t elem)
{
	return need <= *cap ? 0 : grow_to(arrp, cap, need, elem);
}
