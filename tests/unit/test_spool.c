/* The spool's files: where a message lives at each step, envelope recycling, recovery. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/spool.h"

static char root[256];

static void
make_root(void)
{
	snprintf(root, sizeof(root), "/tmp/mxgate-spool-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
}

static void
remove_root(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
}

static size_t
count_in(const char *sub, const char *suffix)
{
	char path[512];
	size_t n = 0;
	snprintf(path, sizeof(path), "%s/%s", root, sub);
	DIR *d = opendir(path);
	cr_assert_not_null(d, "%s: %s", path, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name), sl = suffix ? strlen(suffix) : 0;
		if (de->d_name[0] == '.')
			continue;
		if (suffix && (l < sl || strcmp(de->d_name + l - sl, suffix) != 0))
			continue;
		n++;
	}
	closedir(d);
	return n;
}

struct collected {
	struct spool_entry *e[16];
	size_t n;
};

static void
collect(struct spool_entry *e, void *arg)
{
	struct collected *c = arg;
	cr_assert_lt(c->n, 16);
	c->e[c->n++] = e;
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, err;
};

static void
on_done(void *arg, int err)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	w->err = err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Receives one message through the session path and waits for its commit. */
static void
commit_one(struct spool *sp, const char *rcpt, const char *body, char *id_out)
{
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	char rcptbuf[256], sender[] = "s@example.net", connector[] = "Default",
	                   client[] = "192.0.2.1", helo[] = "mx.example.net";
	snprintf(rcptbuf, sizeof(rcptbuf), "%s", rcpt);
	char *rcpts[] = {rcptbuf};
	struct spool_entry env = {.received = 1700000000,
	                          .sender = sender,
	                          .rcpts = rcpts,
	                          .n_rcpts = 1,
	                          .connector = connector,
	                          .client = client,
	                          .helo = helo};
	struct spool_msg *m = spool_msg_new(sp);
	cr_assert_not_null(m, "spool_msg_new: %s", strerror(errno));
	snprintf(id_out, SPOOL_ID_LEN + 1, "%s", spool_msg_id(m));
	spool_msg_write(m, body, strlen(body));
	spool_msg_commit(m, &env, on_done, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	cr_assert_eq(w.err, 0, "commit: %s", strerror(w.err));
}

static int
remove_id(struct spool *sp, const char *id)
{
	struct spool_entry e = {.has_state = false};
	snprintf(e.id, sizeof(e.id), "%s", id);
	return spool_remove(sp, &e);
}

static char *
slurp(const char *sub, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/%s", root, sub, name);
	FILE *fp = fopen(path, "r");
	cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
	static char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = 0;
	fclose(fp);
	return buf;
}

Test(spool, envelopes_are_recycled_and_rewritten_exactly, .init = make_root, .fini = remove_root)
{
	char err[256], id1[SPOOL_ID_LEN + 1], id2[SPOOL_ID_LEN + 1], name[64];
	struct collected got = {0};
	struct spool *sp = spool_open(root, -1, -1, collect, &got, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);

	/* a long recipient first, so the recycled file is longer than the next envelope */
	commit_one(sp, "a-very-long-local-part-to-make-the-envelope-long@example.com",
	           "Subject: one\r\n\r\nbody\r\n", id1);
	cr_assert_eq(count_in("queue", ".env"), 1);
	cr_assert_eq(count_in("tmp", NULL), 0);
	cr_assert_eq(remove_id(sp, id1), 0);
	cr_assert_eq(spool_sync(sp), 0);
	cr_assert_eq(count_in("queue", NULL), 0, "the message left the queue");
	cr_assert_eq(count_in("free", NULL), 2, "its envelope and data file wait in free/");

	commit_one(sp, "b@example.com", "Subject: two\r\n\r\nbody\r\n", id2);
	cr_assert_eq(count_in("free", NULL), 0, "both free files were taken");
	cr_assert_eq(count_in("tmp", NULL), 0, "no new file was made for it");
	snprintf(name, sizeof(name), "%s.env", id2);
	char *text = slurp("queue", name);
	cr_assert_not_null(strstr(text, "rcpt b@example.com\nend\n"), "%s", text);
	cr_assert_null(strstr(text, "a-very-long"), "old bytes left behind:\n%s", text);
	cr_assert_eq(strcmp(text + strlen(text) - 4, "end\n"), 0, "%s", text);
	spool_close(sp);
	for (size_t i = 0; i < got.n; i++)
		spool_entry_free(got.e[i]);

	/* after a restart the queued message comes back whole */
	struct collected again = {0};
	sp = spool_open(root, -1, -1, collect, &again, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	cr_assert_eq(spool_recover(sp), 1);
	cr_assert_str_eq(again.e[0]->id, id2);
	cr_assert_str_eq(again.e[0]->rcpts[0], "b@example.com");
	spool_close(sp);
	spool_entry_free(again.e[0]);
}

Test(spool, recovery_drops_unacknowledged_data_and_doubly_linked_free_files, .init = make_root,
     .fini = remove_root)
{
	char err[256], id[SPOOL_ID_LEN + 1], path[512], path2[512];
	struct collected got = {0};
	struct spool *sp = spool_open(root, -1, -1, collect, &got, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	commit_one(sp, "c@example.com", "Subject: kept\r\n\r\nbody\r\n", id);
	/* a message still arriving when the process died: its data, no envelope */
	const char *partial = "0000000000001ABC";
	spool_close(sp);
	for (size_t i = 0; i < got.n; i++)
		spool_entry_free(got.e[i]);
	snprintf(path, sizeof(path), "%s/queue/%s", root, partial);
	FILE *fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs("Subject: half", fp);
	fclose(fp);
	cr_assert_eq(access(path, F_OK), 0, "the partial message is in queue/");

	/* a free/ file that is also a queued envelope (a torn rename) must never be reused */
	snprintf(path, sizeof(path), "%s/queue/%s.env", root, id);
	snprintf(path2, sizeof(path2), "%s/free/77", root);
	cr_assert_eq(link(path, path2), 0, "%s", strerror(errno));

	struct collected again = {0};
	sp = spool_open(root, -1, -1, collect, &again, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	cr_assert_eq(access(path2, F_OK), -1, "the doubly linked free file was dropped");
	cr_assert_eq(spool_recover(sp), 1);
	cr_assert_str_eq(again.e[0]->id, id);
	snprintf(path, sizeof(path), "%s/queue/%s", root, partial);
	cr_assert_eq(access(path, F_OK), -1, "the unacknowledged data was removed");
	/* a new message gets a new name, never free/77 again */
	char id3[SPOOL_ID_LEN + 1];
	commit_one(sp, "d@example.com", "Subject: three\r\n\r\nbody\r\n", id3);
	cr_assert_eq(remove_id(sp, id3), 0);
	cr_assert_eq(count_in("free", NULL), 2);
	snprintf(path, sizeof(path), "%s/free/78", root);
	cr_assert_eq(access(path, F_OK), 0, "free names continue after the highest seen");
	cr_assert_str_eq(again.e[0]->rcpts[0], "c@example.com");
	snprintf(path, sizeof(path), "%s/queue/%s.env", root, id);
	cr_assert_not_null(strstr(slurp("queue", strrchr(path, '/') + 1), "rcpt c@example.com"));
	spool_close(sp);
	for (size_t i = 0; i < again.n; i++)
		spool_entry_free(again.e[i]);
}

static ino_t
inode_of(const char *sub, const char *name)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s/%s", root, sub, name);
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	return st.st_ino;
}

/* Relay mode (issue 15.3): data files are recycled with the envelopes, so steady traffic
 * makes no new inode: after a first message, every later one is written into the same
 * two files, and each data file holds exactly its own message. */
Test(spool, data_files_are_recycled_and_hold_only_their_message, .init = make_root,
     .fini = remove_root)
{
	char err[256], id[SPOOL_ID_LEN + 1], name[64];
	struct collected got = {0};
	struct spool *sp = spool_open(root, -1, -1, collect, &got, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	ino_t first[2];

	/* a long first message, so a recycled file is longer than the next one */
	commit_one(
	        sp, "a@example.com",
	        "Subject: long\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
	        id);
	snprintf(name, sizeof(name), "%s.env", id);
	first[0] = inode_of("queue", id);
	first[1] = inode_of("queue", name);
	cr_assert_eq(remove_id(sp, id), 0);
	for (int i = 0; i < 12; i++) { /* collect() keeps 16 */
		char body[64];
		snprintf(body, sizeof(body), "Subject: %d\r\n\r\nbody\r\n", i);
		commit_one(sp, "b@example.com", body, id);
		snprintf(name, sizeof(name), "%s.env", id);
		ino_t d = inode_of("queue", id), e = inode_of("queue", name);
		cr_assert((d == first[0] || d == first[1]) && (e == first[0] || e == first[1]) &&
		                  d != e,
		          "message %d made a new inode", i);
		cr_assert_str_eq(slurp("queue", id), body, "old bytes left behind");
		cr_assert_eq(count_in("tmp", NULL), 0);
		cr_assert_eq(remove_id(sp, id), 0);
		cr_assert_eq(count_in("queue", NULL), 0);
		cr_assert_eq(count_in("free", NULL), 2);
	}
	spool_close(sp);
	for (size_t i = 0; i < got.n; i++)
		spool_entry_free(got.e[i]);
}

/* A recycled data file is rewritten from its start, not emptied when it is taken: emptying
 * it freed its block only for the message to allocate one again, and ext4 without a
 * journal mounted with `discard` discards a freed block inside the call, on the session's
 * thread (issue 15, target 1).  Until the commit the file keeps its old length and block;
 * the commit cuts it to the message, and a bounce (spool_inject) is cut the same way. */
Test(spool, a_recycled_data_file_keeps_its_block_until_the_commit_cuts_it, .init = make_root,
     .fini = remove_root)
{
	char err[256], id[SPOOL_ID_LEN + 1], path[512];
	char sender[] = "", rcpt[] = "c@example.com", *rcpts[] = {rcpt};
	struct collected got = {0};
	struct spool *sp = spool_open(root, -1, -1, collect, &got, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	char longbody[3000];
	memset(longbody, 'x', sizeof(longbody) - 1);
	longbody[sizeof(longbody) - 1] = '\0';
	struct stat st;

	commit_one(sp, "a@example.com", longbody, id);
	cr_assert_eq(remove_id(sp, id), 0); /* its data and envelope go to free/ */
	struct spool_msg *m = spool_msg_new(sp);
	cr_assert_not_null(m, "spool_msg_new: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/queue/%s", root, spool_msg_id(m));
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_gt(st.st_size, 0, "the recycled file was emptied when taken");
	cr_assert_gt(st.st_blocks, 0, "the recycled file's block was freed when taken");
	spool_msg_abort(m);

	/* the other recycled file carries a bounce: cut to it alone */
	struct spool_entry e = {
	        .received = 1700000000, .sender = sender, .rcpts = rcpts, .n_rcpts = 1};
	const char bounce[] = "Subject: bounce\r\n\r\nshort\r\n";
	cr_assert_eq(spool_inject(sp, &e, bounce, sizeof(bounce) - 1), 0);
	cr_assert_str_eq(slurp("queue", e.id), bounce, "old bytes left behind a bounce");
	cr_assert_eq(remove_id(sp, e.id), 0);

	/* and a message through the session path: cut to it alone */
	commit_one(sp, "b@example.com", "Subject: short\r\n\r\nbody\r\n", id);
	cr_assert_str_eq(slurp("queue", id), "Subject: short\r\n\r\nbody\r\n",
	                 "old bytes left behind a message");
	snprintf(path, sizeof(path), "%s/queue/%s", root, id);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, (off_t)strlen("Subject: short\r\n\r\nbody\r\n"));

	/* a message longer than the file it takes overwrites all of it: exact too */
	cr_assert_eq(remove_id(sp, id), 0);
	longbody[0] = 'L';
	commit_one(sp, "d@example.com", longbody, id);
	cr_assert_str_eq(slurp("queue", id), longbody);
	spool_close(sp);
	for (size_t i = 0; i < got.n; i++)
		spool_entry_free(got.e[i]);
}

/* A data file with another link (a Maildir delivery's hard link) is never recycled: it is
 * somebody's delivered mail.  And a recycled data file left in queue/ without its envelope
 * (a crash before the commit) is not a message: recovery removes it. */
Test(spool, linked_data_is_not_recycled_and_a_recycled_file_without_envelope_is_dropped,
     .init = make_root, .fini = remove_root)
{
	char err[256], id[SPOOL_ID_LEN + 1], path[512], link_path[512];
	struct collected got = {0};
	struct spool *sp = spool_open(root, -1, -1, collect, &got, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);

	commit_one(sp, "a@example.com", "Subject: linked\r\n\r\nbody\r\n", id);
	snprintf(path, sizeof(path), "%s/queue/%s", root, id);
	snprintf(link_path, sizeof(link_path), "%s/delivered", root);
	cr_assert_eq(link(path, link_path), 0, "%s", strerror(errno));
	cr_assert_eq(remove_id(sp, id), 0);
	cr_assert_eq(count_in("free", NULL), 1, "only the envelope is kept");
	cr_assert_not_null(strstr(slurp(".", "delivered"), "Subject: linked"));

	/* a message begun in the recycled file (spool_msg_new renamed it to queue/<id>) and
	 * never committed: what a crash leaves is that file, without an envelope */
	spool_close(sp);
	DIR *d = opendir(strcat(strcpy(path, root), "/free"));
	struct dirent *de;
	char from[1024];
	while ((de = readdir(d)) && de->d_name[0] == '.')
		;
	cr_assert_not_null(de);
	snprintf(from, sizeof(from), "%s/free/%s", root, de->d_name);
	closedir(d);
	snprintf(path, sizeof(path), "%s/queue/0000000000001ABD", root);
	cr_assert_eq(rename(from, path), 0, "%s", strerror(errno));
	FILE *fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs("Subject: half", fp);
	fclose(fp);

	struct collected again = {0};
	sp = spool_open(root, -1, -1, collect, &again, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	cr_assert_eq(spool_recover(sp), 0);
	cr_assert_eq(access(path, F_OK), -1, "the data without envelope was removed");
	cr_assert_not_null(strstr(slurp(".", "delivered"), "Subject: linked"));
	spool_close(sp);
	for (size_t i = 0; i < got.n; i++)
		spool_entry_free(got.e[i]);
}

/* ---- trust (spool.h): directories and files others could write are refused ---------- */

#define NOBODY 65534

static void
chmod_sub(const char *sub, mode_t mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s%s%s", root, sub[0] ? "/" : "", sub);
	cr_assert_eq(chmod(path, mode), 0, "%s: %s", path, strerror(errno));
}

static void
chown_sub(const char *sub, uid_t uid)
{
	char path[512];
	snprintf(path, sizeof(path), "%s%s%s", root, sub[0] ? "/" : "", sub);
	cr_assert_eq(chown(path, uid, (gid_t)-1), 0, "%s: %s", path, strerror(errno));
}

/* Opens and closes the spool once, so that every directory exists. */
static void
make_spool(void)
{
	char err[512];
	struct spool *sp = spool_open(root, -1, -1, NULL, NULL, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	spool_close(sp);
}

Test(spool, directories_writable_by_others_are_refused_with_the_chmod_that_fixes_them,
     .init = make_root, .fini = remove_root)
{
	static const struct {
		const char *sub;
		mode_t mode;
		const char *who;
	} cases[] = {
	        {"", 0777, "everyone"},       {"", 0770, "its group"},
	        {"queue", 0733, "everyone"},  {"tmp", 0720, "its group"},
	        {"free", 0702, "everyone"},   {"corrupt", 0777, "everyone"},
	        {"queue", 01777, "everyone"}, /* sticky does not help: queue/ is renamed away */
	};
	make_spool();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[512], want[600], path[512];
		snprintf(path, sizeof(path), "%s%s%s", root, cases[i].sub[0] ? "/" : "",
		         cases[i].sub);
		chmod_sub(cases[i].sub, cases[i].mode);
		struct spool *sp = spool_open(root, -1, -1, NULL, NULL, err, sizeof(err));
		cr_assert_null(sp, "case %zu: a spool with %s mode %o was opened", i, path,
		               cases[i].mode);
		snprintf(want, sizeof(want), "spool directory %s is writable by %s", path,
		         cases[i].who);
		cr_assert_not_null(strstr(err, want), "case %zu: %s", i, err);
		snprintf(want, sizeof(want), "Fix: chmod 0700 %s ", path);
		cr_assert_not_null(strstr(err, want), "case %zu: %s", i, err);
		chmod_sub(cases[i].sub, 0700);
		make_spool(); /* fixed as the error says: opens again */
	}
}

Test(spool, directories_are_made_0700_whatever_the_umask, .init = make_root, .fini = remove_root)
{
	static const char *const subs[] = {"queue", "tmp", "free", "corrupt"};
	char path[512];
	struct stat st;
	mode_t old = umask(0);

	cr_assert_eq(rmdir(root), 0);
	make_spool();
	umask(old);
	cr_assert_eq(stat(root, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700, "%s: %o", root, st.st_mode & 07777);
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", root, subs[i]);
		cr_assert_eq(stat(path, &st), 0);
		cr_assert_eq(st.st_mode & 07777, 0700, "%s: %o", path, st.st_mode & 07777);
	}
}

Test(spool, a_queue_replaced_by_a_symlink_is_refused, .init = make_root, .fini = remove_root)
{
	char err[512], path[512], target[512];

	make_spool();
	snprintf(path, sizeof(path), "%s/queue", root);
	snprintf(target, sizeof(target), "%s/queue.real", root);
	cr_assert_eq(rename(path, target), 0);
	cr_assert_eq(symlink(target, path), 0);
	cr_assert_null(spool_open(root, -1, -1, NULL, NULL, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "not a symbolic link"), "%s", err);
}

Test(spool, directories_of_another_user_are_refused_with_the_chown_that_fixes_them,
     .init = make_root, .fini = remove_root)
{
	static const char *const subs[] = {"", "queue", "tmp", "free", "corrupt"};
	char err[512], want[600], path[512];
	struct stat st;

	if (geteuid() != 0)
		cr_skip_test("needs root to give directories away");
	/* root's directories are given to the run user (as every start always has) */
	struct spool *sp = spool_open(root, NOBODY, NOBODY, NULL, NULL, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	spool_close(sp);
	for (size_t i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "%s%s%s", root, subs[i][0] ? "/" : "", subs[i]);
		cr_assert_eq(stat(path, &st), 0);
		cr_assert_eq(st.st_uid, NOBODY, "%s owned by %u", path, (unsigned)st.st_uid);
		cr_assert_eq(st.st_mode & 07777, 0700, "%s: %o", path, st.st_mode & 07777);
	}
	/* ...but no one else's: root running as itself finds them owned by nobody */
	sp = spool_open(root, -1, -1, NULL, NULL, err, sizeof(err));
	cr_assert_null(sp, "a spool owned by another user was opened");
	snprintf(want, sizeof(want), "spool directory %s belongs to ", root);
	cr_assert_not_null(strstr(err, want), "%s", err);
	snprintf(want, sizeof(want), "Fix: chown root:root %s ", root);
	cr_assert_not_null(strstr(err, want), "%s", err);
	/* each directory is checked, not only the top */
	for (size_t i = 0; i < 5; i++)
		chown_sub(subs[i], 0);
	make_spool();
	for (size_t i = 1; i < 5; i++) {
		chown_sub(subs[i], NOBODY);
		cr_assert_null(spool_open(root, -1, -1, NULL, NULL, err, sizeof(err)), "%s",
		               subs[i]);
		snprintf(want, sizeof(want), "Fix: chown root:root %s/%s ", root, subs[i]);
		cr_assert_not_null(strstr(err, want), "%s", err);
		chown_sub(subs[i], 0);
		make_spool();
	}
}

Test(spool, recovery_quarantines_files_not_owned_by_the_run_user, .init = make_root,
     .fini = remove_root)
{
	static const char *const suffix[] = {".env", "", ".state"};
	char err[512], ids[3][SPOOL_ID_LEN + 1], keep[SPOOL_ID_LEN + 1], path[512];
	struct collected got = {0};

	if (geteuid() != 0)
		cr_skip_test("needs root to make files of another user");
	struct spool *sp = spool_open(root, -1, -1, collect, &got, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	for (size_t i = 0; i < 3; i++)
		commit_one(sp, "victim@example.com", "Subject: x\r\n\r\nbody\r\n", ids[i]);
	commit_one(sp, "kept@example.com", "Subject: y\r\n\r\nbody\r\n", keep);
	cr_assert_eq(got.n, 4);
	cr_assert_eq(spool_state_append(sp, got.e[2], "attempt 1700000000 ok"), 0);
	spool_close(sp);
	for (size_t i = 0; i < got.n; i++)
		spool_entry_free(got.e[i]);
	/* one file of each message made another user's; and a free/ file */
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/queue/%s%s", root, ids[i], suffix[i]);
		cr_assert_eq(chown(path, NOBODY, NOBODY), 0, "%s: %s", path, strerror(errno));
	}
	snprintf(path, sizeof(path), "%s/free/5", root);
	FILE *fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fclose(fp);
	cr_assert_eq(chown(path, NOBODY, NOBODY), 0);

	struct collected again = {0};
	sp = spool_open(root, -1, -1, collect, &again, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	cr_assert_eq(access(path, F_OK), -1, "another user's free/ file is never rewritten");
	cr_assert_eq(spool_recover(sp), 1, "only the run user's message is recovered");
	cr_assert_str_eq(again.e[0]->id, keep);
	for (size_t i = 0; i < 3; i++) {
		char name[64];
		snprintf(name, sizeof(name), "%s", ids[i]);
		snprintf(path, sizeof(path), "%s/corrupt/%s.env", root, ids[i]);
		cr_assert_eq(access(path, F_OK), 0, "%s%s: its message is in corrupt/", ids[i],
		             suffix[i]);
		snprintf(path, sizeof(path), "%s/queue/%s.env", root, ids[i]);
		cr_assert_eq(access(path, F_OK), -1, "%s%s: left in queue/", ids[i], suffix[i]);
	}
	cr_assert_eq(count_in("queue", NULL), 2, "the kept message's data and envelope");
	spool_close(sp);
	for (size_t i = 0; i < again.n; i++)
		spool_entry_free(again.e[i]);
}

/* ---- growing lists (vec.h) -------------------------------------------------------------- */

struct counted {
	size_t n, rcpts;
	char last[SPOOL_ID_LEN + 1];
	bool sorted;
};

static void
count_entry(struct spool_entry *e, void *arg)
{
	struct counted *c = arg;
	if (c->n && strcmp(c->last, e->id) >= 0)
		c->sorted = false;
	snprintf(c->last, sizeof(c->last), "%s", e->id);
	c->n++;
	c->rcpts += e->n_rcpts;
	spool_entry_free(e);
}

Test(spool, recovery_lists_a_large_queue_and_many_recipients, .init = make_root,
     .fini = remove_root)
{
	enum { MSGS = 40, RCPTS = 50 };
	char err[512], id[SPOOL_ID_LEN + 1], rcptbuf[RCPTS][32], *rcpts[RCPTS];
	char sender[] = "s@example.net", connector[] = "Default", client[] = "192.0.2.1",
	     helo[] = "mx.example.net";
	struct counted got = {.sorted = true};
	struct spool *sp = spool_open(root, -1, -1, count_entry, &got, err, sizeof(err));

	cr_assert_not_null(sp, "%s", err);
	for (size_t i = 0; i < MSGS; i++)
		commit_one(sp, "r@example.com", "Subject: many\r\n\r\nbody\r\n", id);
	for (size_t i = 0; i < RCPTS; i++) {
		snprintf(rcptbuf[i], sizeof(rcptbuf[i]), "user%zu@example.com", i);
		rcpts[i] = rcptbuf[i];
	}
	struct spool_entry env = {.sender = sender,
	                          .rcpts = rcpts,
	                          .n_rcpts = RCPTS,
	                          .connector = connector,
	                          .client = client,
	                          .helo = helo};
	cr_assert_eq(spool_inject(sp, &env, "Subject: wide\r\n\r\nx\r\n", 20), 0, "%s",
	             strerror(errno));
	spool_close(sp);

	struct counted again = {.sorted = true};
	sp = spool_open(root, -1, -1, count_entry, &again, err, sizeof(err));
	cr_assert_not_null(sp, "%s", err);
	cr_assert_eq(spool_recover(sp), MSGS + 1);
	cr_assert_eq(again.n, MSGS + 1);
	cr_assert_eq(again.rcpts, MSGS + RCPTS, "every recipient of the wide envelope came back");
	cr_assert(again.sorted, "recovered in queue order");
	cr_assert_eq(count_in("queue", NULL), 2 * (MSGS + 1), "no data file taken for an orphan");
	spool_close(sp);
}

/* ---- the envelope and state parsers (crash-damaged and planted files) ----------------- */

static const char good_env[] = "mxgate-envelope 1\n"
                               "id 18AB3C4D5E6F7001\n"
                               "received 1764320000\n"
                               "size 1234\n"
                               "prefix 40\n"
                               "flags smtputf8 8bitmime\n"
                               "connector From Proofpoint\n"
                               "client 67.231.152.10\n"
                               "helo mx1.example.net\n"
                               "from \n"
                               "rcpt user@example.com\n"
                               "rcpt other@example.com\n"
                               "end\n";

/* good_env with the first occurrence of from replaced by to. */
static struct spool_entry *
parse_edited(const char *from, const char *to)
{
	char buf[1024];
	const char *at = strstr(good_env, from);
	cr_assert_not_null(at, "%s", from);
	int n = snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - good_env), good_env, to,
	                 at + strlen(from));
	cr_assert_lt((size_t)n, sizeof(buf));
	return spool_envelope_parse(buf, (size_t)n);
}

Test(spool, envelope_parses_and_writes_back_byte_for_byte)
{
	struct spool_entry *e = spool_envelope_parse(good_env, strlen(good_env));
	cr_assert_not_null(e);
	cr_assert_str_eq(e->id, "18AB3C4D5E6F7001");
	cr_assert_eq(e->received, 1764320000);
	cr_assert_eq(e->size, 1234);
	cr_assert_eq(e->prefix_len, 40);
	cr_assert(e->smtputf8 && e->body_8bit);
	cr_assert_str_eq(e->connector, "From Proofpoint");
	cr_assert_str_eq(e->sender, "");
	cr_assert_eq(e->n_rcpts, 2);
	cr_assert_str_eq(e->rcpts[1], "other@example.com");
	size_t len;
	char *text = spool_envelope_format(e, &len);
	cr_assert_not_null(text);
	cr_assert_eq(len, strlen(good_env));
	cr_assert_eq(memcmp(text, good_env, len), 0, "%s", text);
	free(text);
	spool_entry_free(e);
	/* no flags: "flags" alone */
	e = parse_edited("flags smtputf8 8bitmime\n", "flags\n");
	cr_assert_not_null(e);
	cr_assert(!e->smtputf8 && !e->body_8bit);
	spool_entry_free(e);
}

Test(spool, envelope_cut_anywhere_is_refused)
{
	size_t len = strlen(good_env);
	for (size_t cut = 0; cut < len; cut++) {
		struct spool_entry *e = spool_envelope_parse(good_env, cut);
		cr_assert_null(e, "an envelope cut to %zu of %zu bytes parsed", cut, len);
	}
}

Test(spool, damaged_envelopes_are_refused)
{
	static const struct {
		const char *from, *to, *why;
	} cases[] = {
	        {"rcpt user@example.com\nrcpt other@example.com\n", "", "no recipient"},
	        {"rcpt user@example.com\n", "rcpt \n", "an empty recipient"},
	        {"id 18AB3C4D5E6F7001\n", "id 18AB3C4D5E6F7001\nid 18AB3C4D5E6F7002\n", "two ids"},
	        {"from \n", "from a@b\nfrom c@d\n", "two senders (the first would leak)"},
	        {"connector From Proofpoint\n", "connector A\nconnector B\n", "two connectors"},
	        {"helo mx1.example.net\n", "", "no helo"},
	        {"from \n", "from\n", "from without its space"},
	        {"size 1234\n", "", "no size"},
	        {"received 1764320000\n", "", "no received"},
	        {"flags smtputf8 8bitmime\n", "", "no flags"},
	        {"size 1234\n", "size 99999999999999999999\n", "a size that overflows"},
	        {"size 1234\n", "size 123456789012345678901\n", "21 digits"},
	        {"size 1234\n", "size -1\n", "a negative size"},
	        {"size 1234\n", "size +5\n", "a sign"},
	        {"size 1234\n", "size 12 34\n", "two numbers"},
	        {"size 1234\n", "size \n", "no number"},
	        {"size 1234\n", "size 0x10\n", "hex"},
	        {"received 1764320000\n", "received 18446744073709551615\n",
	         "received past time_t"},
	        {"prefix 40\n", "prefix 1235\n", "a prefix longer than the message"},
	        {"id 18AB3C4D5E6F7001\n", "id 18ab3c4d5e6f7001\n", "a lowercase id"},
	        {"id 18AB3C4D5E6F7001\n", "id 18AB3C4D5E6F700\n", "a short id"},
	        {"id 18AB3C4D5E6F7001\n", "id ../../etc/passw\n", "an id that is a path"},
	        {"flags smtputf8 8bitmime\n", "flags smtputf8 smtputf8\n", "a flag twice"},
	        {"flags smtputf8 8bitmime\n", "flags bogus\n", "an unknown flag"},
	        {"flags smtputf8 8bitmime\n", "flags smtputf8 \n", "a trailing space"},
	        {"flags smtputf8 8bitmime\n", "flags \n", "flags with an empty list"},
	        {"client 67.231.152.10\n", "client 67.231\r.152.10\n", "a CR"},
	        {"helo mx1.example.net\n", "helo mx1\n\nhelo2 x\n", "an empty line"},
	        {"helo mx1.example.net\n", "helo mx1.example.net\nbogus line\n", "an unknown key"},
	        {"end\n", "end\nrcpt late@example.com\n", "a line after end"},
	        {"end\n", "end \n", "end with a value"},
	        {"end\n", "end", "end without its LF"},
	        {"mxgate-envelope 1\n", "mxgate-envelope 2\n", "another version"},
	        {"mxgate-envelope 1\n", "", "no magic line"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spool_entry *e = parse_edited(cases[i].from, cases[i].to);
		cr_assert_null(e, "case %zu (%s) parsed", i, cases[i].why);
	}
	/* NULs anywhere */
	char buf[sizeof(good_env)];
	memcpy(buf, good_env, sizeof(good_env));
	for (size_t at = 0; at + 1 < sizeof(good_env); at += 7) {
		char saved = buf[at];
		buf[at] = '\0';
		cr_assert_null(spool_envelope_parse(buf, sizeof(good_env) - 1), "NUL at %zu", at);
		buf[at] = saved;
	}
	/* the biggest numbers that fit still parse */
	struct spool_entry *e = parse_edited("size 1234\n", "size 18446744073709551615\n");
	cr_assert_not_null(e);
	cr_assert_eq(e->size, UINT64_MAX);
	spool_entry_free(e);
}

Test(spool, damaged_state_lines_are_ignored_and_a_torn_last_line_never_trusted)
{
	struct spool_entry *e = spool_envelope_parse(good_env, strlen(good_env));
	cr_assert_not_null(e);
	static const char state[] = "attempt 1764320100 451 4.3.0 busy\n"
	                            "delivered 7 1764320100 250 out of range\n"
	                            "delivered 0x 1764320100 250 bad index\n"
	                            "failed -1 1764320100 550 negative\n"
	                            "failed 1 abc 550 bad time\n"
	                            "delivered 99999999999999999999999 1 250 huge\n"
	                            "bogus 0 1 2\n"
	                            "delivered 0 1764320200 250 2.0.0 ok\n"
	                            "attempt 1764320200 ok\n"
	                            "failed 1"; /* torn: "failed 1x ..." was being written */
	spool_state_apply(e, state, sizeof(state) - 1);
	cr_assert_not_null(e->rcpt_state);
	cr_assert_eq(e->rcpt_state[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(e->rcpt_state[1], SPOOL_RCPT_PENDING, "the torn line marked recipient 1");
	cr_assert_str_eq(e->rcpt_note[0], "250 2.0.0 ok");
	cr_assert_eq(e->attempts, 2);
	cr_assert_eq(e->last_attempt, 1764320200);
	cr_assert_null(e->last_error);
	/* a NUL inside a line drops that line only */
	static const char nul[] = "failed 1 1764320300 550 \0no\nattempt 1764320300 x\n";
	spool_state_apply(e, nul, sizeof(nul) - 1);
	cr_assert_eq(e->rcpt_state[1], SPOOL_RCPT_PENDING);
	cr_assert_eq(e->attempts, 3);
	cr_assert_str_eq(e->last_error, "x");
	spool_entry_free(e);
}

/* mxgate queue hold / release: the last of the two lines counts; near misses and a torn
 * line count for nothing. */
Test(spool, hold_and_release_lines)
{
	struct spool_entry *e = spool_envelope_parse(good_env, strlen(good_env));
	cr_assert_not_null(e);
	cr_assert(!e->held);
	static const char held[] = "attempt 1764320100 451 4.3.0 busy\nhold\nholder\n";
	spool_state_apply(e, held, sizeof(held) - 1);
	cr_assert(e->held);
	static const char released[] = "release\nhold x\nreleased\nhold"; /* torn last line */
	spool_state_apply(e, released, sizeof(released) - 1);
	cr_assert(!e->held);
	cr_assert_eq(e->attempts, 1);
	spool_entry_free(e);
}
