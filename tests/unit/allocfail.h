/*
 * allocfail — making the code under test run out of memory on purpose (unit tests only).
 *
 * The unit-test binary is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=strdup (Makefile): every call to them from the library's objects and from the
 * tests comes to allocfail.c first.  Libraries linked as shared objects (libc's own calls,
 * OpenSSL, Criterion) are not wrapped and never fail here.
 *
 * Nothing fails until a plan is armed, and then only inside a scope: the driver of the
 * code under test opens one around each call into it (allocfail_enter/leave), so that
 * its own bookkeeping between calls never fails.  The allocations inside scopes are
 * numbered from 0 since allocfail_arm(); the one numbered at fails, and with persistent
 * every one after it too (a machine that stays out of memory).
 *
 * pthread_create is wrapped too: allocfail_threads(true) makes it fail with EAGAIN, as for
 * a process at its thread limit, so the code's serial fallbacks run.
 *
 * One test at a time (Criterion runs each test in a process of its own): plain globals.
 */
#ifndef MXGATE_TEST_ALLOCFAIL_H
#define MXGATE_TEST_ALLOCFAIL_H

#include <stdbool.h>

void allocfail_arm(unsigned long at, bool persistent);
void allocfail_disarm(void);

void allocfail_enter(void);
void allocfail_leave(void);

/* Since allocfail_arm(): how many allocations inside scopes were failed (0: the plan's
 * number is past the last one made). */
unsigned long allocfail_failed(void);

/* While fail is true, every pthread_create from the code fails with EAGAIN; returns how
 * many were refused since the last call (a test shows the fallback was taken). */
unsigned long allocfail_threads(bool fail);

/* True when the binary was linked with the wraps (else arming fails nothing). */
bool allocfail_linked(void);

#endif
