#include "conf/parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/vec.h"
#include "conf/lexer.h"

/* Sections nest at most this deep (ours nest one deep); deeper input is refused rather than
 * followed by recursion on the stack. */
#define PARSE_MAX_DEPTH 8

struct parser {
	struct lexer lx;
	struct token tok;  /* the current token */
	struct token next; /* one token of lookahead, when have_next */
	char *saved;       /* the current token's text, kept across a lookahead */
	bool have_next;
	const struct conf_section_syntax *sections;
	size_t n_sections;
	struct conf_syntax_error *err;
	bool failed;
};

static void fail(struct parser *P, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
fail(struct parser *P, int line, const char *fmt, ...)
{
	va_list ap;

	if (P->failed)
		return;
	P->failed = true;
	P->err->line = line;
	va_start(ap, fmt);
	vsnprintf(P->err->text, sizeof(P->err->text), fmt, ap);
	va_end(ap);
}

static void
fail_nomem(struct parser *P)
{
	fail(P, 0, "out of memory while reading the configuration");
}

/* Moves to the next token; a lexer error becomes the parse error. */
static void
advance(struct parser *P)
{
	if (P->have_next) {
		P->tok = P->next;
		P->have_next = false;
	} else {
		lexer_next(&P->lx, &P->tok);
	}
	if (P->tok.kind == TOK_ERROR)
		fail(P, P->tok.line, "syntax error: %s", P->tok.text);
}

static bool
is_text(const struct token *t)
{
	return t->kind == TOK_WORD || t->kind == TOK_STRING;
}

static char *
dup_token(struct parser *P, const struct token *t)
{
	char *s = malloc(t->len + 1);

	if (!s) {
		fail_nomem(P);
		return NULL;
	}
	memcpy(s, t->text, t->len);
	s[t->len] = '\0';
	return s;
}

/* Peeks at the token after the current one.  The current token's text lives in the
 * lexer's buffer, which the peek overwrites: it is copied to P->saved first. */
static const struct token *
peek(struct parser *P)
{
	if (!P->have_next) {
		free(P->saved);
		if (!(P->saved = dup_token(P, &P->tok)))
			return &P->tok;
		P->tok.text = P->saved;
		lexer_next(&P->lx, &P->next);
		P->have_next = true;
	}
	return &P->next;
}

static const struct conf_section_syntax *
known_section(const struct parser *P, const char *name)
{
	for (size_t i = 0; i < P->n_sections; i++)
		if (strcmp(P->sections[i].name, name) == 0)
			return &P->sections[i];
	return NULL;
}

static struct conf_node *
add_child(struct parser *P, struct conf_node *parent, enum conf_node_kind kind)
{
	struct conf_node *n;

	if (VEC_RESERVE(parent->children, parent->children_cap, parent->n_children + 1) < 0) {
		fail_nomem(P);
		return NULL;
	}
	n = &parent->children[parent->n_children++];
	*n = (struct conf_node){.kind = kind, .line = P->tok.line};
	if (!(n->name = dup_token(P, &P->tok)))
		return NULL;
	return n;
}

static void
add_value(struct parser *P, struct conf_node *n)
{
	char *text;

	if (VEC_RESERVE(n->values, n->values_cap, n->n_values + 1) < 0 ||
	    !(text = dup_token(P, &P->tok))) {
		fail_nomem(P);
		return;
	}
	n->values[n->n_values++] = (struct conf_value){text, P->tok.line};
}

/* "max-message-size = 36 MB" or "drain-timeout = 5 min": a word after the value on its line
 * that starts no setting of its own would be read as a section and swallow the next one.
 * Another setting on the same line ("a = 1 b = 2") is still allowed. */
static void
stray_after_value(struct parser *P, const struct conf_node *n, int line)
{
	const struct token *after;
	char word[64];

	if (P->failed || !is_text(&P->tok) || P->tok.line != line)
		return;
	snprintf(word, sizeof(word), "%.*s", (int)(P->tok.len < 60 ? P->tok.len : 60), P->tok.text);
	after = peek(P);
	if (P->failed || after->kind == TOK_EQUALS || after->kind == TOK_PLUS_EQUALS)
		return;
	fail(P, line,
	     "syntax error: '%s' follows the value of '%s' on its line; a value with blanks is "
	     "written in quotes: %s = \"%s %s\"",
	     word, n->name, n->name, n->values[n->n_values - 1].text, word);
}

/* After '=' or '+=': one value or a { list }.  Leaves the token after it current. */
static void
parse_value(struct parser *P, struct conf_node *n)
{
	int open = P->tok.line;

	if (is_text(&P->tok)) {
		add_value(P, n);
		advance(P);
		stray_after_value(P, n, open);
		return;
	}
	if (P->tok.kind != TOK_LBRACE) {
		if (!P->failed)
			fail(P, P->tok.line, "syntax error: %s after '%s %s'; write %s %s VALUE",
			     lexer_kind_name(P->tok.kind), n->name, n->append ? "+=" : "=", n->name,
			     n->append ? "+=" : "=");
		return;
	}
	n->list = true;
	advance(P);
	while (!P->failed && P->tok.kind != TOK_RBRACE) {
		if (P->tok.kind == TOK_EOF) {
			fail(P, open, "syntax error: the '{' on this line is never closed");
			return;
		}
		if (!is_text(&P->tok)) {
			fail(P, P->tok.line,
			     "syntax error: %s in the list of '%s'; write { \"a\", \"b\" }",
			     lexer_kind_name(P->tok.kind), n->name);
			return;
		}
		add_value(P, n);
		advance(P);
		if (P->tok.kind == TOK_COMMA)
			advance(P);
		else if (!P->failed && P->tok.kind != TOK_RBRACE && P->tok.kind != TOK_EOF)
			fail(P, P->tok.line,
			     "syntax error: %s in the list of '%s'; separate the values with ','",
			     lexer_kind_name(P->tok.kind), n->name);
	}
	if (!P->failed)
		advance(P);
}

static void parse_body(struct parser *P, struct conf_node *sec, int depth);

/* NAME [TITLE] '{' ... '}' with the current token on NAME. */
static void
parse_section(struct parser *P, struct conf_node *parent, int depth)
{
	const struct conf_section_syntax *syn = known_section(P, P->tok.text);
	struct conf_node *sec = add_child(P, parent, CONF_SECTION);
	int open;

	if (!sec)
		return;
	advance(P);
	if (is_text(&P->tok)) {
		if (syn && !syn->titled) {
			fail(P, P->tok.line, "syntax error: %s takes no name: write %s { ... }",
			     sec->name, sec->name);
			return;
		}
		if (!(sec->title = dup_token(P, &P->tok)))
			return;
		advance(P);
	} else if (syn && syn->titled && P->tok.kind == TOK_LBRACE) {
		fail(P, sec->line, "syntax error: a %s needs a name: %s \"NAME\" { ... }",
		     sec->name, sec->name);
		return;
	}
	if (P->tok.kind != TOK_LBRACE && !syn) {
		/* NAME TEXT with no '{': an assignment that lacks its '=' */
		fail(P, sec->line, "syntax error: write %s = VALUE", sec->name);
		return;
	}
	if (P->tok.kind != TOK_LBRACE) {
		fail(P, P->tok.line, "syntax error: write %s%s { ... }", sec->name,
		     syn->titled ? " \"NAME\"" : "");
		return;
	}
	if (depth >= PARSE_MAX_DEPTH) {
		fail(P, P->tok.line, "syntax error: sections nested more than %d deep",
		     PARSE_MAX_DEPTH);
		return;
	}
	open = P->tok.line;
	advance(P);
	parse_body(P, sec, depth + 1);
	if (P->failed)
		return;
	if (P->tok.kind != TOK_RBRACE) {
		fail(P, open, "syntax error: the '{' on this line is never closed");
		return;
	}
	advance(P);
}

/* Statements until '}' or the end of the file, which the caller judges. */
static void
parse_body(struct parser *P, struct conf_node *sec, int depth)
{
	while (!P->failed && P->tok.kind != TOK_EOF && P->tok.kind != TOK_RBRACE) {
		const struct token *after;
		if (P->tok.kind == TOK_SEMICOLON) {
			advance(P);
			continue;
		}
		if (!is_text(&P->tok)) {
			fail(P, P->tok.line, "syntax error: %s where a setting should start",
			     lexer_kind_name(P->tok.kind));
			return;
		}
		if (known_section(P, P->tok.text)) {
			parse_section(P, sec, depth);
			continue;
		}
		after = peek(P);
		if (P->failed)
			return;
		if (after->kind == TOK_EQUALS || after->kind == TOK_PLUS_EQUALS) {
			struct conf_node *n = add_child(P, sec, CONF_ASSIGN);
			if (!n)
				return;
			n->append = after->kind == TOK_PLUS_EQUALS;
			advance(P);
			advance(P);
			parse_value(P, n);
		} else if (after->kind == TOK_LBRACE || is_text(after)) {
			parse_section(P, sec, depth);
		} else {
			fail(P, P->tok.line, "syntax error: write %s = VALUE", P->tok.text);
		}
	}
}

static void
free_children(struct conf_node *n)
{
	for (size_t i = 0; i < n->n_children; i++)
		free_children(&n->children[i]);
	for (size_t i = 0; i < n->n_values; i++)
		free(n->values[i].text);
	free(n->values);
	free(n->children);
	free(n->name);
	free(n->title);
}

void
conf_node_free(struct conf_node *root)
{
	if (root) {
		free_children(root);
		free(root);
	}
}

struct conf_node *
conf_parse(const char *text, size_t len, const struct conf_section_syntax *sections,
           size_t n_sections, struct conf_syntax_error *err)
{
	struct parser P = {.sections = sections, .n_sections = n_sections, .err = err};
	struct conf_node *root = calloc(1, sizeof(*root));

	err->line = 0;
	err->text[0] = '\0';
	if (!root || !(root->name = strdup(""))) {
		free(root);
		fail_nomem(&P);
		return NULL;
	}
	root->kind = CONF_SECTION;
	root->line = 1;
	lexer_init(&P.lx, text, len);
	advance(&P);
	parse_body(&P, root, 0);
	if (!P.failed && P.tok.kind == TOK_RBRACE)
		fail(&P, P.tok.line, "syntax error: '}' with no '{' to close");
	free(P.saved);
	if (P.failed) {
		conf_node_free(root);
		return NULL;
	}
	return root;
}
