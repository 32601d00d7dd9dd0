/*
 * vec — the one way mxgate grows an array.
 *
 * Every growing array is a pointer, a count and a capacity owned by its holder.  Before
 * storing element number n, the holder calls VEC_RESERVE(arr, cap, n + 1): the array then
 * has room for at least n + 1 elements.  Capacity grows geometrically (doubling from 8), and
 * every size computation is checked: a request whose byte size does not fit in size_t fails
 * with EOVERFLOW instead of wrapping into a short allocation.  On failure the array, its
 * contents and its capacity are unchanged, so the holder can still free what it has.
 *
 * This replaces hand-written "if (n == cap) realloc(cap * 2 * size)" loops, one of which
 * kept a capacity that did not belong to its array (a heap overflow in config loading).
 */
#ifndef MXGATE_VEC_H
#define MXGATE_VEC_H

#include <stddef.h>

/* Makes *(void **)arrp hold at least need elements of elem bytes, updating *cap.
 * Returns 0, or -1 with errno ENOMEM or EOVERFLOW (nothing changed). */
int vec_reserve(void *arrp, size_t *cap, size_t need, size_t elem);

/* arr: an lvalue of pointer type; cap: an lvalue of type size_t. */
#define VEC_RESERVE(arr, cap, need) vec_reserve(&(arr), &(cap), (need), sizeof(*(arr)))

/* n * elem, or -1 with errno EOVERFLOW when the product does not fit (for one-off
 * allocations: calloc checks its own product, malloc and realloc do not). */
int vec_bytes(size_t n, size_t elem, size_t *out);

#endif
