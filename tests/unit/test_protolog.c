/* Unit tests: protolog, Exchange's SMTP Receive protocol log.  Each test writes into a
 * directory of its own and reads the files back with an RFC 4180 reader written here (and,
 * once, with Python's csv module): headers exact, nine fields a row, hostile client text
 * kept on its row, rotation, retention, and the writer held or out of disk while the
 * sessions go on.  Criterion runs each test in its own process. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "obs/protolog.h"

#define FIELDS_LINE                                                                                \
	"#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-"        \
	"endpoint,event,data,context"

static char dir[96];

static void
make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mxgate-protolog-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void
remove_dir(void)
{
	char cmd[128];

	protolog_stop();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

static void
configure(uint64_t max_file, uint64_t max_dir, uint64_t max_age, size_t queue, void (*hook)(void))
{
	struct protolog_params p = {.directory = dir,
	                            .max_file_size = max_file,
	                            .max_directory_size = max_dir,
	                            .max_age = max_age,
	                            .queue_bytes = queue,
	                            .before_write_hook = hook};
	char err[256] = "";

	cr_assert_eq(protolog_configure(&p, err, sizeof(err)), 0, "%s", err);
}

/* ---- reading the files back ------------------------------------------------------------- */

#define MAX_ROWS 20000

struct row {
	char *f[9];
	char file[32];
};

static struct row rows[MAX_ROWS];
static size_t n_rows;

static int
by_name(const void *a, const void *b)
{
	/* RECVyyyymmdd-N.LOG: by date, then by N as a number */
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	int c = strncmp(x, y, 13);
	return c ? c : atoi(x + 13) - atoi(y + 13);
}

/* The RECV*.LOG names in dir, in order; returns how many. */
static size_t
log_files(const char *d, char names[][32], size_t max)
{
	DIR *dp = opendir(d);
	struct dirent *e;
	size_t n = 0;
	char *ptrs[256];

	cr_assert_not_null(dp);
	while ((e = readdir(dp)) && n < max)
		if (strncmp(e->d_name, "RECV", 4) == 0)
			ptrs[n++] = strdup(e->d_name);
	closedir(dp);
	qsort(ptrs, n, sizeof(ptrs[0]), by_name);
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], 32, "%s", ptrs[i]);
		free(ptrs[i]);
	}
	return n;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* One RFC 4180 record from p (CRLF-ended); fills f[] (malloc'ed) and returns the count of
 * fields, or -1 when the text is not a well-formed record.  Our rows never hold CR or LF,
 * quoted or not, so a record is exactly one line. */
static int
csv_record(const char **p, const char *end, char **f, int max)
{
	int n = 0;

	for (;;) {
		char *v = malloc((size_t)(end - *p) + 1);
		size_t o = 0;
		if (**p == '"') {
			for ((*p)++;; (*p)++) {
				if (*p >= end || **p == '\r' || **p == '\n')
					return free(v), -1;
				if (**p == '"') {
					if ((*p)[1] != '"')
						break;
					(*p)++;
				}
				v[o++] = **p;
			}
			(*p)++;
		} else {
			while (*p < end && **p != ',' && **p != '\r') {
				if (**p == '"' || **p == '\n')
					return free(v), -1;
				v[o++] = *(*p)++;
			}
		}
		v[o] = '\0';
		if (n >= max)
			return free(v), -1;
		f[n++] = v;
		if (*p < end && **p == ',') {
			(*p)++;
			continue;
		}
		if (end - *p >= 2 && (*p)[0] == '\r' && (*p)[1] == '\n') {
			*p += 2;
			return n;
		}
		return -1;
	}
}

/* Checks the header of a file and appends its rows to rows[]. */
static void
read_file(const char *name)
{
	char path[160], date[64];
	size_t len;
	int y, mo, d, h, mi, s, ms, end = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	char *text = slurp(path, &len);
	const char *p = text, *e = text + len;
	static const char *const head[] = {
	        "#Software: mxgate " MXGATE_VERSION, "#Version: 15.0.0.0",
	        "#Log-type: SMTP Receive Protocol Log", NULL, FIELDS_LINE};
	for (int i = 0; i < 5; i++) {
		const char *nl = strstr(p, "\r\n");
		cr_assert_not_null(nl, "%s: header line %d not CRLF-ended", name, i + 1);
		if (head[i])
			cr_assert_eq(strncmp(p, head[i], (size_t)(nl - p)) == 0 &&
			                     strlen(head[i]) == (size_t)(nl - p),
			             1, "%s: header line %d is %.*s", name, i + 1, (int)(nl - p),
			             p);
		else {
			snprintf(date, sizeof(date), "%.*s", (int)(nl - p), p);
			cr_assert_eq(sscanf(date, "#Date: %4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo,
			                    &d, &h, &mi, &s, &ms, &end),
			             7, "%s: %s", name, date);
			cr_assert_eq((size_t)end, strlen(date), "%s: %s", name, date);
		}
		p = nl + 2;
	}
	while (p < e) {
		cr_assert_lt(n_rows, MAX_ROWS);
		struct row *r = &rows[n_rows];
		const char *start = p;
		int n = csv_record(&p, e, r->f, 9);
		cr_assert_eq(n, 9, "%s: not a 9-field record: %.*s", name,
		             (int)(strcspn(start, "\n") + 1), start);
		snprintf(r->file, sizeof(r->file), "%s", name);
		n_rows++;
	}
	free(text);
}

/* Reads every file in dir; returns the number of files. */
static size_t
read_all(void)
{
	char names[256][32];
	size_t n = log_files(dir, names, 256);

	for (size_t i = 0; i < n_rows; i++)
		for (int k = 0; k < 9; k++)
			free(rows[i].f[k]);
	n_rows = 0;
	for (size_t i = 0; i < n; i++)
		read_file(names[i]);
	return n;
}

static bool
is_note(const struct row *r)
{
	return strcmp(r->f[8], "protocol-log") == 0;
}

/* ---- rows ----------------------------------------------------------------------------- */

#define SESSION(s, verbose, name, id)                                                              \
	protolog_session_init(s, verbose, name, id, "192.0.2.1:25", "[2001:db8::7]:41234")

Test(protolog, a_session_is_logged_as_exchange_writes_it, .fini = remove_dir)
{
	struct protolog_session s, quiet;
	char day[16];
	time_t now = time(NULL);
	struct tm tm;

	make_dir();
	configure(PROTOLOG_DEFAULT_MAX_FILE_SIZE, 0, 0, 0, NULL);
	SESSION(&s, true, "Default edge", "08D0A1B2");
	SESSION(&quiet, false, "Quiet", "08D0A1B3");
	protolog_connect(&s);
	protolog_connect(&quiet);
	protolog_reply(&s, "220 mx.example.org ESMTP\r\n", 26);
	protolog_command(&s, "EHLO client.example\r\n", 21);
	protolog_command(&quiet, "EHLO quiet\r\n", 12);
	protolog_reply(&s, "250-mx.example.org\r\n250-SIZE 36700160\r\n250 STARTTLS\r\n", 52);
	protolog_tls(&s, "TLSv1.3", "TLS_AES_256_GCM_SHA384", NULL);
	protolog_info(&s, "connector", "Default edge");
	protolog_disconnect(&s, true);
	protolog_disconnect(&quiet, false);
	protolog_stop();

	cr_assert_eq(read_all(), 1);
	gmtime_r(&now, &tm);
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	cr_expect_eq(strncmp(rows[0].file + 4, day, 8), 0, "%s for %s", rows[0].file, day);
	cr_expect_str_eq(rows[0].file + 12, "-1.LOG");
	static const char *const want[][3] = {
	        {"+", "", ""},
	        {">", "220 mx.example.org ESMTP", ""},
	        {"<", "EHLO client.example", ""},
	        {">", "250-mx.example.org", ""},
	        {">", "250-SIZE 36700160", ""},
	        {">", "250 STARTTLS", ""},
	        {"*",
	         "TLS protocol TLSv1.3 negotiation succeeded using cipher TLS_AES_256_GCM_SHA384",
	         "TLS"},
	        {"*", "Default edge", "connector"},
	        {"-", "", "Remote"},
	};
	cr_assert_eq(n_rows, 9, "the quiet connector logs nothing: %zu rows", n_rows);
	for (size_t i = 0; i < n_rows; i++) {
		char seq[24];
		struct row *r = &rows[i];
		snprintf(seq, sizeof(seq), "%zu", i);
		cr_expect_eq(strlen(r->f[0]), 24, "%s", r->f[0]);
		cr_expect_eq(strncmp(r->f[0], day, 0), 0);
		cr_expect_eq(r->f[0][23], 'Z');
		cr_expect_str_eq(r->f[1], "Default edge");
		cr_expect_str_eq(r->f[2], "08D0A1B2");
		cr_expect_str_eq(r->f[3], seq);
		cr_expect_str_eq(r->f[4], "192.0.2.1:25");
		cr_expect_str_eq(r->f[5], "[2001:db8::7]:41234");
		cr_expect_str_eq(r->f[6], want[i][0]);
		cr_expect_str_eq(r->f[7], want[i][1]);
		cr_expect_str_eq(r->f[8], want[i][2]);
	}
}

/* What a client may send, and what the row must hold instead. */
static const struct {
	const char *sent;
	const char *logged;
} hostile[] = {
        {"MAIL FROM:<\"a,b\"@example.org>", "MAIL FROM:<\"a,b\"@example.org>"},
        {"RCPT TO:<x>\r2024-01-01T00:00:00.000Z,forged,1,0,a,b,+,,",
         "RCPT TO:<x>\\x0D2024-01-01T00:00:00.000Z,forged,1,0,a,b,+,,"},
        {"NOOP\nx,\"y\"\r\nz", "NOOP\\x0Ax,\"y\"\\x0D\\x0Az"},
        {"VRFY \x01\x1b[31m\x7f\t", "VRFY \\x01\\x1B[31m\\x7F\\x09"},
        {"HELO \xff\xfe caf\xc3\xa9", "HELO \\xFF\\xFE caf\xc3\xa9"},
        {"HELO \xc2\x85nel \xe2\x80\xa8ls \xe2\x80\xa9ps", "HELO \\xC2\\x85nel \\xE2\\x80\\xA8ls "
                                                           "\\xE2\\x80\\xA9ps"},
        {"HELO \xed\xa0\x80 \xc0\xaf", "HELO \\xED\\xA0\\x80 \\xC0\\xAF"}, /* surrogate, overlong */
        {"\"\"\"", "\"\"\""},
        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ****"},
        {"auth login dXNlcg==", "auth login ****"},
        {"AUTH LOGIN", "AUTH LOGIN"},
};

Test(protolog, client_text_cannot_break_or_forge_a_row, .fini = remove_dir)
{
	struct protolog_session s;
	size_t n = sizeof(hostile) / sizeof(hostile[0]);

	make_dir();
	configure(0, 0, 0, 0, NULL);
	SESSION(&s, true, "edge,\"a\"", "S1");
	for (size_t i = 0; i < n; i++)
		protolog_command(&s, hostile[i].sent, strlen(hostile[i].sent));
	/* a reply line with a bare LF inside splits at it: each part is a row of its own */
	protolog_reply(&s, "550 no\nsuch\r\n", 13);
	protolog_stop();

	read_all();
	cr_assert_eq(n_rows, n + 2);
	for (size_t i = 0; i < n; i++) {
		cr_expect_str_eq(rows[i].f[1], "edge,\"a\"");
		cr_expect_str_eq(rows[i].f[6], "<");
		cr_expect_str_eq(rows[i].f[7], hostile[i].logged, "row %zu", i);
	}
	cr_expect_str_eq(rows[n].f[7], "550 no");
	cr_expect_str_eq(rows[n + 1].f[7], "such");
}

Test(protolog, long_data_is_cut_and_marked, .fini = remove_dir)
{
	struct protolog_session s;
	char big[3000];

	memset(big, 'x', sizeof(big));
	make_dir();
	configure(0, 0, 0, 0, NULL);
	SESSION(&s, true, "edge", "S1");
	protolog_command(&s, big, sizeof(big));
	protolog_infof(&s, "ctx", "%.*s", 2000, big);
	protolog_stop();
	read_all();
	cr_assert_eq(n_rows, 2);
	for (int i = 0; i < 2; i++) {
		cr_expect_eq(strlen(rows[i].f[7]), PROTOLOG_DATA_MAX + 3);
		cr_expect_str_eq(rows[i].f[7] + PROTOLOG_DATA_MAX, "...");
	}
}

/* Python's csv module, as an admin's script would read the file, sees the same rows. */
Test(protolog, python_csv_reads_the_rows_back, .fini = remove_dir)
{
	struct protolog_session s;
	char cmd[1024], out[256] = "", names[4][32];
	size_t n = sizeof(hostile) / sizeof(hostile[0]);

	make_dir();
	configure(0, 0, 0, 0, NULL);
	SESSION(&s, true, "edge, \"one\"", "S1");
	for (size_t i = 0; i < n; i++)
		protolog_command(&s, hostile[i].sent, strlen(hostile[i].sent));
	protolog_stop();
	cr_assert_eq(log_files(dir, names, 4), 1);
	snprintf(cmd, sizeof(cmd),
	         "/usr/bin/python3 - '%s/%s' 2>&1 <<'EOF'\n"
	         "import csv, sys\n"
	         "lines = open(sys.argv[1], encoding='utf-8', newline='').read().split('\\r\\n')\n"
	         "assert lines[-1] == '', 'the file ends with CRLF'\n"
	         "body = [l for l in lines[:-1] if not l.startswith('#')]\n"
	         "rows = list(csv.reader(body, strict=True))\n"
	         "assert all(len(r) == 9 for r in rows), rows\n"
	         "assert [r[3] for r in rows] == [str(i) for i in range(len(rows))]\n"
	         "assert all(r[1] == 'edge, \"one\"' for r in rows)\n"
	         "print(len(rows), rows[1][7])\n"
	         "EOF",
	         dir, names[0]);
	FILE *fp = popen(cmd, "r");
	cr_assert_not_null(fp);
	size_t k = fread(out, 1, sizeof(out) - 1, fp);
	out[k] = '\0';
	cr_assert_eq(pclose(fp), 0, "%s", out);
	snprintf(cmd, sizeof(cmd), "%zu %s\n", n, hostile[1].logged);
	cr_expect_str_eq(out, cmd);
}

/* ---- rotation and retention ----------------------------------------------------------- */

Test(protolog, a_full_file_continues_in_the_next, .fini = remove_dir)
{
	struct protolog_session s;
	char line[64], names[64][32];
	const uint64_t max = 2048;

	make_dir();
	configure(max, 0, 0, 0, NULL);
	SESSION(&s, true, "edge", "S1");
	for (int i = 0; i < 200; i++) {
		int n = snprintf(line, sizeof(line), "RCPT TO:<user%d@example.org>", i);
		protolog_command(&s, line, (size_t)n);
	}
	protolog_stop();
	size_t files = read_all();
	cr_assert_gt(files, 5, "%zu files", files);
	cr_assert_eq(log_files(dir, names, 64), files);
	for (size_t i = 0; i < files; i++) {
		struct stat st;
		char path[160], want[32];
		snprintf(path, sizeof(path), "%s/%.31s", dir, names[i]);
		cr_assert_eq(stat(path, &st), 0);
		cr_expect_leq(st.st_size, (off_t)max, "%s is %lld bytes", names[i],
		              (long long)st.st_size);
		snprintf(want, sizeof(want), "-%zu.LOG", i + 1);
		cr_expect_str_eq(names[i] + 12, want);
	}
	cr_assert_eq(n_rows, 200);
	for (size_t i = 0; i < n_rows; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<user%zu@example.org>", i);
		cr_expect_str_eq(rows[i].f[7], line);
		snprintf(line, sizeof(line), "%zu", i);
		cr_expect_str_eq(rows[i].f[3], line);
	}
}

Test(protolog, a_restart_starts_a_new_file, .fini = remove_dir)
{
	struct protolog_session s;
	char names[4][32];

	make_dir();
	for (int run = 0; run < 2; run++) {
		configure(0, 0, 0, 0, NULL);
		SESSION(&s, true, "edge", run ? "S2" : "S1");
		protolog_connect(&s);
		protolog_stop();
	}
	cr_assert_eq(log_files(dir, names, 4), 2);
	cr_expect_str_eq(names[0] + 12, "-1.LOG");
	cr_expect_str_eq(names[1] + 12, "-2.LOG");
	read_all();
	cr_assert_eq(n_rows, 2);
	cr_expect_str_eq(rows[0].f[2], "S1");
	cr_expect_str_eq(rows[1].f[2], "S2");
}

static void
put_file(const char *name, size_t size, time_t age)
{
	char path[160];
	struct timespec t[2];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	for (size_t i = 0; i < size; i++)
		fputc('x', fp);
	fclose(fp);
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= age;
	t[1] = t[0];
	cr_assert_eq(utimensat(AT_FDCWD, path, t, 0), 0);
}

static bool
exists(const char *name)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

Test(protolog, the_directory_limit_deletes_the_oldest_files, .fini = remove_dir)
{
	struct protolog_session s;

	make_dir();
	put_file("RECV20000101-1.LOG", 1000, 0);
	put_file("RECV20000101-2.LOG", 1000, 0);
	put_file("RECV20000101-10.LOG", 1000, 0); /* after -2: N is a number */
	put_file("RECV20000102-1.LOG", 1000, 0);
	put_file("notes.txt", 5000, 0);
	put_file("RECV2000-1.LOG", 5000, 0);
	put_file("RECV20000101-1.LOG.bak", 5000, 0);
	/* the new file's header (under 300 bytes) and the two newest fit in 2500 */
	configure(0, 2500, 0, 0, NULL);
	SESSION(&s, true, "edge", "S1");
	protolog_connect(&s);
	protolog_stop();
	cr_expect_not(exists("RECV20000101-1.LOG"));
	cr_expect_not(exists("RECV20000101-2.LOG"));
	cr_expect(exists("RECV20000101-10.LOG"));
	cr_expect(exists("RECV20000102-1.LOG"));
	cr_expect(exists("notes.txt"), "only RECVyyyymmdd-N.LOG files are deleted");
	cr_expect(exists("RECV2000-1.LOG"));
	cr_expect(exists("RECV20000101-1.LOG.bak"));
}

Test(protolog, the_age_limit_deletes_old_files, .fini = remove_dir)
{
	struct protolog_session s;

	make_dir();
	put_file("RECV20000101-1.LOG", 10, 40 * 24 * 3600);
	put_file("RECV20000102-1.LOG", 10, 29 * 24 * 3600);
	put_file("notes.txt", 10, 40 * 24 * 3600);
	configure(0, 0, PROTOLOG_DEFAULT_MAX_AGE, 0, NULL);
	SESSION(&s, true, "edge", "S1");
	protolog_connect(&s);
	protolog_stop();
	cr_expect_not(exists("RECV20000101-1.LOG"));
	cr_expect(exists("RECV20000102-1.LOG"));
	cr_expect(exists("notes.txt"));
	char names[4][32];
	cr_expect_eq(log_files(dir, names, 4), 2, "the new file and the recent one");
}

/* ---- the writer never holds up a session --------------------------------------------- */

static sem_t entered, release;
static bool hold = true;

/* The first write waits until the test lets it go, as a disk that hangs would. */
static void
stall_hook(void)
{
	if (__atomic_exchange_n(&hold, false, __ATOMIC_SEQ_CST)) {
		sem_post(&entered);
		sem_wait(&release);
	}
}

Test(protolog, a_stalled_writer_drops_and_counts_rows_instead_of_waiting, .fini = remove_dir,
     .timeout = 60)
{
	struct protolog_session s;
	const size_t pushed = 5000;
	char line[64];

	sem_init(&entered, 0, 0);
	sem_init(&release, 0, 0);
	make_dir();
	configure(0, 0, 0, 16 * 1024, stall_hook);
	SESSION(&s, true, "edge", "S1");
	protolog_connect(&s);
	sem_wait(&entered); /* the writer is stuck in its first write */
	/* every call returns (a stall here would end in the test's timeout) */
	for (size_t i = 1; i < pushed; i++) {
		int n = snprintf(line, sizeof(line), "RCPT TO:<user%zu@example.org>", i);
		protolog_command(&s, line, (size_t)n);
	}
	uint64_t full = protolog_dropped(PROTOLOG_DROP_QUEUE_FULL);
	cr_expect_gt(full, pushed / 2, "a 16 KiB queue holds a few hundred rows: %llu dropped",
	             (unsigned long long)full);
	sem_post(&release);
	protolog_stop();

	read_all();
	size_t logged = 0, notes = 0;
	uint64_t told = 0;
	for (size_t i = 0; i < n_rows; i++) {
		if (is_note(&rows[i])) {
			unsigned long long k;
			cr_assert_eq(
			        sscanf(rows[i].f[7], "%llu rows dropped: the queue was full", &k),
			        1, "%s", rows[i].f[7]);
			cr_expect_str_eq(rows[i].f[3], "", "a note has no sequence number");
			told += k;
			notes++;
		} else {
			logged++;
		}
	}
	cr_expect_eq(logged + full, pushed, "%zu logged + %llu dropped", logged,
	             (unsigned long long)full);
	cr_expect_geq(notes, 1);
	cr_expect_eq(told, full, "the notes in the file add up to the count");
	cr_expect_eq(protolog_dropped(PROTOLOG_DROP_WRITE_ERROR), 0);
}

/* A full disk: the writer counts what it could not write, truncates the cut row away, and
 * the sessions never notice.  Needs root for a tmpfs of 64 KiB in a mount namespace of
 * this test's own. */
Test(protolog, a_full_disk_drops_and_counts_rows_and_leaves_whole_rows, .fini = remove_dir,
     .timeout = 60)
{
	struct protolog_session s;
	const size_t pushed = 3000;
	char line[600];

	make_dir();
	cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare(CLONE_NEWNS) (run as root): %s",
	             strerror(errno));
	cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%s", strerror(errno));
	cr_assert_eq(mount("tmpfs", dir, "tmpfs", 0, "size=64k"), 0, "%s", strerror(errno));
	configure(0, 0, 0, 0, NULL);
	SESSION(&s, true, "edge", "S1");
	memset(line, 'y', sizeof(line));
	for (size_t i = 0; i < pushed; i++)
		protolog_command(&s, line, sizeof(line));
	protolog_stop();
	uint64_t full = protolog_dropped(PROTOLOG_DROP_QUEUE_FULL);
	uint64_t failed = protolog_dropped(PROTOLOG_DROP_WRITE_ERROR);
	cr_expect_gt(failed, 0);
	read_all(); /* every row whole: a cut one fails here */
	size_t logged = 0;
	for (size_t i = 0; i < n_rows; i++)
		logged += !is_note(&rows[i]);
	cr_expect_eq(logged + full + failed, pushed, "%zu logged, %llu + %llu dropped", logged,
	             (unsigned long long)full, (unsigned long long)failed);
	cr_expect_gt(logged, 0);
	umount2(dir, MNT_DETACH);
}

Test(protolog, a_reload_moves_the_log_and_loses_no_row, .fini = remove_dir)
{
	struct protolog_session s;
	char first[64], names[8][32];

	make_dir();
	snprintf(first, sizeof(first), "%.63s", dir);
	configure(0, 0, 0, 0, NULL);
	SESSION(&s, true, "edge", "S1");
	protolog_connect(&s);
	protolog_command(&s, "EHLO a", 6);
	snprintf(dir, sizeof(dir), "%.63s/moved", first);
	configure(0, 0, 0, 0, NULL); /* creates the directory */
	protolog_command(&s, "QUIT", 4);
	protolog_disconnect(&s, false);
	protolog_stop();

	size_t in_moved = read_all();
	size_t rows_moved = n_rows;
	cr_expect_eq(in_moved, 1);
	cr_expect_str_eq(rows[n_rows - 1].f[6], "-", "the last row is in the new directory");
	snprintf(dir, sizeof(dir), "%s", first);
	size_t in_first = log_files(dir, names, 8);
	read_all();
	cr_expect_eq(n_rows + rows_moved, 4, "%zu + %zu rows", n_rows, rows_moved);
	cr_expect_leq(in_first, 1);
}

Test(protolog, off_means_no_files_and_nothing_counted, .fini = remove_dir)
{
	struct protolog_session s;
	struct protolog_params off = {.directory = NULL};
	char err[256], names[4][32];

	make_dir();
	cr_assert_eq(protolog_configure(&off, err, sizeof(err)), 0);
	SESSION(&s, true, "edge", "S1");
	protolog_connect(&s);
	protolog_command(&s, "EHLO a", 6);
	cr_expect_eq(log_files(dir, names, 4), 0);
	cr_expect_eq(protolog_dropped(PROTOLOG_DROP_QUEUE_FULL), 0);
	/* on, then off again by a reload */
	configure(0, 0, 0, 0, NULL);
	cr_assert_eq(protolog_configure(&off, err, sizeof(err)), 0);
	protolog_command(&s, "EHLO b", 6);
	protolog_stop();
	cr_expect_eq(log_files(dir, names, 4), 0, "nothing was logged while on");
}

Test(protolog, an_unusable_directory_is_refused_with_the_reason, .fini = remove_dir)
{
	struct protolog_params p = {0};
	char err[256] = "", path[128];

	make_dir();
	snprintf(path, sizeof(path), "%s/file", dir);
	fclose(fopen(path, "w"));
	p.directory = path;
	cr_expect_eq(protolog_configure(&p, err, sizeof(err)), -1);
	cr_expect_not_null(strstr(err, path), "%s", err);
	cr_expect_not_null(strstr(err, "not a directory"), "%s", err);
	snprintf(path, sizeof(path), "%s/no/such", dir);
	cr_expect_eq(protolog_configure(&p, err, sizeof(err)), -1);
	cr_expect_not_null(strstr(err, strerror(ENOENT)), "%s", err);
}
