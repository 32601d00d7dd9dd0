/*
 * mxgate command line: a table of subcommands, one cmd_<verb>() each.
 *
 * Exit codes: 0 success; 1 error (bad configuration, I/O); 2 usage error;
 * 3 "no" answers (`which`: no connector; `probe`: refused).  `audit`: 0 clean, 1 findings,
 * 2 usage or configuration error.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "conf/providers.h"
#include "conf/selector.h"
#include "lockdown/audit.h"
#include "lockdown/firewall.h"
#include "lockdown/probe.h"
#include "net/tls.h"
#include "net/tlsmem.h"
#include "queue/queue.h"
#include "smtpd/server.h"

#define EXIT_USAGE 2
#define EXIT_NO    3

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *synopsis;
	const char *summary;
	const char *options; /* NULL, or more lines for the usage text */
};

static int cmd_run(int argc, char **argv);
static int cmd_check(int argc, char **argv);
static int cmd_queue(int argc, char **argv);
static int cmd_status(int argc, char **argv);
static int cmd_config(int argc, char **argv);
static int cmd_which(int argc, char **argv);
static int cmd_firewall(int argc, char **argv);
static int cmd_probe(int argc, char **argv);
static int cmd_audit(int argc, char **argv);
static int cmd_providers(int argc, char **argv);
static int cmd_reference(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct cmd cmds[] = {
        {"run", cmd_run, "run [-c FILE]",
         "run the gateway in the foreground (SIGHUP reloads, SIGTERM drains and stops)", NULL},
        {"check", cmd_check, "check [-c FILE]",
         "validate the configuration; every error as FILE:LINE on stderr", NULL},
        {"config", cmd_config, "config [-c FILE] [--all]",
         "print the effective configuration: the keys written, and each connector resolved "
         "(permissions, bindings, ranges by source)",
         "--all  every key, the defaults too (marked)"},
        {"which", cmd_which, "which [-c FILE] [-v] LOCAL REMOTE",
         "name the connector that takes a connection (exit 3: none)", NULL},
        {"queue", cmd_queue, "queue [-c FILE] [list [--json] | flush | remove|hold|release ID|all]",
         "show the queue, retry it now, remove, hold or release messages",
         "list --json  the queue as one JSON object (fields in mxgate(8))\n"
         "hold ID|all  never deliver it until `release` (kept across restarts)"},
        {"status", cmd_status, "status [-c FILE]",
         "what the running daemon is doing: uptime, configuration, connectors, queue, "
         "delivery (exit 3: not running)",
         NULL},
        {"firewall", cmd_firewall, "firewall [-c FILE] --format FMT",
         "print the lockdown as firewall rules, Exchange connectors or HAProxy ACLs",
         "FMT: nft, iptables, pf, windows, exchange or haproxy (docs/FIREWALL.md)"},
        {"probe", cmd_probe, "probe HOST[:PORT] [options]",
         "test a server from a source address (exit 0 open, 3 refused)",
         "--source ADDR  --helo NAME  --starttls  --mail-from ADDR  --rcpt-to ADDR\n"
         "--timeout SECS (default 30)  --expect open|refused (exit 0 when it matches, else 1)"},
        {"audit", cmd_audit, "audit [-c FILE] [--json]",
         "inspect this host against the configuration for ways around the filter (exit 0 "
         "clean, 1 findings, 2 usage or configuration error)",
         "one finding a line: severity, check, what it means, the fix; --json: one JSON "
         "object"},
        {"providers", cmd_providers, "providers [show NAME]",
         "list the provider presets, or print one", NULL},
        {"reference", cmd_reference, "reference [--man]",
         "print the configuration reference (Markdown, or mxgate.conf(5) in mdoc)", NULL},
        {"version", cmd_version, "version", "print the version", NULL},
        {"help", cmd_help, "help", "this text", NULL},
};

/* Prints a command's option lines, indented. */
static void
print_options(FILE *fp, const char *indent, const char *options)
{
	while (options && *options) {
		size_t len = strcspn(options, "\n");
		fprintf(fp, "%s%.*s\n", indent, (int)len, options);
		options += len + (options[len] == '\n');
	}
}

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: mxgate COMMAND [options]\n\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		fprintf(fp, "  mxgate %-36s %s\n", cmds[i].synopsis, cmds[i].summary);
		print_options(fp, "        ", cmds[i].options);
	}
	fprintf(fp, "\nDefault configuration: %s\n", CONFIG_DEFAULT_PATH);
}

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mxgate %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmds[i].name, cmd) == 0) {
			fprintf(stderr, "usage: mxgate %s\n", cmds[i].synopsis);
			print_options(stderr, "       ", cmds[i].options);
		}
	}
	return EXIT_USAGE;
}

/* Parses the options common to the config-reading commands, before or after the other
 * arguments.  Returns -1 on a usage error. */
static int
parse_opts(const char *cmd, int argc, char **argv, const char **cfgpath, int *verbose)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"verbose", no_argument, NULL, 'v'},
	        {NULL, 0, NULL, 0},
	};
	int ch;

	optind = 0; /* 0: GNU getopt starts afresh (options may follow the arguments) */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, verbose ? "c:v" : "c:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			*cfgpath = optarg;
			break;
		case 'v':
			if (verbose) {
				*verbose = 1;
				break;
			}
			/* FALLTHROUGH */
		default:
			usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
			return -1;
		}
	}
	return 0;
}

static struct config *
load(const char *path, struct diag *d)
{
	struct config *c = config_load(path, d);

	diag_print(d, stderr);
	return c;
}

/* load(), and when the configuration is refused, the count of its errors (check, config) */
static struct config *
load_or_refuse(const char *path, struct diag *d)
{
	struct config *c = load(path, d);

	if (!c)
		fprintf(stderr, "%s: %zu error%s; the configuration was not accepted\n", path,
		        d->errors, d->errors == 1 ? "" : "s");
	return c;
}

/* For the commands that read the configuration only to find the spool or the bindings:
 * its errors are printed when it cannot be loaded, its warnings are check's job. */
static struct config *
load_quietly(const char *path)
{
	struct diag d;
	struct config *c;

	diag_init(&d);
	if (!(c = config_load(path, &d)))
		diag_print(&d, stderr);
	diag_release(&d);
	return c;
}

/* queue and status read the configuration only for the spool's control socket.  While
 * the file has errors (an edit under way, a reload just refused) the daemon still runs on
 * the configuration it loaded: its spool is then taken from the file's statements alone,
 * so the daemon can still be asked.  Returns the spool (to free), or NULL, said. */
static char *
spool_for(const char *cmd, const char *path)
{
	struct config *c = load_quietly(path);
	char *spool;

	if (c) {
		spool = strdup(c->spool);
		config_unref(c);
		if (!spool)
			fprintf(stderr, "mxgate %s: out of memory\n", cmd);
		return spool;
	}
	if ((spool = config_spool_of(path))) {
		fprintf(stderr,
		        "mxgate %s: %s has errors (above); asking the daemon on the spool it "
		        "names, %s (a running daemon keeps the configuration it loaded)\n",
		        cmd, path, spool);
		return spool;
	}
	if (access(path, R_OK) != 0 && (errno == EACCES || errno == EPERM)) {
		fprintf(stderr,
		        "mxgate %s: this user may not read %s, where the daemon's spool and "
		        "control "
		        "socket are named; run the command as root (sudo) or as the user mxgate "
		        "runs "
		        "as\n",
		        cmd, path);
		return NULL;
	}
	fprintf(stderr,
	        "mxgate %s: %s cannot be read or parsed, so its spool (where the daemon's control "
	        "socket is) is unknown; fix the file (mxgate check -c %s), or name the daemon's "
	        "own with -c FILE\n",
	        cmd, path, path);
	return NULL;
}

/* Takes every flag out of argv (it may stand anywhere, as postqueue's -j does) and says
 * whether it was there; *argc is what is left. */
static bool
take_flag(int *argc, char **argv, const char *flag)
{
	bool seen = false;
	int kept = 1;

	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], flag) == 0)
			seen = true;
		else
			argv[kept++] = argv[i];
	}
	*argc = kept;
	return seen;
}

static int
cmd_run(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;

	if (parse_opts("run", argc, argv, &path, NULL) < 0)
		return EXIT_USAGE;
	if (optind != argc)
		return usage_error("run", "unexpected argument '%s'", argv[optind]);
	/* Sessions free a message's write buffer as the next one allocates it; with glibc's
	 * default threshold each free can hand the top of a thread's heap back to the kernel
	 * (madvise) only to fault it in again.  Keep up to 4 MiB of free heap at its top
	 * (a reload trims explicitly, see server.c). */
	mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
	/* The file's directory resolved now, as root, and the file's own name kept (a
	 * symbolic link swapped for a deploy is followed again at each reload).  The
	 * configuration names its files relative to the resolved directory (set_dir() in conf/config.c); once
	 * it is the run user the daemon cannot resolve a directory under one only root may
	 * search, and its reloads would name the files otherwise than the privileged reader
	 * does: the key refused ("Permission denied"), relative Maildirs refused. */
	const char *slash = strrchr(path, '/');
	char *abs = NULL,
	     *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	char *rdir = dir ? realpath(dir, NULL) : NULL;
	if (rdir && asprintf(&abs, "%s/%s", strcmp(rdir, "/") == 0 ? "" : rdir,
	                     slash ? slash + 1 : path) > 0)
		path = abs;
	else
		abs = NULL;
	free(dir);
	free(rdir);
	int rc = server_run(path);
	free(abs);
	return rc == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int
cmd_config(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	bool all = take_flag(&argc, argv, "--all");
	struct config *c;
	struct diag d;

	if (parse_opts("config", argc, argv, &path, NULL) < 0)
		return EXIT_USAGE;
	if (optind != argc)
		return usage_error("config", "unexpected argument '%s'", argv[optind]);
	diag_init(&d);
	c = load_or_refuse(path, &d);
	if (!c) {
		diag_release(&d);
		return EXIT_FAILURE;
	}
	config_print_effective(c, stdout, all);
	config_unref(c);
	diag_release(&d);
	return EXIT_SUCCESS;
}

static int
cmd_check(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	struct config *c;
	struct diag d;

	if (parse_opts("check", argc, argv, &path, NULL) < 0)
		return EXIT_USAGE;
	if (optind != argc)
		return usage_error("check", "unexpected argument '%s'", argv[optind]);
	diag_init(&d);
	c = load_or_refuse(path, &d);
	if (!c) {
		diag_release(&d);
		return EXIT_FAILURE;
	}
	/* the pair is loaded where it is used (net/tls.h): here, as the daemon will */
	char err[512];
	if ((c->tls_certificate &&
	     tls_check_pair(c->tls_certificate, c->tls_key, err, sizeof(err)) < 0) ||
	    (c->tls_client_ca_file &&
	     tls_check_cafile(c->tls_client_ca_file, err, sizeof(err)) < 0)) {
		fprintf(stderr, "%s:%d: error: %s\n", c->tls_at.file, c->tls_at.line, err);
		fprintf(stderr, "%s: 1 error; the configuration was not accepted\n", path);
		config_unref(c);
		diag_release(&d);
		return EXIT_FAILURE;
	}
	/* the one start-up refusal a configuration can cause that only the running user
	 * decides: as root (mxgate.service's ExecStartPre), say it before `run` does */
	if (geteuid() == 0 && !c->user)
		fprintf(stderr,
		        "%s: warning: no user key: started as root (as mxgate.service does), "
		        "mxgate run refuses to start; set user = \"mxgate\" (the account it "
		        "switches to after binding its ports)\n",
		        path);
	printf("configuration OK\n");
	for (size_t i = 0; i < c->n_connectors; i++) {
		char line[1024];
		config_describe_connector(&c->connectors[i], line, sizeof(line));
		printf("%s\n", line);
	}
	config_unref(c);
	diag_release(&d);
	return EXIT_SUCCESS;
}

static int
cmd_which(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH, *rs;
	struct endpoint local;
	struct ipaddr remote;
	struct config *c;
	struct diag d;
	char err[256];
	int verbose = 0, k;
	size_t rlen;

	if (parse_opts("which", argc, argv, &path, &verbose) < 0)
		return EXIT_USAGE;
	if (argc - optind != 2)
		return usage_error("which", "%s",
		                   "needs LOCAL (IP:PORT or [IPv6]:PORT) and REMOTE "
		                   "(an address)");
	if (endpoint_parse(argv[optind], &local, err, sizeof(err)) < 0)
		return usage_error("which", "bad LOCAL: %s", err);
	rs = argv[optind + 1];
	rlen = strlen(rs);
	if (rlen > 2 && rs[0] == '[' && rs[rlen - 1] == ']')
		rs++, rlen -= 2;
	if (ipaddr_parse(rs, rlen, &remote) < 0)
		return usage_error("which", "bad REMOTE '%s': not an IP address", argv[optind + 1]);

	diag_init(&d);
	c = load(path, &d);
	diag_release(&d);
	if (!c)
		return EXIT_FAILURE;
	if (verbose)
		selector_explain(c->selector, &local, &remote, stdout);
	k = selector_select(c->selector, &local, &remote);
	printf("%s\n", k >= 0 ? c->connectors[k].name : "none");
	config_unref(c);
	return k >= 0 ? EXIT_SUCCESS : EXIT_NO;
}

static int
cmd_queue(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	char command[64], *spool;
	int rc;

	/* --json anywhere (Postfix's postqueue -j, OpenSMTPD's smtpctl show queue) */
	bool json = take_flag(&argc, argv, "--json");
	if (parse_opts("queue", argc, argv, &path, NULL) < 0)
		return EXIT_USAGE;
	const char *verb = optind < argc ? argv[optind] : "list";
	if (strcmp(verb, "list") == 0) {
		if (optind < argc && optind + 1 != argc)
			return usage_error("queue", "unexpected argument '%s'", argv[optind + 1]);
		snprintf(command, sizeof(command), "list%s", json ? " json" : "");
	} else if (json) {
		return usage_error("queue", "%s", "--json goes with list only");
	} else if (strcmp(verb, "flush") == 0 && optind + 1 == argc) {
		snprintf(command, sizeof(command), "flush");
	} else if ((strcmp(verb, "remove") == 0 || strcmp(verb, "hold") == 0 ||
	            strcmp(verb, "release") == 0) &&
	           optind + 2 == argc) {
		snprintf(command, sizeof(command), "%s %.40s", verb, argv[optind + 1]);
	} else {
		return usage_error(
		        "queue", "%s",
		        "expects list [--json], flush, or remove, hold or release with an "
		        "ID or all");
	}
	/* the spool's location (its control socket) comes from the configuration */
	if (!(spool = spool_for("queue", path)))
		return EXIT_FAILURE;
	rc = queue_command(spool, command, stdout, stderr);
	free(spool);
	return rc == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int
cmd_status(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	char *spool;
	int rc;

	if (parse_opts("status", argc, argv, &path, NULL) < 0)
		return EXIT_USAGE;
	if (optind < argc)
		return usage_error("status", "unexpected argument '%s'", argv[optind]);
	/* the spool's location (its control socket) comes from the configuration */
	if (!(spool = spool_for("status", path)))
		return EXIT_FAILURE;
	rc = queue_status(spool, stdout, stderr);
	free(spool);
	return rc;
}

static int
cmd_audit(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"json", no_argument, NULL, 'j'},
	        {NULL, 0, NULL, 0},
	};
	const char *path = CONFIG_DEFAULT_PATH;
	struct audit_report r = {0};
	struct audit_host h;
	struct config *c;
	bool json = false;
	int ch, rc;

	optind = 0; /* 0: GNU getopt starts afresh (options may follow the arguments) */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
		if (ch == 'c')
			path = optarg;
		else if (ch == 'j')
			json = true;
		else
			return usage_error("audit", "unknown option or missing value '%s'",
			                   argv[optind - 1]);
	}
	if (optind != argc)
		return usage_error("audit", "unexpected argument '%s'", argv[optind]);
	if (!(c = load_quietly(path)))
		return EXIT_USAGE;
	if (audit_host_read(c, path, &h) < 0 || audit_check(c, path, &h, &r) < 0) {
		fprintf(stderr, "mxgate audit: out of memory\n");
		rc = EXIT_USAGE;
	} else {
		audit_print(&r, json, stdout);
		rc = audit_count(&r) ? EXIT_FAILURE : EXIT_SUCCESS;
		if (!json && rc == EXIT_SUCCESS)
			printf("audit: no findings (%zu listening sockets, firewall %s)\n",
			       h.n_sockets, h.nft ? "read" : "not read");
	}
	audit_report_release(&r);
	audit_host_release(&h);
	config_unref(c);
	return rc;
}

static int
cmd_firewall(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"format", required_argument, NULL, 'f'},
	        {NULL, 0, NULL, 0},
	};
	const char *path = CONFIG_DEFAULT_PATH, *fmtname = NULL;
	enum firewall_format fmt;
	struct config *c;
	struct diag d;
	int ch, rc;

	optind = 0; /* 0: GNU getopt starts afresh (options may follow the arguments) */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "c:f:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			fmtname = optarg;
			break;
		default:
			return usage_error("firewall", "unknown option or missing value '%s'",
			                   argv[optind - 1]);
		}
	}
	if (optind != argc)
		return usage_error("firewall", "unexpected argument '%s'", argv[optind]);
	if (!fmtname)
		return usage_error("firewall", "%s", "--format is required");
	if (firewall_format_parse(fmtname, &fmt) < 0)
		return usage_error("firewall", "unknown format '%s'", fmtname);

	diag_init(&d);
	c = load(path, &d);
	diag_release(&d);
	if (!c)
		return EXIT_FAILURE;
	diag_init(&d);
	rc = firewall_write(c, fmt, path, stdout, &d);
	diag_print(&d, stderr);
	diag_release(&d);
	config_unref(c);
	if (rc < 0) {
		fprintf(stderr, "mxgate firewall: cannot write the rules: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

static int
cmd_probe(int argc, char **argv)
{
	enum { O_SOURCE = 256, O_HELO, O_STARTTLS, O_MAIL_FROM, O_RCPT_TO, O_TIMEOUT, O_EXPECT };
	static const struct option longopts[] = {
	        {"source", required_argument, NULL, O_SOURCE},
	        {"helo", required_argument, NULL, O_HELO},
	        {"starttls", no_argument, NULL, O_STARTTLS},
	        {"mail-from", required_argument, NULL, O_MAIL_FROM},
	        {"rcpt-to", required_argument, NULL, O_RCPT_TO},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"expect", required_argument, NULL, O_EXPECT},
	        {NULL, 0, NULL, 0},
	};
	static char host[256], source[IPADDR_STRLEN], mail_from[256], rcpt_to[256];
	struct probe_opts o = {.timeout_ms = 30000};
	struct probe_result res;
	enum probe_verdict v;
	int ch, expect = -1;
	char err[256], *end;
	double secs;
	size_t len;

	optind = 0; /* 0: GNU getopt starts afresh (options may follow the arguments) */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case O_SOURCE:
			len = strlen(optarg);
			if (len > 2 && optarg[0] == '[' && optarg[len - 1] == ']')
				snprintf(source, sizeof(source), "%.*s", (int)(len - 2),
				         optarg + 1);
			else
				snprintf(source, sizeof(source), "%s", optarg);
			o.source = source;
			break;
		case O_HELO:
			for (const char *p = optarg; *p; p++)
				if ((unsigned char)*p <= ' ' || *p == 0x7f)
					return usage_error("probe",
					                   "--helo '%s': one word, no blanks",
					                   optarg);
			if (!*optarg || strlen(optarg) > 255)
				return usage_error("probe", "%s", "--helo needs a name");
			o.helo = optarg;
			break;
		case O_STARTTLS:
			o.starttls = true;
			break;
		case O_MAIL_FROM:
			if (probe_parse_path(optarg, mail_from, sizeof(mail_from), err,
			                     sizeof(err)) < 0)
				return usage_error("probe", "--mail-from %s", err);
			o.mail_from = mail_from;
			break;
		case O_RCPT_TO:
			if (probe_parse_path(optarg, rcpt_to, sizeof(rcpt_to), err, sizeof(err)) <
			            0 ||
			    !rcpt_to[0])
				return usage_error("probe", "--rcpt-to '%s': write local@domain",
				                   optarg);
			o.rcpt_to = rcpt_to;
			break;
		case O_TIMEOUT:
			errno = 0;
			secs = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(secs > 0) || secs > 3600)
				return usage_error("probe",
				                   "--timeout '%s': seconds, more than 0 and at "
				                   "most 3600",
				                   optarg);
			o.timeout_ms = secs < 0.001 ? 1 : (unsigned)(secs * 1000);
			break;
		case O_EXPECT:
			if (strcmp(optarg, "open") == 0)
				expect = PROBE_OPEN;
			else if (strcmp(optarg, "refused") == 0)
				expect = PROBE_REFUSED;
			else
				return usage_error("probe", "--expect '%s': open or refused",
				                   optarg);
			break;
		default:
			return usage_error("probe", "unknown option or missing value '%s'",
			                   argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return usage_error("probe", "%s", "needs one HOST[:PORT]");
	if (probe_parse_target(argv[optind], host, sizeof(host), &o.port, err, sizeof(err)) < 0)
		return usage_error("probe", "%s", err);
	o.host = host;

	/* a server that resets the connection must not kill us in the middle of a write */
	signal(SIGPIPE, SIG_IGN);
	v = probe_run(&o, stdout, &res);
	if (v == PROBE_ERROR)
		fprintf(stderr, "mxgate probe: %s\n", res.why);
	if (expect >= 0)
		return (int)v == expect ? EXIT_SUCCESS : EXIT_FAILURE;
	return v == PROBE_OPEN ? EXIT_SUCCESS : v == PROBE_REFUSED ? EXIT_NO : EXIT_FAILURE;
}

static int
providers_list(void)
{
	struct provider **ps = NULL;
	char **names;
	int n, bad = 0, wname = 4, wstat = 6, wconf = 10;

	if ((n = providers_names(&names)) < 0) {
		fprintf(stderr, "mxgate providers: cannot read %s: %s\n", providers_dir(),
		        strerror(errno));
		return EXIT_FAILURE;
	}
	if (n && !(ps = calloc((size_t)n, sizeof(*ps)))) {
		providers_names_free(names, (size_t)n);
		fprintf(stderr, "mxgate providers: out of memory\n");
		return EXIT_FAILURE;
	}
	for (int i = 0; i < n; i++) {
		char path[4096], err[512];
		if (providers_find(names[i], path, sizeof(path)) < 0 ||
		    !(ps[i] = providers_load(path, err, sizeof(err)))) {
			fprintf(stderr, "mxgate providers: %s\n", err);
			bad++;
			continue;
		}
		if ((int)strlen(names[i]) > wname)
			wname = (int)strlen(names[i]);
		if ((int)strlen(ps[i]->status) > wstat)
			wstat = (int)strlen(ps[i]->status);
		if ((int)strlen(ps[i]->confidence) > wconf)
			wconf = (int)strlen(ps[i]->confidence);
	}
	printf("%-*s  %-*s  %-*s  %-10s  %6s  %s\n", wname, "NAME", wstat, "STATUS", wconf,
	       "CONFIDENCE", "DATE", "RANGES", "SOURCE");
	for (int i = 0; i < n; i++) {
		if (!ps[i])
			continue;
		printf("%-*s  %-*s  %-*s  %-10s  %6zu  %s\n", wname, ps[i]->name, wstat,
		       ps[i]->status, wconf, ps[i]->confidence, ps[i]->source_date, ps[i]->n_ranges,
		       ps[i]->sources[0]);
		providers_free(ps[i]);
	}
	free(ps);
	providers_names_free(names, (size_t)n);
	if (n == 0)
		fprintf(stderr, "mxgate providers: no preset in %s\n", providers_dir());
	return bad ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int
providers_show(const char *name)
{
	char path[4096], err[512], buf[8192];
	struct provider *p;
	size_t n;
	FILE *fp;

	if (providers_find(name, path, sizeof(path)) < 0) {
		char hint[512];
		bool near = providers_suggest(name, hint, sizeof(hint)) == 0;
		/* the suggestions are written for a configuration ('@name'); here a name is
		 * given bare */
		size_t k = 0;
		for (size_t i = 0; hint[i]; i++)
			if (hint[i] != '@')
				hint[k++] = hint[i];
		hint[k] = '\0';
		fprintf(stderr,
		        "mxgate providers: no preset '%s' in %s%s%s%s (`mxgate providers` lists "
		        "them)\n",
		        name, providers_dir(), near ? ": did you mean " : "", near ? hint : "",
		        near ? "?" : "");
		return EXIT_FAILURE;
	}
	if (!(p = providers_load(path, err, sizeof(err)))) {
		fprintf(stderr, "mxgate providers: %s\n", err);
		return EXIT_FAILURE;
	}
	providers_free(p);
	if (!(fp = fopen(path, "r"))) {
		fprintf(stderr, "mxgate providers: %s: %s\n", path, strerror(errno));
		return EXIT_FAILURE;
	}
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
		fwrite(buf, 1, n, stdout);
	fclose(fp);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "mxgate providers: cannot write: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

static int
cmd_providers(int argc, char **argv)
{
	if (argc == 1 || (argc == 2 && strcmp(argv[1], "list") == 0))
		return providers_list();
	if (strcmp(argv[1], "show") == 0) {
		if (argc != 3)
			return usage_error("providers", "%s", "show needs one NAME");
		return providers_show(argv[2]);
	}
	return usage_error("providers", "unexpected argument '%s'", argv[1]);
}

static int
cmd_reference(int argc, char **argv)
{
	bool man = argc > 1 && strcmp(argv[1], "--man") == 0;

	if (argc > (man ? 2 : 1))
		return usage_error("reference", "unexpected argument '%s'", argv[man ? 2 : 1]);
	if (man)
		config_print_man(stdout);
	else
		config_print_reference(stdout);
	return EXIT_SUCCESS;
}

static int
cmd_version(int argc, char **argv)
{
	(void)argc, (void)argv;
	printf("mxgate %s\n", MXGATE_VERSION);
	return EXIT_SUCCESS;
}

/* `mxgate COMMAND --help` (or -h) anywhere before a "--": that command's help on stdout,
 * exit 0, as git and postconf do; nothing else on the line is looked at. */
static bool
wants_help(int argc, char **argv)
{
	for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	return false;
}

static int
command_help(const struct cmd *c)
{
	printf("usage: mxgate %s\n\n%s\n", c->synopsis, c->summary);
	if (c->options) {
		printf("\noptions:\n");
		print_options(stdout, "  ", c->options);
	}
	if (strcmp(c->name, "audit") == 0)
		printf("\nexit status: 0 success (no findings), 1 findings, 2 usage or "
		       "configuration error\n");
	else
		printf("\nexit status: 0 success, 1 error, 2 usage error%s\n",
		       strcmp(c->name, "which") == 0   ? ", 3 no connector takes the connection"
		       : strcmp(c->name, "probe") == 0 ? ", 3 the server refused"
		                                       : "");
	if (strcmp(c->name, "help") != 0 && strcmp(c->name, "version") != 0 &&
	    strcmp(c->name, "probe") != 0 && strcmp(c->name, "providers") != 0 &&
	    strcmp(c->name, "reference") != 0)
		printf("default configuration (-c FILE): %s\n", CONFIG_DEFAULT_PATH);
	printf("more: mxgate(8)\n");
	return EXIT_SUCCESS;
}

static int
cmd_help(int argc, char **argv)
{
	(void)argc, (void)argv;
	usage(stdout);
	return EXIT_SUCCESS;
}

int
main(int argc, char **argv)
{
	/* before anything can make OpenSSL allocate (net/tlsmem.h); without it OpenSSL keeps
	 * malloc, which costs memory, not correctness */
	(void)tlsmem_install();
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmds[i].name, argv[1]) == 0)
			return wants_help(argc, argv) ? command_help(&cmds[i])
			                              : cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "mxgate: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
