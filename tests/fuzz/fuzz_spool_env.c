/* libFuzzer target: the spool's envelope and state parsers, on files a crash damaged or
 * someone planted.  Invariants: a parsed envelope has an id of 16 hex digits, at least
 * one recipient and a prefix within its size; it writes back (spool_envelope_format), and
 * what it writes parses to the same entry and writes back byte for byte.  The same bytes
 * applied as a state file, to the parsed entry or to a fixed one of three recipients,
 * only ever mark recipients that exist, with valid states. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
same_entry(const struct spool_entry *a, const struct spool_entry *b)
{
	if (strcmp(a->id, b->id) != 0 || a->received != b->received || a->size != b->size ||
	    a->prefix_len != b->prefix_len || a->smtputf8 != b->smtputf8 ||
	    a->body_8bit != b->body_8bit || strcmp(a->sender, b->sender) != 0 ||
	    strcmp(a->connector, b->connector) != 0 || strcmp(a->client, b->client) != 0 ||
	    strcmp(a->helo, b->helo) != 0 || a->n_rcpts != b->n_rcpts)
		return false;
	for (size_t i = 0; i < a->n_rcpts; i++)
		if (strcmp(a->rcpts[i], b->rcpts[i]) != 0)
			return false;
	return true;
}

static void
check_state(struct spool_entry *e, const char *buf, size_t len)
{
	spool_state_apply(e, buf, len);
	if (!e->rcpt_state)
		return;
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (e->rcpt_state[i] != SPOOL_RCPT_PENDING &&
		    e->rcpt_state[i] != SPOOL_RCPT_DELIVERED &&
		    e->rcpt_state[i] != SPOOL_RCPT_FAILED)
			abort();
		if (e->rcpt_note && e->rcpt_note[i] && e->rcpt_state[i] == SPOOL_RCPT_PENDING)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct spool_entry *e = spool_envelope_parse(buf, size);

	if (e) {
		if (strlen(e->id) != SPOOL_ID_LEN || e->n_rcpts == 0 || e->prefix_len > e->size)
			abort();
		size_t len, len2;
		char *text = spool_envelope_format(e, &len);
		if (!text)
			abort(); /* everything the parser takes can be written back */
		struct spool_entry *again = spool_envelope_parse(text, len);
		if (!again || !same_entry(e, again))
			abort();
		char *text2 = spool_envelope_format(again, &len2);
		if (!text2 || len2 != len || memcmp(text, text2, len) != 0)
			abort();
		free(text);
		free(text2);
		spool_entry_free(again);
		check_state(e, buf, size);
		spool_entry_free(e);
	}

	/* the bytes as the state file of a message of three recipients */
	char sender[] = "s@example.net", c[] = "Default", cl[] = "192.0.2.1", h[] = "h.example";
	char r0[] = "a@example.com", r1[] = "b@example.com", r2[] = "c@example.com";
	char *rcpts[] = {r0, r1, r2};
	struct spool_entry *fixed = spool_entry_new();
	if (!fixed)
		return 0;
	fixed->sender = strdup(sender);
	fixed->connector = strdup(c);
	fixed->client = strdup(cl);
	fixed->helo = strdup(h);
	fixed->rcpts = calloc(3, sizeof(char *));
	if (fixed->rcpts) {
		for (size_t i = 0; i < 3; i++)
			fixed->rcpts[i] = strdup(rcpts[i]);
		fixed->n_rcpts = 3;
		check_state(fixed, buf, size);
	}
	spool_entry_free(fixed);
	return 0;
}
