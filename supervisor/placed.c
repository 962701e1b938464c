/*
 * placed.c - the calls this instance dialled that have neither started
 * streaming nor ended: with the busy workers they make up the calls in
 * progress that --max-calls bounds.  Runs in the supervisor.  An entry
 * leaves when the stream starts (CALL_INFO), when Twilio reports a final
 * status, or after PLACED_TTL_SECS (the stream went to another instance
 * or the callback never came).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "log.h"
#include "util.h"
#include "supervisor.h"

#define PLACED_TTL_SECS	120

struct placed {
	TAILQ_ENTRY(placed)	 pl_entry;
	char			 pl_sid[64];
	uint64_t		 pl_t;
};

static TAILQ_HEAD(, placed) placed = TAILQ_HEAD_INITIALIZER(placed);
static unsigned	nplaced;
static unsigned	nreserved;	/* create requests in flight */

int
placed_add(const char *sid)
{
	struct placed	*p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	strlcpy_n(p->pl_sid, sid, sizeof(p->pl_sid));
	p->pl_t = now_mono_ns();
	TAILQ_INSERT_TAIL(&placed, p, pl_entry);
	nplaced++;
	return 0;
}

void
placed_remove(const char *sid)
{
	struct placed	*p;

	TAILQ_FOREACH(p, &placed, pl_entry)
		if (strcmp(p->pl_sid, sid) == 0) {
			TAILQ_REMOVE(&placed, p, pl_entry);
			nplaced--;
			free(p);
			return;
		}
}

unsigned
placed_count(void)
{
	return nplaced;
}

unsigned
placed_reserved(void)
{
	return nreserved;
}

void
placed_reserve(int delta)
{
	if (delta < 0 && nreserved == 0)
		log_panic("placed_reserve: released more than reserved");
	nreserved += (unsigned)delta;
}

/* Entries are in insertion order: stop at the first young one. */
void
placed_expire(uint64_t now)
{
	struct placed	*p;

	while ((p = TAILQ_FIRST(&placed)) != NULL &&
	    now - p->pl_t > (uint64_t)PLACED_TTL_SECS * 1000000000ULL) {
		log_info("call %s: no stream and no final status after %d s; "
		    "no longer counted", p->pl_sid, PLACED_TTL_SECS);
		TAILQ_REMOVE(&placed, p, pl_entry);
		nplaced--;
		free(p);
	}
}
