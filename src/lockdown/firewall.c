#include "lockdown/firewall.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/vec.h"

/* One (port, family, local address) the rules cover. */
struct entry {
	uint16_t port;
	uint8_t family;
	bool any;          /* the family's wildcard: every local address not listed on its own */
	struct ipaddr dst; /* when !any */
	unsigned idx;      /* 1-based among the specific addresses of (port, family) */
	const struct connector **conns; /* bound here, then (specific) the wildcard's */
	size_t n_conns, n_own, conns_cap;
	struct range *allow; /* merged: sorted, disjoint, not adjacent */
	size_t n_allow;
	bool open;      /* allow is the whole family */
	bool balancers; /* allow has proxy-protocol-from's ranges of the family too */
};

struct plan {
	struct entry *e;
	size_t n;
};

struct rvec {
	struct range *v;
	size_t n, cap;
};

static const char *const format_names[] = {
        [FIREWALL_NFT] = "nft",
        [FIREWALL_IPTABLES] = "iptables",
        [FIREWALL_PF] = "pf",
        [FIREWALL_WINDOWS] = "windows",
        [FIREWALL_EXCHANGE] = "exchange",
        [FIREWALL_HAPROXY] = "haproxy",
};

int
firewall_format_parse(const char *name, enum firewall_format *out)
{
	for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
		if (strcmp(name, format_names[i]) == 0) {
			*out = (enum firewall_format)i;
			return 0;
		}
	}
	return -1;
}

const char *
firewall_format_name(enum firewall_format f)
{
	return format_names[f];
}

/* ---- ranges ------------------------------------------------------------------------------ */

static int
rvec_push(struct rvec *rv, const struct range *r)
{
	if (VEC_RESERVE(rv->v, rv->cap, rv->n + 1) < 0)
		return -1;
	rv->v[rv->n++] = *r;
	return 0;
}

static int
cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi > y->hi ? -1 : 1;
	return 0;
}

/* Sorts and joins overlapping and adjacent ranges (all of one family) in place. */
static size_t
merge(struct range *v, size_t n)
{
	size_t out = 0;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_range);
	for (size_t i = 1; i < n; i++) {
		struct range *cur = &v[out];
		if (cur->hi == ipaddr_max(cur->family) || v[i].lo <= cur->hi + 1) {
			if (v[i].hi > cur->hi)
				cur->hi = v[i].hi;
		} else {
			v[++out] = v[i];
		}
	}
	return out + 1;
}

/* The ranges of family a connector takes: everything when it has no ranges at all. */
static int
connector_ranges(const struct connector *k, int family, struct rvec *rv)
{
	if (k->all_remote) {
		struct range all = {.family = (uint8_t)family, .lo = 0, .hi = ipaddr_max(family)};
		return rvec_push(rv, &all);
	}
	for (size_t i = 0; i < k->n_ranges; i++)
		if (k->ranges[i].r.family == family && rvec_push(rv, &k->ranges[i].r) < 0)
			return -1;
	return 0;
}

/* ---- the plan ---------------------------------------------------------------------------- */

static int
cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->family != y->family)
		return x->family == AF_INET ? -1 : 1;
	if (x->any != y->any)
		return x->any ? 1 : -1;
	if (x->dst.v != y->dst.v)
		return x->dst.v < y->dst.v ? -1 : 1;
	return 0;
}

static struct entry *
find_entry(struct plan *p, uint16_t port, int family, bool any, const struct ipaddr *dst)
{
	for (size_t i = 0; i < p->n; i++) {
		struct entry *e = &p->e[i];
		if (e->port == port && e->family == family && e->any == any &&
		    (any || e->dst.v == dst->v))
			return e;
	}
	return NULL;
}

static const struct entry *
wildcard_of(const struct plan *p, const struct entry *e)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->e[i].any && p->e[i].port == e->port && p->e[i].family == e->family)
			return &p->e[i];
	return NULL;
}

static int
add_conn(struct entry *e, const struct connector *k)
{
	for (size_t i = 0; i < e->n_conns; i++)
		if (e->conns[i] == k)
			return 0;
	if (VEC_RESERVE(e->conns, e->conns_cap, e->n_conns + 1) < 0)
		return -1;
	e->conns[e->n_conns++] = k;
	return 0;
}

static void
plan_release(struct plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->e[i].conns);
		free(p->e[i].allow);
	}
	free(p->e);
	p->e = NULL;
	p->n = 0;
}

static void
warn_open(const struct entry *e, struct diag *d)
{
	const struct connector *k = NULL;
	char where[IPADDR_STRLEN + 32];

	for (size_t i = 0; !k && i < e->n_conns; i++)
		if (connector_takes_all(e->conns[i], e->family))
			k = e->conns[i];
	if (e->any) {
		snprintf(where, sizeof(where), "any local address");
	} else {
		char a[IPADDR_STRLEN];
		ipaddr_format(&e->dst, a, sizeof(a));
		snprintf(where, sizeof(where), "local address %s", a);
	}
	if (k)
		diag_warn(
		        d, k->at.file, k->at.line,
		        "connector '%s' takes every %s address: the firewall rules leave TCP port "
		        "%u (%s, %s) open to everyone",
		        k->name, e->family == AF_INET ? "IPv4" : "IPv6", e->port,
		        e->family == AF_INET ? "IPv4" : "IPv6", where);
	else
		diag_warn(d, e->conns[0]->at.file, e->conns[0]->at.line,
		          "the connectors on TCP port %u together take every %s address: the "
		          "firewall rules leave it (%s) open to everyone",
		          e->port, e->family == AF_INET ? "IPv4" : "IPv6", where);
}

/* proxy-protocol-from: the balancers connect with their own address, so a firewall in
 * front of mxgate lets them through to every port too. */
static int
balancer_ranges(const struct config *c, int family, struct rvec *rv)
{
	for (size_t i = 0; i < c->n_proxy_from; i++)
		if (c->proxy_from[i].r.family == family && rvec_push(rv, &c->proxy_from[i].r) < 0)
			return -1;
	return 0;
}

/* balancers: add proxy-protocol-from to every port's allowed sources (not for HAProxy's
 * own snippet, which filters the clients in front of the balancer). */
static int
plan_build(const struct config *c, struct plan *p, struct diag *d, bool balancers)
{
	size_t cap = 0;

	p->e = NULL;
	p->n = 0;
	for (size_t i = 0; i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		if (!k->enabled)
			continue;
		for (size_t j = 0; j < k->n_bindings; j++) {
			const struct endpoint *b = &k->bindings[j];
			bool any = ipaddr_is_any(&b->addr);
			struct entry *e = find_entry(p, b->port, b->addr.family, any, &b->addr);
			if (!e) {
				if (VEC_RESERVE(p->e, cap, p->n + 1) < 0)
					goto fail;
				e = &p->e[p->n++];
				*e = (struct entry){.port = b->port,
				                    .family = b->addr.family,
				                    .any = any,
				                    .dst = b->addr};
			}
			if (add_conn(e, k) < 0)
				goto fail;
		}
	}
	if (p->n)
		qsort(p->e, p->n, sizeof(*p->e), cmp_entry);
	for (size_t i = 0; i < p->n; i++)
		p->e[i].n_own = p->e[i].n_conns;
	for (size_t i = 0; i < p->n; i++) {
		struct entry *e = &p->e[i];
		const struct entry *w = e->any ? NULL : wildcard_of(p, e);
		struct rvec rv = {0};

		if (!e->any)
			e->idx = (i > 0 && !p->e[i - 1].any && p->e[i - 1].port == e->port &&
			          p->e[i - 1].family == e->family)
			                 ? p->e[i - 1].idx + 1
			                 : 1;
		for (size_t j = 0; w && j < w->n_own; j++)
			if (add_conn(e, w->conns[j]) < 0)
				goto fail;
		for (size_t j = 0; j < e->n_conns; j++)
			if (connector_ranges(e->conns[j], e->family, &rv) < 0) {
				free(rv.v);
				goto fail;
			}
		size_t before = rv.n;
		if (balancers && balancer_ranges(c, e->family, &rv) < 0) {
			free(rv.v);
			goto fail;
		}
		e->balancers = rv.n > before;
		e->allow = rv.v;
		e->n_allow = merge(rv.v, rv.n);
		e->open = e->n_allow == 1 && range_is_all(&e->allow[0]);
		if (e->open)
			warn_open(e, d);
	}
	return 0;
fail:
	plan_release(p);
	errno = ENOMEM;
	return -1;
}

/* ---- text helpers ------------------------------------------------------------------------ */

#define RANGE_STRLEN (2 * IPADDR_STRLEN + 2)

static void
fmt_addr(int family, u128 v, char *buf, size_t size)
{
	struct ipaddr a = {.family = (uint8_t)family, .v = v};

	ipaddr_format(&a, buf, size);
}

/* A single address bare, a CIDR block as a/n (with_all: also /0), anything else lo-hi. */
static void
fmt_range(const struct range *r, bool with_all, char *buf, size_t size)
{
	int plen = range_prefix_len(r);

	if (r->lo == r->hi)
		fmt_addr(r->family, r->lo, buf, size);
	else if (plen > 0 || (plen == 0 && with_all))
		range_format(r, buf, size);
	else {
		char a[IPADDR_STRLEN], b[IPADDR_STRLEN];
		fmt_addr(r->family, r->lo, a, sizeof(a));
		fmt_addr(r->family, r->hi, b, sizeof(b));
		snprintf(buf, size, "%s-%s", a, b);
	}
}

static const char *
fam_name(int family)
{
	return family == AF_INET ? "IPv4" : "IPv6";
}

static const char *
fam_tag(int family)
{
	return family == AF_INET ? "v4" : "v6";
}

/* A name for a comment: control characters (the config refuses them anyway) become '?'. */
static void
put_comment_text(FILE *out, const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, out);
}

/* PowerShell single-quoted string: each of its four single quotes is escaped by doubling
 * (' and U+2018..U+201B, which PowerShell also takes as quotes). */
static void
put_ps_string(FILE *out, const char *s)
{
	fputc('\'', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\'') {
			fputs("''", out);
		} else if (p[0] == 0xe2 && p[1] == 0x80 && p[2] >= 0x98 && p[2] <= 0x9b) {
			fwrite(p, 1, 3, out);
			fwrite(p, 1, 3, out);
			p += 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			fputc('?', out);
		} else {
			fputc(*p, out);
		}
	}
	fputc('\'', out);
}

/* "TCP port 25, IPv4, any local address: connector "A"" */
static void
put_entry_comment(FILE *out, const char *indent, const struct entry *e)
{
	fprintf(out, "%s# TCP port %u, %s, ", indent, e->port, fam_name(e->family));
	if (e->any) {
		fputs("any local address", out);
	} else {
		char a[IPADDR_STRLEN];
		ipaddr_format(&e->dst, a, sizeof(a));
		fprintf(out, "local address %s", a);
	}
	fprintf(out, ": connector%s ", e->n_conns == 1 ? "" : "s");
	for (size_t i = 0; i < e->n_conns; i++) {
		fputs(i ? ", \"" : "\"", out);
		put_comment_text(out, e->conns[i]->name);
		fputc('"', out);
	}
	if (e->balancers)
		fputs(", and the balancers (proxy-protocol-from)", out);
	fputc('\n', out);
}

static void
put_entry_state(FILE *out, const char *indent, const struct entry *e)
{
	if (e->open)
		fprintf(out, "%s# every %s client is allowed: this port is not restricted here\n",
		        indent, fam_name(e->family));
	else if (e->n_allow == 0)
		fprintf(out, "%s# no %s range is listed: every %s client is dropped\n", indent,
		        fam_name(e->family), fam_name(e->family));
}

/* True when (port, family) has a restricted wildcard entry that would catch e's traffic. */
static bool
wildcard_restricted(const struct plan *p, const struct entry *e)
{
	const struct entry *w = wildcard_of(p, e);

	return w && !w->open;
}

static void
set_name(const struct entry *e, char sep, char *buf, size_t size)
{
	if (e->any)
		snprintf(buf, size, "p%u%c%s", e->port, sep, fam_tag(e->family));
	else
		snprintf(buf, size, "p%u%c%s%ca%u", e->port, sep, fam_tag(e->family), sep, e->idx);
}

/* ---- nftables ---------------------------------------------------------------------------- */

static void
write_nft(const struct plan *p, const char *label, FILE *out)
{
	char name[32], r[RANGE_STRLEN], a[IPADDR_STRLEN];

	fprintf(out,
	        "#!/usr/sbin/nft -f\n"
	        "# mxgate lockdown for nftables, from %s (mxgate firewall --format nft).\n"
	        "#\n"
	        "# Apply as root: nft -f FILE\n"
	        "# It replaces the table inet mxgate in one transaction and touches nothing "
	        "else;\n"
	        "# applying it again changes nothing.  The first two commands make sure "
	        "there is a\n"
	        "# table to delete.  Undo: nft delete table inet mxgate\n"
	        "\n"
	        "table inet mxgate {}\n"
	        "delete table inet mxgate\n"
	        "\n"
	        "table inet mxgate {\n",
	        label);
	for (size_t i = 0; i < p->n; i++) {
		const struct entry *e = &p->e[i];
		if (e->open || e->n_allow == 0)
			continue;
		set_name(e, '_', name, sizeof(name));
		put_entry_comment(out, "\t", e);
		fprintf(out, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n\t\telements = {\n",
		        name, e->family == AF_INET ? "ipv4_addr" : "ipv6_addr");
		for (size_t j = 0; j < e->n_allow; j++) {
			fmt_range(&e->allow[j], true, r, sizeof(r));
			fprintf(out, "\t\t\t%s%s\n", r, j + 1 < e->n_allow ? "," : "");
		}
		fprintf(out, "\t\t}\n\t}\n\n");
	}
	fprintf(out, "\tchain input {\n"
	             "\t\ttype filter hook input priority filter; policy accept;\n");
	for (size_t i = 0; i < p->n; i++) {
		const struct entry *e = &p->e[i];
		const char *ip = e->family == AF_INET ? "ip" : "ip6";
		char dmatch[IPADDR_STRLEN + 16];

		put_entry_comment(out, "\t\t", e);
		put_entry_state(out, "\t\t", e);
		if (e->any) {
			snprintf(dmatch, sizeof(dmatch), "meta nfproto %s ",
			         e->family == AF_INET ? "ipv4" : "ipv6");
		} else {
			ipaddr_format(&e->dst, a, sizeof(a));
			snprintf(dmatch, sizeof(dmatch), "%s daddr %s ", ip, a);
		}
		if (e->open) {
			if (!e->any && wildcard_restricted(p, e))
				fprintf(out, "\t\t%stcp dport %u accept\n", dmatch, e->port);
			continue;
		}
		if (e->n_allow) {
			set_name(e, '_', name, sizeof(name));
			fprintf(out, "\t\t%stcp dport %u %s saddr @%s accept\n",
			        e->any ? "" : dmatch, e->port, ip, name);
		}
		fprintf(out, "\t\t%stcp dport %u counter drop\n", dmatch, e->port);
	}
	fprintf(out, "\t}\n}\n");
}

/* ---- iptables ---------------------------------------------------------------------------- */

struct ipt_ctx {
	FILE *out;
	const char *prefix;
};

static int
ipt_cidr_cb(const struct range *cidr, void *arg)
{
	struct ipt_ctx *x = arg;
	char r[RANGE_STRLEN];

	range_format(cidr, r, sizeof(r));
	fprintf(x->out, "%s -s %s -j RETURN\n", x->prefix, r);
	return 0;
}

static void
write_ipt_family(const struct plan *p, int family, FILE *out)
{
	const char *cmd = family == AF_INET ? "iptables" : "ip6tables";
	char prefix[IPADDR_STRLEN + 64], a[IPADDR_STRLEN], b[IPADDR_STRLEN];
	int n = 0;

	fprintf(out,
	        "\n# %s\n%s-restore -w --noflush <<'MXGATE_EOF'\n*filter\n:MXGATE-INPUT - "
	        "[0:0]\n",
	        fam_name(family), cmd);
	for (size_t i = 0; i < p->n; i++) {
		const struct entry *e = &p->e[i];
		if (e->family != family)
			continue;
		n++;
		put_entry_comment(out, "", e);
		put_entry_state(out, "", e);
		if (e->any) {
			snprintf(prefix, sizeof(prefix), "-A MXGATE-INPUT -p tcp --dport %u",
			         e->port);
		} else {
			ipaddr_format(&e->dst, a, sizeof(a));
			snprintf(prefix, sizeof(prefix),
			         "-A MXGATE-INPUT -d %s/%d -p tcp --dport %u", a,
			         ipaddr_bits(family), e->port);
		}
		if (e->open) {
			if (!e->any && wildcard_restricted(p, e))
				fprintf(out, "%s -j RETURN\n", prefix);
			continue;
		}
		for (size_t j = 0; j < e->n_allow; j++) {
			const struct range *r = &e->allow[j];
			if (range_prefix_len(r) >= 0) {
				struct ipt_ctx x = {out, prefix};
				ipt_cidr_cb(r, &x);
			} else {
				fmt_addr(family, r->lo, a, sizeof(a));
				fmt_addr(family, r->hi, b, sizeof(b));
				fprintf(out, "%s -m iprange --src-range %s-%s -j RETURN\n", prefix,
				        a, b);
			}
		}
		fprintf(out, "%s -j DROP\n", prefix);
	}
	if (n == 0)
		fprintf(out, "# no %s binding: the chain stays empty\n", fam_name(family));
	fprintf(out, "COMMIT\nMXGATE_EOF\n");
	fprintf(out,
	        "%s -w -C INPUT -j MXGATE-INPUT 2>/dev/null || %s -w -I INPUT 1 -j MXGATE-INPUT\n",
	        cmd, cmd);
}

static void
write_iptables(const struct plan *p, const char *label, FILE *out)
{
	fprintf(out,
	        "#!/bin/sh\n"
	        "# mxgate lockdown for iptables, from %s (mxgate firewall --format iptables).\n"
	        "#\n"
	        "# Run as root: sh FILE\n"
	        "# iptables-restore --noflush makes the chain MXGATE-INPUT, or empties and "
	        "refills it,\n"
	        "# and leaves every other chain alone; the jump to it is put first in INPUT "
	        "only when\n"
	        "# missing.  The same for IPv6 with ip6tables.  Running it again changes "
	        "nothing.\n"
	        "# Allowed clients RETURN to INPUT, where your own rules still apply; the rest "
	        "is dropped.\n"
	        "# Undo: iptables -D INPUT -j MXGATE-INPUT && iptables -F MXGATE-INPUT && "
	        "iptables -X MXGATE-INPUT\n"
	        "# (and the same with ip6tables).\n"
	        "set -e\n",
	        label);
	write_ipt_family(p, AF_INET, out);
	write_ipt_family(p, AF_INET6, out);
}

/* ---- pf ---------------------------------------------------------------------------------- */

struct pf_ctx {
	FILE *out;
	bool first;
};

static int
pf_cidr_cb(const struct range *cidr, void *arg)
{
	struct pf_ctx *x = arg;
	char r[RANGE_STRLEN];

	fmt_range(cidr, true, r, sizeof(r));
	fprintf(x->out, "%s\t%s", x->first ? "" : ", \\\n", r);
	x->first = false;
	return 0;
}

static void
pf_table(FILE *out, const char *name, const struct range *v, size_t n)
{
	struct pf_ctx x = {out, true};

	fprintf(out, "table <%s> const { \\\n", name);
	for (size_t i = 0; i < n; i++)
		range_each_cidr(&v[i], pf_cidr_cb, &x);
	fprintf(out, " \\\n}\n");
}

static int
write_pf(const struct plan *p, const char *label, FILE *out)
{
	char name[40], a[IPADDR_STRLEN];

	fprintf(out,
	        "# mxgate lockdown for pf, from %s (mxgate firewall --format pf).\n"
	        "#\n"
	        "# The rules and tables of the anchor \"mxgate\".  pf.conf needs, once, "
	        "before your own\n"
	        "# pass rules:   anchor \"mxgate\"\n"
	        "# Load, and reload after a change, as root: pfctl -a mxgate -f FILE\n"
	        "# That replaces the anchor's rules and tables and nothing else; loading "
	        "again changes\n"
	        "# nothing.  Undo: pfctl -a mxgate -F all\n",
	        label);
	for (size_t i = 0; i < p->n; i++) {
		const struct entry *e = &p->e[i];
		const char *af = e->family == AF_INET ? "inet" : "inet6";
		char to[IPADDR_STRLEN + 48];

		fputc('\n', out);
		put_entry_comment(out, "", e);
		put_entry_state(out, "", e);
		if (e->open)
			continue;
		if (e->any) {
			/* the specific addresses of the family have rules of their own */
			struct rvec loc = {0};
			for (size_t j = 0; j < p->n; j++) {
				const struct entry *s = &p->e[j];
				if (!s->any && s->port == e->port && s->family == e->family) {
					struct range one = {.family = s->family,
					                    .lo = s->dst.v,
					                    .hi = s->dst.v};
					if (rvec_push(&loc, &one) < 0) {
						free(loc.v);
						errno = ENOMEM;
						return -1;
					}
				}
			}
			if (loc.n) {
				snprintf(name, sizeof(name), "p%u_%s_local", e->port,
				         fam_tag(e->family));
				pf_table(out, name, loc.v, loc.n);
				snprintf(to, sizeof(to), "! <%s>", name);
			} else {
				snprintf(to, sizeof(to), "any");
			}
			free(loc.v);
		} else {
			ipaddr_format(&e->dst, a, sizeof(a));
			snprintf(to, sizeof(to), "%s", a);
		}
		if (e->n_allow == 0) {
			fprintf(out, "block drop in quick %s proto tcp from any to %s port %u\n",
			        af, to, e->port);
			continue;
		}
		set_name(e, '_', name, sizeof(name));
		pf_table(out, name, e->allow, e->n_allow);
		fprintf(out, "block drop in quick %s proto tcp from ! <%s> to %s port %u\n", af,
		        name, to, e->port);
	}
	return 0;
}

/* ---- Windows Defender Firewall ------------------------------------------------------------ */

static void
ps_array(FILE *out, const char *var, const struct range *v, size_t n)
{
	char r[RANGE_STRLEN];

	fprintf(out, "$%s = @(\n", var);
	for (size_t i = 0; i < n; i++) {
		fmt_range(&v[i], false, r, sizeof(r));
		fprintf(out, "\t'%s'%s\n", r, i + 1 < n ? "," : "");
	}
	fprintf(out, ")\n");
}

/* The parts of the family's address space not in v (merged). */
static int
complement(const struct range *v, size_t n, int family, struct rvec *out)
{
	u128 next = 0;
	bool done = false;

	for (size_t i = 0; i < n && !done; i++) {
		if (v[i].lo > next) {
			struct range gap = {
			        .family = (uint8_t)family, .lo = next, .hi = v[i].lo - 1};
			if (rvec_push(out, &gap) < 0)
				return -1;
		}
		if (v[i].hi == ipaddr_max(family))
			done = true;
		else
			next = v[i].hi + 1;
	}
	if (!done) {
		struct range gap = {
		        .family = (uint8_t)family, .lo = next, .hi = ipaddr_max(family)};
		if (rvec_push(out, &gap) < 0)
			return -1;
	}
	return 0;
}

static int
write_windows_entry(const struct plan *p, const struct entry *e, FILE *out)
{
	struct rvec block = {0}, local = {0};
	char id[40], a[IPADDR_STRLEN];
	const char *fam = fam_name(e->family);
	int rc = -1;

	fputc('\n', out);
	put_entry_comment(out, "", e);
	put_entry_state(out, "", e);
	if (e->open)
		return 0;
	if (complement(e->allow, e->n_allow, e->family, &block) < 0)
		goto done;
	if (e->any) {
		for (size_t j = 0; j < p->n; j++) {
			const struct entry *s = &p->e[j];
			if (!s->any && s->port == e->port && s->family == e->family) {
				struct range one = {
				        .family = s->family, .lo = s->dst.v, .hi = s->dst.v};
				if (rvec_push(&local, &one) < 0)
					goto done;
			}
		}
		if (local.n) {
			struct rvec others = {0};
			/* every local address of the family but the ones with rules of their own */
			if (complement(local.v, local.n, e->family, &others) < 0) {
				free(others.v);
				goto done;
			}
			free(local.v);
			local = others;
			ps_array(out, "local", local.v, local.n);
		}
	} else {
		ipaddr_format(&e->dst, a, sizeof(a));
		fprintf(out, "$local = '%s'\n", a);
	}
	if (e->n_allow)
		ps_array(out, "allow", e->allow, e->n_allow);
	ps_array(out, "block", block.v, block.n);
	set_name(e, '-', id, sizeof(id));
	if (e->n_allow)
		fprintf(out,
		        "New-NetFirewallRule -Name 'mxgate-%s-allow' -Group 'mxgate' -DisplayName "
		        "'mxgate: allow TCP %u (%s) from the listed ranges' -Direction Inbound "
		        "-Protocol TCP -LocalPort %u%s -RemoteAddress $allow -Action Allow | "
		        "Out-Null\n",
		        id, e->port, fam, e->port,
		        e->any && !local.n ? "" : " -LocalAddress $local");
	fprintf(out,
	        "New-NetFirewallRule -Name 'mxgate-%s-block' -Group 'mxgate' -DisplayName "
	        "'mxgate: block TCP %u (%s) from every other address' -Direction Inbound "
	        "-Protocol TCP -LocalPort %u%s -RemoteAddress $block -Action Block | Out-Null\n",
	        id, e->port, fam, e->port, e->any && !local.n ? "" : " -LocalAddress $local");
	rc = 0;
done:
	free(block.v);
	free(local.v);
	if (rc < 0)
		errno = ENOMEM;
	return rc;
}

static int
write_windows(const struct plan *p, const char *label, FILE *out)
{
	fprintf(out,
	        "# mxgate lockdown for Windows Defender Firewall, from %s\n"
	        "# (mxgate firewall --format windows).\n"
	        "#\n"
	        "# Run in an elevated PowerShell: powershell -ExecutionPolicy Bypass -File "
	        "FILE.ps1\n"
	        "# It removes every firewall rule of the group 'mxgate' and makes the rules "
	        "below; running\n"
	        "# it again changes nothing.  A block rule wins over any allow rule in Windows, "
	        "so each\n"
	        "# port gets an allow rule for the listed ranges and a block rule for every "
	        "other address.\n"
	        "# Undo: Get-NetFirewallRule -Group 'mxgate' | Remove-NetFirewallRule\n"
	        "#Requires -RunAsAdministrator\n"
	        "\n"
	        "$ErrorActionPreference = 'Stop'\n"
	        "Get-NetFirewallRule -Group 'mxgate' -ErrorAction SilentlyContinue | "
	        "Remove-NetFirewallRule\n",
	        label);
	for (size_t i = 0; i < p->n; i++)
		if (write_windows_entry(p, &p->e[i], out) < 0)
			return -1;
	return 0;
}

/* ---- Exchange 2013+ receive connectors ---------------------------------------------------- */

struct flag_name {
	unsigned bit;
	const char *name;
};

/* Exchange's names, in the order its documentation lists them. */
static const struct flag_name auth_names[] = {
        {AUTH_TLS, "Tls"},
        {AUTH_EXTERNAL_AUTHORITATIVE, "ExternalAuthoritative"},
        {0, NULL},
};
static const struct flag_name perm_names[] = {
        {PERM_ANONYMOUS_USERS, "AnonymousUsers"},
        {PERM_EXCHANGE_SERVERS, "ExchangeServers"},
        {PERM_PARTNERS, "Partners"},
        {0, NULL},
};

/* 'A, B' for the bits set (a flags enum parses the comma list), or 'None'. */
static void
put_ps_flags(FILE *out, unsigned bits, const struct flag_name *names)
{
	bool first = true;

	fputc('\'', out);
	for (const struct flag_name *f = names; f->name; f++) {
		if (bits & f->bit) {
			fprintf(out, "%s%s", first ? "" : ", ", f->name);
			first = false;
		}
	}
	fprintf(out, "%s'", first ? "None" : "");
}

static void
ps_size(FILE *out, uint64_t bytes)
{
	if (bytes && bytes % (1024 * 1024) == 0)
		fprintf(out, "%lluMB", (unsigned long long)(bytes / (1024 * 1024)));
	else if (bytes && bytes % 1024 == 0)
		fprintf(out, "%lluKB", (unsigned long long)(bytes / 1024));
	else
		fprintf(out, "%llu", (unsigned long long)bytes);
}

/* After an anonymous relay connector: why ExternalAuthoritative, and the narrower recipe
 * (Exchange's "anonymous relay" with AnonymousUsers and one extended right), commented out:
 * the documentation says to use one or the other, never both. */
static void
write_exchange_relay_note(const struct connector *k, FILE *out)
{
	fprintf(out,
	        "# Anonymous relay, as in mxgate: ExternalAuthoritative grants the clients in\n"
	        "# RemoteIPRanges the ExchangeServers rights (relay to any recipient, no\n"
	        "# MaxMessageSize, no tarpit) without authentication.  For relay only, with the\n"
	        "# size limit kept and the senders anonymous, run instead (one or the other):\n"
	        "#   Set-ReceiveConnector -Identity (\"$Server\\\" + ");
	put_ps_string(out, k->name);
	fprintf(out, ") -AuthMechanism ");
	put_ps_flags(out, k->auth_mechanisms & AUTH_TLS, auth_names);
	fprintf(out, " -PermissionGroups ");
	put_ps_flags(out, (k->permission_groups & ~PERM_EXCHANGE_SERVERS) | PERM_ANONYMOUS_USERS,
	             perm_names);
	fprintf(out, "\n#   Get-ReceiveConnector -Identity (\"$Server\\\" + ");
	put_ps_string(out, k->name);
	fprintf(out, ") | Add-ADPermission -User 'NT AUTHORITY\\ANONYMOUS LOGON' "
	             "-ExtendedRights 'Ms-Exch-SMTP-Accept-Any-Recipient'\n");
}

static int
write_exchange_connector(const struct connector *k, FILE *out, struct diag *d)
{
	static const int fams[] = {AF_INET, AF_INET6};
	struct rvec all = {0};
	char r[RANGE_STRLEN], ep[ENDPOINT_STRLEN];

	/* As written, IPv4 first; not merged: Exchange, like mxgate, picks the connector with
	 * the smallest containing range, and joined ranges could change which that is. */
	for (int f = 0; f < 2; f++) {
		size_t start = all.n;
		if (connector_ranges(k, fams[f], &all) < 0) {
			free(all.v);
			errno = ENOMEM;
			return -1;
		}
		for (size_t i = start; i < all.n; i++) {
			for (size_t j = start; j < i; j++) {
				if (all.v[j].lo == all.v[i].lo && all.v[j].hi == all.v[i].hi) {
					memmove(&all.v[i], &all.v[i + 1],
					        (all.n - i - 1) * sizeof(all.v[0]));
					all.n--;
					i--;
					break;
				}
			}
		}
		if (connector_takes_all(k, fams[f]))
			diag_warn(d, k->at.file, k->at.line,
			          "connector '%s' takes every %s address: so will its Exchange "
			          "receive connector",
			          k->name, fam_name(fams[f]));
	}
	fprintf(out, "\n# connector \"");
	put_comment_text(out, k->name);
	fprintf(out, "\", line %d\n", k->at.line);
	if (all.n == 0) {
		diag_warn(d, k->at.file, k->at.line,
		          "connector '%s' lists no remote range: Exchange cannot express a "
		          "connector that takes no one; it is left out",
		          k->name);
		fprintf(out, "# left out: it lists no remote range, which Exchange cannot "
		             "express\n");
		free(all.v);
		return 0;
	}
	fprintf(out, "Set-MxgateReceiveConnector ");
	put_ps_string(out, k->name);
	fprintf(out, " @{\n\tBindings = @(");
	for (size_t i = 0; i < k->n_bindings; i++) {
		endpoint_format(&k->bindings[i], ep, sizeof(ep));
		fprintf(out, "%s'%s'", i ? ", " : "", ep);
	}
	fprintf(out, ")\n\tRemoteIPRanges = @(\n");
	for (size_t i = 0; i < all.n; i++) {
		fmt_range(&all.v[i], false, r, sizeof(r));
		fprintf(out, "\t\t'%s'%s\n", r, i + 1 < all.n ? "," : "");
	}
	/* mxgate's exchange-servers group is granted to every client the connector takes (mxgate
	 * has no AUTH): relay, no size limit, no tarpit.  In Exchange that group is granted only
	 * to authenticated Exchange servers, unless the connector is ExternalAuthoritative, which
	 * grants it to every client (Tls is the only mechanism that may go with it; None may not). */
	unsigned auth = k->auth_mechanisms;
	bool relay = (k->permission_groups & PERM_EXCHANGE_SERVERS) != 0;
	if (relay)
		auth = (auth & AUTH_TLS) | AUTH_EXTERNAL_AUTHORITATIVE;
	fprintf(out, "\t)\n\tAuthMechanism = ");
	put_ps_flags(out, auth, auth_names);
	fprintf(out, "\n\tPermissionGroups = ");
	put_ps_flags(out, k->permission_groups, perm_names);
	fprintf(out,
	        "\n\tRequireTLS = $%s\n\tMaxMessageSize = ", k->require_tls ? "true" : "false");
	ps_size(out, k->max_message_size);
	fprintf(out, "\n\tMaxRecipientsPerMessage = %llu\n}\n",
	        (unsigned long long)k->max_recipients_per_message);
	if (relay)
		write_exchange_relay_note(k, out);
	free(all.v);
	return 0;
}

static int
write_exchange(const struct config *c, const char *label, FILE *out, struct diag *d)
{
	fprintf(out,
	        "# mxgate receive connectors for Exchange Server 2013 and later, from %s\n"
	        "# (mxgate firewall --format exchange).\n"
	        "#\n"
	        "# Run in the Exchange Management Shell on the Mailbox server: .\\FILE.ps1 "
	        "[-Server NAME]\n"
	        "# Each connector below is made in the Frontend Transport service "
	        "(New-ReceiveConnector\n"
	        "# -Custom), or updated when the server has one of that name "
	        "(Set-ReceiveConnector);\n"
	        "# running it again changes nothing.  Exchange picks the connector with the "
	        "most specific\n"
	        "# remote range, as mxgate does: the built-in \"Default Frontend SERVER\" "
	        "connector still\n"
	        "# takes every other client on port 25 until you narrow its RemoteIPRanges or "
	        "firewall\n"
	        "# the port (mxgate firewall --format windows).\n"
	        "\n"
	        "param([string]$Server = $env:COMPUTERNAME)\n"
	        "$ErrorActionPreference = 'Stop'\n"
	        "\n"
	        "function Set-MxgateReceiveConnector([string]$Name, [hashtable]$Settings) {\n"
	        "\t$id = \"$Server\\$Name\"\n"
	        "\t$existing = Get-ReceiveConnector -Identity $id -ErrorAction "
	        "SilentlyContinue\n"
	        "\tif ($existing) {\n"
	        "\t\tif ($existing.TransportRole -ne 'FrontendTransport') {\n"
	        "\t\t\tWrite-Warning \"$id runs in $($existing.TransportRole); a port 25 "
	        "connector belongs in FrontendTransport\"\n"
	        "\t\t}\n"
	        "\t\tSet-ReceiveConnector -Identity $id @Settings\n"
	        "\t} else {\n"
	        "\t\tNew-ReceiveConnector -Name $Name -Server $Server -TransportRole "
	        "FrontendTransport -Custom @Settings | Out-Null\n"
	        "\t}\n"
	        "}\n",
	        label);
	for (size_t i = 0; i < c->n_connectors; i++)
		if (c->connectors[i].enabled &&
		    write_exchange_connector(&c->connectors[i], out, d) < 0)
			return -1;
	return 0;
}

/* ---- HAProxy ------------------------------------------------------------------------------ */

/* Values on one acl line: HAProxy takes at most 64 words a line (MAX_LINE_ARGS). */
#define HAP_PER_LINE 8

struct hap_ctx {
	FILE *out;
	const char *acl;
	unsigned n;      /* values on the current line */
	unsigned *lines; /* acl lines written for the frontend */
};

static int
hap_cidr_cb(const struct range *cidr, void *arg)
{
	struct hap_ctx *x = arg;
	char r[RANGE_STRLEN];

	fmt_range(cidr, true, r, sizeof(r));
	if (x->n == HAP_PER_LINE) {
		fputc('\n', x->out);
		x->n = 0;
	}
	if (x->n == 0) {
		fprintf(x->out, "\tacl %s src", x->acl);
		(*x->lines)++;
	}
	fprintf(x->out, " %s", r);
	x->n++;
	return 0;
}

/* The acl lines of one entry: its ranges as CIDR blocks, or the whole family. */
static void
hap_entry_acl(FILE *out, const struct entry *e, const char *acl, unsigned *lines)
{
	struct hap_ctx x = {out, acl, 0, lines};

	put_entry_comment(out, "\t", e);
	put_entry_state(out, "\t", e);
	if (e->open) {
		fprintf(out, "\tacl %s src %s\n", acl, e->family == AF_INET ? "0.0.0.0/0" : "::/0");
		(*lines)++;
		return;
	}
	for (size_t j = 0; j < e->n_allow; j++)
		range_each_cidr(&e->allow[j], hap_cidr_cb, &x);
	if (x.n)
		fputc('\n', out);
}

static void
hap_bind(FILE *out, const struct entry *e)
{
	char a[IPADDR_STRLEN];

	if (e->any) {
		fprintf(out, "\tbind %s:%u%s\n", e->family == AF_INET ? "0.0.0.0" : "::", e->port,
		        e->family == AF_INET ? "" : " v6only");
	} else {
		ipaddr_format(&e->dst, a, sizeof(a));
		fprintf(out, "\tbind %s%s%s:%u\n", e->family == AF_INET ? "" : "[", a,
		        e->family == AF_INET ? "" : "]", e->port);
	}
}

/* One frontend and its backend for the entries ents[0..n): a port's wildcards (IPv4
 * and IPv6), or one specific local address. */
static void
write_hap_frontend(const struct entry *const *ents, size_t n, FILE *out)
{
	const struct entry *e0 = ents[0];
	char name[48], set[40], acl[64], a[IPADDR_STRLEN];
	unsigned lines = 0;
	bool open = true;

	if (e0->any) {
		snprintf(name, sizeof(name), "mxgate_p%u", e0->port);
	} else {
		set_name(e0, '_', set, sizeof(set));
		snprintf(name, sizeof(name), "mxgate_%s", set);
	}
	snprintf(acl, sizeof(acl), "%s_allowed", name);
	for (size_t i = 0; i < n; i++)
		open = open && ents[i]->open;
	fputc('\n', out);
	if (e0->any) {
		fprintf(out, "# TCP port %u, the bindings to any local address.\n", e0->port);
	} else {
		ipaddr_format(&e0->dst, a, sizeof(a));
		fprintf(out,
		        "# TCP port %u, mxgate's binding to %s alone, with connectors of its own:\n"
		        "# bind this frontend to the balancer address that stands for it, and "
		        "point the\n"
		        "# servers at each node's binding for it.\n",
		        e0->port, a);
	}
	fprintf(out, "frontend %s\n\tmode tcp\n", name);
	for (size_t i = 0; i < n; i++)
		hap_bind(out, ents[i]);
	fprintf(out, "\ttimeout client 10m\n");
	for (size_t i = 0; i < n; i++)
		if (!open)
			hap_entry_acl(out, ents[i], acl, &lines);
		else
			put_entry_comment(out, "\t", ents[i]);
	if (open)
		fprintf(out, "\t# every client is allowed: this port is not restricted here\n");
	else if (lines == 0)
		fprintf(out, "\ttcp-request connection reject\n");
	else
		fprintf(out, "\ttcp-request connection reject if !%s\n", acl);
	fprintf(out,
	        "\tdefault_backend %s\n"
	        "\n"
	        "backend %s\n"
	        "\tmode tcp\n"
	        "\ttimeout connect 10s\n"
	        "\ttimeout server 10m\n"
	        "\t# one line per mxgate node, which must list this balancer in "
	        "proxy-protocol-from:\n"
	        "\t# server node1 192.0.2.10:%u send-proxy-v2 check\n",
	        name, name, e0->port);
}

static int
write_haproxy(const struct plan *p, const char *label, FILE *out)
{
	const struct entry **ents = calloc(p->n ? p->n : 1, sizeof(*ents));

	if (!ents) {
		errno = ENOMEM;
		return -1;
	}
	fprintf(out, "# mxgate lockdown for HAProxy in front of mxgate, from ");
	put_comment_text(out, label);
	fprintf(out, "\n# (mxgate firewall --format haproxy).\n"
	             "#\n"
	             "# Paste these sections into haproxy.cfg, after global and defaults; check "
	             "it with\n"
	             "# haproxy -c -f /etc/haproxy/haproxy.cfg, then reload HAProxy.  One frontend "
	             "per TCP port\n"
	             "# mxgate is bound to (and one per local address bound on its own) rejects, "
	             "at accept,\n"
	             "# every client outside the connectors' ranges; its backend lists the mxgate "
	             "nodes.\n"
	             "# A frontend of your own for the port?  Copy the acl and tcp-request lines "
	             "into it.\n"
	             "# send-proxy-v2 on each server line tells mxgate the client's address (the "
	             "PROXY\n"
	             "# protocol); mxgate believes it only from the addresses in its "
	             "proxy-protocol-from,\n"
	             "# and HAProxy's health checks send it too.  The timeouts leave room for "
	             "SMTP's\n"
	             "# (RFC 5321 section 4.5.3.2: up to 10 minutes after the end of the data).\n");
	for (size_t i = 0; i < p->n;) {
		size_t n = 0, j = i;
		/* a port's wildcards together, each specific address alone */
		for (; j < p->n && p->e[j].port == p->e[i].port; j++)
			if (p->e[j].any)
				ents[n++] = &p->e[j];
		if (n)
			write_hap_frontend(ents, n, out);
		for (size_t k = i; k < j; k++) {
			if (!p->e[k].any) {
				ents[0] = &p->e[k];
				write_hap_frontend(ents, 1, out);
			}
		}
		i = j;
	}
	free(ents);
	return 0;
}

/* ---- entry point ------------------------------------------------------------------------- */

int
firewall_write(const struct config *c, enum firewall_format f, const char *label, FILE *out,
               struct diag *d)
{
	struct plan p;
	int rc = 0;

	if (f == FIREWALL_EXCHANGE) {
		rc = write_exchange(c, label, out, d);
	} else {
		if (plan_build(c, &p, d, f != FIREWALL_HAPROXY) < 0)
			return -1;
		switch (f) {
		case FIREWALL_NFT:
			write_nft(&p, label, out);
			break;
		case FIREWALL_IPTABLES:
			write_iptables(&p, label, out);
			break;
		case FIREWALL_PF:
			rc = write_pf(&p, label, out);
			break;
		case FIREWALL_WINDOWS:
			rc = write_windows(&p, label, out);
			break;
		case FIREWALL_HAPROXY:
			rc = write_haproxy(&p, label, out);
			break;
		case FIREWALL_EXCHANGE:
			break;
		}
		plan_release(&p);
	}
	if (fflush(out) != 0 || ferror(out))
		return -1;
	return rc;
}
