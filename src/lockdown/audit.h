/*
 * audit — `mxgate audit`: the running host inspected against a configuration, for the
 * ways around the filter (issue 13): a port the firewall leaves open beyond the
 * configuration's ranges (per address family, and one family open while the other is
 * locked), the firewall dropping clients the configuration takes, a listener on a
 * configured port that is not mxgate's or on an address the configuration does not name
 * (a second MTA on [::]:25, whose dual-stack socket takes IPv4 clients too as
 * ::ffff:a.b.c.d), a connector open to every address next to locked ones, a provider preset
 * whose source is older than AUDIT_PRESET_MAX_AGE_DAYS, and a running mxgate that uses
 * another configuration file, or loaded it before it last changed.
 *
 * Two halves.  audit_host_read() does the I/O: `nft -j list ruleset` (nftrules.h; iptables
 * on Debian 12 is iptables-nft, whose rules that command lists too), /proc/net/tcp and tcp6
 * for the listening sockets, sock_diag (netlink) for which IPv6 ones are dual-stack, and
 * /proc/PID/fd for their owners, whether iptables-legacy holds rules (which nft does not
 * list: they are counted and reported, not read), the daemon's answer to
 * "status" on its control socket (queue.h), the presets' headers.  audit_check() decides,
 * sans I/O, from a struct audit_host anyone can fill (the unit tests do, with captured
 * texts run through the parsers below).  Nothing leaves the host.
 */
#ifndef MXGATE_AUDIT_H
#define MXGATE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "base/ipaddr.h"
#include "conf/config.h"
#include "lockdown/nftrules.h"

#define AUDIT_PRESET_MAX_AGE_DAYS 180

enum audit_severity { AUDIT_INFO, AUDIT_WARNING, AUDIT_CRITICAL };

struct audit_finding {
	enum audit_severity severity;
	char *check;   /* a short stable name: "firewall-open", "foreign-listener", ... */
	char *message; /* what was found and what it means */
	char *fix;     /* what to do */
};

/* Findings, owned by the report (audit_report_release). */
struct audit_report {
	struct audit_finding *v;
	size_t n, cap;
};

/* A listening TCP socket and its owner. */
struct audit_socket {
	struct endpoint local;
	unsigned long inode;
	bool mxgate;   /* held by the running mxgate (its pid, or a process named mxgate) */
	int v6only;    /* IPv6: 1 IPV6_V6ONLY, 0 dual-stack, -1 unknown (sock_diag unread) */
	long pid;      /* another holder, or 0 when none was found (another namespace, ...) */
	char comm[32]; /* that holder's name */
};

/* A provider preset the configuration uses. */
struct audit_preset {
	char *name, *source_date; /* owned */
};

/* What audit_check reads; audit_host_read fills it, tests fill it by hand.  Owned
 * strings and arrays are freed by audit_host_release. */
struct audit_host {
	struct nftrules *nft; /* owned; NULL: nft_error says why */
	char *nft_error;
	struct audit_socket *sockets; /* LISTEN sockets of both families */
	size_t n_sockets, cap_sockets;
	bool bindv6only;    /* net.ipv6.bindv6only: a [::] socket of another process is IPv6 only */
	bool daemon;        /* a daemon answered "status" on the configuration's spool */
	char *status_error; /* when none answered: why */
	long daemon_pid;
	char *daemon_config;             /* the file it runs, absolute when it could be resolved */
	time_t daemon_loaded;            /* when it loaded it (0: unknown) */
	char *config_real;               /* the audited file, resolved */
	time_t config_mtime;             /* the newest mtime of it and the files it names */
	time_t side_mtime;               /* the newest mtime of the files it names (not itself) */
	bool sha256_known;               /* both digests below were read */
	unsigned char config_sha256[32]; /* of the audited file now */
	unsigned char daemon_sha256[32]; /* of the file the daemon loaded (its status) */
	struct audit_preset *presets;
	size_t n_presets;
	size_t legacy_rules[2]; /* rules of iptables-legacy for IPv4, IPv6: not read, counted */
	time_t now;
};

/* Parses /proc/net/tcp (family AF_INET) or /proc/net/tcp6 (AF_INET6): appends each LISTEN
 * socket (local address, port, inode; no owner yet) to h->sockets.  Returns 0, or -1 on a
 * line that is not one of that file's or when out of memory (errno EINVAL / ENOMEM). */
int audit_parse_proc_net_tcp(const char *text, int family, struct audit_host *h);

/* Reads a sock_diag answer (netlink messages of SOCK_DIAG_BY_FAMILY, AF_INET6, for
 * listening TCP sockets): sets v6only of the sockets in h with the inode of each message
 * that carries INET_DIAG_SKV6ONLY.  Returns 1 after NLMSG_DONE, 0 when more is to come, -1
 * on NLMSG_ERROR or a malformed message. */
int audit_parse_sock_diag(const void *buf, size_t len, struct audit_host *h);

/* The inode of a /proc/PID/fd link's target "socket:[INODE]", or 0 when it is not a socket. */
unsigned long audit_socket_inode(const char *link);

/* Reads the daemon's "status" answer (smtpd/status.h): sets daemon, daemon_pid,
 * daemon_config (as the daemon names it), daemon_loaded and, when the answer has it,
 * daemon_sha256 (sha256_known is left to the caller, who has the other digest).  Returns 0, or -1 when the
 * text does not carry them. */
int audit_parse_status(const char *text, struct audit_host *h);

/* The rules in the output of iptables-legacy-save (or ip6tables-legacy-save): every
 * "-A" line, and every built-in chain whose policy is not ACCEPT. */
size_t audit_count_legacy_rules(const char *text);

/* Fills h for configuration c, read from path: runs nft, reads /proc, asks the daemon.
 * What cannot be read is recorded in h (nft_error, status_error), not an error.  Returns
 * 0, or -1 when out of memory. */
int audit_host_read(const struct config *c, const char *path, struct audit_host *h);
void audit_host_release(struct audit_host *h);

/* Appends the findings for c on host h to r; path names the configuration in the fixes.
 * Returns 0, or -1 when out of memory. */
int audit_check(const struct config *c, const char *path, const struct audit_host *h,
                struct audit_report *r);

/* One line a finding: "SEVERITY check: message; fix: fix", or with json one JSON object
 * {"findings": [{"severity", "check", "message", "fix"}, ...]}. */
void audit_print(const struct audit_report *r, bool json, FILE *out);
/* The number of findings that are warnings or critical (the exit status depends on it). */
size_t audit_count(const struct audit_report *r);
void audit_report_release(struct audit_report *r);

#endif
