#include "smtpd/policy.h"

_Static_assert(SMTP_UNLIMITED == CONFIG_UNLIMITED, "the core's unlimited is the config's");

static bool
domain_accepted(const void *arg, const char *domain, size_t len)
{
	return config_accepts_domain(arg, domain, len);
}

static int
recipient_known(const void *arg, const char *domain, size_t dlen, const char *local, size_t llen)
{
	return config_recipient_known(arg, domain, dlen, local, llen);
}

/* <postmaster> without a domain (RFC 5321 §4.5.1) goes to the first domain section, else
 * the first accepted domain that is a name (not a wildcard), else the connector's fqdn. */
static const char *
postmaster_domain(const struct config *c, const struct connector *k)
{
	if (c->n_domains)
		return c->domains[0].name;
	for (size_t i = 0; i < c->n_accepted_domains; i++)
		if (c->accepted_domains[i][0] != '*')
			return c->accepted_domains[i];
	return k->fqdn;
}

void
policy_from_config(struct smtp_policy *p, const struct config *c, const struct connector *k)
{
	*p = (struct smtp_policy){
	        .banner = k->banner,
	        .fqdn = k->fqdn,
	        .postmaster_domain = postmaster_domain(c, k),
	        .max_message_size = k->max_message_size,
	        .max_header_size = k->max_header_size,
	        .max_recipients = k->max_recipients_per_message,
	        .max_protocol_errors = k->max_protocol_errors,
	        .max_hop_count = k->max_hop_count,
	        .message_rate_limit = k->message_rate_limit,
	        .tarpit_interval_ms = k->tarpit_interval_ms,
	        .anonymous_users = (k->permission_groups & PERM_ANONYMOUS_USERS) != 0,
	        .partners = (k->permission_groups & PERM_PARTNERS) != 0,
	        .exchange_servers = (k->permission_groups & PERM_EXCHANGE_SERVERS) != 0,
	        .starttls = (k->auth_mechanisms & AUTH_TLS) != 0,
	        .require_tls = k->require_tls || k->tls_sender_certificate_name,
	        .require_client_cert = k->tls_sender_certificate_name != NULL,
	        .pipelining = k->pipelining_enabled,
	        .enhanced_status_codes = k->enhanced_status_codes_enabled,
	        .eight_bit_mime = k->eight_bit_mime_enabled,
	        .smtp_utf8 = k->smtp_utf8_enabled,
	        .log_commands = k->protocol_logging_level == PROTOLOG_VERBOSE,
	        .mail_check = k->n_hostname_suffixes > 0, /* remote-hostname-suffixes */
	        .chunking = k->chunking_enabled,
	        .bare_lf_normalize = k->bare_line_feed == BARE_LF_NORMALIZE,
	        .verify_recipients = k->verify_recipients && c->relay != NULL,
	        .domain_accepted = domain_accepted,
	        .recipient_known = recipient_known,
	        .lookup_arg = c,
	};
}
