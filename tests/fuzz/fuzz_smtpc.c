/* libFuzzer target: the SMTP client's reply parser (net/smtpc.h).  The input is fed
 * whole and again cut at a point the first byte picks.  Invariants: every call takes
 * bytes until an event and no more than it was given; a complete line is at most 510
 * octets, starts with a code 200-559 shared by its reply, and holds no control
 * character but TAB; a reply has at most SMTPC_LINES_MAX lines; the events and the
 * lines are the same whatever the cut. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/smtpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds data in two chunks cut at split; returns a hash of the events and lines. */
static uint64_t
feed(const char *data, size_t size, size_t split)
{
	struct smtpc_parser p;
	uint64_t h = 1469598103934665603ULL;

	smtpc_parser_init(&p);
	for (size_t off = 0; off < size;) {
		size_t end = off < split ? split : size, used;
		while (off < end) {
			enum smtpc_ev ev = smtpc_parse(&p, data + off, end - off, &used);
			if (used > end - off)
				abort();
			off += used;
			if (ev != SMTPC_MORE) /* MORE depends on the cut; nothing else may */
				h = (h ^ (uint64_t)ev) * 1099511628211ULL;
			if (ev == SMTPC_BAD)
				return h;
			if (ev == SMTPC_MORE) {
				if (off != end)
					abort();
				break;
			}
			if (used == 0 || p.len < 3 || p.len > SMTPC_LINE_MAX - 2 ||
			    p.lines > SMTPC_LINES_MAX || p.code < 200 || p.code > 559 ||
			    (p.line[0] - '0') * 100 + (p.line[1] - '0') * 10 + (p.line[2] - '0') !=
			            p.code)
				abort();
			for (size_t i = 3; i < p.len; i++) {
				unsigned char c = (unsigned char)p.line[i];
				if ((c < 0x20 && c != '\t') || c == 0x7f)
					abort();
				h = (h ^ c) * 1099511628211ULL;
			}
		}
	}
	return h;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t split = data[0] % size;
	const char *s = (const char *)data + 1;
	size--;
	char *copy = malloc(size ? size : 1); /* exactly the input: ASan sees an overread */
	if (!copy)
		return 0;
	memcpy(copy, s, size);
	if (feed(copy, size, 0) != feed(copy, size, split > size ? size : split))
		abort();
	free(copy);
	return 0;
}
