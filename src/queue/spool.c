#include "queue/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/vec.h"
#include "obs/metrics.h"

#define WBUF_SIZE 65536
/* How long a sync asked for by spool_barrier() alone waits for a message to share it. */
#define BARRIER_WAIT_MS 2
/* Envelope files kept in free/ for reuse; beyond this, removal unlinks. */
#define FREE_POOL_MAX 4096

/* The group commit's counts, for the log line at the end. */
struct spool_stats {
	uint64_t groups, messages, failed;
};

struct spool {
	char *path;
	int dirfd, tmpfd, queuefd, corruptfd, freefd;
	uid_t run_uid; /* who must own every file recovery trusts */
	spool_committed_hook hook;
	void *hook_arg;
	pthread_t syncer, dirsyncer;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct spool_msg *head, *tail;
	bool stop;
	/* groups synced and renamed, waiting for the directory fsync (the pipeline below);
	 * under mu */
	pthread_cond_t dircv;
	struct spool_msg *dhead, *dtail;
	bool dirstop;
	atomic_uint_fast32_t seq;
	bool use_syncfs; /* one syncfs() per group instead of an fsync per file */
	struct spool_stats stats;
	/* the first failed sync's errno: from then on the spool promises nothing (spool.h,
	 * FAILED SYNCS); any thread sets it */
	atomic_int failed;
	atomic_uint_fast64_t sync_failures, refused;
	/* free/: settled envelope files waiting to be rewritten (see recycling below) */
	pthread_mutex_t freemu;
	uint64_t *free_names; /* a stack of numbers: free/<n> */
	size_t n_free;
	uint64_t next_free_name;
};

struct spool_msg {
	struct spool *sp;
	char id[SPOOL_ID_LEN + 1];
	int fd;
	int envdir; /* where the envelope was written: tmpfd or freefd */
	char envname[24];
	char *buf;
	size_t blen;
	uint64_t written, prefix;
	int err;
	bool recycled; /* fd is a free/ file, rewritten from its start: cut at the commit */
	uint64_t recycled_size; /* its length when taken */
	bool barrier;           /* spool_barrier(): no files, only wants the group's sync */
	bool prepared;          /* data closed and envelope written by spool_msg_commit() */
	struct spool_entry *env;
	spool_done_cb done;
	void *arg;
	struct spool_msg *next;
};

/* ---- a failed sync ---------------------------------------------------------------------- */

/*
 * Called for every fsync(), fdatasync() or syncfs() of the spool that failed.  Linux may
 * have dropped the pages it could not write and marked them clean, and reports the error
 * once: a later sync that succeeds does not mean they reached the disk (PostgreSQL's
 * "fsyncgate", 2018).  So the first failure puts the spool in the failed state for good.
 */
static void
sync_failed(struct spool *sp, const char *what, int err)
{
	int none = 0;
	uint64_t n = atomic_fetch_add(&sp->sync_failures, 1) + 1;

	metrics_spool_sync_failure();
	if (err == 0)
		err = EIO;
	if (atomic_compare_exchange_strong(&sp->failed, &none, err))
		log_msg(LOG_LVL_ERROR,
		        "spool: the disk failed: %s of %s/queue failed: %s.  Data written "
		        "since the last good sync may be lost, and a sync retried now would "
		        "prove nothing, so mxgate accepts no mail (452 4.3.1) until it is "
		        "restarted.  Check the disk (dmesg, smartctl), then restart mxgate",
		        what, sp->path, strerror(err));
	else
		log_msg(LOG_LVL_ERROR, "spool: %s failed again (%llu failed syncs): %s", what,
		        (unsigned long long)n, strerror(err));
}

/* The errno the spool failed with, or 0. */
static int
spool_failed(struct spool *sp)
{
	return atomic_load(&sp->failed);
}

/* ---- entries -------------------------------------------------------------------------- */

struct spool_entry *
spool_entry_new(void)
{
	return calloc(1, sizeof(struct spool_entry));
}

void
spool_entry_free(struct spool_entry *e)
{
	if (!e)
		return;
	free(e->sender);
	for (size_t i = 0; i < e->n_rcpts; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	free(e->connector);
	free(e->client);
	free(e->helo);
	if (e->rcpt_note)
		for (size_t i = 0; i < e->n_rcpts; i++)
			free(e->rcpt_note[i]);
	free(e->rcpt_note);
	free(e->rcpt_state);
	free(e->last_error);
	free(e);
}

static struct spool_entry *
entry_copy(const struct spool_entry *src)
{
	struct spool_entry *e = spool_entry_new();

	if (!e)
		return NULL;
	*e = *src;
	e->sender = e->connector = e->client = e->helo = NULL;
	e->rcpt_state = NULL;
	e->rcpt_note = NULL;
	e->last_error = NULL;
	e->rcpts = calloc(src->n_rcpts ? src->n_rcpts : 1, sizeof(*e->rcpts));
	e->n_rcpts = 0;
	if (!e->rcpts || !(e->sender = strdup(src->sender ? src->sender : "")) ||
	    !(e->connector = strdup(src->connector ? src->connector : "")) ||
	    !(e->client = strdup(src->client ? src->client : "")) ||
	    !(e->helo = strdup(src->helo ? src->helo : "")))
		goto fail;
	for (size_t i = 0; i < src->n_rcpts; i++) {
		if (!(e->rcpts[i] = strdup(src->rcpts[i])))
			goto fail;
		e->n_rcpts++;
	}
	if (src->rcpt_state) {
		if (!(e->rcpt_state = malloc(src->n_rcpts)))
			goto fail;
		memcpy(e->rcpt_state, src->rcpt_state, src->n_rcpts);
	}
	if (src->last_error && !(e->last_error = strdup(src->last_error)))
		goto fail;
	return e;
fail:
	spool_entry_free(e);
	return NULL;
}

/*
 * The envelope file, one "key value" a line; values never hold CR or LF (addresses and
 * names are checked before they get here, and the writer refuses them anyway):
 *   mxgate-envelope 1
 *   id 18AB3C4D5E6F7001
 *   received 1764320000
 *   size 1234
 *   prefix 40
 *   flags smtputf8 8bitmime
 *   connector From Proofpoint
 *   client 67.231.152.10
 *   helo mx1.example.net
 *   from sender@example.net          (empty for <>)
 *   rcpt user@example.com            (one line each)
 *   end
 */
static bool
one_line(const char *s)
{
	return !strpbrk(s, "\r\n");
}

char *
spool_envelope_format(const struct spool_entry *e, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *fp = open_memstream(&buf, &size);

	if (!fp)
		return NULL;
	if (!one_line(e->sender) || !one_line(e->connector) || !one_line(e->client) ||
	    !one_line(e->helo)) {
		fclose(fp);
		free(buf);
		errno = EINVAL;
		return NULL;
	}
	fprintf(fp,
	        "mxgate-envelope 1\nid %s\nreceived %lld\nsize %llu\nprefix %llu\nflags%s%s\n"
	        "connector %s\nclient %s\nhelo %s\nfrom %s\n",
	        e->id, (long long)e->received, (unsigned long long)e->size,
	        (unsigned long long)e->prefix_len, e->smtputf8 ? " smtputf8" : "",
	        e->body_8bit ? " 8bitmime" : "", e->connector, e->client, e->helo, e->sender);
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!one_line(e->rcpts[i]) || !e->rcpts[i][0]) {
			fclose(fp);
			free(buf);
			errno = EINVAL;
			return NULL;
		}
		fprintf(fp, "rcpt %s\n", e->rcpts[i]);
	}
	fprintf(fp, "end\n");
	if (fclose(fp) != 0) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}

/* A decimal number of at most 20 digits that fits in uint64_t. */
static bool
parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || __builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v))
			return false;
	}
	*out = v;
	return true;
}

static bool
is_hex_id(const char *s, size_t len)
{
	if (len != SPOOL_ID_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

/* The flags line's value: known words, one space apart. */
static bool
parse_flags(struct spool_entry *e, const char *v, size_t n)
{
	while (n > 0) {
		const char *sp = memchr(v, ' ', n);
		size_t wl = sp ? (size_t)(sp - v) : n;
		if (wl == 8 && memcmp(v, "smtputf8", 8) == 0 && !e->smtputf8)
			e->smtputf8 = true;
		else if (wl == 8 && memcmp(v, "8bitmime", 8) == 0 && !e->body_8bit)
			e->body_8bit = true;
		else
			return false;
		if (!sp)
			break;
		v = sp + 1;
		n -= wl + 1;
		if (n == 0)
			return false; /* a trailing space */
	}
	return true;
}

/* n bytes of a buffer that is not a C string, as one (strndup() may look for a NUL past
 * them: ASan's strict string checks say so). */
static char *
copy_bytes(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

/* A value that must appear once. */
static bool
set_once(char **field, const char *v, size_t n)
{
	if (*field)
		return false;
	return (*field = copy_bytes(v, n)) != NULL;
}

struct spool_entry *
spool_envelope_parse(const char *buf, size_t len)
{
	struct spool_entry *e = spool_entry_new();
	size_t cap = 0, off = 0;
	enum { MAGIC, BODY, ENDED } where = MAGIC;
	bool have_id = false, have_received = false, have_size = false, have_prefix = false,
	     have_flags = false;
	uint64_t num;

	if (!e)
		return NULL;
	/* the writer never puts NUL or CR in an envelope, and ends every line with LF: any
	 * of these is damage (or not an envelope) */
	if (len == 0 || buf[len - 1] != '\n' || memchr(buf, '\0', len) || memchr(buf, '\r', len))
		goto bad;
	while (off < len) {
		const char *line = buf + off, *nl = memchr(line, '\n', len - off);
		size_t ll = (size_t)(nl - line);
		const char *sp = memchr(line, ' ', ll);
		size_t kl = sp ? (size_t)(sp - line) : ll;
		const char *v = sp ? sp + 1 : line + ll;
		size_t vl = sp ? ll - kl - 1 : 0;
		off += ll + 1;
#define KEY(k) (kl == sizeof(k) - 1 && memcmp(line, k, kl) == 0)
		if (where == ENDED)
			goto bad; /* nothing after "end" */
		if (where == MAGIC) {
			if (ll != 17 || memcmp(line, "mxgate-envelope 1", 17) != 0)
				goto bad;
			where = BODY;
		} else if (KEY("id")) {
			if (have_id || !is_hex_id(v, vl))
				goto bad;
			memcpy(e->id, v, SPOOL_ID_LEN);
			e->id[SPOOL_ID_LEN] = '\0';
			have_id = true;
		} else if (KEY("received")) {
			if (have_received || !parse_u64(v, vl, &num) || num > INT64_MAX)
				goto bad;
			e->received = (time_t)num;
			have_received = true;
		} else if (KEY("size")) {
			if (have_size || !parse_u64(v, vl, &e->size))
				goto bad;
			have_size = true;
		} else if (KEY("prefix")) {
			if (have_prefix || !parse_u64(v, vl, &e->prefix_len))
				goto bad;
			have_prefix = true;
		} else if (KEY("flags")) {
			if (have_flags || (sp && vl == 0) || !parse_flags(e, v, vl))
				goto bad;
			have_flags = true;
		} else if (KEY("connector")) {
			if (!sp || !set_once(&e->connector, v, vl))
				goto bad;
		} else if (KEY("client")) {
			if (!sp || !set_once(&e->client, v, vl))
				goto bad;
		} else if (KEY("helo")) {
			if (!sp || !set_once(&e->helo, v, vl))
				goto bad;
		} else if (KEY("from")) {
			if (!sp || !set_once(&e->sender, v, vl))
				goto bad;
		} else if (KEY("rcpt")) {
			if (vl == 0 || VEC_RESERVE(e->rcpts, cap, e->n_rcpts + 1) < 0 ||
			    !(e->rcpts[e->n_rcpts] = copy_bytes(v, vl)))
				goto bad;
			e->n_rcpts++;
		} else if (KEY("end") && !sp) {
			where = ENDED;
		} else {
			goto bad; /* an unknown or damaged line */
		}
#undef KEY
	}
	if (where != ENDED || !have_id || !have_received || !have_size || !have_prefix ||
	    !have_flags || !e->sender || e->n_rcpts == 0 || !e->connector || !e->client ||
	    !e->helo || e->prefix_len > e->size)
		goto bad;
	return e;
bad:
	spool_entry_free(e);
	return NULL;
}

/* Reads queue/<name> whole (envelopes and states are small): *len bytes (and a NUL
 * after them), *owner its owner's uid.  NULL with errno. */
static char *
read_small(int dirfd, const char *name, size_t *len, uid_t *owner)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char *buf;
	struct stat st;
	ssize_t n;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	if (st.st_size > 16 * 1024 * 1024 || !(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		errno = st.st_size > 16 * 1024 * 1024 ? EFBIG : ENOMEM;
		return NULL;
	}
	*owner = st.st_uid;
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		errno = n < 0 ? errno : EIO;
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* ---- opening -------------------------------------------------------------------------- */

/* ---- trusting the spool's directories ----------------------------------------------- */

static void
user_name(uid_t uid, char *buf, size_t size)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) == 0 && res)
		snprintf(buf, size, "%s", pw.pw_name);
	else
		snprintf(buf, size, "%u", (unsigned)uid);
}

static void
group_name(gid_t gid, char *buf, size_t size)
{
	struct group gr, *res = NULL;
	char tmp[1024];

	if (getgrgid_r(gid, &gr, tmp, sizeof(tmp), &res) == 0 && res)
		snprintf(buf, size, "%s", gr.gr_name);
	else
		snprintf(buf, size, "%u", (unsigned)gid);
}

int
spool_check_dir(int fd, const char *path, long uid, long gid, char *err, size_t errlen)
{
	uid_t want = uid >= 0 ? (uid_t)uid : geteuid();
	gid_t wantg = gid >= 0 ? (gid_t)gid : getegid();
	char who[256], grp[256], owner[256];
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot check spool directory %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "spool path %s is not a directory", path);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
		         "spool directory %s is writable by %s (mode %04o): another local user "
		         "could plant forged mail in it. Fix: chmod 0700 %s (and look in it for "
		         "files mxgate did not make)",
		         path, st.st_mode & S_IWOTH ? "everyone" : "its group",
		         (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	if (st.st_uid == want)
		return 0;
	/* root made it (an administrator, or this start): only root could have put anything
	 * in it, so it is given to the run user, as every start always has */
	if (st.st_uid == 0 && geteuid() == 0) {
		/* chmod while root still owns it: afterwards it would need CAP_FOWNER, which
		 * mxgate.service does not grant */
		if (fchmod(fd, 0700) < 0 || fchown(fd, want, wantg) < 0) {
			snprintf(err, errlen, "cannot give spool directory %s to uid %u: %s", path,
			         (unsigned)want, strerror(errno));
			return -1;
		}
		return 0;
	}
	user_name(want, who, sizeof(who));
	group_name(wantg, grp, sizeof(grp));
	user_name(st.st_uid, owner, sizeof(owner));
	snprintf(err, errlen,
	         "spool directory %s belongs to %s, not to %s that mxgate runs as: its owner "
	         "could plant forged mail in it. Fix: chown %s:%s %s (and look in it for "
	         "files mxgate did not make)",
	         path, owner, who, who, grp, path);
	return -1;
}

/* Opens (making it, mode 0700) the spool's subdirectory name and checks it. */
static int
open_subdir(struct spool *sp, const char *name, long uid, long gid, char *err, size_t errlen)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", sp->path, name);
	if (mkdirat(sp->dirfd, name, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot make spool directory %.1800s: %s", path,
		         strerror(errno));
		return -1;
	}
	fd = openat(sp->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open spool directory %.1800s: %s%s", path,
		         strerror(errno),
		         errno == ELOOP || errno == ENOTDIR
		                 ? " (it must be a directory, not a symbolic link or a file)"
		                 : "");
		return -1;
	}
	if (spool_check_dir(fd, path, uid, gid, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Recycling.  A settled message's envelope file is renamed into free/ rather than
 * unlinked, and the next group commit rewrites it in place for a new message instead of
 * creating a file.  File systems pay for every inode freed and allocated (ext4 without a
 * journal scans past every recently freed inode on each create), so steady traffic then
 * allocates one inode per message (its data, which lives on in the Maildir) and frees
 * none.  free/<n> names come from a counter and are never reused.  A free/ file with a
 * second link (a crash in the middle of a rename on a file system that does not make
 * renames atomic) is dropped, never rewritten: it may be a queued envelope.
 *
 * Data files go the same way when nothing else links them (relay mode; a Maildir
 * delivery by hard link leaves a second link, and that file is unlinked, never reused):
 * spool_remove() renames queue/<id> into free/, and spool_msg_new() takes any free/ file
 * (a former envelope or data file) for the next message's data, renaming it to
 * queue/<id> and rewriting it from its start (the commit cuts it to the message: see
 * reuse_free), before creating one.  So steady relay traffic allocates
 * and frees no inodes at all.  A crash cannot make a recycled file look like a message:
 * a message is queued only by its envelope (spool.h), a data file in queue/ without one
 * is removed by recovery, and free/ files are only ever rewritten or dropped.
 */
static void
load_free_pool(struct spool *sp)
{
	int fd = dup(sp->freefd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		struct stat st;
		char *end;
		if (de->d_name[0] == '.')
			continue;
		errno = 0;
		unsigned long long n = strtoull(de->d_name, &end, 10);
		bool ok = !errno && *end == '\0' && de->d_name[0] >= '0' && de->d_name[0] <= '9' &&
		          fstatat(sp->freefd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		          S_ISREG(st.st_mode) && st.st_nlink == 1 && st.st_uid == sp->run_uid;
		if (n >= sp->next_free_name && !errno)
			sp->next_free_name = n + 1;
		if (ok && sp->n_free < FREE_POOL_MAX)
			sp->free_names[sp->n_free++] = n;
		else
			unlinkat(sp->freefd, de->d_name, 0);
	}
	closedir(d);
}

static void *syncer_main(void *arg);
static void *dirsyncer_main(void *arg);

/* Stops the directory syncer after it has answered every group handed to it. */
static void
stop_dirsyncer(struct spool *sp)
{
	pthread_mutex_lock(&sp->mu);
	sp->dirstop = true;
	pthread_cond_signal(&sp->dircv);
	pthread_mutex_unlock(&sp->mu);
	pthread_join(sp->dirsyncer, NULL);
}

struct spool *
spool_open(const char *path, long uid, long gid, spool_committed_hook hook, void *hook_arg,
           char *err, size_t errlen)
{
	struct spool *sp = calloc(1, sizeof(*sp));

	if (!sp) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	sp->dirfd = sp->tmpfd = sp->queuefd = sp->corruptfd = sp->freefd = -1;
	sp->run_uid = uid >= 0 ? (uid_t)uid : geteuid();
	sp->use_syncfs = true;
	sp->hook = hook;
	sp->hook_arg = hook_arg;
	pthread_mutex_init(&sp->mu, NULL);
	/* the barrier's short wait (syncer_main) is timed on the monotonic clock: a clock set
	 * back must not hold delivery */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&sp->dircv, NULL);
	pthread_mutex_init(&sp->freemu, NULL);
	if (!(sp->path = strdup(path)) ||
	    !(sp->free_names = calloc(FREE_POOL_MAX, sizeof(*sp->free_names))))
		goto fail_errno;
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot make spool directory %.1800s: %s", path,
		         strerror(errno));
		goto fail;
	}
	sp->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0) {
		snprintf(err, errlen, "cannot open spool directory %s: %s", path, strerror(errno));
		goto fail;
	}
	if (syncfs(sp->dirfd) < 0 && errno == ENOSYS)
		sp->use_syncfs = false;
	char why[2048];
	if (spool_check_dir(sp->dirfd, path, uid, gid, why, sizeof(why)) < 0 ||
	    (sp->queuefd = open_subdir(sp, "queue", uid, gid, why, sizeof(why))) < 0 ||
	    (sp->tmpfd = open_subdir(sp, "tmp", uid, gid, why, sizeof(why))) < 0 ||
	    (sp->freefd = open_subdir(sp, "free", uid, gid, why, sizeof(why))) < 0 ||
	    (sp->corruptfd = open_subdir(sp, "corrupt", uid, gid, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "not starting: %s", why);
		goto fail;
	}
	load_free_pool(sp);
	if (pthread_create(&sp->dirsyncer, NULL, dirsyncer_main, sp) != 0) {
		snprintf(err, errlen, "cannot start the spool syncer thread");
		goto fail;
	}
	if (pthread_create(&sp->syncer, NULL, syncer_main, sp) != 0) {
		stop_dirsyncer(sp);
		snprintf(err, errlen, "cannot start the spool syncer thread");
		goto fail;
	}
	sp->started = true;
	return sp;
fail_errno:
	snprintf(err, errlen, "%s", strerror(errno));
fail:
	spool_close(sp);
	return NULL;
}

void
spool_stop(struct spool *sp)
{
	if (!sp || !sp->started)
		return;
	pthread_mutex_lock(&sp->mu);
	sp->stop = true;
	pthread_cond_signal(&sp->cv);
	pthread_mutex_unlock(&sp->mu);
	pthread_join(sp->syncer, NULL);
	stop_dirsyncer(sp); /* after the syncer: it hands the last groups over first */
	sp->started = false;
}

void
spool_close(struct spool *sp)
{
	if (!sp)
		return;
	spool_stop(sp);
	if (atomic_load(&sp->sync_failures))
		log_msg(LOG_LVL_ERROR,
		        "spool: %llu failed sync%s, %llu message%s refused after the first; "
		        "check the disk before the next start",
		        (unsigned long long)atomic_load(&sp->sync_failures),
		        atomic_load(&sp->sync_failures) == 1 ? "" : "s",
		        (unsigned long long)atomic_load(&sp->refused),
		        atomic_load(&sp->refused) == 1 ? "" : "s");
	if (sp->stats.groups)
		log_msg(LOG_LVL_INFO,
		        "spool: %llu message%s committed in %llu group commit%s (%.1f a sync), "
		        "%llu failed",
		        (unsigned long long)sp->stats.messages, sp->stats.messages == 1 ? "" : "s",
		        (unsigned long long)sp->stats.groups, sp->stats.groups == 1 ? "" : "s",
		        (double)sp->stats.messages / (double)sp->stats.groups,
		        (unsigned long long)sp->stats.failed);
	if (sp->tmpfd >= 0)
		close(sp->tmpfd);
	if (sp->queuefd >= 0)
		close(sp->queuefd);
	if (sp->corruptfd >= 0)
		close(sp->corruptfd);
	if (sp->freefd >= 0)
		close(sp->freefd);
	pthread_mutex_destroy(&sp->freemu);
	free(sp->free_names);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	pthread_mutex_destroy(&sp->mu);
	pthread_cond_destroy(&sp->cv);
	pthread_cond_destroy(&sp->dircv);
	free(sp->path);
	free(sp);
}

/* ---- writing a message ----------------------------------------------------------------- */

static void
make_id(struct spool *sp, char *id)
{
	struct timeval tv;
	uint64_t us;
	unsigned seq = (unsigned)atomic_fetch_add(&sp->seq, 1) & 0xfff;

	gettimeofday(&tv, NULL);
	us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	snprintf(id, SPOOL_ID_LEN + 1, "%013llX%03X", (unsigned long long)(us & 0xfffffffffffffull),
	         seq);
}

static bool take_free(struct spool *sp, uint64_t *n);

/* A data file for message id from free/ (see recycling above): free/<n> is renamed to
 * queue/<id> (never over an existing file) and opened to be rewritten from its start, not
 * emptied: spool_msg_commit() cuts it to the message's length.  Emptying it here freed its
 * block only for the message to allocate one again, and on a file system mounted with
 * `discard` and no journal (ext4) a freed block is discarded at once, inside the call: a
 * discard request to the disk on the worker's thread, 1-7 ms under load, for every
 * message.  -1 when there is none or it failed (the caller creates a file); a file taken
 * and found unusable is unlinked. */
static int
reuse_free(struct spool *sp, const char *id, uint64_t *size)
{
	char fname[24];
	struct stat st;
	uint64_t n;
	int fd;

	if (!take_free(sp, &n))
		return -1;
	snprintf(fname, sizeof(fname), "%llu", (unsigned long long)n);
	int rc = renameat2(sp->freefd, fname, sp->queuefd, id, RENAME_NOREPLACE);
	if (rc < 0 && errno == EINVAL && faccessat(sp->queuefd, id, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		rc = renameat(sp->freefd, fname, sp->queuefd, id); /* no RENAME_NOREPLACE here */
	if (rc < 0) {
		unlinkat(sp->freefd, fname, 0);
		return -1;
	}
	fd = openat(sp->queuefd, id, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)) {
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		unlinkat(sp->queuefd, id, 0);
	else
		*size = (uint64_t)st.st_size;
	return fd;
}

struct spool_msg *
spool_msg_new(struct spool *sp)
{
	struct spool_msg *m;
	int failed = spool_failed(sp);

	if (failed) {
		atomic_fetch_add(&sp->refused, 1);
		errno = failed;
		return NULL;
	}
	if (!(m = calloc(1, sizeof(*m))))
		return NULL;
	m->sp = sp;
	m->fd = -1;
	for (int tries = 0; tries < 8; tries++) {
		make_id(sp, m->id);
		if ((m->fd = reuse_free(sp, m->id, &m->recycled_size)) >= 0) {
			m->recycled = true;
			break;
		}
		m->fd = openat(sp->queuefd, m->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (m->fd >= 0 || errno != EEXIST)
			break;
	}
	if (m->fd < 0) {
		int e = errno;
		free(m);
		errno = e;
		return NULL;
	}
	return m;
}

const char *
spool_msg_id(const struct spool_msg *m)
{
	return m->id;
}

static void
flush_buf(struct spool_msg *m)
{
	size_t off = 0;

	while (off < m->blen && !m->err) {
		ssize_t n = write(m->fd, m->buf + off, m->blen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			m->err = n < 0 ? errno : EIO;
		else
			off += (size_t)n;
	}
	m->blen = 0;
}

void
spool_msg_write(struct spool_msg *m, const void *data, size_t len)
{
	if (m->err)
		return;
	m->written += len;
	if (!m->buf && !(m->buf = malloc(WBUF_SIZE))) {
		m->err = ENOMEM;
		return;
	}
	if (m->blen + len > WBUF_SIZE) {
		flush_buf(m);
		if (len >= WBUF_SIZE) {
			/* large pieces go straight through */
			const char *p = data;
			while (len > 0 && !m->err) {
				ssize_t n = write(m->fd, p, len);
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					m->err = n < 0 ? errno : EIO;
				else
					p += n, len -= (size_t)n;
			}
			return;
		}
	}
	memcpy(m->buf + m->blen, data, len);
	m->blen += len;
}

/* A recycled data file keeps what it held past this message until it is cut here
 * (reuse_free), before its sync: the sync makes the cut durable with the data, before
 * the envelope exists.  A message as long as the old file or longer has overwritten it
 * all: nothing to cut. */
static void
cut_recycled(struct spool_msg *m)
{
	if (!m->err && m->recycled && m->written < m->recycled_size &&
	    ftruncate(m->fd, (off_t)m->written) < 0)
		m->err = errno;
}

void
spool_msg_set_prefix(struct spool_msg *m, uint64_t prefix)
{
	m->prefix = prefix;
}

static void
discard(struct spool_msg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	unlinkat(m->sp->queuefd, m->id, 0);
	free(m->buf);
	spool_entry_free(m->env);
	free(m);
}

void
spool_msg_abort(struct spool_msg *m)
{
	if (m)
		discard(m);
}

static int write_envelope(struct spool *sp, struct spool_msg *m, bool sync);

/* Appends m to the syncer's list and wakes it; sp->mu is held. */
static void
enqueue_locked(struct spool *sp, struct spool_msg *m)
{
	if (sp->tail)
		sp->tail->next = m;
	else
		sp->head = m;
	sp->tail = m;
	pthread_cond_signal(&sp->cv);
}

void
spool_msg_commit(struct spool_msg *m, const struct spool_entry *env, spool_done_cb done, void *arg)
{
	struct spool *sp = m->sp;

	flush_buf(m);
	free(m->buf);
	m->buf = NULL;
	cut_recycled(m);
	m->done = done;
	m->arg = arg;
	if (!m->err) {
		if (!(m->env = entry_copy(env))) {
			m->err = ENOMEM;
		} else {
			memcpy(m->env->id, m->id, SPOOL_ID_LEN + 1);
			m->env->size = m->written;
			m->env->prefix_len = m->prefix;
			m->env->recovered = false;
		}
	}
	if (sp->use_syncfs) {
		/* the per-message file work happens here, in parallel across the sessions'
		 * threads; the syncer keeps only what the group shares (syncfs, renames and
		 * one directory fsync) */
		if (close(m->fd) < 0 && !m->err)
			m->err = errno;
		m->fd = -1;
		if (!m->err)
			m->err = write_envelope(sp, m, false);
		m->prepared = true;
	}
	pthread_mutex_lock(&sp->mu);
	enqueue_locked(sp, m);
	pthread_mutex_unlock(&sp->mu);
}

/* ---- the syncer ------------------------------------------------------------------------ */

/* Takes a recycled envelope file's number from free/; false when there is none. */
static bool
take_free(struct spool *sp, uint64_t *n)
{
	bool got = false;

	pthread_mutex_lock(&sp->freemu);
	if (sp->n_free > 0) {
		*n = sp->free_names[--sp->n_free];
		got = true;
	}
	pthread_mutex_unlock(&sp->freemu);
	return got;
}

/* Writes m's envelope into a recycled free/<n> (rewritten in place, then cut to length)
 * or, with none left, into a new tmp/<id>.env; m->envdir and m->envname say which.  With
 * sync, fsync()s it.  Returns 0 or an errno; on failure the file is gone. */
static int
write_envelope(struct spool *sp, struct spool_msg *m, bool sync)
{
	size_t len, off = 0;
	char *text = spool_envelope_format(m->env, &len);
	int fd = -1, err = 0;
	uint64_t n;

	if (!text)
		return EINVAL;
	while (fd < 0 && take_free(sp, &n)) {
		snprintf(m->envname, sizeof(m->envname), "%llu", (unsigned long long)n);
		m->envdir = sp->freefd;
		fd = openat(sp->freefd, m->envname, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0) {
		snprintf(m->envname, sizeof(m->envname), "%s.env", m->id);
		m->envdir = sp->tmpfd;
		fd = openat(sp->tmpfd, m->envname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		m->envname[0] = '\0';
		free(text);
		return errno;
	}
	while (off < len && !err) {
		ssize_t k = pwrite(fd, text + off, len - off, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			err = k < 0 ? errno : EIO;
		else
			off += (size_t)k;
	}
	/* a recycled file may be longer; cutting it keeps its (single) block */
	if (!err && ftruncate(fd, (off_t)len) < 0)
		err = errno;
	if (!err && sync && fsync(fd) < 0) {
		err = errno;
		sync_failed(sp, "fsync of an envelope", err);
	}
	if (close(fd) < 0 && !err)
		err = errno;
	free(text);
	if (err) {
		unlinkat(m->envdir, m->envname, 0);
		m->envname[0] = '\0';
	}
	return err;
}

/* Removes every file of a message that failed to commit, wherever it got to. */
static void
fail_files(struct spool *sp, struct spool_msg *m)
{
	char name[SPOOL_ID_LEN + 8];

	snprintf(name, sizeof(name), "%s.env", m->id);
	unlinkat(sp->queuefd, name, 0);
	unlinkat(sp->queuefd, m->id, 0);
	if (m->envname[0])
		unlinkat(m->envdir, m->envname, 0); /* ENOENT once renamed */
}

/* Fails every message of the group (and its barriers) not failed yet, with err. */
static void
fail_group(struct spool_msg *group, int err)
{
	for (struct spool_msg *m = group; m; m = m->next)
		if (!m->err)
			m->err = err;
}

/* Whether a group holds a message (else only spool_barrier() requests). */
static bool
group_has_messages(const struct spool_msg *group)
{
	for (const struct spool_msg *m = group; m; m = m->next)
		if (!m->barrier)
			return true;
	return false;
}

/* Steps 1 and 2 of a group commit, on the syncer thread: the group's files made durable
 * and its envelopes renamed into queue/.  A message that failed here has m->err set;
 * every other message (not a barrier) has its envelope in queue/, not yet durable. */
static void
sync_group(struct spool *sp, struct spool_msg *group)
{
	char name[SPOOL_ID_LEN + 8];
	int failed;

	/* 1. data and envelope of every message on disk: one syncfs() for the whole
	 * group where the kernel has it (per-file fsyncs cost a journal wait each) */
	bool per_file = !sp->use_syncfs, barriers = false;
	for (struct spool_msg *m = group; m; m = m->next) {
		if (m->barrier) {
			barriers = true;
			continue;
		}
		if (m->prepared)
			continue;
		if (!m->err && per_file && !spool_failed(sp) && fdatasync(m->fd) < 0) {
			m->err = errno;
			sync_failed(sp, "fdatasync of a message", m->err);
		}
		if (m->fd >= 0 && close(m->fd) < 0 && !m->err)
			m->err = errno;
		m->fd = -1;
		if (!m->err && !spool_failed(sp))
			m->err = write_envelope(sp, m, per_file);
	}
	if (!spool_failed(sp))
		metrics_spool_sync(group_has_messages(group) ? METRICS_SYNC_DATA
		                                             : METRICS_SYNC_BARRIER);
	if (spool_failed(sp)) {
		/* nothing synced now proves anything */
	} else if (!per_file && syncfs(sp->dirfd) < 0) {
		sync_failed(sp, "syncfs", errno);
	} else if (per_file && barriers) {
		sync(); /* no syncfs(): only the whole system's sync covers the barrier */
	}
	/* a failed sync fails the whole group: which of its files reached the disk is
	 * unknown */
	if ((failed = spool_failed(sp)))
		fail_group(group, failed);
	/* 2. the envelope into the queue beside its data: the commit record */
	for (struct spool_msg *m = group; m; m = m->next) {
		if (m->err || m->barrier)
			continue;
		snprintf(name, sizeof(name), "%s.env", m->id);
		if (renameat(m->envdir, m->envname, sp->queuefd, name) < 0) {
			m->err = errno;
			fail_files(sp, m);
			continue;
		}
		m->envname[0] = '\0';
	}
	sp->stats.groups++;
}

/* Step 3, on the directory syncer's thread: one fsync of queue/ makes the renames of
 * every group handed over so far durable (one or several: see the pipeline below), and
 * only then does each message's session learn that it is committed. */
static void
finish_groups(struct spool *sp, struct spool_msg *group)
{
	bool any = false;
	int direrr = 0, failed;

	for (struct spool_msg *m = group; m && !any; m = m->next)
		any = !m->err && !m->barrier;
	if (any)
		metrics_spool_sync(METRICS_SYNC_DIRECTORY);
	if (any && fsync(sp->queuefd) < 0) {
		direrr = errno;
		sync_failed(sp, "fsync", direrr);
	}
	/* a sync failed anywhere meanwhile (a delivery thread's): no 250 from here on */
	if ((failed = spool_failed(sp)))
		fail_group(group, failed);

	for (struct spool_msg *m = group; m;) {
		struct spool_msg *next = m->next;
		if (m->barrier) {
			m->done(m->arg, m->err);
			free(m);
			m = next;
			continue;
		}
		int err = m->err ? m->err : direrr;
		if (err) {
			fail_files(sp, m);
			sp->stats.failed++;
			log_msg(LOG_LVL_ERROR, "spool: message %s not committed: %s", m->id,
			        strerror(err));
			spool_entry_free(m->env);
			m->env = NULL;
		} else {
			sp->stats.messages++;
			if (sp->hook) {
				sp->hook(m->env, sp->hook_arg);
				m->env = NULL;
			}
		}
		if (m->done)
			m->done(m->arg, err);
		free(m->buf);
		spool_entry_free(m->env);
		free(m);
		m = next;
	}
}

/*
 * The pipeline.  A group commit needs two device flushes in order: the syncfs() that makes
 * the group's files durable, then, after the renames, the fsync() of queue/ that makes the
 * envelopes' names durable.  One thread doing both made the next group wait for the
 * directory fsync too: a message that arrived during it waited for it, then for its own
 * group's two flushes.  So the syncer thread does steps 1 and 2 and hands the group to the
 * directory syncer, which does step 3 and answers, while the syncer already takes the next
 * group and starts its syncfs().  The order each message needs is unchanged — its data
 * durable (its group's syncfs) before its envelope's rename, the rename before the fsync
 * of queue/, that fsync before its 250 —, and groups that finish step 2 while the
 * directory syncer is busy share its next fsync.
 */
static void
handoff_locked(struct spool *sp, struct spool_msg *group)
{
	struct spool_msg *last = group;

	while (last->next)
		last = last->next;
	if (sp->dtail)
		sp->dtail->next = group;
	else
		sp->dhead = group;
	sp->dtail = last;
	pthread_cond_signal(&sp->dircv);
}

static void *
syncer_main(void *arg)
{
	struct spool *sp = arg;
	pthread_setname_np(pthread_self(), "mxgate-syncer"); /* top(1), perf, /proc */

	for (;;) {
		struct spool_msg *group;

		pthread_mutex_lock(&sp->mu);
		while (!sp->head && !sp->stop)
			pthread_cond_wait(&sp->cv, &sp->mu);
		if (sp->head && !sp->stop && !group_has_messages(sp->head)) {
			/* Delivery asks for a sync after each batch of links, often just after a
			 * group ended: a syncfs() for the barrier alone was a fifth of them under
			 * steady traffic, each one a wait for the messages that came meanwhile.
			 * The barrier waits up to BARRIER_WAIT_MS for one to come and share it
			 * (the first enqueue ends the wait); a message never waits here. */
			struct timespec until = clock_deadline(CLOCK_MONOTONIC, BARRIER_WAIT_MS);
			pthread_cond_timedwait(&sp->cv, &sp->mu, &until);
		}
		group = sp->head;
		sp->head = sp->tail = NULL;
		bool stop = sp->stop;
		pthread_mutex_unlock(&sp->mu);
		if (group) {
			sync_group(sp, group);
			pthread_mutex_lock(&sp->mu);
			handoff_locked(sp, group);
			pthread_mutex_unlock(&sp->mu);
		} else if (stop) {
			return NULL;
		}
	}
}

static void *
dirsyncer_main(void *arg)
{
	struct spool *sp = arg;
	pthread_setname_np(pthread_self(), "mxgate-dirsync");

	for (;;) {
		struct spool_msg *groups;

		pthread_mutex_lock(&sp->mu);
		while (!sp->dhead && !sp->dirstop)
			pthread_cond_wait(&sp->dircv, &sp->mu);
		groups = sp->dhead;
		sp->dhead = sp->dtail = NULL;
		bool stop = sp->dirstop;
		pthread_mutex_unlock(&sp->mu);
		if (groups)
			finish_groups(sp, groups);
		else if (stop)
			return NULL;
	}
}

struct barrier_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
};

static void
barrier_done(void *arg, int err)
{
	struct barrier_wait *w = arg;

	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->err = err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int
spool_barrier(struct spool *sp)
{
	struct barrier_wait w = {.done = false};
	struct spool_msg *m = calloc(1, sizeof(*m));

	if (!m)
		return -1;
	if ((w.err = spool_failed(sp))) {
		free(m);
		errno = w.err;
		return -1;
	}
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	m->sp = sp;
	m->fd = -1;
	m->barrier = true;
	m->done = barrier_done;
	m->arg = &w;
	pthread_mutex_lock(&sp->mu);
	if (sp->stop || !sp->started) {
		pthread_mutex_unlock(&sp->mu);
		free(m);
		pthread_mutex_destroy(&w.mu);
		pthread_cond_destroy(&w.cv);
		if (syncfs(sp->dirfd) == 0) /* no syncer: do it here */
			return 0;
		w.err = errno;
		sync_failed(sp, "syncfs", w.err);
		errno = w.err;
		return -1;
	}
	enqueue_locked(sp, m);
	pthread_mutex_unlock(&sp->mu);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	if (w.err) {
		errno = w.err;
		return -1;
	}
	return 0;
}

int
spool_dev(const struct spool *sp, dev_t *dev)
{
	struct stat st;

	if (fstat(sp->dirfd, &st) < 0)
		return -1;
	*dev = st.st_dev;
	return 0;
}

/* ---- recovery, removal, scanning --------------------------------------------------------- */

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids of queue/ that have an envelope, sorted; orphaned data files are listed in
 * *orphans.  Returns the count or -1. */
static long
list_queue(int qfd, char ***out, char ***orphans, size_t *n_orphans)
{
	int fd = dup(qfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	char **ids = NULL, **data = NULL;
	size_t n = 0, cap = 0, nd = 0, capd = 0;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		bool env = len == SPOOL_ID_LEN + 4 &&
		           strcmp(de->d_name + SPOOL_ID_LEN, ".env") == 0 &&
		           is_hex_id(de->d_name, SPOOL_ID_LEN);
		if (!env && !is_hex_id(de->d_name, len) &&
		    !(len == SPOOL_ID_LEN + 6 && strcmp(de->d_name + SPOOL_ID_LEN, ".state") == 0 &&
		      is_hex_id(de->d_name, SPOOL_ID_LEN)))
			continue;
		/* a partial list would make queued messages' data look orphaned: all or
		 * nothing */
		char *name = strndup(de->d_name, SPOOL_ID_LEN);
		if (!name ||
		    (env ? VEC_RESERVE(ids, cap, n + 1) : VEC_RESERVE(data, capd, nd + 1)) < 0) {
			free(name);
			closedir(d);
			for (size_t i = 0; i < n; i++)
				free(ids[i]);
			for (size_t i = 0; i < nd; i++)
				free(data[i]);
			free(ids);
			free(data);
			errno = ENOMEM;
			return -1;
		}
		if (env)
			ids[n++] = name;
		else
			data[nd++] = name;
	}
	closedir(d);
	if (n > 1)
		qsort(ids, n, sizeof(*ids), name_cmp);
	/* data files without an envelope: removal interrupted by a crash */
	size_t no = 0;
	for (size_t i = 0; i < nd; i++) {
		if (n > 0 && bsearch(&data[i], ids, n, sizeof(*ids), name_cmp)) {
			free(data[i]);
			continue;
		}
		data[no++] = data[i];
	}
	*out = ids;
	*orphans = data;
	*n_orphans = no;
	return (long)n;
}

/* TIME in a state line: a number, then the end or a space and the rest. */
static bool
state_number(const char **p, const char *end, uint64_t *out)
{
	const char *q = *p;

	while (q < end && *q != ' ')
		q++;
	if (!parse_u64(*p, (size_t)(q - *p), out))
		return false;
	*p = q < end ? q + 1 : q;
	return true;
}

void
spool_state_apply(struct spool_entry *e, const char *buf, size_t len)
{
	size_t off = 0;

	for (;;) {
		const char *line = buf + off, *nl = memchr(line, '\n', len - off);
		if (!nl)
			break; /* the end, or a line torn by a crash: never trusted */
		off += (size_t)(nl - line) + 1;
		if (memchr(line, '\0', (size_t)(nl - line)))
			continue;
		const char *p;
		uint64_t idx, when;
		bool delivered = false;
		if ((size_t)(nl - line) >= 8 && memcmp(line, "attempt ", 8) == 0) {
			p = line + 8;
			if (!state_number(&p, nl, &when) || when > INT64_MAX)
				continue;
			e->attempts++;
			e->last_attempt = (time_t)when;
			free(e->last_error);
			e->last_error = p < nl && !(nl - p == 2 && memcmp(p, "ok", 2) == 0)
			                        ? copy_bytes(p, (size_t)(nl - p))
			                        : NULL;
			continue;
		}
		if (nl - line == 4 && memcmp(line, "hold", 4) == 0) {
			e->held = true;
			continue;
		}
		if (nl - line == 7 && memcmp(line, "release", 7) == 0) {
			e->held = false;
			continue;
		}
		if ((size_t)(nl - line) >= 10 && memcmp(line, "delivered ", 10) == 0) {
			delivered = true;
			p = line + 10;
		} else if ((size_t)(nl - line) >= 7 && memcmp(line, "failed ", 7) == 0) {
			p = line + 7;
		} else {
			continue;
		}
		if (!state_number(&p, nl, &idx) || idx >= e->n_rcpts ||
		    !state_number(&p, nl, &when))
			continue;
		if (!e->rcpt_state && !(e->rcpt_state = calloc(e->n_rcpts, 1)))
			continue;
		if (!e->rcpt_note && !(e->rcpt_note = calloc(e->n_rcpts, sizeof(char *))))
			continue;
		e->rcpt_state[idx] = delivered ? SPOOL_RCPT_DELIVERED : SPOOL_RCPT_FAILED;
		free(e->rcpt_note[idx]);
		e->rcpt_note[idx] = p < nl ? copy_bytes(p, (size_t)(nl - p)) : NULL;
	}
}

/* Reads a queued message; only files of owner are trusted (anyone else's were planted:
 * the spool's directories are the run user's alone, see spool_check_dir()). */
static struct spool_entry *
load_entry(int qfd, const char *id, uid_t owner, char *why, size_t whylen)
{
	char name[SPOOL_ID_LEN + 8];
	struct spool_entry *e;
	struct stat st;
	char *text;
	size_t len;
	uid_t fowner;

	snprintf(name, sizeof(name), "%s.env", id);
	if (!(text = read_small(qfd, name, &len, &fowner))) {
		snprintf(why, whylen, "unreadable envelope: %s", strerror(errno));
		return NULL;
	}
	if (fowner != owner) {
		snprintf(why, whylen,
		         "envelope owned by uid %u, not by uid %u that mxgate runs as (planted "
		         "by another user?)",
		         (unsigned)fowner, (unsigned)owner);
		free(text);
		return NULL;
	}
	e = spool_envelope_parse(text, len);
	free(text);
	if (!e) {
		snprintf(why, whylen, "malformed envelope");
		return NULL;
	}
	if (strcmp(e->id, id) != 0) {
		snprintf(why, whylen, "envelope names id %s", e->id);
		spool_entry_free(e);
		return NULL;
	}
	if (fstatat(qfd, id, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != e->size) {
		snprintf(why, whylen, "data file missing or not %llu bytes",
		         (unsigned long long)e->size);
		spool_entry_free(e);
		return NULL;
	}
	if (st.st_uid != owner) {
		snprintf(why, whylen,
		         "data file owned by uid %u, not by uid %u that mxgate runs as (planted "
		         "by another user?)",
		         (unsigned)st.st_uid, (unsigned)owner);
		spool_entry_free(e);
		return NULL;
	}
	snprintf(name, sizeof(name), "%s.state", id);
	errno = 0;
	if ((text = read_small(qfd, name, &len, &fowner))) {
		e->has_state = true;
		if (fowner != owner) {
			snprintf(why, whylen,
			         "delivery state owned by uid %u, not by uid %u that mxgate runs "
			         "as (planted by another user?)",
			         (unsigned)fowner, (unsigned)owner);
			free(text);
			spool_entry_free(e);
			return NULL;
		}
		spool_state_apply(e, text, len);
		free(text);
	} else if (errno != ENOENT) {
		e->has_state = true; /* there but unreadable: still remove it with the rest */
	}
	return e;
}

size_t
spool_recover(struct spool *sp)
{
	char **ids = NULL, **orphans = NULL;
	size_t n_orphans = 0, handed = 0;
	long n;
	int fd = dup(sp->tmpfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	size_t cleaned = 0;

	if (d) {
		while ((de = readdir(d)))
			if (de->d_name[0] != '.' && unlinkat(sp->tmpfd, de->d_name, 0) == 0)
				cleaned++;
		closedir(d);
	} else if (fd >= 0) {
		close(fd);
	}
	if (cleaned)
		log_msg(LOG_LVL_INFO,
		        "spool: removed %zu unfinished files from %s/tmp (never "
		        "acknowledged)",
		        cleaned, sp->path);
	n = list_queue(sp->queuefd, &ids, &orphans, &n_orphans);
	if (n < 0) {
		log_msg(LOG_LVL_ERROR, "spool: cannot read %s/queue: %s", sp->path,
		        strerror(errno));
		return 0;
	}
	for (size_t i = 0; i < n_orphans; i++) {
		/* removal interrupted by a crash: the envelope went first */
		char st[SPOOL_ID_LEN + 8];
		snprintf(st, sizeof(st), "%s.state", orphans[i]);
		unlinkat(sp->queuefd, orphans[i], 0);
		unlinkat(sp->queuefd, st, 0);
		free(orphans[i]);
	}
	free(orphans);
	for (long i = 0; i < n; i++) {
		char why[128];
		struct spool_entry *e =
		        load_entry(sp->queuefd, ids[i], sp->run_uid, why, sizeof(why));
		if (!e) {
			char name[SPOOL_ID_LEN + 8];
			snprintf(name, sizeof(name), "%s.env", ids[i]);
			renameat(sp->queuefd, ids[i], sp->corruptfd, ids[i]);
			renameat(sp->queuefd, name, sp->corruptfd, name);
			snprintf(name, sizeof(name), "%s.state", ids[i]);
			renameat(sp->queuefd, name, sp->corruptfd, name); /* ENOENT: none */
			log_msg(LOG_LVL_ERROR,
			        "spool: queued message %s moved to %s/corrupt: %s; inspect it by "
			        "hand",
			        ids[i], sp->path, why);
		} else {
			e->recovered = true;
			handed++;
			if (sp->hook)
				sp->hook(e, sp->hook_arg);
			else
				spool_entry_free(e);
		}
		free(ids[i]);
	}
	free(ids);
	if (handed)
		log_msg(LOG_LVL_INFO, "spool: %zu queued messages recovered for delivery", handed);
	return handed;
}

/* Moves queue/<name> (an envelope, or a data file no Maildir links) into free/ for
 * reuse; false when the pool is full or it failed. */
static bool
recycle_envelope(struct spool *sp, const char *name)
{
	char fname[24];
	uint64_t n;

	pthread_mutex_lock(&sp->freemu);
	bool room = sp->n_free < FREE_POOL_MAX;
	n = sp->next_free_name++;
	pthread_mutex_unlock(&sp->freemu);
	if (!room)
		return false;
	snprintf(fname, sizeof(fname), "%llu", (unsigned long long)n);
	if (renameat(sp->queuefd, name, sp->freefd, fname) < 0)
		return false;
	pthread_mutex_lock(&sp->freemu);
	if (sp->n_free < FREE_POOL_MAX) {
		sp->free_names[sp->n_free++] = n;
		n = UINT64_MAX;
	}
	pthread_mutex_unlock(&sp->freemu);
	if (n != UINT64_MAX)
		unlinkat(sp->freefd, fname, 0); /* the pool filled up meanwhile */
	return true;
}

int
spool_remove(struct spool *sp, const struct spool_entry *e)
{
	char name[SPOOL_ID_LEN + 8];
	const char *id = e->id;
	int rc = 0;

	snprintf(name, sizeof(name), "%s.env", id);
	if (!recycle_envelope(sp, name) && unlinkat(sp->queuefd, name, 0) < 0 && errno != ENOENT)
		rc = -1;
	snprintf(name, sizeof(name), "%s.state", id);
	if (e->has_state && unlinkat(sp->queuefd, name, 0) < 0 && errno != ENOENT)
		rc = -1;
	struct stat st;
	bool alone = fstatat(sp->queuefd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	             S_ISREG(st.st_mode) && st.st_nlink == 1;
	if (!(alone && recycle_envelope(sp, id)) && unlinkat(sp->queuefd, id, 0) < 0 &&
	    errno != ENOENT)
		rc = -1;
	return rc;
}

int
spool_sync(struct spool *sp)
{
	int err = spool_failed(sp);

	if (!err && fsync(sp->queuefd) == 0)
		return 0;
	if (!err)
		sync_failed(sp, "fsync", err = errno);
	errno = err;
	return -1;
}

int
spool_state_append(struct spool *sp, struct spool_entry *e, const char *line)
{
	const char *id = e->id;
	char name[SPOOL_ID_LEN + 8];
	size_t len = strlen(line);
	int fd, err = 0;

	if (strchr(line, '\r') || len == 0) {
		errno = EINVAL;
		return -1;
	}
	snprintf(name, sizeof(name), "%s.state", id);
	fd = openat(sp->queuefd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	            0600);
	if (fd < 0)
		return -1;
	e->has_state = true; /* from here on, a removal must look for it */
	char *buf = malloc(len + 1);
	if (!buf) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	memcpy(buf, line, len);
	buf[len] = '\n';
	/* in the failed state the line is still written (it survives a restart of the
	 * process, if not of the machine) but promises nothing */
	if (write(fd, buf, len + 1) != (ssize_t)(len + 1))
		err = errno ? errno : EIO;
	else if (!(err = spool_failed(sp)) && fsync(fd) < 0)
		sync_failed(sp, "fsync of a delivery state", err = errno);
	free(buf);
	close(fd);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

int
spool_inject(struct spool *sp, struct spool_entry *e, const char *data, size_t len)
{
	struct spool_msg *m = spool_msg_new(sp);
	char name[SPOOL_ID_LEN + 8];
	int err = 0;

	if (!m)
		return -1;
	spool_msg_write(m, data, len);
	flush_buf(m);
	free(m->buf);
	m->buf = NULL;
	cut_recycled(m);
	memcpy(e->id, m->id, SPOOL_ID_LEN + 1);
	e->size = m->written;
	e->prefix_len = 0;
	e->received = time(NULL);
	if (!(m->env = entry_copy(e)))
		err = ENOMEM;
	if (!err && !m->err && fdatasync(m->fd) < 0)
		sync_failed(sp, "fdatasync of a bounce", err = errno);
	if (!err && m->err)
		err = m->err;
	close(m->fd);
	m->fd = -1;
	if (!err)
		err = write_envelope(sp, m, true);
	snprintf(name, sizeof(name), "%s.env", m->id);
	if (!err && renameat(m->envdir, m->envname, sp->queuefd, name) < 0)
		err = errno;
	else if (!err)
		m->envname[0] = '\0';
	if (!err && fsync(sp->queuefd) < 0)
		sync_failed(sp, "fsync", err = errno);
	if (!err)
		err = spool_failed(sp); /* a sync failed elsewhere meanwhile */
	if (err)
		fail_files(sp, m);
	spool_entry_free(m->env);
	free(m);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

int
spool_open_data(struct spool *sp, const char *id)
{
	return openat(sp->queuefd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

int
spool_queue_fd(const struct spool *sp)
{
	return sp->queuefd;
}

long
spool_scan(const char *path, void (*fn)(const struct spool_entry *e, void *arg), void *arg,
           char *err, size_t errlen)
{
	char qpath[4096];
	char **ids = NULL, **orphans = NULL;
	size_t n_orphans = 0;
	long n, count = 0;
	int qfd;

	snprintf(qpath, sizeof(qpath), "%s/queue", path);
	qfd = open(qpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (qfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", qpath, strerror(errno));
		return -1;
	}
	/* offline, the queue's owner is the run user */
	struct stat qst;
	if (fstat(qfd, &qst) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", qpath, strerror(errno));
		close(qfd);
		return -1;
	}
	n = list_queue(qfd, &ids, &orphans, &n_orphans);
	for (size_t i = 0; i < n_orphans; i++)
		free(orphans[i]);
	free(orphans);
	for (long i = 0; i < n; i++) {
		char why[128];
		struct spool_entry *e = load_entry(qfd, ids[i], qst.st_uid, why, sizeof(why));
		if (e) {
			fn(e, arg);
			spool_entry_free(e);
			count++;
		}
		free(ids[i]);
	}
	free(ids);
	close(qfd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read %s", qpath);
		return -1;
	}
	return count;
}

const char *
spool_path(const struct spool *sp)
{
	return sp->path;
}
