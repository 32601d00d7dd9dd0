#include "conf/selector.h"

#include <stdlib.h>
#include <string.h>

#include "base/rangeset.h"
#include "base/vec.h"

struct selector_table {
	struct endpoint ep; /* a binding of some enabled connector; wildcard when addr is 0 */
	struct rangeset *rs;
};

struct selector {
	struct selector_input *conns; /* a copy of the input */
	size_t n_conns;
	struct selector_table *tables; /* one per distinct binding, in first-seen order */
	size_t n_tables;
	struct endpoint *eps; /* the same endpoints, as a plain array for listeners */
};

struct pairkey {
	uint16_t ca, cb;
	int32_t ra, rb;
};

/* A table's rangeset is built from runs read in place (no copy of a million ranges): one
 * per candidate connector, its ranges, or for a connector without ranges its family's
 * whole space. */
struct conflicts {
	const struct selector *s;
	const struct selector_table *t;
	const struct rangeset_run *runs;
	const uint16_t *run_conn; /* the connector of each run */
	size_t n_runs;
	struct diag *d;
	struct pairkey *seen;
	size_t n_seen, seen_cap;
};

/* Where rangeset entry i came from: its connector, and its index in the connector's ranges
 * or -1 for "every address". */
struct src {
	uint16_t conn;
	int32_t range;
};

static struct src
entry_src(const struct conflicts *cf, size_t i)
{
	for (size_t k = 0; k < cf->n_runs; k++) {
		const struct selector_input *in = &cf->s->conns[cf->run_conn[k]];
		if (i < cf->runs[k].n)
			return (struct src){cf->run_conn[k], in->all_remote ? -1 : (int32_t)i};
		i -= cf->runs[k].n;
	}
	return (struct src){0, -1}; /* not reached: the rangeset numbers only run entries */
}

static bool
ep_equal(const struct endpoint *a, const struct endpoint *b)
{
	return a->port == b->port && ipaddr_equal(&a->addr, &b->addr);
}

/* 0: conn is bound to ep exactly; 1: through its family's wildcard; -1: not a candidate. */
static int
candidate_prio(const struct selector_input *k, const struct endpoint *ep)
{
	int prio = -1;

	if (!k->enabled)
		return -1;
	for (size_t i = 0; i < k->n_bindings; i++) {
		const struct endpoint *b = &k->bindings[i];
		if (b->port != ep->port || b->addr.family != ep->addr.family)
			continue;
		if (ep_equal(b, ep))
			return 0;
		if (ipaddr_is_any(&b->addr))
			prio = 1;
	}
	return prio;
}

static void
describe_entry(const struct conflicts *cf, struct src e, char *buf, size_t size)
{
	const struct selector_input *k = &cf->s->conns[e.conn];
	char r[128];

	if (e.range < 0) {
		snprintf(buf, size, "every %s address (connector '%s' lists no remote ranges)",
		         cf->t->ep.addr.family == AF_INET ? "IPv4" : "IPv6", k->name);
		return;
	}
	const struct conf_range *cr = &k->ranges[e.range];
	range_format(&cr->r, r, sizeof(r));
	snprintf(buf, size, "%s of connector '%s' (%s:%d)", r, k->name, cr->at.file, cr->at.line);
}

static struct origin
entry_origin(const struct conflicts *cf, struct src e)
{
	const struct selector_input *k = &cf->s->conns[e.conn];

	if (e.range < 0)
		return k->at;
	return k->ranges[e.range].at;
}

static void
conflict_cb(enum rangeset_conflict kind, size_t ia, size_t ib, void *arg)
{
	struct conflicts *cf = arg;
	struct src a = entry_src(cf, ia), b = entry_src(cf, ib);
	struct pairkey key = {a.conn, b.conn, a.range, b.range};
	char da[256], db[256], ep[ENDPOINT_STRLEN];
	struct origin at = entry_origin(cf, b);

	if (key.ca > key.cb || (key.ca == key.cb && key.ra > key.rb))
		key = (struct pairkey){key.cb, key.ca, key.rb, key.ra};
	for (size_t i = 0; i < cf->n_seen; i++)
		if (memcmp(&cf->seen[i], &key, sizeof(key)) == 0)
			return;
	/* without memory the pair may be reported twice, which is harmless */
	if (VEC_RESERVE(cf->seen, cf->seen_cap, cf->n_seen + 1) == 0)
		cf->seen[cf->n_seen++] = key;
	describe_entry(cf, a, da, sizeof(da));
	describe_entry(cf, b, db, sizeof(db));
	endpoint_format(&cf->t->ep, ep, sizeof(ep));
	if (kind == RANGESET_PARTIAL)
		diag_error(cf->d, at.file, at.line,
		           "remote range %s partly overlaps %s; connectors that share binding %s "
		           "must have ranges that are disjoint or nested",
		           db, da, ep);
	else
		diag_error(cf->d, at.file, at.line,
		           "connectors '%s' and '%s' both take binding %s with the same remote "
		           "range (%s): no connector is more specific",
		           cf->s->conns[a.conn].name, cf->s->conns[b.conn].name, ep, db);
}

static int
build_table(struct selector *s, struct selector_table *t, struct diag *d)
{
	struct rangeset_run *runs = calloc(s->n_conns ? s->n_conns : 1, sizeof(*runs));
	uint16_t *run_conn = calloc(s->n_conns ? s->n_conns : 1, sizeof(*run_conn));
	int family = t->ep.addr.family;
	const struct range all = {.family = (uint8_t)family, .lo = 0, .hi = ipaddr_max(family)};
	size_t n = 0;
	int rc = -1;

	if (!runs || !run_conn)
		goto out;
	/* the binding's family decides which clients can arrive ([::] is IPv6-only): the
	 * rangeset skips the ranges of the other family */
	for (size_t c = 0; c < s->n_conns; c++) {
		const struct selector_input *k = &s->conns[c];
		int prio = candidate_prio(k, &t->ep);
		if (prio < 0)
			continue;
		run_conn[n] = (uint16_t)c;
		if (k->all_remote)
			runs[n++] = (struct rangeset_run){&all, 1, sizeof(all), (uint16_t)c,
			                                  (uint8_t)prio};
		else
			runs[n++] = (struct rangeset_run){k->n_ranges ? &k->ranges[0].r : &all,
			                                  k->n_ranges, sizeof(struct conf_range),
			                                  (uint16_t)c, (uint8_t)prio};
	}
	struct conflicts cf = {
	        .s = s, .t = t, .runs = runs, .run_conn = run_conn, .n_runs = n, .d = d};
	t->rs = rangeset_build_runs(runs, n, family, conflict_cb, &cf);
	free(cf.seen);
	rc = t->rs ? 0 : -1;
out:
	free(runs);
	free(run_conn);
	return rc;
}

struct selector *
selector_build(const struct selector_input *conns, size_t n, struct diag *d)
{
	struct selector *s = calloc(1, sizeof(*s));
	struct selector_input *copy;
	size_t cap = 0;

	if (!s || !(copy = calloc(n ? n : 1, sizeof(*copy)))) {
		free(s);
		return NULL;
	}
	if (n)
		memcpy(copy, conns, n * sizeof(*copy));
	s->conns = copy;
	s->n_conns = n;
	for (size_t c = 0; c < n; c++) {
		if (!conns[c].enabled)
			continue;
		for (size_t b = 0; b < conns[c].n_bindings; b++) {
			const struct endpoint *ep = &conns[c].bindings[b];
			bool dup = false;
			for (size_t i = 0; i < s->n_tables && !dup; i++)
				dup = ep_equal(&s->tables[i].ep, ep);
			if (dup)
				continue;
			if (VEC_RESERVE(s->tables, cap, s->n_tables + 1) < 0)
				goto fail;
			s->tables[s->n_tables++] = (struct selector_table){.ep = *ep};
		}
	}
	s->eps = calloc(s->n_tables ? s->n_tables : 1, sizeof(*s->eps));
	if (!s->eps)
		goto fail;
	for (size_t i = 0; i < s->n_tables; i++) {
		s->eps[i] = s->tables[i].ep;
		if (build_table(s, &s->tables[i], d) < 0)
			goto fail;
	}
	return s;
fail:
	selector_free(s);
	return NULL;
}

void
selector_free(struct selector *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_tables; i++)
		rangeset_free(s->tables[i].rs);
	free(s->tables);
	free(s->eps);
	free(s->conns);
	free(s);
}

const struct selector_table *
selector_table(const struct selector *s, const struct endpoint *local)
{
	const struct selector_table *wild = NULL;

	for (size_t i = 0; i < s->n_tables; i++) {
		const struct selector_table *t = &s->tables[i];
		if (t->ep.port != local->port || t->ep.addr.family != local->addr.family)
			continue;
		if (ipaddr_equal(&t->ep.addr, &local->addr))
			return t;
		if (ipaddr_is_any(&t->ep.addr))
			wild = t;
	}
	return wild;
}

int
selector_table_select(const struct selector_table *t, const struct ipaddr *remote)
{
	unsigned owner;

	if (remote->family != t->ep.addr.family)
		return -1;
	owner = rangeset_lookup(t->rs, remote);
	return owner == RANGESET_NONE ? -1 : (int)owner;
}

int
selector_select(const struct selector *s, const struct endpoint *local, const struct ipaddr *remote)
{
	const struct selector_table *t = selector_table(s, local);

	return t ? selector_table_select(t, remote) : -1;
}

size_t
selector_endpoints(const struct selector *s, const struct endpoint **out)
{
	*out = s->eps;
	return s->n_tables;
}

void
selector_forget_ranges(struct selector *s)
{
	for (size_t c = 0; c < s->n_conns; c++)
		s->conns[c].ranges = NULL;
}

void
selector_explain(const struct selector *s, const struct endpoint *local,
                 const struct ipaddr *remote, FILE *fp)
{
	const struct selector_table *t = selector_table(s, local);
	char ep[ENDPOINT_STRLEN], ra[IPADDR_STRLEN];
	int winner;

	endpoint_format(local, ep, sizeof(ep));
	ipaddr_format(remote, ra, sizeof(ra));
	if (!t) {
		fprintf(fp,
		        "no enabled connector is bound to %s or to the %s wildcard on port %u\n",
		        ep, local->addr.family == AF_INET ? "0.0.0.0" : "[::]", local->port);
		return;
	}
	if (remote->family != local->addr.family) {
		fprintf(fp, "an %s client cannot arrive on the %s endpoint %s\n",
		        remote->family == AF_INET ? "IPv4" : "IPv6",
		        local->addr.family == AF_INET ? "IPv4" : "IPv6", ep);
		return;
	}
	winner = selector_table_select(t, remote);
	for (size_t c = 0; c < s->n_conns; c++) {
		const struct selector_input *k = &s->conns[c];
		int prio = candidate_prio(k, &t->ep);
		const struct conf_range *best = NULL;
		bool any = k->all_remote;

		if (prio < 0)
			continue;
		if (!k->ranges && k->n_ranges) {
			fprintf(fp, "candidate \"%s\": its ranges were not kept after compiling\n",
			        k->name);
			continue;
		}
		for (size_t i = 0; i < k->n_ranges; i++) {
			const struct conf_range *cr = &k->ranges[i];
			if (range_contains(&cr->r, remote) &&
			    (!best || range_span(&cr->r) < range_span(&best->r)))
				best = cr;
		}
		fprintf(fp, "candidate \"%s\" (%s binding): ", k->name,
		        prio == 0 && !ipaddr_is_any(&t->ep.addr) ? "exact" : "wildcard");
		if (best) {
			char r[128];
			int plen = range_prefix_len(&best->r);
			range_format(&best->r, r, sizeof(r));
			if (plen >= 0)
				fprintf(fp, "smallest containing range %s (/%d) at %s:%d\n", r,
				        plen, best->at.file, best->at.line);
			else
				fprintf(fp, "smallest containing range %s at %s:%d\n", r,
				        best->at.file, best->at.line);
		} else if (any) {
			fprintf(fp, "no remote ranges, so every address (/0)\n");
		} else {
			fprintf(fp, "no range contains %s\n", ra);
		}
	}
	if (winner >= 0)
		fprintf(fp, "selected \"%s\": the most specific match\n", s->conns[winner].name);
	else
		fprintf(fp, "selected none: the connection is closed at accept, nothing is sent\n");
}
