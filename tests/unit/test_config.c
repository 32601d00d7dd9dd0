/* Unit tests: loading mxgate.conf — defaults, presets, value syntax, and every error,
 * each checked for its line number. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mailpath.h"
#include "base/sidefile.h"
#include "conf/selector.h"
#include "helpers.h"
#include "queue/maildir.h"

#define ERR(line, text)                                                                            \
	cr_expect(helper_has(&d, DIAG_ERROR, NULL, line, text), "missing error at line %d: %s",    \
	          line, text)
#define WARN(line, text)                                                                           \
	cr_expect(helper_has(&d, DIAG_WARNING, NULL, line, text),                                  \
	          "missing warning at line %d: %s", line, text)

static void
tls_files(void)
{
	helper_make_cert("cert.pem", "key.pem");
}

Test(config, minimal_config_gets_exchange_defaults)
{
	struct diag d;
	diag_init(&d);
	struct config *c = helper_load("hostname = \"mx.example.com\"\n"
	                               "accepted-domains = { \"Example.COM\" }\n"
	                               "connector \"Only\" {\n"
	                               "  usage = custom\n"
	                               "  permission-groups = { anonymous-users }\n"
	                               "  bindings = { \"127.0.0.1:2525\" }\n"
	                               "  remote-ip-ranges = { \"127.0.0.0/8\" }\n"
	                               "}\n",
	                               &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	const struct connector *k = &c->connectors[0];
	cr_expect_str_eq(k->name, "Only");
	cr_expect_eq(k->at.line, 3);
	cr_expect(k->enabled);
	cr_expect_eq(k->max_message_size, 37748736u);
	cr_expect_eq(k->max_header_size, 262144u);
	cr_expect_eq(k->max_recipients_per_message, 200u);
	cr_expect_eq(k->max_inbound_connection, 5000u);
	cr_expect_eq(k->max_inbound_connection_per_source, 20u);
	cr_expect_eq(k->max_inbound_connection_percentage_per_source, 2u);
	cr_expect_eq(k->connection_timeout_ms, 600000u);
	cr_expect_eq(k->connection_inactivity_timeout_ms, 300000u);
	cr_expect_eq(k->tarpit_interval_ms, 5000u);
	cr_expect_eq(k->max_protocol_errors, 5u);
	cr_expect_eq(k->max_hop_count, 60u);
	cr_expect_eq(k->message_rate_limit, CONFIG_UNLIMITED);
	cr_expect(k->pipelining_enabled && k->eight_bit_mime_enabled &&
	          k->enhanced_status_codes_enabled && k->smtp_utf8_enabled);
	cr_expect(!k->require_tls);
	cr_expect_eq(k->auth_mechanisms, AUTH_NONE);
	cr_expect_eq(k->permission_groups, PERM_ANONYMOUS_USERS);
	cr_expect_str_eq(k->fqdn, "mx.example.com");
	cr_expect_str_eq(k->banner, "220 mx.example.com ESMTP ready");
	cr_expect_str_eq(c->spool, "/var/spool/mxgate");
	cr_expect_str_eq(c->maildir, "/var/spool/mxgate/maildir/%d/%u");
	cr_expect(config_accepts_domain(c, "example.com", 11));
	cr_expect(config_accepts_domain(c, "EXAMPLE.com.", 12));
	cr_expect(!config_accepts_domain(c, "sub.example.com", 15));
	cr_expect(!config_accepts_domain(c, "example.co", 10));
	config_unref(c);
	diag_release(&d);
}

Test(config, usage_presets)
{
	struct diag d;
	tls_files();
	diag_init(&d);
	struct config *c = helper_load(
	        "tls { certificate = \"cert.pem\"\n key = \"key.pem\" }\n"
	        "connector \"i\" { usage = internet\n"
	        "  bindings = { \"0.0.0.0:25\" }\n"
	        "  remote-ip-ranges = { \"67.231.152.0/24\" } }\n"
	        "connector \"p\" { usage = Partner\n"
	        "  bindings = { \"0.0.0.0:26\" } remote-ip-ranges = { \"10.0.0.1\" } }\n"
	        "connector \"n\" { usage = internal\n"
	        "  bindings = { \"0.0.0.0:27\" } remote-ip-ranges = { \"10.0.0.2\" } }\n"
	        "connector \"c\" { usage = custom\n"
	        "  bindings = { \"0.0.0.0:28\" } remote-ip-ranges = { \"10.0.0.3\" } }\n"
	        "connector \"x\" { usage = internet auth-mechanism = { none }\n"
	        "  permission-groups = { AnonymousUsers, Partners }\n"
	        "  bindings = { \"0.0.0.0:29\" } remote-ip-ranges = { \"10.0.0.4\" } }\n",
	        &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	cr_expect_eq(c->connectors[0].permission_groups, PERM_ANONYMOUS_USERS);
	cr_expect_eq(c->connectors[0].auth_mechanisms, AUTH_TLS);
	cr_expect_eq(c->connectors[1].permission_groups, PERM_PARTNERS);
	cr_expect_eq(c->connectors[1].auth_mechanisms, AUTH_TLS);
	cr_expect_eq(c->connectors[2].permission_groups, PERM_EXCHANGE_SERVERS);
	cr_expect_eq(c->connectors[2].auth_mechanisms, AUTH_TLS);
	cr_expect_eq(c->connectors[3].permission_groups, 0u);
	cr_expect_eq(c->connectors[3].auth_mechanisms, AUTH_NONE);
	cr_expect_eq(c->connectors[4].permission_groups, PERM_ANONYMOUS_USERS | PERM_PARTNERS);
	cr_expect_eq(c->connectors[4].auth_mechanisms, AUTH_NONE);
	/* the custom connector has no permission group: warned */
	WARN(10, "accepts no mail");
	/* relative paths are relative to the config file */
	cr_expect(strncmp(c->tls_key, helper_tmpdir(), strlen(helper_tmpdir())) == 0);
	config_unref(c);
	diag_release(&d);
}

Test(config, sizes_and_durations)
{
	static const struct {
		const char *s;
		uint64_t v;
	} sizes[] = {{"36MB", 37748736}, {"36 MB", 37748736}, {"37748736", 37748736},
	             {"256KB", 262144},  {"256 kb", 262144},  {"1GB", 1073741824},
	             {"64KiB", 65536},   {"10 B", 10},        {"2147483647", 2147483647}};
	static const char *const badsizes[] = {
	        "", "MB", "36 XB", "-1", "1.5MB", "36MBB", "99999999999999999999"};
	static const struct {
		const char *s;
		uint64_t ms;
	} durs[] = {{"5m", 300000},
	            {"300s", 300000},
	            {"00:05:00", 300000},
	            {"1.00:00:00", 86400000},
	            {"1h30m", 5400000},
	            {"500ms", 500},
	            {"0s", 0},
	            {"00:00:05", 5000},
	            {"2d", 172800000}};
	static const char *const baddurs[] = {"5",   "",  "5x",  "00:60:00",  "24:00:00",
	                                      "1:2", "m", "5m5", "00:05:00x", "-5m"};
	uint64_t v;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		cr_expect_eq(config_parse_size(sizes[i].s, &v), 0, "%s", sizes[i].s);
		cr_expect_eq(v, sizes[i].v, "%s", sizes[i].s);
	}
	for (size_t i = 0; i < sizeof(badsizes) / sizeof(badsizes[0]); i++)
		cr_expect_eq(config_parse_size(badsizes[i], &v), -1, "'%s' accepted", badsizes[i]);
	for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		cr_expect_eq(config_parse_duration(durs[i].s, &v), 0, "%s", durs[i].s);
		cr_expect_eq(v, durs[i].ms, "%s", durs[i].s);
	}
	for (size_t i = 0; i < sizeof(baddurs) / sizeof(baddurs[0]); i++)
		cr_expect_eq(config_parse_duration(baddurs[i], &v), -1, "'%s' accepted",
		             baddurs[i]);
}

/* Every error in one file; all are reported, each on its line. */
Test(config, every_error_with_its_line)
{
	struct diag d;
	char *key;

	free(helper_write_temp("cert.pem", "x\n"));
	key = helper_write_temp("loose-key.pem", "x\n");
	chmod(key, 0644);
	free(key);
	diag_init(&d);
	struct config *c = helper_load(
	        /*  1 */ "hostname = \"mx.example.com\"\n"
	                 /*  2 */ "frobnicate = 1\n"
	                 /*  3 */ "accepted-domains = { \"example.com\", \"bad_domain\" }\n"
	                 /*  4 */ "tls {\n"
	                 /*  5 */ "  certificate = \"cert.pem\"\n"
	                 /*  6 */ "  key = \"loose-key.pem\"\n"
	                 /*  7 */ "}\n"
	                 /*  8 */ "connector \"A\" {\n"
	                 /*  9 */ "  usage = internet\n"
	                 /* 10 */ "  bindings = { \"0.0.0.0:25\", \"1.2.3.4\" }\n"
	                 /* 11 */ "  remote-ip-ranges = { \"10.0.0.0/33\", \"10.1.0.0 "
	                 "255.0.255.0\" }\n"
	                 /* 12 */ "  max-message-size = \"lots\"\n"
	                 /* 13 */ "  max-recipients-per-message = 0\n"
	                 /* 14 */ "  connection-timeout = \"00:01:00\"\n"
	                 /* 15 */ "  banner = \"250 hello\"\n"
	                 /* 16 */ "  require-tls = maybe\n"
	                 /* 17 */ "  max-mesage-size = 10MB\n"
	                 /* 18 */ "}\n"
	                 /* 19 */ "connector \"a\" {\n"
	                 /* 20 */ "  usage = custom\n"
	                 /* 21 */ "  permission-groups = { anonymous-users }\n"
	                 /* 22 */ "  require-tls = true\n"
	                 /* 23 */ "  bindings = { \"0.0.0.0:25\" }\n"
	                 /* 24 */ "  remote-ip-ranges = { \"10.2.0.0/16\" }\n"
	                 /* 25 */ "}\n"
	                 /* 26 */ "connector \"B\" {\n"
	                 /* 27 */ "  usage = custom\n"
	                 /* 28 */ "  permission-groups = { anonymous-users }\n"
	                 /* 29 */ "  bindings = { \"0.0.0.0:25\" }\n"
	                 /* 30 */ "  remote-ip-ranges = { \"10.2.0.0-10.2.255.255\",\n"
	                 /* 31 */ "                       \"10.2.128.0-10.3.0.255\" }\n"
	                 /* 32 */ "  tarpit-interval = 5\n"
	                 /* 33 */ "  auth-mechanism = { none, tls }\n"
	                 /* 34 */ "}\n"
	                 /* 35 */ "connector \"T\" {\n"
	                 /* 36 */ "  usage = client\n"
	                 /* 37 */ "  bindings = { \"0.0.0.0:26\" }\n"
	                 /* 38 */ "  max-hop-count = 60\n"
	                 /* 39 */ "  max-hop-count = 61\n"
	                 /* 40 */ "}\n",
	        &d);
	cr_expect_null(c);
	ERR(2, "unknown key 'frobnicate'");
	ERR(3, "bad_domain");
	ERR(6, "readable by group or others");
	ERR(10, "missing :PORT");
	ERR(11, "prefix length 33");
	ERR(11, "not contiguous");
	ERR(12, "bad max-message-size 'lots'");
	ERR(13, "out of range: 1 to 512000");
	ERR(14, "must be above connection-inactivity-timeout");
	ERR(15, "must start with \"220 \"");
	ERR(16, "write true or false");
	ERR(17, "did you mean 'max-message-size'");
	ERR(19, "name 'a' is already used on line 8");
	ERR(22, "require-tls needs 'tls'");
	ERR(30, "both take binding 0.0.0.0:25 with the same remote range");
	ERR(31, "partly overlaps");
	ERR(32, "bad tarpit-interval '5'");
	ERR(33, "'none' must stand alone");
	ERR(36, "usage 'client'");
	ERR(39, "set twice (first on line 38)");
	if (diag_errors(&d) < 20)
		helper_dump(&d);
	diag_release(&d);
}

Test(config, tls_without_certificate_and_missing_files)
{
	struct diag d;
	diag_init(&d);
	struct config *c = helper_load("connector \"in\" {\n"
	                               "  usage = internet\n"
	                               "  bindings = { \"0.0.0.0:25\" }\n"
	                               "  remote-ip-ranges = { \"10.0.0.0/8\" }\n"
	                               "}\n"
	                               "connector \"x\" {\n"
	                               "  auth-mechanism = { tls }\n"
	                               "  bindings = { \"0.0.0.0:26\" }\n"
	                               "}\n",
	                               &d);
	cr_expect_null(c);
	ERR(1, "offers tls (from its usage) but there is no tls");
	ERR(7, "offers tls but there is no tls");
	diag_release(&d);

	diag_init(&d);
	c = helper_load("tls {\n  certificate = \"/nonexistent/c.pem\"\n}\n"
	                "connector \"x\" { bindings = { \"0.0.0.0:26\" } }\n",
	                &d);
	cr_expect_null(c);
	ERR(2, "cannot read certificate /nonexistent/c.pem");
	ERR(1, "the tls section needs a key");
	diag_release(&d);
}

Test(config, warnings_do_not_reject)
{
	struct diag d;
	tls_files();
	diag_init(&d);
	struct config *c = helper_load("tls { certificate = \"cert.pem\"  key = \"key.pem\" }\n"
	                               "accepted-domains = { \"example.com\" }\n"
	                               "connector \"open\" {\n"
	                               "  usage = internet\n"
	                               "  bindings = { \"0.0.0.0:25\" }\n"
	                               "}\n"
	                               "connector \"wide\" {\n"
	                               "  usage = internet\n"
	                               "  bindings = { \"0.0.0.0:26\" }\n"
	                               "  remote-ip-ranges = { \"0.0.0.0-255.255.255.255\",\n"
	                               "    \"192.168.1.1/24\", \"0.0.0.0\" }\n"
	                               "}\n"
	                               "connector \"partners\" {\n"
	                               "  usage = partner\n"
	                               "  bindings = { \"0.0.0.0:27\" }\n"
	                               "}\n",
	                               &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	WARN(3, "connector 'open' lets anonymous senders in from every IPv4 and IPv6 address: "
	        "this opens the server to anyone");
	WARN(10, "opens the server to anyone");
	WARN(13, "connector 'partners' lets partner senders in from every IPv4 and IPv6 "
	         "address: this opens the server to anyone");
	WARN(11, "host bits set; it means 192.168.1.0/24");
	WARN(11, "single address 0.0.0.0");
	cr_expect(c->connectors[0].all_remote);
	config_unref(c);
	diag_release(&d);

	/* exchange-servers may relay anywhere: open to every address is an open relay, which
	 * `mxgate check` passed without a word while it warned about anonymous senders */
	diag_init(&d);
	c = helper_load("accepted-domains = { \"example.com\" }\n"
	                "connector \"office\" {\n"
	                "  usage = internal\n"
	                "  auth-mechanism = { none }\n"
	                "  bindings = { \"0.0.0.0:25\" }\n"
	                "}\n"
	                "connector \"v6 open\" {\n"
	                "  usage = custom\n"
	                "  permission-groups = { exchange-servers }\n"
	                "  bindings = { \"0.0.0.0:26\", \"[::]:26\" }\n"
	                "  remote-ip-ranges = { \"10.1.0.0/16\", \"::/0\" }\n"
	                "}\n"
	                "connector \"closed\" {\n"
	                "  usage = internal\n"
	                "  auth-mechanism = { none }\n"
	                "  bindings = { \"0.0.0.0:27\" }\n"
	                "  remote-ip-ranges = { \"10.1.0.0/16\" }\n"
	                "}\n",
	                &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	WARN(2, "'office' lets every IPv4 and IPv6 address relay to any domain");
	WARN(11, "'v6 open' lets every IPv6 address relay to any domain");
	cr_expect(!helper_has(&d, DIAG_WARNING, NULL, 17, "open relay"));
	config_unref(c);
	diag_release(&d);
}

Test(config, ranges_file_errors_name_that_file)
{
	struct diag d;
	char *rf = helper_write_temp("ranges.txt", "# Proofpoint Essentials US\n"
	                                           "67.231.152.0/24\n"
	                                           "\n"
	                                           "67.231.153.0/24   # trailing comment\n"
	                                           "67.231.999.0/24\n"
	                                           "2001:db8::/32\n");
	free(rf);
	diag_init(&d);
	struct config *c = helper_load("connector \"pp\" {\n"
	                               "  usage = custom\n"
	                               "  permission-groups = { anonymous-users }\n"
	                               "  bindings = { \"0.0.0.0:25\", \"[::]:25\" }\n"
	                               "  remote-ip-ranges-file = \"ranges.txt\"\n"
	                               "  remote-ip-ranges-file += \"missing.txt\"\n"
	                               "}\n",
	                               &d);
	cr_expect_null(c);
	cr_expect(helper_has(&d, DIAG_ERROR, "ranges.txt", 5, "67.231.999.0"));
	cr_expect(
	        helper_has(&d, DIAG_ERROR, "mxgate.conf", 6, "cannot read remote-ip-ranges-file"));
	diag_release(&d);

	rf = helper_write_temp("ranges.txt", "67.231.152.0/24\n67.231.153.0/24\n2001:db8::/32\n");
	free(rf);
	diag_init(&d);
	c = helper_load("connector \"pp\" {\n"
	                "  usage = custom\n"
	                "  permission-groups = { anonymous-users }\n"
	                "  bindings = { \"0.0.0.0:25\", \"[::]:25\" }\n"
	                "  remote-ip-ranges = { \"10.9.9.9\" }\n"
	                "  remote-ip-ranges-file = \"ranges.txt\"\n"
	                "}\n",
	                &d);
	cr_assert_not_null(c);
	cr_expect_eq(c->connectors[0].n_ranges, 4);
	cr_expect_eq(c->connectors[0].ranges[3].at.line, 3);
	cr_expect(strstr(c->connectors[0].ranges[3].at.file, "ranges.txt") != NULL);
	config_unref(c);
	diag_release(&d);
}

/* The lines the one-pass reader takes (ADDRESS/PREFIX alone, or with a Windows CR) and the
 * ones it leaves to range_parse() give the same records, on their own lines, with the
 * same warnings. */
Test(config, ranges_file_lines_in_every_form)
{
	struct diag d;
	char *rf = helper_write_temp("ranges.txt", "67.231.152.0/24\r\n"          /* 1 */
	                                           "67.231.153.0/24\n"            /* 2 */
	                                           "  67.231.154.0/24\n"          /* 3 */
	                                           "67.231.155.0/24 # a note\r\n" /* 4 */
	                                           "# 10.0.0.0/8\n"               /* 5 */
	                                           "\r\n"                         /* 6 */
	                                           "192.0.2.77/24\r\n"            /* 7 */
	                                           "10.1.0.0 255.255.0.0\n"       /* 8 */
	                                           "10.2.0.0(255.255.0.0)\r\n"    /* 9 */
	                                           "10.3.0.1-10.3.0.9\n"          /* 10 */
	                                           "2001:DB8::/32\r\n"            /* 11 */
	                                           "198.51.100.7");               /* 12 */
	static const struct {
		int line;
		const char *canon;
	} want[] = {{1, "67.231.152.0/24"}, {2, "67.231.153.0/24"},    {3, "67.231.154.0/24"},
	            {4, "67.231.155.0/24"}, {7, "192.0.2.0/24"},       {8, "10.1.0.0/16"},
	            {9, "10.2.0.0/16"},     {10, "10.3.0.1-10.3.0.9"}, {11, "2001:db8::/32"},
	            {12, "198.51.100.7/32"}};
	size_t n = sizeof(want) / sizeof(want[0]);

	free(rf);
	diag_init(&d);
	struct config *c = helper_load("connector \"pp\" {\n"
	                               "  usage = custom\n"
	                               "  permission-groups = { anonymous-users }\n"
	                               "  bindings = { \"0.0.0.0:25\" }\n"
	                               "  remote-ip-ranges-file = \"ranges.txt\"\n"
	                               "}\n",
	                               &d);
	cr_assert_not_null(c);
	cr_assert_eq(c->connectors[0].n_ranges, n);
	for (size_t i = 0; i < n; i++) {
		char buf[128];
		range_format(&c->connectors[0].ranges[i].r, buf, sizeof(buf));
		cr_expect_str_eq(buf, want[i].canon, "record %zu", i);
		cr_expect_eq(c->connectors[0].ranges[i].at.line, want[i].line, "record %zu", i);
	}
	cr_expect(helper_has(&d, DIAG_WARNING, "ranges.txt", 7,
	                     "range '192.0.2.77/24' has host bits set; it means 192.0.2.0/24"));
	cr_expect_eq(diag_errors(&d), 0);
	config_unref(c);
	diag_release(&d);
}

Test(config, syntax_errors_and_unknown_sections)
{
	struct diag d;

	diag_init(&d);
	cr_expect_null(helper_load("hostname = \"a.example\"\n"
	                           "connector \"x\" {\n"
	                           "  bindings = { \"0.0.0.0:25\" \n"
	                           "}\n",
	                           &d));
	ERR(2, "never closed");
	diag_release(&d);

	diag_init(&d);
	cr_expect_null(helper_load("hostname = = \"a.example\"\n", &d));
	ERR(1, "syntax error");
	diag_release(&d);

	diag_init(&d);
	cr_expect_null(helper_load("hostname = \"a.example\"\n"
	                           "relay-settings {\n  x = 1\n}\n",
	                           &d));
	ERR(2, "unknown section 'relay-settings'");
	diag_release(&d);

	diag_init(&d);
	cr_expect_null(helper_load("connector {\n}\n", &d));
	ERR(1, "needs a name");
	diag_release(&d);

	diag_init(&d);
	cr_expect_null(config_load("/nonexistent/mxgate.conf", &d));
	cr_expect(helper_has(&d, DIAG_ERROR, "/nonexistent/mxgate.conf", 0, "cannot read"));
	diag_release(&d);
}

Test(config, duplicate_connector_and_list_reassignment)
{
	struct diag d;

	diag_init(&d);
	cr_expect_null(helper_load("connector \"x\" {\n"
	                           "  bindings = { \"0.0.0.0:25\" }\n"
	                           "}\n"
	                           "connector \"x\" {\n"
	                           "  bindings = { \"0.0.0.0:26\" }\n"
	                           "  bindings = { \"0.0.0.0:27\" }\n"
	                           "}\n",
	                           &d));
	ERR(4, "connector 'x' is defined twice (first on line 1)");
	ERR(6, "use '+=' to add to a list");
	diag_release(&d);
}

Test(config, reference_lists_every_key)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	config_print_reference(fp);
	fclose(fp);
	static const char *const keys[] = {"usage",
	                                   "enabled",
	                                   "bindings",
	                                   "remote-ip-ranges",
	                                   "remote-ip-ranges-file",
	                                   "auth-mechanism",
	                                   "permission-groups",
	                                   "require-tls",
	                                   "banner",
	                                   "fqdn",
	                                   "max-message-size",
	                                   "max-header-size",
	                                   "max-recipients-per-message",
	                                   "max-inbound-connection",
	                                   "max-inbound-connection-per-source",
	                                   "max-inbound-connection-percentage-per-source",
	                                   "connection-timeout",
	                                   "connection-inactivity-timeout",
	                                   "message-rate-limit",
	                                   "tarpit-interval",
	                                   "max-protocol-errors",
	                                   "max-hop-count",
	                                   "pipelining-enabled",
	                                   "eight-bit-mime-enabled",
	                                   "enhanced-status-codes-enabled",
	                                   "smtp-utf8-enabled",
	                                   "protocol-logging-level",
	                                   "max-side-file-size",
	                                   "max-side-file-line-length"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char pat[96];
		snprintf(pat, sizeof(pat), "| `%s` |", keys[i]);
		cr_expect(strstr(buf, pat) != NULL, "reference lacks %s", keys[i]);
	}
	free(buf);
}

/* Issue 16, defect 1: inline ranges, then a ranges file that takes the total past the
 * first allocation (16 slots then).  Each option used to restart its own capacity at 0
 * while the array already held 16, and add_range wrote past its end. */
Test(config, inline_ranges_then_a_ranges_file_past_the_first_allocation)
{
	struct diag d;
	char text[4096];
	size_t len = 0;

	for (int i = 0; i < 20; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "10.%d.0.0/16\n", i);
	free(helper_write_temp("more.txt", text));
	diag_init(&d);
	struct config *c = helper_load("connector \"pp\" {\n"
	                               "  usage = custom\n"
	                               "  permission-groups = { anonymous-users }\n"
	                               "  bindings = { \"0.0.0.0:25\" }\n"
	                               "  remote-ip-ranges = { \"192.0.2.1\", \"192.0.2.2\" }\n"
	                               "  remote-ip-ranges-file = \"more.txt\"\n"
	                               "  remote-ip-ranges += { \"192.0.2.3\" }\n"
	                               "}\n",
	                               &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	cr_expect_eq(c->connectors[0].n_ranges, 23);
	cr_expect_eq(c->connectors[0].ranges[22].at.line, 20);
	config_unref(c);
	diag_release(&d);
}

/* The daemon's load: the range records are freed once compiled, the selection they were
 * compiled into is the same, and `which`'s explanation says they were not kept. */
Test(config, compiled_load_frees_the_range_records_and_selects_the_same)
{
	const char *text = "connector \"narrow\" {\n"
	                   "  usage = custom\n"
	                   "  permission-groups = { anonymous-users }\n"
	                   "  bindings = { \"127.0.0.1:2525\" }\n"
	                   "  remote-ip-ranges-file = \"narrow.txt\"\n"
	                   "}\n"
	                   "connector \"wide\" {\n"
	                   "  usage = custom\n"
	                   "  permission-groups = { anonymous-users }\n"
	                   "  bindings = { \"0.0.0.0:2525\" }\n"
	                   "  remote-ip-ranges = { \"10.0.0.0/8\", \"0.0.0.0/0\" }\n"
	                   "}\n";
	struct endpoint local = {.port = 2525};
	struct diag d;
	char *path, *out = NULL;
	size_t outlen = 0;

	free(helper_write_temp("narrow.txt", "10.1.0.0/16\n10.2.0.0/24\n"));
	path = helper_write_temp("compiled.conf", text);
	cr_assert_eq(ipaddr_parse("127.0.0.1", 9, &local.addr), 0);
	diag_init(&d);
	struct config *full = config_load(path, &d), *c = config_load_compiled(path, &d);
	if (!full || !c)
		helper_dump(&d);
	cr_assert_not_null(full);
	cr_assert_not_null(c);
	cr_expect_null(c->connectors[0].ranges);
	cr_expect_null(c->connectors[1].ranges);
	cr_expect_eq(c->connectors[0].n_ranges, 2);
	cr_expect_eq(c->connectors[1].open_family, AF_INET);
	cr_expect_not_null(full->connectors[0].ranges);
	const char *clients[] = {"10.1.2.3", "10.2.0.9", "10.2.1.9", "10.3.0.1", "192.0.2.1"};
	for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
		struct ipaddr a;
		cr_assert_eq(ipaddr_parse(clients[i], strlen(clients[i]), &a), 0);
		cr_expect_eq(selector_select(c->selector, &local, &a),
		             selector_select(full->selector, &local, &a), "%s", clients[i]);
	}
	struct ipaddr a;
	cr_assert_eq(ipaddr_parse("10.1.2.3", 8, &a), 0);
	cr_expect_eq(selector_select(c->selector, &local, &a), 0);
	FILE *fp = open_memstream(&out, &outlen);
	cr_assert_not_null(fp);
	selector_explain(c->selector, &local, &a, fp);
	fclose(fp);
	cr_expect(strstr(out, "candidate \"narrow\": its ranges were not kept"), "%s", out);
	free(out);
	config_unref(c);
	config_unref(full);
	free(path);
	diag_release(&d);
}

/* ---- issue 16, defect 4: maildir templates certain to fail at delivery ---------------- */

/* What delivery does with tmpl for local@domain, step by step as deliver.c does it:
 * mailpath_split, the base directory made and opened, mailpath_expand, maildir_open.
 * Returns 0 when a Maildir was opened. */
static int
deliver_open(const char *tmpl, const char *local, const char *domain)
{
	char base[MAILPATH_BASE_MAX], rel[MAILPATH_REL_MAX];
	const char *rest;
	int bfd, md = -1, nw;

	if (mailpath_split(tmpl, base, sizeof(base), &rest) < 0)
		return -1;
	if (mkdir(base, 0700) < 0 && errno != EEXIST)
		return -1;
	if ((bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	if (mailpath_expand(rest, local, domain, rel, sizeof(rel)) < 0) {
		close(bfd);
		return -1;
	}
	nw = maildir_open(bfd, rel, &md);
	close(bfd);
	if (nw < 0)
		return -1;
	close(nw);
	close(md);
	return 0;
}

static char *
repeat(char ch, size_t n)
{
	char *s = malloc(n + 1);

	cr_assert_not_null(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

/* mailpath_check refuses exactly the templates delivery refuses for every recipient, and
 * each refusal says what is wrong; delivery itself is the judge. */
Test(config, maildir_check_agrees_with_delivery)
{
	char *a255 = repeat('a', 255), *a256 = repeat('a', 256), *a254 = repeat('a', 254);
	char *b1100 = repeat('b', 1100), *slashes = malloc(2 * 1100 + 1);
	struct {
		char suffix[2400];
		const char *needle; /* NULL: accepted */
	} cases[] = {
	        {"/ok/%d/%u", NULL},
	        {"/../ok2/%d/%u", NULL}, /* the fixed prefix is resolved by the kernel */
	        {"/ok3/100%%/%d/%u", NULL},
	        {"/shared", NULL},
	        {"/ok4/%d-%u", NULL},
	        {"/x/%d/../%u", "a '..' component"},
	        {"/x/%d/./%u", "a '.' component"},
	        {"/x/..", "a '..' component"},
	        {"/x/%d/%u/..", "a '..' component"},
	        {"", "NAME_MAX"}, /* a 256-byte directory in the fixed prefix */
	        {"", "NAME_MAX"}, /* 255 literal bytes and %d in one component */
	        {"", NULL},       /* 254 literal bytes and %d: 255 for a one-letter domain */
	        {"", "at most 1023"},
	        {"", "at most 2047"},
	};
	cr_assert_not_null(slashes);
	for (size_t i = 0; i < 1100; i++)
		memcpy(slashes + 2 * i, "b/", 2);
	slashes[2 * 1100] = '\0';
	snprintf(cases[9].suffix, sizeof(cases[9].suffix), "/%s/%%d", a256);
	snprintf(cases[10].suffix, sizeof(cases[10].suffix), "/y/%s%%d/%%u", a255);
	snprintf(cases[11].suffix, sizeof(cases[11].suffix), "/z/%s%%d/%%u", a254);
	snprintf(cases[12].suffix, sizeof(cases[12].suffix), "/%s/%%d", b1100);
	snprintf(cases[13].suffix, sizeof(cases[13].suffix), "/w/%%d/%s", slashes);

	free(helper_write_temp("x", ""));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *tmpl, err[1024] = "";
		/* a directory of its own, which delivery expects to exist above the base */
		cr_assert(asprintf(&tmpl, "%s/md%zu", helper_tmpdir(), i) > 0);
		cr_assert(mkdir(tmpl, 0700) == 0 || errno == EEXIST);
		free(tmpl);
		cr_assert(asprintf(&tmpl, "%s/md%zu%s", helper_tmpdir(), i, cases[i].suffix) > 0);
		int rc = mailpath_check(tmpl, err, sizeof(err));
		if (cases[i].needle) {
			cr_expect_eq(rc, -1, "case %zu accepted: %.80s", i, tmpl);
			cr_expect(strstr(err, cases[i].needle) != NULL, "case %zu: %s", i, err);
			/* certain to fail: for a short and for an ordinary recipient */
			cr_expect_neq(deliver_open(tmpl, "a", "a"), 0, "case %zu delivered", i);
			cr_expect_neq(deliver_open(tmpl, "user", "example.com"), 0,
			              "case %zu delivered", i);
		} else {
			cr_expect_eq(rc, 0, "case %zu refused: %s", i, err);
			cr_expect_eq(deliver_open(tmpl, "a", "a"), 0, "case %zu: %s", i,
			             strerror(errno));
		}
		free(tmpl);
	}
	char err[256];
	cr_expect_eq(mailpath_check("var/mail/%d/%u", err, sizeof(err)), -1);
	cr_expect(strstr(err, "not an absolute path") != NULL, "%s", err);
	free(a255), free(a256), free(a254), free(b1100), free(slashes);
}

Test(config, maildir_templates_certain_to_fail_are_refused_with_their_fix)
{
	static const struct {
		const char *tmpl, *needle;
	} cases[] = {
	        {"/x/%d/../%u", "bad maildir '/x/%d/../%u': a '..' component"},
	        {"/x/%d/../%u", "write '/x/%u'"},
	        {"/x/%d/./%u", "write '/x/%d/%u'"},
	        {"/var/mail/%d/%u/..", "write '/var/mail/%d'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[1024];
		struct diag d;
		snprintf(text, sizeof(text),
		         "hostname = \"mx.example.com\"\n"
		         "accepted-domains = { \"example.com\" }\n"
		         "\n"
		         "deliver {\n"
		         "  maildir = \"%s\"\n"
		         "}\n"
		         "connector \"in\" {\n"
		         "  usage = custom\n"
		         "  permission-groups = { anonymous-users }\n"
		         "  bindings = { \"127.0.0.1:2525\" }\n"
		         "  remote-ip-ranges = { \"127.0.0.0/8\" }\n"
		         "}\n",
		         cases[i].tmpl);
		diag_init(&d);
		cr_expect_null(helper_load(text, &d), "%s accepted", cases[i].tmpl);
		ERR(5, cases[i].needle);
		diag_release(&d);
	}
}

Test(config, maildir_empty_components_warn_and_the_default_keeps_the_spool_as_text)
{
	struct diag d;
	char text[1024], want[512];
	const char *conn = "connector \"in\" {\n"
	                   "  usage = custom\n"
	                   "  permission-groups = { anonymous-users }\n"
	                   "  bindings = { \"127.0.0.1:2525\" }\n"
	                   "  remote-ip-ranges = { \"127.0.0.0/8\" }\n"
	                   "}\n";

	diag_init(&d);
	snprintf(text, sizeof(text),
	         "accepted-domains = { \"example.com\" }\n"
	         "deliver { maildir = \"/var/mail//%%d/%%u/\" }\n%s",
	         conn);
	struct config *c = helper_load(text, &d);
	cr_assert_not_null(c);
	WARN(2, "empty path component; write '/var/mail/%d/%u'");
	config_unref(c);
	diag_release(&d);

	/* a '%' in the spool is text in the default maildir, not a template; a trailing
	 * '/' makes no empty component */
	free(helper_write_temp("x", ""));
	diag_init(&d);
	snprintf(text, sizeof(text),
	         "accepted-domains = { \"example.com\" }\n"
	         "spool = \"%s/100%%d/\"\n%s",
	         helper_tmpdir(), conn);
	c = helper_load(text, &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	cr_expect_eq(d.warnings, 0);
	snprintf(want, sizeof(want), "%s/100%%%%d/maildir/%%d/%%u", helper_tmpdir());
	cr_expect_str_eq(c->maildir, want);
	config_unref(c);
	diag_release(&d);

	/* a spool whose default maildir delivery would refuse */
	diag_init(&d);
	snprintf(text, sizeof(text),
	         "accepted-domains = { \"example.com\" }\n"
	         "spool = \"/var/%%d/..\"\n%s",
	         conn);
	cr_expect_null(helper_load(text, &d));
	ERR(2, "bad spool '/var/%d/..' for the default maildir");
	diag_release(&d);
}

/* ---- issue 16, defect 5: side files that are not regular, or too big ------------------- */

/* A connector whose remote-ip-ranges-file (line 8) is path, after the top-level lines
 * top (lines 1 and 2). */
static struct config *
load_with_ranges_file(const char *top, const char *path, struct diag *d)
{
	char text[2048];

	snprintf(text, sizeof(text),
	         "%s"
	         "accepted-domains = { \"example.com\" }\n"
	         "connector \"in\" {\n"
	         "  usage = custom\n"
	         "  permission-groups = { anonymous-users }\n"
	         "  bindings = { \"127.0.0.1:2525\" }\n"
	         "  remote-ip-ranges-file = \"%s\"\n"
	         "}\n",
	         top, path);
	return helper_load(text, d);
}

#define NO_TOP "\n\n" /* the default limits */

/* Before the fix each of these read without end (check, start and reload never returned);
 * the timeout turns such a hang into a failure. */
Test(config, side_files_that_are_devices_fifos_or_directories_are_refused, .timeout = 60)
{
	struct diag d;
	char fifo[512];

	diag_init(&d);
	cr_expect_null(load_with_ranges_file(NO_TOP, "/dev/zero", &d));
	ERR(8, "cannot read remote-ip-ranges-file /dev/zero: not a regular file (a character "
	       "device)");
	diag_release(&d);

	/* a FIFO with no writer: opening it must not wait for one */
	free(helper_write_temp("x", ""));
	snprintf(fifo, sizeof(fifo), "%s/ranges.fifo", helper_tmpdir());
	unlink(fifo);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	diag_init(&d);
	cr_expect_null(load_with_ranges_file(NO_TOP, "ranges.fifo", &d));
	ERR(8, "not a regular file (a FIFO)");
	diag_release(&d);

	diag_init(&d);
	cr_expect_null(load_with_ranges_file(NO_TOP, helper_tmpdir(), &d));
	ERR(8, "not a regular file (a directory)");
	diag_release(&d);

	/* a recipients file from /dev/urandom, and the main file itself */
	diag_init(&d);
	cr_expect_null(helper_load("domain \"example.com\" {\n"
	                           "  recipients-file = \"/dev/urandom\"\n"
	                           "}\n"
	                           "connector \"in\" {\n"
	                           "  bindings = { \"127.0.0.1:2525\" }\n"
	                           "}\n",
	                           &d));
	ERR(2, "cannot read recipients-file /dev/urandom: not a regular file");
	diag_release(&d);

	diag_init(&d);
	cr_expect_null(config_load(fifo, &d));
	cr_expect(helper_has(&d, DIAG_ERROR, "ranges.fifo", 0,
	                     "cannot read the configuration: not a regular file (a FIFO)"));
	diag_release(&d);
	unlink(fifo);
}

/* OpenSSL opens the TLS files and the relay's CA file without O_NONBLOCK: a FIFO there
 * blocked check and start until the timeout. */
Test(config, tls_and_ca_files_must_be_regular_files, .timeout = 60)
{
	struct diag d;
	char fifo[512], text[2048];

	tls_files();
	snprintf(fifo, sizeof(fifo), "%s/tls.fifo", helper_tmpdir());
	unlink(fifo);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	static const char *const cases[][2] = {
	        {"certificate = \"tls.fifo\"\n  key = \"key.pem\"", "cannot read certificate"},
	        {"certificate = \"cert.pem\"\n  key = \"tls.fifo\"", "cannot read key"},
	};
	for (size_t i = 0; i < 2; i++) {
		snprintf(text, sizeof(text),
		         "tls {\n"
		         "  %s\n"
		         "}\n"
		         "connector \"x\" { bindings = { \"0.0.0.0:26\" } }\n",
		         cases[i][0]);
		diag_init(&d);
		cr_expect_null(helper_load(text, &d));
		ERR(2 + (int)i, cases[i][1]);
		ERR(2 + (int)i, "not a regular file (a FIFO)");
		diag_release(&d);
	}
	diag_init(&d);
	cr_expect_null(helper_load("deliver {\n"
	                           "  relay = \"192.0.2.1:25\"\n"
	                           "  relay-ca-file = \"/dev/zero\"\n"
	                           "}\n"
	                           "connector \"x\" { bindings = { \"0.0.0.0:26\" } }\n",
	                           &d));
	ERR(3, "cannot read relay-ca-file /dev/zero: not a regular file (a character device)");
	diag_release(&d);
	unlink(fifo);
}

Test(config, side_file_lines_and_sizes_are_bounded_by_options)
{
	struct diag d;
	char *line = repeat('#', 5000), text[8192];

	/* the default line length, 4096 */
	snprintf(text, sizeof(text), "192.0.2.1\n10.0.0.0/8 %s\n", line);
	free(helper_write_temp("long.txt", text));
	diag_init(&d);
	cr_expect_null(load_with_ranges_file(NO_TOP, "long.txt", &d));
	cr_expect(helper_has(&d, DIAG_ERROR, "long.txt", 2,
	                     "the line is longer than 4096 bytes (raise "
	                     "max-side-file-line-length"));
	diag_release(&d);

	/* a configured line length */
	free(helper_write_temp(
	        "medium.txt",
	        "192.0.2.1\n"
	        "192.0.2.2\n"
	        "192.0.2.3   # this comment makes the line longer than 64 bytes, the limit\n"));
	diag_init(&d);
	cr_expect_null(
	        load_with_ranges_file("max-side-file-line-length = 64\n\n", "medium.txt", &d));
	cr_expect(helper_has(&d, DIAG_ERROR, "medium.txt", 3, "longer than 64 bytes"));
	diag_release(&d);
	diag_init(&d);
	struct config *c =
	        load_with_ranges_file("max-side-file-line-length = 100\n\n", "medium.txt", &d);
	cr_assert_not_null(c);
	cr_expect_eq(c->max_side_file_line_length, 100);
	cr_expect_eq(c->connectors[0].n_ranges, 3);
	config_unref(c);
	diag_release(&d);

	/* a configured size: 2000 bytes against 1KB, then against 2KB */
	size_t len = 0;
	for (int i = 0; len < 2000; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "10.%d.%d.0/24\n", i / 256,
		                        i % 256);
	free(helper_write_temp("big.txt", text));
	diag_init(&d);
	cr_expect_null(load_with_ranges_file("max-side-file-size = 1KB\n\n", "big.txt", &d));
	ERR(8, "over the limit of 1KB (raise max-side-file-size");
	diag_release(&d);
	diag_init(&d);
	c = load_with_ranges_file("max-side-file-size = 2KB\n\n", "big.txt", &d);
	cr_assert_not_null(c);
	cr_expect_eq(c->max_side_file_size, 2048);
	config_unref(c);
	diag_release(&d);

	/* a NUL byte would have cut its line short without a word */
	FILE *fp;
	snprintf(text, sizeof(text), "%s/nul.txt", helper_tmpdir());
	cr_assert_not_null(fp = fopen(text, "w"));
	fwrite("192.0.2.1\n10.0.0.0/8\0 192.0.2.9\n", 1, 32, fp);
	fclose(fp);
	diag_init(&d);
	cr_expect_null(load_with_ranges_file(NO_TOP, "nul.txt", &d));
	cr_expect(helper_has(&d, DIAG_ERROR, "nul.txt", 2, "a NUL byte"));
	diag_release(&d);

	/* the bounds of the options themselves */
	diag_init(&d);
	cr_expect_null(load_with_ranges_file("max-side-file-size = 100\n"
	                                     "max-side-file-line-length = 10\n",
	                                     "big.txt", &d));
	ERR(1, "max-side-file-size '100' is out of range");
	ERR(2, "max-side-file-line-length '10' is out of range");
	diag_release(&d);
	free(line);
}

Test(config, side_file_limits_default_to_the_documented_values)
{
	struct diag d;

	free(helper_write_temp("one.txt", "192.0.2.1\n"));
	diag_init(&d);
	struct config *c = load_with_ranges_file(NO_TOP, "one.txt", &d);
	cr_assert_not_null(c);
	cr_expect_eq(c->max_side_file_size, SIDEFILE_DEFAULT_MAX_SIZE);
	cr_expect_eq(c->max_side_file_size, 256u * 1024 * 1024);
	cr_expect_eq(c->max_side_file_line_length, SIDEFILE_DEFAULT_MAX_LINE);
	config_unref(c);
	diag_release(&d);
}

/* libConfuse 3.3 counted each '#' comment line of the main file twice: an unknown key on
 * line 3 after two comment lines was reported on line 7. */
Test(config, comment_lines_keep_line_numbers_exact)
{
	struct diag d;

	diag_init(&d);
	cr_expect_null(helper_load("# one\n"
	                           "# two\n"
	                           "frobnicate = 1\n"
	                           "// three\n"
	                           "/* four\n"
	                           "   five */\n"
	                           "max-mesage-size = 1\n",
	                           &d));
	ERR(3, "unknown key 'frobnicate'");
	ERR(7, "unknown key 'max-mesage-size'");
	ERR(0, "no connector is defined");
	cr_expect_eq(diag_errors(&d), 3);
	diag_release(&d);
}

/* mxgate queue and status find the spool of a file with errors from its statements:
 * resolved as the loader resolves it, the default when none is written, NULL when the
 * file does not parse. */
Test(config, the_spool_of_a_file_with_errors)
{
	char *path = helper_write_temp("spool1.conf", "spool = \"q\"\nno-such-key = 1\n");
	char *spool = config_spool_of(path), *want = NULL;

	cr_assert_not_null(spool);
	cr_assert(asprintf(&want, "%s/q", helper_tmpdir()) > 0);
	cr_expect_str_eq(spool, want);
	free(spool);
	free(want);
	free(path);
	path = helper_write_temp("spool2.conf", "connector \"x\" { bogus = 1 }\n");
	spool = config_spool_of(path);
	cr_expect_str_eq(spool, "/var/spool/mxgate");
	free(spool);
	free(path);
	path = helper_write_temp("spool3.conf", "spool = \"/s\"\nconnector {\n");
	cr_expect_null(config_spool_of(path));
	free(path);
}

/* A byte order mark before the first key (Notepad, PowerShell) is not part of it. */
Test(config, a_utf8_bom_before_the_first_key_is_skipped)
{
	struct diag d;

	diag_init(&d);
	struct config *c = helper_load("\xef\xbb\xbfhostname = \"mx.example.com\"\n"
	                               "accepted-domains = { \"example.com\" }\n"
	                               "connector \"c\" {\n"
	                               "  usage = internet\n  auth-mechanism = { none }\n"
	                               "  bindings = { \"0.0.0.0:25\" }\n"
	                               "  remote-ip-ranges = { \"10.0.0.0/8\" }\n}\n",
	                               &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	cr_expect_str_eq(c->hostname, "mx.example.com");
	config_unref(c);
	diag_release(&d);
}

/* Connectors that are all disabled load (a disabled connector is valid), but the daemon
 * would open no port: warned, not silently started with 0 listeners. */
Test(config, every_connector_disabled_is_warned)
{
	struct diag d;

	diag_init(&d);
	struct config *c = helper_load("accepted-domains = { \"example.com\" }\n"
	                               "connector \"off\" {\n"
	                               "  usage = internet\n  auth-mechanism = { none }\n"
	                               "  enabled = false\n  bindings = { \"0.0.0.0:25\" }\n"
	                               "  remote-ip-ranges = { \"10.0.0.0/8\" }\n}\n",
	                               &d);
	cr_assert_not_null(c);
	WARN(0, "every connector is disabled");
	config_unref(c);
	diag_release(&d);
}

/* With libConfuse, a provider preset (@name) pushed every later line ~34 lines too far
 * (etc/proofpoint-lockdown.conf: `user` on line 21 was reported on line 55). */
Test(config, a_provider_preset_does_not_shift_later_lines)
{
	struct diag d;

	tls_files();
	diag_init(&d);
	cr_expect_null(helper_load("tls { certificate = \"cert.pem\"  key = \"key.pem\" }\n"
	                           "connector \"pp\" {\n"
	                           "  usage = internet\n"
	                           "  bindings = { \"0.0.0.0:25\" }\n"
	                           "  remote-ip-ranges = { \"@proofpoint-essentials-us\" }\n"
	                           "}\n"
	                           "user = \"no-such-user-mxgate-test\"\n",
	                           &d));
	ERR(7, "user 'no-such-user-mxgate-test' does not exist");
	diag_release(&d);
}

/* What libConfuse ended the parse on is now reported and the rest of the file is read. */
Test(config, unknown_sections_and_duplicate_sections_do_not_end_the_file)
{
	struct diag d;

	diag_init(&d);
	cr_expect_null(helper_load("relay-settings {\n  x = 1\n}\n"
	                           "domain \"a.example\" { }\n"
	                           "domain \"A.example\" { }\n"
	                           "tls { }\n"
	                           "tsl { }\n"
	                           "tls { }\n"
	                           "hostname { }\n"
	                           "connector \"c\" {\n"
	                           "  bindings = { \"0.0.0.0:25\" }\n"
	                           "  limits { }\n"
	                           "  max-hop-count = { 1, 2 }\n"
	                           "  bindings = \"0.0.0.0:26\"\n"
	                           "}\n"
	                           "frobnicate = 1\n",
	                           &d));
	ERR(1, "unknown section 'relay-settings' in the top level");
	ERR(5, "domain 'a.example' is defined twice (first on line 4)");
	ERR(7, "unknown section 'tsl' in the top level (did you mean 'tls'?)");
	ERR(8, "the tls section is given twice (first on line 6)");
	ERR(9, "syntax error: write hostname = VALUE");
	ERR(12, "unknown section 'limits' in a connector section");
	ERR(13, "max-hop-count takes one value");
	ERR(14, "'bindings' is set twice (first on line 11)");
	ERR(16, "unknown key 'frobnicate'");
	diag_release(&d);
}

/* Issue 13.2: remote-hostname-suffixes (lower case, no leading dot, @preset expanded),
 * resolvers and dns-timeout. */
Test(config, hostname_suffixes_and_resolvers)
{
	struct diag d;

	diag_init(&d);
	struct config *c = helper_load(
	        "hostname = \"mx.example.com\"\n"
	        "resolvers = { \"127.0.0.1:5353\", \"[::1]:53\" }\n"
	        "dns-timeout = 3s\n"
	        "connector \"A\" {\n"
	        "  bindings = { \"127.0.0.1:25\" }\n"
	        "  remote-ip-ranges = { \"192.0.2.0/24\" }\n"
	        "  remote-hostname-suffixes = { \".PPhosted.com\", \"@n-able-spamexperts\" }\n"
	        "}\n"
	        "connector \"B\" {\n"
	        "  bindings = { \"127.0.0.1:26\" }\n"
	        "  remote-ip-ranges = { \"192.0.2.0/24\" }\n"
	        "}\n",
	        &d);
	cr_assert_not_null(c);
	cr_expect_eq(c->n_resolvers, 2);
	cr_expect_str_eq(c->resolvers[1], "[::1]:53");
	cr_expect_eq(c->dns_timeout_ms, 3000);
	cr_assert_eq(c->connectors[0].n_hostname_suffixes, 2);
	cr_expect_str_eq(c->connectors[0].hostname_suffixes[0], "pphosted.com");
	cr_expect_str_eq(c->connectors[0].hostname_suffixes[1], "delivery.antispamcloud.com");
	cr_expect_eq(c->connectors[1].n_hostname_suffixes, 0);
	config_unref(c);
	diag_release(&d);

	diag_init(&d);
	c = helper_load(
	        /* 1 */ "hostname = \"mx.example.com\"\n"
	                /* 2 */ "resolvers = { \"8.8.8.8\" }\n"
	                /* 3 */ "dns-timeout = 0s\n"
	                /* 4 */ "connector \"A\" {\n"
	                /* 5 */ "  bindings = { \"127.0.0.1:25\" }\n"
	                /* 6 */ "  remote-hostname-suffixes = { \"bad_name\", \"@google\",\n"
	                /* 7 */ "    \"@no-such-preset\" }\n"
	                /* 8 */ "}\n",
	        &d);
	cr_expect_null(c);
	ERR(2, "bad resolvers");
	ERR(3, "dns-timeout '0s' is out of range");
	ERR(6, "bad remote-hostname-suffixes entry 'bad_name'");
	ERR(6, "provider preset '@google' documents no hostname suffixes");
	ERR(7, "unknown provider preset '@no-such-preset'");
	diag_release(&d);
}

/* proxy-protocol-from: ranges (a preset too) compiled into one lookup; warnings for an
 * open list and for a connector anyone may reach past the balancers; a bad range is an
 * error with its line. */
Test(config, proxy_protocol_from)
{
	struct diag d;
	struct ipaddr a;
	diag_init(&d);
	struct config *c = helper_load("accepted-domains = { \"example.com\" }\n"
	                               "proxy-protocol-from = { \"10.9.0.10\", \"2001:db8::/64\",\n"
	                               "  \"0.0.0.0/0\" }\n"
	                               "proxy-protocol-timeout = 3s\n"
	                               "connector \"Open\" {\n"
	                               "  usage = custom\n"
	                               "  permission-groups = { anonymous-users }\n"
	                               "  bindings = { \"127.0.0.1:2525\" }\n"
	                               "}\n",
	                               &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	cr_expect_eq(c->n_proxy_from, 3u);
	cr_expect_eq(c->proxy_protocol_timeout_ms, 3000u);
	cr_assert_eq(ipaddr_parse("2001:db8::5", 11, &a), 0);
	cr_expect(config_proxy_from(c, &a));
	cr_assert_eq(ipaddr_parse("2001:db9::5", 11, &a), 0);
	cr_expect(!config_proxy_from(c, &a));
	cr_assert_eq(ipaddr_parse("192.0.2.1", 9, &a), 0);
	cr_expect(config_proxy_from(c, &a));
	cr_expect(helper_has(&d, DIAG_WARNING, NULL, 3, "proxy-protocol-from takes every IPv4"));
	cr_expect(helper_has(&d, DIAG_WARNING, NULL, 5,
	                     "proxy-protocol-from is set, yet connector 'Open' takes every"));
	config_unref(c);
	diag_release(&d);

	diag_init(&d);
	c = helper_load("proxy-protocol-from = { \"10.9.0.300\" }\n"
	                "connector \"A\" {\n  bindings = { \"127.0.0.1:2525\" }\n}\n",
	                &d);
	cr_expect_null(c);
	cr_expect(helper_has(&d, DIAG_ERROR, NULL, 1, "bad remote range"));
	config_unref(c);
	diag_release(&d);

	diag_init(&d);
	c = helper_load(
	        "connector \"A\" {\n  usage = custom\n  bindings = { \"127.0.0.1:2525\" }\n}\n",
	        &d);
	cr_assert_not_null(c);
	cr_expect_eq(c->n_proxy_from, 0u);
	cr_expect_eq(c->proxy_protocol_timeout_ms, 5000u);
	cr_assert_eq(ipaddr_parse("10.9.0.10", 9, &a), 0);
	cr_expect(!config_proxy_from(c, &a));
	config_unref(c);
	diag_release(&d);
}

/* tls-sender-certificate-name = "@NAME": a preset documents no tenant's name, so the
 * preset is read only to say what it documents (none today), and an unknown one is named. */
Test(config, certificate_name_from_a_preset_is_refused_in_words)
{
	struct diag d;

	diag_init(&d);
	struct config *c = helper_load(
	        /* 1 */ "hostname = \"mx.example.com\"\n"
	                /* 2 */ "connector \"A\" {\n"
	                /* 3 */ "  bindings = { \"127.0.0.1:25\" }\n"
	                /* 4 */ "  tls-sender-certificate-name = \"@proofpoint-essentials-us\"\n"
	                /* 5 */ "}\n"
	                /* 6 */ "connector \"B\" {\n"
	                /* 7 */ "  bindings = { \"127.0.0.1:26\" }\n"
	                /* 8 */ "  tls-sender-certificate-name = \"@no-such-preset\"\n"
	                /* 9 */ "}\n",
	        &d);
	cr_expect_null(c);
	ERR(4, "provider preset '@proofpoint-essentials-us' documents no certificate name");
	ERR(8, "unknown provider preset '@no-such-preset'");
	diag_release(&d);
}

/* ---- out of memory ---------------------------------------------------------------- */

#include "allocfail.h"

/* A configuration that takes most of the loader's paths: sections, presets, a ranges
 * file, a recipients file, several connectors and their selection tables. */
static const char oom_conf[] =
        "hostname = \"mx.example.com\"\n"
        "spool = \"/var/spool/mxgate\"\n"
        "accepted-domains = { \"example.com\", \"corp.example\" }\n"
        "domain \"corp.example\" { recipients-file = \"users.txt\" }\n"
        "deliver { maildir = \"/var/mail/%d/%u\" }\n"
        "tls {\n  certificate = \"cert.pem\"\n  key = \"key.pem\"\n}\n"
        "proxy-protocol-from = { \"10.9.0.0/16\" }\n"
        "connector \"Filter\" {\n"
        "  usage = internet\n"
        "  bindings = { \"0.0.0.0:2525\", \"[::]:2525\" }\n"
        "  remote-ip-ranges = { \"67.231.152.0/24\", \"192.0.2.0/24\" }\n"
        "  remote-ip-ranges-file = \"ranges.txt\"\n"
        "}\n"
        "connector \"Partners\" {\n"
        "  usage = partner\n"
        "  bindings = { \"0.0.0.0:2525\" }\n"
        "  remote-ip-ranges = { \"198.51.100.7\", \"203.0.113.0-203.0.113.9\" }\n"
        "}\n"
        "connector \"Local\" {\n"
        "  usage = custom\n"
        "  permission-groups = { anonymous-users }\n"
        "  bindings = { \"127.0.0.1:2526\" }\n"
        "  remote-ip-ranges = { \"127.0.0.0/8\" }\n"
        "}\n";

/* Each allocation of a load fails in turn (once, then from there on): the load gives a
 * snapshot, or NULL with an error said; it never crashes, and ASan sees no leak. */
Test(config, every_allocation_failing)
{
	cr_assert(allocfail_linked(), "the unit tests are linked without the allocation wraps");
	free(helper_write_temp("ranges.txt", "# ranges\n192.0.2.128/25\n2001:db8::/32\n"
	                                     "198.18.0.0/15\n"));
	free(helper_write_temp("users.txt", "alice\nbob@corp.example\n"));
	tls_files();
	char *path = helper_write_temp("mxgate.conf", oom_conf);
	unsigned long refused = 0, loaded = 0;

	for (int persistent = 0; persistent < 2; persistent++) {
		for (unsigned long at = 0;; at++) {
			struct diag d;
			diag_init(&d);
			allocfail_arm(at, persistent);
			allocfail_enter();
			struct config *c = config_load(path, &d);
			allocfail_leave();
			unsigned long failed = allocfail_failed();
			allocfail_disarm();
			if (c) {
				cr_expect_eq(d.errors, 0,
				             "allocation %lu failing: a snapshot and errors", at);
				config_unref(c);
				loaded++;
			} else {
				cr_expect_gt(d.errors, 0,
				             "allocation %lu failing: NULL without an error", at);
				refused++;
			}
			diag_release(&d);
			if (failed == 0) {
				cr_expect_not_null(c, "no allocation failed, yet no snapshot");
				break;
			}
			cr_assert_lt(at, 1000000, "a load of over a million allocations");
		}
	}
	cr_expect_gt(refused, 10, "hardly any allocation failed (%lu)", refused);
	free(path);
}
