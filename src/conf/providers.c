#include "conf/providers.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sidefile.h"
#include "base/vec.h"

#ifndef MXGATE_DATADIR
#define MXGATE_DATADIR "/usr/local/share/mxgate"
#endif

#define NAME_MAX_LEN 64

const char *
providers_dir(void)
{
	static char dir[PATH_MAX];
	const char *env = getenv("MXGATE_PROVIDERS_DIR");
	char exe[PATH_MAX - 32];
	struct stat st;
	ssize_t n;

	if (env && *env)
		return env;
	if (dir[0])
		return dir;
	/* running from build/<variant>/mxgate in the source tree */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(dir, sizeof(dir), "%s/../../providers", exe);
			if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
				return dir;
		}
	}
	snprintf(dir, sizeof(dir), "%s/providers", MXGATE_DATADIR);
	return dir;
}

static bool
valid_name(const char *name, size_t len)
{
	if (len == 0 || len > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

int
providers_find(const char *name, char *path, size_t size)
{
	struct stat st;

	if (!valid_name(name, strlen(name)))
		return -1;
	if ((size_t)snprintf(path, size, "%s/%s.conf", providers_dir(), name) >= size)
		return -1;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return -1;
	return 0;
}

/* ---- reading one preset ---------------------------------------------------------------- */

static const char *const confidences[] = {"high",       "medium-high", "medium",
                                          "medium-low", "low",         "unverified"};

struct loaded_range {
	struct range r;
	int line;
};

struct reader {
	const char *path;
	struct provider *p;
	struct loaded_range *lr;
	size_t n, cap;
	size_t sources_cap;
	char *err;
	size_t errlen;
	bool failed;
	bool in_header; /* no body line seen yet */
};

static void fail(struct reader *R, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
fail(struct reader *R, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (R->failed)
		return;
	R->failed = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(R->err, R->errlen, "%s:%d: %s", R->path, line, msg);
	else
		snprintf(R->err, R->errlen, "%s: %s", R->path, msg);
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		e--;
	*e = '\0';
	return s;
}

static bool
valid_date(const char *s)
{
	static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, m, d;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1990 || m < 1 || m > 12 || d < 1 || d > days[m - 1])
		return false;
	if (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return false;
	return true;
}

static bool
valid_source(const char *s)
{
	const char *rest;

	if (strncmp(s, "https://", 8) == 0)
		rest = s + 8;
	else if (strncmp(s, "http://", 7) == 0)
		rest = s + 7;
	else if (strncmp(s, "dns:", 4) == 0)
		rest = s + 4;
	else
		return false;
	if (!*rest || *rest == '/' || *rest == '.')
		return false;
	for (const char *q = rest; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f)
			return false;
	return true;
}

/* The member for a hostname-suffixes or certificate-names key, or NULL. */
static char **
proof_slot(struct provider *p, const char *key)
{
	static const struct {
		const char *prefix;
		size_t off;
	} kinds[] = {{"hostname-suffixes", offsetof(struct provider, hostnames)},
	             {"certificate-names", offsetof(struct provider, certificates)}};

	for (size_t i = 0; i < 2; i++) {
		size_t pl = strlen(kinds[i].prefix);
		struct provider_proof *pr = (void *)((char *)p + kinds[i].off);
		if (strncmp(key, kinds[i].prefix, pl) != 0)
			continue;
		if (!key[pl])
			return &pr->text;
		if (strcmp(key + pl, "-source") == 0)
			return &pr->source;
		if (strcmp(key + pl, "-date") == 0)
			return &pr->date;
		if (strcmp(key + pl, "-confidence") == 0)
			return &pr->confidence;
	}
	return NULL;
}

/* Splits a proof's text into names and checks its companions (see providers.h). */
static void
check_proof(struct reader *R, struct provider_proof *pr, const char *key)
{
	char *copy, *save = NULL;
	bool known = false;

	if (!pr->text) {
		if (pr->source || pr->date || pr->confidence)
			fail(R, 0, "%s-source, -date or -confidence without '# %s:'", key, key);
		return;
	}
	if (strcmp(pr->text, "none documented") == 0) {
		if (pr->source || pr->date || pr->confidence)
			fail(R, 0, "%s: none documented takes no -source, -date or -confidence",
			     key);
		return;
	}
	if (!pr->source || !pr->date || !pr->confidence) {
		fail(R, 0, "%s needs '# %s-source:', '-date:' and '-confidence:' lines", key, key);
		return;
	}
	if (!valid_source(pr->source))
		fail(R, 0, "%s-source '%s' is not a http(s) URL or dns:NAME", key, pr->source);
	if (strcmp(pr->date, "undated") != 0 && !valid_date(pr->date))
		fail(R, 0, "%s-date '%s' is not a date YYYY-MM-DD or 'undated'", key, pr->date);
	for (size_t i = 0; i < sizeof(confidences) / sizeof(confidences[0]); i++)
		known |= strcmp(pr->confidence, confidences[i]) == 0;
	if (!known)
		fail(R, 0, "%s-confidence '%s' is not a confidence", key, pr->confidence);
	if (!(copy = strdup(pr->text))) {
		fail(R, 0, "out of memory");
		return;
	}
	for (char *w = strtok_r(copy, ", ", &save); w && !R->failed;
	     w = strtok_r(NULL, ", ", &save)) {
		char **grown = realloc(pr->names, (pr->n_names + 1) * sizeof(char *));
		if (!grown || !(grown[pr->n_names] = strdup(w[0] == '.' ? w + 1 : w))) {
			if (grown)
				pr->names = grown;
			fail(R, 0, "out of memory");
			break;
		}
		pr->names = grown;
		for (char *q = grown[pr->n_names]; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		pr->n_names++;
	}
	free(copy);
}

/* Stores one header value; returns false when the line is not a header line. */
static bool
header_line(struct reader *R, char *line, int lineno)
{
	struct provider *p = R->p;
	char *key, *colon, *value, **slot = NULL;

	if (line[0] != '#' || line[1] != ' ')
		return false;
	key = line + 2;
	colon = strchr(key, ':');
	if (!colon || colon == key || colon[1] != ' ')
		return false;
	for (char *q = key; q < colon; q++)
		if (!((*q >= 'a' && *q <= 'z') || *q == '-'))
			return false;
	*colon = '\0';
	value = trim(colon + 1);
	if (!*value) {
		fail(R, lineno, "header line '%s' has no value", key);
		return true;
	}
	if (strcmp(key, "source") == 0) {
		if (!valid_source(value)) {
			fail(R, lineno, "source '%s' is not a http(s) URL or dns:NAME", value);
			return true;
		}
		if (VEC_RESERVE(p->sources, R->sources_cap, p->n_sources + 1) < 0) {
			fail(R, 0, "out of memory");
			return true;
		}
		if (!(p->sources[p->n_sources] = strdup(value))) {
			fail(R, 0, "out of memory");
			return true;
		}
		p->n_sources++;
		return true;
	}
	if (strcmp(key, "provider") == 0)
		slot = &p->provider;
	else if (strcmp(key, "region") == 0)
		slot = &p->region;
	else if (strcmp(key, "source-date") == 0)
		slot = &p->source_date;
	else if (strcmp(key, "confidence") == 0)
		slot = &p->confidence;
	else if (strcmp(key, "status") == 0)
		slot = &p->status;
	else if (strcmp(key, "update") == 0)
		slot = &p->update;
	else
		slot = proof_slot(p, key);
	if (!slot) {
		fail(R, lineno,
		     "unknown header key '%s' (provider, region, source, source-date, "
		     "confidence, status, update, hostname-suffixes, certificate-names and their "
		     "-source, -date, -confidence)",
		     key);
		return true;
	}
	if (*slot) {
		fail(R, lineno, "header key '%s' is given twice", key);
		return true;
	}
	if (!(*slot = strdup(value)))
		fail(R, 0, "out of memory");
	return true;
}

static void
body_line(struct reader *R, char *line, int lineno)
{
	char err[256], *s, *hash;
	struct range r;
	unsigned flags;

	if ((hash = strchr(line, '#')))
		*hash = '\0';
	s = trim(line);
	if (!*s)
		return;
	if (range_parse(s, &r, &flags, err, sizeof(err)) < 0) {
		fail(R, lineno, "%s", err);
		return;
	}
	if (flags & RANGE_HOST_BITS) {
		char canon[2 * IPADDR_STRLEN + 2];
		range_format(&r, canon, sizeof(canon));
		fail(R, lineno, "'%s' has host bits set; a preset must be exact (write %s)", s,
		     canon);
		return;
	}
	if (flags & RANGE_ZERO_SINGLE) {
		fail(R, lineno, "'%s' is the unspecified address, not a sender", s);
		return;
	}
	if (VEC_RESERVE(R->lr, R->cap, R->n + 1) < 0) {
		fail(R, 0, "out of memory");
		return;
	}
	R->lr[R->n++] = (struct loaded_range){.r = r, .line = lineno};
}

static int
preset_line_cb(char *line, size_t len, int lineno, void *arg)
{
	struct reader *R = arg;

	(void)len;
	line[strcspn(line, "\r")] = '\0';
	if (!(R->in_header && header_line(R, line, lineno))) {
		R->in_header = false;
		body_line(R, line, lineno);
	}
	return R->failed ? -1 : 0;
}

static int
cmp_loaded(const void *a, const void *b)
{
	const struct loaded_range *x = a, *y = b;

	if (x->r.family != y->r.family)
		return x->r.family < y->r.family ? -1 : 1;
	if (x->r.lo != y->r.lo)
		return x->r.lo < y->r.lo ? -1 : 1;
	return x->line - y->line;
}

static void
check_overlaps(struct reader *R)
{
	struct loaded_range *s;
	size_t bytes;

	if (R->n < 2)
		return;
	if (vec_bytes(R->n, sizeof(*s), &bytes) < 0 || !(s = malloc(bytes))) {
		fail(R, 0, "out of memory");
		return;
	}
	memcpy(s, R->lr, bytes);
	qsort(s, R->n, sizeof(*s), cmp_loaded);
	for (size_t i = 1; i < R->n; i++) {
		if (s[i].r.family == s[i - 1].r.family && s[i].r.lo <= s[i - 1].r.hi) {
			char a[2 * IPADDR_STRLEN + 2], b[2 * IPADDR_STRLEN + 2];
			const struct loaded_range *first =
			        s[i - 1].line < s[i].line ? &s[i - 1] : &s[i];
			const struct loaded_range *second = first == &s[i] ? &s[i - 1] : &s[i];
			range_format(&first->r, a, sizeof(a));
			range_format(&second->r, b, sizeof(b));
			fail(R, second->line, "%s overlaps %s of line %d", b, a, first->line);
			break;
		}
	}
	free(s);
}

static void
check_header(struct reader *R)
{
	struct provider *p = R->p;
	bool known = false;

	if (!p->provider)
		fail(R, 0, "the header has no '# provider:' line");
	else if (!p->region)
		fail(R, 0, "the header has no '# region:' line");
	else if (!p->n_sources)
		fail(R, 0, "the header has no '# source:' line");
	else if (!p->source_date)
		fail(R, 0, "the header has no '# source-date:' line");
	else if (!p->confidence)
		fail(R, 0, "the header has no '# confidence:' line");
	else if (!p->status)
		fail(R, 0, "the header has no '# status:' line");
	if (R->failed)
		return;
	if (strcmp(p->source_date, "undated") != 0 && !valid_date(p->source_date))
		fail(R, 0, "source-date '%s' is not a date YYYY-MM-DD or 'undated'",
		     p->source_date);
	for (size_t i = 0; i < sizeof(confidences) / sizeof(confidences[0]); i++)
		known |= strcmp(p->confidence, confidences[i]) == 0;
	if (!known)
		fail(R, 0,
		     "confidence '%s' is not one of high, medium-high, medium, medium-low, low, "
		     "unverified",
		     p->confidence);
	check_proof(R, &p->hostnames, "hostname-suffixes");
	check_proof(R, &p->certificates, "certificate-names");
	if (R->failed)
		return;
	if (strcmp(p->status, "ready") != 0 && strcmp(p->status, "unverified") != 0)
		fail(R, 0, "status '%s' is not ready or unverified", p->status);
	else if (strcmp(p->status, "ready") == 0 && strcmp(p->confidence, "high") != 0 &&
	         strcmp(p->confidence, "medium-high") != 0)
		fail(R, 0, "status ready needs confidence high or medium-high, not %s",
		     p->confidence);
}

struct provider *
providers_load(const char *path, char *err, size_t errlen)
{
	struct reader R = {.path = path, .err = err, .errlen = errlen, .in_header = true};
	const struct sidefile_limits lim = {.max_size = SIDEFILE_DEFAULT_MAX_SIZE,
	                                    .max_line = SIDEFILE_DEFAULT_MAX_LINE};
	struct sidefile_error serr;
	const char *base = strrchr(path, '/');
	size_t blen;

	base = base ? base + 1 : path;
	blen = strlen(base);
	if (blen > 5 && strcmp(base + blen - 5, ".conf") == 0)
		blen -= 5;
	if (!(R.p = calloc(1, sizeof(*R.p))) || !(R.p->path = strdup(path)) ||
	    !(R.p->name = strndup(base, blen))) {
		snprintf(err, errlen, "%s: out of memory", path);
		providers_free(R.p);
		return NULL;
	}
	/* the shared reader: a regular file, its size and lines bounded */
	if (sidefile_read(path, &lim, preset_line_cb, &R, &serr) < 0 && serr.text[0])
		fail(&R, serr.line, "%s", serr.text);
	if (!R.failed)
		check_header(&R);
	if (!R.failed && R.n == 0)
		fail(&R, 0, "no range");
	if (!R.failed)
		check_overlaps(&R);
	if (!R.failed && !(R.p->ranges = calloc(R.n, sizeof(*R.p->ranges))))
		fail(&R, 0, "out of memory");
	if (R.failed) {
		free(R.lr);
		providers_free(R.p);
		return NULL;
	}
	for (size_t i = 0; i < R.n; i++)
		R.p->ranges[i] = R.lr[i].r;
	R.p->n_ranges = R.n;
	free(R.lr);
	return R.p;
}

void
providers_free(struct provider *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->path);
	free(p->provider);
	free(p->region);
	free(p->source_date);
	free(p->confidence);
	free(p->status);
	free(p->update);
	for (size_t i = 0; i < p->n_sources; i++)
		free(p->sources[i]);
	free(p->sources);
	free(p->ranges);
	struct provider_proof *proofs[] = {&p->hostnames, &p->certificates};
	for (size_t i = 0; i < 2; i++) {
		for (size_t j = 0; j < proofs[i]->n_names; j++)
			free(proofs[i]->names[j]);
		free(proofs[i]->names);
		free(proofs[i]->text);
		free(proofs[i]->source);
		free(proofs[i]->date);
		free(proofs[i]->confidence);
	}
	free(p);
}

/* ---- the directory ---------------------------------------------------------------------- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
providers_names(char ***names)
{
	char **v = NULL, path[PATH_MAX];
	size_t n = 0, cap = 0;
	struct dirent *de;
	struct stat st;
	DIR *dir;
	int saved;

	*names = NULL;
	if (!(dir = opendir(providers_dir())))
		return -1;
	while ((errno = 0, de = readdir(dir)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len <= 5 || strcmp(de->d_name + len - 5, ".conf") != 0 ||
		    !valid_name(de->d_name, len - 5))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", providers_dir(), de->d_name) >=
		            sizeof(path) ||
		    stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (VEC_RESERVE(v, cap, n + 1) < 0)
			goto fail;
		if (!(v[n] = strndup(de->d_name, len - 5)))
			goto fail;
		n++;
	}
	if (errno)
		goto fail;
	closedir(dir);
	if (n)
		qsort(v, n, sizeof(*v), cmp_str);
	*names = v;
	return (int)n;
fail:
	saved = errno ? errno : ENOMEM;
	closedir(dir);
	providers_names_free(v, n);
	errno = saved;
	return -1;
}

void
providers_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* ---- did you mean ------------------------------------------------------------------------ */

/* Levenshtein distance of a and b, both at most NAME_MAX_LEN + 1 bytes (longer: a large
 * number). */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[NAME_MAX_LEN + 2];

	if (la > NAME_MAX_LEN + 1 || lb > NAME_MAX_LEN + 1)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* Appends "'@NAME'" to out, joined with ", " (the last with " or "). */
static void
put_suggestion(char *out, size_t size, size_t *len, const char *name, size_t i, size_t n)
{
	const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
	if (*len < size)
		*len += (size_t)snprintf(out + *len, size - *len, "%s'@%s'", sep, name);
}

int
providers_suggest(const char *word, char *out, size_t size)
{
	char w[NAME_MAX_LEN + 2];
	char **names;
	size_t wl, len = 0, hits = 0, best = SIZE_MAX;
	int n;

	if (size)
		out[0] = '\0';
	if (word[0] == '@')
		word++;
	wl = strlen(word);
	if (wl == 0 || wl > NAME_MAX_LEN + 1 || (n = providers_names(&names)) <= 0)
		return -1;
	for (size_t i = 0; i <= wl; i++)
		w[i] = (char)(word[i] >= 'A' && word[i] <= 'Z' ? word[i] - 'A' + 'a' : word[i]);
	/* the presets whose name starts with the word ("proofpoint"), else the nearest ones
	 * within a third of the word's length (typos) */
	for (int i = 0; i < n; i++)
		hits += strncmp(names[i], w, wl) == 0 && names[i][wl] == '-';
	if (hits) {
		size_t k = 0;
		for (int i = 0; i < n; i++)
			if (strncmp(names[i], w, wl) == 0 && names[i][wl] == '-')
				put_suggestion(out, size, &len, names[i], k++, hits);
	} else {
		for (int i = 0; i < n; i++) {
			size_t d = edit_distance(w, names[i]);
			if (d < best)
				best = d;
		}
		if (best <= (wl < 6 ? 1 : wl / 3)) {
			for (int i = 0; i < n; i++)
				hits += edit_distance(w, names[i]) == best;
			size_t k = 0;
			for (int i = 0; i < n; i++)
				if (edit_distance(w, names[i]) == best)
					put_suggestion(out, size, &len, names[i], k++, hits);
		}
	}
	providers_names_free(names, (size_t)n);
	return hits ? 0 : -1;
}
