/*
 * maildir — where a recipient's Maildir is, and delivery into it.
 *
 * The path comes from the configured template: %d is the recipient's domain, %u its
 * local part, both lower-cased and encoded so that client text is always exactly one
 * safe path component: only [a-z0-9._+=-] pass through; every other byte (including
 * '/', '%', control bytes and non-ASCII) becomes %XX, and a leading '.' becomes %2E, so
 * "." and ".." can never appear.
 *
 * An existing Maildir is opened with one openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
 * otherwise directories are walked and made component by component with
 * openat(O_NOFOLLOW) from the template's fixed prefix.  Either way a symlink planted
 * inside the mail store cannot redirect a delivery.  A message is delivered by hard-linking the spooled file (already synced)
 * into new/ under a name fixed by its queue id and recipient index; on another file
 * system it is copied into tmp/, synced and renamed into new/.  Because the name is
 * fixed, delivering the same recipient twice finds it there and does nothing: a delivery
 * repeated after a crash never duplicates mail.
 */
#ifndef MXGATE_MAILDIR_H
#define MXGATE_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>

/* The longest fixed prefix (maildir_split's base) and the longest expanded rest
 * (maildir_expand's out) that delivery handles, both with the terminating NUL. */
#define MAILDIR_BASE_MAX 1024
#define MAILDIR_REL_MAX  2048

/* Encodes text as one path component; returns the length (0 when it does not fit). */
size_t maildir_encode(const char *in, size_t len, char *out, size_t size);

/* The template's fixed directory prefix and the templated rest: "/var/mail/%d/%u" gives
 * "/var/mail" and "%d/%u".  Returns -1 if the template is not an absolute path. */
int maildir_split(const char *tmpl, char *base, size_t bsize, const char **rest);

/* Expands the templated rest for one recipient into a relative path. */
int maildir_expand(const char *rest, const char *local, const char *domain, char *out, size_t size);

/* Checks a template once, when the configuration is loaded.  Returns -1 with a sentence in
 * err (what is wrong and what to write instead) when delivery would fail for every
 * recipient: maildir_split refuses it (not an absolute path, a prefix of MAILDIR_BASE_MAX
 * bytes or more), maildir_expand cannot fit even the shortest recipient in
 * MAILDIR_REL_MAX, or maildir_open refuses the expanded path whatever the recipient (a
 * "." or ".." component where the recipient's parts go, a component longer than
 * NAME_MAX however short %d and %u are).  A prefix component longer than NAME_MAX fails
 * too (ENAMETOOLONG).  The template's '%' sequences must already be known ones. */
int maildir_check(const char *tmpl, char *err, size_t errlen);

/* Opens (making as needed) the Maildir at rel under basefd, with tmp/ new/ cur/; returns
 * an fd of its new/ directory and sets *dirfd to the Maildir itself, or -1 with errno. */
int maildir_open(int basefd, const char *rel, int *dirfd);

/* Delivers: links queuefd/id into new/<name>, or copies it there through tmp/.  Returns
 * 0 for a link (or when it was already delivered), 1 for a copy, -1 with errno.
 *
 * The file's data was synced when it was spooled; the new name is not durable yet.  The
 * caller makes it so before the spool lets go of the message: one syncfs() of the
 * Maildirs' file system for a whole batch of links (journalling file systems would keep
 * the link and the later unlink in order, but ext4 without a journal, or ext2, do not),
 * and an fsync of new/ for a copy, which lives on another file system. */
int maildir_deliver(int maildirfd, int newfd, int queuefd, const char *id, const char *name,
                    bool check_cur);

/* The fixed file name for recipient index idx of message id received at t. */
void maildir_name(char *out, size_t size, long long t, const char *id, size_t idx,
                  const char *host);

#endif
