#include "allocfail.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The real functions, named by the linker's --wrap (Makefile). */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
int __real_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);

static struct {
	bool armed, persistent;
	unsigned long at, seen, failed;
	int depth;
	bool wrapped; /* some call came through a wrap */
	bool no_threads;
	unsigned long threads_refused;
} af;

void
allocfail_arm(unsigned long at, bool persistent)
{
	af.armed = true;
	af.persistent = persistent;
	af.at = at;
	af.seen = af.failed = 0;
}

void
allocfail_disarm(void)
{
	af.armed = false;
}

void
allocfail_enter(void)
{
	af.depth++;
}

void
allocfail_leave(void)
{
	af.depth--;
}

unsigned long
allocfail_threads(bool fail)
{
	unsigned long n = af.threads_refused;

	af.no_threads = fail;
	af.threads_refused = 0;
	return n;
}

unsigned long
allocfail_failed(void)
{
	return af.failed;
}

bool
allocfail_linked(void)
{
	/* a call the wraps must see; the pointer escapes so the compiler keeps the call */
	void *volatile p = malloc(1);
	free(p);
	return af.wrapped;
}

/* Whether this allocation (inside a scope, while armed) is to fail. */
static bool
fail_now(void)
{
	af.wrapped = true;
	if (!af.armed || af.depth <= 0)
		return false;
	unsigned long n = af.seen++;
	if (n == af.at || (af.persistent && n > af.at)) {
		af.failed++;
		return true;
	}
	return false;
}

void *
__wrap_malloc(size_t n)
{
	return fail_now() ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t n)
{
	/* realloc(p, 0) frees; it is not an allocation that can fail */
	if (n == 0)
		return __real_realloc(p, n);
	return fail_now() ? NULL : __real_realloc(p, n);
}

char *
__wrap_strdup(const char *s)
{
	return fail_now() ? NULL : __real_strdup(s);
}

int
__wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (af.no_threads) {
		af.threads_refused++;
		return EAGAIN;
	}
	return __real_pthread_create(th, attr, fn, arg);
}
