/* Unit tests: `mxgate queue` with the daemon stopped: the listing read from the spool's
 * files, removal by id, and the commands it refuses.  (With the daemon running, the
 * control socket is tested end to end in test_relay.py.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue.h"
#include "queue/spool.h"

static char root[256];

static void
make_root(void)
{
	snprintf(root, sizeof(root), "/tmp/mxgate-queue-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
}

static void
remove_root(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
}

/* Runs command; returns its exit status, with what it wrote in out and err. */
static int
run(const char *command, char *out, char *err)
{
	char *o = NULL, *e = NULL;
	size_t ol = 0, el = 0;
	FILE *fo = open_memstream(&o, &ol), *fe = open_memstream(&e, &el);
	int rc;

	cr_assert(fo && fe);
	rc = queue_command(root, command, fo, fe);
	fclose(fo);
	fclose(fe);
	snprintf(out, 4096, "%s", o);
	snprintf(err, 4096, "%s", e);
	free(o);
	free(e);
	return rc;
}

/* Queues one message for two recipients; returns its id in id. */
static void
queue_one(char *id)
{
	char err[512];
	struct spool *sp = spool_open(root, -1, -1, NULL, NULL, err, sizeof(err));
	struct spool_entry *e = spool_entry_new();

	cr_assert_not_null(sp, "%s", err);
	cr_assert_not_null(e);
	e->sender = strdup("s@x.example");
	e->rcpts = calloc(2, sizeof(char *));
	e->rcpts[0] = strdup("a@example.com");
	e->rcpts[1] = strdup("b@example.com");
	e->n_rcpts = 2;
	cr_assert_eq(spool_inject(sp, e, "Subject: x\r\n\r\nhi\r\n", 18), 0);
	snprintf(id, SPOOL_ID_LEN + 1, "%s", e->id);
	spool_entry_free(e);
	spool_close(sp);
}

Test(queue, list_and_remove_with_the_daemon_stopped, .init = make_root, .fini = remove_root)
{
	char id[SPOOL_ID_LEN + 1], out[4096], err[4096], cmd[64];

	queue_one(id);
	cr_assert_eq(run("list", out, err), 0, "%s", err);
	cr_assert(strstr(out, "ID "), "%s", out);
	cr_assert(strstr(out, id), "%s", out);
	cr_assert(strstr(out, "stopped   <s@x.example>"), "%s", out);
	cr_assert(strstr(out, "    pending   <a@example.com>\n"), "%s", out);
	cr_assert(strstr(out, "    pending   <b@example.com>\n"), "%s", out);
	cr_assert(strstr(out, "1 message (the daemon is not running)\n"), "%s", out);

	snprintf(cmd, sizeof(cmd), "remove %s", id);
	cr_assert_eq(run(cmd, out, err), 0, "%s", err);
	cr_assert(strstr(out, "removed"));
	cr_assert_eq(run("list", out, err), 0);
	cr_assert(strstr(out, "0 messages (the daemon is not running)\n"), "%s", out);
	cr_assert_eq(run(cmd, out, err), 1);
	cr_assert(strstr(err, "no message"), "%s", err);
}

Test(queue, refused_commands, .init = make_root, .fini = remove_root)
{
	char out[4096], err[4096];

	cr_assert_eq(run("remove 123", out, err), 1);
	cr_assert(strstr(err, "is not a queue id"), "%s", err);
	cr_assert_eq(run("remove ../../etc/passwd", out, err), 1);
	cr_assert_eq(run("purge", out, err), 1);
	cr_assert(strstr(err, "unknown command 'purge'"), "%s", err);
	cr_assert_eq(run("flush", out, err), 1);
	cr_assert(strstr(err, "the daemon is not running"), "%s", err);
}
