/*
 * mailpath — the Maildir path template of deliver { maildir }, as values: no I/O.
 *
 * %d is the recipient's domain, %u its local part, both lower-cased and encoded so that
 * client text is always exactly one safe path component: only [a-z0-9._+=-] pass through;
 * every other byte (including '/', '%', control bytes and non-ASCII) becomes %XX, and a
 * leading '.' becomes %2E, so "." and ".." can never appear.  The configuration checks a
 * template with mailpath_check(); delivery (queue/maildir.h) splits and expands it.
 */
#ifndef MXGATE_MAILPATH_H
#define MXGATE_MAILPATH_H

#include <stdbool.h>
#include <stddef.h>

/* The longest fixed prefix (mailpath_split's base) and the longest expanded rest
 * (mailpath_expand's out) that delivery handles, both with the terminating NUL. */
#define MAILPATH_BASE_MAX 1024
#define MAILPATH_REL_MAX  2048

/* Encodes text as one path component; returns the length (0 when it does not fit). */
size_t mailpath_encode(const char *in, size_t len, char *out, size_t size);

/* The template's fixed directory prefix and the templated rest: "/var/mail/%d/%u" gives
 * "/var/mail" and "%d/%u".  Returns -1 if the template is not an absolute path. */
int mailpath_split(const char *tmpl, char *base, size_t bsize, const char **rest);

/* Expands the templated rest for one recipient into a relative path. */
int mailpath_expand(const char *rest, const char *local, const char *domain, char *out,
                    size_t size);

/* Checks a template once, when the configuration is loaded.  Returns -1 with a sentence in
 * err (what is wrong and what to write instead) when delivery would fail for every
 * recipient: mailpath_split refuses it (not an absolute path, a prefix of MAILPATH_BASE_MAX
 * bytes or more), mailpath_expand cannot fit even the shortest recipient in
 * MAILPATH_REL_MAX, or maildir_open refuses the expanded path whatever the recipient (a
 * "." or ".." component where the recipient's parts go, a component longer than
 * NAME_MAX however short %d and %u are).  A prefix component longer than NAME_MAX fails
 * too (ENAMETOOLONG).  The template's '%' sequences must already be known ones. */
int mailpath_check(const char *tmpl, char *err, size_t errlen);

/* A component delivery opens: a file name (at most NAME_MAX bytes), neither "." nor "..". */
bool mailpath_component_ok(const char *p, size_t len);
/* Every component of rel passes mailpath_component_ok(). */
bool mailpath_rel_ok(const char *rel);

#endif
