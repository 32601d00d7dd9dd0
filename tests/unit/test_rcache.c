/* Unit tests: the recipient verdict cache (smtpd/rcache.h) — expiry, replacement, the
 * least-recently-used eviction at its bound, and a randomized run against a reference. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/rcache.h"

Test(rcache, get_put_and_text)
{
	struct rcache *c = rcache_new(4);
	char t[64];

	cr_assert_not_null(c);
	cr_assert_eq(rcache_get(c, "a@x", 0, t, sizeof(t)), 0);
	cr_assert_eq(rcache_put(c, "a@x", 100, "550 5.1.1 unknown"), 0);
	cr_assert_eq(rcache_get(c, "a@x", 99, t, sizeof(t)), 1);
	cr_assert_str_eq(t, "550 5.1.1 unknown");
	cr_assert_eq(rcache_get(c, "a@x", 99, t, 4), 1);
	cr_assert_str_eq(t, "550"); /* cut to the buffer */
	cr_assert_eq(rcache_get(c, "a@x", 99, NULL, 0), 1);
	cr_assert_eq(rcache_put(c, "a@x", 200, "new"), 0); /* replaced, not added */
	cr_assert_eq(rcache_len(c), 1);
	cr_assert_eq(rcache_get(c, "a@x", 150, t, sizeof(t)), 1);
	cr_assert_str_eq(t, "new");
	rcache_remove(c, "a@x");
	rcache_remove(c, "a@x");
	cr_assert_eq(rcache_len(c), 0);
	rcache_put(c, "b@x", 100, "");
	rcache_put(c, "c@x", 100, "");
	rcache_clear(c);
	cr_assert_eq(rcache_len(c), 0);
	cr_assert_eq(rcache_get(c, "b@x", 0, NULL, 0), 0);
	rcache_put(c, "b@x", 100, ""); /* usable after */
	cr_assert_eq(rcache_get(c, "b@x", 0, NULL, 0), 1);
	rcache_free(c);
	rcache_free(NULL);
}

Test(rcache, expired_entries_are_dropped)
{
	struct rcache *c = rcache_new(4);

	rcache_put(c, "a@x", 100, "");
	cr_assert_eq(rcache_get(c, "a@x", 100, NULL, 0), 0); /* the expiry itself is past */
	cr_assert_eq(rcache_len(c), 0);
	rcache_free(c);
}

Test(rcache, least_recently_used_goes_first)
{
	struct rcache *c = rcache_new(3);

	rcache_put(c, "a", 1000, "");
	rcache_put(c, "b", 1000, "");
	rcache_put(c, "c", 1000, "");
	cr_assert_eq(rcache_get(c, "a", 0, NULL, 0), 1); /* a is now the most recent */
	rcache_put(c, "d", 1000, "");                    /* b goes */
	cr_assert_eq(rcache_len(c), 3);
	cr_assert_eq(rcache_get(c, "b", 0, NULL, 0), 0);
	cr_assert_eq(rcache_get(c, "a", 0, NULL, 0), 1);
	cr_assert_eq(rcache_get(c, "c", 0, NULL, 0), 1);
	cr_assert_eq(rcache_get(c, "d", 0, NULL, 0), 1);
	rcache_free(c);
}

/* A reference: arrays with a use counter; the same operations must give the same answers. */
Test(rcache, randomized_against_a_reference)
{
	enum { CAP = 8, KEYS = 20, OPS = 20000 };
	struct rcache *c = rcache_new(CAP);
	struct {
		bool in;
		uint64_t exp, used;
		char text[16];
	} ref[KEYS] = {0};
	unsigned seed = 12345;
	uint64_t tick = 0;

	for (int op = 0; op < OPS; op++) {
		seed = seed * 1103515245u + 12345u;
		int k = (int)((seed >> 8) % KEYS), what = (int)((seed >> 20) % 3);
		uint64_t now = (uint64_t)op;
		char key[16], t[16];
		snprintf(key, sizeof(key), "k%d", k);
		if (what == 0) {
			snprintf(t, sizeof(t), "t%d", op);
			uint64_t exp = now + 1 + (seed >> 4) % 50;
			cr_assert_eq(rcache_put(c, key, exp, t), 0);
			if (!ref[k].in) {
				size_t n = 0;
				for (int i = 0; i < KEYS; i++)
					n += ref[i].in;
				if (n == CAP) {
					int old = -1;
					for (int i = 0; i < KEYS; i++)
						if (ref[i].in &&
						    (old < 0 || ref[i].used < ref[old].used))
							old = i;
					ref[old].in = false;
				}
			}
			ref[k].in = true;
			ref[k].exp = exp;
			ref[k].used = ++tick;
			snprintf(ref[k].text, sizeof(ref[k].text), "%s", t);
		} else if (what == 1) {
			int want = ref[k].in && now < ref[k].exp;
			cr_assert_eq(rcache_get(c, key, now, t, sizeof(t)), want, "op %d key %s",
			             op, key);
			if (want) {
				cr_assert_str_eq(t, ref[k].text);
				ref[k].used = ++tick;
			} else {
				ref[k].in = false;
			}
		} else {
			rcache_remove(c, key);
			ref[k].in = false;
		}
		size_t n = 0;
		for (int i = 0; i < KEYS; i++)
			n += ref[i].in;
		cr_assert_eq(rcache_len(c), n, "op %d", op);
	}
	rcache_free(c);
}
