/* Unit tests: the config tokenizer (lexer.h) and parser (parse.h) — tokens with exact lines,
 * escapes, comments, bounds, and the tree with each value's line. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "conf/lexer.h"
#include "conf/parse.h"

struct want {
	enum token_kind kind;
	int line;
	const char *text;
};

static void
expect_tokens(const char *text, const struct want *w, size_t n)
{
	struct lexer lx;
	struct token t;

	lexer_init(&lx, text, strlen(text));
	for (size_t i = 0; i < n; i++) {
		lexer_next(&lx, &t);
		cr_expect_eq(t.kind, w[i].kind, "token %zu: kind %d, want %d (%s)", i, t.kind,
		             w[i].kind, t.text);
		cr_expect_eq(t.line, w[i].line, "token %zu (%s): line %d, want %d", i, t.text,
		             t.line, w[i].line);
		if (w[i].text)
			cr_expect_str_eq(t.text, w[i].text, "token %zu", i);
	}
}

Test(lexer, tokens_and_their_lines)
{
	static const struct want w[] = {
	        {TOK_WORD, 1, "hostname"},
	        {TOK_EQUALS, 1, "="},
	        {TOK_STRING, 1, "mx.a"},
	        {TOK_WORD, 2, "accepted-domains"},
	        {TOK_PLUS_EQUALS, 2, "+="},
	        {TOK_LBRACE, 2, "{"},
	        {TOK_WORD, 2, "a.example"},
	        {TOK_COMMA, 2, ","},
	        {TOK_STRING, 3, "b.example"},
	        {TOK_RBRACE, 3, "}"},
	        {TOK_SEMICOLON, 3, ";"},
	        {TOK_WORD, 4, "size"},
	        {TOK_EQUALS, 4, "="},
	        {TOK_WORD, 4, "36MB"},
	        {TOK_WORD, 5, "/var/spool"},
	        {TOK_EOF, 6, ""},
	        {TOK_EOF, 6, ""},
	};
	expect_tokens("hostname = \"mx.a\"\n"
	              "accepted-domains += { a.example,\n"
	              "  \"b.example\" };\n"
	              "size=36MB\n"
	              "/var/spool\n",
	              w, sizeof(w) / sizeof(w[0]));
}

/* libConfuse 3.3 counted each '#' comment line twice: a key on line 3 after two comment
 * lines was reported on line 7.  Every comment form keeps lines exact here. */
Test(lexer, comments_keep_line_numbers_exact)
{
	static const struct want w[] = {
	        {TOK_WORD, 3, "a"},   {TOK_WORD, 4, "b"},  {TOK_WORD, 8, "c"},
	        {TOK_WORD, 9, "d/e"}, {TOK_WORD, 10, "f"}, {TOK_EOF, 10, ""},
	};
	expect_tokens("# one\n"
	              "## two\n"
	              "a # after a word\n"
	              "b // slashes\n"
	              "/* a comment\n"
	              "   over lines\n"
	              "*/\n"
	              "c /* inline */\n"
	              "d/e\n"
	              "f",
	              w, sizeof(w) / sizeof(w[0]));
}

Test(lexer, quoted_strings_and_escapes)
{
	static const struct want w[] = {
	        {TOK_STRING, 1, "a\"b\\c\nd\te"},
	        {TOK_STRING, 1, "it\\n's"},
	        {TOK_STRING, 2, "two\nlines"},
	        {TOK_STRING, 4, "joined"},
	        {TOK_STRING, 6,
	         "\x41"
	         "B"},
	        {TOK_STRING, 6, "# not a comment"},
	        {TOK_WORD, 7, "x"},
	};
	expect_tokens("\"a\\\"b\\\\c\\nd\\te\" 'it\\n\\'s'\n"
	              "\"two\n"
	              "lines\"\n"
	              "\"join\\\n"
	              "ed\"\n"
	              "\"\\x41\\102\" '# not a comment'\n"
	              "x",
	              w, sizeof(w) / sizeof(w[0]));
}

Test(lexer, errors_stop_at_the_line_where_the_token_opened)
{
	static const struct {
		const char *text;
		int line;
		const char *needle;
	} cases[] = {
	        {"a = \"open\n\n\n", 1, "never closed"},
	        {"a = 'open\n", 1, "never closed"},
	        {"a\n/* open\n\n", 2, "never closed"},
	        {"a = 1 + 2\n", 1, "'+'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lexer lx;
		struct token t;
		lexer_init(&lx, cases[i].text, strlen(cases[i].text));
		do
			lexer_next(&lx, &t);
		while (t.kind != TOK_ERROR && t.kind != TOK_EOF);
		cr_expect_eq(t.kind, TOK_ERROR, "case %zu", i);
		cr_expect_eq(t.line, cases[i].line, "case %zu: line %d", i, t.line);
		cr_expect(strstr(t.text, cases[i].needle) != NULL, "case %zu: %s", i, t.text);
		lexer_next(&lx, &t);
		cr_expect_eq(t.kind, TOK_ERROR, "case %zu: the error is sticky", i);
	}
}

Test(lexer, tokens_are_bounded)
{
	size_t n = LEXER_TOKEN_MAX + 1;
	char *word = malloc(n + 3), *str = malloc(n + 3);
	struct lexer lx;
	struct token t;

	memset(word, 'w', n);
	word[n] = '\0';
	lexer_init(&lx, word, n);
	lexer_next(&lx, &t);
	cr_expect_eq(t.kind, TOK_ERROR);
	cr_expect(strstr(t.text, "longer than 4096") != NULL, "%s", t.text);
	lexer_init(&lx, word, n - 1);
	lexer_next(&lx, &t);
	cr_expect_eq(t.kind, TOK_WORD);
	cr_expect_eq(t.len, LEXER_TOKEN_MAX);

	str[0] = '"';
	memset(str + 1, 's', n);
	str[n + 1] = '"';
	str[n + 2] = '\0';
	lexer_init(&lx, str, n + 2);
	lexer_next(&lx, &t);
	cr_expect_eq(t.kind, TOK_ERROR);
	free(word);
	free(str);
}

static const struct conf_section_syntax sections[] = {
        {"tls", false}, {"deliver", false}, {"connector", true}, {"domain", true}};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

static struct conf_node *
parse(const char *text, struct conf_syntax_error *err)
{
	return conf_parse(text, strlen(text), sections, N_SECTIONS, err);
}

Test(parse, tree_with_lines)
{
	struct conf_syntax_error err;
	struct conf_node *root = parse("hostname = mx.a;\n"
	                               "tls { certificate = \"c.pem\"  key = 'k.pem' }\n"
	                               "connector \"in\" {\n"
	                               "  bindings = { \"0.0.0.0:25\",\n"
	                               "               \"[::]:25\", }\n"
	                               "  bindings += \"127.0.0.1:26\"\n"
	                               "}\n"
	                               "other x {\n  y = { }\n}\n",
	                               &err);

	cr_assert_not_null(root, "%d: %s", err.line, err.text);
	cr_assert_eq(root->n_children, 4);
	const struct conf_node *h = &root->children[0], *t = &root->children[1],
	                       *c = &root->children[2], *o = &root->children[3];
	cr_expect_eq(h->kind, CONF_ASSIGN);
	cr_expect_str_eq(h->values[0].text, "mx.a");
	cr_expect(!h->list && !h->append);
	cr_expect_eq(t->kind, CONF_SECTION);
	cr_expect_null(t->title);
	cr_assert_eq(t->n_children, 2);
	cr_expect_str_eq(t->children[1].values[0].text, "k.pem");
	cr_expect_eq(t->children[1].line, 2);
	cr_expect_str_eq(c->title, "in");
	cr_expect_eq(c->line, 3);
	cr_assert_eq(c->n_children, 2);
	cr_expect(c->children[0].list);
	cr_assert_eq(c->children[0].n_values, 2);
	cr_expect_eq(c->children[0].values[1].line, 5);
	cr_expect(c->children[1].append);
	cr_expect_eq(c->children[1].line, 6);
	/* an unknown section is read whole for the caller to report */
	cr_expect_str_eq(o->name, "other");
	cr_expect_str_eq(o->title, "x");
	cr_expect_eq(o->children[0].n_values, 0);
	conf_node_free(root);
}

/* settings side by side on a line, with or without ';', are still settings */
Test(parse, settings_side_by_side)
{
	struct conf_syntax_error err;
	struct conf_node *root = parse("a = 1 b = \"2\"; c += x\nd = 4\n", &err);

	cr_assert_not_null(root, "%s", err.text);
	cr_assert_eq(root->n_children, 4);
	cr_expect_str_eq(root->children[1].name, "b");
	cr_expect(root->children[2].append);
	cr_expect_str_eq(root->children[2].values[0].text, "x");
	conf_node_free(root);
}

Test(parse, syntax_errors_with_their_lines)
{
	static const struct {
		const char *text;
		int line;
		const char *needle;
	} cases[] = {
	        {"hostname = = a\n", 1, "write hostname = VALUE"},
	        {"a = 1\nhostname \"x\"\n", 2, "write hostname = VALUE"},
	        {"a = 1\nconnector \"x\" {\n  b = { 1 \n}\n", 2, "never closed"},
	        {"a = { 1\n", 1, "never closed"},
	        {"a = { 1 2 }\n", 1, "separate the values with ','"},
	        {"connector {\n}\n", 1, "a connector needs a name"},
	        {"connector \"x\" = 1\n", 1, "write connector \"NAME\" { ... }"},
	        {"tls \"x\" { }\n", 1, "tls takes no name"},
	        {"\n}\n", 2, "'}' with no '{'"},
	        {"a = f(1)\n", 1, "syntax error"},
	        {"a { b { c { d { e { f { g { h { i { } } } } } } } } }\n", 1, "nested"},
	        {"a = \"x\n", 1, "never closed"},
	        /* a word after a value would start a section swallowing the next one */
	        {"a = 1\ndrain-timeout = 5 min\ndeliver {\n}\n", 2,
	         "'min' follows the value of 'drain-timeout' on its line; a value with blanks "
	         "is written in quotes: drain-timeout = \"5 min\""},
	        {"max-message-size = 36 MB\n", 1, "max-message-size = \"36 MB\""},
	        {"max-message-size = 36 MB", 1, "'MB' follows the value"},
	        {"a = 'x' y {\n}\n", 1, "'y' follows the value of 'a'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf_syntax_error err;
		struct conf_node *root = parse(cases[i].text, &err);
		cr_expect_null(root, "case %zu parsed", i);
		conf_node_free(root);
		cr_expect_eq(err.line, cases[i].line, "case %zu: line %d (%s)", i, err.line,
		             err.text);
		cr_expect(strstr(err.text, cases[i].needle) != NULL, "case %zu: %s", i, err.text);
	}
}

/* The parse of a whole text is the same whatever it is cut into: the lexer takes the
 * text at once, so this checks that no byte of a token is read past the end of a prefix. */
Test(parse, every_prefix_parses_or_fails_cleanly)
{
	static const char text[] = "connector \"in\" { bindings = { \"0.0.0.0:25\" } } # c\n"
	                           "tls { key = 'k' /* x */ }\n";
	for (size_t n = 0; n <= sizeof(text) - 1; n++) {
		struct conf_syntax_error err;
		char *copy = malloc(n ? n : 1);
		memcpy(copy, text, n);
		struct conf_node *root = conf_parse(copy, n, sections, N_SECTIONS, &err);
		cr_expect(root || err.line > 0, "prefix %zu", n);
		conf_node_free(root);
		free(copy);
	}
}
