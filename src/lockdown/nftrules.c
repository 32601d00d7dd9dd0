#include "lockdown/nftrules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/json.h"
#include "base/range.h"
#include "base/vec.h"

#define MAX_JUMPS 16
#define MAX_STEPS 200000 /* rules run for one packet: nft refuses loops, a text need not */

/* One object of the "nftables" array: a chain, a rule or a set; fields borrowed from tree. */
struct item {
	const char *family, *table, *name; /* name: the chain's, the set's or the rule's chain */
	const struct json *j;
};

struct nftrules {
	struct json *tree;
	struct item *chains, *rules, *sets;
	size_t n_chains, n_rules, n_sets, cap_chains, cap_rules, cap_sets;
};

/* the result of a match: does it hold for the packet? */
enum tri { T_NO = 0, T_YES = 1, T_UNKNOWN = -1 };

enum verdict { V_NONE, V_ACCEPT, V_DROP, V_RETURN };

/* what the left side of a match reads */
enum lkind { L_PORT, L_SRC, L_DST, L_L4, L_NFPROTO, L_IIF, L_CTSTATE, L_NEVER, L_UNKNOWN };

struct eval {
	const struct nftrules *rs;
	const struct nftrules_packet *p;
	const char *family, *table; /* of the chain being run */
	bool assumed;
	int depth;
	long steps;
};

static int
add_item(struct item **v, size_t *n, size_t *cap, const struct json *o, const char *namekey)
{
	if (VEC_RESERVE(*v, *cap, *n + 1) < 0)
		return -1;
	(*v)[*n] = (struct item){json_str(json_get(o, "family")), json_str(json_get(o, "table")),
	                         json_str(json_get(o, namekey)), o};
	if (!(*v)[*n].family || !(*v)[*n].table || !(*v)[*n].name)
		return 0; /* not one we can place: ignored */
	(*n)++;
	return 0;
}

struct nftrules *
nftrules_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct nftrules *rs = calloc(1, sizeof(*rs));
	const struct json *arr;
	char jerr[160];

	if (!rs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (!(rs->tree = json_parse(text, len, jerr, sizeof(jerr)))) {
		snprintf(err, errlen, "not JSON: %s", jerr);
		goto fail;
	}
	arr = json_get(rs->tree, "nftables");
	if (!arr || arr->type != JSON_ARRAY) {
		snprintf(err, errlen,
		         "no \"nftables\" array: not the output of nft -j list ruleset");
		goto fail;
	}
	for (size_t i = 0; i < arr->n; i++) {
		const struct json *o, *e = arr->items[i];
		int rc = 0;
		if ((o = json_get(e, "chain")))
			rc = add_item(&rs->chains, &rs->n_chains, &rs->cap_chains, o, "name");
		else if ((o = json_get(e, "rule")))
			rc = add_item(&rs->rules, &rs->n_rules, &rs->cap_rules, o, "chain");
		else if ((o = json_get(e, "set")) || (o = json_get(e, "map")))
			rc = add_item(&rs->sets, &rs->n_sets, &rs->cap_sets, o, "name");
		if (rc < 0) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	return rs;
fail:
	nftrules_free(rs);
	return NULL;
}

void
nftrules_free(struct nftrules *rs)
{
	if (!rs)
		return;
	json_free(rs->tree);
	free(rs->chains);
	free(rs->rules);
	free(rs->sets);
	free(rs);
}

static bool
family_applies(const char *family, int af)
{
	return strcmp(family, "inet") == 0 || (af == AF_INET && strcmp(family, "ip") == 0) ||
	       (af == AF_INET6 && strcmp(family, "ip6") == 0);
}

static bool
is_base_filter(const struct item *c, int af)
{
	const char *hook = json_str(json_get(c->j, "hook"));
	const char *type = json_str(json_get(c->j, "type"));

	return hook && type && strcmp(type, "filter") == 0 &&
	       (strcmp(hook, "input") == 0 || strcmp(hook, "prerouting") == 0) &&
	       family_applies(c->family, af);
}

size_t
nftrules_base_chains(const struct nftrules *rs, int family)
{
	size_t n = 0;

	for (size_t i = 0; i < rs->n_chains; i++)
		n += is_base_filter(&rs->chains[i], family);
	return n;
}

static const struct json *
find_set(const struct eval *ev, const char *name)
{
	for (size_t i = 0; i < ev->rs->n_sets; i++) {
		const struct item *s = &ev->rs->sets[i];
		if (strcmp(s->name, name) == 0 && strcmp(s->table, ev->table) == 0 &&
		    strcmp(s->family, ev->family) == 0)
			return json_get(s->j, "elem");
	}
	return NULL;
}

static enum lkind
payload_kind(const struct eval *ev, const struct json *pl)
{
	const char *proto = json_str(json_get(pl, "protocol"));
	const char *field = json_str(json_get(pl, "field"));
	int af = ev->p->src.family;

	if (!proto || !field)
		return L_UNKNOWN;
	if (strcmp(proto, "tcp") == 0 || strcmp(proto, "th") == 0)
		return strcmp(field, "dport") == 0 ? L_PORT : L_UNKNOWN;
	if (strcmp(proto, "ip") == 0 || strcmp(proto, "ip6") == 0) {
		if ((af == AF_INET) != (strcmp(proto, "ip") == 0))
			return L_NEVER; /* the other family's header */
		if (strcmp(field, "saddr") == 0)
			return L_SRC;
		if (strcmp(field, "daddr") == 0)
			return ev->p->dst.family ? L_DST : L_UNKNOWN;
		if (strcmp(field, "protocol") == 0 || strcmp(field, "nexthdr") == 0)
			return L_L4;
		return L_UNKNOWN;
	}
	if (strcmp(proto, "udp") == 0 || strcmp(proto, "udplite") == 0 ||
	    strcmp(proto, "sctp") == 0 || strcmp(proto, "dccp") == 0 ||
	    strcmp(proto, "icmp") == 0 || strcmp(proto, "icmpv6") == 0 ||
	    strcmp(proto, "igmp") == 0 || strcmp(proto, "esp") == 0 || strcmp(proto, "ah") == 0)
		return L_NEVER;
	return L_UNKNOWN;
}

static enum lkind
left_kind(const struct eval *ev, const struct json *l)
{
	const struct json *o;
	const char *key;

	if ((o = json_get(l, "payload")))
		return payload_kind(ev, o);
	if ((o = json_get(l, "meta")) && (key = json_str(json_get(o, "key")))) {
		if (strcmp(key, "l4proto") == 0)
			return L_L4;
		if (strcmp(key, "nfproto") == 0)
			return L_NFPROTO;
		if (strcmp(key, "iifname") == 0 || strcmp(key, "iif") == 0)
			return L_IIF;
		return L_UNKNOWN;
	}
	if ((o = json_get(l, "ct")) && (key = json_str(json_get(o, "key"))) &&
	    strcmp(key, "state") == 0 && !json_get(o, "dir"))
		return L_CTSTATE;
	return L_UNKNOWN;
}

static enum tri
addr_is(const struct ipaddr *a, const char *s)
{
	struct ipaddr b;

	if (ipaddr_parse(s, strlen(s), &b) < 0)
		return T_UNKNOWN;
	return ipaddr_equal(a, &b) ? T_YES : T_NO;
}

static enum tri
addr_in(const struct ipaddr *a, const char *lo, const char *hi, int len)
{
	char text[2 * IPADDR_STRLEN + 8], err[160];
	struct range r;

	if (len >= 0)
		snprintf(text, sizeof(text), "%s/%d", lo, len);
	else
		snprintf(text, sizeof(text), "%s-%s", lo, hi);
	if (range_parse(text, &r, NULL, err, sizeof(err)) < 0)
		return T_UNKNOWN;
	return range_contains(&r, a) ? T_YES : T_NO;
}

static enum tri
port_is(uint16_t port, const struct json *v)
{
	const char *s = json_str(v);

	if (v->type == JSON_NUMBER)
		return v->num == port ? T_YES : T_NO;
	if (!s)
		return T_UNKNOWN;
	if (strcmp(s, "smtp") == 0)
		return port == 25 ? T_YES : T_NO;
	if (strcmp(s, "submission") == 0)
		return port == 587 ? T_YES : T_NO;
	if (strcmp(s, "submissions") == 0 || strcmp(s, "smtps") == 0)
		return port == 465 ? T_YES : T_NO;
	if (*s >= '0' && *s <= '9')
		return atoi(s) == port ? T_YES : T_NO;
	return T_UNKNOWN;
}

static enum tri has(const struct eval *ev, enum lkind k, const struct json *r, int depth);

/* r is a single value (number or string, not a set reference) */
static enum tri
scalar_is(const struct eval *ev, enum lkind k, const struct json *r)
{
	const char *s = json_str(r);
	int af = ev->p->src.family;

	switch (k) {
	case L_PORT:
		return port_is(ev->p->dport, r);
	case L_SRC:
		return s ? addr_is(&ev->p->src, s) : T_UNKNOWN;
	case L_DST:
		return s ? addr_is(&ev->p->dst, s) : T_UNKNOWN;
	case L_L4:
		if (r->type == JSON_NUMBER)
			return r->num == 6 ? T_YES : T_NO;
		return s ? (strcmp(s, "tcp") == 0 ? T_YES : T_NO) : T_UNKNOWN;
	case L_NFPROTO:
		if (!s)
			return T_UNKNOWN;
		return strcmp(s, af == AF_INET ? "ipv4" : "ipv6") == 0 ? T_YES : T_NO;
	case L_IIF:
		return s && strcmp(s, "lo") == 0 ? T_NO : T_UNKNOWN;
	case L_CTSTATE:
		return s ? (strcmp(s, "new") == 0 ? T_YES : T_NO) : T_UNKNOWN;
	default:
		return T_UNKNOWN;
	}
}

/* any of the elements of a list (an anonymous set, a named set's elem, a flag list) */
static enum tri
any_of(const struct eval *ev, enum lkind k, const struct json *list, int depth)
{
	enum tri out = T_NO;

	if (!list)
		return T_NO; /* an empty set */
	if (list->type != JSON_ARRAY)
		return has(ev, k, list, depth + 1);
	for (size_t i = 0; i < list->n; i++) {
		enum tri t = has(ev, k, list->items[i], depth + 1);
		if (t == T_YES)
			return T_YES;
		if (t == T_UNKNOWN)
			out = T_UNKNOWN;
	}
	return out;
}

static enum tri
range_has(const struct eval *ev, enum lkind k, const struct json *rg)
{
	const struct json *a, *b;

	if (!rg || rg->type != JSON_ARRAY || rg->n != 2)
		return T_UNKNOWN;
	a = rg->items[0], b = rg->items[1];
	if (k == L_PORT && a->type == JSON_NUMBER && b->type == JSON_NUMBER)
		return ev->p->dport >= a->num && ev->p->dport <= b->num ? T_YES : T_NO;
	if ((k == L_SRC || k == L_DST) && json_str(a) && json_str(b))
		return addr_in(k == L_SRC ? &ev->p->src : &ev->p->dst, json_str(a), json_str(b),
		               -1);
	return T_UNKNOWN;
}

/* Does the right-hand side r (a value, a set, "@name", a prefix, a range) hold the packet's
 * value of kind k? */
static enum tri
has(const struct eval *ev, enum lkind k, const struct json *r, int depth)
{
	const struct json *o;
	const char *s = json_str(r);

	if (depth > 8)
		return T_UNKNOWN;
	if (s && s[0] == '@')
		return any_of(ev, k, find_set(ev, s + 1), depth);
	if (r->type == JSON_ARRAY)
		return any_of(ev, k, r, depth);
	if ((o = json_get(r, "set")))
		return any_of(ev, k, o, depth);
	if ((o = json_get(r, "elem")))
		return has(ev, k, json_get(o, "val") ? json_get(o, "val") : o, depth + 1);
	if ((o = json_get(r, "prefix"))) {
		const struct json *len = json_get(o, "len");
		const char *addr = json_str(json_get(o, "addr"));
		if ((k != L_SRC && k != L_DST) || !addr || !len || len->type != JSON_NUMBER)
			return T_UNKNOWN;
		return addr_in(k == L_SRC ? &ev->p->src : &ev->p->dst, addr, NULL, (int)len->num);
	}
	if ((o = json_get(r, "range")))
		return range_has(ev, k, o);
	if (r->type == JSON_NUMBER || s)
		return scalar_is(ev, k, r);
	return T_UNKNOWN;
}

static enum tri
match(const struct eval *ev, const struct json *m)
{
	const char *op = json_str(json_get(m, "op"));
	const struct json *l = json_get(m, "left"), *r = json_get(m, "right");
	enum lkind k;
	enum tri t;

	if (!op || !l || !r)
		return T_UNKNOWN;
	k = left_kind(ev, l);
	if (k == L_NEVER)
		return T_NO;
	if (k == L_UNKNOWN)
		return T_UNKNOWN;
	if (k == L_PORT && r->type == JSON_NUMBER && op[0] != '=' && op[0] != '!' &&
	    strcmp(op, "in") != 0) {
		double p = ev->p->dport;
		bool yes = strcmp(op, "<") == 0    ? p < r->num
		           : strcmp(op, "<=") == 0 ? p <= r->num
		           : strcmp(op, ">") == 0  ? p > r->num
		           : strcmp(op, ">=") == 0 ? p >= r->num
		                                   : false;
		return yes ? T_YES : T_NO;
	}
	t = has(ev, k, r, 0);
	if (strcmp(op, "==") == 0 || strcmp(op, "in") == 0)
		return t;
	if (strcmp(op, "!=") == 0)
		return t == T_UNKNOWN ? T_UNKNOWN : t == T_YES ? T_NO : T_YES;
	return T_UNKNOWN;
}

static enum verdict run_chain(struct eval *ev, const char *name, bool base);

static enum verdict
verdict_of(struct eval *ev, const struct json *e, bool *is_verdict)
{
	const struct json *o;
	const char *target;

	*is_verdict = true;
	if (json_get(e, "accept"))
		return V_ACCEPT;
	if (json_get(e, "drop") || json_get(e, "reject"))
		return V_DROP;
	if (json_get(e, "return"))
		return V_RETURN;
	if ((o = json_get(e, "jump")) && (target = json_str(json_get(o, "target")))) {
		enum verdict v = run_chain(ev, target, false);
		return v == V_RETURN ? V_NONE : v;
	}
	if ((o = json_get(e, "goto")) && (target = json_str(json_get(o, "target")))) {
		enum verdict v = run_chain(ev, target, false);
		return v == V_NONE ? V_RETURN : v;
	}
	if ((o = json_get(e, "xt")) && json_str(json_get(o, "type")) &&
	    strcmp(json_str(json_get(o, "type")), "target") == 0) {
		const char *n = json_str(json_get(o, "name"));
		if (n && (strcmp(n, "REJECT") == 0 || strcmp(n, "DROP") == 0))
			return V_DROP;
		if (n && strcmp(n, "ACCEPT") == 0)
			return V_ACCEPT;
	}
	*is_verdict = false;
	return V_NONE;
}

/* a verdict map: the verdict of the first entry whose key holds the packet's value */
static enum tri
vmap(struct eval *ev, const struct json *vm, const struct json **verdict)
{
	const struct json *data = json_get(vm, "data"), *key = json_get(vm, "key");
	enum lkind k = key ? left_kind(ev, key) : L_UNKNOWN;

	if (k == L_NEVER)
		return T_NO;
	if (json_str(data) && json_str(data)[0] == '@')
		data = find_set(ev, json_str(data) + 1);
	else if (data)
		data = json_get(data, "set");
	if (!data || data->type != JSON_ARRAY || k == L_UNKNOWN)
		return T_UNKNOWN;
	for (size_t i = 0; i < data->n; i++) {
		const struct json *pair = data->items[i];
		if (pair->type != JSON_ARRAY || pair->n != 2)
			return T_UNKNOWN;
		enum tri t = has(ev, k, pair->items[0], 0);
		if (t == T_UNKNOWN)
			return T_UNKNOWN;
		if (t == T_YES) {
			*verdict = pair->items[1];
			return T_YES;
		}
	}
	return T_NO;
}

/* One rule: V_NONE when it does not apply or sets no verdict. */
static enum verdict
run_rule(struct eval *ev, const struct json *expr)
{
	bool unsure = false, is_verdict;

	for (size_t i = 0; expr && i < expr->n; i++) {
		const struct json *e = expr->items[i], *o, *vd = NULL;
		enum tri t = T_YES;
		enum verdict v;
		if ((o = json_get(e, "match")))
			t = match(ev, o);
		else if ((o = json_get(e, "xt")) && json_str(json_get(o, "type")) &&
		         strcmp(json_str(json_get(o, "type")), "match") == 0)
			t = json_str(json_get(o, "name")) &&
			                    (strcmp(json_str(json_get(o, "name")), "conntrack") ==
			                             0 ||
			                     strcmp(json_str(json_get(o, "name")), "state") == 0)
			            ? T_NO
			            : T_UNKNOWN;
		else if (json_get(e, "limit"))
			t = T_UNKNOWN;
		else if ((o = json_get(e, "vmap"))) {
			t = vmap(ev, o, &vd);
			if (t == T_YES) {
				v = verdict_of(ev, vd, &is_verdict);
				if (v != V_DROP || !unsure)
					return v;
				return V_NONE;
			}
			if (t == T_UNKNOWN)
				ev->assumed = true; /* a map we cannot read: assume it lets it on */
			continue;
		}
		if (t == T_NO)
			return V_NONE;
		if (t == T_UNKNOWN) {
			unsure = true;
			continue;
		}
		/* a verdict: taken when every match held; with undecided ones, only when it
		 * lets the packet through */
		v = verdict_of(ev, e, &is_verdict);
		if (!is_verdict)
			continue;
		if (unsure && v == V_DROP)
			return V_NONE;
		if (unsure)
			ev->assumed = true;
		return v;
	}
	return V_NONE;
}

static enum verdict
run_chain(struct eval *ev, const char *name, bool base)
{
	enum verdict v = V_NONE;

	if (++ev->depth > MAX_JUMPS) {
		ev->assumed = true;
		ev->depth--;
		return V_RETURN;
	}
	for (size_t i = 0; i < ev->rs->n_rules && v == V_NONE; i++) {
		const struct item *r = &ev->rs->rules[i];
		if (strcmp(r->name, name) != 0 || strcmp(r->table, ev->table) != 0 ||
		    strcmp(r->family, ev->family) != 0)
			continue;
		if (++ev->steps > MAX_STEPS) {
			ev->assumed = true;
			v = V_RETURN;
			break;
		}
		v = run_rule(ev, json_get(r->j, "expr"));
	}
	ev->depth--;
	if (!base || (v != V_NONE && v != V_RETURN))
		return v;
	return V_NONE; /* the caller applies the policy */
}

bool
nftrules_accepts(const struct nftrules *rs, const struct nftrules_packet *p, bool *assumed)
{
	struct eval ev = {.rs = rs, .p = p};
	bool pass = true;

	for (size_t i = 0; i < rs->n_chains && pass; i++) {
		const struct item *c = &rs->chains[i];
		const char *policy;
		enum verdict v;
		if (!is_base_filter(c, p->src.family))
			continue;
		ev.family = c->family, ev.table = c->table, ev.depth = 0, ev.steps = 0;
		v = run_chain(&ev, c->name, true);
		policy = json_str(json_get(c->j, "policy"));
		if (v == V_DROP || (v == V_NONE && policy && strcmp(policy, "drop") == 0))
			pass = false;
	}
	if (assumed)
		*assumed = ev.assumed;
	return pass;
}
