/* Unit tests: the provider presets shipped in providers/ and the preset reader.
 *
 * Every shipped preset must load through providers_load (header complete, dates and
 * labels valid, no malformed, inexact or overlapping range) and through a config as
 * remote-ip-ranges = { "@NAME" }, with the same ranges.  The reader itself is tested
 * with hostile files, each error checked for its line. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/providers.h"
#include "helpers.h"

/* The presets the reference rates high or medium-high, shipped as ready. */
static const char *const ready[] = {
        "proofpoint-essentials-us",  "microsoft-eop", "google", "hornetsecurity",
        "cloudflare-email-security",
};

static struct provider *
load_preset(const char *name)
{
	char path[4096], err[512];
	struct provider *p;

	cr_assert_eq(providers_find(name, path, sizeof(path)), 0, "no preset %s in %s", name,
	             providers_dir());
	p = providers_load(path, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	return p;
}

static bool
has_range(const struct provider *p, const char *text)
{
	struct range r;
	char err[256];

	cr_assert_eq(range_parse(text, &r, NULL, err, sizeof(err)), 0, "%s", err);
	for (size_t i = 0; i < p->n_ranges; i++)
		if (p->ranges[i].family == r.family && p->ranges[i].lo == r.lo &&
		    p->ranges[i].hi == r.hi)
			return true;
	return false;
}

Test(providers, every_shipped_preset_loads_and_is_labelled)
{
	char **names;
	int n = providers_names(&names);
	size_t n_ready = 0;

	cr_assert_geq(n, 10, "only %d presets in %s", n, providers_dir());
	for (int i = 0; i < n; i++) {
		struct provider *p = load_preset(names[i]);
		bool is_ready = strcmp(p->status, "ready") == 0;

		cr_expect_str_eq(p->name, names[i]);
		cr_expect(p->provider && *p->provider && p->region && *p->region);
		cr_expect_geq(p->n_sources, 1);
		cr_expect(p->n_ranges > 0);
		cr_expect(is_ready || strcmp(p->status, "unverified") == 0, "%s: status %s",
		          names[i], p->status);
		if (is_ready) {
			bool listed = false;
			for (size_t j = 0; j < sizeof(ready) / sizeof(ready[0]); j++)
				listed |= strcmp(ready[j], names[i]) == 0;
			cr_expect(listed,
			          "%s is ready but not one of the reference's high or "
			          "medium-high lists",
			          names[i]);
			n_ready++;
		}
		if (i > 0)
			cr_expect_lt(strcmp(names[i - 1], names[i]), 0, "names are sorted");
		providers_free(p);
	}
	cr_expect_eq(n_ready, sizeof(ready) / sizeof(ready[0]));
	providers_names_free(names, (size_t)n);
}

/* Each preset, named in a config, gives the connector exactly the preset's ranges. */
Test(providers, every_preset_loads_through_a_config)
{
	char **names;
	int n = providers_names(&names);

	cr_assert_gt(n, 0);
	for (int i = 0; i < n; i++) {
		struct provider *p = load_preset(names[i]);
		char text[1024];
		struct diag d;

		snprintf(text, sizeof(text),
		         "connector \"Preset\" {\n"
		         "  usage = custom\n"
		         "  permission-groups = { anonymous-users }\n"
		         "  bindings = { \"0.0.0.0:25\", \"[::]:25\" }\n"
		         "  remote-ip-ranges = { \"@%s\" }\n"
		         "}\n",
		         names[i]);
		diag_init(&d);
		struct config *c = helper_load(text, &d);
		if (!c)
			helper_dump(&d);
		cr_expect_not_null(c, "preset %s does not load through a config", names[i]);
		cr_expect_eq(d.errors, 0);
		if (c) {
			const struct connector *k = &c->connectors[0];
			cr_expect_eq(k->n_ranges, p->n_ranges, "%s", names[i]);
			for (size_t j = 0; j < k->n_ranges && j < p->n_ranges; j++)
				cr_expect(k->ranges[j].r.lo == p->ranges[j].lo &&
				                  k->ranges[j].r.hi == p->ranges[j].hi,
				          "%s: range %zu differs", names[i], j);
			config_unref(c);
		}
		diag_release(&d);
		providers_free(p);
	}
	providers_names_free(names, (size_t)n);
}

Test(providers, proofpoint_essentials_us_is_the_documented_list)
{
	static const char *const want[] = {
	        "67.231.152.0/24", "67.231.153.0/24", "67.231.154.0/24", "67.231.155.0/24",
	        "67.231.156.0/24", "67.231.144.0/24", "67.231.145.0/24", "67.231.146.0/24",
	        "67.231.147.0/24", "67.231.148.0/24", "67.231.149.0/24", "148.163.128.0/19",
	};
	struct provider *p = load_preset("proofpoint-essentials-us");

	cr_expect_str_eq(p->status, "ready");
	cr_expect_str_eq(p->confidence, "medium-high");
	cr_expect_str_eq(p->source_date, "2023-06-13");
	cr_expect_eq(p->n_ranges, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(has_range(p, want[i]), "missing %s", want[i]);
	/* the update network must not widen the delivery list */
	cr_expect(!has_range(p, "67.231.144.0/20"));
	providers_free(p);
}

Test(providers, microsoft_eop_has_endpoint_set_10_with_ipv6)
{
	struct provider *p = load_preset("microsoft-eop");

	cr_expect_str_eq(p->confidence, "high");
	cr_expect_str_eq(p->source_date, "2023-07-31");
	cr_expect_eq(p->n_ranges, 6);
	cr_expect(has_range(p, "52.100.0.0/14"));
	cr_expect(has_range(p, "2a01:111:f400::/48"));
	cr_expect(has_range(p, "2a01:111:f403::/48"));
	providers_free(p);
}

Test(providers, candidates_are_unverified)
{
	static const char *const names[] = {
	        "proofpoint-essentials-eu",
	        "mimecast-us",
	        "mimecast-eu",
	        "barracuda-us",
	        "trend-micro-email-security",
	        "spamtitan-cloud",
	        "n-able-spamexperts",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct provider *p = load_preset(names[i]);
		cr_expect_str_eq(p->status, "unverified", "%s", names[i]);
		providers_free(p);
	}
}

Test(providers, find_refuses_names_that_are_not_preset_names)
{
	char path[4096];

	cr_expect_eq(providers_find("../providers/google", path, sizeof(path)), -1);
	cr_expect_eq(providers_find("Google", path, sizeof(path)), -1);
	cr_expect_eq(providers_find("", path, sizeof(path)), -1);
	cr_expect_eq(providers_find("no-such-preset", path, sizeof(path)), -1);
	cr_expect_eq(providers_find("google", path, sizeof(path)), 0);
}

/* ---- the reader, with hostile files --------------------------------------------------- */

#define HEADER                                                                                     \
	"# provider: Example Filter\n"                                                             \
	"# region: EU\n"                                                                           \
	"# source: https://example.com/ips\n"                                                      \
	"# source-date: 2024-02-29\n"                                                              \
	"# confidence: high\n"                                                                     \
	"# status: ready\n"

static void
expect_error(const char *text, const char *needle)
{
	char *path = helper_write_temp("bad.conf", text), err[512] = "";
	struct provider *p = providers_load(path, err, sizeof(err));

	cr_expect_null(p, "accepted: %s", text);
	cr_expect(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err, needle);
	providers_free(p);
	free(path);
}

Test(providers, reader_takes_a_good_file)
{
	char *path = helper_write_temp("good-one.conf", HEADER "# source: dns:_spf.example.com\n"
	                                                       "# update: spf _spf.example.com\n"
	                                                       "#\n"
	                                                       "# free text: not a header line\n"
	                                                       "192.0.2.0/24   # a comment\n"
	                                                       "\n"
	                                                       "198.51.100.7\n"
	                                                       "2001:db8::/32\n"
	                                                       "203.0.113.0-203.0.113.99\n");
	char err[512];
	struct provider *p = providers_load(path, err, sizeof(err));

	cr_assert_not_null(p, "%s", err);
	cr_expect_str_eq(p->name, "good-one");
	cr_expect_str_eq(p->provider, "Example Filter");
	cr_expect_eq(p->n_sources, 2);
	cr_expect_str_eq(p->sources[1], "dns:_spf.example.com");
	cr_expect_str_eq(p->update, "spf _spf.example.com");
	cr_expect_eq(p->n_ranges, 4);
	providers_free(p);
	providers_free(NULL);
	free(path);
}

Test(providers, reader_refuses_bad_files)
{
	expect_error("# provider: X\n# region: Y\n192.0.2.0/24\n", "no '# source:' line");
	expect_error(HEADER "192.0.2.0/24\n192.0.2.128/25\n",
	             "bad.conf:8: 192.0.2.128/25 overlaps 192.0.2.0/24 of line 7");
	expect_error(HEADER "10.0.0.0-10.0.0.9\n10.0.0.9\n", "bad.conf:8: 10.0.0.9/32 overlaps");
	expect_error(HEADER "192.0.2.1/24\n", "bad.conf:7: '192.0.2.1/24' has host bits set");
	expect_error(HEADER "192.0.2.0/33\n", "bad.conf:7: '192.0.2.0/33': prefix length 33");
	expect_error(HEADER "0.0.0.0\n", "unspecified address");
	expect_error(HEADER, "no range");
	expect_error(HEADER "# colour: blue\n192.0.2.0/24\n", "bad.conf:7: unknown header key");
	expect_error(HEADER "# region: US\n192.0.2.0/24\n", "'region' is given twice");
	expect_error("# provider: X\n# region: Y\n# source: ftp://x\n", "not a http(s) URL");
	expect_error("# provider: X\n# region: Y\n# source: https://x\n# source-date: 2023-02-29\n"
	             "# confidence: high\n# status: ready\n192.0.2.0/24\n",
	             "source-date '2023-02-29' is not a date");
	expect_error("# provider: X\n# region: Y\n# source: https://x\n# source-date: undated\n"
	             "# confidence: low\n# status: ready\n192.0.2.0/24\n",
	             "status ready needs confidence high or medium-high");
	expect_error("# provider: X\n# region: Y\n# source: https://x\n# source-date: undated\n"
	             "# confidence: sure\n# status: unverified\n192.0.2.0/24\n",
	             "confidence 'sure'");
	expect_error("# provider: X\n# region: Y\n# source: https://x\n# source-date: undated\n"
	             "# confidence: low\n# status: maybe\n192.0.2.0/24\n",
	             "status 'maybe'");
	expect_error("# provider: \n", "has no value");
}

/* Issue 16, defect 5: the preset reader is the shared side-file reader. */
Test(providers, reader_refuses_devices_fifos_directories_and_long_lines, .timeout = 60)
{
	char err[512], fifo[512], *line = malloc(5001), *text;

	cr_assert_not_null(line);
	cr_expect_null(providers_load("/dev/zero", err, sizeof(err)));
	cr_expect(strstr(err, "/dev/zero: not a regular file (a character device)") != NULL, "%s",
	          err);
	free(helper_write_temp("x", ""));
	snprintf(fifo, sizeof(fifo), "%s/fifo.conf", helper_tmpdir());
	unlink(fifo);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	cr_expect_null(providers_load(fifo, err, sizeof(err)));
	cr_expect(strstr(err, "fifo.conf: not a regular file (a FIFO)") != NULL, "%s", err);
	unlink(fifo);
	cr_expect_null(providers_load(helper_tmpdir(), err, sizeof(err)));
	cr_expect(strstr(err, "not a regular file (a directory)") != NULL, "%s", err);

	memset(line, '#', 5000);
	line[5000] = '\0';
	cr_assert(asprintf(&text, HEADER "192.0.2.0/24 %s\n", line) > 0);
	expect_error(text, "bad.conf:7: the line is longer than 4096 bytes");
	free(text);
	free(line);
}

/* Issue 13.3: every shipped preset says what its provider documents beyond addresses —
 * hostname suffixes and certificate names, or "none documented" — and names come with a
 * source, a date and a confidence. */
Test(providers, every_shipped_preset_states_its_proofs)
{
	char **names;
	int n = providers_names(&names);

	cr_assert_geq(n, 10);
	for (int i = 0; i < n; i++) {
		struct provider *p = load_preset(names[i]);
		const struct provider_proof *pr[] = {&p->hostnames, &p->certificates};
		for (size_t j = 0; j < 2; j++) {
			cr_expect_not_null(pr[j]->text, "%s: no %s line", names[i],
			                   j ? "certificate-names" : "hostname-suffixes");
			if (pr[j]->n_names)
				cr_expect(pr[j]->source && pr[j]->date && pr[j]->confidence);
			else if (pr[j]->text)
				cr_expect_str_eq(pr[j]->text, "none documented");
		}
		providers_free(p);
	}
	providers_names_free(names, (size_t)n);
	struct provider *p = load_preset("n-able-spamexperts");
	cr_expect_eq(p->hostnames.n_names, 1);
	cr_expect_str_eq(p->hostnames.names[0], "delivery.antispamcloud.com");
	providers_free(p);
}

Test(providers, reader_takes_and_checks_proofs)
{
	char *path = helper_write_temp("proofs.conf", HEADER
	                               "# hostname-suffixes: .Example.NET, mx.example.org\n"
	                               "# hostname-suffixes-source: https://example.net/docs\n"
	                               "# hostname-suffixes-date: 2025-01-31\n"
	                               "# hostname-suffixes-confidence: medium\n"
	                               "# certificate-names: none documented\n"
	                               "192.0.2.0/24\n");
	char err[512];
	struct provider *p = providers_load(path, err, sizeof(err));

	cr_assert_not_null(p, "%s", err);
	cr_expect_eq(p->hostnames.n_names, 2);
	cr_expect_str_eq(p->hostnames.names[0], "example.net");
	cr_expect_str_eq(p->hostnames.names[1], "mx.example.org");
	cr_expect_str_eq(p->hostnames.date, "2025-01-31");
	cr_expect_eq(p->certificates.n_names, 0);
	cr_expect_str_eq(p->certificates.text, "none documented");
	providers_free(p);
	free(path);
	expect_error(HEADER "# hostname-suffixes: example.net\n192.0.2.0/24\n",
	             "hostname-suffixes needs '# hostname-suffixes-source:'");
	expect_error(HEADER "# certificate-names: none documented\n"
	                    "# certificate-names-date: undated\n192.0.2.0/24\n",
	             "none documented takes no");
	expect_error(HEADER "# hostname-suffixes-source: https://x\n192.0.2.0/24\n",
	             "without '# hostname-suffixes:'");
}
