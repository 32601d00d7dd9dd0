/* Unit tests: mxgate audit's sans-I/O half — the JSON reader, the nftables ruleset model
 * (on rulesets captured from nft -j list ruleset), the /proc/net/tcp and status parsers,
 * and every check of audit_check() on hosts filled by hand. */
#include <criterion/criterion.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/json.h"
#include "helpers.h"
#include "lockdown/audit.h"
#include "lockdown/nftrules.h"

/* captured with nft 1.0.6 (Debian 12) in a network namespace: `nft -j list ruleset` after
 * loading `mxgate firewall --format nft` of a config binding 0.0.0.0:25 and [::]:25 with the
 * Proofpoint Essentials US preset (IPv4 only) */
static const char nft_mxgate[] =
        "{\"nftables\":[{\"metainfo\":{\"version\":\"1.0.6\",\"release_name\":\"Lester Gooch "
        "#5\",\"json_schem"
        "a_version\":1}},{\"table\":{\"family\":\"inet\",\"name\":\"mxgate\",\"handle\":2}},{"
        "\"set\":{\"family\":\""
        "inet\",\"name\":\"p25_v4\",\"table\":\"mxgate\",\"type\":\"ipv4_addr\",\"handle\":2,"
        "\"flags\":[\"interval\""
        "],\"elem\":[{\"range\":[\"67.231.144.0\",\"67.231.149.255\"]},{\"range\":[\"67.231.152."
        "0\",\"67.231.1"
        "56.255\"]},{\"prefix\":{\"addr\":\"148.163.128.0\",\"len\":19}}]}},{\"chain\":{\"family\":"
        "\"inet\",\"tab"
        "le\":\"mxgate\",\"name\":\"input\",\"handle\":1,\"type\":\"filter\",\"hook\":\"input\","
        "\"prio\":0,\"policy\":"
        "\"accept\"}},{\"rule\":{\"family\":\"inet\",\"table\":\"mxgate\",\"chain\":\"input\","
        "\"handle\":3,\"expr\":["
        "{\"match\":{\"op\":\"==\",\"left\":{\"payload\":{\"protocol\":\"tcp\",\"field\":\"dport\"}"
        "},\"right\":25}},{"
        "\"match\":{\"op\":\"==\",\"left\":{\"payload\":{\"protocol\":\"ip\",\"field\":\"saddr\"}},"
        "\"right\":\"@p25_v4"
        "\"}},{\"accept\":null}]}},{\"rule\":{\"family\":\"inet\",\"table\":\"mxgate\",\"chain\":"
        "\"input\",\"handle"
        "\":4,\"expr\":[{\"match\":{\"op\":\"==\",\"left\":{\"meta\":{\"key\":\"nfproto\"}},"
        "\"right\":\"ipv4\"}},{\"mat"
        "ch\":{\"op\":\"==\",\"left\":{\"payload\":{\"protocol\":\"tcp\",\"field\":\"dport\"}},"
        "\"right\":25}},{\"coun"
        "ter\":{\"packets\":0,\"bytes\":0}},{\"drop\":null}]}},{\"rule\":{\"family\":\"inet\","
        "\"table\":\"mxgate\""
        ",\"chain\":\"input\",\"handle\":5,\"expr\":[{\"match\":{\"op\":\"==\",\"left\":{\"meta\":{"
        "\"key\":\"nfproto\"}"
        "},\"right\":\"ipv6\"}},{\"match\":{\"op\":\"==\",\"left\":{\"payload\":{\"protocol\":"
        "\"tcp\",\"field\":\"dpor"
        "t\"}},\"right\":25}},{\"counter\":{\"packets\":0,\"bytes\":0}},{\"drop\":null}]}}]}";

/* a hand-written inet filter: policy drop, a ct state verdict map, lo, a named set for
 * port 25 over IPv4, a jump for an IPv6 prefix on 25 and 587 into a chain that returns 587 */
static const char nft_handmade[] = "{\"nftables\":[{\"metainfo\":{\"version\":\"1.0.6\",\"release_"
                                   "name\":\"Lester Gooch #5\",\"json_schem"
                                   "a_version\":1}},{\"table\":{\"family\":\"inet\",\"name\":"
                                   "\"filter\",\"handle\":1}},{\"set\":{\"family\":\""
                                   "inet\",\"name\":\"allowed4\",\"table\":\"filter\",\"type\":"
                                   "\"ipv4_addr\",\"handle\":3,\"flags\":[\"interva"
                                   "l\"],\"elem\":[{\"prefix\":{\"addr\":\"67.231.144.0\",\"len\":"
                                   "20}}]}},{\"chain\":{\"family\":\"inet\",\"ta"
                                   "ble\":\"filter\",\"name\":\"smtp6\",\"handle\":1}},{\"chain\":{"
                                   "\"family\":\"inet\",\"table\":\"filter\",\"na"
                                   "me\":\"input\",\"handle\":2,\"type\":\"filter\",\"hook\":"
                                   "\"input\",\"prio\":0,\"policy\":\"drop\"}},{\"rule\""
                                   ":{\"family\":\"inet\",\"table\":\"filter\",\"chain\":\"smtp6\","
                                   "\"handle\":4,\"expr\":[{\"match\":{\"op\":\"=="
                                   "\",\"left\":{\"payload\":{\"protocol\":\"tcp\",\"field\":"
                                   "\"dport\"}},\"right\":587}},{\"return\":null}]}}"
                                   ",{\"rule\":{\"family\":\"inet\",\"table\":\"filter\",\"chain\":"
                                   "\"smtp6\",\"handle\":5,\"expr\":[{\"accept\":"
                                   "null}]}},{\"rule\":{\"family\":\"inet\",\"table\":\"filter\","
                                   "\"chain\":\"input\",\"handle\":7,\"expr\":[{\""
                                   "vmap\":{\"key\":{\"ct\":{\"key\":\"state\"}},\"data\":{\"set\":"
                                   "[[\"invalid\",{\"drop\":null}],[\"establish"
                                   "ed\",{\"accept\":null}],[\"related\",{\"accept\":null}]]}}}]}},"
                                   "{\"rule\":{\"family\":\"inet\",\"table\""
                                   ":\"filter\",\"chain\":\"input\",\"handle\":8,\"expr\":[{"
                                   "\"match\":{\"op\":\"==\",\"left\":{\"meta\":{\"key\":\""
                                   "iifname\"}},\"right\":\"lo\"}},{\"accept\":null}]}},{\"rule\":{"
                                   "\"family\":\"inet\",\"table\":\"filter\",\""
                                   "chain\":\"input\",\"handle\":10,\"expr\":[{\"match\":{\"op\":"
                                   "\"==\",\"left\":{\"meta\":{\"key\":\"l4proto\"}}"
                                   ",\"right\":{\"set\":[\"icmp\",\"ipv6-icmp\"]}}},{\"accept\":"
                                   "null}]}},{\"rule\":{\"family\":\"inet\",\"tab"
                                   "le\":\"filter\",\"chain\":\"input\",\"handle\":11,\"expr\":[{"
                                   "\"match\":{\"op\":\"==\",\"left\":{\"payload\":{"
                                   "\"protocol\":\"tcp\",\"field\":\"dport\"}},\"right\":22}},{"
                                   "\"accept\":null}]}},{\"rule\":{\"family\":\"in"
                                   "et\",\"table\":\"filter\",\"chain\":\"input\",\"handle\":12,"
                                   "\"expr\":[{\"match\":{\"op\":\"==\",\"left\":{\"pa"
                                   "yload\":{\"protocol\":\"tcp\",\"field\":\"dport\"}},\"right\":"
                                   "25}},{\"match\":{\"op\":\"==\",\"left\":{\"pay"
                                   "load\":{\"protocol\":\"ip\",\"field\":\"saddr\"}},\"right\":\"@"
                                   "allowed4\"}},{\"accept\":null}]}},{\"rule"
                                   "\":{\"family\":\"inet\",\"table\":\"filter\",\"chain\":"
                                   "\"input\",\"handle\":14,\"expr\":[{\"match\":{\"op\":\""
                                   "==\",\"left\":{\"payload\":{\"protocol\":\"tcp\",\"field\":"
                                   "\"dport\"}},\"right\":{\"set\":[25,587]}}},{\"m"
                                   "atch\":{\"op\":\"==\",\"left\":{\"payload\":{\"protocol\":"
                                   "\"ip6\",\"field\":\"saddr\"}},\"right\":{\"prefix\""
                                   ":{\"addr\":\"2001:db8:1::\",\"len\":48}}}},{\"jump\":{"
                                   "\"target\":\"smtp6\"}}]}},{\"rule\":{\"family\":\"i"
                                   "net\",\"table\":\"filter\",\"chain\":\"input\",\"handle\":15,"
                                   "\"expr\":[{\"match\":{\"op\":\"==\",\"left\":{\"p"
                                   "ayload\":{\"protocol\":\"udp\",\"field\":\"dport\"}},\"right\":"
                                   "53}},{\"accept\":null}]}}]}";

/* iptables-nft (iptables v1.8.9): -i lo ACCEPT, -m conntrack ESTABLISHED,RELATED ACCEPT,
 * -p tcp --dport 25 -s 67.231.144.0/20 ACCEPT, -p tcp --dport 25 DROP; nothing for IPv6 */
static const char nft_iptables[] =
        "{\"nftables\":[{\"metainfo\":{\"version\":\"1.0.6\",\"release_name\":\"Lester Gooch "
        "#5\",\"json_schem"
        "a_version\":1}},{\"table\":{\"family\":\"ip\",\"name\":\"filter\",\"handle\":3}},{"
        "\"chain\":{\"family\":\""
        "ip\",\"table\":\"filter\",\"name\":\"INPUT\",\"handle\":1,\"type\":\"filter\",\"hook\":"
        "\"input\",\"prio\":0,\""
        "policy\":\"accept\"}},{\"rule\":{\"family\":\"ip\",\"table\":\"filter\",\"chain\":"
        "\"INPUT\",\"handle\":2,\"e"
        "xpr\":[{\"match\":{\"op\":\"==\",\"left\":{\"meta\":{\"key\":\"iifname\"}},\"right\":"
        "\"lo\"}},{\"counter\":{\""
        "packets\":0,\"bytes\":0}},{\"accept\":null}]}},{\"rule\":{\"family\":\"ip\",\"table\":"
        "\"filter\",\"chain"
        "\":\"INPUT\",\"handle\":3,\"expr\":[{\"xt\":{\"type\":\"match\",\"name\":\"conntrack\"}},{"
        "\"counter\":{\"pac"
        "kets\":0,\"bytes\":0}},{\"accept\":null}]}},{\"rule\":{\"family\":\"ip\",\"table\":"
        "\"filter\",\"chain\":\""
        "INPUT\",\"handle\":4,\"expr\":[{\"match\":{\"op\":\"==\",\"left\":{\"payload\":{"
        "\"protocol\":\"ip\",\"field\""
        ":\"saddr\"}},\"right\":{\"prefix\":{\"addr\":\"67.231.144.0\",\"len\":20}}}},{\"match\":{"
        "\"op\":\"==\",\"le"
        "ft\":{\"payload\":{\"protocol\":\"tcp\",\"field\":\"dport\"}},\"right\":25}},{\"counter\":"
        "{\"packets\":0,"
        "\"bytes\":0}},{\"accept\":null}]}},{\"rule\":{\"family\":\"ip\",\"table\":\"filter\","
        "\"chain\":\"INPUT\",\""
        "handle\":5,\"expr\":[{\"match\":{\"op\":\"==\",\"left\":{\"payload\":{\"protocol\":"
        "\"tcp\",\"field\":\"dport"
        "\"}},\"right\":25}},{\"counter\":{\"packets\":0,\"bytes\":0}},{\"drop\":null}]}}]}";

/* /proc/net/tcp and tcp6 with 127.0.0.1:2525, [::]:25 (dual-stack) and [::1]:587 listening */
static const char proc_tcp[] =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeo"
        "ut inode                                                     \n   0: 0100007F:09DD 000000"
        "00:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6146279 1 0000000036e00"
        "bce 100 0 0 10 0                   \n";
static const char proc_tcp6[] =
        "  sl  local_address                         remote_address                        st tx_"
        "queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0000000000000000000000000"
        "0000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 0000"
        "0000     0        0 6146280 1 000000002fe6dfb6 100 0 0 10 0\n   1: 0000000000000000000000"
        "0001000000:024B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 0"
        "0000000     0        0 6146281 1 00000000d85225a4 100 0 0 10 0\n";

/* ---- json ---------------------------------------------------------------------------- */

Test(audit, json_values_and_escapes)
{
	const char *t =
	        " {\"a\": [1, -2.5e1, true, false, null], \"s\": \"x\\\"\\u00e9\\ud83d\\ude00\\n\","
	        " \"o\": {}} ";
	char err[160];
	struct json *j = json_parse(t, strlen(t), err, sizeof(err));

	cr_assert_not_null(j, "%s", err);
	const struct json *a = json_get(j, "a");
	cr_assert(a && a->type == JSON_ARRAY && a->n == 5);
	cr_expect_eq(a->items[0]->num, 1);
	cr_expect_eq(a->items[1]->num, -25);
	cr_expect(a->items[2]->type == JSON_BOOL && a->items[2]->b);
	cr_expect(a->items[4]->type == JSON_NULL);
	cr_expect_str_eq(json_str(json_get(j, "s")), "x\"\xc3\xa9\xf0\x9f\x98\x80\n");
	cr_expect(json_get(j, "o")->type == JSON_OBJECT && json_get(j, "o")->n == 0);
	cr_expect_null(json_get(j, "missing"));
	json_free(j);
}

Test(audit, json_refuses_what_is_not_json)
{
	static const char *const bad[] = {
	        "",      "{",       "[1,]",        "{\"a\" 1}",   "[1] 2",
	        "\"abc", "\"\\x\"", "\"\\u0000\"", "\"\\ud800\"", "01x",
	        "tru",   "{1: 2}",  "\"a\tb\"",    "[-]",
	};
	char err[160];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json *j = json_parse(bad[i], strlen(bad[i]), err, sizeof(err));
		cr_expect_null(j, "accepted '%s'", bad[i]);
		cr_expect(strstr(err, "at byte ") == err, "'%s': %s", bad[i], err);
		json_free(j);
	}
	char deep[2 * JSON_MAX_DEPTH + 10];
	memset(deep, '[', JSON_MAX_DEPTH + 5);
	memset(deep + JSON_MAX_DEPTH + 5, ']', JSON_MAX_DEPTH + 5);
	cr_expect_null(json_parse(deep, sizeof(deep) - 0 - 0 - 0, err, sizeof(err)));
}

/* every prefix of a real ruleset: refused, never a crash or a leak */
Test(audit, json_every_truncation_of_a_ruleset)
{
	char err[160];
	size_t len = strlen(nft_handmade);

	for (size_t n = 0; n < len; n++) {
		struct json *j = json_parse(nft_handmade, n, err, sizeof(err));
		cr_expect_null(j, "a prefix of %zu bytes parsed", n);
		json_free(j);
	}
	struct json *j = json_parse(nft_handmade, len, err, sizeof(err));
	cr_expect_not_null(j, "%s", err);
	json_free(j);
}

/* ---- nftrules ------------------------------------------------------------------------ */

static struct nftrules *
ruleset(const char *text)
{
	char err[160];
	struct nftrules *rs = nftrules_parse(text, strlen(text), err, sizeof(err));

	cr_assert_not_null(rs, "%s", err);
	return rs;
}

/* src to port (any local address); returns whether it gets through */
static bool
passes(const struct nftrules *rs, const char *src, const char *dst, uint16_t port, bool *assumed)
{
	struct nftrules_packet p = {.dport = port};

	cr_assert_eq(ipaddr_parse(src, strlen(src), &p.src), 0, "%s", src);
	if (dst)
		cr_assert_eq(ipaddr_parse(dst, strlen(dst), &p.dst), 0, "%s", dst);
	return nftrules_accepts(rs, &p, assumed);
}

Test(audit, nft_mxgate_rules)
{
	struct nftrules *rs = ruleset(nft_mxgate);
	bool assumed = true;

	cr_expect_eq(nftrules_base_chains(rs, AF_INET), 1);
	cr_expect_eq(nftrules_base_chains(rs, AF_INET6), 1);
	cr_expect(passes(rs, "67.231.152.10", NULL, 25, &assumed));
	cr_expect(!assumed);
	cr_expect(passes(rs, "148.163.130.1", "203.0.113.25", 25, NULL));
	cr_expect(!passes(rs, "198.51.100.10", NULL, 25, NULL));
	cr_expect(!passes(rs, "67.231.150.1", NULL, 25, NULL)); /* in the gap of the preset */
	cr_expect(!passes(rs, "2001:db8::1", NULL, 25, NULL));
	cr_expect(passes(rs, "198.51.100.10", NULL, 587, NULL)); /* other ports alone */
	cr_expect(passes(rs, "2001:db8::1", NULL, 22, NULL));
	nftrules_free(rs);
}

Test(audit, nft_handmade_rules)
{
	struct nftrules *rs = ruleset(nft_handmade);

	cr_expect(passes(rs, "67.231.144.5", NULL, 25, NULL));
	cr_expect(!passes(rs, "198.51.100.1", NULL, 25, NULL)); /* policy drop */
	cr_expect(passes(rs, "198.51.100.1", NULL, 22, NULL));
	cr_expect(!passes(rs, "198.51.100.1", NULL, 53, NULL));   /* udp 53 is not tcp 53 */
	cr_expect(passes(rs, "2001:db8:1::5", NULL, 25, NULL));   /* jump, accept */
	cr_expect(!passes(rs, "2001:db8:1::5", NULL, 587, NULL)); /* return, then policy */
	cr_expect(!passes(rs, "2001:db8::9", NULL, 25, NULL));
	cr_expect(!passes(rs, "67.231.144.5", NULL, 587, NULL));
	nftrules_free(rs);
}

Test(audit, nft_iptables_rules_leave_ipv6_open)
{
	struct nftrules *rs = ruleset(nft_iptables);

	cr_expect_eq(nftrules_base_chains(rs, AF_INET), 1);
	cr_expect_eq(nftrules_base_chains(rs, AF_INET6), 0);
	cr_expect(passes(rs, "67.231.144.5", NULL, 25, NULL));
	/* the conntrack match is read as established/related: it does not let a SYN in */
	cr_expect(!passes(rs, "198.51.100.1", NULL, 25, NULL));
	cr_expect(passes(rs, "2001:db8::9", NULL, 25, NULL));
	nftrules_free(rs);
}

/* an expression nobody decides: an accept rule takes it, a drop rule does not */
Test(audit, nft_undecided_is_taken_as_open)
{
	const char *t =
	        "{\"nftables\":[{\"chain\":{\"family\":\"ip\",\"table\":\"t\",\"name\":\"in\","
	        "\"type\":\"filter\",\"hook\":\"input\",\"prio\":0,\"policy\":\"drop\"}},"
	        "{\"rule\":{\"family\":\"ip\",\"table\":\"t\",\"chain\":\"in\",\"expr\":["
	        "{\"match\":{\"op\":\"==\",\"left\":{\"fib\":{\"result\":\"type\",\"flags\":["
	        "\"daddr\"]}},"
	        "\"right\":\"local\"}},{\"drop\":null}]}},"
	        "{\"rule\":{\"family\":\"ip\",\"table\":\"t\",\"chain\":\"in\",\"expr\":["
	        "{\"match\":{\"op\":\"==\",\"left\":{\"meta\":{\"key\":\"iifname\"}},"
	        "\"right\":\"eth0\"}},{\"match\":{\"op\":\"!=\",\"left\":{\"payload\":{"
	        "\"protocol\":"
	        "\"ip\",\"field\":\"saddr\"}},\"right\":{\"range\":[\"10.0.0.0\",\"10.0.0.9\"]}}},"
	        "{\"accept\":null}]}}]}";
	struct nftrules *rs = ruleset(t);
	bool assumed = false;

	cr_expect(passes(rs, "198.51.100.1", NULL, 25, &assumed));
	cr_expect(assumed);
	cr_expect(!passes(rs, "10.0.0.5", NULL, 25, NULL));
	nftrules_free(rs);
}

/* a text may hold what nft refuses to load: a chain that jumps to itself, twice a level */
Test(audit, nft_jump_loop_ends)
{
	const char *t =
	        "{\"nftables\":[{\"chain\":{\"family\":\"inet\",\"table\":\"t\",\"name\":\"in\","
	        "\"type\":\"filter\",\"hook\":\"input\",\"prio\":0,\"policy\":\"drop\"}},"
	        "{\"chain\":{\"family\":\"inet\",\"table\":\"t\",\"name\":\"x\"}},"
	        "{\"rule\":{\"family\":\"inet\",\"table\":\"t\",\"chain\":\"in\",\"expr\":["
	        "{\"jump\":{\"target\":\"x\"}}]}},"
	        "{\"rule\":{\"family\":\"inet\",\"table\":\"t\",\"chain\":\"x\",\"expr\":["
	        "{\"jump\":{\"target\":\"x\"}}]}},"
	        "{\"rule\":{\"family\":\"inet\",\"table\":\"t\",\"chain\":\"x\",\"expr\":["
	        "{\"jump\":{\"target\":\"x\"}}]}},"
	        "{\"rule\":{\"family\":\"inet\",\"table\":\"t\",\"chain\":\"x\",\"expr\":["
	        "{\"jump\":{\"target\":\"x\"}}]}}]}";
	struct nftrules *rs = ruleset(t);
	bool assumed = false;

	cr_expect(!passes(rs, "198.51.100.1", NULL, 25, &assumed)); /* then the policy */
	cr_expect(assumed);
	nftrules_free(rs);
}

Test(audit, nft_not_a_ruleset)
{
	char err[160];

	cr_expect_null(nftrules_parse("[1]", 3, err, sizeof(err)));
	cr_expect(strstr(err, "nftables") != NULL, "%s", err);
	cr_expect_null(nftrules_parse("{\"nftables\"", 11, err, sizeof(err)));
	cr_expect(strstr(err, "not JSON") != NULL, "%s", err);
}

/* ---- /proc and status ---------------------------------------------------------------- */

Test(audit, proc_net_tcp)
{
	struct audit_host h = {0};
	char ep[ENDPOINT_STRLEN];

	cr_assert_eq(audit_parse_proc_net_tcp(proc_tcp, AF_INET, &h), 0);
	cr_assert_eq(audit_parse_proc_net_tcp(proc_tcp6, AF_INET6, &h), 0);
	cr_assert_eq(h.n_sockets, 3);
	endpoint_format(&h.sockets[0].local, ep, sizeof(ep));
	cr_expect_str_eq(ep, "127.0.0.1:2525");
	cr_expect_eq(h.sockets[0].inode, 6146279);
	endpoint_format(&h.sockets[1].local, ep, sizeof(ep));
	cr_expect_str_eq(ep, "[::]:25");
	endpoint_format(&h.sockets[2].local, ep, sizeof(ep));
	cr_expect_str_eq(ep, "[::1]:587");
	/* a connected socket is no listener; a line of another file is refused */
	cr_expect_eq(audit_parse_proc_net_tcp(
	                     "  sl  local_address rem_address   st\n"
	                     "   1: 0100007F:0019 0100007F:D431 01 00000000:00000000 00:00000000 "
	                     "00000000     0        0 77 1 0 20 4 30 10 -1\n",
	                     AF_INET, &h),
	             0);
	cr_expect_eq(h.n_sockets, 3);
	cr_expect_eq(audit_parse_proc_net_tcp("head\n   0: 0100007F0019 x\n", AF_INET, &h), -1);
	cr_expect_eq(audit_parse_proc_net_tcp(proc_tcp, AF_INET6, &h), -1);
	audit_host_release(&h);
}

Test(audit, socket_inode)
{
	cr_expect_eq(audit_socket_inode("socket:[6146279]"), 6146279);
	cr_expect_eq(audit_socket_inode("pipe:[12]"), 0);
	cr_expect_eq(audit_socket_inode("socket:[12"), 0);
	cr_expect_eq(audit_socket_inode("/dev/null"), 0);
}

/* one sock_diag message for inode ino, with INET_DIAG_SKV6ONLY = v6only, at p */
static size_t
diag_msg(unsigned char *p, unsigned ino, unsigned char v6only)
{
	struct nlmsghdr *nh = (struct nlmsghdr *)p;
	struct inet_diag_msg *m = NLMSG_DATA(nh);
	struct rtattr *a = (struct rtattr *)(m + 1);

	memset(p, 0, NLMSG_SPACE(sizeof(*m) + RTA_SPACE(1)));
	a->rta_type = INET_DIAG_SKV6ONLY;
	a->rta_len = RTA_LENGTH(1);
	*(unsigned char *)RTA_DATA(a) = v6only;
	m->idiag_family = AF_INET6;
	m->idiag_inode = ino;
	nh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nh->nlmsg_len = NLMSG_LENGTH(sizeof(*m) + RTA_SPACE(1));
	return NLMSG_ALIGN(nh->nlmsg_len);
}

Test(audit, sock_diag_v6only)
{
	struct audit_host h = {0};
	unsigned char buf[1024] __attribute__((aligned(8)));
	size_t n = 0;

	cr_assert_eq(audit_parse_proc_net_tcp(proc_tcp6, AF_INET6, &h), 0);
	cr_assert_eq(h.sockets[0].v6only, -1);
	n += diag_msg(buf + n, 6146280, 0); /* [::]:25, dual-stack */
	n += diag_msg(buf + n, 6146281, 1); /* [::1]:587 */
	cr_expect_eq(audit_parse_sock_diag(buf, n, &h), 0);
	cr_expect_eq(h.sockets[0].v6only, 0);
	cr_expect_eq(h.sockets[1].v6only, 1);
	struct nlmsghdr done = {.nlmsg_len = NLMSG_LENGTH(4), .nlmsg_type = NLMSG_DONE};
	memcpy(buf, &done, sizeof(done));
	cr_expect_eq(audit_parse_sock_diag(buf, NLMSG_SPACE(4), &h), 1);
	struct nlmsghdr error = {.nlmsg_len = NLMSG_LENGTH(4), .nlmsg_type = NLMSG_ERROR};
	memcpy(buf, &error, sizeof(error));
	cr_expect_eq(audit_parse_sock_diag(buf, NLMSG_SPACE(4), &h), -1);
	diag_msg(buf, 1, 1);
	cr_expect_eq(audit_parse_sock_diag(buf, 20, &h), -1); /* cut short */
	audit_host_release(&h);
}

Test(audit, status_text)
{
	struct audit_host h = {0};

	cr_assert_eq(audit_parse_status(
	                     "mxgate 0.1.0 (pid 4242): up 3m 2s, since 2026-12-05T05:00:00Z\n"
	                     "configuration: etc/my, odd.conf, generation 3, loaded "
	                     "2026-12-05T05:01:40Z (1m ago); reloads since start: 2 accepted, 0 "
	                     "refused\nconfiguration sha256: "
	                     "00ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1E "
	                     "(the file as loaded; mxgate audit compares it)\nstate: serving\nok\n",
	                     &h),
	             0);
	cr_expect(h.daemon);
	cr_expect_eq(h.daemon_pid, 4242);
	cr_expect_str_eq(h.daemon_config, "etc/my, odd.conf");
	cr_expect_eq(h.daemon_loaded, 1796446900);
	cr_expect(h.sha256_known);
	cr_expect_eq(h.daemon_sha256[0], 0x00);
	cr_expect_eq(h.daemon_sha256[1], 0xff);
	cr_expect_eq(h.daemon_sha256[31], 0x1e);
	audit_host_release(&h);
	/* a daemon of before the digest: none */
	cr_expect_eq(audit_parse_status("mxgate 0.1.0 (pid 7): up 1s, since x\nconfiguration: a, "
	                                "generation 1, loaded 2026-12-05T05:01:40Z\n",
	                                &h),
	             0);
	cr_expect(!h.sha256_known);
	audit_host_release(&h);
	cr_expect_eq(audit_parse_status("error: unknown command\n", &h), -1);
	cr_expect(!h.daemon);
}

/* ---- the checks ---------------------------------------------------------------------- */

#define CONNECTOR(name, bindings, ranges)                                                          \
	"connector \"" name "\" {\n  usage = custom\n  permission-groups = { anonymous-users }\n"  \
	"  bindings = { " bindings " }\n  remote-ip-ranges = { " ranges " }\n}\n"

#define LOCKED CONNECTOR("From the filter", "\"0.0.0.0:25\"", "\"67.231.144.0/20\"")

struct fixture {
	struct config *c;
	struct diag d;
	struct audit_host h;
	struct audit_report r;
};

static void
setup(struct fixture *f, const char *conf, const char *rules)
{
	memset(f, 0, sizeof(*f));
	diag_init(&f->d);
	f->c = helper_load(conf, &f->d);
	if (!f->c)
		helper_dump(&f->d);
	cr_assert_not_null(f->c);
	f->h.now = 1796446900; /* 2026-12-05 */
	f->h.nft = rules ? ruleset(rules) : NULL;
	f->h.daemon = true;
	f->h.daemon_pid = 4242;
	f->h.daemon_config = strdup("/etc/mxgate/mxgate.conf");
	f->h.config_real = strdup("/etc/mxgate/mxgate.conf");
	f->h.daemon_loaded = f->h.now - 60;
	f->h.config_mtime = f->h.now - 3600;
}

static void
add_socket(struct fixture *f, const char *ep, bool mxgate, long pid, const char *comm)
{
	char err[128];
	struct audit_socket *v = realloc(f->h.sockets, (f->h.n_sockets + 1) * sizeof(*v));

	cr_assert_not_null(v);
	f->h.sockets = v;
	v += f->h.n_sockets++;
	memset(v, 0, sizeof(*v));
	cr_assert_eq(endpoint_parse(ep, &v->local, err, sizeof(err)), 0, "%s", err);
	v->mxgate = mxgate, v->pid = pid, v->v6only = -1;
	snprintf(v->comm, sizeof(v->comm), "%s", comm);
}

/* runs the checks; returns the findings as text, one a line */
static char *
run(struct fixture *f)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);

	cr_assert_eq(audit_check(f->c, "/etc/mxgate/mxgate.conf", &f->h, &f->r), 0);
	audit_print(&f->r, false, fp);
	fclose(fp);
	return out;
}

static void
teardown(struct fixture *f, char *out)
{
	free(out);
	audit_report_release(&f->r);
	audit_host_release(&f->h);
	config_unref(f->c);
	diag_release(&f->d);
}

Test(audit, clean_host)
{
	struct fixture f;
	setup(&f, LOCKED, nft_handmade);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	char *out = run(&f);
	cr_expect_eq(audit_count(&f.r), 0, "%s", out);
	teardown(&f, out);
}

Test(audit, no_firewall_at_all)
{
	struct fixture f;
	setup(&f, LOCKED, "{\"nftables\":[]}");
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	char *out = run(&f);
	cr_expect(strstr(out, "critical firewall-open: port 25, IPv4: ") == out, "%s", out);
	cr_expect(strstr(out, "198.51.100.1, outside them") != NULL, "%s", out);
	teardown(&f, out);
}

/* make run's example: listeners on 127.0.0.1 and ::1 only, no firewall at all. No other host
 * can reach them, so nothing is open; the same connector on 0.0.0.0 is */
Test(audit, loopback_only_is_not_open_without_a_firewall)
{
	struct fixture f;
	setup(&f,
	      CONNECTOR("Local", "\"127.0.0.1:2525\", \"[::1]:2525\"", "\"127.0.0.2\", \"::1\""),
	      "{\"nftables\":[]}");
	add_socket(&f, "127.0.0.1:2525", true, 0, "");
	add_socket(&f, "[::1]:2525", true, 0, "");
	char *out = run(&f);
	cr_expect(strstr(out, "-open") == NULL, "%s", out);
	teardown(&f, out);

	setup(&f, CONNECTOR("Local", "\"127.0.0.1:2525\", \"[::]:2525\"", "\"127.0.0.2\", \"::1\""),
	      "{\"nftables\":[]}");
	add_socket(&f, "127.0.0.1:2525", true, 0, "");
	add_socket(&f, "[::]:2525", true, 0, "");
	out = run(&f);
	cr_expect(strstr(out, "critical firewall-open: port 2525, IPv6: ") != NULL, "%s", out);
	cr_expect(strstr(out, "IPv4") == NULL, "%s", out);
	teardown(&f, out);
}

/* Postfix on [::]:25 next to mxgate on 0.0.0.0:25: a bypass for IPv6, and for IPv4 too
 * through its dual-stack socket (::ffff:a.b.c.d) */
Test(audit, second_mta_on_the_ipv6_wildcard)
{
	struct fixture f;
	setup(&f, LOCKED, nft_iptables);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	add_socket(&f, "[::]:25", false, 777, "master");
	char *out = run(&f);
	cr_expect(strstr(out, "critical foreign-listener: master (pid 777) listens on [::]:25") !=
	                  NULL,
	          "%s", out);
	cr_expect(strstr(out, "dual-stack socket: IPv4 clients too, as ::ffff:a.b.c.d") != NULL,
	          "%s", out);
	audit_report_release(&f.r);
	free(out);
	f.h.sockets[1].v6only = 1; /* known IPv6-only: no word of IPv4 */
	out = run(&f);
	cr_expect(strstr(out, "critical foreign-listener: master (pid 777)") != NULL, "%s", out);
	cr_expect(strstr(out, "dual-stack") == NULL, "%s", out);
	/* IPv4 is locked, IPv6 is not, and something listens there */
	cr_expect(strstr(out, "critical ipv6-open: port 25: IPv6 is left open while IPv4 is "
	                      "locked: the firewall lets 2001:db8::1") != NULL,
	          "%s", out);
	/* the file binds no IPv6: its rules alone cannot close it, binding [::]:25 does */
	cr_expect(strstr(out, "fix: add \"[::]:25\" to the connector's bindings in ") != NULL, "%s",
	          out);
	teardown(&f, out);
}

Test(audit, ipv6_bound_and_open_while_ipv4_is_locked)
{
	struct fixture f;
	setup(&f,
	      CONNECTOR("Both", "\"0.0.0.0:25\", \"[::]:25\"",
	                "\"67.231.144.0/20\", \"2001:db8:1::/48\""),
	      nft_iptables);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	add_socket(&f, "[::]:25", true, 0, "");
	char *out = run(&f);
	cr_expect(strstr(out, "critical ipv6-open: port 25") != NULL, "%s", out);
	/* bound: the rules for both families are the fix */
	cr_expect(strstr(out, "for both address families") != NULL, "%s", out);
	cr_expect(strstr(out, "firewall-open") == NULL, "%s", out);
	cr_expect_eq(audit_count(&f.r), 1, "%s", out);
	teardown(&f, out);
}

Test(audit, ipv4_open_while_ipv6_is_locked)
{
	static const char rules6[] =
	        "{\"nftables\":[{\"chain\":{\"family\":\"ip6\",\"table\":\"t\",\"name\":\"in\","
	        "\"type\":\"filter\",\"hook\":\"input\",\"prio\":0,\"policy\":\"accept\"}},"
	        "{\"rule\":{\"family\":\"ip6\",\"table\":\"t\",\"chain\":\"in\",\"expr\":["
	        "{\"match\":{\"op\":\"!=\",\"left\":{\"payload\":{\"protocol\":\"ip6\",\"field\":"
	        "\"saddr\"}},\"right\":{\"prefix\":{\"addr\":\"2001:db8:1::\",\"len\":48}}}},"
	        "{\"match\":{\"op\":\"==\",\"left\":{\"payload\":{\"protocol\":\"tcp\",\"field\":"
	        "\"dport\"}},\"right\":25}},{\"drop\":null}]}}]}";
	struct fixture f;
	setup(&f,
	      CONNECTOR("Both", "\"0.0.0.0:25\", \"[::]:25\"",
	                "\"67.231.144.0/20\", \"2001:db8:1::/48\""),
	      rules6);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	add_socket(&f, "[::]:25", true, 0, "");
	char *out = run(&f);
	cr_expect(strstr(out, "critical ipv4-open: port 25: IPv4 is left open while IPv6 is "
	                      "locked") != NULL,
	          "%s", out);
	cr_expect_eq(audit_count(&f.r), 1, "%s", out);
	teardown(&f, out);
}

/* the firewall and the server disagree: the configuration takes a range the rules drop */
Test(audit, firewall_drops_what_the_configuration_takes)
{
	struct fixture f;
	setup(&f,
	      CONNECTOR("From the filter", "\"0.0.0.0:25\"",
	                "\"67.231.144.0/20\", \"198.18.0.0/15\""),
	      nft_handmade);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	char *out = run(&f);
	cr_expect(strstr(out, "warning firewall-drops: port 25, IPv4: the firewall drops 1 of the "
	                      "ranges the configuration takes (198.18.0.0 among them)") != NULL,
	          "%s", out);
	cr_expect_eq(audit_count(&f.r), 1, "%s", out);
	teardown(&f, out);
}

/* a second port or binding mxgate serves that the file does not name, and one it names
 * where nothing listens */
Test(audit, listeners_against_bindings)
{
	struct fixture f;
	setup(&f, LOCKED, nft_handmade);
	add_socket(&f, "203.0.113.25:25", true, 0, "");
	add_socket(&f, "127.0.0.1:25", false, 99, "sendmail");
	add_socket(&f, "0.0.0.0:2525", false, 98, "other"); /* not a configured port */
	char *out = run(&f);
	cr_expect(strstr(out, "warning unnamed-listener: mxgate listens on 203.0.113.25:25") !=
	                  NULL,
	          "%s", out);
	cr_expect(strstr(out, "warning foreign-listener: sendmail (pid 99) listens on "
	                      "127.0.0.1:25") != NULL,
	          "%s", out);
	cr_expect(strstr(out, "warning missing-listener: connector \"From the filter\" binds "
	                      "0.0.0.0:25") != NULL,
	          "%s", out);
	cr_expect(strstr(out, ":2525") == NULL, "%s", out);
	teardown(&f, out);
}

Test(audit, open_connector_next_to_locked_ones)
{
	struct fixture f;
	setup(&f,
	      LOCKED "connector \"Anyone\" {\n  usage = custom\n  permission-groups = { "
	             "anonymous-users }\n  bindings = { \"0.0.0.0:587\" }\n}\n"
	             "connector \"Local\" {\n  usage = custom\n  permission-groups = { "
	             "anonymous-users }\n  bindings = { \"127.0.0.1:26\" }\n}\n",
	      nft_handmade);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	add_socket(&f, "0.0.0.0:587", true, 0, "");
	add_socket(&f, "127.0.0.1:26", true, 0, "");
	char *out = run(&f);
	cr_expect(strstr(out, "warning open-connector: connector \"Anyone\" (") != NULL, "%s", out);
	cr_expect(strstr(out, "takes every IPv4 client, next to locked connectors such as \"From "
	                      "the filter\"") != NULL,
	          "%s", out);
	cr_expect(strstr(out, "\"Local\"") == NULL, "loopback-only is not open: %s", out);
	teardown(&f, out);
}

Test(audit, preset_age)
{
	struct fixture f;
	setup(&f, LOCKED, nft_handmade);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	f.h.presets = calloc(3, sizeof(*f.h.presets));
	f.h.presets[0] = (struct audit_preset){strdup("old"), strdup("2023-06-13")};
	f.h.presets[1] = (struct audit_preset){strdup("fresh"), strdup("2026-11-01")};
	f.h.presets[2] = (struct audit_preset){strdup("nodate"), strdup("undated")};
	f.h.n_presets = 3;
	char *out = run(&f);
	cr_expect(strstr(out, "warning preset-old: provider preset old: its source is dated "
	                      "2023-06-13, 1271 days ago (more than 180)") != NULL,
	          "%s", out);
	cr_expect(strstr(out, "fresh") == NULL, "%s", out);
	cr_expect(strstr(out, "info preset-undated: provider preset nodate") != NULL, "%s", out);
	cr_expect_eq(audit_count(&f.r), 1, "%s", out);
	teardown(&f, out);
}

Test(audit, daemon_with_another_file)
{
	struct fixture f;
	setup(&f, LOCKED, nft_handmade);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	free(f.h.daemon_config);
	f.h.daemon_config = strdup("/tmp/test.conf");
	char *out = run(&f);
	cr_expect(strstr(out, "critical other-config: the running mxgate (pid 4242) uses "
	                      "/tmp/test.conf, not /etc/mxgate/mxgate.conf") != NULL,
	          "%s", out);
	teardown(&f, out);
}

Test(audit, file_changed_after_the_load)
{
	struct fixture f;
	setup(&f, LOCKED, nft_handmade);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	f.h.config_mtime = f.h.now - 5;
	char *out = run(&f);
	cr_expect(strstr(out, "warning not-reloaded: ") == out, "%s", out);
	teardown(&f, out);
}

/* the digests decide for the file itself, the times for the files it names */
Test(audit, file_content_against_the_loaded_digest)
{
	struct fixture f;
	setup(&f, LOCKED, nft_handmade);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	f.h.sha256_known = true;
	f.h.config_mtime = f.h.now; /* touched, not changed */
	char *out = run(&f);
	cr_expect_eq(audit_count(&f.r), 0, "%s", out);
	audit_report_release(&f.r);
	free(out);
	f.h.config_sha256[5] = 1;
	out = run(&f);
	cr_expect(strstr(out, "warning not-reloaded: /etc/mxgate/mxgate.conf is not what the "
	                      "running mxgate (pid 4242) loaded (their SHA-256 differ)") == out,
	          "%s", out);
	audit_report_release(&f.r);
	free(out);
	f.h.config_sha256[5] = 0;
	f.h.side_mtime = f.h.now;
	out = run(&f);
	cr_expect(strstr(out, "warning not-reloaded: /etc/mxgate/mxgate.conf (or a file it names) "
	                      "changed after") == out,
	          "%s", out);
	teardown(&f, out);
}

Test(audit, no_daemon_no_firewall_reading)
{
	struct fixture f;
	setup(&f, LOCKED, NULL);
	f.h.daemon = false;
	f.h.nft_error = strdup("nft -j list ruleset failed: Operation not permitted");
	char *out = run(&f);
	cr_expect(strstr(out, "warning not-running: ") == out, "%s", out);
	cr_expect(strstr(out, "warning firewall-unreadable: the loaded firewall could not be read "
	                      "(nft -j list ruleset failed: Operation not permitted)") != NULL,
	          "%s", out);
	teardown(&f, out);
}

Test(audit, legacy_iptables)
{
	static const char save[] =
	        "# Generated by iptables-save v1.8.9\n*filter\n"
	        ":INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
	        ":MYCHAIN - [0:0]\n"
	        "-A INPUT -p tcp -m tcp --dport 25 -j DROP\n"
	        "-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
	struct fixture f;

	cr_expect_eq(audit_count_legacy_rules(save), 3);
	cr_expect_eq(audit_count_legacy_rules("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"), 0);
	cr_expect_eq(audit_count_legacy_rules(""), 0);
	setup(&f, LOCKED, nft_handmade);
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	f.h.legacy_rules[1] = 1;
	char *out = run(&f);
	cr_expect(strstr(out,
	                 "warning legacy-iptables: 1 rule of iptables-legacy (IPv6, "
	                 "ip6tables) is loaded; audit reads nftables and iptables-nft only") == out,
	          "%s", out);
	cr_expect_eq(audit_count(&f.r), 1, "%s", out);
	teardown(&f, out);
}

Test(audit, json_output)
{
	struct fixture f;
	char err[160];
	setup(&f, LOCKED, "{\"nftables\":[]}");
	add_socket(&f, "0.0.0.0:25", true, 0, "");
	char *out = run(&f), *js = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&js, &len);
	audit_print(&f.r, true, fp);
	fclose(fp);
	struct json *j = json_parse(js, len, err, sizeof(err));
	cr_assert_not_null(j, "%s: %s", err, js);
	const struct json *a = json_get(j, "findings");
	cr_assert(a && a->type == JSON_ARRAY && a->n == f.r.n);
	cr_expect_str_eq(json_str(json_get(a->items[0], "severity")), "critical");
	cr_expect_str_eq(json_str(json_get(a->items[0], "check")), "firewall-open");
	json_free(j);
	free(js);
	teardown(&f, out);
}

/* one connector on a shared preset with no proof, one with a proof, one on its own ranges,
 * one for partners only */
static const char tenant_conf[] = CONNECTOR("Shared", "\"0.0.0.0:25\"",
                                            "\"@proofpoint-essentials-us\"")
        CONNECTOR("Proven", "\"0.0.0.0:26\"",
                  "\"@proofpoint-essentials-us\" }\n"
                  "  remote-hostname-suffixes = { \"outbound.pphosted.example\"")
                CONNECTOR("Own ranges", "\"0.0.0.0:27\"",
                          "\"67.231.144.0/20\"") "connector \"Partners\" {\n  usage = custom\n  "
                                                 "permission-groups = { partners }\n"
                                                 "  auth-mechanism = { none }\n  bindings = { "
                                                 "\"0.0.0.0:28\" }\n"
                                                 "  remote-ip-ranges = { "
                                                 "\"@proofpoint-essentials-us\" }\n}\n";

Test(audit, tenant_proof_missing_on_a_shared_preset)
{
	struct fixture f;
	setup(&f, tenant_conf, NULL);
	char *out = run(&f);
	cr_expect(strstr(out, "info tenant-proof-missing: connector \"Shared\" (") != NULL, "%s",
	          out);
	cr_expect(strstr(out, "takes its clients from preset proofpoint-essentials-us with no "
	                      "tenant proof: another tenant of proofpoint-essentials-us can relay "
	                      "through it; fix: tls-sender-certificate-name or "
	                      "remote-hostname-suffixes (docs/LOCKDOWN.md section 5)") != NULL,
	          "%s", out);
	/* one finding only, and info: it does not change the exit status */
	cr_expect(strstr(strstr(out, "tenant-proof-missing") + 1, "tenant-proof-missing") == NULL,
	          "%s", out);
	for (size_t i = 0; i < f.r.n; i++)
		cr_expect(strcmp(f.r.v[i].check, "tenant-proof-missing") != 0 ||
		                  f.r.v[i].severity == AUDIT_INFO,
		          "%s", out);
	teardown(&f, out);
}
