/* libFuzzer target: the PROXY protocol parser (net/proxy).
 * Invariants: the parser reads no byte past the length it is given (each prefix is an
 * exact-size heap copy, for ASan); every prefix shorter than the point where the answer
 * is decided needs more, and from that point on the answer (status, error, length and
 * every field) no longer changes; a header is at most PROXY_HEADER_MAX bytes (a v1 line
 * at most PROXY_V1_MAX), never longer than the input, and a LOCAL or UNSPEC header
 * carries no address. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxy.h"

static enum proxy_status
parse_prefix(const uint8_t *data, size_t k, struct proxy_header *h)
{
	uint8_t *copy = malloc(k ? k : 1);
	enum proxy_status st;

	if (!copy)
		abort();
	memcpy(copy, data, k);
	st = proxy_parse(copy, k, h);
	free(copy);
	return st;
}

static void
check_done(const struct proxy_header *h, size_t size)
{
	static const struct endpoint zero;
	char text[PROXY_STRLEN], tiny[5];

	if (h->len == 0 || h->len > size || h->len > PROXY_HEADER_MAX ||
	    (h->version == 1 && h->len > PROXY_V1_MAX) || h->error != PROXY_E_NONE)
		abort();
	if ((h->command == PROXY_CMD_LOCAL && h->family != PROXY_FAM_UNSPEC) ||
	    (h->version == 1 && h->command != PROXY_CMD_PROXY))
		abort();
	if (h->family == PROXY_FAM_UNSPEC && (memcmp(&h->src, &zero, sizeof(zero)) != 0 ||
	                                      memcmp(&h->dst, &zero, sizeof(zero)) != 0))
		abort();
	if (proxy_format(h, text, sizeof(text)) >= sizeof(text) ||
	    proxy_format(h, tiny, sizeof(tiny)) >= sizeof(tiny))
		abort();
}

static int
same_endpoint(const struct endpoint *a, const struct endpoint *b)
{
	return a->addr.v == b->addr.v && a->addr.family == b->addr.family && a->port == b->port;
}

/* Field by field: struct padding is not part of the answer. */
static int
same(const struct proxy_header *a, const struct proxy_header *b)
{
	return a->version == b->version && a->command == b->command && a->family == b->family &&
	       same_endpoint(&a->src, &b->src) && same_endpoint(&a->dst, &b->dst) &&
	       a->len == b->len && a->tlvs == b->tlvs && a->crc32c == b->crc32c &&
	       a->error == b->error;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header first, again;
	enum proxy_status st = PROXY_NEED_MORE;
	size_t k;

	/* the first prefix that decides */
	for (k = 0; k <= size; k++) {
		st = parse_prefix(data, k, &first);
		if (st != PROXY_NEED_MORE)
			break;
	}
	if (st == PROXY_NEED_MORE) {
		/* undecided: only a header cut short can be, and no header is this long */
		if (size >= PROXY_HEADER_MAX)
			abort();
		return 0;
	}
	if (k > PROXY_HEADER_MAX || (st == PROXY_DONE && first.len != k) ||
	    (st == PROXY_ERROR && (first.error == PROXY_E_NONE || first.len != 0)))
		abort();
	if (st == PROXY_DONE)
		check_done(&first, size);
	else if (proxy_error_text(first.error)[0] == '\0')
		abort();
	/* more bytes change nothing: one more, and all of them */
	if (k + 1 <= size && (parse_prefix(data, k + 1, &again) != st || !same(&again, &first)))
		abort();
	if (parse_prefix(data, size, &again) != st || !same(&again, &first))
		abort();
	return 0;
}
