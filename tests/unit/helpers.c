#include "helpers.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char tmpdir[256];

const char *
helper_tmpdir(void)
{
	return tmpdir;
}

char *
helper_write_temp(const char *name, const char *text)
{
	char *path;
	FILE *fp;

	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/mxgate-unit-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	if (asprintf(&path, "%s/%s", tmpdir, name) < 0)
		abort();
	if (!(fp = fopen(path, "w")))
		abort();
	fputs(text, fp);
	fclose(fp);
	return path;
}

struct find {
	enum diag_severity sev;
	const char *file;
	int line;
	const char *needle;
	bool found;
};

static void
find_cb(enum diag_severity sev, const char *file, int line, const char *text, void *arg)
{
	struct find *f = arg;
	size_t fl = f->file ? strlen(f->file) : 0, l = strlen(file);

	if (sev == f->sev && (!f->line || line == f->line) &&
	    (!f->needle || strstr(text, f->needle)) &&
	    (!f->file || (l >= fl && strcmp(file + l - fl, f->file) == 0)))
		f->found = true;
}

bool
helper_has(struct diag *d, enum diag_severity sev, const char *file, int line, const char *needle)
{
	struct find f = {sev, file, line, needle, false};

	diag_each(d, find_cb, &f);
	return f.found;
}

void
helper_dump(struct diag *d)
{
	diag_print(d, stderr);
}

struct config *
helper_load(const char *text, struct diag *d)
{
	char *path = helper_write_temp("mxgate.conf", text);
	struct config *c = config_load(path, d);

	free(path);
	return c;
}

void
helper_make_cert(const char *cert_name, const char *key_name)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	char *cp = helper_write_temp(cert_name, ""), *kp = helper_write_temp(key_name, "");
	FILE *fp;

	if (!key || !x)
		abort();
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"mx.test", -1,
	                           -1, 0);
	X509_set_issuer_name(x, name);
	if (!X509_sign(x, key, EVP_sha256()))
		abort();
	if (!(fp = fopen(cp, "w")) || !PEM_write_X509(fp, x))
		abort();
	fclose(fp);
	if (!(fp = fopen(kp, "w")) || !PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL))
		abort();
	fclose(fp);
	chmod(kp, 0600);
	X509_free(x);
	EVP_PKEY_free(key);
	free(cp);
	free(kp);
}
