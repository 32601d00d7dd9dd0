#include "net/proxy.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A parsing step returns STEP_OK, STEP_MORE or an enum proxy_error (all > 0). */
#define STEP_OK   0
#define STEP_MORE (-1)

/* §2.2: the 12 bytes that start every version 2 header. */
static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define V2_FIXED     16   /* signature, version/command, family, length */
#define TLV_HDR      3    /* type, 16-bit length */
#define TLV_CRC32C   0x03 /* §2.2.3 */
#define IPV4_TEXTMAX 15   /* 255.255.255.255 */
#define IPV6_TEXTMAX 45   /* eight groups, or six and a dotted quad */
#define STR_(x)      #x
#define STR(x)       STR_(x)

static const char *const error_texts[] = {
        [PROXY_E_NONE] = "no error",
        [PROXY_E_GARBAGE] = "not a PROXY protocol header (neither \"PROXY\" nor the "
                            "version 2 signature)",
        [PROXY_E_V1_SYNTAX] = "version 1: the line is not \"PROXY TCP4|TCP6|UNKNOWN\" "
                              "with single spaces between its fields",
        [PROXY_E_V1_ADDRESS] = "version 1: an address is not one of the family the line names",
        [PROXY_E_V1_PORT] = "version 1: a port is not 0..65535 in decimal without leading "
                            "zeros",
        [PROXY_E_V1_EOL] = "version 1: a bare CR or LF (only CRLF ends the line)",
        [PROXY_E_V1_TOO_LONG] = "version 1: no CRLF within the first " STR(PROXY_V1_MAX) " bytes",
        [PROXY_E_V2_VERSION] = "version 2 signature with a version other than 2",
        [PROXY_E_V2_COMMAND] = "version 2: the command is neither LOCAL nor PROXY",
        [PROXY_E_V2_FAMILY] = "version 2: an address family/transport byte the "
                              "specification does not define",
        [PROXY_E_V2_UNSUPPORTED] = "version 2: UDP or a UNIX socket (mxgate takes TCP only)",
        [PROXY_E_V2_TOO_LONG] = "version 2: the header is longer than " STR(PROXY_V2_MAX) " bytes",
        [PROXY_E_V2_SHORT] = "version 2: the length is smaller than the address block",
        [PROXY_E_V2_TLV] = "version 2: a TLV runs past the end of the header, or a CRC32C "
                           "TLV is not 4 bytes or comes twice",
        [PROXY_E_V2_CRC] = "version 2: the CRC32C checksum does not match the header",
};

const char *
proxy_error_text(enum proxy_error e)
{
	if ((size_t)e >= sizeof(error_texts) / sizeof(error_texts[0]) || !error_texts[e])
		return "unknown error";
	return error_texts[e];
}

/* ---- version 1 ----------------------------------------------------------------------- */

struct cur {
	const uint8_t *p;
	size_t n; /* bytes that may be looked at: at most PROXY_V1_MAX */
	size_t i;
};

static int
v1_literal(struct cur *c, const char *s, int err)
{
	for (; *s; s++, c->i++) {
		if (c->i == c->n)
			return STEP_MORE;
		if (c->p[c->i] != (uint8_t)*s)
			return err;
	}
	return STEP_OK;
}

static int
v1_protocol(struct cur *c, enum proxy_family *fam)
{
	static const struct {
		const char *s;
		enum proxy_family f;
	} names[] = {
	        {"TCP4 ", PROXY_FAM_INET},
	        {"TCP6 ", PROXY_FAM_INET6},
	        {"UNKNOWN", PROXY_FAM_UNSPEC},
	};
	size_t avail = c->n - c->i;

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		size_t want = strlen(names[k].s), m = avail < want ? avail : want;
		if (memcmp(c->p + c->i, names[k].s, m) != 0)
			continue;
		if (m < want)
			return STEP_MORE; /* no name is a prefix of another */
		c->i += want;
		*fam = names[k].f;
		return STEP_OK;
	}
	return PROXY_E_V1_SYNTAX;
}

/* A byte out of place: a bare LF is always the line-ending error; a CR here ends the
 * line before its fields, as does any other stray byte. */
static int
v1_stray(uint8_t ch, int err)
{
	if (ch == '\n')
		return PROXY_E_V1_EOL;
	if (ch == '\r')
		return PROXY_E_V1_SYNTAX;
	return err;
}

static bool
is_hex(uint8_t ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* An address and the space after it. */
static int
v1_address(struct cur *c, enum proxy_family fam, struct ipaddr *out)
{
	size_t start = c->i, max = fam == PROXY_FAM_INET ? IPV4_TEXTMAX : IPV6_TEXTMAX;
	bool colon = false;

	for (; c->i < c->n && c->p[c->i] != ' '; c->i++) {
		uint8_t ch = c->p[c->i];
		bool ok = (ch >= '0' && ch <= '9') || ch == '.' ||
		          (fam == PROXY_FAM_INET6 && (ch == ':' || is_hex(ch)));
		if (!ok)
			return v1_stray(ch, PROXY_E_V1_ADDRESS);
		if (c->i - start >= max)
			return PROXY_E_V1_ADDRESS;
		colon |= ch == ':';
	}
	if (c->i == c->n)
		return STEP_MORE;
	if (c->i == start)
		return PROXY_E_V1_SYNTAX; /* two spaces */
	/* TCP4 allows no colon, so ipaddr_parse() reads a dotted quad; TCP6 must be IPv6
	 * text (a mapped address comes back AF_INET, as base/ipaddr.h does everywhere). */
	if ((fam == PROXY_FAM_INET6 && !colon) ||
	    ipaddr_parse((const char *)c->p + start, c->i - start, out) < 0)
		return PROXY_E_V1_ADDRESS;
	c->i++;
	return STEP_OK;
}

/* A port, ended by end (a space, or the CR of the CRLF). */
static int
v1_port(struct cur *c, uint8_t end, uint16_t *out)
{
	size_t start = c->i;
	unsigned v = 0;

	for (; c->i < c->n && c->p[c->i] != end; c->i++) {
		uint8_t ch = c->p[c->i];
		if (ch < '0' || ch > '9')
			return v1_stray(ch, ch == ' ' ? PROXY_E_V1_SYNTAX : PROXY_E_V1_PORT);
		if (c->i > start && c->p[start] == '0')
			return PROXY_E_V1_PORT; /* §2.1: no leading zeros */
		v = v * 10 + (unsigned)(ch - '0');
		if (v > 65535)
			return PROXY_E_V1_PORT;
	}
	if (c->i == c->n)
		return STEP_MORE;
	if (c->i == start)
		return PROXY_E_V1_PORT;
	*out = (uint16_t)v;
	return STEP_OK;
}

/* CR LF, with c at the CR. */
static int
v1_crlf(struct cur *c)
{
	if (c->i == c->n)
		return STEP_MORE;
	if (c->p[c->i] != '\r')
		return v1_stray(c->p[c->i], PROXY_E_V1_SYNTAX);
	if (++c->i == c->n)
		return STEP_MORE;
	if (c->p[c->i] != '\n')
		return PROXY_E_V1_EOL;
	c->i++;
	return STEP_OK;
}

/* §2.1: after "UNKNOWN" the sender may omit the rest; the receiver ignores whatever
 * comes before the CRLF — held here to a space and printable US-ASCII. */
static int
v1_unknown_tail(struct cur *c)
{
	if (c->i == c->n)
		return STEP_MORE;
	if (c->p[c->i] == ' ')
		for (c->i++; c->i < c->n && c->p[c->i] >= 0x20 && c->p[c->i] < 0x7f; c->i++)
			;
	return v1_crlf(c);
}

#define STEP(call)                                                                                 \
	do {                                                                                       \
		int step_rc_ = (call);                                                             \
		if (step_rc_ != STEP_OK)                                                           \
			return step_rc_;                                                           \
	} while (0)

static int
v1_line(struct cur *c, struct proxy_header *h)
{
	enum proxy_family fam;
	struct endpoint src = {0}, dst = {0};

	STEP(v1_literal(c, "PROXY", PROXY_E_GARBAGE));
	h->version = 1;
	STEP(v1_literal(c, " ", PROXY_E_V1_SYNTAX));
	STEP(v1_protocol(c, &fam));
	if (fam == PROXY_FAM_UNSPEC) {
		STEP(v1_unknown_tail(c));
	} else {
		STEP(v1_address(c, fam, &src.addr));
		STEP(v1_address(c, fam, &dst.addr));
		STEP(v1_port(c, ' ', &src.port));
		c->i++;
		STEP(v1_port(c, '\r', &dst.port));
		STEP(v1_crlf(c));
	}
	h->command = PROXY_CMD_PROXY;
	h->family = fam;
	h->src = src;
	h->dst = dst;
	return STEP_OK;
}

static int
parse_v1(const uint8_t *p, size_t len, struct proxy_header *h)
{
	struct cur c = {p, len < PROXY_V1_MAX ? len : PROXY_V1_MAX, 0};
	int rc = v1_line(&c, h);

	if (rc == STEP_MORE && len >= PROXY_V1_MAX)
		return PROXY_E_V1_TOO_LONG;
	if (rc == STEP_OK)
		h->len = c.i;
	return rc;
}

/* ---- version 2 ----------------------------------------------------------------------- */

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* CRC32c (Castagnoli; RFC 4960 appendix B) of p[0..len) with the 4 bytes at zero_at
 * taken as zeros, as §2.2.3 computes it. */
static uint32_t
crc32c(const uint8_t *p, size_t len, size_t zero_at)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= i >= zero_at && i < zero_at + 4 ? 0 : p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* The 16 fixed bytes, checked as far as they have arrived.  Sets *total, *addrlen. */
static int
v2_fixed(const uint8_t *p, size_t len, struct proxy_header *h, size_t *total, size_t *addrlen)
{
	size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);

	if (memcmp(p, v2_sig, n) != 0)
		return PROXY_E_GARBAGE;
	if (len <= sizeof(v2_sig))
		return STEP_MORE;
	h->version = 2;
	if (p[12] >> 4 != 2)
		return PROXY_E_V2_VERSION;
	if ((p[12] & 0x0f) > 1)
		return PROXY_E_V2_COMMAND;
	if (len < 14)
		return STEP_MORE;
	switch (p[13]) {
	case 0x00: /* UNSPEC: no address block */
		*addrlen = 0;
		break;
	case 0x11: /* TCP over IPv4 */
		*addrlen = 2 * 4 + 2 * 2;
		break;
	case 0x21: /* TCP over IPv6 */
		*addrlen = 2 * 16 + 2 * 2;
		break;
	case 0x12: /* UDP over IPv4 */
	case 0x22: /* UDP over IPv6 */
	case 0x31: /* UNIX stream */
	case 0x32: /* UNIX datagram */
		return PROXY_E_V2_UNSUPPORTED;
	default:
		return PROXY_E_V2_FAMILY;
	}
	if (len < V2_FIXED)
		return STEP_MORE;
	*total = V2_FIXED + be16(p + 14);
	if (*total > PROXY_V2_MAX)
		return PROXY_E_V2_TOO_LONG;
	if (*total < V2_FIXED + *addrlen)
		return PROXY_E_V2_SHORT;
	return STEP_OK;
}

static void
v2_addresses(const uint8_t *p, uint8_t fam, struct endpoint *src, struct endpoint *dst)
{
	if (fam == 0x11) {
		src->addr.family = dst->addr.family = AF_INET;
		src->addr.v = ((u128)p[0] << 24) | ((u128)p[1] << 16) | ((u128)p[2] << 8) | p[3];
		dst->addr.v = ((u128)p[4] << 24) | ((u128)p[5] << 16) | ((u128)p[6] << 8) | p[7];
		src->port = be16(p + 8);
		dst->port = be16(p + 10);
	} else {
		struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
		memcpy(&s6.sin6_addr, p, 16);
		(void)ipaddr_from_sockaddr((const struct sockaddr *)&s6, &src->addr, NULL);
		memcpy(&s6.sin6_addr, p + 16, 16);
		(void)ipaddr_from_sockaddr((const struct sockaddr *)&s6, &dst->addr, NULL);
		src->port = be16(p + 32);
		dst->port = be16(p + 34);
	}
}

/* The TLVs in p[from..total), each within the header; a CRC32C TLV is verified. */
static int
v2_tlvs(const uint8_t *p, size_t from, size_t total, struct proxy_header *h)
{
	for (size_t off = from; off < total;) {
		size_t vlen;
		if (total - off < TLV_HDR)
			return PROXY_E_V2_TLV;
		vlen = be16(p + off + 1);
		if (vlen > total - off - TLV_HDR)
			return PROXY_E_V2_TLV;
		if (p[off] == TLV_CRC32C) {
			const uint8_t *v = p + off + TLV_HDR;
			uint32_t want;
			if (vlen != 4 || h->crc32c)
				return PROXY_E_V2_TLV;
			want = ((uint32_t)v[0] << 24) | ((uint32_t)v[1] << 16) |
			       ((uint32_t)v[2] << 8) | v[3];
			if (crc32c(p, total, off + TLV_HDR) != want)
				return PROXY_E_V2_CRC;
			h->crc32c = true;
		}
		h->tlvs++;
		off += TLV_HDR + vlen;
	}
	return STEP_OK;
}

static int
parse_v2(const uint8_t *p, size_t len, struct proxy_header *h)
{
	size_t total = 0, addrlen = 0;
	struct endpoint src = {0}, dst = {0};

	STEP(v2_fixed(p, len, h, &total, &addrlen));
	if (len < total)
		return STEP_MORE;
	if (addrlen)
		v2_addresses(p + V2_FIXED, p[13], &src, &dst);
	STEP(v2_tlvs(p, V2_FIXED + addrlen, total, h));
	h->command = (p[12] & 0x0f) ? PROXY_CMD_PROXY : PROXY_CMD_LOCAL;
	/* §2.2: LOCAL keeps the real endpoints, "discard the protocol block including the
	 * family" */
	if (h->command == PROXY_CMD_PROXY && addrlen) {
		h->family = p[13] == 0x11 ? PROXY_FAM_INET : PROXY_FAM_INET6;
		h->src = src;
		h->dst = dst;
	}
	h->len = total;
	return STEP_OK;
}

/* ---- both ---------------------------------------------------------------------------- */

enum proxy_status
proxy_parse(const void *buf, size_t len, struct proxy_header *out)
{
	const uint8_t *p = buf;
	int rc, version;

	*out = (struct proxy_header){.command = PROXY_CMD_PROXY, .family = PROXY_FAM_UNSPEC};
	if (len == 0)
		return PROXY_NEED_MORE;
	if (p[0] == 'P')
		rc = parse_v1(p, len, out);
	else if (p[0] == v2_sig[0])
		rc = parse_v2(p, len, out);
	else
		rc = PROXY_E_GARBAGE;
	if (rc == STEP_OK)
		return PROXY_DONE;
	/* nothing but the version is reported until the header is complete */
	version = rc == PROXY_E_GARBAGE ? 0 : out->version;
	*out = (struct proxy_header){
	        .version = version, .command = PROXY_CMD_PROXY, .family = PROXY_FAM_UNSPEC};
	if (rc == STEP_MORE)
		return PROXY_NEED_MORE;
	out->error = (enum proxy_error)rc;
	return PROXY_ERROR;
}

size_t
proxy_format(const struct proxy_header *h, char *buf, size_t size)
{
	char s[ENDPOINT_STRLEN], d[ENDPOINT_STRLEN];
	int n;

	if (h->command == PROXY_CMD_LOCAL)
		n = snprintf(buf, size, "v%d LOCAL", h->version);
	else if (h->family == PROXY_FAM_UNSPEC)
		n = snprintf(buf, size, "v%d PROXY %s", h->version,
		             h->version == 1 ? "UNKNOWN" : "UNSPEC");
	else {
		endpoint_format(&h->src, s, sizeof(s));
		endpoint_format(&h->dst, d, sizeof(d));
		n = snprintf(buf, size, "v%d PROXY %s %s -> %s", h->version,
		             h->family == PROXY_FAM_INET ? "TCP4" : "TCP6", s, d);
	}
	if (n < 0)
		return 0;
	return size == 0 ? 0 : ((size_t)n < size ? (size_t)n : size - 1);
}
