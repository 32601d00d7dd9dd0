/*
 * parse — mxgate.conf's statements as a tree, each name and value with its line.
 *
 *   file       := { statement [';'] }
 *   statement  := NAME '=' value | NAME '+=' value | NAME [TITLE] '{' { statement } '}'
 *   value      := TEXT | '{' [ TEXT { ',' TEXT } [','] ] '}'
 *
 * NAME, TITLE and TEXT are words or quoted strings (lexer.h).  The parser knows the names
 * of the sections (a table from the caller), so that `connector { }` is refused for its
 * missing name and `tls = x` for its missing braces; every other name may be either an
 * assignment or a section, for the caller to judge (an unknown section is read whole, so
 * the caller can report it and go on).  A syntax error stops the parse: what follows it
 * cannot be read reliably.
 *
 * Reentrant: no global state; the tree is owned by the caller (conf_node_free).
 */
#ifndef MXGATE_PARSE_H
#define MXGATE_PARSE_H

#include <stdbool.h>
#include <stddef.h>

struct conf_value {
	char *text; /* NUL-terminated */
	int line;
};

enum conf_node_kind { CONF_ASSIGN, CONF_SECTION };

struct conf_node {
	enum conf_node_kind kind;
	char *name;
	int line; /* of the name */

	/* CONF_ASSIGN */
	bool append; /* "+=" */
	bool list;   /* the value was written { ... } */
	struct conf_value *values;
	size_t n_values, values_cap;

	/* CONF_SECTION (and the root, named "") */
	char *title; /* NULL when none */
	struct conf_node *children;
	size_t n_children, children_cap;
};

/* A section name the parser knows, and whether it takes a title. */
struct conf_section_syntax {
	const char *name;
	bool titled;
};

struct conf_syntax_error {
	int line; /* 0 when out of memory */
	char text[256];
};

/* Parses text[0..len) against sections[0..n_sections).  Returns the root (a section named
 * "" holding the file's statements), or NULL with *err filled. */
struct conf_node *conf_parse(const char *text, size_t len,
                             const struct conf_section_syntax *sections, size_t n_sections,
                             struct conf_syntax_error *err);

/* Frees a tree from conf_parse; NULL is a no-op. */
void conf_node_free(struct conf_node *root);

#endif
