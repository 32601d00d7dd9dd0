/*
 * policy — the SMTP core's policy (smtp.h) from a connector and its config snapshot.
 *
 * The one place where config.h meets the sans-I/O core: the core never sees struct config.
 * policy_from_config() fills every field but rate_ok and rate_arg (the session's own);
 * the policy borrows strings of c and k and passes c to the domain and recipient lookups,
 * so both must outlive every session made with it (a session holds a reference to its
 * snapshot).
 */
#ifndef MXGATE_POLICY_H
#define MXGATE_POLICY_H

#include "conf/config.h"
#include "smtpd/smtp.h"

void policy_from_config(struct smtp_policy *p, const struct config *c, const struct connector *k);

#endif
