/*
 * protolog — Exchange's SMTP Receive protocol log, for admins who already read Exchange's:
 * what each session said and was told, one CSV row per event, in files an admin can grep,
 * open in a spreadsheet or feed to the tools they use on Exchange's logs.
 *
 * Files: <directory>/RECVyyyymmdd-N.LOG (the UTC date; N from 1, one more than the highest
 * already there for that date, so a restart never appends to a file a crash may have cut
 * mid-row).  Each starts with these lines, CRLF-ended as every line in the file:
 *   #Software: mxgate <MXGATE_VERSION>
 *   #Version: 15.0.0.0
 *   #Log-type: SMTP Receive Protocol Log
 *   #Date: 2024-05-01T00:00:00.000Z                 (when the file was started, UTC)
 *   #Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context
 * Rows are RFC 4180 records of those nine fields:
 *   date-time        2024-05-01T12:34:56.789Z, when the session thread made the call (UTC)
 *   connector-id     the connector's name
 *   session-id       the session id of mxgate's log lines
 *   sequence-number  0, 1, 2 ... within the session (gaps: rows dropped, see below)
 *   local-endpoint   "10.0.0.5:25", remote-endpoint "203.0.113.9:41234" ("[v6]:port")
 *   event            + connect, < command received, > reply sent (one row per reply line),
 *                    * information, - disconnect
 *   data, context    the text: the command or reply line without its CRLF; for *, what
 *                    happened (data) and about what (context); for -, "Local" or "Remote"
 *                    in context as in Exchange.
 * A field holding a comma or a double quote is quoted and its quotes doubled (RFC 4180
 * §2.6-2.7).  Client text can never end a row or start one: every control character (C0,
 * DEL, C1), U+2028 and U+2029, and every byte that is not well-formed UTF-8 is written as
 * the four characters \xHH, so a row is one line and the file is UTF-8.  data longer than
 * PROTOLOG_DATA_MAX bytes is cut and ends in "...".  Message bodies are never logged: the
 * calls take commands, replies and information only.  AUTH's arguments are replaced by
 * "****" (credentials are never logged; mxgate offers no AUTH, but a client may try).
 *
 * Exchange's limits (Set-ReceiveConnector's protocol log settings; defaults below): a file
 * is closed and the next one (N+1) started before a row would take it past max_file_size,
 * and at the first row of a new UTC day.  When a file is started, and hourly, files older
 * than max_age (by modification time) are deleted, then the oldest (by date and N) while
 * the directory's RECV*.LOG files together exceed max_directory_size.  Only names of the
 * form RECVyyyymmdd-N.LOG are ever deleted, and never the file being written.
 *
 * Off the session threads: a session's call copies its row (at most about 1.6 KiB) into a
 * bounded queue under a mutex held only for that copy, and returns.  One writer thread
 * formats and writes.  A full queue (the writer fell behind a slow disk) drops the row and
 * counts it (PROTOLOG_DROP_QUEUE_FULL); a failed write (ENOSPC, EIO, a vanished directory)
 * drops the rows it held, truncates the file back to its last whole row and counts them
 * (PROTOLOG_DROP_WRITE_ERROR); rows that reached the file whole stay.  Neither ever waits
 * on the disk; after a failure the writer tries a new file a second later.  Drops are said
 * three ways: mxgate_protocol_log_dropped_total{reason} (metrics.c reads
 * protolog_dropped()), a warning log line at most once a minute with the count since the
 * last, and a row in the log itself where the gap is ("*" event, no sequence-number,
 * context "protocol-log", data "N rows dropped: the queue was full" or "N rows dropped:
 * write failed (<error>)").
 *
 * Wiring it into the daemon:
 *   config keys (top level): protocol-log-directory (string; unset: no protocol log),
 *     protocol-log-max-file-size (default 10 MB), protocol-log-max-directory-size
 *     (250 MB), protocol-log-max-age (30 days); each connector's existing
 *     protocol-logging-level = none | verbose.
 *   - main(), once the configuration is loaded and privileges are dropped (the files
 *     belong to the run user): protolog_configure(&params from the config, err).  At each
 *     accepted reload: protolog_configure() again (a new directory or limits apply from
 *     the next row; a missing directory key turns logging off).  At exit, after the
 *     session threads stopped: protolog_stop() (writes what is queued).
 *   - start_session(): protolog_session_init(&s->pl, verbose?, connector name, s->id,
 *     local "ip:port", remote "ip:port"), then protolog_connect(&s->pl).  When the
 *     connector chosen is known: protolog_info(&s->pl, "connector", "<name>").
 *   - each command line the core parses (not in DATA): protolog_command(&s->pl, line,
 *     len); the core needs to hand the server each command line (an action or a hook):
 *     smtp.c has no such output yet.
 *   - each reply queued for sending (every SMTP_REPLY: the banner, the answers, the 421
 *     of a timeout or a shutdown): protolog_reply(&s->pl, text, len) — several lines make
 *     several rows.
 *   - TLS established: protolog_tls(&s->pl, "TLSv1.3", "TLS_AES_256_GCM_SHA384",
 *     client certificate subject or NULL); failed: protolog_info(&s->pl, "TLS",
 *     "handshake failed: <reason>").
 *   - message queued/refused: protolog_info(&s->pl, "queued", "<queue id> <size>") etc.
 *     (the 250/4xx/5xx itself is logged as a reply anyway).
 *   - session_close()/session_free(): protolog_disconnect(&s->pl, by_client).
 * Nothing needs checking: with logging off (no directory, or the connector's level none)
 * every call returns at once.
 *
 * Threads: protolog_configure() and protolog_stop() from one thread (the main one); the
 * session calls from any thread, each protolog_session used by one thread at a time.
 */
#ifndef MXGATE_PROTOLOG_H
#define MXGATE_PROTOLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exchange's defaults: 10 MB, 250 MB, 30 days. */
#define PROTOLOG_DEFAULT_MAX_FILE_SIZE      (10ULL * 1024 * 1024)
#define PROTOLOG_DEFAULT_MAX_DIRECTORY_SIZE (250ULL * 1024 * 1024)
#define PROTOLOG_DEFAULT_MAX_AGE            (30ULL * 24 * 3600)
/* The queue between the sessions and the writer: at least 600 of the longest rows, some
 * 5000 typical ones. */
#define PROTOLOG_DEFAULT_QUEUE_BYTES (1024 * 1024)

/* Longest data (before escaping) and context kept; the rest is cut and marked "...". */
#define PROTOLOG_DATA_MAX    1024
#define PROTOLOG_CONTEXT_MAX 256
/* Longest connector-id and session-id kept (the config allows 64 and 19). */
#define PROTOLOG_NAME_MAX 128
#define PROTOLOG_ID_MAX   32
/* Longest endpoint text with its NUL: "[v6]:port" (ENDPOINT_STRLEN). */
#define PROTOLOG_ENDPOINT_MAX 56

struct protolog_params {
	const char *directory;       /* borrowed for the call; NULL or "": logging off */
	uint64_t max_file_size;      /* bytes; 0: no limit */
	uint64_t max_directory_size; /* bytes; 0: no limit */
	uint64_t max_age;            /* seconds; 0: no limit */
	size_t queue_bytes;          /* 0: PROTOLOG_DEFAULT_QUEUE_BYTES */
	/* For tests only (NULL in the daemon): the writer calls it before every write(2) of
	 * rows, on its own thread, so a test can hold the writer as a stalled disk would. */
	void (*before_write_hook)(void);
};

/* Starts the writer (the first time), or hands it new settings (a reload): a changed
 * directory closes the current file and the next row starts a file there (rows still
 * queued go there too); new limits apply from the next row; a NULL or empty directory
 * turns the log off (rows still queued are discarded; sessions begun before keep calling,
 * in vain, at the cost of an atomic load).  The directory
 * is created (mode 0750) when missing and must be writable by the calling user.  Returns
 * 0, or -1 with a sentence in err naming the directory and the error; then the settings
 * in use before stay. */
int protolog_configure(const struct protolog_params *p, char *err, size_t errlen);

/* Writes what is queued, closes the file and ends the writer.  Blocks while the disk
 * does: call it at exit, off the session threads.  A later protolog_configure() starts
 * again. */
void protolog_stop(void);

/* Rows dropped since the process started, for the metrics. */
enum protolog_drop { PROTOLOG_DROP_QUEUE_FULL, PROTOLOG_DROP_WRITE_ERROR };
uint64_t protolog_dropped(enum protolog_drop why);

/* A session's identity in the log, embedded in the session (no heap, no release).
 * Fields private to protolog.c. */
struct protolog_session {
	bool on;
	uint32_t seq;
	char connector[PROTOLOG_NAME_MAX + 1];
	char id[PROTOLOG_ID_MAX + 1];
	char local[PROTOLOG_ENDPOINT_MAX];
	char remote[PROTOLOG_ENDPOINT_MAX];
};

/* Fills s; verbose is the connector's protocol-logging-level (false: none, every call on
 * s does nothing).  Strings are copied (cut to the sizes above). */
void protolog_session_init(struct protolog_session *s, bool verbose, const char *connector,
                           const char *session_id, const char *local, const char *remote);

/* The rows; each copies what it needs and returns without waiting; s may be NULL (a
 * session whose connector logs nothing keeps no protolog_session at all).  Texts need no NUL
 * when a length is given; a trailing CRLF is not logged. */
void protolog_connect(struct protolog_session *s);
void protolog_command(struct protolog_session *s, const char *line, size_t len);
void protolog_reply(struct protolog_session *s, const char *text, size_t len);
void protolog_info(struct protolog_session *s, const char *context, const char *data);
void protolog_infof(struct protolog_session *s, const char *context, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* "*" row, context "TLS": "TLS protocol <protocol> negotiation succeeded using cipher
 * <cipher>[; client certificate <subject>]".  Any argument may be NULL. */
void protolog_tls(struct protolog_session *s, const char *protocol, const char *cipher,
                  const char *client_subject);
/* "-" row; context "Remote" when the client closed, else "Local". */
void protolog_disconnect(struct protolog_session *s, bool by_client);

#endif
