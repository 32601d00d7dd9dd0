/* Unit tests: `mxgate firewall` — every format of every case against a golden file.
 *
 * A case is a config; its output in each format is compared byte for byte with
 * tests/golden/firewall/CASE.EXT (nft, iptables.sh, pf, windows.ps1, exchange.ps1,
 * haproxy.cfg; tests/e2e/test_haproxy.py has HAProxy check every haproxy.cfg).  On a
 * mismatch the output is left next to the unit tests' temporary files and the failure
 * names both, for `diff -u`.
 *
 * Regenerate the goldens after an intended change, from the top of the source tree:
 *     MXGATE_UPDATE_GOLDEN=1 build/release/unit-tests --filter firewall/\*
 * then read `git diff tests/golden/firewall` before committing: it is the change users see.
 * MXGATE_GOLDEN_DIR overrides where the goldens are (default: ../../tests/golden/firewall
 * from the unit-tests binary in build/VARIANT/).
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "lockdown/firewall.h"

static const struct {
	enum firewall_format f;
	const char *ext;
} formats[] = {
        {FIREWALL_NFT, "nft"},
        {FIREWALL_IPTABLES, "iptables.sh"},
        {FIREWALL_PF, "pf"},
        {FIREWALL_WINDOWS, "windows.ps1"},
        {FIREWALL_EXCHANGE, "exchange.ps1"},
        {FIREWALL_HAPROXY, "haproxy.cfg"},
};

static const char *
golden_dir(void)
{
	static char dir[PATH_MAX];
	const char *env = getenv("MXGATE_GOLDEN_DIR");
	char exe[PATH_MAX - 64];
	ssize_t n;

	if (env && *env)
		return env;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert(n > 0, "cannot find the unit-tests binary");
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(dir, sizeof(dir), "%s/../../tests/golden/firewall", exe);
	return dir;
}

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!fp)
		return NULL;
	FILE *mem = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		fwrite(chunk, 1, n, mem);
	fclose(fp);
	fclose(mem);
	return buf;
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	cr_assert_not_null(fp, "cannot write %s", path);
	fputs(text, fp);
	cr_assert_eq(fclose(fp), 0);
}

/* The output of one format; warnings go to d. */
static char *
render(const struct config *c, enum firewall_format f, struct diag *d)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);

	cr_assert_not_null(mem);
	cr_assert_eq(firewall_write(c, f, "mxgate.conf", mem, d), 0);
	fclose(mem);
	return buf;
}

static struct config *
load_case(const char *text, struct diag *d)
{
	struct config *c;

	helper_make_cert("cert.pem", "key.pem");
	diag_init(d);
	c = helper_load(text, d);
	if (!c)
		helper_dump(d);
	cr_assert_not_null(c, "the case's config does not load");
	return c;
}

/* Compares every format's output of the config with its golden files. */
static void
check_case(const char *name, const char *text)
{
	bool update = getenv("MXGATE_UPDATE_GOLDEN") != NULL;
	struct diag d;
	struct config *c = load_case(text, &d);

	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		char golden[2 * PATH_MAX], actual[2 * PATH_MAX];
		struct diag w;
		diag_init(&w);
		char *out = render(c, formats[i].f, &w);
		snprintf(golden, sizeof(golden), "%s/%s.%s", golden_dir(), name, formats[i].ext);
		if (update) {
			write_file(golden, out);
		} else {
			char *want = slurp(golden);
			cr_expect_not_null(want, "no golden file %s (see the top of %s)", golden,
			                   __FILE__);
			if (want && strcmp(want, out) != 0) {
				snprintf(actual, sizeof(actual), "%s/%s.%s", helper_tmpdir(), name,
				         formats[i].ext);
				write_file(actual, out);
				cr_expect_fail("%s differs from its golden file: diff -u %s %s",
				               formats[i].ext, golden, actual);
			}
			free(want);
		}
		/* the same config always gives the same bytes */
		char *again = render(c, formats[i].f, &w);
		cr_expect_str_eq(again, out, "%s output is not deterministic", formats[i].ext);
		free(again);
		free(out);
		diag_release(&w);
	}
	config_unref(c);
	diag_release(&d);
}

/* Warnings firewall_write gives for one format. */
static void
firewall_warnings(const char *text, enum firewall_format f, struct diag *w)
{
	struct diag d;
	struct config *c = load_case(text, &d);

	diag_init(w);
	free(render(c, f, w));
	config_unref(c);
	diag_release(&d);
}

#define TLS "tls { certificate = \"cert.pem\"\n key = \"key.pem\" }\n"

/* ---- the cases ----------------------------------------------------------------------- */

/* The shipped lockdown: a wildcard IPv4 binding, the Proofpoint Essentials US preset —
 * eleven /24s that merge into two ranges which are no CIDR block, and a /19. */
#define CASE_PROOFPOINT                                                                            \
	"hostname = \"mx.example.com\"\n" TLS "connector \"From Proofpoint\" {\n"                  \
	"  usage = internet\n"                                                                     \
	"  bindings = { \"0.0.0.0:25\" }\n"                                                        \
	"  remote-ip-ranges = { \"@proofpoint-essentials-us\" }\n"                                 \
	"}\n"

Test(firewall, golden_proofpoint_preset)
{
	check_case("proofpoint", CASE_PROOFPOINT);
}

/* IPv4 and IPv6 wildcards on one port; IPv6 ranges as CIDR and as start-end. */
Test(firewall, golden_ipv6)
{
	check_case("ipv6", "connector \"Microsoft\" {\n"
	                   "  usage = custom\n"
	                   "  permission-groups = { anonymous-users }\n"
	                   "  bindings = { \"0.0.0.0:25\", \"[::]:25\" }\n"
	                   "  remote-ip-ranges = { \"40.92.0.0/15\", \"2a01:111:f400::/48\",\n"
	                   "    \"2a01:111:f403::/48\", \"2001:db8::5-2001:db8::9\",\n"
	                   "    \"2001:db8:0:1::/64\" }\n"
	                   "}\n");
}

/* Bindings to specific addresses next to the family's wildcard on the same port: the
 * specific address takes its own connectors' ranges and the wildcard's; the wildcard
 * rule must not catch the specific address's clients. */
Test(firewall, golden_specific_ip_bindings)
{
	check_case("specific", "connector \"Partner on .25\" {\n"
	                       "  usage = custom\n"
	                       "  permission-groups = { partners }\n"
	                       "  bindings = { \"203.0.113.25:25\", \"[2001:db8::25]:25\" }\n"
	                       "  remote-ip-ranges = { \"192.0.2.0/24\", \"2001:db8:aa::/48\" }\n"
	                       "}\n"
	                       "connector \"Everyone else filtered\" {\n"
	                       "  usage = custom\n"
	                       "  permission-groups = { anonymous-users }\n"
	                       "  bindings = { \"0.0.0.0:25\" }\n"
	                       "  remote-ip-ranges = { \"198.51.100.0/24\" }\n"
	                       "}\n"
	                       "connector \"Second address\" {\n"
	                       "  usage = custom\n"
	                       "  permission-groups = { anonymous-users }\n"
	                       "  bindings = { \"203.0.113.26:25\" }\n"
	                       "  remote-ip-ranges = { \"192.0.2.128/25\" }\n"
	                       "}\n");
}

/* Several ports, each with its own union; a connector on two ports; a disabled
 * connector that must leave no trace. */
Test(firewall, golden_multiple_ports)
{
	check_case("ports", "connector \"Inbound\" {\n"
	                    "  usage = custom\n"
	                    "  permission-groups = { anonymous-users }\n"
	                    "  bindings = { \"0.0.0.0:25\", \"0.0.0.0:2525\" }\n"
	                    "  remote-ip-ranges = { \"192.0.2.0/24\" }\n"
	                    "}\n"
	                    "connector \"Office\" {\n"
	                    "  usage = internal\n"
	                    "  auth-mechanism = { none }\n"
	                    "  bindings = { \"0.0.0.0:2525\" }\n"
	                    "  remote-ip-ranges = { \"10.0.0.0/8\" }\n"
	                    "}\n"
	                    "connector \"Submission\" {\n"
	                    "  usage = custom\n"
	                    "  permission-groups = { exchange-servers }\n"
	                    "  bindings = { \"0.0.0.0:587\" }\n"
	                    "  remote-ip-ranges = { \"172.16.0.0/12\" }\n"
	                    "}\n"
	                    "connector \"Old\" {\n"
	                    "  enabled = false\n"
	                    "  usage = custom\n"
	                    "  permission-groups = { anonymous-users }\n"
	                    "  bindings = { \"0.0.0.0:26\" }\n"
	                    "  remote-ip-ranges = { \"0.0.0.0/0\" }\n"
	                    "}\n");
}

/* An internal relay connector (anonymous clients of the office relay to any domain, with
 * STARTTLS offered) next to the internet one: Exchange grants that only with
 * ExternalAuthoritative (or AnonymousUsers plus Ms-Exch-SMTP-Accept-Any-Recipient), never
 * with 'Tls' and ExchangeServers alone, which leaves an anonymous client no right at all. */
Test(firewall, golden_internal_relay)
{
	check_case("relay", "hostname = \"mx.example.com\"\n" TLS "connector \"Internet\" {\n"
	                    "  usage = internet\n"
	                    "  bindings = { \"0.0.0.0:25\" }\n"
	                    "  remote-ip-ranges = { \"198.51.100.0/24\" }\n"
	                    "}\n"
	                    "connector \"Office relay\" {\n"
	                    "  usage = internal\n"
	                    "  bindings = { \"0.0.0.0:25\" }\n"
	                    "  remote-ip-ranges = { \"10.20.0.0/16\" }\n"
	                    "}\n");
}

/* Behind load balancers (proxy-protocol-from): the balancers connect with their own
 * address, so every port lets them in beside the connectors' clients; the HAProxy snippet,
 * which sits on the balancer in front of the clients, filters the clients only. */
Test(firewall, golden_balancers)
{
	check_case("balancers",
	           TLS "proxy-protocol-from = { \"10.9.0.10\", \"10.9.0.11\",\n"
	               "  \"2001:db8:b::/64\" }\n"
	               "connector \"Behind HAProxy\" {\n"
	               "  usage = internet\n"
	               "  bindings = { \"0.0.0.0:25\", \"[::]:25\" }\n"
	               "  remote-ip-ranges = { \"192.0.2.0/24\", \"2001:db8:c::/48\" }\n"
	               "}\n"
	               "connector \"Office\" {\n"
	               "  usage = internal\n"
	               "  auth-mechanism = { none }\n"
	               "  bindings = { \"0.0.0.0:2525\" }\n"
	               "  remote-ip-ranges = { \"10.0.0.0/16\" }\n"
	               "}\n");
}

/* Exchange 2003's connection control: subnet address + subnet mask, and the
 * address(mask) form; written as CIDR everywhere. */
Test(firewall, golden_exchange2003_masks)
{
	check_case("exchange2003", "connector \"Connection control\" {\n"
	                           "  usage = custom\n"
	                           "  permission-groups = { anonymous-users }\n"
	                           "  bindings = { \"0.0.0.0:25\" }\n"
	                           "  remote-ip-ranges = { \"10.1.0.0 255.255.0.0\",\n"
	                           "    \"192.168.7.0(255.255.255.0)\", \"10.2.0.0 "
	                           "255.255.255.128\",\n"
	                           "    \"192.168.8.77\" }\n"
	                           "}\n");
}

/* Start-end ranges that are no CIDR block, overlapping and adjacent ranges: joined
 * before they reach nft (which refuses overlapping interval elements), split into the
 * fewest CIDR blocks for pf, iprange for iptables; nested ranges of two connectors. */
Test(firewall, golden_ranges_merged)
{
	check_case("ranges", "connector \"Wide\" {\n"
	                     "  usage = custom\n"
	                     "  permission-groups = { anonymous-users }\n"
	                     "  bindings = { \"0.0.0.0:25\" }\n"
	                     "  remote-ip-ranges = { \"192.0.2.10-192.0.2.20\", \"10.0.0.0/8\",\n"
	                     "    \"11.0.0.0/8\", \"172.16.0.0-172.16.5.255\",\n"
	                     "    \"172.16.4.0-172.16.9.255\", \"172.16.9.255\",\n"
	                     "    \"198.51.100.1-198.51.100.254\" }\n"
	                     "}\n"
	                     "connector \"Narrow\" {\n"
	                     "  usage = custom\n"
	                     "  permission-groups = { anonymous-users }\n"
	                     "  bindings = { \"0.0.0.0:25\" }\n"
	                     "  remote-ip-ranges = { \"10.1.2.0/24\", \"192.0.2.15\" }\n"
	                     "}\n");
}

/* A port open to everyone is left alone (and warned about); a specific address open to
 * everyone is exempted from its wildcard's rule; a family without ranges is dropped. */
#define CASE_OPEN                                                                                  \
	"connector \"Anyone\" {\n"                                                                 \
	"  usage = custom\n"                                                                       \
	"  permission-groups = { anonymous-users }\n"                                              \
	"  bindings = { \"0.0.0.0:25\", \"[::]:25\" }\n"                                           \
	"}\n"                                                                                      \
	"connector \"Open on one address\" {\n"                                                    \
	"  usage = custom\n"                                                                       \
	"  permission-groups = { anonymous-users }\n"                                              \
	"  bindings = { \"203.0.113.25:2525\" }\n"                                                 \
	"  remote-ip-ranges = { \"0.0.0.0/0\" }\n"                                                 \
	"}\n"                                                                                      \
	"connector \"Filtered\" {\n"                                                               \
	"  usage = custom\n"                                                                       \
	"  permission-groups = { anonymous-users }\n"                                              \
	"  bindings = { \"0.0.0.0:2525\" }\n"                                                      \
	"  remote-ip-ranges = { \"192.0.2.0/24\" }\n"                                              \
	"}\n"                                                                                      \
	"connector \"IPv6 only ranges\" {\n"                                                       \
	"  usage = custom\n"                                                                       \
	"  permission-groups = { anonymous-users }\n"                                              \
	"  bindings = { \"0.0.0.0:465\", \"[::]:465\" }\n"                                         \
	"  remote-ip-ranges = { \"2001:db8::/32\" }\n"                                             \
	"}\n"

Test(firewall, golden_open_ports)
{
	check_case("open", CASE_OPEN);
}

Test(firewall, open_port_warns_with_the_connector_line)
{
	struct diag w;

	firewall_warnings(CASE_OPEN, FIREWALL_NFT, &w);
	cr_expect(helper_has(&w, DIAG_WARNING, "mxgate.conf", 1,
	                     "connector 'Anyone' takes every IPv4 address: the firewall rules "
	                     "leave TCP port 25 (IPv4, any local address) open to everyone"));
	cr_expect(helper_has(&w, DIAG_WARNING, "mxgate.conf", 1, "TCP port 25 (IPv6"));
	cr_expect(helper_has(&w, DIAG_WARNING, "mxgate.conf", 6,
	                     "TCP port 2525 (IPv4, local address 203.0.113.25)"));
	cr_expect_eq(w.warnings, 3, "%zu warnings", w.warnings);
	diag_release(&w);

	firewall_warnings(CASE_OPEN, FIREWALL_EXCHANGE, &w);
	cr_expect(helper_has(&w, DIAG_WARNING, "mxgate.conf", 1,
	                     "so will its Exchange receive connector"));
	diag_release(&w);

	firewall_warnings(CASE_PROOFPOINT, FIREWALL_NFT, &w);
	cr_expect_eq(w.warnings, 0, "a locked-down config gives no warning");
	diag_release(&w);
}

Test(firewall, union_covering_everything_is_open_too)
{
	struct diag w;

	firewall_warnings("connector \"Halves\" {\n"
	                  "  usage = custom\n"
	                  "  permission-groups = { anonymous-users }\n"
	                  "  bindings = { \"0.0.0.0:25\" }\n"
	                  "  remote-ip-ranges = { \"0.0.0.0/1\", \"128.0.0.0/1\" }\n"
	                  "}\n",
	                  FIREWALL_NFT, &w);
	cr_expect(helper_has(&w, DIAG_WARNING, "mxgate.conf", 1, "together take every IPv4"));
	diag_release(&w);
}

/* HAProxy: a frontend whose families have no range at all rejects every client (an acl
 * with no value would not load), and a long list is cut into acl lines of the same
 * name, which HAProxy ORs (it takes at most 64 words a line). */
Test(firewall, haproxy_reject_all_and_long_lists)
{
	struct diag d, w;
	struct config *c = load_case("connector \"IPv6 ranges, IPv4 binding\" {\n"
	                             "  usage = custom\n"
	                             "  permission-groups = { anonymous-users }\n"
	                             "  bindings = { \"0.0.0.0:587\" }\n"
	                             "  remote-ip-ranges = { \"2001:db8::/32\" }\n"
	                             "}\n"
	                             "connector \"Many\" {\n"
	                             "  usage = custom\n"
	                             "  permission-groups = { anonymous-users }\n"
	                             "  bindings = { \"0.0.0.0:25\" }\n"
	                             "  remote-ip-ranges = { \"10.0.0.1-10.0.0.254\" }\n"
	                             "}\n",
	                             &d);
	diag_init(&w);
	char *out = render(c, FIREWALL_HAPROXY, &w);
	cr_expect(strstr(out, "\tbind 0.0.0.0:587\n") != NULL, "%s", out);
	cr_expect(strstr(out, "\ttcp-request connection reject\n\tdefault_backend mxgate_p587\n") !=
	                  NULL,
	          "%s", out);
	/* 10.0.0.1-10.0.0.254 is 14 CIDR blocks: 8 on the first line, 6 on the second */
	cr_expect(strstr(out, "\tacl mxgate_p25_allowed src 10.0.0.1 10.0.0.2/31 10.0.0.4/30 "
	                      "10.0.0.8/29 10.0.0.16/28 10.0.0.32/27 10.0.0.64/26 10.0.0.128/26\n"
	                      "\tacl mxgate_p25_allowed src 10.0.0.192/27 10.0.0.224/28 "
	                      "10.0.0.240/29 10.0.0.248/30 10.0.0.252/31 10.0.0.254\n"
	                      "\ttcp-request connection reject if !mxgate_p25_allowed\n") != NULL,
	          "%s", out);
	free(out);
	diag_release(&w);
	config_unref(c);
	diag_release(&d);
}

Test(firewall, format_names)
{
	enum firewall_format f;

	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		const char *name = firewall_format_name(formats[i].f);
		cr_expect_eq(firewall_format_parse(name, &f), 0);
		cr_expect_eq(f, formats[i].f);
	}
	cr_expect_eq(firewall_format_parse("ipfw", &f), -1);
	cr_expect_eq(firewall_format_parse("NFT", &f), -1);
	cr_expect_eq(firewall_format_parse("", &f), -1);
}

Test(firewall, powershell_strings_are_quoted)
{
	struct diag d, w;
	struct config *c = load_case("connector \"O'Brien \xe2\x80\x99s relay\" {\n"
	                             "  usage = custom\n"
	                             "  permission-groups = { anonymous-users }\n"
	                             "  bindings = { \"0.0.0.0:25\" }\n"
	                             "  remote-ip-ranges = { \"192.0.2.1\" }\n"
	                             "}\n",
	                             &d);
	diag_init(&w);
	char *out = render(c, FIREWALL_EXCHANGE, &w);
	cr_expect(strstr(out, "Set-MxgateReceiveConnector 'O''Brien \xe2\x80\x99\xe2\x80\x99s "
	                      "relay' @{") != NULL,
	          "%s", out);
	free(out);
	diag_release(&w);
	config_unref(c);
	diag_release(&d);
}

/* A write error (a full disk, a closed pipe) is reported, not ignored. */
Test(firewall, write_errors_are_reported)
{
	struct diag d, w;
	struct config *c = load_case(CASE_PROOFPOINT, &d);
	FILE *full = fopen("/dev/full", "w");

	cr_assert_not_null(full);
	diag_init(&w);
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		cr_expect_eq(firewall_write(c, formats[i].f, "x", full, &w), -1, "%s",
		             formats[i].ext);
	fclose(full);
	diag_release(&w);
	config_unref(c);
	diag_release(&d);
}
