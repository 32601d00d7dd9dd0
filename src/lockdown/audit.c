#include "lockdown/audit.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "base/range.h"
#include "base/vec.h"
#include "conf/providers.h"
#include "queue/queue.h"

#define MAX_INSIDERS 64

/* ---- findings ------------------------------------------------------------------------ */

static int add(struct audit_report *r, enum audit_severity sev, const char *check, const char *fix,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
add(struct audit_report *r, enum audit_severity sev, const char *check, const char *fix,
    const char *fmt, ...)
{
	struct audit_finding f = {.severity = sev};
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&f.message, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if (!(f.check = strdup(check)) || !(f.fix = strdup(fix)) ||
	    VEC_RESERVE(r->v, r->cap, r->n + 1) < 0) {
		free(f.message), free(f.check), free(f.fix);
		return -1;
	}
	r->v[r->n++] = f;
	return 0;
}

void
audit_report_release(struct audit_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].check), free(r->v[i].message), free(r->v[i].fix);
	free(r->v);
	*r = (struct audit_report){0};
}

size_t
audit_count(const struct audit_report *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		n += r->v[i].severity != AUDIT_INFO;
	return n;
}

static const char *
severity_name(enum audit_severity s)
{
	return s == AUDIT_CRITICAL ? "critical" : s == AUDIT_WARNING ? "warning" : "info";
}

static void
json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

void
audit_print(const struct audit_report *r, bool json, FILE *out)
{
	if (!json) {
		for (size_t i = 0; i < r->n; i++)
			fprintf(out, "%s %s: %s; fix: %s\n", severity_name(r->v[i].severity),
			        r->v[i].check, r->v[i].message, r->v[i].fix);
		return;
	}
	fprintf(out, "{\"findings\": [");
	for (size_t i = 0; i < r->n; i++) {
		fprintf(out, "%s\n  {\"severity\": \"%s\", \"check\": ", i ? "," : "",
		        severity_name(r->v[i].severity));
		json_string(out, r->v[i].check);
		fprintf(out, ", \"message\": ");
		json_string(out, r->v[i].message);
		fprintf(out, ", \"fix\": ");
		json_string(out, r->v[i].fix);
		fprintf(out, "}");
	}
	fprintf(out, "%s]}\n", r->n ? "\n" : "");
}

/* ---- parsers ------------------------------------------------------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The kernel prints each 32-bit word of the address as the host-order integer of its
 * network-order bytes (%08X): on a little-endian host the bytes of each word come reversed. */
static int
proc_addr(const char *s, size_t len, int family, struct ipaddr *a)
{
	size_t words = family == AF_INET ? 1 : 4;
	unsigned char bytes[16];

	if (len != words * 8)
		return -1;
	for (size_t w = 0; w < words; w++) {
		uint32_t v = 0;
		for (size_t i = 0; i < 8; i++) {
			int h = hexval(s[w * 8 + i]);
			if (h < 0)
				return -1;
			v = v << 4 | (uint32_t)h;
		}
		memcpy(bytes + w * 4, &v, 4); /* back to the bytes as they were in memory */
	}
	a->family = (uint8_t)family;
	a->v = 0;
	for (size_t i = 0; i < words * 4; i++)
		a->v = a->v << 8 | bytes[i];
	return 0;
}

static int
proc_line(const char *line, size_t len, int family, struct audit_host *h)
{
	char buf[512], *f[12], *save = NULL;
	struct audit_socket s = {.v6only = -1};
	char *colon, *end;
	size_t n = 0;

	if (len >= sizeof(buf))
		return -1;
	memcpy(buf, line, len);
	buf[len] = '\0';
	for (char *t = strtok_r(buf, " \t", &save); t && n < 12; t = strtok_r(NULL, " \t", &save))
		f[n++] = t;
	if (n < 10 || !(colon = strchr(f[1], ':')))
		return -1;
	if (strcmp(f[3], "0A") != 0)
		return 0; /* not listening */
	if (proc_addr(f[1], (size_t)(colon - f[1]), family, &s.local.addr) < 0)
		return -1;
	unsigned long port = strtoul(colon + 1, &end, 16);
	if (*end || port > 65535)
		return -1;
	s.local.port = (uint16_t)port;
	s.inode = strtoul(f[9], &end, 10);
	if (*end)
		return -1;
	if (VEC_RESERVE(h->sockets, h->cap_sockets, h->n_sockets + 1) < 0)
		return -2;
	h->sockets[h->n_sockets++] = s;
	return 0;
}

int
audit_parse_proc_net_tcp(const char *text, int family, struct audit_host *h)
{
	const char *p = strchr(text, '\n'); /* the heading */

	if (!p)
		return *text ? (errno = EINVAL, -1) : 0;
	for (p++; *p;) {
		size_t len = strcspn(p, "\n");
		int rc = len ? proc_line(p, len, family, h) : 0;
		if (rc == -2)
			return errno = ENOMEM, -1;
		if (rc < 0)
			return errno = EINVAL, -1;
		p += len + (p[len] == '\n');
	}
	return 0;
}

/* the attributes of one message: INET_DIAG_SKV6ONLY onto the socket of that inode */
static void
diag_attrs(const unsigned char *p, size_t len, unsigned ino, struct audit_host *h)
{
	while (len >= sizeof(struct rtattr)) {
		struct rtattr a;
		memcpy(&a, p, sizeof(a));
		if (a.rta_len < sizeof(a) || a.rta_len > len)
			return;
		if (a.rta_type == INET_DIAG_SKV6ONLY && a.rta_len > RTA_LENGTH(0))
			for (size_t i = 0; i < h->n_sockets; i++)
				if (h->sockets[i].inode == ino &&
				    h->sockets[i].local.addr.family == AF_INET6)
					h->sockets[i].v6only = p[RTA_LENGTH(0)] != 0;
		size_t step = RTA_ALIGN(a.rta_len);
		if (step >= len)
			return;
		p += step, len -= step;
	}
}

int
audit_parse_sock_diag(const void *buf, size_t len, struct audit_host *h)
{
	const unsigned char *p = buf;

	while (len > 0) {
		struct nlmsghdr nh;
		struct inet_diag_msg m;
		if (len < sizeof(nh))
			return -1;
		memcpy(&nh, p, sizeof(nh));
		if (nh.nlmsg_len < sizeof(nh) || nh.nlmsg_len > len)
			return -1;
		if (nh.nlmsg_type == NLMSG_DONE)
			return 1;
		if (nh.nlmsg_type != SOCK_DIAG_BY_FAMILY || nh.nlmsg_len < NLMSG_LENGTH(sizeof(m)))
			return -1;
		memcpy(&m, p + NLMSG_HDRLEN, sizeof(m));
		diag_attrs(p + NLMSG_LENGTH(sizeof(m)), nh.nlmsg_len - NLMSG_LENGTH(sizeof(m)),
		           m.idiag_inode, h);
		size_t step = NLMSG_ALIGN(nh.nlmsg_len);
		if (step >= len)
			return 0;
		p += step, len -= step;
	}
	return 0;
}

unsigned long
audit_socket_inode(const char *link)
{
	char *end;
	unsigned long v;

	if (strncmp(link, "socket:[", 8) != 0)
		return 0;
	v = strtoul(link + 8, &end, 10);
	return end[0] == ']' && end[1] == '\0' ? v : 0;
}

size_t
audit_count_legacy_rules(const char *text)
{
	size_t n = 0;

	for (const char *p = text; *p;) {
		size_t len = strcspn(p, "\n");
		if (len > 3 && strncmp(p, "-A ", 3) == 0)
			n++;
		else if (len > 1 && p[0] == ':' && memchr(p, ' ', len)) {
			const char *policy = (const char *)memchr(p, ' ', len) + 1;
			if (strncmp(policy, "ACCEPT ", 7) != 0 && strncmp(policy, "- ", 2) != 0)
				n++;
		}
		p += len + (p[len] == '\n');
	}
	return n;
}

static time_t
parse_utc(const char *s)
{
	struct tm tm = {0};
	char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);

	return end ? timegm(&tm) : 0;
}

static int status_sha256(const char *text, unsigned char out[32]);

int
audit_parse_status(const char *text, struct audit_host *h)
{
	const char *p = strstr(text, "(pid "), *c, *gen, *loaded;

	if (!p || (c = strstr(text, "\nconfiguration: ")) == NULL)
		return -1;
	h->daemon_pid = strtol(p + 5, NULL, 10);
	c += strlen("\nconfiguration: ");
	if (!(gen = strstr(c, ", generation ")) || memchr(c, '\n', (size_t)(gen - c)))
		return -1;
	free(h->daemon_config);
	if (!(h->daemon_config = strndup(c, (size_t)(gen - c))))
		return -1;
	if ((loaded = strstr(gen, ", loaded ")) && !memchr(gen, '\n', (size_t)(loaded - gen)))
		h->daemon_loaded = parse_utc(loaded + strlen(", loaded "));
	h->sha256_known = status_sha256(text, h->daemon_sha256) == 0;
	h->daemon = h->daemon_pid > 0;
	return h->daemon ? 0 : -1;
}

/* "configuration sha256: HEX" of the status answer into out; 0 or -1 when absent */
static int
status_sha256(const char *text, unsigned char out[32])
{
	const char *p = strstr(text, "\nconfiguration sha256: ");

	if (!p)
		return -1;
	p += strlen("\nconfiguration sha256: ");
	for (size_t i = 0; i < 32; i++) {
		int hi = hexval(p[2 * i]), lo = hi < 0 ? -1 : hexval(p[2 * i + 1]);
		if (lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* ---- the firewall against the configuration ----------------------------------------- */

/* what one (port, family) looks like */
struct famstate {
	bool bound;     /* the configuration binds this family on the port */
	bool reachable; /* a socket takes this family's clients on the port */
	bool whole;     /* the configuration itself takes every address of the family */
	bool open;      /* the firewall lets the outsider through */
	bool exposed;   /* one of the addresses is not loopback: other hosts can reach it */
	bool assumed;
	struct ipaddr outsider;
	struct ipaddr dsts[16];
	size_t n_dsts, dropped;
	struct ipaddr first_dropped;
	uint16_t port;
};

static const char *const outsiders4[] = {"198.51.100.1", "203.0.113.1", "192.0.2.1", "8.8.8.8"};
static const char *const outsiders6[] = {"2001:db8::1", "2606:4700::1111", "2001:4860::1"};

static bool
connector_on(const struct connector *k, uint16_t port, int family)
{
	if (!k->enabled)
		return false;
	for (size_t b = 0; b < k->n_bindings; b++)
		if (k->bindings[b].port == port && k->bindings[b].addr.family == family)
			return true;
	return false;
}

static bool
allowed(const struct config *c, uint16_t port, int family, const struct ipaddr *a)
{
	for (size_t i = 0; i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		if (!connector_on(k, port, family))
			continue;
		for (size_t j = 0; j < k->n_ranges; j++)
			if (range_contains(&k->ranges[j].r, a))
				return true;
	}
	return false;
}

static void
pick_outsider(const struct config *c, uint16_t port, int family, struct ipaddr *out)
{
	const char *const *cand = family == AF_INET ? outsiders4 : outsiders6;
	size_t n = family == AF_INET ? sizeof(outsiders4) / sizeof(outsiders4[0])
	                             : sizeof(outsiders6) / sizeof(outsiders6[0]);

	for (size_t i = 0; i < n; i++) {
		ipaddr_parse(cand[i], strlen(cand[i]), out);
		if (!allowed(c, port, family, out))
			return;
	}
	/* every candidate is listed: the address after the end of some range is not */
	for (size_t i = 0; i < c->n_connectors; i++)
		for (size_t j = 0; j < c->connectors[i].n_ranges; j++) {
			const struct range *r = &c->connectors[i].ranges[j].r;
			if (r->family != family || r->hi == ipaddr_max(family))
				continue;
			*out = (struct ipaddr){.v = r->hi + 1, .family = (uint8_t)family};
			if (!allowed(c, port, family, out))
				return;
		}
}

static bool
loopback(const struct ipaddr *a)
{
	return a->family == AF_INET ? (a->v >> 24) == 127 : a->v == 1;
}

/* an IPv6 wildcard socket that takes IPv4 clients (as ::ffff:a.b.c.d); mxgate's never do */
static bool
dual_stack(const struct audit_host *h, const struct audit_socket *s)
{
	if (s->local.addr.family != AF_INET6 || !ipaddr_is_any(&s->local.addr) || s->mxgate)
		return false;
	return s->v6only >= 0 ? s->v6only == 0 : !h->bindv6only;
}

static void
add_dst(struct famstate *st, const struct ipaddr *a)
{
	struct ipaddr any = {0};
	const struct ipaddr *d = ipaddr_is_any(a) ? &any : a;

	st->exposed |= !loopback(d);
	for (size_t i = 0; i < st->n_dsts; i++)
		if (st->dsts[i].family == d->family && st->dsts[i].v == d->v)
			return;
	if (st->n_dsts < sizeof(st->dsts) / sizeof(st->dsts[0]))
		st->dsts[st->n_dsts++] = *d;
}

static bool
accepts(const struct audit_host *h, struct famstate *st, const struct ipaddr *src)
{
	for (size_t i = 0; i < st->n_dsts; i++) {
		struct nftrules_packet p = {.src = *src, .dst = st->dsts[i]};
		bool assumed = false;
		p.dport = st->port;
		if (nftrules_accepts(h->nft, &p, &assumed)) {
			st->assumed |= assumed;
			return true;
		}
	}
	return false;
}

static void
fam_state(const struct config *c, const struct audit_host *h, uint16_t port, int family,
          struct famstate *st)
{
	size_t tried = 0;

	*st = (struct famstate){.port = port};
	for (size_t i = 0; i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		if (!connector_on(k, port, family))
			continue;
		st->bound = true;
		st->whole |= connector_takes_all(k, family);
		for (size_t b = 0; b < k->n_bindings; b++)
			if (k->bindings[b].port == port && k->bindings[b].addr.family == family)
				add_dst(st, &k->bindings[b].addr);
	}
	for (size_t i = 0; i < h->n_sockets; i++) {
		const struct audit_socket *s = &h->sockets[i];
		if (s->local.port != port)
			continue;
		if (s->local.addr.family == family) {
			st->reachable = true;
			add_dst(st, &s->local.addr);
		} else if (family == AF_INET && dual_stack(h, s)) {
			st->reachable = true;
			add_dst(st, &(struct ipaddr){0});
		}
	}
	/* a port only on loopback addresses is out of every other host's reach, whatever the
	 * firewall says (the kernel drops packets for 127/8 and ::1 from other interfaces) */
	if ((!st->bound && !st->reachable) || st->whole || !h->nft || !st->exposed)
		return;
	pick_outsider(c, port, family, &st->outsider);
	st->open = accepts(h, st, &st->outsider);
	for (size_t i = 0; i < c->n_connectors && tried < MAX_INSIDERS; i++) {
		const struct connector *k = &c->connectors[i];
		if (!connector_on(k, port, family))
			continue;
		for (size_t j = 0; j < k->n_ranges && tried < MAX_INSIDERS; j++) {
			struct ipaddr in = {.v = k->ranges[j].r.lo, .family = (uint8_t)family};
			if (k->ranges[j].r.family != family)
				continue;
			tried++;
			if (!accepts(h, st, &in) && st->dropped++ == 0)
				st->first_dropped = in;
		}
	}
}

static const char *
fam_name(int family)
{
	return family == AF_INET ? "IPv4" : "IPv6";
}

static int
report_family(const char *path, uint16_t port, int family, const struct famstate *st,
              const struct famstate *other, struct audit_report *r)
{
	char fix[1024], out[IPADDR_STRLEN], in[IPADDR_STRLEN];
	/* locked, not merely out of reach: a family only on loopback is neither */
	bool other_locked = other->bound && other->exposed && !other->whole && !other->open;
	enum audit_severity sev = st->reachable ? AUDIT_CRITICAL : AUDIT_WARNING;
	const char *idle = st->reachable ? "" : " (nothing listens there now)";

	if (st->bound)
		snprintf(fix, sizeof(fix),
		         "load the rules of `mxgate firewall -c %s --format nft` (nft -f FILE) or "
		         "--format iptables, for both address families (docs/LOCKDOWN.md)",
		         path);
	else /* the rules cover the families the file binds: binding this one closes it */
		snprintf(fix, sizeof(fix),
		         "add \"%s:%u\" to the connector's bindings in %s (it then takes only "
		         "the %s ranges it lists, if any), then load the rules of `mxgate firewall "
		         "-c %s --format nft` again: they drop every other %s client of the port "
		         "(docs/LOCKDOWN.md)",
		         family == AF_INET6 ? "[::]" : "0.0.0.0", port, path, fam_name(family),
		         path, fam_name(family));
	ipaddr_format(&st->outsider, out, sizeof(out));
	if (st->open && other_locked &&
	    add(r, sev, family == AF_INET6 ? "ipv6-open" : "ipv4-open", fix,
	        "port %u: %s is left open while %s is locked: the firewall lets %s, outside the "
	        "configuration's ranges, reach port %u over %s%s",
	        port, fam_name(family), fam_name(family == AF_INET ? AF_INET6 : AF_INET), out, port,
	        fam_name(family), idle) < 0)
		return -1;
	if (st->open && !other_locked &&
	    add(r, sev, "firewall-open", fix,
	        "port %u, %s: the loaded firewall does not restrict clients to the configuration's "
	        "ranges: %s, outside them, gets through to mxgate or whatever listens%s",
	        port, fam_name(family), out, idle) < 0)
		return -1;
	ipaddr_format(&st->first_dropped, in, sizeof(in));
	snprintf(fix, sizeof(fix),
	         "make the firewall from this configuration again: `mxgate firewall -c %s "
	         "--format nft`, or change the configuration to what the firewall means",
	         path);
	if (st->dropped &&
	    add(r, AUDIT_WARNING, "firewall-drops", fix,
	        "port %u, %s: the firewall drops %zu of the ranges the configuration takes (%s "
	        "among them): the firewall and the server disagree, and mail from there stops "
	        "at the firewall",
	        port, fam_name(family), st->dropped, in) < 0)
		return -1;
	if (st->assumed &&
	    add(r, AUDIT_INFO, "firewall-unread",
	        "read those rules (nft list ruleset) and check what they do with a new "
	        "connection to this port",
	        "port %u, %s: the ruleset has expressions audit cannot decide; they were taken "
	        "as letting the client through",
	        port, fam_name(family)) < 0)
		return -1;
	return 0;
}

static size_t
config_ports(const struct config *c, uint16_t *ports, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		for (size_t b = 0; k->enabled && b < k->n_bindings; b++) {
			size_t j = 0;
			while (j < n && ports[j] != k->bindings[b].port)
				j++;
			if (j == n && n < max)
				ports[n++] = k->bindings[b].port;
		}
	}
	return n;
}

static int
check_firewall(const struct config *c, const char *path, const struct audit_host *h,
               struct audit_report *r)
{
	uint16_t ports[64];
	size_t n = config_ports(c, ports, 64);

	for (int f = 0; f < 2; f++)
		if (h->legacy_rules[f] &&
		    add(r, AUDIT_WARNING, "legacy-iptables",
		        "move them to nftables (iptables-restore-translate), or check them by hand "
		        "with iptables-legacy-save",
		        "%zu rule%s of iptables-legacy (%s) %s loaded; audit reads nftables and "
		        "iptables-nft only, so the firewall findings do not count them",
		        h->legacy_rules[f], h->legacy_rules[f] == 1 ? "" : "s",
		        f ? "IPv6, ip6tables" : "IPv4", h->legacy_rules[f] == 1 ? "is" : "are") < 0)
			return -1;

	if (!h->nft)
		return add(r, AUDIT_WARNING, "firewall-unreadable",
		           "run mxgate audit as root, with nftables installed (nft)",
		           "the loaded firewall could not be read (%s): the ports were not checked",
		           h->nft_error ? h->nft_error : "no ruleset");
	for (size_t i = 0; i < n; i++) {
		struct famstate v4, v6;
		fam_state(c, h, ports[i], AF_INET, &v4);
		fam_state(c, h, ports[i], AF_INET6, &v6);
		if ((v4.bound || v4.reachable) && !v4.whole &&
		    report_family(path, ports[i], AF_INET, &v4, &v6, r) < 0)
			return -1;
		if ((v6.bound || v6.reachable) && !v6.whole &&
		    report_family(path, ports[i], AF_INET6, &v6, &v4, r) < 0)
			return -1;
	}
	return 0;
}

/* ---- listeners ----------------------------------------------------------------------- */

static bool
config_binds(const struct config *c, const struct endpoint *ep)
{
	for (size_t i = 0; i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		for (size_t b = 0; k->enabled && b < k->n_bindings; b++)
			if (k->bindings[b].port == ep->port &&
			    ipaddr_equal(&k->bindings[b].addr, &ep->addr))
				return true;
	}
	return false;
}

static int
check_socket(const struct config *c, const char *path, const struct audit_host *h,
             const struct audit_socket *s, struct audit_report *r)
{
	char ep[ENDPOINT_STRLEN], who[96], fix[512];
	bool local = loopback(&s->local.addr);

	endpoint_format(&s->local, ep, sizeof(ep));
	if (s->mxgate) {
		if (config_binds(c, &s->local))
			return 0;
		snprintf(fix, sizeof(fix),
		         "reload mxgate into %s (kill -HUP, systemctl reload mxgate), or audit the "
		         "file it runs",
		         path);
		return add(r, AUDIT_WARNING, "unnamed-listener", fix,
		           "mxgate listens on %s, which %s does not name: it runs another "
		           "configuration, or one not reloaded",
		           ep, path);
	}
	if (s->pid)
		snprintf(who, sizeof(who), "%s (pid %ld)", s->comm, s->pid);
	else
		snprintf(who, sizeof(who), "a process audit cannot see (another namespace?)");
	return add(r, local ? AUDIT_WARNING : AUDIT_CRITICAL, "foreign-listener",
	           "stop that service, or move it off the port or to an address clients cannot "
	           "reach; only mxgate should listen on a port of the configuration",
	           "%s listens on %s, a port of the configuration, and is not mxgate: clients "
	           "that reach it skip every connector's check%s",
	           who, ep,
	           dual_stack(h, s) ? " (a dual-stack socket: IPv4 clients too, as ::ffff:a.b.c.d)"
	                            : "");
}

static int
check_listeners(const struct config *c, const char *path, const struct audit_host *h,
                struct audit_report *r)
{
	uint16_t ports[64];
	size_t n = config_ports(c, ports, 64);

	for (size_t i = 0; i < h->n_sockets; i++) {
		const struct audit_socket *s = &h->sockets[i];
		bool configured = false;
		for (size_t j = 0; j < n; j++)
			configured |= ports[j] == s->local.port;
		if (configured && check_socket(c, path, h, s, r) < 0)
			return -1;
	}
	for (size_t i = 0; h->daemon && i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		for (size_t b = 0; k->enabled && b < k->n_bindings; b++) {
			char ep[ENDPOINT_STRLEN];
			bool found = false;
			for (size_t j = 0; j < h->n_sockets && !found; j++)
				found = h->sockets[j].mxgate &&
				        h->sockets[j].local.port == k->bindings[b].port &&
				        ipaddr_equal(&h->sockets[j].local.addr,
				                     &k->bindings[b].addr);
			endpoint_format(&k->bindings[b], ep, sizeof(ep));
			if (!found &&
			    add(r, AUDIT_WARNING, "missing-listener",
			        "reload mxgate into this configuration and read its log",
			        "connector \"%s\" binds %s, where the running mxgate does "
			        "not listen",
			        k->name, ep) < 0)
				return -1;
		}
	}
	return 0;
}

/* ---- the configuration itself -------------------------------------------------------- */

static bool
connector_locked(const struct connector *k, int family)
{
	if (!k->enabled || connector_takes_all(k, family))
		return false;
	for (size_t i = 0; i < k->n_ranges; i++)
		if (k->ranges[i].r.family == family)
			return true;
	return false;
}

/* a connector every address of a family reaches, bound where others are locked */
static int
check_open_connectors(const struct config *c, struct audit_report *r)
{
	static const int fams[] = {AF_INET, AF_INET6};

	for (size_t i = 0; i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		for (size_t f = 0; f < 2 && k->enabled; f++) {
			const char *locked = NULL;
			bool bound = false;
			for (size_t b = 0; b < k->n_bindings; b++)
				bound |= k->bindings[b].addr.family == fams[f] &&
				         !loopback(&k->bindings[b].addr);
			for (size_t j = 0; j < c->n_connectors && !locked; j++)
				if (connector_locked(&c->connectors[j], fams[f]))
					locked = c->connectors[j].name;
			if (!bound || !locked || !connector_takes_all(k, fams[f]))
				continue;
			if (add(r, AUDIT_WARNING, "open-connector",
			        "give it remote-ip-ranges, bind it to an internal address only, or "
			        "set "
			        "enabled = false",
			        "connector \"%s\" (%s:%d) takes every %s client, next to locked "
			        "connectors such as \"%s\": mail can come around the filter "
			        "through it",
			        k->name, k->at.file, k->at.line, fam_name(fams[f]), locked) < 0)
				return -1;
		}
	}
	return 0;
}

static int
check_presets(const struct audit_host *h, struct audit_report *r)
{
	for (size_t i = 0; i < h->n_presets; i++) {
		const struct audit_preset *p = &h->presets[i];
		char fix[256];
		struct tm tm = {0};
		const char *end = strptime(p->source_date, "%Y-%m-%d", &tm);
		snprintf(fix, sizeof(fix),
		         "check the preset's source (`mxgate providers show %s`), update the "
		         "preset, and date it",
		         p->name);
		if (!end || *end) {
			if (add(r, AUDIT_INFO, "preset-undated", fix,
			        "provider preset %s: its source is undated (\"%s\"): its age is "
			        "not "
			        "known",
			        p->name, p->source_date) < 0)
				return -1;
			continue;
		}
		long days = (long)((h->now - timegm(&tm)) / 86400);
		if (days > AUDIT_PRESET_MAX_AGE_DAYS &&
		    add(r, AUDIT_WARNING, "preset-old", fix,
		        "provider preset %s: its source is dated %s, %ld days ago (more than %d): "
		        "providers change their ranges, a stale list drops new servers or keeps "
		        "ones they gave up",
		        p->name, p->source_date, days, AUDIT_PRESET_MAX_AGE_DAYS) < 0)
			return -1;
	}
	return 0;
}

/* the preset NAME a range of k comes from (its file is providers_dir()/NAME.conf), or false */
static bool
range_preset(const struct connector *k, char *name, size_t size)
{
	const char *dir = providers_dir();
	size_t dlen = strlen(dir);

	for (size_t j = 0; j < k->n_ranges; j++) {
		const char *f = k->ranges[j].at.file, *dot;
		if (!f || strncmp(f, dir, dlen) != 0 || f[dlen] != '/' || strchr(f + dlen + 1, '/'))
			continue;
		dot = strrchr(f + dlen + 1, '.');
		if (!dot || strcmp(dot, ".conf") != 0)
			continue;
		snprintf(name, size, "%.*s", (int)(dot - (f + dlen + 1)), f + dlen + 1);
		return true;
	}
	return false;
}

/* A provider's ranges are shared by all its customers: without a tenant proof (client
 * certificate name, or forward-confirmed host name suffixes) any other tenant of the
 * provider passes the connector's address check. */
static int
check_tenant_proof(const struct config *c, struct audit_report *r)
{
	for (size_t i = 0; i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		char preset[128];
		if (!k->enabled || k->tls_sender_certificate_name || k->n_hostname_suffixes ||
		    (k->usage != USAGE_INTERNET &&
		     !(k->permission_groups & PERM_ANONYMOUS_USERS)) ||
		    !range_preset(k, preset, sizeof(preset)))
			continue;
		if (add(r, AUDIT_INFO, "tenant-proof-missing",
		        "tls-sender-certificate-name or remote-hostname-suffixes (docs/LOCKDOWN.md "
		        "section 5)",
		        "connector \"%s\" (%s:%d) takes its clients from preset %s with no tenant "
		        "proof: another tenant of %s can relay through it",
		        k->name, k->at.file, k->at.line, preset, preset) < 0)
			return -1;
	}
	return 0;
}

static int
check_daemon(const char *path, const struct audit_host *h, struct audit_report *r)
{
	char fix[512];

	if (!h->daemon) {
		snprintf(fix, sizeof(fix),
		         "start mxgate (mxgate run -c %s, systemctl start mxgate)", path);
		return add(r, AUDIT_WARNING, "not-running", fix,
		           "no mxgate answers on the control socket of this configuration's spool "
		           "(%s): the listeners could not be matched to it",
		           h->status_error ? h->status_error : "no answer");
	}
	if (!h->daemon_config || !h->config_real || strcmp(h->daemon_config, h->config_real)) {
		snprintf(
		        fix, sizeof(fix),
		        "restart mxgate with -c %s, or audit the file it runs (mxgate audit -c %s)",
		        path, h->daemon_config ? h->daemon_config : "FILE");
		return add(
		        r, AUDIT_CRITICAL, "other-config", fix,
		        "the running mxgate (pid %ld) uses %s, not %s: what this audit checks is "
		        "not what runs",
		        h->daemon_pid, h->daemon_config ? h->daemon_config : "an unknown file",
		        h->config_real ? h->config_real : path);
	}
	if (h->sha256_known && memcmp(h->config_sha256, h->daemon_sha256, 32) != 0) {
		snprintf(fix, sizeof(fix),
		         "mxgate check -c %s, then reload (kill -HUP %ld, systemctl reload mxgate)",
		         path, h->daemon_pid);
		return add(
		        r, AUDIT_WARNING, "not-reloaded", fix,
		        "%s is not what the running mxgate (pid %ld) loaded (their SHA-256 "
		        "differ): it was changed since, and the daemon runs the previous version",
		        path, h->daemon_pid);
	}
	if (h->daemon_loaded &&
	    (h->sha256_known ? h->side_mtime : h->config_mtime) > h->daemon_loaded) {
		snprintf(fix, sizeof(fix),
		         "mxgate check -c %s, then reload (kill -HUP %ld, systemctl reload mxgate)",
		         path, h->daemon_pid);
		return add(r, AUDIT_WARNING, "not-reloaded", fix,
		           "%s (or a file it names) changed after the running mxgate (pid %ld) "
		           "loaded it: it runs the previous version",
		           path, h->daemon_pid);
	}
	return 0;
}

int
audit_check(const struct config *c, const char *path, const struct audit_host *h,
            struct audit_report *r)
{
	if (check_daemon(path, h, r) < 0 || check_firewall(c, path, h, r) < 0 ||
	    check_listeners(c, path, h, r) < 0 || check_open_connectors(c, r) < 0 ||
	    check_presets(h, r) < 0 || check_tenant_proof(c, r) < 0)
		return -1;
	return 0;
}

/* ---- reading the host ---------------------------------------------------------------- */

/* the whole of a file or a command's output, NUL-terminated; NULL on error */
static char *
slurp(FILE *fp, size_t max, size_t *lenp)
{
	size_t n = 0, cap = 0;
	char *buf = NULL;

	for (;;) {
		if (VEC_RESERVE(buf, cap, n + 65536) < 0)
			goto fail;
		size_t got = fread(buf + n, 1, cap - n - 1, fp);
		n += got;
		if (n > max)
			goto fail;
		if (got == 0)
			break;
	}
	if (ferror(fp))
		goto fail;
	buf[n] = '\0';
	if (lenp)
		*lenp = n;
	return buf;
fail:
	free(buf);
	return NULL;
}

static char *
read_file_len(const char *path, size_t max, size_t *lenp)
{
	FILE *fp = fopen(path, "re");
	char *s;

	if (!fp)
		return NULL;
	s = slurp(fp, max, lenp);
	fclose(fp);
	return s;
}

static char *
read_file(const char *path, size_t max)
{
	return read_file_len(path, max, NULL);
}

static void
read_nft(struct audit_host *h)
{
	FILE *fp = popen("PATH=\"$PATH:/usr/sbin:/sbin\" nft -j list ruleset 2>&1", "r");
	char err[256], *text;
	int st;

	if (!fp) {
		h->nft_error = strdup("cannot run nft");
		return;
	}
	text = slurp(fp, 256u * 1024 * 1024, NULL);
	st = pclose(fp);
	if (!text || st != 0) {
		size_t len = text ? strcspn(text, "\n") : 0;
		if (asprintf(&h->nft_error, "nft -j list ruleset failed%s%.*s", len ? ": " : "",
		             (int)(len > 200 ? 200 : len), text ? text : "") < 0)
			h->nft_error = NULL;
	} else if (!(h->nft = nftrules_parse(text, strlen(text), err, sizeof(err)))) {
		if (asprintf(&h->nft_error, "nft -j list ruleset: %s", err) < 0)
			h->nft_error = NULL;
	}
	free(text);
}

/* iptables-legacy keeps its tables out of nftables; they exist once a module made them */
static void
read_legacy(struct audit_host *h)
{
	static const char *const names[] = {"/proc/net/ip_tables_names",
	                                    "/proc/net/ip6_tables_names"};
	static const char *const cmds[] = {
	        "PATH=\"$PATH:/usr/sbin:/sbin\" iptables-legacy-save 2>/dev/null",
	        "PATH=\"$PATH:/usr/sbin:/sbin\" ip6tables-legacy-save 2>/dev/null"};

	for (int f = 0; f < 2; f++) {
		char *t = read_file(names[f], 4096), *out;
		bool any = t && t[0];
		FILE *fp;
		free(t);
		if (!any || !(fp = popen(cmds[f], "r")))
			continue;
		if ((out = slurp(fp, 64u * 1024 * 1024, NULL))) {
			h->legacy_rules[f] = audit_count_legacy_rules(out);
			free(out);
		}
		pclose(fp);
	}
}

static bool
is_mxgate(const struct audit_host *h, long pid, const char *comm)
{
	char path[64], *stat;
	long ppid = 0;

	if (h->daemon && pid == h->daemon_pid)
		return true;
	if (strcmp(comm, "mxgate") != 0)
		return false;
	if (!h->daemon)
		return true;
	/* the privileged reader, the daemon's child, holds its descriptors too */
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((stat = read_file(path, 4096))) {
		const char *p = strrchr(stat, ')');
		if (p)
			sscanf(p + 1, " %*c %ld", &ppid);
		free(stat);
	}
	return ppid == h->daemon_pid;
}

static void
owners_of_pid(struct audit_host *h, long pid)
{
	char dir[64], link[PATH_MAX], target[128], comm[32] = "?", *t;
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%ld/comm", pid);
	if ((t = read_file(dir, 4096))) {
		snprintf(comm, sizeof(comm), "%.*s", (int)strcspn(t, "\n"), t);
		free(t);
	}
	snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
	if (!(d = opendir(dir)))
		return;
	while ((e = readdir(d))) {
		ssize_t n;
		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		if ((n = readlink(link, target, sizeof(target) - 1)) <= 0)
			continue;
		target[n] = '\0';
		unsigned long ino = audit_socket_inode(target);
		for (size_t i = 0; ino && i < h->n_sockets; i++) {
			struct audit_socket *s = &h->sockets[i];
			if (s->inode != ino)
				continue;
			if (is_mxgate(h, pid, comm))
				s->mxgate = true;
			else if (!s->pid)
				s->pid = pid, snprintf(s->comm, sizeof(s->comm), "%s", comm);
		}
	}
	closedir(d);
}

/* asks sock_diag which listening IPv6 sockets are IPv6-only */
static void
read_v6only(struct audit_host *h)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} req = {0};
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
	long buf[8192 / sizeof(long)];
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG), rc = 0;
	struct timeval tv = {.tv_sec = 5};

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.r.sdiag_family = AF_INET6;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = 1u << 10; /* TCP_LISTEN */
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0)
		goto out;
	while (rc == 0) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		rc = audit_parse_sock_diag(buf, (size_t)n, h);
	}
out:
	close(fd);
}

static void
read_sockets(struct audit_host *h)
{
	static const struct {
		const char *path;
		int family;
	} files[] = {{"/proc/net/tcp", AF_INET}, {"/proc/net/tcp6", AF_INET6}};
	struct dirent *e;
	char *t;
	DIR *d;

	for (size_t i = 0; i < 2; i++)
		if ((t = read_file(files[i].path, 64u * 1024 * 1024))) {
			audit_parse_proc_net_tcp(t, files[i].family, h);
			free(t);
		}
	if ((t = read_file("/proc/sys/net/ipv6/bindv6only", 64))) {
		h->bindv6only = t[0] == '1';
		free(t);
	}
	if (!h->n_sockets)
		return;
	read_v6only(h);
	if (!(d = opendir("/proc")))
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
			owners_of_pid(h, strtol(e->d_name, NULL, 10));
	closedir(d);
}

static void
read_daemon(const struct config *c, struct audit_host *h)
{
	char *out = NULL, *err = NULL, cwd[PATH_MAX + 1], full[2 * PATH_MAX + 2], real[PATH_MAX];
	size_t olen = 0, elen = 0;
	FILE *o = open_memstream(&out, &olen), *e = open_memstream(&err, &elen);
	int rc = o && e ? queue_status(c->spool, o, e) : 1;

	if (o)
		fclose(o);
	if (e)
		fclose(e);
	if (rc != 0 || !out || audit_parse_status(out, h) < 0) {
		h->daemon = false;
		if ((rc == 3 ? asprintf(&h->status_error, "nothing answers on %s/%s", c->spool,
		                        QUEUE_CONTROL_NAME)
		             : asprintf(&h->status_error, "%.*s", err ? (int)strcspn(err, "\n") : 0,
		                        err ? err : "")) < 0)
			h->status_error = NULL;
	} else if (h->daemon_config[0] != '/') {
		ssize_t n;
		snprintf(full, sizeof(full), "/proc/%ld/cwd", h->daemon_pid);
		if ((n = readlink(full, cwd, sizeof(cwd) - 1)) > 0) {
			cwd[n] = '\0';
			snprintf(full, sizeof(full), "%s/%s", cwd, h->daemon_config);
			free(h->daemon_config);
			h->daemon_config = strdup(full);
		}
	}
	if (h->daemon_config && realpath(h->daemon_config, real)) {
		free(h->daemon_config);
		h->daemon_config = strdup(real);
	}
	free(out);
	free(err);
}

static void
read_presets(const struct config *c, struct audit_host *h)
{
	char dir[PATH_MAX], real[PATH_MAX], err[256];

	if (!realpath(providers_dir(), dir))
		return;
	for (size_t i = 0; i < c->n_files; i++) {
		char *slash;
		struct provider *p;
		if (!realpath(c->files[i], real) || !(slash = strrchr(real, '/')))
			continue;
		*slash = '\0';
		if (strcmp(real, dir) != 0)
			continue;
		*slash = '/';
		if (!(p = providers_load(real, err, sizeof(err))))
			continue;
		struct audit_preset *v = realloc(h->presets, (h->n_presets + 1) * sizeof(*v));
		if (v) {
			h->presets = v;
			v[h->n_presets].name = strdup(p->name);
			v[h->n_presets].source_date = strdup(p->source_date);
			if (v[h->n_presets].name && v[h->n_presets].source_date)
				h->n_presets++;
			else
				free(v[h->n_presets].name), free(v[h->n_presets].source_date);
		}
		providers_free(p);
	}
}

int
audit_host_read(const struct config *c, const char *path, struct audit_host *h)
{
	char real[PATH_MAX];
	struct stat st;

	*h = (struct audit_host){.now = time(NULL)};
	if (realpath(path, real) && !(h->config_real = strdup(real)))
		return -1;
	if (stat(path, &st) == 0)
		h->config_mtime = st.st_mtime;
	for (size_t i = 0; i < c->n_files; i++) {
		if (stat(c->files[i], &st) != 0)
			continue;
		if (st.st_mtime > h->config_mtime)
			h->config_mtime = st.st_mtime;
		if (strcmp(c->files[i], c->path) != 0 && st.st_mtime > h->side_mtime)
			h->side_mtime = st.st_mtime;
	}
	read_presets(c, h);
	read_daemon(c, h);
	/* the file now, against the bytes the daemon loaded */
	size_t len = 0;
	char *now = h->sha256_known ? read_file_len(path, 64u * 1024 * 1024, &len) : NULL;
	if (now)
		SHA256((const unsigned char *)now, len, h->config_sha256);
	else
		h->sha256_known = false;
	free(now);
	read_nft(h);
	read_legacy(h);
	read_sockets(h);
	return 0;
}

void
audit_host_release(struct audit_host *h)
{
	nftrules_free(h->nft);
	free(h->nft_error);
	free(h->sockets);
	free(h->status_error);
	free(h->daemon_config);
	free(h->config_real);
	for (size_t i = 0; i < h->n_presets; i++)
		free(h->presets[i].name), free(h->presets[i].source_date);
	free(h->presets);
	*h = (struct audit_host){0};
}
