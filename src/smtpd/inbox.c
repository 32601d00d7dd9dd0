#include "smtpd/inbox.h"

#include <event2/event.h>

void
inbox_post(struct inbox *in, struct inbox_item *it)
{
	pthread_mutex_lock(&in->mu);
	it->next = NULL;
	if (in->tail)
		in->tail->next = it;
	else
		in->head = it;
	in->tail = it;
	pthread_mutex_unlock(&in->mu);
	event_active(in->ev, EV_READ, 0);
}

struct inbox_item *
inbox_take(struct inbox *in)
{
	struct inbox_item *items;

	pthread_mutex_lock(&in->mu);
	items = in->head;
	in->head = in->tail = NULL;
	pthread_mutex_unlock(&in->mu);
	return items;
}
