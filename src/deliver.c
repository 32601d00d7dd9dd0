#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"

#define BATCH_MAX       256
#define RETRY_FIRST_S   60
#define RETRY_MAX_S     3600
#define BASE_CACHE_SIZE 8

struct job {
	struct spool_entry *e;
	bool *done;
	unsigned attempts;
	time_t due;
	char last_error[768];
	struct job *next;
};

struct base {
	char path[1024];
	int fd;
};

struct deliver {
	struct spool *sp;
	deliver_config_fn get_config;
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *ready, *ready_tail;
	struct job *waiting; /* sorted by due */
	bool stop;
	struct deliver_stats stats;
	struct base bases[BASE_CACHE_SIZE];
	size_t n_bases;
};

static void *deliver_main(void *arg);

struct deliver *
deliver_new(struct spool *sp, deliver_config_fn get_config, void *arg)
{
	struct deliver *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->sp = sp;
	d->get_config = get_config;
	d->arg = arg;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	if (pthread_create(&d->thread, NULL, deliver_main, d) != 0) {
		free(d);
		return NULL;
	}
	return d;
}

static void
free_job(struct job *j)
{
	spool_entry_free(j->e);
	free(j->done);
	free(j);
}

void
deliver_free(struct deliver *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	for (struct job *j = d->ready, *n; j; j = n) {
		n = j->next;
		free_job(j);
	}
	for (struct job *j = d->waiting, *n; j; j = n) {
		n = j->next;
		free_job(j);
	}
	for (size_t i = 0; i < d->n_bases; i++)
		close(d->bases[i].fd);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
}

/* The fd of a Maildir base directory, opened once and kept (so it still works after
 * privileges are dropped).  Called on the delivery thread, or before it runs. */
static int
base_fd(struct deliver *d, const char *path, long uid, long gid)
{
	bool made = false;
	int fd;

	for (size_t i = 0; i < d->n_bases; i++)
		if (strcmp(d->bases[i].path, path) == 0)
			return d->bases[i].fd;
	if (mkdir(path, 0700) == 0)
		made = true;
	else if (errno != EEXIST)
		return -1;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (made && uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)gid) < 0) {
		close(fd);
		return -1;
	}
	if (d->n_bases == BASE_CACHE_SIZE) {
		close(d->bases[0].fd);
		memmove(d->bases, d->bases + 1, (BASE_CACHE_SIZE - 1) * sizeof(d->bases[0]));
		d->n_bases--;
	}
	snprintf(d->bases[d->n_bases].path, sizeof(d->bases[0].path), "%s", path);
	d->bases[d->n_bases++].fd = fd;
	return fd;
}

void
deliver_prepare(struct deliver *d, const struct config *cfg, long uid, long gid)
{
	char base[1024];
	const char *rest;

	pthread_mutex_lock(&d->mu);
	if (maildir_split(cfg->maildir, base, sizeof(base), &rest) == 0 &&
	    base_fd(d, base, uid, gid) < 0)
		log_msg(LOG_LVL_WARNING, "maildir base %s cannot be opened: %s", base,
		        strerror(errno));
	pthread_mutex_unlock(&d->mu);
}

void
deliver_submit(struct deliver *d, struct spool_entry *e)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j || !(j->done = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(bool)))) {
		/* stays in the spool; the next start delivers it */
		log_msg(LOG_LVL_ERROR, "out of memory: message %s waits for the next start", e->id);
		free(j);
		spool_entry_free(e);
		return;
	}
	j->e = e;
	pthread_mutex_lock(&d->mu);
	if (d->ready_tail)
		d->ready_tail->next = j;
	else
		d->ready = j;
	d->ready_tail = j;
	d->stats.queued++;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

void
deliver_flush(struct deliver *d)
{
	pthread_mutex_lock(&d->mu);
	for (struct job *j = d->waiting; j; j = j->next)
		j->due = 0;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

void
deliver_get_stats(struct deliver *d, struct deliver_stats *st)
{
	pthread_mutex_lock(&d->mu);
	*st = d->stats;
	pthread_mutex_unlock(&d->mu);
}

static void
schedule_retry(struct deliver *d, struct job *j)
{
	unsigned shift = j->attempts < 7 ? j->attempts : 6;
	time_t delay = (time_t)RETRY_FIRST_S << shift;
	struct job **p;

	if (delay > RETRY_MAX_S)
		delay = RETRY_MAX_S;
	j->attempts++;
	j->due = time(NULL) + delay;
	j->next = NULL;
	log_msg(LOG_LVL_WARNING, "message %s deferred (attempt %u): %s; next try in %lds", j->e->id,
	        j->attempts, j->last_error, (long)delay);
	pthread_mutex_lock(&d->mu);
	for (p = &d->waiting; *p && (*p)->due <= j->due; p = &(*p)->next)
		;
	j->next = *p;
	*p = j;
	d->stats.deferred++;
	pthread_mutex_unlock(&d->mu);
}

struct syncdir {
	int fd;
	dev_t dev;
	ino_t ino;
	bool failed;
};

static void
deliver_batch(struct deliver *d, struct job *jobs)
{
	struct config *cfg = d->get_config(d->arg);
	struct syncdir *dirs = NULL;
	size_t n_dirs = 0, cap_dirs = 0;
	char base[1024];
	const char *rest = NULL;
	int bfd = -1;

	if (cfg && maildir_split(cfg->maildir, base, sizeof(base), &rest) == 0)
		bfd = base_fd(d, base, -1, -1);
	for (struct job *j = jobs; j; j = j->next) {
		struct spool_entry *e = j->e;
		j->last_error[0] = '\0';
		if (bfd < 0) {
			snprintf(j->last_error, sizeof(j->last_error),
			         "maildir base %.300s cannot be opened: %s", cfg ? base : "?",
			         strerror(errno));
			continue;
		}
		for (size_t i = 0; i < e->n_rcpts; i++) {
			char rel[2048], name[256], local[128];
			const char *at = strrchr(e->rcpts[i], '@');
			int mdfd = -1, newfd;
			struct stat st;

			if (j->done[i])
				continue;
			if (!at || (size_t)(at - e->rcpts[i]) >= sizeof(local)) {
				snprintf(j->last_error, sizeof(j->last_error), "bad recipient %s",
				         e->rcpts[i]);
				continue;
			}
			memcpy(local, e->rcpts[i], (size_t)(at - e->rcpts[i]));
			local[at - e->rcpts[i]] = '\0';
			/* a quoted local part is delivered by its content */
			if (local[0] == '"') {
				size_t l = strlen(local), k = 0;
				for (size_t q = 1; q + 1 < l; q++) {
					if (local[q] == '\\' && q + 2 < l)
						q++;
					local[k++] = local[q];
				}
				local[k] = '\0';
			}
			if (maildir_expand(rest, local, at + 1, rel, sizeof(rel)) < 0) {
				snprintf(j->last_error, sizeof(j->last_error),
				         "maildir path for %s too long", e->rcpts[i]);
				continue;
			}
			newfd = maildir_open(bfd, rel, &mdfd);
			if (newfd < 0) {
				int e2 = errno;
				snprintf(j->last_error, sizeof(j->last_error),
				         "cannot open Maildir %.200s/%.200s for %.200s: %s%s", base,
				         rel, e->rcpts[i], strerror(e2),
				         e2 == EACCES
				                 ? " (the Maildir tree must be writable by the "
				                   "user mxgate runs as)"
				                 : "");
				continue;
			}
			maildir_name(name, sizeof(name), (long long)e->received, e->id, i,
			             cfg->hostname);
			if (maildir_deliver(mdfd, newfd, spool_queue_fd(d->sp), e->id, name,
			                    e->recovered) < 0) {
				snprintf(j->last_error, sizeof(j->last_error),
				         "cannot deliver to Maildir %.200s/%.200s for %.200s: %s",
				         base, rel, e->rcpts[i], strerror(errno));
				close(newfd);
				close(mdfd);
				continue;
			}
			close(mdfd);
			/* new/ is synced once per batch, for all that went into it */
			if (fstat(newfd, &st) < 0) {
				close(newfd);
				continue;
			}
			size_t k;
			for (k = 0; k < n_dirs; k++)
				if (dirs[k].dev == st.st_dev && dirs[k].ino == st.st_ino)
					break;
			if (k == n_dirs) {
				if (n_dirs == cap_dirs) {
					size_t nc = cap_dirs ? 2 * cap_dirs : 16;
					struct syncdir *nd = realloc(dirs, nc * sizeof(*nd));
					if (!nd) {
						close(newfd);
						continue;
					}
					dirs = nd;
					cap_dirs = nc;
				}
				dirs[n_dirs++] =
				        (struct syncdir){newfd, st.st_dev, st.st_ino, false};
			} else {
				close(newfd);
			}
			j->done[i] = true;
		}
	}
	for (size_t k = 0; k < n_dirs; k++) {
		if (fsync(dirs[k].fd) < 0)
			dirs[k].failed = true;
		close(dirs[k].fd);
	}
	bool any_failed_sync = false;
	for (size_t k = 0; k < n_dirs; k++)
		any_failed_sync |= dirs[k].failed;
	free(dirs);

	for (struct job *j = jobs, *next; j; j = next) {
		struct spool_entry *e = j->e;
		size_t ok = 0;
		next = j->next;
		if (any_failed_sync) {
			/* which links are durable is unknown: do them all again (idempotent) */
			memset(j->done, 0, e->n_rcpts * sizeof(bool));
			snprintf(j->last_error, sizeof(j->last_error),
			         "fsync of a Maildir directory failed");
		}
		for (size_t i = 0; i < e->n_rcpts; i++)
			ok += j->done[i];
		if (ok == e->n_rcpts) {
			if (spool_remove(d->sp, e->id) < 0)
				log_msg(LOG_LVL_ERROR,
				        "message %s delivered but not removed from "
				        "the spool: %s",
				        e->id, strerror(errno));
			log_msg(LOG_LVL_INFO,
			        "message %s delivered to %zu recipient%s by maildir (from <%s>, "
			        "%llu "
			        "bytes%s)",
			        e->id, e->n_rcpts, e->n_rcpts == 1 ? "" : "s", e->sender,
			        (unsigned long long)e->size, j->attempts ? ", after retries" : "");
			pthread_mutex_lock(&d->mu);
			d->stats.delivered_msgs++;
			d->stats.delivered_rcpts += e->n_rcpts;
			pthread_mutex_unlock(&d->mu);
			free_job(j);
		} else {
			schedule_retry(d, j);
		}
	}
	config_unref(cfg);
}

static void *
deliver_main(void *arg)
{
	struct deliver *d = arg;

	pthread_mutex_lock(&d->mu);
	for (;;) {
		time_t now = time(NULL);
		while (d->waiting && d->waiting->due <= now) {
			struct job *j = d->waiting;
			d->waiting = j->next;
			j->next = NULL;
			if (d->ready_tail)
				d->ready_tail->next = j;
			else
				d->ready = j;
			d->ready_tail = j;
		}
		if (d->stop)
			break;
		if (!d->ready) {
			if (d->waiting) {
				struct timespec ts = {.tv_sec = d->waiting->due};
				pthread_cond_timedwait(&d->cv, &d->mu, &ts);
			} else {
				pthread_cond_wait(&d->cv, &d->mu);
			}
			continue;
		}
		/* take up to BATCH_MAX due jobs */
		struct job *batch = d->ready, *last = batch;
		size_t n = 1;
		while (last->next && n < BATCH_MAX) {
			last = last->next;
			n++;
		}
		d->ready = last->next;
		if (!d->ready)
			d->ready_tail = NULL;
		last->next = NULL;
		d->stats.batches++;
		pthread_mutex_unlock(&d->mu);
		deliver_batch(d, batch);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}
