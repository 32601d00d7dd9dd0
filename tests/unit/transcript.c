#include "transcript.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "allocfail.h"
#include "base/diag.h"
#include "base/vec.h"
#include "conf/config.h"
#include "helpers.h"
#include "smtpd/policy.h"
#include "smtpd/smtp.h"

#define MAX_ACTIONS_PER_FEED 2000000
#define RANDOM_FEEDS         16
#define MAX_KEYED            64
#define MAX_ALLOC_FAILURES   100000 /* a bound on the allocations of one feed (allocfail) */

/* A call into the core: only its own allocations may be failed (allocfail.h). */
#define CORE(call)                                                                                 \
	({                                                                                         \
		allocfail_enter();                                                                 \
		__typeof__(call) core_r_ = (call);                                                 \
		allocfail_leave();                                                                 \
		core_r_;                                                                           \
	})
#define CORE_V(call)                                                                               \
	do {                                                                                       \
		allocfail_enter();                                                                 \
		call;                                                                              \
		allocfail_leave();                                                                 \
	} while (0)

/* ---- growable byte buffers ---------------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
};

/* Room for n more bytes and a NUL. */
static void
buf_reserve(struct buf *b, size_t n)
{
	if (n > SIZE_MAX - b->len - 1 || VEC_RESERVE(b->p, b->cap, b->len + n + 1) < 0)
		abort();
}

static void
buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap, again;
	int n;

	va_start(ap, fmt);
	va_copy(again, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	/* room for the text and vsnprintf's NUL, then drop the NUL from the length */
	buf_reserve(b, (size_t)n + 1);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, again);
	va_end(again);
	b->len += (size_t)n;
}

static void
buf_release(struct buf *b)
{
	free(b->p);
	*b = (struct buf){0};
}

/* ---- record lines ------------------------------------------------------------------- */

struct line {
	char tag[32];
	struct buf text;
	int src; /* line in the transcript (expected lines) */
};

struct lines {
	struct line *v;
	size_t n, cap;
};

static struct line *
lines_add(struct lines *l, const char *tag, const void *text, size_t len)
{
	if (VEC_RESERVE(l->v, l->cap, l->n + 1) < 0)
		abort();
	struct line *x = &l->v[l->n++];
	*x = (struct line){0};
	snprintf(x->tag, sizeof(x->tag), "%s", tag);
	buf_add(&x->text, text, len);
	return x;
}

static void
lines_release(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		buf_release(&l->v[i].text);
	free(l->v);
	*l = (struct lines){0};
}

static void
put_escaped(struct buf *b, unsigned char c)
{
	switch (c) {
	case '\\':
		buf_adds(b, "\\\\");
		break;
	case '\r':
		buf_adds(b, "\\r");
		break;
	case '\n':
		buf_adds(b, "\\n");
		break;
	case '\t':
		buf_adds(b, "\\t");
		break;
	case '\0':
		buf_adds(b, "\\0");
		break;
	default:
		if (c < 0x20 || c >= 0x7f || c == '}')
			buf_addf(b, "\\x%02x", c);
		else
			buf_add(b, &c, 1);
	}
}

/* Text in transcript syntax, runs of 8 or more equal bytes as \{N:c}. */
static void
render(struct buf *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t run = 1;
		while (i + run < n && p[i + run] == p[i])
			run++;
		if (run >= 8) {
			buf_addf(b, "\\{%zu:", run);
			put_escaped(b, (unsigned char)p[i]);
			buf_adds(b, "}");
			i += run;
		} else {
			put_escaped(b, (unsigned char)p[i]);
			i++;
		}
	}
}

static void
print_line(FILE *fp, const char *mark, const struct line *x)
{
	struct buf b = {0};

	render(&b, x->text.p, x->text.len);
	if (b.len > 400)
		fprintf(fp, "%s %s: %.400s... (%zu bytes)\n", mark, x->tag, b.p, x->text.len);
	else
		fprintf(fp, "%s %s: %s\n", mark, x->tag, b.p ? b.p : "");
	buf_release(&b);
}

static bool
line_eq(const struct line *a, const struct line *b)
{
	return strcmp(a->tag, b->tag) == 0 && a->text.len == b->text.len &&
	       (a->text.len == 0 || memcmp(a->text.p, b->text.p, a->text.len) == 0);
}

/* ---- the script --------------------------------------------------------------------- */

enum item_kind { IT_BYTES, IT_EOF, IT_IDLE, IT_SESSION, IT_SHUTDOWN };

struct item {
	enum item_kind kind;
	size_t off, len;
};

struct answer {
	enum smtp_kind kind;
	bool ok;
	char id[64];
	enum item_kind event; /* IT_BYTES: none; else it comes before the answer */
};

enum split_mode { SPLIT_EVERY, SPLIT_WHOLE, SPLIT_SAMPLED };

struct tx_script {
	char name[128];
	char *top[MAX_KEYED]; /* "config:" lines */
	size_t n_top;
	char *conn[MAX_KEYED]; /* "connector:" lines */
	size_t n_conn;
	bool tls;
	char client[64];
	long rate; /* MAILs rate_ok() allows; -1: no rate_ok */
	enum split_mode split;
	unsigned samples;

	struct buf bytes; /* the client's stream: every turn, in order */
	struct item *items;
	size_t n_items, cap_items;
	struct lines expect;
	struct lines logs; /* L: lines */
	struct answer *answers;
	size_t n_answers, cap_answers;
};

static void
add_item(struct tx_script *sc, enum item_kind kind, size_t off, size_t len)
{
	if (VEC_RESERVE(sc->items, sc->cap_items, sc->n_items + 1) < 0)
		abort();
	sc->items[sc->n_items++] = (struct item){kind, off, len};
}

static void
add_answer(struct tx_script *sc, struct answer a)
{
	if (VEC_RESERVE(sc->answers, sc->cap_answers, sc->n_answers + 1) < 0)
		abort();
	sc->answers[sc->n_answers++] = a;
}

void
tx_free(struct tx_script *sc)
{
	if (!sc)
		return;
	for (size_t i = 0; i < sc->n_top; i++)
		free(sc->top[i]);
	for (size_t i = 0; i < sc->n_conn; i++)
		free(sc->conn[i]);
	buf_release(&sc->bytes);
	free(sc->items);
	lines_release(&sc->expect);
	lines_release(&sc->logs);
	free(sc->answers);
	free(sc);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes TEXT escapes (see transcript.h).  Returns 0, or -1 with err set. */
static int
decode(const char *s, size_t n, struct buf *out, const char **err)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\') {
			buf_add(out, s + i, 1);
			continue;
		}
		if (++i >= n) {
			*err = "backslash at the end of the line";
			return -1;
		}
		switch (s[i]) {
		case '\\':
			buf_adds(out, "\\");
			break;
		case 'r':
			buf_adds(out, "\r");
			break;
		case 'n':
			buf_adds(out, "\n");
			break;
		case 't':
			buf_adds(out, "\t");
			break;
		case '0':
			buf_add(out, "", 1);
			break;
		case 'x': {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1,
			    lo = hi >= 0 ? hexval(s[i + 2]) : -1;
			if (lo < 0) {
				*err = "\\x needs two hex digits";
				return -1;
			}
			char c = (char)(hi * 16 + lo);
			buf_add(out, &c, 1);
			i += 2;
			break;
		}
		case '{': {
			/* \{N:TEXT}: TEXT may hold escapes and nested repeats */
			char *end;
			unsigned long count = strtoul(s + i + 1, &end, 10);
			size_t j = (size_t)(end - s), depth = 1, start;
			if (end == s + i + 1 || j >= n || s[j] != ':' || count > 10000000) {
				*err = "\\{ needs a count and ':'";
				return -1;
			}
			start = ++j;
			while (j < n) {
				if (s[j] == '\\' && j + 1 < n) {
					depth += s[j + 1] == '{';
					j += 2;
					continue;
				}
				if (s[j] == '}' && --depth == 0)
					break;
				j++;
			}
			if (j >= n) {
				*err = "\\{ without its '}'";
				return -1;
			}
			struct buf one = {0};
			if (decode(s + start, j - start, &one, err) < 0) {
				buf_release(&one);
				return -1;
			}
			for (unsigned long k = 0; k < count; k++)
				buf_add(out, one.p, one.len);
			buf_release(&one);
			i = j;
			break;
		}
		default:
			*err = "unknown escape";
			return -1;
		}
	}
	return 0;
}

static bool
valid_tag(const char *tag)
{
	static const char *const plain[] = {"S", "A", "E", "L", "C", "R", "X"};
	unsigned long ms;
	char *end;

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		if (strcmp(tag, plain[i]) == 0)
			return true;
	if (strncmp(tag, "S(", 2) != 0 || !isdigit((unsigned char)tag[2]))
		return false;
	ms = strtoul(tag + 2, &end, 10);
	(void)ms;
	return strcmp(end, "ms)") == 0;
}

static const struct {
	const char *word;
	enum item_kind kind;
} events[] = {
        {"eof", IT_EOF}, {"idle", IT_IDLE}, {"session", IT_SESSION}, {"shutdown", IT_SHUTDOWN}};
#define N_EVENTS (sizeof(events) / sizeof(events[0]))

/* The event named w, or IT_BYTES when there is none of that name. */
static enum item_kind
event_named(const char *w)
{
	for (size_t k = 0; k < N_EVENTS; k++)
		if (strcmp(w, events[k].word) == 0)
			return events[k].kind;
	return IT_BYTES;
}

static const char *
event_word(enum item_kind kind)
{
	for (size_t k = 0; k < N_EVENTS; k++)
		if (events[k].kind == kind)
			return events[k].word;
	return "?";
}

/* Checks an A: line and takes the answer it scripts. */
static int
parse_action(struct tx_script *sc, const struct buf *t, const char **err)
{
	struct answer a = {.event = IT_BYTES};
	char w[4][64] = {""};
	int n;

	if (t->len >= 8 && memcmp(t->p, "MSG_DATA", 8) == 0 && (t->len == 8 || t->p[8] == ' '))
		return 0;
	n = t->p && t->len < 200 ? sscanf(t->p, "%63s %63s %63s %63s", w[0], w[1], w[2], w[3]) : 0;
	if (n == 1 && (!strcmp(w[0], "MSG_ABORT") || !strcmp(w[0], "CLOSE")))
		return 0;
	if (!strcmp(w[0], "MSG_BEGIN"))
		a.kind = SMTP_MSG_BEGIN;
	else if (!strcmp(w[0], "MSG_END"))
		a.kind = SMTP_MSG_END;
	else if (!strcmp(w[0], "STARTTLS"))
		a.kind = SMTP_STARTTLS;
	else {
		*err = "unknown action";
		return -1;
	}
	if (n > 2 && w[n - 1][0] == '+') {
		a.event = event_named(w[n - 1] + 1);
		if (a.event == IT_BYTES) {
			*err = "+EVENT is +eof, +idle, +session or +shutdown";
			return -1;
		}
		n--;
	}
	a.ok = strcmp(w[1], "ok") == 0;
	if ((!a.ok && strcmp(w[1], "fail") != 0) ||
	    n != 2 + (a.kind == SMTP_MSG_END && a.ok ? 1 : 0)) {
		*err = "an answer is 'ok' or 'fail' (MSG_END ok takes a queue id), then maybe "
		       "+EVENT";
		return -1;
	}
	snprintf(a.id, sizeof(a.id), "%s", w[2]);
	add_answer(sc, a);
	return 0;
}

static char *
xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		abort();
	return p;
}

struct tx_script *
tx_parse(const char *name, const char *text)
{
	struct tx_script *sc = calloc(1, sizeof(*sc));
	const char *p = text, *err = NULL;
	bool in_turn = false, talked = false;
	size_t turn_off = 0;
	int lineno = 0;

	if (!sc)
		abort();
	snprintf(sc->name, sizeof(sc->name), "%s", name);
	snprintf(sc->client, sizeof(sc->client), "192.0.2.1");
	sc->rate = -1;
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		const char *next = eol ? eol + 1 : p + len;
		lineno++;
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len == 0 || p[0] == '#') {
			p = next;
			continue;
		}
		const char *colon = memchr(p, ':', len);
		if (!colon || colon - p >= 32 || (colon + 1 < p + len && colon[1] != ' ')) {
			err = "expected 'TAG: text'";
			goto fail;
		}
		char tag[32];
		memcpy(tag, p, (size_t)(colon - p));
		tag[colon - p] = '\0';
		const char *rest = colon + 1 < p + len ? colon + 2 : colon + 1;
		size_t rlen = (size_t)(p + len - rest);

		if (!strcmp(tag, "config") || !strcmp(tag, "connector") || !strcmp(tag, "tls") ||
		    !strcmp(tag, "client") || !strcmp(tag, "split") || !strcmp(tag, "rate")) {
			if (talked) {
				err = "set-up lines come before the conversation";
				goto fail;
			}
			if (!strcmp(tag, "config") || !strcmp(tag, "connector")) {
				bool top = tag[1] == 'o' && tag[2] == 'n' && tag[3] == 'f';
				size_t *n = top ? &sc->n_top : &sc->n_conn;
				if (*n == MAX_KEYED) {
					err = "too many set-up lines";
					goto fail;
				}
				(top ? sc->top : sc->conn)[(*n)++] = xstrndup(rest, rlen);
			} else if (!strcmp(tag, "tls")) {
				sc->tls = rlen == 3 && !memcmp(rest, "yes", 3);
			} else if (!strcmp(tag, "client")) {
				snprintf(sc->client, sizeof(sc->client), "%.*s", (int)rlen, rest);
			} else if (!strcmp(tag, "rate")) {
				sc->rate = strtol(rest, NULL, 10);
			} else if (rlen == 5 && !memcmp(rest, "every", 5)) {
				sc->split = SPLIT_EVERY;
			} else if (rlen == 5 && !memcmp(rest, "whole", 5)) {
				sc->split = SPLIT_WHOLE;
			} else {
				sc->split = SPLIT_SAMPLED;
				sc->samples = (unsigned)strtoul(rest, NULL, 10);
				if (sc->samples == 0) {
					err = "split is every, whole or a number";
					goto fail;
				}
			}
			p = next;
			continue;
		}
		if (!valid_tag(tag)) {
			err = "unknown tag";
			goto fail;
		}
		talked = true;
		struct buf t = {0};
		if (decode(rest, rlen, &t, &err) < 0) {
			buf_release(&t);
			goto fail;
		}
		if (!strcmp(tag, "C") || !strcmp(tag, "R")) {
			if (!in_turn) {
				in_turn = true;
				turn_off = sc->bytes.len;
			}
			buf_add(&sc->bytes, t.p, t.len);
			if (tag[0] == 'C')
				buf_adds(&sc->bytes, "\r\n");
			buf_release(&t);
			p = next;
			continue;
		}
		if (in_turn) {
			add_item(sc, IT_BYTES, turn_off, sc->bytes.len - turn_off);
			in_turn = false;
		}
		if (!strcmp(tag, "X")) {
			enum item_kind kind = event_named(t.p ? t.p : "");
			buf_release(&t);
			if (kind == IT_BYTES) {
				err = "X: is eof, idle, session or shutdown";
				goto fail;
			}
			add_item(sc, kind, 0, 0);
		} else if (!strcmp(tag, "L")) {
			lines_add(&sc->logs, tag, t.p, t.len)->src = lineno;
			buf_release(&t);
		} else {
			if (tag[0] == 'A' && parse_action(sc, &t, &err) < 0) {
				buf_release(&t);
				goto fail;
			}
			lines_add(&sc->expect, tag, t.p, t.len)->src = lineno;
			buf_release(&t);
		}
		p = next;
	}
	if (in_turn)
		add_item(sc, IT_BYTES, turn_off, sc->bytes.len - turn_off);
	return sc;
fail:
	fprintf(stderr, "%s:%d: %s\n", name, lineno, err);
	tx_free(sc);
	return NULL;
}

const char *
tx_dir(void)
{
	static char dir[512];
	const char *env = getenv("MXGATE_SRCDIR");

	if (env && *env) {
		snprintf(dir, sizeof(dir), "%s/tests/unit/transcripts", env);
	} else {
		const char *slash = strrchr(__FILE__, '/');
		int n = slash ? (int)(slash - __FILE__) : 1;
		snprintf(dir, sizeof(dir), "%.*s/transcripts", n, slash ? __FILE__ : ".");
	}
	return dir;
}

struct tx_script *
tx_load(const char *file)
{
	char path[1024];
	struct buf text = {0};
	char chunk[4096];
	size_t n;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tx_dir(), file);
	if (!(fp = fopen(path, "r"))) {
		perror(path);
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_add(&text, chunk, n);
	fclose(fp);
	if (!text.p || memchr(text.p, '\0', text.len)) {
		fprintf(stderr, "%s: empty, or holds a NUL byte\n", path);
		buf_release(&text);
		return NULL;
	}
	struct tx_script *sc = tx_parse(path, text.p);
	buf_release(&text);
	return sc;
}

/* ---- the session set-up ------------------------------------------------------------- */

static const char *const base_top[] = {
        "hostname = \"mx.example.com\"",
        "accepted-domains = { \"example.com\", \"*.example.net\" }",
        "domain \"corp.example\" { recipients-file = \"recipients.txt\" }",
};

static const char *const base_conn[] = {
        "usage = custom",
        "permission-groups = { anonymous-users }",
        "bindings = { \"127.0.0.1:2525\" }",
        "tarpit-interval = 0s",
};

static bool
same_key(const char *a, const char *b)
{
	a += *a == '-';
	b += *b == '-';
	size_t la = strcspn(a, " =\t"), lb = strcspn(b, " =\t");
	return la == lb && strncmp(a, b, la) == 0;
}

/* Adds the base lines whose key the script does not set, then the script's ("-KEY" only
 * drops the base line). */
static void
add_keyed(struct buf *out, const char *const *base, size_t n_base, char *const *mine, size_t n_mine,
          const char *indent)
{
	for (size_t i = 0; i < n_base; i++) {
		bool over = false;
		for (size_t j = 0; j < n_mine; j++)
			over = over || same_key(base[i], mine[j]);
		if (!over)
			buf_addf(out, "%s%s\n", indent, base[i]);
	}
	for (size_t j = 0; j < n_mine; j++)
		if (mine[j][0] != '-')
			buf_addf(out, "%s%s\n", indent, mine[j]);
}

struct setup {
	struct config *cfg;
	const struct connector *conn;
};

static void
remove_temp(const char *name)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", helper_tmpdir(), name);
	unlink(path);
}

static int
setup(const struct tx_script *sc, struct setup *su)
{
	struct buf conf = {0};
	struct diag d;

	if (helper_tmpdir()[0])
		mkdir(helper_tmpdir(), 0700); /* removed again below */
	free(helper_write_temp("recipients.txt", "# the users of corp.example\n"
	                                         "alice\n"
	                                         "Bob@corp.example\n"));
	if (sc->tls) {
		helper_make_cert("cert.pem", "key.pem");
		buf_adds(&conf, "tls {\n  certificate = \"cert.pem\"\n  key = \"key.pem\"\n}\n");
	}
	add_keyed(&conf, base_top, sizeof(base_top) / sizeof(base_top[0]), sc->top, sc->n_top, "");
	buf_adds(&conf, "connector \"test\" {\n");
	add_keyed(&conf, base_conn, sizeof(base_conn) / sizeof(base_conn[0]), sc->conn, sc->n_conn,
	          "  ");
	buf_adds(&conf, "}\n");
	diag_init(&d);
	su->cfg = helper_load(conf.p, &d);
	if (!su->cfg) {
		fprintf(stderr, "%s: the config does not load:\n%s", sc->name, conf.p);
		helper_dump(&d);
	}
	diag_release(&d);
	buf_release(&conf);
	remove_temp("mxgate.conf");
	remove_temp("recipients.txt");
	remove_temp("cert.pem");
	remove_temp("key.pem");
	rmdir(helper_tmpdir());
	if (!su->cfg)
		return -1;
	su->conn = config_connector(su->cfg, "test");
	if (!su->conn) {
		fprintf(stderr, "%s: no connector \"test\"\n", sc->name);
		config_unref(su->cfg);
		return -1;
	}
	return 0;
}

/* ---- one feed ----------------------------------------------------------------------- */

struct drive {
	const struct tx_script *sc;
	struct smtp *s;
	struct lines *rec;
	struct buf *logs;
	struct buf body;
	size_t next_answer;
	enum smtp_kind pending; /* a request answered at SMTP_WAIT */
	struct answer pending_answer;
	bool pending_event_done; /* its +EVENT was injected */
	bool in_msg, closed, dead, drop_turn;
	bool oom_run; /* allocations fail (allocfail.h): the record may leave the script */
	long mails;   /* rate_ok() calls */
	unsigned long actions;
};

static void violation(struct drive *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
violation(struct drive *d, const char *fmt, ...)
{
	char tmp[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	lines_add(d->rec, "!", tmp, strlen(tmp));
}

static void
record(struct drive *d, const char *tag, const char *text, size_t len)
{
	lines_add(d->rec, tag, text, len);
}

static bool
rate_cb(void *arg)
{
	struct drive *d = arg;
	return d->mails++ < d->sc->rate;
}

static struct answer
take_answer(struct drive *d, enum smtp_kind kind)
{
	struct answer a = {.kind = kind, .ok = true, .event = IT_BYTES};

	if (d->next_answer < d->sc->n_answers && d->sc->answers[d->next_answer].kind == kind)
		return d->sc->answers[d->next_answer++];
	snprintf(a.id, sizeof(a.id), "UNSCRIPTED");
	if (d->oom_run) /* an allocation failed: the session may ask what the script did not */
		return a;
	violation(d, "a request the transcript does not answer (kind %d)", (int)kind);
	return a;
}

/* A reply is whole CRLF-ended lines, "DDD-" on all but the last, "DDD " on that. */
static void
check_reply(struct drive *d, const struct smtp_action *a)
{
	const char *p = a->text, *end = a->text + a->len;
	bool first = true;

	if (!a->text || a->len < 6 || a->len > 4096 || memcmp(end - 2, "\r\n", 2) != 0) {
		violation(d, "reply not ended by CRLF");
		return;
	}
	while (p < end) {
		const char *eol = p;
		while (eol < end && *eol != '\r' && *eol != '\n')
			eol++;
		if (eol + 1 >= end || eol[0] != '\r' || eol[1] != '\n') {
			violation(d, "bare CR or LF in a reply");
			return;
		}
		bool last = eol + 2 == end;
		if (eol - p < 4 || !isdigit((unsigned char)p[0]) || p[0] < '2' || p[0] > '5' ||
		    !isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) ||
		    p[3] != (last ? ' ' : '-') || memcmp(p, a->text, 3) != 0)
			violation(d, "malformed reply line");
		char tag[32] = "S";
		if (first && a->delay_ms)
			snprintf(tag, sizeof(tag), "S(%ums)", a->delay_ms);
		record(d, tag, p, (size_t)(eol - p));
		first = false;
		p = eol + 2;
	}
}

static void
record_envelope(struct drive *d)
{
	const struct smtp_envelope *e = smtp_envelope(d->s);
	struct buf b = {0};

	buf_addf(&b, "helo=%s from=<%s> to=", e->helo ? e->helo : "(null)",
	         e->mail_from ? e->mail_from : "(null)");
	for (size_t i = 0; i < e->n_rcpts; i++) {
		const struct smtp_rcpt *r = &e->rcpts[i];
		buf_addf(&b, "%s<%s>", i ? "," : "", r->addr);
		if (strlen(r->addr) <= r->local_len || r->addr[r->local_len] != '@')
			violation(d, "rcpt %s: local_len %zu is not where its '@' is", r->addr,
			          r->local_len);
	}
	if (e->smtputf8)
		buf_adds(&b, " smtputf8");
	if (e->body_8bit)
		buf_adds(&b, " 8bitmime");
	record(d, "E", b.p, b.len);
	buf_release(&b);
}

/* One of the server's own events (X: lines, +EVENT answers). */
static void
inject(struct drive *d, enum item_kind kind)
{
	switch (kind) {
	case IT_BYTES:
		break;
	case IT_EOF:
		CORE_V(smtp_eof(d->s));
		break;
	case IT_IDLE:
		CORE_V(smtp_timeout(d->s, SMTP_TIMEOUT_IDLE));
		break;
	case IT_SESSION:
		CORE_V(smtp_timeout(d->s, SMTP_TIMEOUT_SESSION));
		break;
	case IT_SHUTDOWN:
		CORE_V(smtp_shutdown(d->s));
		break;
	}
}

/* The A: line of an answer: "WORD ok|fail[ ID][ +EVENT]". */
static void
record_answer(struct drive *d, const char *word, const struct answer *ans)
{
	char tmp[160];

	snprintf(tmp, sizeof(tmp), "%s %s%s%s%s%s", word, ans->ok ? "ok" : "fail",
	         ans->kind == SMTP_MSG_END && ans->ok ? " " : "",
	         ans->kind == SMTP_MSG_END && ans->ok ? ans->id : "",
	         ans->event != IT_BYTES ? " +" : "",
	         ans->event != IT_BYTES ? event_word(ans->event) : "");
	record(d, "A", tmp, strlen(tmp));
}

static void
answer_pending(struct drive *d)
{
	struct answer a = d->pending_answer;
	enum smtp_kind k = d->pending;

	d->pending = SMTP_NONE;
	if (k == SMTP_MSG_END) {
		CORE_V(smtp_msg_committed(d->s, a.ok, a.id));
	} else {
		CORE_V(smtp_tls_done(d->s, a.ok));
		if (a.ok && (!smtp_in_tls(d->s) || smtp_helo(d->s) || smtp_esmtp(d->s)))
			violation(d, "state kept across STARTTLS");
	}
}

static void
drain(struct drive *d)
{
	struct smtp_action a;
	struct answer ans;
	char tmp[128];

	while (!d->dead) {
		if (++d->actions > MAX_ACTIONS_PER_FEED) {
			violation(d, "runaway session: over %d actions", MAX_ACTIONS_PER_FEED);
			d->dead = true;
			return;
		}
		a = (struct smtp_action){0};
		enum smtp_kind k = CORE(smtp_next(d->s, &a));
		if (k != SMTP_NONE && k != SMTP_WAIT && k != a.kind)
			violation(d, "smtp_next returned %d for an action of kind %d", (int)k,
			          (int)a.kind);
		if (d->closed && k != SMTP_WAIT) {
			violation(d, "action %d after SMTP_CLOSE", (int)k);
			d->dead = true;
			return;
		}
		switch (k) {
		case SMTP_NONE:
			/* "needs more input": asked again with none, it must say so again
			 * (a daemon would wait for bytes that are already buffered) */
			if (CORE(smtp_next(d->s, &a)) != SMTP_NONE) {
				violation(d, "SMTP_NONE, then an action with no new input (stall)");
				d->dead = true;
			}
			return;
		case SMTP_WAIT:
			if (d->pending != SMTP_NONE && d->pending_answer.event != IT_BYTES &&
			    !d->pending_event_done) {
				/* the event comes while the request waits; the core must
				 * still wait (or say what it does instead) */
				d->pending_event_done = true;
				inject(d, d->pending_answer.event);
				continue;
			}
			if (d->pending != SMTP_NONE) {
				answer_pending(d);
				continue;
			}
			if (!d->closed) {
				violation(d, "SMTP_WAIT with no request to answer");
				d->dead = true;
			}
			return;
		case SMTP_REPLY:
			check_reply(d, &a);
			break;
		case SMTP_MAILCHECK: /* transcripts run without policy mail_check (test_smtp.c) */
			violation(d, "SMTP_MAILCHECK without mail_check");
			d->dead = true;
			return;
		case SMTP_STARTTLS:
			ans = take_answer(d, SMTP_STARTTLS);
			record_answer(d, "STARTTLS", &ans);
			d->pending = SMTP_STARTTLS;
			d->pending_answer = ans;
			d->pending_event_done = false;
			d->drop_turn = true;
			break;
		case SMTP_MSG_BEGIN:
			if (d->in_msg)
				violation(d, "MSG_BEGIN inside a message");
			ans = take_answer(d, SMTP_MSG_BEGIN);
			record_answer(d, "MSG_BEGIN", &ans);
			record_envelope(d);
			d->body.len = 0;
			d->in_msg = ans.ok;
			inject(d, ans.event); /* the event comes while the message opens */
			CORE_V(smtp_msg_begun(d->s, ans.ok));
			break;
		case SMTP_MSG_DATA:
			if (!d->in_msg)
				violation(d, "MSG_DATA outside a message");
			if (!a.text || a.len == 0)
				violation(d, "empty MSG_DATA");
			else
				buf_add(&d->body, a.text, a.len);
			break;
		case SMTP_MSG_END: {
			const struct smtp_envelope *e = smtp_envelope(d->s);
			if (!d->in_msg)
				violation(d, "MSG_END outside a message");
			ans = take_answer(d, SMTP_MSG_END);
			/* the committed text, however it was cut into MSG_DATA actions */
			lines_add(d->rec, "A", "MSG_DATA ", d->body.len ? 9 : 8);
			buf_add(&d->rec->v[d->rec->n - 1].text, d->body.p, d->body.len);
			record_answer(d, "MSG_END", &ans);
			snprintf(tmp, sizeof(tmp), "size=%llu hops=%u", (unsigned long long)e->size,
			         e->received_hops);
			record(d, "E", tmp, strlen(tmp));
			if (e->size != d->body.len)
				violation(d, "envelope size %llu, but %zu bytes were given",
				          (unsigned long long)e->size, d->body.len);
			d->in_msg = false;
			d->pending = SMTP_MSG_END;
			d->pending_answer = ans;
			d->pending_event_done = false;
			break;
		}
		case SMTP_MSG_ABORT:
			if (!d->in_msg)
				violation(d, "MSG_ABORT outside a message");
			d->in_msg = false;
			record(d, "A", "MSG_ABORT", 9);
			break;
		case SMTP_LOG:
			if (!a.text)
				violation(d, "SMTP_LOG without text");
			else if (d->logs) {
				buf_add(d->logs, a.text, a.len);
				buf_adds(d->logs, "\n");
			}
			break;
		case SMTP_COMMAND:
			if (!a.text)
				violation(d, "SMTP_COMMAND without text");
			else if (d->logs) {
				buf_adds(d->logs, "< ");
				buf_add(d->logs, a.text, a.len);
				buf_adds(d->logs, "\n");
			}
			break;
		case SMTP_RCPT_VERIFY: /* transcripts do not verify: every recipient exists */
			record(d, "A", "RCPT_VERIFY", 11);
			CORE_V(smtp_rcpt_verified(d->s, SMTP_VERIFY_OK, NULL));
			break;
		case SMTP_CLOSE:
			if (d->in_msg)
				violation(d, "SMTP_CLOSE with a message open and not aborted");
			record(d, "A", "CLOSE", 5);
			d->closed = true;
			break;
		}
	}
}

static void
feed(struct drive *d, const char *p, size_t n)
{
	while (n > 0 && !d->closed && !d->dead && !d->drop_turn) {
		size_t space = 0;
		if (smtp_input_paused(d->s)) {
			violation(d, "input paused although every action was taken");
			d->dead = true;
			return;
		}
		char *in = CORE(smtp_input_space(d->s, &space));
		if (space == 0 && d->oom_run) {
			/* no memory for the buffer: the next step ends the session */
			drain(d);
			if (!d->closed)
				violation(d, "no input space, and the session goes on");
			d->dead = true;
			return;
		}
		if (space == 0) {
			violation(d, "no input space");
			d->dead = true;
			return;
		}
		size_t k = n < space ? n : space;
		memcpy(in, p, k);
		CORE_V(smtp_input_commit(d->s, k));
		p += k;
		n -= k;
		drain(d);
	}
}

/* Runs the script with extra chunk boundaries at cuts[] (sorted offsets into the stream). */
static void
run_feed(const struct tx_script *sc, const struct setup *su, const size_t *cuts, size_t n_cuts,
         struct lines *rec, struct buf *logs, bool oom_run)
{
	struct drive d = {
	        .sc = sc, .rec = rec, .logs = logs, .pending = SMTP_NONE, .oom_run = oom_run};
	struct smtp_policy pol;
	policy_from_config(&pol, su->cfg, su->conn);
	pol.rate_ok = sc->rate >= 0 ? rate_cb : NULL;
	pol.rate_arg = &d;
	struct smtp_params prm = {
	        .policy = &pol, .client_ip = sc->client, .tls_available = sc->tls};
	size_t ci = 0;

	d.s = CORE(smtp_new(&prm));
	if (!d.s) {
		if (!oom_run)
			violation(&d, "smtp_new failed");
		return;
	}
	drain(&d);
	for (size_t i = 0; i < sc->n_items && !d.closed && !d.dead; i++) {
		const struct item *it = &sc->items[i];
		switch (it->kind) {
		case IT_BYTES: {
			size_t pos = it->off, end = it->off + it->len;
			d.drop_turn = false;
			while (pos < end && !d.closed && !d.dead && !d.drop_turn) {
				while (ci < n_cuts && cuts[ci] <= pos)
					ci++;
				size_t stop = ci < n_cuts && cuts[ci] < end ? cuts[ci] : end;
				feed(&d, sc->bytes.p + pos, stop - pos);
				pos = stop;
			}
			break;
		}
		default:
			inject(&d, it->kind);
			break;
		}
		drain(&d);
	}
	CORE_V(smtp_free(d.s));
	buf_release(&d.body);
}

static void
describe_cuts(FILE *fp, const char *what, const size_t *cuts, size_t n)
{
	fprintf(fp, "feed: %s", what);
	if (n && n < 20) {
		fprintf(fp, " (cut at");
		for (size_t i = 0; i < n; i++)
			fprintf(fp, " %zu", cuts[i]);
		fprintf(fp, ")");
	}
	fprintf(fp, "\n");
}

static bool
try_feed(const struct tx_script *sc, const struct setup *su, const size_t *cuts, size_t n_cuts,
         const char *what)
{
	struct lines rec = {0};
	struct buf logs = {0};
	bool whole = n_cuts == 0, ok;
	size_t i;

	run_feed(sc, su, cuts, n_cuts, &rec, whole ? &logs : NULL, false);
	for (i = 0; i < rec.n && i < sc->expect.n; i++)
		if (!line_eq(&rec.v[i], &sc->expect.v[i]))
			break;
	ok = i == rec.n && i == sc->expect.n;
	if (!ok) {
		fprintf(stderr, "\n%s: the record differs from line %d of the transcript\n",
		        sc->name, i < sc->expect.n ? sc->expect.v[i].src : -1);
		describe_cuts(stderr, what, cuts, n_cuts);
		for (size_t j = 0; j < sc->expect.n || j < rec.n; j++) {
			if (j < sc->expect.n && j < rec.n && line_eq(&rec.v[j], &sc->expect.v[j])) {
				print_line(stderr, "   ", &rec.v[j]);
				continue;
			}
			if (j < sc->expect.n)
				print_line(stderr, "-  ", &sc->expect.v[j]);
			if (j < rec.n)
				print_line(stderr, "+  ", &rec.v[j]);
		}
	}
	for (size_t j = 0; ok && whole && j < sc->logs.n; j++) {
		if (!logs.p || !strstr(logs.p, sc->logs.v[j].text.p)) {
			fprintf(stderr, "%s:%d: no log line holds \"%s\"; the log was:\n%s\n",
			        sc->name, sc->logs.v[j].src, sc->logs.v[j].text.p,
			        logs.p ? logs.p : "");
			ok = false;
		}
	}
	lines_release(&rec);
	buf_release(&logs);
	return ok;
}

/* The text of the message whose envelope is rec->v[i] (an E: line after A: MSG_BEGIN):
 * the A: MSG_DATA line that follows it before the next envelope, or NULL. */
static const struct line *
message_text(const struct lines *rec, size_t i)
{
	for (size_t j = i + 1; j < rec->n; j++) {
		const struct line *x = &rec->v[j];
		if (strcmp(x->tag, "A") != 0 || !x->text.p)
			continue;
		if (strncmp(x->text.p, "MSG_DATA", 8) == 0)
			return x;
		if (strncmp(x->text.p, "MSG_BEGIN", 9) == 0)
			return NULL;
	}
	return NULL;
}

static bool
is_envelope(const struct line *x)
{
	return strcmp(x->tag, "E") == 0 && x->text.p && strncmp(x->text.p, "helo=", 5) == 0;
}

/* A feed (whole turns) in which allocation number at of the core fails, and with
 * persistent every one after it.  What must hold: the action invariants (no "!" line in
 * the record: replies well formed, one answer per request, nothing after SMTP_CLOSE, an
 * open message aborted before the close, a committed size that is the text's...), an end
 * (no stall, no runaway), and every message committed with an envelope the script knows
 * has the script's text: running out of memory may refuse or end, never alter.  Leaks show under ASan.  *done when no
 * allocation failed (at is past the feed's last one): then the record is the script's. */
static bool
try_oom(const struct tx_script *sc, const struct setup *su, unsigned long at, bool persistent,
        bool *done)
{
	struct lines rec = {0};
	bool ok = true;
	size_t bad = 0;
	const char *why = NULL;

	allocfail_arm(at, persistent);
	run_feed(sc, su, NULL, 0, &rec, NULL, true);
	unsigned long failed = allocfail_failed();
	allocfail_disarm();
	*done = failed == 0;
	for (size_t i = 0; ok && i < rec.n; i++) {
		if (strcmp(rec.v[i].tag, "!") == 0) {
			ok = false, bad = i, why = "an invariant broke";
			break;
		}
		if (*done) {
			if (i >= sc->expect.n || !line_eq(&rec.v[i], &sc->expect.v[i]))
				ok = false, bad = i,
				why = "no allocation failed, yet the record differs";
			continue;
		}
		if (!is_envelope(&rec.v[i]))
			continue;
		/* a committed message: the script may send several with one envelope, and
		 * one of them must have its text */
		const struct line *mine = message_text(&rec, i);
		if (mine && (mine + 1 >= rec.v + rec.n || !mine[1].text.p ||
		             strncmp(mine[1].text.p, "MSG_END ok", 10) != 0))
			continue;
		bool known = false, same = false;
		for (size_t j = 0; mine && j < sc->expect.n; j++) {
			if (!is_envelope(&sc->expect.v[j]) || !line_eq(&rec.v[i], &sc->expect.v[j]))
				continue;
			const struct line *theirs = message_text(&sc->expect, j);
			known = known || theirs;
			same = same || (theirs && line_eq(mine, theirs));
		}
		if (known && !same)
			ok = false, bad = i, why = "a message's text differs from the script's";
	}
	if (ok && *done && rec.n != sc->expect.n)
		ok = false, bad = rec.n, why = "no allocation failed, yet the record differs";
	if (!ok) {
		fprintf(stderr,
		        "\n%s: with allocation %lu of the core failing%s: %s (line %zu of the "
		        "record):\n",
		        sc->name, at, persistent ? " and every one after it" : "", why, bad + 1);
		for (size_t j = 0; j < rec.n; j++)
			print_line(stderr, j == bad ? "!> " : "   ", &rec.v[j]);
	}
	lines_release(&rec);
	return ok;
}

/* try_oom() at every allocation of the core, once and from there on. */
static bool
try_oom_all(const struct tx_script *sc, const struct setup *su)
{
	bool done = false, ok = true;

	for (int persistent = 0; ok && persistent < 2; persistent++) {
		done = false;
		for (unsigned long at = 0; ok && !done; at++) {
			ok = try_oom(sc, su, at, persistent, &done);
			if (ok && at > MAX_ALLOC_FAILURES) {
				fprintf(stderr, "%s: over %d allocations in one feed\n", sc->name,
				        MAX_ALLOC_FAILURES);
				ok = false;
			}
		}
	}
	return ok;
}

static uint64_t
rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int
cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* k random cuts in (0, total), sorted, from seed. */
static size_t
random_cuts(size_t *cuts, size_t k, size_t total, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	if (total < 2)
		return 0;
	for (size_t i = 0; i < k; i++)
		cuts[i] = 1 + (size_t)(rnd(&x) % (total - 1));
	qsort(cuts, k, sizeof(*cuts), cmp_size);
	return k;
}

bool
tx_check(const struct tx_script *sc)
{
	struct setup su;
	size_t total = sc->bytes.len, *cuts;
	bool ok;
	char what[64];

	if (!sc)
		return false;
	if (setup(sc, &su) < 0)
		return false;
	cuts = calloc(total + 16, sizeof(*cuts));
	if (!cuts)
		abort();
	ok = try_feed(sc, &su, NULL, 0, "whole turns");
	if (ok && sc->split != SPLIT_WHOLE && total > 1) {
		for (size_t i = 0; i + 1 < total; i++)
			cuts[i] = i + 1;
		ok = try_feed(sc, &su, cuts, total - 1, "byte by byte");
	}
	if (sc->split == SPLIT_EVERY) {
		for (size_t p = 1; ok && p < total; p++) {
			snprintf(what, sizeof(what), "one cut at %zu", p);
			ok = try_feed(sc, &su, &p, 1, what);
		}
	}
	unsigned n_random = sc->split == SPLIT_EVERY   ? RANDOM_FEEDS
	                    : sc->split == SPLIT_WHOLE ? 0
	                                               : sc->samples;
	for (unsigned i = 0; ok && i < n_random; i++) {
		size_t n;
		if (sc->split == SPLIT_SAMPLED) {
			n = random_cuts(cuts, 1, total, 1000 + i);
			snprintf(what, sizeof(what), "one random cut (seed %u)", 1000 + i);
			ok = try_feed(sc, &su, cuts, n, what);
			if (!ok)
				break;
		}
		n = random_cuts(cuts, 2 + i % 15, total, i + 1);
		snprintf(what, sizeof(what), "random cuts (seed %u)", i + 1);
		ok = try_feed(sc, &su, cuts, n, what);
	}
	if (ok && allocfail_linked())
		ok = try_oom_all(sc, &su);
	free(cuts);
	config_unref(su.cfg);
	return ok;
}

/* ---- sessions driven by hand -------------------------------------------------------- */

struct tx_session *
tx_session_new(const char *setup_text)
{
	struct tx_session *t = calloc(1, sizeof(*t));
	struct setup su;

	if (!t)
		abort();
	if (!(t->sc = tx_parse("tx_session_new", setup_text)) || setup(t->sc, &su) < 0) {
		tx_free(t->sc);
		free(t);
		return NULL;
	}
	t->cfg = su.cfg;
	policy_from_config(&t->policy, su.cfg, su.conn);
	struct smtp_params prm = {
	        .policy = &t->policy, .client_ip = t->sc->client, .tls_available = t->sc->tls};
	if (!(t->smtp = smtp_new(&prm)))
		abort();
	return t;
}

void
tx_session_free(struct tx_session *t)
{
	if (!t)
		return;
	smtp_free(t->smtp);
	config_unref(t->cfg);
	tx_free(t->sc);
	free(t);
}
