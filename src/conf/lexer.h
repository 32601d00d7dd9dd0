/*
 * lexer — the tokens of mxgate.conf, sans-I/O: bytes in, tokens with their line out.
 *
 * The syntax is the one mxgate.conf has always had (libConfuse's, as our configs use it):
 *
 *   word          unquoted text: any byte but blanks, newlines and # " ' = { } ( ) + , ;
 *                 (a '/' followed by '/' or '*' starts a comment instead)
 *   "text"        \" \\ \n \t \r \a \b \f \v \e, \xHH and \OOO escapes; any other
 *                 backslash pair is the second byte; backslash-newline continues the line
 *   'text'        literal, except \' and \\ ; backslash-newline continues the line
 *   { } = += , ;  punctuation ( and ) are tokens too, so that they reach the parser and
 *                 are refused there with a line)
 *   # and //      comments to the end of the line; C comments (slash-star to star-slash)
 *                 may span lines
 *
 * A token's text is at most LEXER_TOKEN_MAX bytes.  The lexer holds no global state and
 * never allocates: any number of lexers may run at once, on any threads.
 */
#ifndef MXGATE_LEXER_H
#define MXGATE_LEXER_H

#include <stddef.h>

#define LEXER_TOKEN_MAX 4096

enum token_kind {
	TOK_EOF,
	TOK_WORD,   /* unquoted text */
	TOK_STRING, /* quoted text, escapes resolved */
	TOK_LBRACE,
	TOK_RBRACE,
	TOK_EQUALS,
	TOK_PLUS_EQUALS,
	TOK_COMMA,
	TOK_SEMICOLON,
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_ERROR, /* lexer.err says what; the text cannot be read past it */
};

struct token {
	enum token_kind kind;
	int line;         /* where the token starts */
	const char *text; /* NUL-terminated; borrowed from the lexer until the next call */
	size_t len;       /* bytes in text (a quoted string may hold a NUL from an escape) */
};

struct lexer {
	const char *p, *end;
	int line;
	char buf[LEXER_TOKEN_MAX + 1];
	char err[160];
	enum token_kind stop; /* TOK_EOF until the text ends or fails */
	int stop_line;
};

/* Starts reading text[0..len), which is borrowed for the lexer's lifetime; line 1 first. */
void lexer_init(struct lexer *lx, const char *text, size_t len);

/* The next token.  After TOK_EOF or TOK_ERROR every call returns the same again. */
void lexer_next(struct lexer *lx, struct token *t);

/* A name for messages: "'{'", "end of file", "a quoted string"... */
const char *lexer_kind_name(enum token_kind k);

#endif
