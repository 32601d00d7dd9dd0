#include "net/tlsmem.h"

#include <malloc.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "base/log.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TLSMEM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
        __has_feature(memory_sanitizer)
#define TLSMEM_SANITIZED 1
#endif
#endif

/* The region and its free slots: hot ones (resident) first, then cold ones (given back to
 * the kernel), then the never-touched rest from `next`. */
static struct {
	pthread_mutex_t mu;
	char *base; /* TLSMEM_SLOTS * TLSMEM_SLOT bytes, or NULL */
	uint32_t hot[TLSMEM_HOT], cold[TLSMEM_SLOTS];
	uint32_t n_hot, n_cold, next;
	uint64_t used, fallbacks;
	time_t said; /* the last warning that the slots ran out (one a minute at most) */
	bool installed;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int
region(void)
{
	if (M.base)
		return 0;
	void *p = mmap(NULL, (size_t)TLSMEM_SLOTS * TLSMEM_SLOT, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	M.base = p;
	return 0;
}

bool
tlsmem_owns(const void *p)
{
	const char *c = p;
	return M.base && c >= M.base && c < M.base + (size_t)TLSMEM_SLOTS * TLSMEM_SLOT;
}

void *
tlsmem_alloc(size_t n)
{
	uint32_t i;

	if (n < TLSMEM_MIN || n > TLSMEM_SLOT)
		return NULL;
	pthread_mutex_lock(&M.mu);
	if (region() < 0) {
		pthread_mutex_unlock(&M.mu);
		return NULL;
	}
	if (M.n_hot)
		i = M.hot[--M.n_hot];
	else if (M.n_cold)
		i = M.cold[--M.n_cold];
	else if (M.next < TLSMEM_SLOTS)
		i = M.next++;
	else {
		M.fallbacks++;
		time_t now = time(NULL);
		bool say = now - M.said >= 60;
		if (say)
			M.said = now;
		pthread_mutex_unlock(&M.mu);
		if (say)
			log_msg(LOG_LVL_WARNING,
			        "all %u TLS buffer slots are in use: OpenSSL's record buffers come "
			        "from malloc until some are free (more TLS sessions are moving "
			        "data "
			        "at once than the pool was made for; memory per session grows, "
			        "nothing "
			        "fails)",
			        TLSMEM_SLOTS);
		return NULL;
	}
	M.used++;
	pthread_mutex_unlock(&M.mu);
	return M.base + (size_t)i * TLSMEM_SLOT;
}

void
tlsmem_free(void *p)
{
	uint32_t i = (uint32_t)(((char *)p - M.base) / TLSMEM_SLOT);

	pthread_mutex_lock(&M.mu);
	M.used--;
	if (M.n_hot < TLSMEM_HOT) {
		M.hot[M.n_hot++] = i;
		pthread_mutex_unlock(&M.mu);
		return;
	}
	pthread_mutex_unlock(&M.mu);
	/* past the hot ones its pages go back, before the slot is on a list that another
	 * thread could take it from */
	madvise(M.base + (size_t)i * TLSMEM_SLOT, TLSMEM_SLOT, MADV_DONTNEED);
	pthread_mutex_lock(&M.mu);
	M.cold[M.n_cold++] = i;
	pthread_mutex_unlock(&M.mu);
}

struct tlsmem_stats
tlsmem_stats(void)
{
	struct tlsmem_stats s;

	pthread_mutex_lock(&M.mu);
	s = (struct tlsmem_stats){.used = M.used,
	                          .hot = M.n_hot,
	                          .touched = M.next,
	                          .fallbacks = M.fallbacks,
	                          .installed = M.installed};
	pthread_mutex_unlock(&M.mu);
	return s;
}

/* -- OpenSSL's side -- */

#ifndef TLSMEM_SANITIZED

static void *
ossl_malloc(size_t n, const char *file, int line)
{
	(void)file, (void)line;
	void *p = tlsmem_alloc(n);
	return p ? p : malloc(n);
}

static void
ossl_free(void *p, const char *file, int line)
{
	(void)file, (void)line;
	if (tlsmem_owns(p))
		tlsmem_free(p);
	else
		free(p);
}

/* A slot holds TLSMEM_SLOT bytes: it grows in place to that, then moves to malloc; a
 * block from malloc that grows into the slots' range moves into one (the handshake
 * buffer grows that way). */
static void *
ossl_realloc(void *p, size_t n, const char *file, int line)
{
	if (!p)
		return ossl_malloc(n, file, line);
	if (n == 0) {
		ossl_free(p, file, line);
		return NULL;
	}
	if (tlsmem_owns(p)) {
		if (n <= TLSMEM_SLOT)
			return p;
		void *q = malloc(n);
		if (q) {
			memcpy(q, p, TLSMEM_SLOT);
			tlsmem_free(p);
		}
		return q;
	}
	void *q = tlsmem_alloc(n);
	if (!q)
		return realloc(p, n);
	size_t old = malloc_usable_size(p);
	memcpy(q, p, old < n ? old : n);
	free(p);
	return q;
}

#endif

int
tlsmem_install(void)
{
#ifdef TLSMEM_SANITIZED
	return -1;
#else
	pthread_mutex_lock(&M.mu);
	int r = region();
	pthread_mutex_unlock(&M.mu);
	if (r < 0 || !CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free))
		return -1;
	M.installed = true;
	return 0;
#endif
}
