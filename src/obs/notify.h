/*
 * notify — tells the service manager what the daemon is doing: sd_notify(3)'s datagram
 * protocol, spoken directly (no libsystemd).
 *
 * The manager passes NOTIFY_SOCKET in the environment: an AF_UNIX datagram socket, either
 * a file system path ("/run/systemd/notify") or, when it starts with '@', an abstract
 * socket whose name is the rest with a leading NUL byte.  Each message is one datagram of
 * newline-separated VAR=VALUE assignments ("READY=1\nSTATUS=serving"); systemd reads the
 * sender's PID from the socket's credentials, so only the main process may speak
 * (NotifyAccess=main).  Without NOTIFY_SOCKET every call does nothing and returns 0.
 *
 * Nothing here blocks: the socket is SOCK_NONBLOCK, so a manager that does not read
 * makes a send fail with EAGAIN instead of stalling the event loop; MSG_NOSIGNAL keeps a
 * vanished peer from raising SIGPIPE.  NOTIFY_SOCKET is left in the environment (the
 * daemon starts nothing that could misuse it, and its value is read once).
 *
 * notify_init() also connects the socket, so that a daemon that drops privileges after it
 * still reaches a socket only root could write to; if that connection breaks, each
 * message is sent to the address instead.
 *
 * Threads: notify_init() and notify_close() from the main thread, before and after
 * everything else; the senders from any one thread at a time (the main loop's).
 */
#ifndef MXGATE_NOTIFY_H
#define MXGATE_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>

/* Largest message notify_sendf() formats; longer ones fail with EMSGSIZE. */
#define NOTIFY_MAX 4096

/* Reads NOTIFY_SOCKET and opens the sending socket.  Returns 0 (also when the variable is
 * unset or empty: then nothing is ever sent), or -1 with a sentence in err naming the
 * variable and what is wrong with it (not absolute and not '@', too long, socket()). */
int notify_init(char *err, size_t errlen);

/* True when notify_init() found a socket to talk to. */
bool notify_enabled(void);

/* Sends state as one datagram, e.g. "READY=1\nSTATUS=serving 2 listeners".  Returns 0, or
 * -1 with errno (EAGAIN: the manager's queue is full; ECONNREFUSED, ENOENT: nobody
 * listens).  A failure is not worth more than a debug line: the service keeps running. */
int notify_send(const char *state);

/* notify_send() of a printf-formatted message of at most NOTIFY_MAX - 1 bytes. */
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC in µs>", then "\nSTATUS=<status>" when
 * status is not NULL.  systemd (since 253) matches MONOTONIC_USEC against the time it
 * asked for the reload; earlier ones ignore it.  Follow with READY=1 when the reload is
 * over, accepted or refused. */
int notify_reloading(const char *status);

/* "STOPPING=1", then "\nSTATUS=<status>" when status is not NULL. */
int notify_stopping(const char *status);

/* Closes the socket; later calls do nothing until the next notify_init(). */
void notify_close(void);

#endif
