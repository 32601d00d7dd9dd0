/*
 * selector — picks the one receive connector for a connection, at accept time.
 *
 * The rule (docs/DESIGN.md §4, Exchange's "most specific match"): the candidates for a
 * connection to local IP:PORT are the enabled connectors bound to exactly that IP:PORT and
 * those bound to the wildcard of its family (0.0.0.0 or [::]) on PORT.  Among the
 * candidates whose remote ranges contain the client, the one with the smallest containing
 * range wins; a tie goes to the exact local binding.  Ties nothing breaks, and ranges of
 * two candidates that overlap without nesting, are configuration errors, reported when the
 * selector is built.
 *
 * One compiled rangeset (rangeset.h) per distinct binding: lookup is allocation-free.
 * The selector is built from a selector_input per connector, which it copies; the
 * strings and arrays those point to are borrowed (owned by the config) until
 * selector_free().
 */
#ifndef MXGATE_SELECTOR_H
#define MXGATE_SELECTOR_H

#include <stdbool.h>
#include <stdio.h>

#include "base/diag.h"
#include "base/ipaddr.h"
#include "conf/origin.h"

struct selector;
struct selector_table;

/* What selection needs of one connector; index i of the input is connector index i. */
struct selector_input {
	const char *name;
	struct origin at; /* the connector's opening line */
	bool enabled;
	bool all_remote; /* no ranges given: every IPv4 and IPv6 address */
	const struct endpoint *bindings;
	size_t n_bindings;
	const struct conf_range *ranges;
	size_t n_ranges;
};

/* Compiles selection for in[0..n) and reports every conflict to d as an error.
 * Returns NULL only when out of memory. */
struct selector *selector_build(const struct selector_input *in, size_t n, struct diag *d);
void selector_free(struct selector *s);

/* The table a listener bound to local uses: the exact one, else the wildcard one of the
 * family and port, else NULL (no enabled connector listens there). */
const struct selector_table *selector_table(const struct selector *s, const struct endpoint *local);

/* The connector index for a client on this table, or -1 for none. */
int selector_table_select(const struct selector_table *t, const struct ipaddr *remote);

/* Both steps at once: the connector index for local/remote, or -1. */
int selector_select(const struct selector *s, const struct endpoint *local,
                    const struct ipaddr *remote);

/* The distinct bindings of the enabled connectors (the listen set); *out borrowed until
 * selector_free(). */
size_t selector_endpoints(const struct selector *s, const struct endpoint **out);

/* Drops the borrowed range records (the config frees them, config_load_compiled()): the
 * compiled tables go on selecting; selector_explain() then says the ranges were not kept. */
void selector_forget_ranges(struct selector *s);

/* Writes, for `mxgate which -v`, each candidate with its smallest containing range (or
 * that none contains the client) and which one won. */
void selector_explain(const struct selector *s, const struct endpoint *local,
                      const struct ipaddr *remote, FILE *fp);

#endif
