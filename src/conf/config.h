/*
 * config — mxgate.conf, loaded into an immutable, reference-counted snapshot.
 *
 * One declarative option table (config.c) drives the validation of every value and the
 * reference documentation (config_print_reference()); the file is read by parse.h.  Loading reports
 * every problem it finds to a diag as FILE:LINE messages; a config with any error is not
 * returned.  A returned snapshot never changes: the daemon gives each session the snapshot
 * current at accept and swaps in a new one on reload (config_ref/config_unref).
 *
 * Relative paths in the file are resolved against the directory of the file.  The files it
 * names (ranges, recipients, provider presets) are read with sidefile.h's bounds.
 * Reentrant: loads may run on several threads at once; a loaded snapshot may be read from
 * any thread.
 */
#ifndef MXGATE_CONFIG_H
#define MXGATE_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/diag.h"
#include "base/ipaddr.h"
#include "base/range.h"
#include "conf/origin.h"

#define CONFIG_UNLIMITED    UINT64_MAX
#define CONFIG_DEFAULT_PATH "/etc/mxgate/mxgate.conf"
#define CONNECTOR_NAME_MAX  64
/* Debian's system trust store, the default of tls { client-ca-file } */
#define CONFIG_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

enum usage { USAGE_CUSTOM, USAGE_INTERNET, USAGE_INTERNAL, USAGE_PARTNER, USAGE_CLIENT };

enum auth_mechanism {
	AUTH_NONE = 1 << 0,
	AUTH_TLS = 1 << 1,
	AUTH_EXTERNAL_AUTHORITATIVE = 1 << 2,
};

enum permission_group {
	PERM_ANONYMOUS_USERS = 1 << 0,
	PERM_PARTNERS = 1 << 1,
	PERM_EXCHANGE_SERVERS = 1 << 2,
};

enum protocol_log_level { PROTOLOG_NONE, PROTOLOG_VERBOSE };
enum bare_lf { BARE_LF_REJECT, BARE_LF_NORMALIZE };

struct metrics_connector; /* obs/metrics.h: the daemon's, opaque here */

struct connector {
	char *name;
	/* the connector's metrics handle: set by the daemon at load, before the snapshot is
	 * shared (NULL elsewhere, and when the registry is full); never freed */
	struct metrics_connector *metrics;
	struct origin at; /* the connector's opening line */
	unsigned index;   /* position in config.connectors */
	enum usage usage;
	bool enabled;

	struct endpoint *bindings;
	size_t n_bindings;
	struct conf_range *ranges; /* remote-ip-ranges, then every remote-ip-ranges-file */
	size_t n_ranges;
	bool all_remote; /* neither key given: every IPv4 and IPv6 address (Exchange default) */
	int open_family; /* AF_INET/AF_INET6 of the first range listed that is a whole family, or 0 */

	unsigned auth_mechanisms;   /* enum auth_mechanism bits */
	unsigned permission_groups; /* enum permission_group bits */
	bool require_tls;           /* also set by tls_sender_certificate_name */
	/* the client certificate name that proves the tenant (base/certname.h), or NULL */
	char *tls_sender_certificate_name;
	char *banner; /* full greeting line without CRLF, starts with "220" */
	char *fqdn;

	uint64_t max_message_size; /* bytes */
	uint64_t max_header_size;  /* bytes */
	uint64_t max_recipients_per_message;
	uint64_t max_inbound_connection;            /* or CONFIG_UNLIMITED */
	uint64_t max_inbound_connection_per_source; /* or CONFIG_UNLIMITED */
	uint64_t max_inbound_connection_percentage_per_source;
	uint64_t connection_timeout_ms;
	uint64_t connection_inactivity_timeout_ms;
	uint64_t message_rate_limit; /* messages per minute per source, or CONFIG_UNLIMITED */
	uint64_t tarpit_interval_ms;
	uint64_t max_protocol_errors; /* or CONFIG_UNLIMITED */
	uint64_t max_hop_count;
	bool pipelining_enabled;
	bool eight_bit_mime_enabled;
	bool enhanced_status_codes_enabled;
	bool smtp_utf8_enabled;
	enum protocol_log_level protocol_logging_level;
	/* remote-hostname-suffixes: lower case, no leading or trailing dot, presets expanded;
	 * none: no forward-confirmed reverse DNS check (net/dns.h) */
	char **hostname_suffixes;
	size_t n_hostname_suffixes;
	bool chunking_enabled;       /* CHUNKING/BDAT (RFC 3030) */
	enum bare_lf bare_line_feed; /* default from usage: normalize for internal */
	uint64_t given[2]; /* bit i: option i of config.c's table was written (mxgate config) */
	bool verify_recipients;      /* probe each RCPT at the relay (smtpd/verify.h) */
	unsigned verify_unavailable; /* enum verify_unavailable: when the probe cannot tell */
};

/* An accepted domain with its own settings: domain "example.com" { ... }. */
struct domain_conf {
	char *name; /* lower case */
	struct origin at;
	char **recipients; /* sorted, lower case local parts; NULL: any local part */
	size_t n_recipients;
	char *recipients_file;
};

enum log_target { LOG_TO_STDERR, LOG_TO_SYSLOG };
enum relay_tls { RELAY_TLS_NONE, RELAY_TLS_OPPORTUNISTIC, RELAY_TLS_REQUIRED };
enum verify_unavailable { VERIFY_UNAVAILABLE_DEFER, VERIFY_UNAVAILABLE_ACCEPT };
enum log_level_conf { LOGLEVEL_ERROR, LOGLEVEL_WARNING, LOGLEVEL_INFO, LOGLEVEL_DEBUG };

struct selector;
struct rangeset;

struct config {
	atomic_uint refs;
	char *path;               /* as given to config_load() */
	unsigned char sha256[32]; /* of path's bytes as loaded (mxgate status, mxgate audit) */
	char **files;
	size_t n_files;

	char *hostname;
	char *spool;
	char *user;              /* NULL: keep the starting user (refused when that is root) */
	char **accepted_domains; /* lower case; "*.example.com" matches subdomains only */
	size_t n_accepted_domains;
	char *tls_certificate; /* NULL when no tls section */
	struct origin tls_at;  /* where certificate is set: for errors found when it is loaded */
	char *tls_key;
	/* CAs that verify client certificates: set when a connector has a
	 * tls-sender-certificate-name (CONFIG_SYSTEM_CA_FILE unless given), else NULL */
	char *tls_client_ca_file;
	/* TLS 1.3 session tickets sent after each full handshake (tls { session-tickets }) */
	uint64_t tls_session_tickets;
	int tls_client_ca_line; /* where it is set; 0: not given */
	char *maildir;          /* template with %d and %u */
	char *relay;            /* "HOST:PORT" of the next hop, or NULL: Maildir delivery */
	char *relay_host;       /* its host part (an address or a name, no brackets) */
	uint16_t relay_port;
	unsigned relay_tls; /* enum relay_tls */
	bool relay_tls_verify;
	char *relay_ca_file; /* NULL: the system's trust store */
	uint64_t relay_connections;
	uint64_t relay_timeout_ms;
	uint64_t relay_idle_timeout_ms;  /* 0: no connection kept between batches */
	uint64_t verify_timeout_ms;      /* recipient verification (smtpd/verify.h) */
	uint64_t verify_positive_ttl_ms; /* how long a known recipient is remembered */
	uint64_t verify_negative_ttl_ms; /* how long an unknown one is */
	uint64_t verify_cache_size;      /* entries of each cache (read at start) */
	uint64_t retry_interval_ms;
	uint64_t message_expiration_timeout_ms;
	uint64_t workers;    /* session threads; 0: one per CPU */
	unsigned log_target; /* enum log_target */
	unsigned log_level;  /* enum log_level_conf */
	uint64_t drain_timeout_ms;
	char *metrics_listen;                /* "IP:PORT" of the metrics endpoint, or NULL: none */
	uint64_t max_side_file_size;         /* bytes in a ranges, recipients or preset file */
	uint64_t max_side_file_line_length;  /* bytes in one of their lines */
	char *protocol_log_directory;        /* NULL: no protocol log (obs/protolog.h) */
	uint64_t protocol_log_max_file_size; /* bytes */
	uint64_t protocol_log_max_directory_size;
	uint64_t protocol_log_max_age_ms;
	struct domain_conf *domains;
	size_t n_domains;
	/* proxy-protocol-from: the balancers, and their compiled lookup (NULL: none) */
	struct conf_range *proxy_from;
	size_t n_proxy_from;
	struct rangeset *proxy_set;
	uint64_t proxy_protocol_timeout_ms;

	char **resolvers; /* "IP:PORT" as given, for net/dns.h; none: /etc/resolv.conf */
	size_t n_resolvers;
	uint64_t dns_timeout_ms; /* a whole forward-confirmed reverse DNS check */

	struct connector *connectors;
	size_t n_connectors;
	struct selector *selector; /* compiled connector selection (selector.h) */
	uint64_t given[2]; /* bit i: option i of config.c's table was written (mxgate config) */
};

/* Loads and validates path.  Returns a snapshot with one reference, or NULL when there was
 * any error (all of them in d) or no memory.  Warnings go to d either way. */
struct config *config_load(const char *path, struct diag *d);

/* config_load() for the daemon, which selects through c->selector alone: each connector's
 * range records are freed once compiled (ranges NULL; n_ranges, all_remote and open_family
 * kept), and with them the 64 bytes a range that a 1M-line ranges file would keep for the
 * snapshot's life.  The commands that read the records (config, audit, firewall, which)
 * load with config_load(). */
struct config *config_load_compiled(const char *path, struct diag *d);

/* The spool directory a file names (resolved as config_load() resolves it, the default
 * when it names none), read from its statements alone: for `mxgate queue` and `status`,
 * which need only the daemon's control socket, while the file has errors that are not
 * syntax errors (an edit under way).  NULL when the file cannot be read or parsed. */
char *config_spool_of(const char *path);

struct config *config_ref(struct config *c);
/* Drops a reference; the last one frees the snapshot.  config_unref(NULL) is a no-op. */
void config_unref(struct config *c);

/* True if a is in proxy-protocol-from: a balancer that must send a PROXY header. */
bool config_proxy_from(const struct config *c, const struct ipaddr *a);
/* Whether connector k takes every address of family (AF_INET, AF_INET6): neither range key
 * given (Exchange's default), or a range such as 0.0.0.0/0 listed. */
bool connector_takes_all(const struct connector *k, int family);

/* The connector by exact name, or NULL. */
const struct connector *config_connector(const struct config *c, const char *name);

/* True if domain (any case, no trailing dot) is an accepted domain: listed in
 * accepted-domains or given a domain section. */
bool config_accepts_domain(const struct config *c, const char *domain, size_t len);

/* For an accepted domain with a recipients-file: 1 if local (any case) is listed, 0 if not.
 * -1 when the domain has no recipients-file (any local part is taken). */
int config_recipient_known(const struct config *c, const char *domain, size_t dlen,
                           const char *local, size_t llen);

/* One line describing the connector, for `mxgate check`. */
void config_describe_connector(const struct connector *k, char *buf, size_t size);

/* Prints the effective configuration, like `postconf -n` or `Get-ReceiveConnector | fl`:
 * the keys written in the file (all: every key, defaults too), and for every connector
 * its resolved usage, permissions and mechanisms, bindings and remote ranges counted by
 * source (written inline, each @preset, each ranges file). */
void config_print_effective(const struct config *c, FILE *fp, bool all);

/* Prints the reference of every key (Markdown), from the option table. */
void config_print_reference(FILE *fp);

/* Prints mxgate.conf(5) in mdoc(7), from the same table: the syntax, every key of every
 * section with its type, default, range and values, the usage presets, FILES and SEE
 * ALSO.  Its date is CONFIG_MAN_DATE, so that the page is the same at every build. */
#define CONFIG_MAN_DATE "December 4, 2026"
void config_print_man(FILE *fp);

/* Parses sizes ("36MB", "36 MB", "37748736", "256KB") and durations ("5m", "300s",
 * "00:05:00", "1.00:00:00"); exposed for tests.  Return 0 or -1. */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, uint64_t *ms);

#endif
