/*
 * supervisor.h - structs and prototypes of the supervisor process,
 * grouped by the file that owns them.  Nothing here is seen by worker/.
 */
#ifndef NAIBER_SUPERVISOR_H
#define NAIBER_SUPERVISOR_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/buffer.h>

#include "channel.h"
#include "config.h"
#include "httphead.h"

struct conn;
struct worker;

/* supervisor.c */
enum sv_state {
	SV_RUNNING,
	SV_DRAINING,
	SV_STOPPING
};

struct supervisor {
	struct event_base	*sv_base;
	struct config		*sv_cf;
	const char		*sv_cfpath;
	int			 sv_cf_must_exist;
	const struct cfg_override *sv_ov;
	size_t			 sv_nov;
	int			 sv_listen_fd;
	int			 sv_ready_fd;	/* -D: tell the launcher we serve */
	enum sv_state		 sv_state;
	int			 sv_reloading;
	uint64_t		 sv_t_start_ms;
	struct evcurl		*sv_ec;		/* Twilio, ngrok */
	struct rds		*sv_rds;
};

extern struct supervisor sv;

int	supervisor_run(void);
void	supervisor_notify(const char *);
void	supervisor_workers_gone(void);

/* listener.c */
#define CONN_IN_MAX	12288
#define CONN_MAX	1024
#define CONN_ANSWER_SECS 30	/* longest wait for our own answer */

struct conn {
	TAILQ_ENTRY(conn)	 cn_entry;
	int			 cn_fd;
	struct sockaddr_storage	 cn_peer;
	socklen_t		 cn_peerlen;
	char			 cn_addr[64];
	uint64_t		 cn_t_accept;
	struct event		*cn_rev;
	struct event		*cn_wev;
	struct event		*cn_timer;
	struct evbuffer		*cn_out;
	struct hhead		 cn_req;
	char			 cn_in[CONN_IN_MAX];
	size_t			 cn_inlen;	/* bytes held */
	size_t			 cn_reqstart;	/* first byte of this request */
	size_t			 cn_pos;	/* first byte not yet parsed */
	int			 cn_close_after;
	int			 cn_busy;	/* request being answered */
	void			*cn_op;		/* async work answering it */
	void			(*cn_op_cancel)(void *);
	unsigned		 cn_nreq;
	uint64_t		 cn_t_req;	/* first byte of this request; 0: idle */
	size_t			 cn_req_bytes;	/* read for this request */
};

int	listener_start(int);
void	listener_stop(void);
int	listener_open(const char *, long);
void	conn_respond(struct conn *, int, const char *, const char *, size_t,
	    const char *);
void	conn_respond_json_error(struct conn *, int, const char *);
void	conn_close(struct conn *, const char *);
void	conn_detach(struct conn *);
unsigned listener_nconns(void);

/* router.c */
void	router_dispatch(struct conn *, struct hhead *);
void	router_upgrade(struct conn *, struct hhead *);
int	router_token_ok(struct conn *, struct hhead *);

/* api_ops.c */
void	api_health(struct conn *, struct hhead *);
void	api_metrics(struct conn *, struct hhead *);
void	api_sessions(struct conn *, struct hhead *);

/* ready.c */
void	api_ready(struct conn *, struct hhead *);

/* api_call.c */
void	api_call(struct conn *, struct hhead *);
void	api_call_health(struct conn *, struct hhead *);

/* api_twilio.c */
void	api_twiml(struct conn *, struct hhead *);
void	api_status_callback(struct conn *, struct hhead *);

/* placed.c - calls dialled and not yet streaming or over */
int	placed_add(const char *);
void	placed_remove(const char *);
unsigned placed_count(void);
unsigned placed_reserved(void);
void	placed_reserve(int);
void	placed_expire(uint64_t);

/* pool.c */
enum w_state {
	W_IDLE,
	W_BUSY,
	W_EXITING,
	W_STARTING,	/* forked or asked for, not warm yet */
	W_NSTATES
};

struct worker {
	TAILQ_ENTRY(worker)	 w_entry;
	pid_t			 w_pid;		/* 0 until known */
	int			 w_fd;
	uint32_t		 w_ref;
	enum w_state		 w_state;
	struct event		*w_ev;
	uint64_t		 w_t_spawn;
	uint64_t		 w_t_busy;
	uint64_t		 w_t_heard;	/* last message, monotonic */
	int			 w_took_call;
	int			 w_got_done;
	int			 w_asked_exit;
	int			 w_listed;
	struct msg_call_info	 w_ci;
	struct msg_done		 w_done;
};

int	pool_start(void);
void	pool_refill(void);
int	pool_handoff(struct conn *);
void	pool_reap(void);
void	pool_drain_idle(void);
void	pool_prepare(const char *);
void	pool_signal_busy(int);
unsigned pool_count(enum w_state);
unsigned pool_total(void);
int	pool_throttled(void);
void	pool_spawned(uint32_t, pid_t, int);
void	pool_forksrv_gone(void);

/* forksrv.c */
int	forksrv_start(void);
void	forksrv_stop(void);
int	forksrv_reaped(pid_t, int);
void	forksrv_wait(int);
pid_t	forksrv_pid(void);
int	forksrv_spawn(uint32_t, int);

/* admission.c - the decision; headroom.c - its signals */
enum adm_signal {
	ADM_LAG,	/* ms */
	ADM_CPU,	/* % */
	ADM_MEM,	/* MiB available; low is bad */
	ADM_NSIG
};

struct adm_limits {
	int		 al_on[ADM_NSIG];
	double		 al_hi[ADM_NSIG];	/* close here (MEM: at or below) */
	double		 al_lo[ADM_NSIG];	/* calm past here */
	uint64_t	 al_hold_ms;		/* calm this long to reopen */
};

struct adm {
	int		 ad_open;
	int		 ad_why;		/* signal that closed it, or -1 */
	double		 ad_val[ADM_NSIG];	/* smoothed */
	int		 ad_have[ADM_NSIG];
	int		 ad_calming;
	uint64_t	 ad_calm_since;
};

void	adm_init(struct adm *);
int	adm_step(struct adm *, const struct adm_limits *, const double *,
	    uint64_t);
const char *adm_signal_name(int);

void	headroom_start(void);
void	headroom_config(void);
void	headroom_lag(uint32_t);
int	headroom_open(void);
const char *headroom_reason(void);
unsigned headroom_retry_after(void);
void	headroom_metrics(FILE *);

/* orphan.c */
void	orphan_cleanup(const struct msg_call_info *);
void	orphan_hold(const struct msg_call_info *);
unsigned orphan_pending(void);

/* ngrok.c */
void	ngrok_start(void);
int	ngrok_pick(const char *, size_t, long, char *, size_t);

/* metrics.c */
struct metrics {
	uint64_t	m_handoffs;
	uint64_t	m_handoff_fail;
	uint64_t	m_crashes;
	uint64_t	m_worker_stalls;	/* busy, silent, killed */
	uint64_t	m_calls_done;
	uint64_t	m_frames_in;
	uint64_t	m_frames_out;
	uint64_t	m_frames_dropped;
	uint64_t	m_bad_messages;
	uint64_t	m_pongs;
	uint64_t	m_clears;
	uint64_t	m_http[6];	/* by status class 1xx..5xx, [0] other */
	uint64_t	m_refused_sig;
	uint64_t	m_refused_capacity;
	uint64_t	m_workers_spawned;
	uint64_t	m_warm_sum_ns;
	uint64_t	m_warm_count;
	uint64_t	m_handoff_hist[16];
	uint64_t	m_handoff_sum_ns;
	uint64_t	m_handoff_count;
	uint64_t	m_setup_hist[16];	/* start -> first agent audio */
	uint64_t	m_setup_sum_ns;
	uint64_t	m_setup_count;
	uint64_t	m_conns_shed;		/* closed at the connection cap */
	uint64_t	m_conns_refused_ip;	/* over max_conns_per_ip */
	uint64_t	m_conns_slow;		/* under request_min_rate */
	uint64_t	m_calls_placed;
	uint64_t	m_call_refused[5];	/* twilio, redis, capacity, input,
					   headroom */
	uint64_t	m_calls_admitted;
	uint64_t	m_adm_closings;
	uint64_t	m_outcome[6];	/* completed busy no-answer failed canceled other */
	uint64_t	m_redis_errors;
	uint64_t	m_jobs_enqueued;
	uint64_t	m_jobs_spooled;
	uint64_t	m_jobs_replayed;
	uint64_t	m_jobs_lost;
	uint64_t	m_http_client_errors;
};

extern struct metrics metrics;

void	metrics_handoff(uint64_t);
void	metrics_warm(uint64_t);
void	metrics_done(const struct msg_done *);
void	metrics_http(int);
char	*metrics_render(size_t *);

#endif
