/*
 * rangeset — an immutable, compiled "most specific range wins" lookup table.
 *
 * Input: ranges, each with an owner (the caller's id, e.g. a connector index) and a
 * priority.  For an address, the answer is the owner of the smallest range that contains
 * it; between equal ranges the lower priority value wins (the caller uses 0 for an exact
 * local binding, 1 for a wildcard one).  Ranges of one owner may overlap freely.
 *
 * Building checks the two conflicts Exchange forbids between different owners and reports
 * each through the callback (the table is still built, deterministically):
 *   RANGESET_PARTIAL    two ranges overlap without one containing the other;
 *   RANGESET_IDENTICAL  the same range with the same priority (a tie nothing can break).
 *
 * Compiled form, per family: the address space cut into maximal segments of constant
 * answer, stored as sorted segment starts (keys) with an owner each, plus a radix index
 * over the bits below the keys' common prefix that narrows every search to ~2 keys.
 * Lookup is two or three cache lines, allocation-free, and safe from any thread.
 */
#ifndef MXGATE_RANGESET_H
#define MXGATE_RANGESET_H

#include "base/range.h"

#define RANGESET_NONE       0xffffu /* lookup answer when no range contains the address */
#define RANGESET_MAX_OWNERS 0xfffeu

struct rangeset_entry {
	struct range r;
	uint16_t owner; /* < RANGESET_MAX_OWNERS */
	uint8_t prio;   /* lower wins a tie between equal ranges */
};

enum rangeset_conflict { RANGESET_PARTIAL, RANGESET_IDENTICAL };

/* a and b index the entries array given to rangeset_build(). */
typedef void (*rangeset_conflict_cb)(enum rangeset_conflict kind, size_t a, size_t b, void *arg);

struct rangeset;

/* Compiles entries (borrowed for the call only).  conflict_cb may be NULL.  Returns NULL
 * only when out of memory. */
struct rangeset *rangeset_build(const struct rangeset_entry *entries, size_t n,
                                rangeset_conflict_cb conflict_cb, void *arg);

/* A run of ranges of one owner and priority, read where the caller keeps them: n ranges,
 * the first at first and each stride bytes after the one before (e.g. the range member of
 * the caller's own records), so a million ranges are not copied into entries first.  */
struct rangeset_run {
	const struct range *first; /* borrowed for the call */
	size_t n, stride;
	uint16_t owner; /* < RANGESET_MAX_OWNERS */
	uint8_t prio;
};

/* As rangeset_build(), from runs[0..n_runs), compiling only the ranges of family
 * (AF_INET or AF_INET6; 0: both); the others are skipped, and the conflict callback's a and
 * b still number the ranges of all runs in order, counting from 0 at runs[0].first.
 * Returns NULL only when out of memory (or past 2^32 - 1 ranges in all). */
struct rangeset *rangeset_build_runs(const struct rangeset_run *runs, size_t n_runs, int family,
                                     rangeset_conflict_cb conflict_cb, void *arg);

void rangeset_free(struct rangeset *rs);

/* The owner of the most specific range containing a, or RANGESET_NONE. */
unsigned rangeset_lookup(const struct rangeset *rs, const struct ipaddr *a);

/* Bytes held by the compiled table. */
size_t rangeset_memory(const struct rangeset *rs);

/* Number of segments for family; with keys/vals non-NULL, copies up to cap of them
 * (segment starts ascending, the first always 0, and their owners). */
size_t rangeset_export(const struct rangeset *rs, int family, u128 *keys, uint16_t *vals,
                       size_t cap);

#endif
