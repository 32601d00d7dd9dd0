#include "base/vec.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
vec_bytes(size_t n, size_t elem, size_t *out)
{
	if (__builtin_mul_overflow(n, elem, out)) {
		errno = EOVERFLOW;
		return -1;
	}
	return 0;
}

int
vec_reserve(void *arrp, size_t *cap, size_t need, size_t elem)
{
	void *arr, *grown;
	size_t nc, bytes;

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
	return 0;
}
