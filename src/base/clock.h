/*
 * clock — the monotonic clock in milliseconds, for deadlines and cache expiry (never for
 * what a log line or a message header shows: those want wall time), and deadlines as a
 * struct timespec.
 */
#ifndef MXGATE_CLOCK_H
#define MXGATE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The time ms milliseconds from now on clock c, for a deadline or a timed wait
 * (pthread_cond_timedwait() takes the clock its condition was made with). */
static inline struct timespec
clock_deadline(clockid_t c, uint64_t ms)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

#endif
