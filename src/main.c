/*
 * mxgate command line: a table of subcommands, one cmd_<verb>() each.
 *
 * Exit codes: 0 success; 1 error (bad configuration, I/O); 2 usage error;
 * 3 "no" answers (`which`: no connector).
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "queue.h"
#include "selector.h"
#include "server.h"

#define EXIT_USAGE 2
#define EXIT_NO    3

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *synopsis;
	const char *summary;
};

static int cmd_run(int argc, char **argv);
static int cmd_check(int argc, char **argv);
static int cmd_queue(int argc, char **argv);
static int cmd_which(int argc, char **argv);
static int cmd_reference(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct cmd cmds[] = {
        {"run", cmd_run, "run [-c FILE]",
         "run the gateway in the foreground (SIGHUP reloads, SIGTERM drains and stops)"},
        {"check", cmd_check, "check [-c FILE]",
         "validate the configuration; every error as FILE:LINE on stderr"},
        {"which", cmd_which, "which [-c FILE] [-v] LOCAL REMOTE",
         "name the connector that takes a connection (exit 3: none)"},
        {"queue", cmd_queue, "queue [-c FILE] [list|flush|remove ID]",
         "show the queue, retry it now, or remove a message"},
        {"reference", cmd_reference, "reference", "print the configuration reference (Markdown)"},
        {"version", cmd_version, "version", "print the version"},
        {"help", cmd_help, "help", "this text"},
};

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: mxgate COMMAND [options]\n\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(fp, "  mxgate %-36s %s\n", cmds[i].synopsis, cmds[i].summary);
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
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmds[i].name, cmd) == 0)
			fprintf(stderr, "usage: mxgate %s\n", cmds[i].synopsis);
	return EXIT_USAGE;
}

/* Parses the options common to the config-reading commands.  Returns -1 on a usage error. */
static int
parse_opts(const char *cmd, int argc, char **argv, const char **cfgpath, int *verbose)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"verbose", no_argument, NULL, 'v'},
	        {NULL, 0, NULL, 0},
	};
	int ch;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, verbose ? "+c:v" : "+c:", longopts, NULL)) != -1) {
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

static int
cmd_run(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;

	if (parse_opts("run", argc, argv, &path, NULL) < 0)
		return EXIT_USAGE;
	if (optind != argc)
		return usage_error("run", "unexpected argument '%s'", argv[optind]);
	return server_run(path) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
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
	c = load(path, &d);
	if (!c) {
		fprintf(stderr, "%s: %zu error%s; the configuration was not accepted\n", path,
		        d.errors, d.errors == 1 ? "" : "s");
		diag_release(&d);
		return EXIT_FAILURE;
	}
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
	char command[64];
	struct config *c;
	struct diag d;
	int rc;

	if (parse_opts("queue", argc, argv, &path, NULL) < 0)
		return EXIT_USAGE;
	if (optind == argc || strcmp(argv[optind], "list") == 0) {
		if (optind < argc && optind + 1 != argc)
			return usage_error("queue", "unexpected argument '%s'", argv[optind + 1]);
		snprintf(command, sizeof(command), "list");
	} else if (strcmp(argv[optind], "flush") == 0 && optind + 1 == argc) {
		snprintf(command, sizeof(command), "flush");
	} else if (strcmp(argv[optind], "remove") == 0 && optind + 2 == argc) {
		snprintf(command, sizeof(command), "remove %.40s", argv[optind + 1]);
	} else {
		return usage_error("queue", "%s", "expects list, flush or remove ID");
	}
	/* the spool's location comes from the configuration; its warnings are check's job */
	diag_init(&d);
	c = config_load(path, &d);
	if (!c)
		diag_print(&d, stderr);
	diag_release(&d);
	if (!c)
		return EXIT_FAILURE;
	rc = queue_command(c->spool, command, stdout, stderr);
	config_unref(c);
	return rc == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int
cmd_reference(int argc, char **argv)
{
	(void)argv;
	if (argc > 1)
		return usage_error("reference", "unexpected argument '%s'", argv[1]);
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
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "mxgate: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
