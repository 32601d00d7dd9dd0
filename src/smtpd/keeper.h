/*
 * keeper — the privileged part of the daemon: it reads, at each reload, the files that only
 * root may read, and hands them over.
 *
 * The daemon gives up root once its ports are open (privileges.h), but a correctly secured
 * server keeps its configuration, its TLS key and its range files readable by root alone
 * (mode 0600).  A reload as the run user could not read them, and so neither could a
 * certificate be rotated.  OpenSMTPD's privilege separation is the model: before giving up
 * root the daemon forks a keeper, a process that stays root but keeps no capability but
 * CAP_DAC_READ_SEARCH (when it has it) and can do one thing — on a request, load the
 * configuration file named at start (a path the unprivileged side cannot change), as the
 * daemon itself would, and send back an open, read-only descriptor of every file that
 * loading opened (SCM_RIGHTS over a socketpair, one message per file, path first).  The
 * daemon's reload thread then loads the same configuration, taking each file from those
 * descriptors (sidefile_use()) and anything else from the file system as the run user.
 * The keeper never sends file contents and never parses for the daemon: a daemon that is
 * taken over can make it reread the configuration, no more.  Errors are the daemon's to
 * report (it loads the same files and finds the same faults); the keeper logs only its own
 * failures.
 *
 * The keeper exits when the daemon closes its end (or dies: PR_SET_PDEATHSIG).  Without a
 * keeper (not started as root, or it is gone) a reload reads as the run user, and a file
 * it may not read is refused with the OS error and the file's name.
 *
 * All calls but keeper_fetch() are made on the main thread; keeper_fetch() on one thread
 * at a time (the reload thread).
 */
#ifndef MXGATE_KEEPER_H
#define MXGATE_KEEPER_H

#include "base/sidefile.h"

struct keeper;

/* Forks the keeper for config_path (borrowed for the keeper's life), which must be called
 * while the process is still single-threaded and root (the keeper restricts itself).
 * NULL with a log line when it cannot (the daemon then runs without one). */
struct keeper *keeper_start(const char *config_path);

/* Asks for the files of one load: a new set (the caller frees it), or NULL with the reason
 * in err (the keeper is gone, or did not answer within KEEPER_TIMEOUT_S). */
struct sidefile_set *keeper_fetch(struct keeper *k, char *err, size_t errlen);

/* Its process id (for `mxgate status`). */
long keeper_pid(const struct keeper *k);

/* Closes the channel and waits for the keeper to exit.  NULL is a no-op. */
void keeper_stop(struct keeper *k);

#define KEEPER_TIMEOUT_S 60

#endif
