/*
 * nftrules — the loaded nftables ruleset, read from `nft -j list ruleset`, and what it does
 * to one new TCP connection from a client (sans-I/O: the JSON text in, verdicts out).
 *
 * The model is the one mxgate audit needs: does a SYN from address S to local address D,
 * TCP port P, arriving on an interface other than lo, get through?  Netfilter's rule: a
 * packet passes a hook only when every base chain on it lets it pass (an accept ends one
 * chain, a drop ends the packet).  So the packet is dropped when any filter base chain on
 * the prerouting or input hook of its family (ip, ip6, inet) drops it, and accepted
 * otherwise.  Within a chain the rules run in order: jump, goto and return, named and
 * anonymous sets, verdict maps, the chain's policy (jumps deeper than 16, or more than
 * 200,000 rules run for one packet, end the chain as undecided: nft refuses loops, a
 * text need not).  iptables on Debian 12 is iptables-nft, so its rules are read here too (its extension matches are opaque in the JSON: a
 * conntrack or state match is read as "established or related", which a SYN is not).
 *
 * Matches read: tcp/th dport, ip/ip6 saddr and daddr, ip protocol, ip6 nexthdr, meta
 * l4proto, nfproto, iifname and iif (a client never comes in on lo), ct state (new).  A
 * match on another protocol (udp, icmp, ...) never matches a TCP packet.  Any other
 * expression cannot be decided; it is assumed to let the packet through (it does not
 * make a drop rule apply, it makes an accept rule apply) and the evaluation says so.
 */
#ifndef MXGATE_NFTRULES_H
#define MXGATE_NFTRULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/ipaddr.h"

struct nftrules;

/* Parses the output of `nft -j list ruleset` (text[0..len)).  Returns the ruleset (owned by
 * the caller), or NULL with a sentence in err (errlen >= 128), also when out of memory. */
struct nftrules *nftrules_parse(const char *text, size_t len, char *err, size_t errlen);
/* nftrules_free(NULL) is a no-op. */
void nftrules_free(struct nftrules *rs);

/* The number of filter base chains on the prerouting or input hook that apply to family
 * (AF_INET or AF_INET6): 0 means no firewall for that family. */
size_t nftrules_base_chains(const struct nftrules *rs, int family);

/* A new TCP connection (a SYN, conntrack state new) from src to dst:dport, not on lo. */
struct nftrules_packet {
	struct ipaddr src;
	struct ipaddr dst; /* family AF_UNSPEC (0): any local address of src's family */
	uint16_t dport;
};

/* True when the ruleset lets p through.  *assumed (may be NULL) is set when an expression
 * that could not be decided was taken to let it through. */
bool nftrules_accepts(const struct nftrules *rs, const struct nftrules_packet *p, bool *assumed);

#endif
