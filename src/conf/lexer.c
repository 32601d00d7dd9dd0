#include "conf/lexer.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void
lexer_init(struct lexer *lx, const char *text, size_t len)
{
	lx->p = text;
	lx->end = text + len;
	lx->line = 1;
	lx->buf[0] = '\0';
	lx->err[0] = '\0';
	lx->stop = TOK_EOF;
	lx->stop_line = 0;
}

const char *
lexer_kind_name(enum token_kind k)
{
	static const char *const names[] = {[TOK_EOF] = "the end of the file",
	                                    [TOK_WORD] = "a word",
	                                    [TOK_STRING] = "a quoted string",
	                                    [TOK_LBRACE] = "'{'",
	                                    [TOK_RBRACE] = "'}'",
	                                    [TOK_EQUALS] = "'='",
	                                    [TOK_PLUS_EQUALS] = "'+='",
	                                    [TOK_COMMA] = "','",
	                                    [TOK_SEMICOLON] = "';'",
	                                    [TOK_LPAREN] = "'('",
	                                    [TOK_RPAREN] = "')'",
	                                    [TOK_ERROR] = "an error"};

	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static void
stop(struct lexer *lx, struct token *t, enum token_kind k, int line)
{
	lx->stop = k;
	lx->stop_line = line;
	lx->p = lx->end;
	t->kind = k;
	t->line = line;
	t->text = k == TOK_ERROR ? lx->err : "";
	t->len = strlen(t->text);
}

static bool
is_word_byte(const struct lexer *lx, const char *p)
{
	if (p[0] == '/' && p + 1 < lx->end && (p[1] == '/' || p[1] == '*'))
		return false;
	return !strchr(" \t\r\n#\"'={}()+,;", *p) && *p != '\0';
}

/* Skips blanks, newlines and comments.  Returns false (with lx->err) for a comment that
 * never ends, reported at the line it opened. */
static bool
skip_space(struct lexer *lx, int *errline)
{
	while (lx->p < lx->end) {
		const char *p = lx->p;
		if (*p == '\n') {
			lx->line++;
			lx->p++;
		} else if (*p == ' ' || *p == '\t' || *p == '\r') {
			lx->p++;
		} else if (*p == '#' || (*p == '/' && p + 1 < lx->end && p[1] == '/')) {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
		} else if (*p == '/' && p + 1 < lx->end && p[1] == '*') {
			int open = lx->line;
			for (lx->p += 2;
			     lx->p + 1 < lx->end && !(lx->p[0] == '*' && lx->p[1] == '/'); lx->p++)
				lx->line += *lx->p == '\n';
			if (lx->p + 1 >= lx->end) {
				snprintf(lx->err, sizeof(lx->err),
				         "the comment opened on this line is never closed ('*/')");
				*errline = open;
				return false;
			}
			lx->p += 2;
		} else {
			break;
		}
	}
	return true;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The byte an escape in a "..." string stands for; advances *pp past it. */
static char
unescape(struct lexer *lx, const char **pp)
{
	static const char from[] = "ntrabfve", to[] = "\n\t\r\a\b\f\v\033";
	const char *p = *pp;
	const char *hit;
	unsigned v = 0;
	int n = 0;

	if (*p == 'x' && p + 1 < lx->end && hex_value(p[1]) >= 0) {
		for (p++; n < 2 && p < lx->end && hex_value(*p) >= 0; p++, n++)
			v = v * 16 + (unsigned)hex_value(*p);
		*pp = p;
		return (char)v;
	}
	if (*p >= '0' && *p <= '7') {
		for (; n < 3 && p < lx->end && *p >= '0' && *p <= '7'; p++, n++)
			v = v * 8 + (unsigned)(*p - '0');
		*pp = p;
		return (char)(v & 0xff);
	}
	*pp = p + 1;
	hit = *p ? strchr(from, *p) : NULL;
	return hit ? to[hit - from] : *p;
}

/* A quoted string; lx->p is on the opening quote. */
static void
quoted(struct lexer *lx, struct token *t)
{
	char q = *lx->p++;
	int open = lx->line;
	size_t n = 0;

	while (lx->p < lx->end && *lx->p != q) {
		char c = *lx->p++;
		if (c == '\n') {
			lx->line++;
		} else if (c == '\\' && lx->p < lx->end) {
			if (*lx->p == '\n') {
				lx->line++;
				lx->p++;
				continue;
			}
			if (q == '"') {
				c = unescape(lx, &lx->p);
			} else if (*lx->p == '\\' || *lx->p == '\'') {
				c = *lx->p++;
			}
		}
		if (n == LEXER_TOKEN_MAX) {
			snprintf(lx->err, sizeof(lx->err),
			         "the string opened on this line is longer than %d bytes",
			         LEXER_TOKEN_MAX);
			stop(lx, t, TOK_ERROR, open);
			return;
		}
		lx->buf[n++] = c;
	}
	if (lx->p >= lx->end) {
		snprintf(lx->err, sizeof(lx->err),
		         "the string opened on this line is never closed (%c)", q);
		stop(lx, t, TOK_ERROR, open);
		return;
	}
	lx->p++;
	lx->buf[n] = '\0';
	*t = (struct token){TOK_STRING, open, lx->buf, n};
}

void
lexer_next(struct lexer *lx, struct token *t)
{
	static const char punct[] = "{}=,;()";
	static const enum token_kind punct_kind[] = {TOK_LBRACE, TOK_RBRACE,    TOK_EQUALS,
	                                             TOK_COMMA,  TOK_SEMICOLON, TOK_LPAREN,
	                                             TOK_RPAREN};
	int errline = 0;
	const char *hit;
	size_t n = 0;

	if (lx->stop_line || lx->stop == TOK_ERROR) {
		stop(lx, t, lx->stop, lx->stop_line);
		return;
	}
	if (!skip_space(lx, &errline)) {
		stop(lx, t, TOK_ERROR, errline);
		return;
	}
	if (lx->p >= lx->end) {
		stop(lx, t, TOK_EOF, lx->line);
		return;
	}
	t->line = lx->line;
	if (*lx->p == '"' || *lx->p == '\'') {
		quoted(lx, t);
		return;
	}
	if (*lx->p == '+' && lx->p + 1 < lx->end && lx->p[1] == '=') {
		lx->p += 2;
		*t = (struct token){TOK_PLUS_EQUALS, lx->line, "+=", 2};
		return;
	}
	if (*lx->p != '\0' && (hit = strchr(punct, *lx->p))) {
		lx->p++;
		*t = (struct token){punct_kind[hit - punct], lx->line, lx->p - 1, 1};
		lx->buf[0] = lx->p[-1];
		lx->buf[1] = '\0';
		t->text = lx->buf;
		return;
	}
	if (!is_word_byte(lx, lx->p)) {
		snprintf(lx->err, sizeof(lx->err), "unexpected %s",
		         *lx->p == '+' ? "'+' (write '+=')"
		         : *lx->p      ? "character"
		                       : "NUL byte");
		stop(lx, t, TOK_ERROR, lx->line);
		return;
	}
	while (lx->p < lx->end && is_word_byte(lx, lx->p)) {
		if (n == LEXER_TOKEN_MAX) {
			snprintf(lx->err, sizeof(lx->err), "a word longer than %d bytes",
			         LEXER_TOKEN_MAX);
			stop(lx, t, TOK_ERROR, t->line);
			return;
		}
		lx->buf[n++] = *lx->p++;
	}
	lx->buf[n] = '\0';
	*t = (struct token){TOK_WORD, t->line, lx->buf, n};
}
