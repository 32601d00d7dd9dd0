#include "conf/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "base/certname.h"
#include "base/mailpath.h"
#include "base/rangeset.h"
#include "base/sidefile.h"
#include "base/vec.h"
#include "conf/parse.h"
#include "conf/providers.h"
#include "conf/selector.h"

/* ---- the option table --------------------------------------------------------------- */

enum kind {
	K_STR,      /* free text, checked by the option's own check */
	K_PATH,     /* a file or directory; relative to the config file's directory */
	K_PATHS,    /* a list of K_PATH */
	K_BOOL,     /* true/false, yes/no, on/off */
	K_SIZE,     /* bytes: 36MB, "36 MB", 37748736 */
	K_DURATION, /* 5m, 300s, 00:05:00 */
	K_COUNT,    /* a whole number */
	K_ENUM,     /* one keyword */
	K_FLAGS,    /* a list of keywords, as bits */
	K_BINDINGS, /* a list of IP:PORT */
	K_RANGES,   /* a list of remote IP ranges */
	K_DOMAINS,  /* a list of domain names */
	K_SERVERS,  /* a list of IP:PORT kept as text (resolvers) */
	K_SUFFIXES, /* a list of DNS suffixes or @preset (remote-hostname-suffixes) */
};

enum section { SEC_ROOT, SEC_TLS, SEC_DELIVER, SEC_CONNECTOR, SEC_DOMAIN, SEC_COUNT };

static const char *const section_names[SEC_COUNT] = {"root", "tls", "deliver", "connector",
                                                     "domain"};

struct keyword {
	const char *name; /* as written in the config; matched ignoring case and '-' */
	unsigned value;
	const char *doc;
};

struct loader;

struct option {
	enum section sec;
	const char *name;
	enum kind kind;
	const char *def; /* default, written as in the file; NULL: none */
	size_t off;      /* offsetof() in struct config (root, tls, deliver) or struct connector */
	uint64_t min, max;
	bool unlimited; /* "unlimited" is accepted */
	const struct keyword *words;
	int (*check)(struct loader *, const char *text, char *err, size_t errlen);
	const char *doc;
};

static const struct keyword usage_words[] = {
        {"internet", USAGE_INTERNET,
         "anonymous-users with tls: mail from the internet or a filtering service"},
        {"partner", USAGE_PARTNER, "partners with tls"},
        {"internal", USAGE_INTERNAL,
         "exchange-servers with tls: another mail server of the organization"},
        {"custom", USAGE_CUSTOM, "no permission group and no mechanism until you set them"},
        {"client", USAGE_CLIENT,
         "refused: authenticated client submission is not offered by mxgate"},
        {NULL, 0, NULL},
};

static const struct keyword barelf_words[] = {
        {"reject", BARE_LF_REJECT,
         "a bare CR or LF closes the session with 421 4.5.0 (SMTP smuggling is impossible)"},
        {"normalize", BARE_LF_NORMALIZE,
         "a bare LF ends a line, stored as CRLF; a bare CR is still refused"},
        {NULL, 0, NULL},
};

static const struct keyword auth_words[] = {
        {"none", AUTH_NONE, "no mechanism; must stand alone"},
        {"tls", AUTH_TLS, "offer STARTTLS (needs the tls section)"},
        {"external-authoritative", AUTH_EXTERNAL_AUTHORITATIVE,
         "the link is secured outside mxgate (IPsec, a private network); needs tls and "
         "permission-groups exchange-servers"},
        {NULL, 0, NULL},
};

static const struct keyword perm_words[] = {
        {"none", 0, "no group: every MAIL is refused with 530 5.7.1"},
        {"anonymous-users", PERM_ANONYMOUS_USERS, "may send to accepted domains"},
        {"partners", PERM_PARTNERS, "may send to accepted domains"},
        {"exchange-servers", PERM_EXCHANGE_SERVERS,
         "may relay to any domain and bypass the message size limit"},
        {NULL, 0, NULL},
};

static const struct keyword verifyunavail_words[] = {
        {"defer", VERIFY_UNAVAILABLE_DEFER,
         "`450 4.4.3`: the client retries later (mail waits while the next hop is down)"},
        {"accept", VERIFY_UNAVAILABLE_ACCEPT,
         "`250`: the recipient is taken unverified (a bounce may follow: backscatter)"},
        {NULL, 0, NULL},
};

static const struct keyword relaytls_words[] = {
        {"none", RELAY_TLS_NONE, "never STARTTLS to the next hop"},
        {"opportunistic", RELAY_TLS_OPPORTUNISTIC,
         "STARTTLS when the next hop offers it, plaintext otherwise"},
        {"required", RELAY_TLS_REQUIRED,
         "send nothing unless STARTTLS succeeds; mail waits in the queue"},
        {NULL, 0, NULL},
};

static const struct keyword logtarget_words[] = {
        {"stderr", LOG_TO_STDERR, "one line per event on standard error"},
        {"syslog", LOG_TO_SYSLOG, "syslog(3), facility mail"},
        {NULL, 0, NULL},
};

static const struct keyword loglevelconf_words[] = {
        {"error", LOGLEVEL_ERROR, "only errors"},
        {"warning", LOGLEVEL_WARNING, "errors and warnings"},
        {"info", LOGLEVEL_INFO, "also every connection decision and message"},
        {"debug", LOGLEVEL_DEBUG, "also internals"},
        {NULL, 0, NULL},
};

static const struct keyword loglevel_words[] = {
        {"none", PROTOLOG_NONE, "one log line per connection and per message"},
        {"verbose", PROTOLOG_VERBOSE, "also every command and reply of the session"},
        {NULL, 0, NULL},
};

static int check_hostname(struct loader *, const char *, char *, size_t);
static int check_banner(struct loader *, const char *, char *, size_t);
static int check_user(struct loader *, const char *, char *, size_t);
static int check_maildir(struct loader *, const char *, char *, size_t);
static int check_name_text(struct loader *, const char *, char *, size_t);
static int check_relay(struct loader *, const char *, char *, size_t);
static int check_endpoint(struct loader *, const char *, char *, size_t);
static int check_certname(struct loader *, const char *, char *, size_t);

#define ROOT(f) offsetof(struct config, f)
#define CONN(f) offsetof(struct connector, f)
#define DOM(f)  offsetof(struct domain_conf, f)
#define MAXI32  2147483647u

static const struct option options[] = {
        /* top level */
        {SEC_ROOT, "hostname", K_STR, NULL, ROOT(hostname), 0, 0, false, NULL, check_hostname,
         "This server's name: the default `fqdn` of every connector. Default: the system's host "
         "name."},
        {SEC_ROOT, "spool", K_PATH, "/var/spool/mxgate", ROOT(spool), 0, 0, false, NULL, NULL,
         "Directory of the durable message spool."},
        {SEC_ROOT, "user", K_STR, NULL, ROOT(user), 0, 0, false, NULL, check_user,
         "User (and its group) the daemon switches to after binding its ports when started as "
         "root. Unset: it keeps the starting user, and refuses to run as root."},
        {SEC_ROOT, "accepted-domains", K_DOMAINS, NULL, ROOT(accepted_domains), 0, 0, false, NULL,
         NULL,
         "Domains this server takes mail for (Exchange's accepted domains). `*.example.com` "
         "covers the subdomains of example.com."},
        {SEC_ROOT, "workers", K_COUNT, "0", ROOT(workers), 0, 64, false, NULL, NULL,
         "Threads that run SMTP sessions, each with its own event loop; 0: one per CPU."},
        {SEC_ROOT, "log", K_ENUM, "stderr", ROOT(log_target), 0, 0, false, logtarget_words, NULL,
         "Where the daemon logs."},
        {SEC_ROOT, "log-level", K_ENUM, "info", ROOT(log_level), 0, 0, false, loglevelconf_words,
         NULL, "The least severe events logged."},
        {SEC_ROOT, "max-side-file-size", K_SIZE, "256MB", ROOT(max_side_file_size), 1024,
         17179869184ull, false, NULL, NULL,
         "Largest file the configuration names: `remote-ip-ranges-file`, `recipients-file`, "
         "a provider preset, the TLS certificate and key, `relay-ca-file`. One that is "
         "larger, or that is not a regular file (a device such as /dev/zero, a FIFO, a "
         "directory), is an error. A list of 1M ranges is about 20MB."},
        {SEC_ROOT, "max-side-file-line-length", K_COUNT, "4096", ROOT(max_side_file_line_length),
         64, 1048576, false, NULL, NULL,
         "Longest line (bytes) of a ranges file, recipients file or preset; a longer one, or "
         "a NUL byte, is an error."},
        {SEC_ROOT, "drain-timeout", K_DURATION, "30s", ROOT(drain_timeout_ms), 0, 3600000, false,
         NULL, NULL,
         "On SIGTERM, how long open sessions may finish before they are closed with 421."},
        {SEC_ROOT, "protocol-log-directory", K_PATH, NULL, ROOT(protocol_log_directory), 0, 0,
         false, NULL, NULL,
         "Directory of Exchange's SMTP Receive protocol log (`RECVyyyymmdd-N.LOG`, CSV): every "
         "command and reply of the sessions on connectors with `protocol-logging-level = "
         "verbose`. Created (mode 0750) at start, owned by `user`. Unset: no protocol log."},
        {SEC_ROOT, "protocol-log-max-file-size", K_SIZE, "10MB", ROOT(protocol_log_max_file_size),
         4096, 17179869184ull, false, NULL, NULL,
         "A protocol log file is closed, and the next started, before a row would take it "
         "past this (Exchange's default)."},
        {SEC_ROOT, "protocol-log-max-directory-size", K_SIZE, "250MB",
         ROOT(protocol_log_max_directory_size), 4096, 1099511627776ull, false, NULL, NULL,
         "The oldest protocol log files are deleted while together they exceed this."},
        {SEC_ROOT, "protocol-log-max-age", K_DURATION, "30d", ROOT(protocol_log_max_age_ms),
         3600000, 315360000000ull, false, NULL, NULL,
         "Protocol log files last modified longer ago than this are deleted (checked hourly)."},
        {SEC_ROOT, "metrics-listen", K_STR, NULL, ROOT(metrics_listen), 0, 0, false, NULL,
         check_endpoint,
         "`IP:PORT` (`[IPv6]:PORT` for IPv6) where Prometheus metrics are served over HTTP "
         "at `GET /metrics`. Unset: no metrics endpoint. The endpoint has no authentication: "
         "give it a loopback or management address, or firewall it. It is bound at start, "
         "before privileges are dropped; a change takes effect at the next start."},
        {SEC_ROOT, "proxy-protocol-from", K_RANGES, NULL, 0, 0, 0, false, NULL, NULL,
         "Load balancers (ranges as in `remote-ip-ranges`, provider presets `@name` too) that "
         "open every connection with a PROXY protocol header, version 1 or 2, as HAProxy's "
         "`send-proxy` or `send-proxy-v2` do. A connection from them gets no greeting until "
         "its header has come; the header's source address is then the client for "
         "everything: connector selection, the per-source limits, the logs (`client=` the "
         "client, `via=` the balancer), the protocol log and `Received:`. A `LOCAL` header "
         "(health checks) gets a session on the balancer's own address. A missing, invalid "
         "or late header closes the connection without a byte. A peer not listed is never "
         "believed: a PROXY line it sends is SMTP input. Unset: no PROXY protocol."},
        {SEC_ROOT, "proxy-protocol-timeout", K_DURATION, "5s", ROOT(proxy_protocol_timeout_ms),
         1000, 600000, false, NULL, NULL,
         "How long a `proxy-protocol-from` peer may take to send its whole header."},
        /* tls { } */
        {SEC_TLS, "certificate", K_PATH, NULL, ROOT(tls_certificate), 0, 0, false, NULL, NULL,
         "PEM certificate chain, leaf first."},
        {SEC_TLS, "key", K_PATH, NULL, ROOT(tls_key), 0, 0, false, NULL, NULL,
         "PEM private key; must not be readable by group or others."},
        /* deliver { } */
        {SEC_DELIVER, "maildir", K_PATH, NULL, ROOT(maildir), 0, 0, false, NULL, check_maildir,
         "Maildir path template: `%d` is the recipient's domain, `%u` its local part (both "
         "encoded so they are always one safe path component), `%%` a percent sign. A "
         "template that delivery would refuse for every recipient is an error: `.` or `..` "
         "from the first `%` on, a name over 255 bytes, a directory part over 1023 bytes or "
         "a templated part over 2047; a recipient whose own name would be over 255 bytes "
         "(`%d.%u` in one name) is bounced with 550 5.1.3. Default: `<spool>/maildir/%d/%u`."},
        {SEC_DELIVER, "relay", K_STR, NULL, ROOT(relay), 0, 0, false, NULL, check_relay,
         "Next hop `HOST:PORT` (an address, `[IPv6]:PORT`, or a name) that every accepted "
         "message is relayed to instead of a Maildir."},
        {SEC_DELIVER, "relay-tls", K_ENUM, "opportunistic", ROOT(relay_tls), 0, 0, false,
         relaytls_words, NULL, "STARTTLS towards the next hop."},
        {SEC_DELIVER, "relay-tls-verify", K_BOOL, "false", ROOT(relay_tls_verify), 0, 0, false,
         NULL, NULL,
         "Verify the next hop's certificate chain and name (the relay host); a failure is a "
         "temporary error."},
        {SEC_DELIVER, "relay-ca-file", K_PATH, NULL, ROOT(relay_ca_file), 0, 0, false, NULL, NULL,
         "PEM CA certificates for relay-tls-verify. Default: the system's trust store."},
        {SEC_DELIVER, "relay-connections", K_COUNT, "4", ROOT(relay_connections), 1, 100, false,
         NULL, NULL, "Parallel connections to the next hop (read at start)."},
        {SEC_DELIVER, "relay-timeout", K_DURATION, "2m", ROOT(relay_timeout_ms), 1000, 3600000,
         false, NULL, NULL,
         "Longest wait for the next hop at any step (connect, each reply, each write)."},
        {SEC_DELIVER, "relay-idle-timeout", K_DURATION, "10s", ROOT(relay_idle_timeout_ms), 0,
         300000, false, NULL, NULL,
         "How long each delivery thread keeps its connection to the next hop open after its "
         "last message, for the next ones (RSET before reuse; a kept connection found broken "
         "is replaced by a new one, not counted as a failed attempt). `0`: a new connection "
         "for every batch."},
        {SEC_DELIVER, "verify-timeout", K_DURATION, "10s", ROOT(verify_timeout_ms), 1000, 300000,
         false, NULL, NULL,
         "Recipient verification (`verify-recipients`): longest wait for the next hop at any "
         "step of a probe; past it the recipient is unavailable (`verify-unavailable`) and, for "
         "15 seconds, so is every recipient not cached, without a probe."},
        {SEC_DELIVER, "verify-positive-ttl", K_DURATION, "1h", ROOT(verify_positive_ttl_ms), 0,
         604800000, false, NULL, NULL,
         "How long a recipient the next hop took is remembered (no probe); `0s`: not "
         "cached."},
        {SEC_DELIVER, "verify-negative-ttl", K_DURATION, "10m", ROOT(verify_negative_ttl_ms), 0,
         604800000, false, NULL, NULL,
         "How long a recipient the next hop refused (5xx) is remembered; `0s`: not cached. "
         "Failures to reach the next hop are never cached."},
        {SEC_DELIVER, "verify-cache-size", K_COUNT, "10000", ROOT(verify_cache_size), 16, 10000000,
         false, NULL, NULL,
         "Entries of each verification cache (positive, negative); the least recently used "
         "goes first (read at start)."},
        {SEC_DELIVER, "retry-interval", K_DURATION, "1m", ROOT(retry_interval_ms), 1000, 86400000,
         false, NULL, NULL,
         "First retry after a temporary failure; each later one waits twice as long, up to "
         "1 hour."},
        {SEC_DELIVER, "message-expiration-timeout", K_DURATION, "2d",
         ROOT(message_expiration_timeout_ms), 60000, 7776000000ull, false, NULL, NULL,
         "A message not delivered by then is returned to its sender (Exchange's default, 2 "
         "days)."},
        /* domain "name" { } */
        {SEC_DOMAIN, "recipients-file", K_PATH, NULL, DOM(recipients_file), 0, 0, false, NULL, NULL,
         "Valid local parts of this domain, one a line (`user` or `user@domain`), `#` comments; "
         "RCPT to anyone else gets `550 5.1.1 User unknown`. Without it every local part is "
         "taken."},
        /* connector "name" { } */
        {SEC_CONNECTOR, "usage", K_ENUM, "custom", CONN(usage), 0, 0, false, usage_words, NULL,
         "Exchange's usage type; presets `auth-mechanism` and `permission-groups` when they are "
         "not set."},
        {SEC_CONNECTOR, "enabled", K_BOOL, "true", CONN(enabled), 0, 0, false, NULL, NULL,
         "A disabled connector takes no part in selection and opens no port."},
        {SEC_CONNECTOR, "bindings", K_BINDINGS, NULL, CONN(bindings), 0, 0, false, NULL, NULL,
         "Local `IP:PORT` endpoints (`[IPv6]:PORT`); `0.0.0.0` and `[::]` mean every local "
         "address of that family. Required."},
        {SEC_CONNECTOR, "remote-ip-ranges", K_RANGES, NULL, CONN(ranges), 0, 0, false, NULL, NULL,
         "Client addresses this connector serves: `192.0.2.7`, `192.0.2.0/24`, "
         "`192.0.2.0-192.0.2.99`, `192.0.2.0(255.255.255.0)`, `192.0.2.0 255.255.255.0`, and the "
         "IPv6 forms. With neither this nor `remote-ip-ranges-file`: every address."},
        {SEC_CONNECTOR, "remote-ip-ranges-file", K_PATHS, NULL, 0, 0, 0, false, NULL, NULL,
         "Files of more ranges: one a line, `#` starts a comment."},
        {SEC_CONNECTOR, "auth-mechanism", K_FLAGS, NULL, CONN(auth_mechanisms), 0, 0, false,
         auth_words, NULL, "Exchange's AuthMechanism. Default: from `usage`."},
        {SEC_CONNECTOR, "permission-groups", K_FLAGS, NULL, CONN(permission_groups), 0, 0, false,
         perm_words, NULL, "Exchange's PermissionGroups. Default: from `usage`."},
        {SEC_CONNECTOR, "require-tls", K_BOOL, "false", CONN(require_tls), 0, 0, false, NULL, NULL,
         "MAIL before STARTTLS gets `451 5.7.3 Must issue a STARTTLS command first`. Needs "
         "`tls`."},
        {SEC_CONNECTOR, "banner", K_STR, NULL, CONN(banner), 0, 0, false, NULL, check_banner,
         "The greeting line; must start with `220`. Default: `220 <fqdn> ESMTP ready`."},
        {SEC_CONNECTOR, "fqdn", K_STR, NULL, CONN(fqdn), 0, 0, false, NULL, check_hostname,
         "Name in the banner, the EHLO reply and the Received: header. Default: `hostname`."},
        {SEC_CONNECTOR, "max-message-size", K_SIZE, "36MB", CONN(max_message_size), 65536, MAXI32,
         false, NULL, NULL, "Largest message, as declared (SIZE=) and as received."},
        {SEC_CONNECTOR, "max-header-size", K_SIZE, "256KB", CONN(max_header_size), 1, MAXI32, false,
         NULL, NULL, "Largest message header; past it the message is refused."},
        {SEC_CONNECTOR, "max-recipients-per-message", K_COUNT, "200",
         CONN(max_recipients_per_message), 1, 512000, false, NULL, NULL,
         "Further RCPTs get `452 4.5.3 Too many recipients`."},
        {SEC_CONNECTOR, "max-inbound-connection", K_COUNT, "5000", CONN(max_inbound_connection), 1,
         MAXI32, true, NULL, NULL, "Concurrent sessions on this connector."},
        {SEC_CONNECTOR, "max-inbound-connection-per-source", K_COUNT, "20",
         CONN(max_inbound_connection_per_source), 1, 10000, true, NULL, NULL,
         "Concurrent sessions from one client address."},
        {SEC_CONNECTOR, "max-inbound-connection-percentage-per-source", K_COUNT, "2",
         CONN(max_inbound_connection_percentage_per_source), 1, 100, false, NULL, NULL,
         "Share (percent) of the connector's free connection slots one client may take."},
        {SEC_CONNECTOR, "connection-timeout", K_DURATION, "10m", CONN(connection_timeout_ms), 1000,
         86400000, false, NULL, NULL,
         "Longest session, busy or not: `421 4.4.1 Connection timed out`. Must be above "
         "`connection-inactivity-timeout`."},
        {SEC_CONNECTOR, "connection-inactivity-timeout", K_DURATION, "5m",
         CONN(connection_inactivity_timeout_ms), 1000, 86400000, false, NULL, NULL,
         "Longest wait for the client: `451 4.7.0 Timeout waiting for client input`."},
        {SEC_CONNECTOR, "message-rate-limit", K_COUNT, "unlimited", CONN(message_rate_limit), 1,
         MAXI32, true, NULL, NULL, "Messages per minute from one client address."},
        {SEC_CONNECTOR, "tarpit-interval", K_DURATION, "5s", CONN(tarpit_interval_ms), 0, 600000,
         false, NULL, NULL,
         "Delay before each failure reply to an anonymous session; `0s` turns it off."},
        {SEC_CONNECTOR, "max-protocol-errors", K_COUNT, "5", CONN(max_protocol_errors), 0, MAXI32,
         true, NULL, NULL, "Protocol errors a session may make before it is closed with 421."},
        {SEC_CONNECTOR, "max-hop-count", K_COUNT, "60", CONN(max_hop_count), 1, 500, false, NULL,
         NULL, "Most `Received:` headers a message may carry (a mail loop beyond)."},
        {SEC_CONNECTOR, "pipelining-enabled", K_BOOL, "true", CONN(pipelining_enabled), 0, 0, false,
         NULL, NULL, "Advertise and allow PIPELINING (RFC 2920)."},
        {SEC_CONNECTOR, "eight-bit-mime-enabled", K_BOOL, "true", CONN(eight_bit_mime_enabled), 0,
         0, false, NULL, NULL, "Advertise 8BITMIME (RFC 6152)."},
        {SEC_CONNECTOR, "enhanced-status-codes-enabled", K_BOOL, "true",
         CONN(enhanced_status_codes_enabled), 0, 0, false, NULL, NULL,
         "Advertise ENHANCEDSTATUSCODES and put them in replies (RFC 2034)."},
        {SEC_CONNECTOR, "smtp-utf8-enabled", K_BOOL, "true", CONN(smtp_utf8_enabled), 0, 0, false,
         NULL, NULL, "Advertise SMTPUTF8 (RFC 6531)."},
        {SEC_CONNECTOR, "protocol-logging-level", K_ENUM, "none", CONN(protocol_logging_level), 0,
         0, false, loglevel_words, NULL, "How much of each session is logged."},
        /* forward-confirmed reverse DNS (net/dns.h) */
        {SEC_ROOT, "resolvers", K_SERVERS, NULL, ROOT(resolvers), 0, 0, false, NULL, check_endpoint,
         "DNS servers (`IP:PORT`, `[IPv6]:PORT`) asked for `remote-hostname-suffixes` checks, "
         "in turn. Unset: the servers of /etc/resolv.conf. A reload applies a change to the "
         "sessions it starts; lookups under way end on the old servers."},
        {SEC_ROOT, "dns-timeout", K_DURATION, "10s", ROOT(dns_timeout_ms), 1000, 120000, false,
         NULL, NULL,
         "Longest a whole forward-confirmed reverse DNS check may take (the PTR lookup and "
         "the address lookups of every name); past it MAIL gets `451 4.4.3`."},
        {SEC_CONNECTOR, "remote-hostname-suffixes", K_SUFFIXES, NULL, CONN(hostname_suffixes), 0, 0,
         false, NULL, NULL,
         "Forward-confirmed reverse DNS: MAIL is accepted only when one of the client "
         "address's PTR names resolves (A or AAAA) back to that address and ends with one of "
         "these suffixes at a label boundary (`pphosted.com` takes `mx1.pphosted.com`, not "
         "`evilpphosted.com`). `@NAME` reads a provider preset's documented suffixes. A "
         "failed check gets `550 5.7.1` naming what failed; DNS trouble (timeout, SERVFAIL) "
         "`451 4.4.3`. Answers are cached for their TTL (at most 1 hour; failures 1 "
         "minute)."},
        {SEC_CONNECTOR, "chunking-enabled", K_BOOL, "true", CONN(chunking_enabled), 0, 0, false,
         NULL, NULL,
         "Advertise CHUNKING and take `BDAT n [LAST]` (RFC 3030); each chunk is checked against "
         "`max-message-size` before it is read. BINARYMIME is not offered."},
        {SEC_CONNECTOR, "bare-line-feed", K_ENUM, NULL, CONN(bare_line_feed), 0, 0, false,
         barelf_words, NULL,
         "A line ended by LF alone. `normalize` takes it as a line end in commands and text "
         "(stored as CRLF); the end of data is then CRLF.CRLF, or LF.LF in a message whose "
         "first line ended in LF; any other dot line is text, so no message can hide in "
         "another. Default: `reject`, `normalize` for usage `internal`."},
        {SEC_CONNECTOR, "tls-sender-certificate-name", K_STR, NULL,
         CONN(tls_sender_certificate_name), 0, 0, false, NULL, check_certname,
         "Exchange Online's TlsSenderCertificateName: the client must prove the tenant with a "
         "certificate for this name. STARTTLS asks for a client certificate; MAIL is refused "
         "unless its chain verifies against `tls { client-ca-file }` (validity dates "
         "included) and a subjectAltName dNSName, or the subject CN when there is none, "
         "matches (RFC 6125: case ignored; `*.example.com` matches exactly one label, "
         "`a.example.com` but not `a.b.example.com`). The replies: `530 5.7.1 Client was "
         "not authenticated: no client certificate was presented`, `550 5.7.1 Client "
         "certificate not trusted: <OpenSSL's reason>` (\"certificate has expired\", "
         "\"self-signed certificate\"), `550 5.7.1 Client certificate name mismatch: "
         "presented <names>`. Implies `require-tls` (needs `tls` in `auth-mechanism`). "
         "`@NAME` is refused with what preset NAME documents: a preset holds no tenant's "
         "name, which comes from the provider's connector guide."},
        {SEC_TLS, "client-ca-file", K_PATH, NULL, ROOT(tls_client_ca_file), 0, 0, false, NULL, NULL,
         "PEM CA certificates that verify client certificates "
         "(`tls-sender-certificate-name`); read like the key, so it may be readable by root "
         "only, and a reload reads it again. Default: the system's trust store, "
         "`" CONFIG_SYSTEM_CA_FILE "` (providers use public CAs)."},
        {SEC_CONNECTOR, "verify-recipients", K_BOOL, "false", CONN(verify_recipients), 0, 0, false,
         NULL, NULL,
         "Before RCPT is answered, ask the next hop (`relay`) whether it takes the recipient "
         "(MAIL FROM:<> / RCPT TO / RSET over a kept-open connection; answers cached, see "
         "`verify-positive-ttl`): refused (5xx) gets `550 5.1.1` with its text, so no bounce "
         "to a forged sender follows (backscatter). For recipients of accepted domains; "
         "only with `relay` (ignored with a warning otherwise)."},
        {SEC_CONNECTOR, "verify-unavailable", K_ENUM, "defer", CONN(verify_unavailable), 0, 0,
         false, verifyunavail_words, NULL,
         "The answer when `verify-recipients` cannot reach the next hop, it times out "
         "(`verify-timeout`) or it answers 4xx."},
        {SEC_TLS, "session-tickets", K_COUNT, "1", ROOT(tls_session_tickets), 0, 8, false, NULL,
         NULL,
         "TLS 1.3 session tickets sent after each full handshake: a client that keeps one "
         "may resume its next connection without a full handshake (no certificate "
         "signature, less CPU on both sides). `1` serves a sending MTA, which resumes one "
         "connection with one ticket; OpenSSL's own default, `2`, suits browsers that open "
         "connections in parallel, and each ticket costs the server an encryption and a "
         "record on every full handshake. `0` sends none: every TLS 1.3 connection pays a "
         "full handshake. Tickets are sealed with keys made at each start and reload, so "
         "one issued before either leads to a full handshake. Connections asked for a "
         "client certificate (`tls-sender-certificate-name`) get none. TLS 1.2 clients are "
         "not affected (RFC 5077 tickets)."},
};

#define N_OPTIONS     (sizeof(options) / sizeof(options[0]))
#define N_OPTIONS_MAX 128
_Static_assert(N_OPTIONS <= N_OPTIONS_MAX, "raise N_OPTIONS_MAX");

static const char *const kind_names[] = {[K_STR] = "text",
                                         [K_PATH] = "path",
                                         [K_PATHS] = "list of paths",
                                         [K_BOOL] = "boolean",
                                         [K_SIZE] = "size",
                                         [K_DURATION] = "duration",
                                         [K_COUNT] = "number",
                                         [K_ENUM] = "keyword",
                                         [K_FLAGS] = "list of keywords",
                                         [K_BINDINGS] = "list of IP:PORT",
                                         [K_RANGES] = "list of ranges",
                                         [K_DOMAINS] = "list of domains",
                                         [K_SERVERS] = "list of IP:PORT",
                                         [K_SUFFIXES] = "list of DNS suffixes"};

/* ---- loading state ------------------------------------------------------------------ */

/* The values one option was given in one section: "=" starts them again (and is reported
 * when it comes twice), "+=" adds.  Each value is borrowed from the parse tree. */
struct given {
	const struct conf_value **v;
	size_t n, cap;
	int line; /* of the first assignment; 0: not given */
};

/* Per section instance: what each option of the table was given (indexed like options[]). */
struct givens {
	struct given g[N_OPTIONS_MAX];
	int line; /* the section's opening line, 0 when absent */
};

struct loader {
	struct diag *d;
	struct config *c;
	const char *file; /* the main file's name, owned by c->files */
	char *dir;        /* its directory, for relative paths */
	/* capacities of the arrays being filled (each count is in the array's holder) */
	size_t files_cap;            /* config.files */
	size_t accepted_domains_cap; /* config.accepted_domains */
	size_t ranges_cap;           /* the connector being loaded: its ranges */
	size_t bindings_cap;         /* and its bindings */
};

static const struct option *
find_option(enum section sec, const char *name)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].sec == sec && strcmp(options[i].name, name) == 0)
			return &options[i];
	return NULL;
}

static bool
is_list_kind(enum kind k)
{
	return k == K_PATHS || k == K_FLAGS || k == K_BINDINGS || k == K_RANGES || k == K_DOMAINS ||
	       k == K_SERVERS || k == K_SUFFIXES;
}

/* Levenshtein distance, for "did you mean" on unknown keys. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(size_t));
	}
	return prev[lb];
}

static const char *
closest_key(enum section sec, const char *name, size_t maxd)
{
	const char *best = NULL;
	size_t bestd = maxd + 1;

	for (size_t i = 0; i < N_OPTIONS; i++) {
		size_t dd;
		if (options[i].sec != sec)
			continue;
		dd = edit_distance(name, options[i].name);
		if (dd < bestd) {
			bestd = dd;
			best = options[i].name;
		}
	}
	if (sec == SEC_ROOT) {
		for (int i = SEC_TLS; i < SEC_COUNT; i++) {
			size_t dd = edit_distance(name, section_names[i]);
			if (dd < bestd) {
				bestd = dd;
				best = section_names[i];
			}
		}
	}
	return best;
}

static const char *where_name(enum section sec);

static void
report_unknown(struct loader *L, enum section sec, const char *name, int line)
{
	const char *where = sec == SEC_ROOT ? "the top level" : section_names[sec];
	const char *best = closest_key(sec, name, 3);

	if (best) {
		diag_error(L->d, L->file, line, "unknown key '%s' in %s (did you mean '%s'?)", name,
		           where, best);
		return;
	}
	for (int other = 0; other < SEC_COUNT; other++) {
		if ((enum section)other == sec ||
		    !(best = closest_key((enum section)other, name, 2)))
			continue;
		diag_error(L->d, L->file, line, "unknown key '%s' in %s ('%s' is a setting of %s)",
		           name, where, best, where_name((enum section)other));
		return;
	}
	diag_error(L->d, L->file, line, "unknown key '%s' in %s", name, where);
}

static void
givens_release(struct givens *G)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		free(G->g[i].v);
	memset(G, 0, sizeof(*G));
}

static const struct given *
given(const struct givens *G, enum section sec, const char *name)
{
	const struct option *o = find_option(sec, name);

	return &G->g[o - options];
}

/* The line of an option's first value, or fallback when it is not given. */
static int
opt_line(const struct givens *G, enum section sec, const char *name, int fallback)
{
	const struct given *g = given(G, sec, name);

	return g->n ? g->v[0]->line : fallback;
}

static bool
opt_given(const struct givens *G, enum section sec, const char *name)
{
	return given(G, sec, name)->n > 0;
}

static const char *
where_name(enum section sec)
{
	return sec == SEC_ROOT        ? "the top level"
	       : sec == SEC_CONNECTOR ? "a connector section"
	                              : section_names[sec];
}

/* One assignment in section sec, into G.  Returns -1 only when out of memory. */
static int
collect_assignment(struct loader *L, const struct conf_node *n, enum section sec, struct givens *G)
{
	const struct option *o = find_option(sec, n->name);
	struct given *g;

	if (!o) {
		for (int s = SEC_TLS; sec == SEC_ROOT && s < SEC_COUNT; s++)
			if (strcmp(n->name, section_names[s]) == 0) {
				diag_error(L->d, L->file, n->line,
				           "syntax error: write %s%s { ... }", n->name,
				           s >= SEC_CONNECTOR ? " \"NAME\"" : "");
				return 0;
			}
		report_unknown(L, sec, n->name, n->line);
		return 0;
	}
	if (!is_list_kind(o->kind) && (n->list || n->append)) {
		diag_error(L->d, L->file, n->line, "%s takes one value: write %s = VALUE", o->name,
		           o->name);
		return 0;
	}
	g = &G->g[o - options];
	if (!n->append) {
		if (g->line) {
			diag_error(L->d, L->file, n->line, "'%s' is set twice (first on line %d)%s",
			           o->name, g->line,
			           is_list_kind(o->kind) ? "; use '+=' to add to a list" : "");
		} else {
			g->line = n->line;
		}
		g->n = 0; /* the last "=" wins, as it always has */
	} else if (!g->line) {
		g->line = n->line;
	}
	for (size_t i = 0; i < n->n_values; i++) {
		if (VEC_RESERVE(g->v, g->cap, g->n + 1) < 0)
			return -1;
		g->v[g->n++] = &n->values[i];
	}
	return 0;
}

/* The assignments of a section into G; sections inside one are reported (the top level's
 * own sections are the caller's).  Returns -1 only when out of memory. */
static int
collect(struct loader *L, const struct conf_node *sec_node, enum section sec, struct givens *G)
{
	memset(G, 0, sizeof(*G));
	G->line = sec_node->line;
	for (size_t i = 0; i < sec_node->n_children; i++) {
		const struct conf_node *n = &sec_node->children[i];
		if (n->kind == CONF_ASSIGN) {
			if (collect_assignment(L, n, sec, G) < 0)
				return -1;
		} else if (sec != SEC_ROOT) {
			diag_error(L->d, L->file, n->line, "unknown section '%s' in %s", n->name,
			           where_name(sec));
		}
	}
	return 0;
}

/* ---- value parsers -------------------------------------------------------------------- */

static bool
word_eq(const char *text, const char *word)
{
	/* "anonymous-users" matches "AnonymousUsers", "anonymous_users", "ANONYMOUS-USERS" */
	for (;;) {
		while (*text == '-' || *text == '_')
			text++;
		while (*word == '-')
			word++;
		if (!*text || !*word)
			return !*text && !*word;
		if (tolower((unsigned char)*text) != tolower((unsigned char)*word))
			return false;
		text++, word++;
	}
}

static int
parse_word(const struct keyword *w, const char *text, unsigned *out)
{
	for (; w->name; w++) {
		if (word_eq(text, w->name)) {
			*out = w->value;
			return 0;
		}
	}
	return -1;
}

static void
words_list(const struct keyword *w, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (; w->name && len < size; w++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? ", " : "", w->name);
}

static int
parse_bool(const char *s, bool *out)
{
	static const char *const t[] = {"true", "yes", "on"}, *const f[] = {"false", "no", "off"};

	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(s, t[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, f[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int
parse_u64(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*sp = s;
	*out = v;
	return 0;
}

int
config_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t mult;
	} units[] = {{"", 1},
	             {"b", 1},
	             {"kb", 1024},
	             {"kib", 1024},
	             {"k", 1024},
	             {"mb", 1024 * 1024},
	             {"mib", 1024 * 1024},
	             {"m", 1024 * 1024},
	             {"gb", 1024ull * 1024 * 1024},
	             {"gib", 1024ull * 1024 * 1024},
	             {"g", 1024ull * 1024 * 1024}};
	uint64_t v;

	if (parse_u64(&s, &v) < 0)
		return -1;
	while (*s == ' ')
		s++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(s, units[i].unit) == 0) {
			if (v > UINT64_MAX / units[i].mult)
				return -1;
			*out = v * units[i].mult;
			return 0;
		}
	}
	return -1;
}

int
config_parse_duration(const char *s, uint64_t *ms)
{
	uint64_t a, b, c, d = 0, total = 0;
	const char *p = s;

	if (strchr(s, ':')) {
		/* Exchange TimeSpan: [d.]hh:mm:ss */
		if (parse_u64(&p, &a) < 0)
			return -1;
		if (*p == '.') {
			p++;
			d = a;
			if (parse_u64(&p, &a) < 0)
				return -1;
		}
		if (*p++ != ':' || parse_u64(&p, &b) < 0 || *p++ != ':' || parse_u64(&p, &c) < 0 ||
		    *p || a > 23 || b > 59 || c > 59 || d > 10000)
			return -1;
		*ms = ((d * 24 + a) * 3600 + b * 60 + c) * 1000;
		return 0;
	}
	/* one or more NUMBER UNIT: 1h30m, 300s, 500ms */
	if (!*p)
		return -1;
	while (*p) {
		uint64_t v, mult;
		if (parse_u64(&p, &v) < 0)
			return -1;
		if (strncmp(p, "ms", 2) == 0)
			mult = 1, p += 2;
		else if (*p == 's')
			mult = 1000, p++;
		else if (*p == 'm')
			mult = 60000, p++;
		else if (*p == 'h')
			mult = 3600000, p++;
		else if (*p == 'd')
			mult = 86400000, p++;
		else
			return -1;
		if (v > (UINT64_MAX - total) / mult)
			return -1;
		total += v * mult;
	}
	*ms = total;
	return 0;
}

static bool
valid_domain(const char *s, bool wildcard_ok)
{
	size_t len = strlen(s), label = 0;

	if (wildcard_ok && strncmp(s, "*.", 2) == 0)
		s += 2, len -= 2;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char ch = s[i];
		if (ch == '.' || ch == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum((unsigned char)ch) || (ch == '-' && label > 0)))
			return false;
		label++;
	}
	return true;
}

static int
check_hostname(struct loader *L, const char *s, char *err, size_t errlen)
{
	(void)L;
	if (!valid_domain(s, false)) {
		snprintf(
		        err, errlen,
		        "'%s' is not a host name (letters, digits and '-' in dot-separated labels)",
		        s);
		return -1;
	}
	return 0;
}

/* tls-sender-certificate-name = "@NAME": a preset's certificate-names are what its provider
 * documents for all its customers, never one tenant's name, so the preset is read only to
 * say what it documents; the name itself must come from the provider's connector guide. */
static int
certname_preset(const char *s, char *err, size_t errlen)
{
	char path[4096], perr[512];
	struct provider *p;
	size_t len;

	if (providers_find(s + 1, path, sizeof(path)) < 0) {
		char hint[512];
		bool near = providers_suggest(s, hint, sizeof(hint)) == 0;
		snprintf(err, errlen,
		         "unknown provider preset '%s'%s%s%s (`mxgate providers` lists them)", s,
		         near ? ": did you mean " : "", near ? hint : "", near ? "?" : "");
		return -1;
	}
	if (!(p = providers_load(path, perr, sizeof(perr)))) {
		snprintf(err, errlen, "provider preset '%s': %s", s, perr);
		return -1;
	}
	if (p->certificates.n_names == 0) {
		snprintf(err, errlen,
		         "provider preset '%s' documents no certificate name (certificate-names: "
		         "none "
		         "documented); write the name your provider's connector guide gives for "
		         "your "
		         "tenant",
		         s);
	} else {
		len = (size_t)snprintf(err, errlen, "provider preset '%s' documents ", s);
		for (size_t i = 0; i < p->certificates.n_names && len < errlen; i++)
			len += (size_t)snprintf(err + len, errlen - len, "%s%s", i ? ", " : "",
			                        p->certificates.names[i]);
		if (len < errlen)
			snprintf(err + len, errlen - len,
			         "; write the one that names your tenant, not the preset");
	}
	providers_free(p);
	return -1;
}

static int
check_certname(struct loader *L, const char *s, char *err, size_t errlen)
{
	const char *why = NULL;

	(void)L;
	if (s[0] == '@')
		return certname_preset(s, err, errlen);
	if (!certname_valid(s, &why)) {
		snprintf(err, errlen, "'%s' is %s", s, why);
		return -1;
	}
	return 0;
}

static int
check_name_text(struct loader *L, const char *s, char *err, size_t errlen)
{
	(void)L;
	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			snprintf(err, errlen, "control characters are not allowed");
			return -1;
		}
	}
	return 0;
}

static int
check_banner(struct loader *L, const char *s, char *err, size_t errlen)
{
	if (strncmp(s, "220", 3) != 0 || (s[3] != '\0' && s[3] != ' ')) {
		snprintf(err, errlen,
		         "a banner must start with \"220 \", e.g. \"220 mx.example.com "
		         "ESMTP ready\"");
		return -1;
	}
	if (strlen(s) > 510) {
		snprintf(err, errlen, "a banner is one SMTP reply line: at most 510 characters");
		return -1;
	}
	return check_name_text(L, s, err, errlen);
}

static int
check_endpoint(struct loader *L, const char *s, char *err, size_t errlen)
{
	struct endpoint ep;

	(void)L;
	return endpoint_parse(s, &ep, err, errlen);
}

static int
check_relay(struct loader *L, const char *s, char *err, size_t errlen)
{
	const char *colon = strrchr(s, ':');
	char host[256];
	size_t hl;

	(void)L;
	if (!colon || !colon[1]) {
		snprintf(err, errlen,
		         "write HOST:PORT, e.g. 10.0.0.5:25 or [2001:db8::5]:25 or "
		         "exchange.example.com:25");
		return -1;
	}
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']') {
			snprintf(err, errlen, "an IPv6 next hop is written [ADDRESS]:PORT");
			return -1;
		}
		struct ipaddr a;
		if (ipaddr_parse(s + 1, hl - 2, &a) < 0) {
			snprintf(err, errlen, "'%.*s' is not an IPv6 address", (int)hl - 2, s + 1);
			return -1;
		}
	} else {
		if (hl == 0 || hl >= sizeof(host) || memchr(s, ':', hl)) {
			snprintf(err, errlen, "write HOST:PORT (IPv6 in brackets)");
			return -1;
		}
		memcpy(host, s, hl);
		host[hl] = '\0';
		struct ipaddr a;
		if (ipaddr_parse(host, hl, &a) < 0 && !valid_domain(host, false)) {
			snprintf(err, errlen, "'%s' is neither an address nor a host name", host);
			return -1;
		}
	}
	char *end;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (*end || port == 0 || port > 65535) {
		snprintf(err, errlen, "port '%s' is not a number from 1 to 65535", colon + 1);
		return -1;
	}
	return 0;
}

static int
check_user(struct loader *L, const char *s, char *err, size_t errlen)
{
	(void)L;
	if (!*s || !getpwnam(s)) {
		snprintf(err, errlen,
		         "user '%s' does not exist (create it: adduser --system --group %s)", s, s);
		return -1;
	}
	return 0;
}

static int
check_maildir(struct loader *L, const char *s, char *err, size_t errlen)
{
	(void)L;
	for (const char *p = s; *p; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p != 'd' && *p != 'u' && *p != '%') {
			snprintf(err, errlen,
			         "'%%%c' in the maildir template; only %%d, %%u and %%%% "
			         "are known",
			         *p ? *p : ' ');
			return -1;
		}
	}
	return check_name_text(L, s, err, errlen);
}

/* ---- building the snapshot ------------------------------------------------------------ */

/* <spool>/maildir/%d/%u, with the spool's own '%' written as "%%" so that it stays text */
static char *
default_maildir(const char *spool)
{
	size_t len = strlen(spool), n = 0;
	char *out;

	while (len > 1 && spool[len - 1] == '/')
		len--;
	if (!(out = malloc(2 * len + sizeof("/maildir/%d/%u"))))
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (spool[i] == '%')
			out[n++] = '%';
		out[n++] = spool[i];
	}
	snprintf(out + n, sizeof("/maildir/%d/%u"), "%s",
	         n == 1 && out[0] == '/' ? "maildir/%d/%u" : "/maildir/%d/%u");
	return out;
}

/* Refuses a template (resolved) that every delivery would refuse: mailpath_check, the
 * Maildir code's own verdict.  Empty components work but are most likely a slip; warn.
 * spool: the spool the template was made from (the default), or NULL. */
static void
check_maildir_template(struct loader *L, const char *tmpl, int line, const char *spool)
{
	char err[1024], *fixed;
	size_t n = 0;

	if (mailpath_check(tmpl, err, sizeof(err)) < 0) {
		if (spool)
			diag_error(L->d, L->file, line,
			           "bad spool '%s' for the default maildir %s: %s", spool, tmpl,
			           err);
		else
			diag_error(L->d, L->file, line, "bad maildir '%s': %s", tmpl, err);
		return;
	}
	if (!strstr(tmpl, "//") && !(tmpl[1] && tmpl[strlen(tmpl) - 1] == '/'))
		return;
	if (!(fixed = strdup(tmpl)))
		return;
	for (const char *p = tmpl; *p; p++)
		if (!(*p == '/' && n > 0 && fixed[n - 1] == '/'))
			fixed[n++] = *p;
	if (n > 1 && fixed[n - 1] == '/')
		n--;
	fixed[n] = '\0';
	diag_warn(L->d, L->file, line, "maildir '%s' has an empty path component; write '%s'", tmpl,
	          fixed);
	free(fixed);
}

static const char *
intern_file(struct loader *L, const char *path)
{
	for (size_t i = 0; i < L->c->n_files; i++)
		if (strcmp(L->c->files[i], path) == 0)
			return L->c->files[i];
	if (VEC_RESERVE(L->c->files, L->files_cap, L->c->n_files + 1) < 0 ||
	    !(L->c->files[L->c->n_files] = strdup(path)))
		return NULL;
	return L->c->files[L->c->n_files++];
}

static char *
resolve_path(struct loader *L, const char *p)
{
	char *out;

	if (p[0] == '/' || !L->dir)
		return strdup(p);
	if (asprintf(&out, "%s%s%s", L->dir, strcmp(L->dir, "/") == 0 ? "" : "/", p) < 0)
		return NULL;
	return out;
}

/* Keeps a parsed range, warning about what range_parse() flagged in text. */
static int
keep_range(struct loader *L, struct connector *k, const struct range *r, unsigned flags,
           const char *text, const char *file, int line)
{
	if (flags & RANGE_HOST_BITS) {
		char canon[128];
		range_format(r, canon, sizeof(canon));
		diag_warn(L->d, file, line, "range '%s' has host bits set; it means %s", text,
		          canon);
	}
	if (flags & RANGE_ZERO_SINGLE)
		diag_warn(L->d, file, line,
		          "'%s' is the single address %s; for every address write %s", text, text,
		          r->family == AF_INET ? "0.0.0.0/0" : "::/0");
	if (VEC_RESERVE(k->ranges, L->ranges_cap, k->n_ranges + 1) < 0)
		return -1;
	k->ranges[k->n_ranges++] = (struct conf_range){.r = *r, .at = {file, line}};
	if (!k->open_family && range_is_all(r))
		k->open_family = r->family; /* noted here: a million ranges are not walked again */
	return 0;
}

static int
add_range(struct loader *L, struct connector *k, const char *text, const char *file, int line)
{
	char err[256];
	unsigned flags;
	struct range r;

	if (range_parse(text, &r, &flags, err, sizeof(err)) < 0) {
		char hint[512];
		if (strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-") > 2 &&
		    providers_suggest(text, hint, sizeof(hint)) == 0)
			diag_error(L->d, file, line,
			           "bad remote range '%s': a provider preset is written with '@': "
			           "did you mean %s?",
			           text, hint);
		else
			diag_error(L->d, file, line, "bad remote range: %s", err);
		return 0;
	}
	return keep_range(L, k, &r, flags, text, file, line);
}

/* The bounds of side files: the options (0 only after a bad value, already reported). */
static struct sidefile_limits
side_limits(const struct config *c)
{
	return (struct sidefile_limits){
	        .max_size =
	                c->max_side_file_size ? c->max_side_file_size : SIDEFILE_DEFAULT_MAX_SIZE,
	        .max_line = c->max_side_file_line_length ? (size_t)c->max_side_file_line_length
	                                                 : SIDEFILE_DEFAULT_MAX_LINE,
	        .size_option = "max-side-file-size",
	        .line_option = "max-side-file-line-length"};
}

/* Reads a side file named on line cfgline of the main file by option what (the file, its
 * size and its lines bounded: sidefile.h); each line goes to cb.  A file that cannot be
 * read is reported, on that config line or on the side file's own line.  Returns -1 only
 * when cb ran out of memory. */
static int
read_side_file(struct loader *L, const char *what, const char *path, int cfgline,
               sidefile_size_cb size_cb, sidefile_line_cb cb, void *arg)
{
	struct sidefile_limits lim = side_limits(L->c);
	struct sidefile_error err;
	const char *file = intern_file(L, path);

	if (!file)
		return -1;
	if (sidefile_read_sized(path, &lim, size_cb, cb, arg, &err) == 0)
		return 0;
	if (!err.text[0])
		return -1;
	if (err.line > 0)
		diag_error(L->d, file, err.line, "cannot read %s: %s", what, err.text);
	else
		diag_error(L->d, L->file, cfgline, "cannot read %s %s: %s", what, path, err.text);
	return 0;
}

/* A file the config names for another reader (OpenSSL): true if it is a regular file
 * within max-side-file-size, which also keeps a FIFO from blocking that reader's open;
 * else reported on line. */
static bool
readable_file(struct loader *L, const char *what, const char *path, int line)
{
	struct sidefile_limits lim = side_limits(L->c);
	struct sidefile_error err;

	if (sidefile_check(path, &lim, &err) == 0)
		return true;
	diag_error(L->d, L->file, line, "cannot read %s %s: %s", what, path, err.text);
	return false;
}

struct ranges_read {
	struct loader *L;
	struct connector *k;
	const char *file;
};

static int
range_line_cb(char *line, size_t len, int lineno, void *arg)
{
	struct ranges_read *R = arg;
	char *s = line, *cut;
	struct range r;
	unsigned flags;

	/* most lines of a large file are "ADDRESS/PREFIX" alone, some with the CR of a file
	 * written on Windows: read in one pass */
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (range_parse_cidr(line, len, &r, &flags))
		return keep_range(R->L, R->k, &r, flags, line, R->file, lineno);
	/* len is the line's length: no scan for its end */
	if ((cut = memchr(s, '#', len)))
		len = (size_t)(cut - s);
	if ((cut = memchr(s, '\r', len)))
		len = (size_t)(cut - s);
	s[len] = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return 0;
	return add_range(R->L, R->k, s, R->file, lineno);
}

/* Room for the file's ranges at once, counting 12 bytes a line ("192.0.2.0/24" and its
 * newline are 13; IPv6 lines are longer): one block, backed by huge pages (vec.h), instead
 * of doublings whose edges fault page by page.  Without memory, the lines grow it as
 * before. */
static void
range_size_cb(uint64_t size, void *arg)
{
	struct ranges_read *R = arg;
	struct connector *k = R->k;
	size_t want = k->n_ranges + (size_t)(size / 12) + 1;

	(void)vec_reserve_exact(&k->ranges, &R->L->ranges_cap, want, sizeof(*k->ranges));
}

/* what: the option that names the file, for messages */
static int
load_ranges_file(struct loader *L, struct connector *k, const char *what, const char *path,
                 int cfgline)
{
	struct ranges_read R = {L, k, intern_file(L, path)};
	struct conf_range *fit;
	int rc;

	if (!R.file)
		return -1;
	rc = read_side_file(L, what, path, cfgline, range_size_cb, range_line_cb, &R);
	/* give back what the size hint reserved beyond the ranges read (comments, long lines) */
	if (L->ranges_cap > k->n_ranges + k->n_ranges / 4 + 8 &&
	    (fit = realloc(k->ranges, (k->n_ranges + 1) * sizeof(*k->ranges)))) {
		k->ranges = fit;
		L->ranges_cap = k->n_ranges + 1;
	}
	return rc;
}

/*
 * One converter per kind of option (nginx's ngx_conf_set_*_slot): each takes one value as
 * written, with its line, and stores it at field, or reports why it cannot.  They return -1
 * only when out of memory.
 */
struct conv {
	struct loader *L;
	const struct option *o;
	const char *text;
	int line;    /* 0 for the default */
	char *field; /* the option's member of base (config, connector or domain) */
	struct connector *k;
	size_t i, n; /* which value of how many (lists) */
};

static int
conv_str(const struct conv *v)
{
	return (*(char **)v->field = strdup(v->text)) ? 0 : -1;
}

static int
conv_path(const struct conv *v)
{
	if (!*v->text) {
		diag_error(v->L->d, v->L->file, v->line, "%s must not be empty", v->o->name);
		return 0;
	}
	return (*(char **)v->field = resolve_path(v->L, v->text)) ? 0 : -1;
}

static int
conv_paths(const struct conv *v)
{
	char *path = resolve_path(v->L, v->text);
	int rc;

	if (!path)
		return -1;
	rc = v->k ? load_ranges_file(v->L, v->k, v->o->name, path, v->line) : 0;
	free(path);
	return rc;
}

static int
conv_bool(const struct conv *v)
{
	bool b;

	if (parse_bool(v->text, &b) < 0)
		diag_error(v->L->d, v->L->file, v->line, "bad %s '%s': write true or false",
		           v->o->name, v->text);
	else
		*(bool *)v->field = b;
	return 0;
}

/* K_SIZE, K_DURATION and K_COUNT: a number with its unit, within the option's range. */
static int
conv_number(const struct conv *v)
{
	const struct option *o = v->o;
	const char *how = o->kind == K_SIZE       ? "a size such as 36MB, 256KB or 37748736"
	                  : o->kind == K_DURATION ? "a duration such as 5m, 300s or 00:05:00"
	                                          : "a whole number";
	uint64_t num;
	int bad;

	if (o->unlimited && strcasecmp(v->text, "unlimited") == 0) {
		*(uint64_t *)v->field = CONFIG_UNLIMITED;
		return 0;
	}
	if (o->kind == K_SIZE) {
		bad = config_parse_size(v->text, &num);
	} else if (o->kind == K_DURATION) {
		bad = config_parse_duration(v->text, &num);
	} else {
		const char *q = v->text;
		bad = parse_u64(&q, &num) < 0 || *q;
	}
	if (bad)
		diag_error(v->L->d, v->L->file, v->line, "bad %s '%s': write %s%s", o->name,
		           v->text, how, o->unlimited ? " or unlimited" : "");
	else if ((num < o->min || num > o->max) && o->kind == K_DURATION)
		diag_error(v->L->d, v->L->file, v->line, "%s '%s' is out of range: %llus to %llus",
		           o->name, v->text, (unsigned long long)o->min / 1000,
		           (unsigned long long)o->max / 1000);
	else if (num < o->min || num > o->max)
		diag_error(v->L->d, v->L->file, v->line, "%s '%s' is out of range: %llu to %llu%s",
		           o->name, v->text, (unsigned long long)o->min, (unsigned long long)o->max,
		           o->unlimited ? " or unlimited" : "");
	else
		*(uint64_t *)v->field = num;
	return 0;
}

/* A keyword of the option's list, or -1 reported. */
static int
keyword(const struct conv *v, unsigned *w)
{
	char words[256];

	if (parse_word(v->o->words, v->text, w) == 0)
		return 0;
	words_list(v->o->words, words, sizeof(words));
	diag_error(v->L->d, v->L->file, v->line, "bad %s '%s': one of %s", v->o->name, v->text,
	           words);
	return -1;
}

static int
conv_enum(const struct conv *v)
{
	unsigned w;

	if (keyword(v, &w) == 0)
		*(unsigned *)v->field = w;
	return 0;
}

static int
conv_flags(const struct conv *v)
{
	unsigned w;

	if (v->i == 0)
		*(unsigned *)v->field = 0;
	if (keyword(v, &w) < 0)
		return 0;
	if (word_eq(v->text, "none") && v->n > 1)
		diag_error(v->L->d, v->L->file, v->line, "%s 'none' must stand alone", v->o->name);
	else
		*(unsigned *)v->field |= w;
	return 0;
}

static int
conv_binding(const struct conv *v)
{
	struct connector *k = v->k;
	struct endpoint ep;
	char err[256];

	if (endpoint_parse(v->text, &ep, err, sizeof(err)) < 0) {
		diag_error(v->L->d, v->L->file, v->line, "bad binding '%s': %s", v->text, err);
		return 0;
	}
	for (size_t j = 0; j < k->n_bindings; j++) {
		if (ipaddr_equal(&k->bindings[j].addr, &ep.addr) &&
		    k->bindings[j].port == ep.port) {
			diag_warn(v->L->d, v->L->file, v->line, "binding '%s' is listed twice",
			          v->text);
			return 0;
		}
	}
	if (VEC_RESERVE(k->bindings, v->L->bindings_cap, k->n_bindings + 1) < 0)
		return -1;
	k->bindings[k->n_bindings++] = ep;
	return 0;
}

static int
conv_range(const struct conv *v)
{
	char path[4096];

	if (v->text[0] != '@')
		return add_range(v->L, v->k, v->text, v->L->file, v->line);
	/* a provider preset: its file, read like a ranges file */
	if (providers_find(v->text + 1, path, sizeof(path)) < 0) {
		char hint[512];
		bool near = providers_suggest(v->text, hint, sizeof(hint)) == 0;
		diag_error(
		        v->L->d, v->L->file, v->line,
		        "unknown provider preset '%s'%s%s%s (in %s; `mxgate providers` lists them)",
		        v->text, near ? ": did you mean " : "", near ? hint : "", near ? "?" : "",
		        providers_dir());
		return 0;
	}
	return load_ranges_file(v->L, v->k, "provider preset", path, v->line);
}

static int
conv_domain(const struct conv *v)
{
	struct config *c = v->L->c;
	char *dom;

	if (!valid_domain(v->text, true)) {
		diag_error(v->L->d, v->L->file, v->line,
		           "bad accepted domain '%s': write a domain name such as example.com or "
		           "*.example.com",
		           v->text);
		return 0;
	}
	if (!(dom = strdup(v->text)))
		return -1;
	for (char *q = dom; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	if (VEC_RESERVE(c->accepted_domains, v->L->accepted_domains_cap,
	                c->n_accepted_domains + 1) < 0) {
		free(dom);
		return -1;
	}
	c->accepted_domains[c->n_accepted_domains++] = dom;
	return 0;
}

/* K_SERVERS and K_SUFFIXES fill a `char **list; size_t n_list;` pair of members */
_Static_assert(offsetof(struct config, n_resolvers) ==
                       offsetof(struct config, resolvers) + sizeof(char **),
               "resolvers and n_resolvers are a pair");
_Static_assert(offsetof(struct connector, n_hostname_suffixes) ==
                       offsetof(struct connector, hostname_suffixes) + sizeof(char **),
               "hostname_suffixes and n_hostname_suffixes are a pair");

/* K_SERVERS: each value was checked by check_endpoint */
static int
conv_servers(const struct conv *v)
{
	char ***list = (char ***)(void *)v->field;
	size_t *n = (size_t *)(void *)(v->field + sizeof(char **));
	char **grown;

	if (!(grown = realloc(*list, (*n + 1) * sizeof(char *))))
		return -1;
	*list = grown;
	return (grown[*n] = strdup(v->text)) ? (++*n, 0) : -1;
}

static int add_preset_suffixes(const struct conv *v);

/* K_SUFFIXES: "example.com", ".example.com" (the same) or "@preset". */
static int
conv_suffix(const struct conv *v)
{
	char buf[256];
	const char *t = v->text;
	struct conv one = *v;

	if (t[0] == '@')
		return add_preset_suffixes(v);
	if (t[0] == '.')
		t++;
	if (!valid_domain(t, false)) {
		diag_error(v->L->d, v->L->file, v->line,
		           "bad remote-hostname-suffixes entry '%s': write a DNS suffix such as "
		           "pphosted.com, or @PRESET",
		           v->text);
		return 0;
	}
	snprintf(buf, sizeof(buf), "%s", t);
	for (char *q = buf; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	one.text = buf;
	one.i = 1;
	return conv_servers(&one);
}

/* "@NAME": the preset's hostname-suffixes; one that documents none is an error. */
static int
add_preset_suffixes(const struct conv *v)
{
	char path[4096], err[512];
	struct provider *p;
	int rc = 0;

	if (providers_find(v->text + 1, path, sizeof(path)) < 0) {
		diag_error(v->L->d, v->L->file, v->line,
		           "unknown provider preset '%s' (in %s; `mxgate providers` lists them)",
		           v->text, providers_dir());
		return 0;
	}
	if (!(p = providers_load(path, err, sizeof(err)))) {
		diag_error(v->L->d, v->L->file, v->line, "provider preset '%s': %s", v->text, err);
		return 0;
	}
	if (p->hostnames.n_names == 0)
		diag_error(v->L->d, v->L->file, v->line,
		           "provider preset '%s' documents no hostname suffixes (its "
		           "hostname-suffixes: none documented); name the suffixes yourself or "
		           "use tls-sender-certificate-name",
		           v->text);
	for (size_t i = 0; i < p->hostnames.n_names && rc == 0; i++) {
		struct conv one = *v;
		one.text = p->hostnames.names[i];
		one.i = 1;
		rc = conv_servers(&one);
	}
	providers_free(p);
	return rc;
}

static int (*const converters[])(const struct conv *) = {
        [K_STR] = conv_str,          [K_PATH] = conv_path,    [K_PATHS] = conv_paths,
        [K_BOOL] = conv_bool,        [K_SIZE] = conv_number,  [K_DURATION] = conv_number,
        [K_COUNT] = conv_number,     [K_ENUM] = conv_enum,    [K_FLAGS] = conv_flags,
        [K_BINDINGS] = conv_binding, [K_RANGES] = conv_range, [K_DOMAINS] = conv_domain,
};

/* The converter of a kind; the kinds after K_DOMAINS are dispatched here. */
static int (*converter(enum kind k))(const struct conv *)
{
	return k == K_SERVERS ? conv_servers : k == K_SUFFIXES ? conv_suffix : converters[k];
}

/* Converts and stores one option's values (or its default); reports bad ones.  Returns -1
 * only when out of memory. */
static int
apply(struct loader *L, const struct option *o, const struct given *g, void *base,
      struct connector *k)
{
	bool list = is_list_kind(o->kind);
	char err[512];

	if (!list && g->n == 0 && !o->def)
		return 0;
	for (size_t i = 0; i < (list ? g->n : 1); i++) {
		const struct conf_value *val = g->n ? g->v[list ? i : 0] : NULL;
		struct conv v = {L,
		                 o,
		                 val ? val->text : o->def,
		                 val ? val->line : 0,
		                 (char *)base + o->off,
		                 k,
		                 i,
		                 g->n};
		if (o->check && val && o->check(L, v.text, err, sizeof(err)) < 0) {
			diag_error(L->d, L->file, v.line, "bad %s: %s", o->name, err);
			continue;
		}
		if (converter(o->kind)(&v) < 0)
			return -1;
	}
	return 0;
}

static int
apply_section(struct loader *L, const struct givens *G, enum section sec, void *base,
              struct connector *k)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (options[i].sec != sec)
			continue;
		/* ranges files are read after the inline ranges */
		if (options[i].kind == K_PATHS)
			continue;
		if (apply(L, &options[i], &G->g[i], base, k) < 0)
			return -1;
	}
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].sec == sec && options[i].kind == K_PATHS &&
		    apply(L, &options[i], &G->g[i], base, k) < 0)
			return -1;
	/* what was written, for `mxgate config` */
	uint64_t *given = sec == SEC_CONNECTOR ? k->given : sec == SEC_DOMAIN ? NULL : L->c->given;
	for (size_t i = 0; given && i < N_OPTIONS; i++)
		if (options[i].sec == sec && G->g[i].line)
			given[i / 64] |= (uint64_t)1 << (i % 64);
	return 0;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct recipients_read {
	struct loader *L;
	struct domain_conf *dc;
	const char *file;
	size_t cap;
};

static int
recipient_line_cb(char *line, size_t len, int lineno, void *arg)
{
	struct recipients_read *R = arg;
	struct domain_conf *dc = R->dc;
	char *p = line, *end, *at;

	(void)len;
	if ((end = strchr(p, '#')))
		*end = '\0';
	p[strcspn(p, "\r")] = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (!*p)
		return 0;
	if ((at = strrchr(p, '@'))) {
		if (strcasecmp(at + 1, dc->name) != 0) {
			diag_error(R->L->d, R->file, lineno,
			           "'%s' is not in domain %s; list only its local parts", p,
			           dc->name);
			return 0;
		}
		*at = '\0';
	}
	if (!*p || strlen(p) > 64 || strpbrk(p, " \t\"<>")) {
		diag_error(R->L->d, R->file, lineno, "'%s' is not a local part", p);
		return 0;
	}
	if (VEC_RESERVE(dc->recipients, R->cap, dc->n_recipients + 1) < 0)
		return -1;
	for (char *q = p; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	if (!(dc->recipients[dc->n_recipients] = strdup(p)))
		return -1;
	dc->n_recipients++;
	return 0;
}

/* Reads a recipients-file: one local part (or local@domain of this domain) a line. */
static int
load_recipients(struct loader *L, struct domain_conf *dc, int cfgline)
{
	struct recipients_read R = {L, dc, intern_file(L, dc->recipients_file), 0};

	/* non-NULL even when empty: the domain has a recipients-file */
	if (!R.file || VEC_RESERVE(dc->recipients, R.cap, 1) < 0)
		return -1;
	if (read_side_file(L, "recipients-file", dc->recipients_file, cfgline, NULL,
	                   recipient_line_cb, &R) < 0)
		return -1;
	qsort(dc->recipients, dc->n_recipients, sizeof(*dc->recipients), str_cmp);
	return 0;
}

static void connector_rules(struct loader *L, const struct givens *G, struct connector *k);
static void connector_warnings(struct loader *L, const struct givens *G, const struct connector *k);

/* The values of connector section cs, with Exchange's usage presets applied. */
static int
connector_values(struct loader *L, const struct conf_node *cs, const struct givens *G,
                 struct connector *k)
{
	char err[256];

	k->at = (struct origin){L->file, cs->line};
	L->ranges_cap = 0; /* k->ranges and k->bindings start empty */
	L->bindings_cap = 0;
	if (!(k->name = strdup(cs->title ? cs->title : "")))
		return -1;
	if (!*k->name || strlen(k->name) > CONNECTOR_NAME_MAX ||
	    check_name_text(L, k->name, err, sizeof(err)) < 0)
		diag_error(L->d, L->file, k->at.line,
		           "connector name '%s' must be 1 to %d printable characters", k->name,
		           CONNECTOR_NAME_MAX);
	if (apply_section(L, G, SEC_CONNECTOR, k, k) < 0)
		return -1;

	/* usage presets (Exchange's New-ReceiveConnector -Usage) */
	unsigned preset_auth = AUTH_TLS, preset_perm = 0;
	switch (k->usage) {
	case USAGE_INTERNET:
		preset_perm = PERM_ANONYMOUS_USERS;
		break;
	case USAGE_PARTNER:
		preset_perm = PERM_PARTNERS;
		break;
	case USAGE_INTERNAL:
		preset_perm = PERM_EXCHANGE_SERVERS;
		break;
	case USAGE_CUSTOM:
		preset_auth = AUTH_NONE;
		break;
	case USAGE_CLIENT:
		diag_error(L->d, L->file, opt_line(G, SEC_CONNECTOR, "usage", k->at.line),
		           "usage 'client' needs authenticated submission (AUTH), which mxgate "
		           "does not offer; use 'internet', 'partner', 'internal' or 'custom'");
		break;
	}
	if (!opt_given(G, SEC_CONNECTOR, "auth-mechanism"))
		k->auth_mechanisms = preset_auth;
	if (!opt_given(G, SEC_CONNECTOR, "permission-groups"))
		k->permission_groups = preset_perm;
	if (!opt_given(G, SEC_CONNECTOR, "bare-line-feed"))
		k->bare_line_feed = k->usage == USAGE_INTERNAL ? BARE_LF_NORMALIZE : BARE_LF_REJECT;
	k->all_remote = !opt_given(G, SEC_CONNECTOR, "remote-ip-ranges") &&
	                !opt_given(G, SEC_CONNECTOR, "remote-ip-ranges-file");
	if (!k->fqdn && !(k->fqdn = strdup(L->c->hostname)))
		return -1;
	if (!k->banner && asprintf(&k->banner, "220 %s ESMTP ready", k->fqdn) < 0) {
		k->banner = NULL;
		return -1;
	}
	return 0;
}

/* tls-sender-certificate-name implies require-tls, which needs tls. */
static void
connector_certificate_rules(struct loader *L, const struct givens *G, struct connector *k)
{
	if (!k->tls_sender_certificate_name)
		return;
	int line = opt_line(G, SEC_CONNECTOR, "tls-sender-certificate-name", k->at.line);
	if (!(k->auth_mechanisms & AUTH_TLS))
		diag_error(L->d, L->file, line,
		           "tls-sender-certificate-name needs 'tls' in auth-mechanism (the client "
		           "proves its name with a certificate at STARTTLS)");
	else if (opt_given(G, SEC_CONNECTOR, "require-tls") && !k->require_tls)
		diag_warn(L->d, L->file, opt_line(G, SEC_CONNECTOR, "require-tls", line),
		          "require-tls = false has no effect: tls-sender-certificate-name implies "
		          "require-tls");
	k->require_tls = true;
}

/* Exchange's AuthMechanism rules and the connector's own consistency. */
static void
connector_rules(struct loader *L, const struct givens *G, struct connector *k)
{
	int aline = opt_line(G, SEC_CONNECTOR, "auth-mechanism", k->at.line);
	if ((k->auth_mechanisms & AUTH_EXTERNAL_AUTHORITATIVE)) {
		if (!(k->auth_mechanisms & AUTH_TLS))
			diag_error(
			        L->d, L->file, aline,
			        "auth-mechanism external-authoritative must be combined with tls");
		if (!(k->permission_groups & PERM_EXCHANGE_SERVERS))
			diag_error(
			        L->d, L->file, aline,
			        "auth-mechanism external-authoritative requires permission-groups "
			        "exchange-servers");
	}
	if (k->require_tls && !(k->auth_mechanisms & AUTH_TLS))
		diag_error(L->d, L->file, opt_line(G, SEC_CONNECTOR, "require-tls", k->at.line),
		           "require-tls needs 'tls' in auth-mechanism");
	connector_certificate_rules(L, G, k);
	if ((k->auth_mechanisms & AUTH_TLS) && !L->c->tls_certificate)
		diag_error(L->d, L->file,
		           opt_given(G, SEC_CONNECTOR, "auth-mechanism") ? aline : k->at.line,
		           "connector '%s' offers tls%s but there is no tls { certificate = ...; "
		           "key = ... } section",
		           k->name,
		           opt_given(G, SEC_CONNECTOR, "auth-mechanism") ? ""
		                                                         : " (from its usage)");
	if (k->verify_recipients && !L->c->relay)
		diag_warn(L->d, L->file,
		          opt_line(G, SEC_CONNECTOR, "verify-recipients", k->at.line),
		          "verify-recipients needs deliver { relay = ... }: with Maildir delivery "
		          "recipients are not verified");
	if (k->connection_timeout_ms <= k->connection_inactivity_timeout_ms)
		diag_error(L->d, L->file,
		           opt_line(G, SEC_CONNECTOR, "connection-timeout", k->at.line),
		           "connection-timeout (%llus) must be above connection-inactivity-timeout "
		           "(%llus)",
		           (unsigned long long)k->connection_timeout_ms / 1000,
		           (unsigned long long)k->connection_inactivity_timeout_ms / 1000);
	if (k->enabled && k->n_bindings == 0 && !opt_given(G, SEC_CONNECTOR, "bindings"))
		diag_error(L->d, L->file, k->at.line,
		           "connector '%s' has no bindings (e.g. bindings = { \"0.0.0.0:25\" })",
		           k->name);
}

/* Whom connector k lets in when it takes a whole address family, for the warnings; NULL
 * when it does not.  The first such range listed is noted by add_range(): a million
 * ranges are not walked again. */
static const char *
open_to(const struct connector *k)
{
	return k->all_remote                ? "every IPv4 and IPv6 address"
	       : k->open_family == AF_INET  ? "every IPv4 address"
	       : k->open_family == AF_INET6 ? "every IPv6 address"
	                                    : NULL;
}

/* Where a connector open to every address is warned: its opening line when it lists no
 * range, else its remote-ip-ranges. */
static int
open_line(const struct givens *G, const struct connector *k)
{
	return k->all_remote ? k->at.line
	                     : opt_line(G, SEC_CONNECTOR, "remote-ip-ranges", k->at.line);
}

/* What is allowed but most likely a mistake. */
static void
connector_warnings(struct loader *L, const struct givens *G, const struct connector *k)
{
	if (k->enabled && k->permission_groups == 0)
		diag_warn(L->d, L->file, k->at.line,
		          "connector '%s' has no permission group: it accepts no mail (every MAIL "
		          "gets 530 5.7.1)",
		          k->name);
	/* the warnings below are for an enabled connector open to every address */
	const char *open = k->enabled ? open_to(k) : NULL;
	if (open && (k->permission_groups & (PERM_ANONYMOUS_USERS | PERM_PARTNERS)))
		diag_warn(L->d, L->file, open_line(G, k),
		          "connector '%s' lets %s senders in from %s: this opens the server to "
		          "anyone; list your filtering service's ranges in remote-ip-ranges",
		          k->name,
		          k->permission_groups & PERM_ANONYMOUS_USERS ? "anonymous" : "partner",
		          open);
	/* worse than the above: exchange-servers may relay to any domain */
	if (open && (k->permission_groups & PERM_EXCHANGE_SERVERS))
		diag_warn(L->d, L->file, open_line(G, k),
		          "connector '%s' lets %s relay to any domain (exchange-servers): this is "
		          "an open relay; list the servers it serves in remote-ip-ranges",
		          k->name, open);
	/* behind balancers, a connector anyone may reach directly bypasses them */
	if (open && L->c->n_proxy_from && k->n_bindings)
		diag_warn(L->d, L->file, open_line(G, k),
		          "proxy-protocol-from is set, yet connector '%s' takes %s: any client may "
		          "connect to its bindings directly, past the balancers; list the clients "
		          "it serves in remote-ip-ranges and let only the balancers reach the port "
		          "(mxgate firewall)",
		          k->name, open);
	if (k->enabled && !k->all_remote && k->n_bindings) {
		bool v4b = false, v6b = false, v4r = false, v6r = false;
		for (size_t i = 0; i < k->n_bindings; i++) {
			if (k->bindings[i].addr.family == AF_INET)
				v4b = true;
			else
				v6b = true;
		}
		for (size_t i = 0; i < k->n_ranges && !(v4r && v6r); i++) {
			if (k->ranges[i].r.family == AF_INET)
				v4r = true;
			else
				v6r = true;
		}
		if ((v4r && !v4b) || (v6r && !v6b))
			diag_warn(L->d, L->file, opt_line(G, SEC_CONNECTOR, "bindings", k->at.line),
			          "connector '%s' lists %s ranges but has no %s binding: those "
			          "clients can never reach it",
			          k->name, v4r && !v4b ? "IPv4" : "IPv6",
			          v4r && !v4b ? "IPv4" : "IPv6");
		for (size_t i = 0; i < k->n_bindings; i++) {
			bool v4 = k->bindings[i].addr.family == AF_INET;
			char ep[ENDPOINT_STRLEN];
			if (v4 ? v4r : v6r)
				continue;
			endpoint_format(&k->bindings[i], ep, sizeof(ep));
			diag_warn(L->d, L->file, opt_line(G, SEC_CONNECTOR, "bindings", k->at.line),
			          "connector '%s' has no %s range: binding %s takes no client",
			          k->name, v4 ? "IPv4" : "IPv6", ep);
		}
	}
}

static int
load_connector(struct loader *L, const struct conf_node *cs, struct connector *k)
{
	struct givens *G = malloc(sizeof(*G));
	int rc = -1;

	if (!G)
		return -1;
	if (collect(L, cs, SEC_CONNECTOR, G) == 0 && connector_values(L, cs, G, k) == 0) {
		connector_rules(L, G, k);
		connector_warnings(L, G, k);
		rc = 0;
	}
	givens_release(G);
	free(G);
	return rc;
}

/* The top level's sections: tls and deliver at most once each, the others in file order. */
struct sections {
	const struct conf_node *tls, *deliver;
	const struct conf_node **connectors, **domains;
	size_t n_connectors, n_domains, connectors_cap, domains_cap;
};

static int
find_sections(struct loader *L, const struct conf_node *root, struct sections *S)
{
	for (size_t i = 0; i < root->n_children; i++) {
		const struct conf_node *n = &root->children[i];
		const struct conf_node **once = NULL;
		const char *best;
		if (n->kind != CONF_SECTION)
			continue;
		if (strcmp(n->name, "tls") == 0)
			once = &S->tls;
		else if (strcmp(n->name, "deliver") == 0)
			once = &S->deliver;
		if (once && *once) {
			diag_error(L->d, L->file, n->line,
			           "the %s section is given twice (first on line %d); write one",
			           n->name, (*once)->line);
		} else if (once) {
			*once = n;
		} else if (strcmp(n->name, "connector") == 0) {
			if (VEC_RESERVE(S->connectors, S->connectors_cap, S->n_connectors + 1) < 0)
				return -1;
			S->connectors[S->n_connectors++] = n;
		} else if (strcmp(n->name, "domain") == 0) {
			if (VEC_RESERVE(S->domains, S->domains_cap, S->n_domains + 1) < 0)
				return -1;
			S->domains[S->n_domains++] = n;
		} else if (find_option(SEC_ROOT, n->name)) {
			diag_error(L->d, L->file, n->line, "syntax error: write %s = VALUE",
			           n->name);
		} else if ((best = closest_key(SEC_ROOT, n->name, 3))) {
			diag_error(L->d, L->file, n->line,
			           "unknown section '%s' in the top level (did you mean '%s'?)",
			           n->name, best);
		} else {
			diag_error(L->d, L->file, n->line, "unknown section '%s' in the top level",
			           n->name);
		}
	}
	return 0;
}

/* Compiles proxy-protocol-from (one owner: ranges may overlap freely). */
static int
build_proxy_set(struct config *c)
{
	struct rangeset_entry *e;

	if (!c->n_proxy_from)
		return 0;
	if (!(e = calloc(c->n_proxy_from, sizeof(*e))))
		return -1;
	for (size_t i = 0; i < c->n_proxy_from; i++)
		e[i] = (struct rangeset_entry){.r = c->proxy_from[i].r, .owner = 0, .prio = 0};
	c->proxy_set = rangeset_build(e, c->n_proxy_from, NULL, NULL);
	free(e);
	return c->proxy_set ? 0 : -1;
}

bool
connector_takes_all(const struct connector *k, int family)
{
	if (k->all_remote)
		return true;
	for (size_t i = 0; i < k->n_ranges; i++)
		if (k->ranges[i].r.family == family && range_is_all(&k->ranges[i].r))
			return true;
	return false;
}

bool
config_proxy_from(const struct config *c, const struct ipaddr *a)
{
	return c->proxy_set && rangeset_lookup(c->proxy_set, a) != RANGESET_NONE;
}

/* The top-level values, with the host name's default. */
static int
load_root(struct loader *L, const struct givens *G)
{
	struct config *c = L->c;
	/* proxy-protocol-from: ranges like a connector's, collected in one that is not */
	struct connector balancers = {0};

	L->ranges_cap = 0;
	int rc = apply_section(L, G, SEC_ROOT, c, &balancers);
	c->proxy_from = balancers.ranges;
	c->n_proxy_from = balancers.n_ranges;
	if (rc < 0 || build_proxy_set(c) < 0)
		return -1;
	for (size_t i = 0; i < c->n_proxy_from; i++)
		if (range_is_all(&c->proxy_from[i].r))
			diag_warn(L->d, c->proxy_from[i].at.file, c->proxy_from[i].at.line,
			          "proxy-protocol-from takes every %s address: any such client may "
			          "send a PROXY header and claim any address; list only the "
			          "balancers",
			          c->proxy_from[i].r.family == AF_INET ? "IPv4" : "IPv6");
	if (!c->hostname) {
		char host[256] = "localhost";
		if (gethostname(host, sizeof(host) - 1) < 0 || !valid_domain(host, false))
			snprintf(host, sizeof(host), "localhost");
		if (!(c->hostname = strdup(host)))
			return -1;
	}
	return 0;
}

static int
load_tls(struct loader *L, const struct givens *G)
{
	struct config *c = L->c;
	int key_line = opt_line(G, SEC_TLS, "key", G->line);
	struct stat st;

	if (apply_section(L, G, SEC_TLS, c, NULL) < 0)
		return -1;
	if (!c->tls_certificate)
		diag_error(L->d, L->file, G->line, "the tls section needs a certificate");
	if (!c->tls_key)
		diag_error(L->d, L->file, G->line, "the tls section needs a key");
	c->tls_at = (struct origin){L->file, opt_line(G, SEC_TLS, "certificate", G->line)};
	if (opt_given(G, SEC_TLS, "client-ca-file"))
		c->tls_client_ca_line = opt_line(G, SEC_TLS, "client-ca-file", G->line);
	if (c->tls_certificate)
		readable_file(L, "certificate", c->tls_certificate, c->tls_at.line);
	if (c->tls_key && readable_file(L, "key", c->tls_key, key_line)) {
		/* fstat() of what sidefile opens: after the privilege drop the key's directory
		 * may be root's alone, and the descriptor comes from the privileged reader */
		int fd = sidefile_open(c->tls_key, O_NONBLOCK);
		if (fd < 0 || fstat(fd, &st) < 0)
			diag_error(L->d, L->file, key_line, "cannot read key %s: %s", c->tls_key,
			           strerror(errno));
		else if (st.st_mode & 077)
			diag_error(L->d, L->file, key_line,
			           "key %s is readable by group or others (mode %04o); "
			           "run: chmod 600 %s",
			           c->tls_key, (unsigned)(st.st_mode & 07777), c->tls_key);
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

/* deliver { } (G->line is 0 when the section is absent) and the default maildir. */
static int
load_deliver(struct loader *L, const struct givens *G, const struct givens *root)
{
	struct config *c = L->c;

	if (G->line && apply_section(L, G, SEC_DELIVER, c, NULL) < 0)
		return -1;
	if (c->relay_ca_file)
		readable_file(L, "relay-ca-file", c->relay_ca_file,
		              opt_line(G, SEC_DELIVER, "relay-ca-file", G->line));
	if (c->relay) {
		const char *colon = strrchr(c->relay, ':');
		const char *h = c->relay;
		size_t hl = colon ? (size_t)(colon - h) : 0;
		if (colon && h[0] == '[' && hl >= 2) {
			h++;
			hl -= 2;
		}
		if (colon && !(c->relay_host = strndup(h, hl)))
			return -1;
		if (colon)
			c->relay_port = (uint16_t)strtoul(colon + 1, NULL, 10);
	}
	if (c->relay_tls_verify && c->relay_tls == RELAY_TLS_NONE)
		diag_warn(L->d, L->file, G->line,
		          "relay-tls-verify has no effect with relay-tls = none");
	if (c->maildir) {
		check_maildir_template(L, c->maildir, opt_line(G, SEC_DELIVER, "maildir", G->line),
		                       NULL);
	} else if (!opt_given(G, SEC_DELIVER, "maildir") && c->spool) {
		if (!(c->maildir = default_maildir(c->spool)))
			return -1;
		if (!c->relay)
			check_maildir_template(L, c->maildir, opt_line(root, SEC_ROOT, "spool", 0),
			                       c->spool);
	}
	return 0;
}

static int
load_domain(struct loader *L, const struct conf_node *sec, struct domain_conf *dc, struct givens *G)
{
	struct config *c = L->c;

	dc->at = (struct origin){L->file, sec->line};
	if (!(dc->name = strdup(sec->title ? sec->title : "")))
		return -1;
	for (char *q = dc->name; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	if (!valid_domain(dc->name, false))
		diag_error(L->d, L->file, dc->at.line,
		           "bad domain section '%s': write a domain name such as example.com",
		           dc->name);
	for (size_t j = 0; j + 1 < c->n_domains; j++)
		if (strcmp(c->domains[j].name, dc->name) == 0)
			diag_error(L->d, L->file, dc->at.line,
			           "domain '%s' is defined twice (first on line %d)", dc->name,
			           c->domains[j].at.line);
	if (collect(L, sec, SEC_DOMAIN, G) < 0 || apply_section(L, G, SEC_DOMAIN, dc, NULL) < 0)
		return -1;
	if (dc->recipients_file &&
	    load_recipients(L, dc, opt_line(G, SEC_DOMAIN, "recipients-file", dc->at.line)) < 0)
		return -1;
	return 0;
}

static int
load_connectors(struct loader *L, const struct sections *S)
{
	struct config *c = L->c;
	size_t n = S->n_connectors;

	if (n == 0)
		diag_error(L->d, L->file, 0,
		           "no connector is defined: mxgate would accept no connection");
	if (n > RANGESET_MAX_OWNERS) {
		diag_error(L->d, L->file, 0, "too many connectors (%zu; at most %u)", n,
		           (unsigned)RANGESET_MAX_OWNERS);
		return 0;
	}
	if (!(c->connectors = calloc(n ? n : 1, sizeof(*c->connectors))))
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct connector *k = &c->connectors[i];
		k->index = (unsigned)i;
		c->n_connectors++;
		if (load_connector(L, S->connectors[i], k) < 0)
			return -1;
		for (size_t j = 0; j < i; j++) {
			const struct connector *o = &c->connectors[j];
			if (strcmp(o->name, k->name) == 0)
				diag_error(L->d, L->file, k->at.line,
				           "connector '%s' is defined twice (first on line %d)",
				           k->name, o->at.line);
			else if (strcasecmp(o->name, k->name) == 0)
				diag_error(L->d, L->file, k->at.line,
				           "connector name '%s' is already used on line %d (names "
				           "are compared ignoring case)",
				           k->name, o->at.line);
		}
	}
	size_t enabled = 0;
	for (size_t i = 0; i < c->n_connectors; i++)
		enabled += c->connectors[i].enabled;
	if (c->n_connectors && !enabled)
		diag_warn(
		        L->d, L->file, 0,
		        "every connector is disabled (enabled = false): mxgate would open no port "
		        "and take no mail");
	return 0;
}

/* The CAs of client certificates: checked like the key (read through sidefile, so the
 * privileged reader hands them over), defaulting to the system's store, and only when a
 * connector needs them. */
static int
load_client_ca(struct loader *L)
{
	struct config *c = L->c;
	const struct connector *need = NULL;

	for (size_t i = 0; i < c->n_connectors && !need; i++)
		if (c->connectors[i].enabled && c->connectors[i].tls_sender_certificate_name)
			need = &c->connectors[i];
	if (!need) {
		free(c->tls_client_ca_file);
		c->tls_client_ca_file = NULL;
		return 0;
	}
	if (!c->tls_client_ca_file && !(c->tls_client_ca_file = strdup(CONFIG_SYSTEM_CA_FILE)))
		return -1;
	readable_file(L, "client-ca-file", c->tls_client_ca_file,
	              c->tls_client_ca_line ? c->tls_client_ca_line : need->at.line);
	return 0;
}

/* The directories run opens or makes, judged by what stat() can see now (a path not there
 * yet is made by run; one this user may not look into is left to run): the refusals run
 * would meet at start, said here with their line, by check and at a reload too. */
static void
check_directory(struct loader *L, const char *what, const char *path, int line,
                bool others_may_write)
{
	struct stat st;

	if (!path || !*path || stat(path, &st) < 0)
		return;
	if (!S_ISDIR(st.st_mode))
		diag_error(L->d, L->file, line,
		           "%s %s is not a directory; point %s at a directory (mxgate makes it "
		           "when it does not exist)",
		           what, path, what);
	else if (!others_may_write && (st.st_mode & S_IWOTH))
		diag_error(L->d, L->file, line,
		           "%s %s is writable by every user; chmod o-w it (mxgate's files there "
		           "must be its own)",
		           what, path);
}

static int
load_sections(struct loader *L, const struct sections *S, struct givens *root, struct givens *G)
{
	struct config *c = L->c;

	if (S->tls && (collect(L, S->tls, SEC_TLS, G) < 0 || load_tls(L, G) < 0))
		return -1;
	givens_release(G);
	if (S->deliver && collect(L, S->deliver, SEC_DELIVER, G) < 0)
		return -1;
	if (load_deliver(L, G, root) < 0)
		return -1;
	if (!(c->domains = calloc(S->n_domains ? S->n_domains : 1, sizeof(*c->domains))))
		return -1;
	for (size_t i = 0; i < S->n_domains; i++) {
		givens_release(G);
		c->n_domains++;
		if (load_domain(L, S->domains[i], &c->domains[i], G) < 0)
			return -1;
	}
	if (c->n_accepted_domains == 0 && c->n_domains == 0)
		diag_warn(L->d, L->file, 0,
		          "no accepted-domains: anonymous and partner senders can deliver to no "
		          "one");
	if (load_connectors(L, S) < 0)
		return -1;
	check_directory(L, "spool", c->spool, opt_line(root, SEC_ROOT, "spool", 0), true);
	check_directory(L, "protocol-log-directory", c->protocol_log_directory,
	                opt_line(root, SEC_ROOT, "protocol-log-directory", 0), false);
	return load_client_ca(L);
}

/* The connectors as the selector takes them (selector.h copies the array). */
static int
build_selector(struct loader *L)
{
	struct config *c = L->c;
	struct selector_input *in = calloc(c->n_connectors ? c->n_connectors : 1, sizeof(*in));

	if (!in)
		return -1;
	for (size_t i = 0; i < c->n_connectors; i++) {
		const struct connector *k = &c->connectors[i];
		in[i] = (struct selector_input){k->name,       k->at,       k->enabled,
		                                k->all_remote, k->bindings, k->n_bindings,
		                                k->ranges,     k->n_ranges};
	}
	c->selector = selector_build(in, c->n_connectors, L->d);
	free(in);
	return c->selector ? 0 : -1;
}

static int
load_snapshot(struct loader *L, const struct conf_node *root)
{
	struct givens *top = calloc(2, sizeof(*top)), *G = top + 1;
	struct sections S = {0};
	int rc = -1;

	if (!top)
		return -1;
	if (find_sections(L, root, &S) < 0 || collect(L, root, SEC_ROOT, top) < 0 ||
	    load_root(L, top) < 0 || load_sections(L, &S, top, G) < 0)
		goto out;
	rc = build_selector(L);
out:
	givens_release(top);
	givens_release(G);
	free(top);
	free(S.connectors);
	free(S.domains);
	return rc;
}

static void
config_free(struct config *c)
{
	if (!c)
		return;
	selector_free(c->selector);
	rangeset_free(c->proxy_set);
	free(c->proxy_from);
	for (size_t i = 0; i < c->n_connectors; i++) {
		struct connector *k = &c->connectors[i];
		free(k->name);
		free(k->bindings);
		free(k->ranges);
		free(k->banner);
		free(k->tls_sender_certificate_name);
		free(k->fqdn);
		for (size_t j = 0; j < k->n_hostname_suffixes; j++)
			free(k->hostname_suffixes[j]);
		free(k->hostname_suffixes);
	}
	for (size_t i = 0; i < c->n_resolvers; i++)
		free(c->resolvers[i]);
	free(c->resolvers);
	free(c->connectors);
	for (size_t i = 0; i < c->n_domains; i++) {
		struct domain_conf *dc = &c->domains[i];
		for (size_t j = 0; j < dc->n_recipients; j++)
			free(dc->recipients[j]);
		free(dc->recipients);
		free(dc->recipients_file);
		free(dc->name);
	}
	free(c->domains);
	for (size_t i = 0; i < c->n_accepted_domains; i++)
		free(c->accepted_domains[i]);
	free(c->accepted_domains);
	for (size_t i = 0; i < c->n_files; i++)
		free(c->files[i]);
	free(c->files);
	free(c->path);
	free(c->hostname);
	free(c->spool);
	free(c->protocol_log_directory);
	free(c->user);
	free(c->tls_certificate);
	free(c->tls_key);
	free(c->tls_client_ca_file);
	free(c->maildir);
	free(c->relay);
	free(c->relay_host);
	free(c->relay_ca_file);
	free(c->metrics_listen);
	free(c);
}

static const struct conf_section_syntax section_syntax[] = {
        {"tls", false}, {"deliver", false}, {"connector", true}, {"domain", true}};

/* The main file, whole, NUL-terminated; reported on failure.  The file must be a regular
 * file of a sane size first: reading a device or FIFO would never end. */
static char *
read_main_file(struct loader *L, size_t *len)
{
	struct sidefile_limits lim = {.max_size = SIDEFILE_DEFAULT_MAX_SIZE,
	                              .max_line = SIDEFILE_DEFAULT_MAX_LINE};
	struct sidefile_error serr;
	char *text;

	if (sidefile_slurp(L->c->path, &lim, &text, len, &serr) < 0) {
		diag_error(L->d, L->file, 0, "cannot read the configuration: %s", serr.text);
		return NULL;
	}
	return text;
}

/* Sets L->dir: the absolute directory of the main file. */
static int
set_dir(struct loader *L, const char *path)
{
	char *slash, *abs;

	if (!(L->dir = strdup(path)))
		return -1;
	if ((slash = strrchr(L->dir, '/')))
		slash[slash == L->dir ? 1 : 0] = '\0';
	else
		snprintf(L->dir, strlen(L->dir) + 1, ".");
	/* relative paths in the file stay valid whatever the daemon's working directory */
	if ((abs = realpath(L->dir, NULL))) {
		free(L->dir);
		L->dir = abs;
	}
	return 0;
}

struct config *
config_load(const char *path, struct diag *d)
{
	struct loader L = {.d = d};
	struct config *c = calloc(1, sizeof(*c));
	size_t errors0 = diag_errors(d), len = 0;
	struct conf_syntax_error serr;
	struct conf_node *root = NULL;
	char *text = NULL;
	int rc = -1;

	if (!c) { /* counted even when the message finds no memory either (diag.c) */
		diag_error(d, path, 0, "out of memory while loading the configuration");
		return NULL;
	}
	atomic_init(&c->refs, 1);
	L.c = c;
	if (!(c->path = strdup(path)) || !(L.file = intern_file(&L, path)) || set_dir(&L, path) < 0)
		goto out;
	rc = 0;
	if (!(text = read_main_file(&L, &len)))
		goto out;
	SHA256((const unsigned char *)text, len, c->sha256);
	/* a UTF-8 byte order mark (Notepad, PowerShell's Set-Content -Encoding utf8) is not
	 * part of the first key */
	size_t bom = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	if (len >= 2 && (memcmp(text, "\xff\xfe", 2) == 0 || memcmp(text, "\xfe\xff", 2) == 0)) {
		diag_error(d, L.file, 1,
		           "UTF-16 text (as Windows PowerShell's Out-File writes it): save it as "
		           "UTF-8 or ASCII (Out-File -Encoding ascii)");
		goto out;
	}
	root = conf_parse(text + bom, len - bom, section_syntax,
	                  sizeof(section_syntax) / sizeof(section_syntax[0]), &serr);
	if (!root && serr.line == 0)
		rc = -1;
	else if (!root)
		diag_error(d, L.file, serr.line, "%s", serr.text);
	else
		rc = load_snapshot(&L, root);
out:
	conf_node_free(root);
	free(text);
	free(L.dir);
	if (rc < 0)
		diag_error(d, path, 0, "out of memory while loading the configuration");
	if (rc < 0 || !root || diag_errors(d) > errors0) {
		config_free(c);
		return NULL;
	}
	return c;
}

char *
config_spool_of(const char *path)
{
	struct sidefile_limits lim = {.max_size = SIDEFILE_DEFAULT_MAX_SIZE,
	                              .max_line = SIDEFILE_DEFAULT_MAX_LINE};
	struct sidefile_error serr;
	struct conf_syntax_error perr;
	struct loader L = {0};
	const char *spool = NULL;
	char *text, *out = NULL;
	size_t len;

	if (sidefile_slurp(path, &lim, &text, &len, &serr) < 0)
		return NULL;
	size_t bom = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	struct conf_node *root =
	        conf_parse(text + bom, len - bom, section_syntax,
	                   sizeof(section_syntax) / sizeof(section_syntax[0]), &perr);
	free(text);
	if (!root)
		return NULL;
	for (size_t i = 0; i < root->n_children && !spool; i++) {
		const struct conf_node *n = &root->children[i];
		if (n->kind == CONF_ASSIGN && strcmp(n->name, "spool") == 0 && n->n_values == 1)
			spool = n->values[0].text;
	}
	for (size_t i = 0; i < N_OPTIONS && !spool; i++)
		if (options[i].sec == SEC_ROOT && strcmp(options[i].name, "spool") == 0)
			spool = options[i].def;
	if (spool && set_dir(&L, path) == 0)
		out = resolve_path(&L, spool);
	free(L.dir);
	conf_node_free(root);
	return out;
}

struct config *
config_load_compiled(const char *path, struct diag *d)
{
	struct config *c = config_load(path, d);

	if (!c)
		return NULL;
	selector_forget_ranges(c->selector);
	for (size_t i = 0; i < c->n_connectors; i++) {
		free(c->connectors[i].ranges);
		c->connectors[i].ranges = NULL;
	}
	return c;
}

struct config *
config_ref(struct config *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

void
config_unref(struct config *c)
{
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		config_free(c);
}

const struct connector *
config_connector(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->n_connectors; i++)
		if (strcmp(c->connectors[i].name, name) == 0)
			return &c->connectors[i];
	return NULL;
}

static const struct domain_conf *find_domain(const struct config *c, const char *domain,
                                             size_t len);

bool
config_accepts_domain(const struct config *c, const char *domain, size_t len)
{
	while (len > 0 && domain[len - 1] == '.')
		len--;
	if (find_domain(c, domain, len))
		return true;
	for (size_t i = 0; i < c->n_accepted_domains; i++) {
		const char *a = c->accepted_domains[i];
		size_t al = strlen(a);
		if (a[0] == '*') {
			/* "*.example.com": a proper subdomain of example.com */
			if (len > al - 1 &&
			    strncasecmp(domain + len - (al - 1), a + 1, al - 1) == 0)
				return true;
		} else if (al == len && strncasecmp(domain, a, len) == 0) {
			return true;
		}
	}
	return false;
}

static const struct domain_conf *
find_domain(const struct config *c, const char *domain, size_t len)
{
	for (size_t i = 0; i < c->n_domains; i++)
		if (strlen(c->domains[i].name) == len &&
		    strncasecmp(c->domains[i].name, domain, len) == 0)
			return &c->domains[i];
	return NULL;
}

int
config_recipient_known(const struct config *c, const char *domain, size_t dlen, const char *local,
                       size_t llen)
{
	const struct domain_conf *dc;
	char key[65];
	size_t lo, hi;

	while (dlen > 0 && domain[dlen - 1] == '.')
		dlen--;
	dc = find_domain(c, domain, dlen);
	if (!dc || !dc->recipients)
		return -1;
	if (llen >= sizeof(key))
		return 0;
	for (size_t i = 0; i < llen; i++)
		key[i] = (char)tolower((unsigned char)local[i]);
	key[llen] = '\0';
	lo = 0;
	hi = dc->n_recipients;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(dc->recipients[mid], key);
		if (r == 0)
			return 1;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static const char *
usage_name(enum usage u)
{
	for (const struct keyword *w = usage_words; w->name; w++)
		if (w->value == (unsigned)u)
			return w->name;
	return "?";
}

static void
flag_names(const struct keyword *w, unsigned bits, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (; w->name; w++)
		if (w->value && (bits & w->value) == w->value && len < size)
			len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "+" : "",
			                        w->name);
	if (!len)
		snprintf(buf, size, "none");
}

void
config_describe_connector(const struct connector *k, char *buf, size_t size)
{
	char auth[128], perm[128], binds[512] = "";
	size_t v4 = 0, v6 = 0, len = 0;

	for (size_t i = 0; i < k->n_ranges; i++) {
		if (k->ranges[i].r.family == AF_INET)
			v4++;
		else
			v6++;
	}
	for (size_t i = 0; i < k->n_bindings && len < sizeof(binds); i++) {
		char ep[ENDPOINT_STRLEN];
		endpoint_format(&k->bindings[i], ep, sizeof(ep));
		len += (size_t)snprintf(binds + len, sizeof(binds) - len, "%s%s", i ? " " : "", ep);
	}
	flag_names(auth_words, k->auth_mechanisms, auth, sizeof(auth));
	flag_names(perm_words, k->permission_groups, perm, sizeof(perm));
	char tail[CERTNAME_MAX + 96] = "";
	if (k->tls_sender_certificate_name)
		snprintf(tail, sizeof(tail), ", require-tls (implied), client certificate named %s",
		         k->tls_sender_certificate_name);
	else if (k->require_tls)
		snprintf(tail, sizeof(tail), ", require-tls");
	if (k->all_remote)
		snprintf(buf, size,
		         "connector \"%s\": %s%s, bindings %s, remote: every address, "
		         "auth %s, permissions %s%s",
		         k->name, usage_name(k->usage), k->enabled ? "" : " (disabled)", binds,
		         auth, perm, tail);
	else
		snprintf(buf, size,
		         "connector \"%s\": %s%s, bindings %s, remote: %zu range%s (%zu IPv4, %zu "
		         "IPv6), auth %s, permissions %s%s",
		         k->name, usage_name(k->usage), k->enabled ? "" : " (disabled)", binds,
		         k->n_ranges, k->n_ranges == 1 ? "" : "s", v4, v6, auth, perm, tail);
	len = strlen(buf);
	for (size_t i = 0; i < k->n_hostname_suffixes && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s",
		                        i ? " " : ", remote-hostname-suffixes ",
		                        k->hostname_suffixes[i]);
}

void
config_print_reference(FILE *fp)
{
	static const char *const heads[SEC_COUNT] = {
	        "Top level", "`tls { }`", "`deliver { }`", "`connector \"NAME\" { }`",
	        "`domain \"NAME\" { }` (an accepted domain with settings of its own)"};

	fprintf(fp, "# mxgate.conf reference\n\n"
	            "Generated by `mxgate reference` from the option table in src/conf/config.c.\n"
	            "Syntax: `key = value`, `key = { a, b }`, `key += { c }` or `key += c`, "
	            "`section { }`, `connector \"NAME\" { }`; values are words or "
	            "`\"quoted\"` (with `\\\"`, `\\\\`, `\\n`, `\\t` escapes) or `'literal'`; "
	            "`#`, `//` and `/* */` comments.\n"
	            "Sizes: `36MB`, `\"36 MB\"` (quoted: a value with blanks), `37748736`\n"
	            "(KB, MB, GB are binary, as in Exchange).\n"
	            "Durations: `5m`, `300s`, `1h30m`, or Exchange's `00:05:00` / `1.00:00:00`.\n"
	            "Relative paths are relative to the directory of the config file.\n");
	for (int s = 0; s < SEC_COUNT; s++) {
		fprintf(fp, "\n## %s\n\n| key | type | default | meaning |\n|---|---|---|---|\n",
		        heads[s]);
		for (size_t i = 0; i < N_OPTIONS; i++) {
			const struct option *o = &options[i];
			char range[96] = "";
			if ((int)o->sec != s)
				continue;
			if (o->kind == K_COUNT || o->kind == K_SIZE)
				snprintf(range, sizeof(range), " Range %llu–%llu%s.",
				         (unsigned long long)o->min, (unsigned long long)o->max,
				         o->unlimited ? " or `unlimited`" : "");
			else if (o->kind == K_DURATION)
				snprintf(range, sizeof(range), " Range %llus–%llus.",
				         (unsigned long long)o->min / 1000,
				         (unsigned long long)o->max / 1000);
			fprintf(fp, "| `%s` | %s | %s%s%s | %s%s", o->name, kind_names[o->kind],
			        o->def ? "`" : "", o->def ? o->def : "—", o->def ? "`" : "", o->doc,
			        range);
			if (o->words) {
				fprintf(fp, " Values:");
				for (const struct keyword *w = o->words; w->name; w++)
					fprintf(fp, " `%s` (%s)%s", w->name, w->doc,
					        w[1].name ? ";" : ".");
			}
			fprintf(fp, " |\n");
		}
	}
	fprintf(fp, "\n## Usage presets\n\n| usage | permission-groups | auth-mechanism |\n"
	            "|---|---|---|\n"
	            "| internet | anonymous-users | tls |\n| partner | partners | tls |\n"
	            "| internal | exchange-servers | tls |\n| custom | none | none |\n"
	            "| client | refused | — |\n");
}

/* ---- mxgate.conf(5) ------------------------------------------------------------------ */

/* Writes doc text as mdoc running text: `code` as quoted text, backslashes escaped, each
 * sentence on a line of its own (mandoc's "new sentence, new line"). */
static void
man_text(FILE *fp, const char *s)
{
	bool code = false, bol = true;
	char prev = '\0';

	for (; *s; prev = *s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", fp);
		bol = false;
		if (*s == '`') {
			fputs(code ? "\\(cq" : "\\(oq", fp);
			code = !code;
		} else if (*s == '\\') {
			fputs("\\e", fp);
		} else if (*s == ' ' && !code && (prev == '.' || prev == ':') &&
		           (isupper((unsigned char)s[1]) || s[1] == '`')) {
			fputc('\n', fp);
			bol = true;
		} else {
			fputc(*s, fp);
		}
	}
	fputc('\n', fp);
}

static void
man_option(FILE *fp, const struct option *o)
{
	fprintf(fp, ".It Ic %s Ar %s\n", o->name, kind_names[o->kind]);
	man_text(fp, o->doc);
	if (o->def)
		fprintf(fp, "Default:\n.Ql %s .\n", o->def);
	if (o->kind == K_COUNT || o->kind == K_SIZE)
		fprintf(fp, "Range: %llu to %llu%s.\n", (unsigned long long)o->min,
		        (unsigned long long)o->max, o->unlimited ? ", or unlimited" : "");
	else if (o->kind == K_DURATION)
		fprintf(fp, "Range: %llus to %llus.\n", (unsigned long long)o->min / 1000,
		        (unsigned long long)o->max / 1000);
	if (!o->words)
		return;
	fputs("Values:\n.Bl -tag -width Ds -compact\n", fp);
	for (const struct keyword *w = o->words; w->name; w++) {
		fprintf(fp, ".It Cm %s\n", w->name);
		man_text(fp, w->doc);
	}
	fputs(".El\n", fp);
}

void
config_print_man(FILE *fp)
{
	static const char *const heads[SEC_COUNT] = {"Top level", "The tls section",
	                                             "The deliver section", "Connector sections",
	                                             "Domain sections"};
	static const char *const intros[SEC_COUNT] = {
	        NULL, "tls { ... }: the certificate and key STARTTLS offers.",
	        "deliver { ... }: where accepted mail goes: Maildirs, or a relay to the next hop.",
	        "connector \"NAME\" { ... }: one receive connector, as Exchange's: where it "
	        "listens, which clients it serves and what they may do. "
	        "NAME is 1 to 64 printable characters, unique ignoring case.",
	        "domain \"NAME\" { ... }: an accepted domain with settings of its own."};

	fprintf(fp,
	        ".\\\" mxgate.conf(5), generated by `mxgate reference --man` from the option\n"
	        ".\\\" table in src/conf/config.c; do not edit.\n"
	        ".Dd %s\n.Dt MXGATE.CONF 5\n.Os\n.Sh NAME\n.Nm mxgate.conf\n"
	        ".Nd configuration file of the mxgate SMTP receive gateway\n"
	        ".Sh DESCRIPTION\n",
	        CONFIG_MAN_DATE);
	man_text(fp, "mxgate(8) reads its configuration from one file of settings and sections. "
	             "Every error is reported with its file and line, and a file with any "
	             "error is refused as a whole: `mxgate check` shows them all.");
	fputs(".Ss Syntax\n.Bl -tag -width Ds\n"
	      ".It Ic key No = Ar value\nOne value.\n"
	      ".It Ic key No = { Ar a , b No }\nA list of values, separated by commas.\n"
	      ".It Ic key No += Ar value | Ic key No += { Ar c No }\n"
	      "Adds to a list; a second\n.Sq =\nis an error.\n"
	      ".It Ic section No { ... } | Ic section No \\(dq Ns Ar NAME Ns \\(dq { ... }\n"
	      "A section and its settings.\n.El\n"
	      ".Pp\nA value is a word (any characters but blanks and\n"
	      "\\&# \\(dq \\(aq = { } ( ) + , ;)\nor a quoted string: in\n.Qq ...\nthe "
	      "escapes\n.Sq \\e\\(dq ,\n.Sq \\e\\e ,\n"
	      ".Sq \\en\nand\n.Sq \\et\nwork; in\n\\(aq...\\(aq\nonly\n.Sq \\e\\(aq\nand\n.Sq "
	      "\\e\\e\ndo.\n"
	      "A\n.Sq \\&;\nmay end a setting.\n"
	      "A value with blanks in it is quoted; a second word after a value on its line\n"
	      "is an error, unless it starts the next setting.\n"
	      "Comments run from\n.Sq #\nor\n.Sq //\n"
	      "to the end of the line, or from\n.Sq /*\nto\n.Sq */ .\n"
	      ".Pp\nSizes are written\n.Ql 36MB ,\n.Ql \\(dq36 MB\\(dq\nor\n.Ql 37748736\n"
	      "(KB, MB and GB are binary, as in Exchange).\nDurations are written\n"
	      ".Ql 5m ,\n.Ql 300s ,\n.Ql 1h30m\nor as Exchange's\n.Ql 00:05:00\nand\n"
	      ".Ql 1.00:00:00 .\nRelative paths are relative to the directory of the file.\n",
	      fp);
	for (int s = 0; s < SEC_COUNT; s++) {
		fprintf(fp, ".Ss %s\n", heads[s]);
		if (intros[s])
			man_text(fp, intros[s]);
		fputs(".Bl -tag -width Ds\n", fp);
		for (size_t i = 0; i < N_OPTIONS; i++)
			if ((int)options[i].sec == s)
				man_option(fp, &options[i]);
		fputs(".El\n", fp);
	}
	fputs(".Ss Usage presets\nA connector's\n.Ic usage\nsets\n.Ic permission-groups\nand\n"
	      ".Ic auth-mechanism\nwhen they are not given:\n"
	      ".Bl -column \"internal\" \"exchange-servers\" \"auth-mechanism\"\n"
	      ".It Sy usage Ta Sy permission-groups Ta Sy auth-mechanism\n"
	      ".It internet Ta anonymous-users Ta tls\n.It partner Ta partners Ta tls\n"
	      ".It internal Ta exchange-servers Ta tls\n.It custom Ta none Ta none\n"
	      ".It client Ta refused Ta \\(em\n.El\n"
	      ".Sh FILES\n.Bl -tag -width Ds\n.It Pa " CONFIG_DEFAULT_PATH "\n"
	      "The configuration file, unless\n.Fl c\nnames another.\n.El\n"
	      ".Sh EXAMPLES\nA gateway that takes mail from a filtering service only:\n"
	      ".Bd -literal -offset indent\n"
	      "hostname = \"mx.example.com\"\n"
	      "user = \"mxgate\"\n"
	      "accepted-domains = { \"example.com\" }\n"
	      "tls {\n  certificate = \"/etc/mxgate/tls/fullchain.pem\"\n"
	      "  key = \"/etc/mxgate/tls/key.pem\"\n}\n"
	      "connector \"Filtering service\" {\n  usage = internet\n"
	      "  bindings = { \"0.0.0.0:25\", \"[::]:25\" }\n"
	      "  remote-ip-ranges = { \"@proofpoint-essentials-us\" }\n}\n"
	      ".Ed\n"
	      ".Sh SEE ALSO\n.Xr mxgate 8\n",
	      fp);
}

/* ---- mxgate config: the effective configuration -------------------------------------- */

static void
put_size(FILE *fp, uint64_t v)
{
	if (v && v % (1024 * 1024) == 0)
		fprintf(fp, "%lluMB", (unsigned long long)(v / (1024 * 1024)));
	else if (v && v % 1024 == 0)
		fprintf(fp, "%lluKB", (unsigned long long)(v / 1024));
	else
		fprintf(fp, "%llu", (unsigned long long)v);
}

static void
put_duration(FILE *fp, uint64_t ms)
{
	static const struct {
		uint64_t ms;
		const char *unit;
	} units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].ms == 0 || units[i].ms == 1) {
			if (ms == 0 && units[i].ms != 1000)
				continue;
			fprintf(fp, "%llu%s", (unsigned long long)(ms / units[i].ms),
			        units[i].unit);
			return;
		}
	}
}

static void
put_words(FILE *fp, const struct keyword *w, unsigned v, bool flags)
{
	bool first = true;

	if (!flags) {
		for (; w->name; w++)
			if (w->value == v) {
				fputs(w->name, fp);
				return;
			}
		fprintf(fp, "%u", v);
		return;
	}
	fputs("{ ", fp);
	for (; w->name; w++)
		if (w->value && (v & w->value) == w->value) {
			fprintf(fp, "%s%s", first ? "" : ", ", w->name);
			first = false;
		}
	fprintf(fp, "%s }", first ? "none" : "");
}

/* "name = value" of one scalar option at base; false when it has no value to show. */
static bool
put_value(FILE *fp, const struct option *o, const void *base)
{
	const char *field = (const char *)base + o->off;
	uint64_t n;

	switch (o->kind) {
	case K_STR:
	case K_PATH:
		if (!*(char *const *)field)
			return false;
		fprintf(fp, "%s = \"%s\"", o->name, *(char *const *)field);
		return true;
	case K_BOOL:
		fprintf(fp, "%s = %s", o->name, *(const bool *)field ? "true" : "false");
		return true;
	case K_SIZE:
	case K_DURATION:
	case K_COUNT:
		n = *(const uint64_t *)field;
		fprintf(fp, "%s = ", o->name);
		if (n == CONFIG_UNLIMITED && o->unlimited)
			fputs("unlimited", fp);
		else if (o->kind == K_SIZE)
			put_size(fp, n);
		else if (o->kind == K_DURATION)
			put_duration(fp, n);
		else
			fprintf(fp, "%llu", (unsigned long long)n);
		return true;
	case K_ENUM:
	case K_FLAGS:
		fprintf(fp, "%s = ", o->name);
		put_words(fp, o->words, *(const unsigned *)field, o->kind == K_FLAGS);
		return true;
	default:
		return false; /* lists: written by their section */
	}
}

/* The scalar options of section sec: those written (given), or every one (all). */
static void
put_section(FILE *fp, enum section sec, const void *base, const uint64_t *given, bool all,
            const char *indent)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		bool written = given[i / 64] >> (i % 64) & 1;
		if (o->sec != sec || (!all && !written))
			continue;
		/* lists are shown by their section; usage and the two lists it presets by the
		 * connector */
		if (o->kind == K_PATHS || o->kind == K_BINDINGS || o->kind == K_RANGES ||
		    o->kind == K_DOMAINS ||
		    (sec == SEC_CONNECTOR && (o->kind == K_FLAGS || strcmp(o->name, "usage") == 0)))
			continue;
		fputs(indent, fp);
		if (!put_value(fp, o, base))
			fprintf(fp, "# %s: not set", o->name);
		fprintf(fp, "%s\n", all && !written ? "  # default" : "");
	}
}

/* A range's source: "inline", "@preset", or the ranges file's path. */
static void
range_source(const struct config *c, const char *file, char *buf, size_t size)
{
	const char *dir = providers_dir();
	size_t dl = strlen(dir), fl = strlen(file);

	if (strcmp(file, c->path) == 0)
		snprintf(buf, size, "inline");
	else if (strncmp(file, dir, dl) == 0 && file[dl] == '/' && fl > dl + 6 &&
	         strcmp(file + fl - 5, ".conf") == 0)
		snprintf(buf, size, "@%.*s", (int)(fl - dl - 6), file + dl + 1);
	else
		snprintf(buf, size, "file %s", file);
}

/* remote ranges: the total, by family, then per source in the order they come. */
static void
put_ranges(FILE *fp, const struct config *c, const struct connector *k)
{
	size_t v4 = 0, v6 = 0;

	if (k->all_remote) {
		fputs("  remote-ip-ranges: every IPv4 and IPv6 address (none written)\n", fp);
		return;
	}
	for (size_t i = 0; i < k->n_ranges; i++)
		k->ranges[i].r.family == AF_INET ? v4++ : v6++;
	fprintf(fp, "  remote-ip-ranges: %zu range%s (%zu IPv4, %zu IPv6)\n", k->n_ranges,
	        k->n_ranges == 1 ? "" : "s", v4, v6);
	for (size_t i = 0; i < k->n_ranges;) {
		const char *file = k->ranges[i].at.file;
		size_t j = i;
		char src[PATH_MAX + 8];
		while (j < k->n_ranges && k->ranges[j].at.file == file)
			j++;
		range_source(c, file, src, sizeof(src));
		fprintf(fp, "    %zu %s\n", j - i, src);
		i = j;
	}
}

/* Whether the connector's file wrote the key (else its usage preset it). */
static bool
conn_written(const struct connector *k, const char *name)
{
	size_t i = (size_t)(find_option(SEC_CONNECTOR, name) - options);

	return k->given[i / 64] >> (i % 64) & 1;
}

static void
put_connector(FILE *fp, const struct config *c, const struct connector *k, bool all)
{
	char ep[ENDPOINT_STRLEN];

	fprintf(fp, "\nconnector \"%s\" {\n  usage = %s%s\n", k->name, usage_name(k->usage),
	        k->enabled ? "" : "  # disabled: takes no connection");
	fputs("  auth-mechanism = ", fp);
	put_words(fp, auth_words, k->auth_mechanisms, true);
	if (!conn_written(k, "auth-mechanism"))
		fprintf(fp, "  # from usage %s", usage_name(k->usage));
	fputs("\n  permission-groups = ", fp);
	put_words(fp, perm_words, k->permission_groups, true);
	if (!conn_written(k, "permission-groups"))
		fprintf(fp, "  # from usage %s", usage_name(k->usage));
	for (const struct keyword *w = perm_words; w->name; w++)
		if (w->value ? (k->permission_groups & w->value) != 0 : k->permission_groups == 0)
			fprintf(fp, "\n    # %s: %s", w->name, w->doc);
	fprintf(fp, "\n  bindings = {");
	for (size_t i = 0; i < k->n_bindings; i++) {
		endpoint_format(&k->bindings[i], ep, sizeof(ep));
		fprintf(fp, "%s \"%s\"", i ? "," : "", ep);
	}
	fprintf(fp, " }\n");
	put_ranges(fp, c, k);
	put_section(fp, SEC_CONNECTOR, k, k->given, all, "  ");
	fputs("}\n", fp);
}

void
config_print_effective(const struct config *c, FILE *fp, bool all)
{
	static const struct {
		enum section sec;
		const char *open;
	} blocks[] = {{SEC_TLS, "tls"}, {SEC_DELIVER, "deliver"}};

	fprintf(fp, "# %s: the effective configuration%s\n", c->path,
	        all ? ", defaults marked" : " (the keys written; --all adds the defaults)");
	put_section(fp, SEC_ROOT, c, c->given, all, "");
	fputs("accepted-domains = {", fp);
	for (size_t i = 0; i < c->n_accepted_domains; i++)
		fprintf(fp, "%s \"%s\"", i ? "," : "", c->accepted_domains[i]);
	fputs(" }\n", fp);
	/* the balancers that may name any client: never left out of what is shown */
	if (c->n_proxy_from) {
		enum { SHOWN = 16 };
		fputs("proxy-protocol-from = {", fp);
		for (size_t i = 0; i < c->n_proxy_from && i < SHOWN; i++) {
			char r[128];
			range_format(&c->proxy_from[i].r, r, sizeof(r));
			fprintf(fp, "%s \"%s\"", i ? "," : "", r);
		}
		fputs(" }", fp);
		if (c->n_proxy_from > SHOWN)
			fprintf(fp, "  # and %zu more", c->n_proxy_from - SHOWN);
		fputs("\n", fp);
	} else if (all) {
		fputs("# proxy-protocol-from: not set  # default\n", fp);
	}
	for (size_t b = 0; b < 2; b++) {
		fprintf(fp, "%s {\n", blocks[b].open);
		put_section(fp, blocks[b].sec, c, c->given, all, "  ");
		fputs("}\n", fp);
	}
	for (size_t i = 0; i < c->n_domains; i++) {
		const struct domain_conf *dc = &c->domains[i];
		fprintf(fp, "domain \"%s\" {\n", dc->name);
		if (dc->recipients_file)
			fprintf(fp, "  recipients-file = \"%s\"  # %zu recipient%s\n",
			        dc->recipients_file, dc->n_recipients,
			        dc->n_recipients == 1 ? "" : "s");
		fputs("}\n", fp);
	}
	for (size_t i = 0; i < c->n_connectors; i++)
		put_connector(fp, c, &c->connectors[i], all);
}
