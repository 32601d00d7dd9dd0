/*
 * failsync — an LD_PRELOAD shim that makes a disk fail its syncs, for the tests of the
 * spool's FAILED SYNCS rule (spool.h).
 *
 * While the file named by $MXGATE_FAULT_TRIGGER exists, fsync(), fdatasync() and syncfs()
 * fail with EIO and do nothing; otherwise they are the real calls.  The test creates and
 * removes the file while the daemon runs (it must be reachable by the user the daemon
 * drops to).  Each injected failure appends a line "<call> <fd>" to $MXGATE_FAULT_LOG when
 * that is set, so a test can see that the fault fired.
 * Narrower faults: with $MXGATE_FAULT_DEV_OF set to a path, only descriptors on that
 * path's file system fail; with $MXGATE_FAULT_DIRS_ONLY=1, only descriptors of
 * directories.  With $MXGATE_FAULT_STALL=1 the calls do not fail but wait while the
 * trigger exists (a slow disk: the test can kill the process in the middle of a sync),
 * logging "stall <call> <fd>" as they start waiting.  With $MXGATE_FAULT_CALLS set to a
 * comma-separated list (e.g. "fsync"), only those calls are faulted.  With
 * $MXGATE_FAULT_TRACE=1, every call let through while the trigger exists is logged as
 * "pass <call> <fd>" (what else ran meanwhile: the spool's pipeline test).
 *
 * Built by the test: cc -shared -fPIC -o failsync.so failsync.c -ldl.  With an ASan
 * build, run with ASAN_OPTIONS=verify_asan_link_order=0 (the shim comes before ASan's
 * runtime in the library list).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);

__attribute__((constructor)) static void
failsync_init(void)
{
	real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	real_syncfs = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
}

/* Whether call is in the comma-separated list (NULL or empty: every call). */
static bool
listed(const char *list, const char *call)
{
	size_t n = strlen(call);

	if (!list || !*list)
		return true;
	for (const char *p = list; p; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (strncmp(p, call, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return true;
	}
	return false;
}

/* Appends "<what><call> <fd>" to $MXGATE_FAULT_LOG, when it is set. */
static void
log_call(const char *what, const char *call, int fd)
{
	const char *logpath = getenv("MXGATE_FAULT_LOG");
	if (!logpath)
		return;
	int lfd = open(logpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
	if (lfd >= 0) {
		char line[64];
		int n = snprintf(line, sizeof(line), "%s%s %d\n", what, call, fd);
		if (n > 0 && write(lfd, line, (size_t)n) < 0)
			n = 0;
		close(lfd);
	}
}

/* True (and the failure logged) when the trigger file exists. */
static int
tripped(const char *call, int fd)
{
	const char *trigger = getenv("MXGATE_FAULT_TRIGGER");
	struct stat st;
	int saved = errno;

	const char *dev_of = getenv("MXGATE_FAULT_DEV_OF");
	const char *dirs_only = getenv("MXGATE_FAULT_DIRS_ONLY");
	const char *trace = getenv("MXGATE_FAULT_TRACE");
	struct stat fst, dst;

	if (!trigger || stat(trigger, &st) < 0) {
		errno = saved;
		return 0;
	}
	if (fstat(fd, &fst) < 0 ||
	    (dev_of && (stat(dev_of, &dst) < 0 || dst.st_dev != fst.st_dev)) ||
	    (dirs_only && strcmp(dirs_only, "1") == 0 && !S_ISDIR(fst.st_mode)) ||
	    !listed(getenv("MXGATE_FAULT_CALLS"), call)) {
		if (trace && strcmp(trace, "1") == 0)
			log_call("pass ", call, fd);
		errno = saved;
		return 0;
	}
	const char *stall = getenv("MXGATE_FAULT_STALL");
	bool stalling = stall && strcmp(stall, "1") == 0;
	log_call(stalling ? "stall " : "", call, fd);
	if (stalling) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		while (stat(trigger, &st) == 0)
			nanosleep(&ts, NULL);
		errno = saved;
		return 0;
	}
	errno = EIO;
	return 1;
}

int
fsync(int fd)
{
	if (tripped("fsync", fd))
		return -1;
	return real_fsync(fd);
}

int
fdatasync(int fd)
{
	if (tripped("fdatasync", fd))
		return -1;
	return real_fdatasync(fd);
}

int
syncfs(int fd)
{
	if (tripped("syncfs", fd))
		return -1;
	return real_syncfs(fd);
}
