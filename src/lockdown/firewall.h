/*
 * firewall — the lockdown of a config written as firewall rules (nftables, iptables, pf,
 * Windows Defender Firewall), as Exchange 2013+ receive connectors, or as HAProxy ACLs
 * for a load balancer in front of mxgate.
 *
 * The firewall formats enforce, per TCP port the enabled connectors are bound to, what
 * connector selection would decide at accept: a client may reach local address D on
 * port P when a connector bound to D:P, or to the wildcard of D's family on P, lists it.
 * So for each (port, family) there is one rule set per specific local address bound
 * there (its connectors' ranges plus those of the family's wildcard connectors on the
 * port) and one for the wildcard (every other local address of the family); everything
 * else to that port and address is dropped.  A port and family with no binding is left
 * alone, as are other ports and protocols.  Ranges are merged (overlapping and adjacent
 * ones joined) and written in the forms each target takes: nft intervals (a-b), CIDR
 * blocks for iptables (-s, or -m iprange --src-range for a range that is no block) and
 * pf, ranges for Windows and Exchange.  Where the union covers the whole family (a
 * connector without ranges, 0.0.0.0/0, ::/0) the port is not restricted for that family
 * and address, and a warning says so.  Disabled connectors are ignored.
 *
 * Every output replaces only what mxgate owns and is idempotent:
 *   nft       table inet mxgate, deleted and made again in one `nft -f` transaction;
 *   iptables  a sh script: chain MXGATE-INPUT (and its IPv6 twin) flushed and refilled by
 *             iptables-restore/ip6tables-restore --noflush, and the jump from INPUT added
 *             only when missing;
 *   pf        rules and tables for the anchor "mxgate" (pfctl -a mxgate -f FILE replaces
 *             the anchor);
 *   windows   PowerShell: removes the firewall rules of group "mxgate", makes them again;
 *   exchange  PowerShell for the Exchange Management Shell: per connector, Set- when it
 *             exists, else New-ReceiveConnector in the Frontend Transport service;
 *   haproxy   sections for haproxy.cfg: per port a frontend binding the port's wildcard
 *             families (and one per specific local address) whose `acl ... src` lines
 *             (CIDR blocks, at most 8 a line) hold the allowed ranges and which rejects
 *             every other client with `tcp-request connection reject`, and a backend
 *             whose server lines (a commented template) send the PROXY protocol v2.
 * docs/FIREWALL.md tells how to apply each.
 */
#ifndef MXGATE_FIREWALL_H
#define MXGATE_FIREWALL_H

#include <stdio.h>

#include "conf/config.h"

enum firewall_format {
	FIREWALL_NFT,
	FIREWALL_IPTABLES,
	FIREWALL_PF,
	FIREWALL_WINDOWS,
	FIREWALL_EXCHANGE,
	FIREWALL_HAPROXY,
};

/* "nft", "iptables", "pf", "windows", "exchange" or "haproxy".  Returns 0, or -1 for another name. */
int firewall_format_parse(const char *name, enum firewall_format *out);
const char *firewall_format_name(enum firewall_format f);

/* Writes c's lockdown in format f to out.  label names the config in the output's
 * header comment (borrowed for the call).  Ports left open to everyone, and connectors
 * the format cannot express, are reported to d as warnings at the connector's line.
 * Returns 0, or -1 when out of memory or writing failed (errno). */
int firewall_write(const struct config *c, enum firewall_format f, const char *label, FILE *out,
                   struct diag *d);

#endif
