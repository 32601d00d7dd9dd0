#include "smtpd/privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"

/* Before the first thread starts (each thread keeps its own copy, inherited at creation):
 * no_new_privs, so nothing executed from the daemon could gain privileges from set-user-ID
 * bits or file capabilities, and — as root — a bounding set of the capability kept alone
 * and no ambient capability, so the permitted set can never grow back past it.  Dropping
 * from the bounding set needs CAP_SETPCAP, which root has until privileges_become(); without it
 * (not started as root) the set is the caller's.  Failing as root refuses to start. */
int
privileges_restrict(int keep)
{
	bool root = geteuid() == 0;

	for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
		if (cap == keep || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 0)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (!root && errno == EPERM)
				break;
			log_msg(LOG_LVL_ERROR,
			        "cannot drop capability %d from the bounding set: %s; not starting "
			        "(started by a service manager? let it keep CAP_SETPCAP, as "
			        "mxgate.service does, so mxgate can drop it and the rest itself)",
			        cap, strerror(errno));
			return -1;
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
		log_msg(LOG_LVL_ERROR, "cannot clear the ambient capabilities: %s; not starting",
		        strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		log_msg(LOG_LVL_ERROR, "cannot set no_new_privs: %s; not starting",
		        strerror(errno));
		return -1;
	}
	return 0;
}

int
privileges_user(const struct config *c, const char *config_path, long *uid, long *gid)
{
	struct passwd *pw;

	*uid = *gid = -1;
	if (geteuid() != 0) {
		if (c->user)
			log_msg(LOG_LVL_INFO,
			        "running as uid %d; user = \"%s\" applies only when "
			        "started as root",
			        (int)geteuid(), c->user);
		return 0;
	}
	if (!c->user) {
		log_msg(LOG_LVL_ERROR,
		        "refusing to run as root: set user = \"...\" in %s (an "
		        "unprivileged account such as mxgate)",
		        config_path);
		return -1;
	}
	if (!(pw = getpwnam(c->user))) {
		log_msg(LOG_LVL_ERROR, "user \"%s\" does not exist", c->user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int
privileges_become(long uid, long gid)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {{0}};
	gid_t g = (gid_t)gid;

	if (uid < 0)
		return 0;
	if (setgroups(1, &g) < 0 || setgid(g) < 0 || prctl(PR_SET_KEEPCAPS, 1) < 0 ||
	    setuid((uid_t)uid) < 0) {
		log_msg(LOG_LVL_ERROR, "cannot switch to uid %ld gid %ld: %s", uid, gid,
		        strerror(errno));
		return -1;
	}
	data[0].permitted = data[0].effective = 1u << CAP_NET_BIND_SERVICE;
	if (syscall(SYS_capset, &hdr, data) < 0)
		log_msg(LOG_LVL_WARNING,
		        "cannot keep CAP_NET_BIND_SERVICE: %s; a reload cannot "
		        "open new ports below 1024",
		        strerror(errno));
	prctl(PR_SET_KEEPCAPS, 0);
	if (setuid(0) == 0) {
		log_msg(LOG_LVL_ERROR, "privileges could be regained after dropping them");
		return -1;
	}
	return 0;
}
