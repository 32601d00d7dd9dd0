#include "queue/dsn.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
dsn_status(int code, const char *text, char *out, size_t size)
{
	const char *p = text;
	int parts = 0;

	/* "X.Y.Z " with X in 2,4,5 (RFC 3463) */
	if (p && (p[0] == '2' || p[0] == '4' || p[0] == '5') && p[1] == '.') {
		const char *q = p + 2;
		parts = 1;
		while (parts < 3) {
			int digits = 0;
			while (isdigit((unsigned char)*q) && digits < 3)
				q++, digits++;
			if (!digits)
				break;
			parts++;
			if (parts < 3 && *q == '.')
				q++;
			else
				break;
		}
		if (parts == 3 && (*q == ' ' || *q == '\0')) {
			snprintf(out, size, "%.*s", (int)(q - p), p);
			return;
		}
	}
	snprintf(out, size, "%d.0.0", code >= 200 && code < 600 ? code / 100 : 5);
}

/* Copies text without control characters (it came from a remote server). */
static void
put_clean(FILE *fp, const char *s)
{
	for (; s && *s; s++)
		fputc((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e ? '?' : *s, fp);
}

static bool
ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s > 0x7e)
			return false;
	return true;
}

char *
dsn_build(const struct spool_entry *e, const struct dsn_rcpt *r, size_t n,
          const char *reporting_host, const char *headers, size_t hlen, time_t now, size_t *len)
{
	char date[64], arrival[64], boundary[64], status[32];
	char *buf = NULL;
	size_t size = 0;
	struct tm tm;
	FILE *fp;
	/* RFC 6533: the bounce of an SMTPUTF8 message carries its UTF-8 addresses as they are,
	 * in the global report types (it is sent with SMTPUTF8 itself, deliver.c) */
	bool global = e->smtputf8;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	gmtime_r(&e->received, &tm);
	strftime(arrival, sizeof(arrival), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	snprintf(boundary, sizeof(boundary), "%s/%s", e->id, reporting_host);
	if (!(fp = open_memstream(&buf, &size)))
		return NULL;
	fprintf(fp,
	        "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	        "To: <%s>\r\n"
	        "Subject: Undelivered Mail Returned to Sender\r\n"
	        "Date: %s\r\n"
	        "Message-ID: <%s.dsn@%s>\r\n"
	        "Auto-Submitted: auto-replied\r\n"
	        "MIME-Version: 1.0\r\n"
	        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	        "\tboundary=\"%s\"\r\n"
	        "\r\n"
	        "This is a MIME-encapsulated message.\r\n"
	        "\r\n"
	        "--%s\r\n"
	        "Content-Type: text/plain; charset=%s\r\n"
	        "\r\n"
	        "This is the mail gateway at %s.\r\n"
	        "\r\n"
	        "Your message could not be delivered to the following recipient%s.\r\n"
	        "It was received on %s (queue id %s).\r\n"
	        "\r\n",
	        reporting_host, e->sender, date, e->id, reporting_host, boundary, boundary,
	        global ? "utf-8" : "us-ascii", reporting_host, n == 1 ? "" : "s", arrival, e->id);
	for (size_t i = 0; i < n; i++) {
		fprintf(fp, "<%s>: ", r[i].addr);
		if (r[i].remote) {
			fputs("host ", fp);
			put_clean(fp, r[i].remote);
			fputs(" said: ", fp);
		}
		fprintf(fp, "%d ", r[i].code);
		put_clean(fp, r[i].text);
		fputs("\r\n", fp);
	}
	fprintf(fp,
	        "\r\n"
	        "--%s\r\n"
	        "Content-Type: message/%sdelivery-status\r\n"
	        "\r\n"
	        "Reporting-MTA: dns; %s\r\n"
	        "X-Mxgate-Queue-ID: %s\r\n"
	        "Arrival-Date: %s\r\n",
	        boundary, global ? "global-" : "", reporting_host, e->id, arrival);
	for (size_t i = 0; i < n; i++) {
		dsn_status(r[i].code, r[i].text, status, sizeof(status));
		fprintf(fp, "\r\nFinal-Recipient: %s; %s\r\nAction: failed\r\nStatus: %s\r\n",
		        global && !ascii(r[i].addr) ? "utf-8" : "rfc822", r[i].addr, status);
		if (r[i].remote) {
			fputs("Remote-MTA: dns; ", fp);
			put_clean(fp, r[i].remote);
			fputs("\r\n", fp);
		}
		fprintf(fp, "Diagnostic-Code: smtp; %d ", r[i].code);
		put_clean(fp, r[i].text);
		fputs("\r\n", fp);
	}
	fprintf(fp, "\r\n--%s\r\nContent-Type: %s\r\n\r\n", boundary,
	        global ? "message/global-headers" : "text/rfc822-headers");
	if (headers && hlen)
		fwrite(headers, 1, hlen, fp);
	fprintf(fp, "\r\n--%s--\r\n", boundary);
	if (fclose(fp) != 0) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}
