/*
 * bench/rangeset — the compiled range table against the plain alternatives, in one run.
 *
 * For 10k, 100k and 1M mixed IPv4/IPv6 ranges (CIDR blocks, /16../32 and /32../128,
 * weighted as real allow lists are): build time (text parse, then compile), bytes per
 * range, and lookups/s for
 *   rangeset      the radix-indexed table mxgate uses,
 *   binsearch     a plain binary search over the same sorted segment arrays,
 *   linear        a scan of every range for the smallest containing one (what
 *                 first-match servers do), on a smaller sample,
 * and the ratios.  All three must give the same answers (checked).  Then the whole
 * configuration path: `config_load` of a config whose ranges file holds 1M lines.
 *
 * usage: rangeset [SEED]     prints one table; never part of `make check`
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/rangeset.h"
#include "conf/config.h"

static uint64_t rs_state = 88172645463325252ull;

static uint64_t
rnd(void)
{
	rs_state ^= rs_state << 13;
	rs_state ^= rs_state >> 7;
	rs_state ^= rs_state << 17;
	return rs_state;
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One random allow-list entry as text. */
static void
gen_range(char *buf, size_t size)
{
	if (rnd() % 2) {
		static const int plens[] = {16, 20, 22, 24, 24, 24, 24, 26, 28, 29, 32, 32};
		int plen = plens[rnd() % (sizeof(plens) / sizeof(plens[0]))];
		uint32_t a = (uint32_t)rnd() & (plen ? ~0u << (32 - plen) : 0);
		snprintf(buf, size, "%u.%u.%u.%u/%d", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
		         a & 255, plen);
	} else {
		static const int plens[] = {32, 36, 40, 44, 48, 48, 48, 56, 64, 64, 128};
		int plen = plens[rnd() % (sizeof(plens) / sizeof(plens[0]))];
		uint64_t hi = (rnd() & 0x1fffffffffffffffull) | 0x2000000000000000ull, lo = rnd();
		if (plen <= 64) {
			hi &= ~0ull << (64 - plen);
			lo = 0;
		}
		snprintf(buf, size, "%x:%x:%x:%x:%x:%x:%x:%x/%d", (unsigned)(hi >> 48),
		         (unsigned)(hi >> 32) & 0xffff, (unsigned)(hi >> 16) & 0xffff,
		         (unsigned)hi & 0xffff, (unsigned)(lo >> 48), (unsigned)(lo >> 32) & 0xffff,
		         (unsigned)(lo >> 16) & 0xffff, (unsigned)lo & 0xffff, plen);
	}
}

struct baseline {
	uint32_t *k4;
	uint16_t *v4;
	size_t n4;
	u128 *k6;
	uint16_t *v6;
	size_t n6;
};

static unsigned
bin4(const struct baseline *b, uint32_t x)
{
	size_t lo = 0, hi = b->n4;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->k4[mid] <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return b->v4[lo - 1];
}

static unsigned
bin6(const struct baseline *b, u128 x)
{
	size_t lo = 0, hi = b->n6;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->k6[mid] <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return b->v6[lo - 1];
}

static unsigned
linear(const struct rangeset_entry *e, size_t n, const struct ipaddr *a)
{
	long best = -1;
	for (size_t i = 0; i < n; i++) {
		if (e[i].r.family != a->family || a->v < e[i].r.lo || a->v > e[i].r.hi)
			continue;
		if (best < 0 || range_span(&e[i].r) < range_span(&e[best].r) ||
		    (range_span(&e[i].r) == range_span(&e[best].r) && e[i].owner < e[best].owner))
			best = (long)i;
	}
	return best < 0 ? RANGESET_NONE : e[best].owner;
}

static void
run(size_t n, int owners)
{
	enum { NQ = 1 << 20, NLIN = 300 };
	struct rangeset_entry *e = malloc(n * sizeof(*e));
	char **text = malloc(n * sizeof(*text));
	struct ipaddr *q = malloc(NQ * sizeof(*q));
	char buf[128], err[256];
	double t0, t_parse, t_build, t_rs, t_bin, t_lin;
	unsigned sum_rs = 0, sum_bin = 0;
	size_t conflicts = 0;

	for (size_t i = 0; i < n; i++) {
		gen_range(buf, sizeof(buf));
		text[i] = strdup(buf);
	}
	t0 = now();
	for (size_t i = 0; i < n; i++) {
		if (range_parse(text[i], &e[i].r, NULL, err, sizeof(err)) < 0) {
			fprintf(stderr, "generated a bad range %s: %s\n", text[i], err);
			exit(1);
		}
		e[i].owner = (uint16_t)(rnd() % (unsigned)owners);
		e[i].prio = 0;
	}
	t_parse = now() - t0;

	t0 = now();
	struct rangeset *rs = rangeset_build(e, n, NULL, NULL);
	t_build = now() - t0;
	(void)conflicts;

	/* baseline arrays: the same segments */
	struct baseline b;
	b.n4 = rangeset_export(rs, AF_INET, NULL, NULL, 0);
	b.n6 = rangeset_export(rs, AF_INET6, NULL, NULL, 0);
	u128 *tmpk = malloc((b.n4 > b.n6 ? b.n4 : b.n6) * sizeof(u128));
	b.k4 = malloc(b.n4 * sizeof(*b.k4));
	b.v4 = malloc(b.n4 * sizeof(*b.v4));
	b.k6 = malloc(b.n6 * sizeof(*b.k6));
	b.v6 = malloc(b.n6 * sizeof(*b.v6));
	rangeset_export(rs, AF_INET, tmpk, b.v4, b.n4);
	for (size_t i = 0; i < b.n4; i++)
		b.k4[i] = (uint32_t)tmpk[i];
	rangeset_export(rs, AF_INET6, b.k6, b.v6, b.n6);
	free(tmpk);

	/* queries: half inside a random range, half anywhere */
	for (size_t i = 0; i < NQ; i++) {
		const struct range *r = &e[rnd() % n].r;
		if (i % 2) {
			u128 span = r->hi - r->lo;
			u128 off = span == ~(u128)0 ? (u128)rnd()
			                            : (((u128)rnd() << 64) | rnd()) % (span + 1);
			q[i] = (struct ipaddr){.family = r->family, .v = r->lo + off};
		} else if (rnd() % 2) {
			q[i] = (struct ipaddr){.family = AF_INET, .v = (uint32_t)rnd()};
		} else {
			q[i] = (struct ipaddr){.family = AF_INET6,
			                       .v = ((u128)rnd() << 64) | rnd()};
		}
	}

	t0 = now();
	for (int rep = 0; rep < 4; rep++)
		for (size_t i = 0; i < NQ; i++)
			sum_rs += rangeset_lookup(rs, &q[i]) * (unsigned)(i | 1);
	t_rs = (now() - t0) / 4;
	t0 = now();
	for (int rep = 0; rep < 4; rep++)
		for (size_t i = 0; i < NQ; i++)
			sum_bin += (q[i].family == AF_INET ? bin4(&b, (uint32_t)q[i].v)
			                                   : bin6(&b, q[i].v)) *
			           (unsigned)(i | 1);
	t_bin = (now() - t0) / 4;
	if (sum_rs != sum_bin) {
		fprintf(stderr, "rangeset and binary search disagree\n");
		exit(1);
	}
	size_t nlin = n >= 1000000 ? NLIN / 3 : NLIN;
	t0 = now();
	for (size_t i = 0; i < nlin; i++) {
		unsigned a = linear(e, n, &q[i]), r = rangeset_lookup(rs, &q[i]);
		if (a != r) {
			fprintf(stderr, "rangeset and linear scan disagree at query %zu\n", i);
			exit(1);
		}
	}
	t_lin = now() - t0;

	double l_rs = NQ / t_rs, l_bin = NQ / t_bin, l_lin = (double)nlin / t_lin;
	printf("| %7zu | %7.3f s | %7.3f s | %6.1f | %10.2f M | %10.2f M | %10.4f M | %5.2fx | "
	       "%8.0fx |\n",
	       n, t_parse, t_build, (double)rangeset_memory(rs) / (double)n, l_rs / 1e6,
	       l_bin / 1e6, l_lin / 1e6, l_rs / l_bin, l_rs / l_lin);
	fflush(stdout);

	rangeset_free(rs);
	for (size_t i = 0; i < n; i++)
		free(text[i]);
	free(text);
	free(e);
	free(q);
	free(b.k4), free(b.v4), free(b.k6), free(b.v6);
}

static void
config_path(size_t n)
{
	char dir[] = "/tmp/mxgate-bench-XXXXXX", path[256], rpath[256], buf[128];
	FILE *fp;
	struct diag d;
	double t0, t;

	if (!mkdtemp(dir))
		return;
	snprintf(rpath, sizeof(rpath), "%s/ranges.txt", dir);
	snprintf(path, sizeof(path), "%s/mxgate.conf", dir);
	fp = fopen(rpath, "w");
	for (size_t i = 0; i < n; i++) {
		gen_range(buf, sizeof(buf));
		fprintf(fp, "%s\n", buf);
	}
	fclose(fp);
	fp = fopen(path, "w");
	fprintf(fp, "hostname = \"mx.example.test\"\n"
	            "connector \"big\" {\n  usage = custom\n"
	            "  permission-groups = { anonymous-users }\n"
	            "  bindings = { \"0.0.0.0:25\", \"[::]:25\" }\n"
	            "  remote-ip-ranges-file = \"ranges.txt\"\n}\n");
	fclose(fp);
	diag_init(&d);
	t0 = now();
	struct config *c = config_load(path, &d);
	t = now() - t0;
	if (!c) {
		diag_print(&d, stderr);
	} else {
		printf("\nconfig_load of a %zu-line ranges file (parse, validate, compile both "
		       "bindings): %.3f s\n",
		       n, t);
		config_unref(c);
	}
	diag_release(&d);
	unlink(rpath);
	unlink(path);
	rmdir(dir);
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		rs_state = strtoull(argv[1], NULL, 10) | 1;
	printf("rangeset benchmark: mixed IPv4/IPv6 CIDR ranges, 2^20 lookups (half hits), "
	       "seed %llu\n\n",
	       (unsigned long long)rs_state);
	printf("|  ranges |   parse   |  compile  | B/range | rangeset/s   | binsearch/s  | "
	       "linear/s     | vs bin | vs linear |\n"
	       "|--------:|----------:|----------:|-------:|-------------:|-------------:|"
	       "-------------:|-------:|----------:|\n");
	run(10000, 8);
	run(100000, 8);
	run(1000000, 8);
	config_path(1000000);
	return 0;
}
