/*
 * tlsmem — OpenSSL's allocator: its big buffers from a pool of page-aligned slots.
 *
 * With SSL_MODE_RELEASE_BUFFERS (net/tls.c) an idle TLS session holds no record buffers,
 * but OpenSSL takes one of about 16.6 KiB at nearly every read and write of a handshake
 * and gives it back (ten a handshake, plus the 21 KiB handshake message buffer).  From
 * malloc those big, short-lived blocks interleave with the small blocks a session keeps,
 * and the holes they leave stay resident: about 1.5 KiB a TLS session, 10 % of it
 * (docs/BENCHMARKS.md, run 10).  Here every request of TLSMEM_MIN to TLSMEM_SLOT bytes
 * gets a slot of its own in one reserved region, so the heap never sees them; everything
 * else goes to malloc as before.
 *
 * Freed slots stay resident up to TLSMEM_HOT of them (the next handshakes take them
 * without a page fault); past that a freed slot's pages go back to the kernel
 * (MADV_DONTNEED) until it is taken again.  When every slot is taken, requests go to
 * malloc (counted: tlsmem_stats().fallbacks).  Thread-safe (one mutex; a handshake takes
 * it about twenty times).
 *
 * tlsmem_install() must run before OpenSSL allocates anything: first thing in main().
 * Builds with a sanitizer do not install it, so that ASan keeps checking OpenSSL's
 * buffers; the pool itself is tested through tlsmem_alloc() and tlsmem_free().
 */
#ifndef MXGATE_TLSMEM_H
#define MXGATE_TLSMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLSMEM_MIN   (12u * 1024)
#define TLSMEM_SLOT  (24u * 1024) /* six pages: a record buffer and the handshake buffer */
#define TLSMEM_SLOTS 4096u        /* 96 MiB of address space, resident only when used */
#define TLSMEM_HOT   64u          /* freed slots kept resident: 1.5 MiB */

struct tlsmem_stats {
	uint64_t used;      /* slots taken now */
	uint64_t hot;       /* free and resident */
	uint64_t touched;   /* slots ever taken (the rest of the region was never touched) */
	uint64_t fallbacks; /* requests that found no free slot and went to malloc */
	bool installed;
};

/* Reserves the region and hands OpenSSL the allocator.  Returns 0, or -1 when OpenSSL
 * has allocated already or the region cannot be had (OpenSSL then keeps malloc). */
int tlsmem_install(void);
/* A slot for n bytes (TLSMEM_MIN <= n <= TLSMEM_SLOT), else NULL: the caller mallocs. */
void *tlsmem_alloc(size_t n);
/* True when p is a slot (then tlsmem_free() takes it back). */
bool tlsmem_owns(const void *p);
void tlsmem_free(void *p);
struct tlsmem_stats tlsmem_stats(void);

#endif
