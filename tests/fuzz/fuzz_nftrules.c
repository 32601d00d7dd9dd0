/* libFuzzer target: the JSON reader (base/json) and the nftables ruleset model
 * (lockdown/nftrules) on what `nft -j list ruleset` could print, and the /proc/net/tcp
 * parser of lockdown/audit on the same bytes.
 * Invariants: no byte past the given length is read (the input is an exact-size heap
 * copy, for ASan), no crash and no leak whatever the nesting, the jumps (loops
 * included) or the set references; a refused text says where; a ruleset that parses
 * answers the same for the same packet every time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/json.h"
#include "lockdown/audit.h"
#include "lockdown/nftrules.h"

static const char *const sources[] = {"198.51.100.1", "67.231.152.10", "10.0.0.1",
                                      "2001:db8::1",  "2001:db8:1::5", "::1"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1), err[160];
	struct nftrules *rs;

	if (!copy)
		abort();
	memcpy(copy, data, size);
	rs = nftrules_parse(copy, size, err, sizeof(err));
	if (!rs && err[0] == '\0')
		abort();
	for (size_t i = 0; rs && i < sizeof(sources) / sizeof(sources[0]); i++) {
		static const uint16_t ports[] = {25, 587, 22};
		for (size_t p = 0; p < 3; p++) {
			struct nftrules_packet pk = {.dport = ports[p]};
			ipaddr_parse(sources[i], strlen(sources[i]), &pk.src);
			bool a1 = nftrules_accepts(rs, &pk, NULL);
			bool a2 = nftrules_accepts(rs, &pk, NULL);
			if (a1 != a2)
				abort();
		}
		(void)nftrules_base_chains(rs, AF_INET);
	}
	nftrules_free(rs);
	free(copy);

	/* the same bytes as /proc/net/tcp6 and as a status answer (NUL-terminated copies) */
	char *text = malloc(size + 1);
	struct audit_host h = {0};
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	audit_parse_proc_net_tcp(text, AF_INET6, &h);
	audit_parse_proc_net_tcp(text, AF_INET, &h);
	audit_parse_status(text, &h);
	audit_host_release(&h);
	free(text);
	return 0;
}
