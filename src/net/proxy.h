/*
 * proxy — the PROXY protocol header that a load balancer sends before the client's
 * bytes, versions 1 (a text line) and 2 (binary), as a sans-I/O parser.
 *
 * The protocol is HAProxy's "The PROXY protocol, versions 1 & 2" (the specification in
 * HAProxy's sources, doc/proxy-protocol.txt); section numbers below are that text's.
 * Behind a TCP balancer the peer of every connection is the balancer: the header tells
 * who the client really is.
 *
 * Parsing: proxy_parse() takes every byte received so far, from the first, and says
 *   PROXY_NEED_MORE  the bytes are a valid beginning: read more and call again with all
 *                    of them (the parser keeps no state; it looks at no byte past len);
 *   PROXY_DONE       a complete, valid header of out->len bytes: drop those, the bytes
 *                    after them are the client's (SMTP) data;
 *   PROXY_ERROR      not a valid header, out->error says why; no more bytes can mend it.
 * Errors come early (§2.1: abort as soon as possible): a wrong byte of the grammar, a bad
 * port digit or v2 fixed field as soon as it arrives; a v1 address when its field ends;
 * the v2 address block and TLVs once the whole header is in.  The status is
 * monotonic: feeding more bytes never turns DONE or ERROR into something else, and the
 * answer does not depend on how the bytes were split.
 *
 * Strict, by the specification:
 *   - version 1 (§2.1): "PROXY TCP4 " / "PROXY TCP6 " SRC SP DST SP SPORT SP DPORT CRLF,
 *     single spaces; addresses of the named family (dotted quad without leading zeros;
 *     IPv6 text, with a dotted tail allowed as HAProxy writes mapped addresses); ports
 *     0..65535 in decimal without leading zeros; or "PROXY UNKNOWN" followed by CRLF or
 *     by a space and printable US-ASCII up to the CRLF.  CRLF only, and within the
 *     first PROXY_V1_MAX (107) bytes.
 *   - version 2 (§2.2): the 12-byte signature, version 2, command LOCAL or PROXY; the
 *     family/transport byte 0x00 (UNSPEC), 0x11 (TCP over IPv4) or 0x21 (TCP over IPv6)
 *     — UDP (DGRAM) and AF_UNIX are refused, as is every value the specification does
 *     not list; a total length of at most PROXY_V2_MAX and at least the address block's;
 *     the TLVs after the addresses walked, each checked against the bytes left, and
 *     skipped (a CRC32C TLV, §2.2.3, is verified: it must be 4 bytes and match, and may
 *     appear once).  With family UNSPEC there is no address block and the TLVs start
 *     right after the 16 fixed bytes.
 *   - the version is told by the signature alone (§2.2): "PROXY" is version 1, the
 *     binary signature version 2; anything else is PROXY_E_GARBAGE.
 *
 * What the result means (struct proxy_header):
 *   command PROXY with family INET/INET6: src is the client and dst the address it
 *     connected to on the balancer.  As everywhere in mxgate (base/ipaddr.h), an
 *     IPv4-mapped IPv6 address (HAProxy sends one when the two sides differ in family)
 *     becomes an AF_INET ipaddr, while family still says what the header announced.
 *   family UNSPEC (v1 UNKNOWN, v2 LOCAL, v2 PROXY with family 0x00): no address was
 *     given or it must be ignored; src and dst are zeroed.  The connection's own
 *     endpoints (the balancer's) stand.  v2 LOCAL is how a balancer's health check says
 *     "this connection is mine" (§2.2): its family byte is checked like any other and
 *     then discarded, so a LOCAL header always reports family UNSPEC.
 *   HAProxy's health checks send v2 LOCAL with send-proxy-v2, and with send-proxy a v1
 *   TCP4/TCP6 line whose client is the balancer itself: either way the check's session
 *   is the balancer's.
 *
 * How the daemon uses it (the integration of the top-level proxy-protocol-from):
 *   1. At accept, the TCP peer is looked up in proxy-protocol-from.  A peer outside it is
 *      never believed: the parser is not called, and whatever it sends — a PROXY line
 *      included — is SMTP input of a client at the peer's own address.
 *   2. A peer inside it gets no greeting yet.  The daemon reads into a buffer of
 *      PROXY_HEADER_MAX bytes (any header accepted fits, and the parser has decided by
 *      the time it is full) and calls proxy_parse() on all bytes received after each
 *      read, under a header timeout (the specification asks for at least 3 seconds, to
 *      cover a TCP retransmission).  The timeout, an EOF before PROXY_DONE, or
 *      PROXY_ERROR close the connection without an SMTP byte and log one line with the
 *      balancer's address and proxy_error_text(), saying the balancer must send a header
 *      (HAProxy: send-proxy or send-proxy-v2 on the server line) or leave
 *      proxy-protocol-from.
 *   3. On PROXY_DONE the first out->len bytes are dropped; the rest stays in the buffer
 *      as the client's first input for the SMTP core.  With family INET/INET6 the client
 *      is out->src for everything after: connector selection (out->src as the remote
 *      address, with the local address and port the connection has on mxgate; out->dst
 *      is the balancer's frontend, for the log), per-source limits, logs (the client and
 *      the balancer), Received:, metrics.  With family UNSPEC the session is the
 *      balancer's own, selected by its address like any other (or closed, without an
 *      SMTP byte, when no connector covers it).
 *
 * Nothing here allocates, logs or keeps state; out is written on every call.
 */
#ifndef MXGATE_PROXY_H
#define MXGATE_PROXY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/ipaddr.h"

/* Longest version 1 line, CRLF included (§2.1: "PROXY UNKNOWN" with two full IPv6
 * addresses and ports). */
#define PROXY_V1_MAX 107
/* Longest version 2 header accepted: 16 fixed bytes, the addresses and the TLVs.  The
 * specification sizes headers to fit 536 bytes, one minimal TCP segment; TLVs may go past
 * that (HAProxy's SSL, authority and unique-id TLVs together, a cloud's endpoint id), so
 * the bound is 1 KiB.  A longer header is PROXY_E_V2_TOO_LONG. */
#define PROXY_V2_MAX 1024
/* A buffer this big holds any header proxy_parse() accepts. */
#define PROXY_HEADER_MAX PROXY_V2_MAX

enum proxy_status {
	PROXY_NEED_MORE,
	PROXY_DONE,
	PROXY_ERROR,
};

enum proxy_command {
	PROXY_CMD_LOCAL, /* v2 LOCAL: the balancer's own connection (health check) */
	PROXY_CMD_PROXY, /* relayed for a client (every v1 header) */
};

enum proxy_family {
	PROXY_FAM_UNSPEC, /* no addresses: use the connection's own */
	PROXY_FAM_INET,   /* TCP over IPv4 (v1 TCP4, v2 0x11) */
	PROXY_FAM_INET6,  /* TCP over IPv6 (v1 TCP6, v2 0x21) */
};

enum proxy_error {
	PROXY_E_NONE,
	PROXY_E_GARBAGE,        /* neither signature: not a PROXY header */
	PROXY_E_V1_SYNTAX,      /* v1: not "PROXY TCP4|TCP6|UNKNOWN", spaces, characters */
	PROXY_E_V1_ADDRESS,     /* v1: an address that is not one of the named family */
	PROXY_E_V1_PORT,        /* v1: a port not 0..65535 in decimal without leading zeros */
	PROXY_E_V1_EOL,         /* v1: a bare CR or LF; only CRLF ends the line */
	PROXY_E_V1_TOO_LONG,    /* v1: no CRLF within PROXY_V1_MAX bytes */
	PROXY_E_V2_VERSION,     /* v2: version nibble is not 2 */
	PROXY_E_V2_COMMAND,     /* v2: command is neither LOCAL nor PROXY */
	PROXY_E_V2_FAMILY,      /* v2: family/transport byte the specification does not list */
	PROXY_E_V2_UNSUPPORTED, /* v2: UDP (DGRAM) or AF_UNIX: mxgate takes TCP only */
	PROXY_E_V2_TOO_LONG,    /* v2: header longer than PROXY_V2_MAX */
	PROXY_E_V2_SHORT,       /* v2: length smaller than the family's address block */
	PROXY_E_V2_TLV,         /* v2: a TLV runs past the header, or a malformed CRC32C TLV */
	PROXY_E_V2_CRC,         /* v2: the CRC32C TLV does not match the header */
};

struct proxy_header {
	int version; /* 1 or 2, once the signature is known; else 0 */
	enum proxy_command command;
	enum proxy_family family;
	struct endpoint src, dst; /* family INET/INET6: client, and where it connected */
	size_t len;               /* PROXY_DONE: bytes of the header, to drop */
	unsigned tlvs;            /* v2: TLVs walked (and skipped) */
	bool crc32c;              /* v2: a CRC32C TLV was there and matched */
	enum proxy_error error;   /* PROXY_ERROR: why; else PROXY_E_NONE */
};

/* Parses buf[0..len), all bytes received so far on the connection.  Fills *out (every
 * field, on every call) and returns the status described at the top. */
enum proxy_status proxy_parse(const void *buf, size_t len, struct proxy_header *out);

/* What went wrong, for a log line: e.g. "version 2: TLV runs past the end of the header".
 * A static string. */
const char *proxy_error_text(enum proxy_error e);

/* Longest text proxy_format() writes, with the NUL. */
#define PROXY_STRLEN (2 * ENDPOINT_STRLEN + 32)

/* Writes h (after PROXY_DONE) for a log line: "v1 PROXY TCP4 192.0.2.1:5000 ->
 * 198.51.100.2:25", "v2 LOCAL", "v1 PROXY UNKNOWN", "v2 PROXY UNSPEC".  Returns the
 * length written (cut to size - 1). */
size_t proxy_format(const struct proxy_header *h, char *buf, size_t size);

#endif
