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

/* As vec_reserve(), but to exactly need elements when it grows (for a holder that knows
 * its final size, e.g. from a file's size). */
int vec_reserve_exact(void *arrp, size_t *cap, size_t need, size_t elem);

/* n * elem, or -1 with errno EOVERFLOW when the product does not fit (for one-off
 * allocations: calloc checks its own product, malloc and realloc do not). */
int vec_bytes(size_t n, size_t elem, size_t *out);

/* Asks the kernel to back a large heap block (len bytes at p) with transparent huge pages (madvise MADV_HUGEPAGE; a no-op below VEC_HUGE_MIN or where
 * THP is off).  A 1M-range table touches ~130 MiB while it is built: with 4 KiB pages
 * that is 33,000 page faults, a third of a reload's time on a virtual machine.
 * vec_reserve() calls it on every block it grows past VEC_HUGE_MIN. */
#define VEC_HUGE_MIN (4u << 20)
void vec_hint_huge(void *p, size_t len);

#endif
