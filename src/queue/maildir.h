/*
 * maildir — delivery into a recipient's Maildir.
 *
 * The path comes from the configured template (base/mailpath.h: %d and %u encoded so that
 * client text is always exactly one safe path component).
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
