/*
 * worker.h - structs and prototypes of a worker process, grouped by the
 * file that owns them.  Nothing here is seen by supervisor/.
 */
#ifndef NAIBER_WORKER_H
#define NAIBER_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "channel.h"
#include "config.h"

struct ws;
struct call;
struct profile_conn;

/* worker.c */
struct wk {
	struct event_base	*wk_base;
	struct config		*wk_cf;
	int			 wk_chan;
	uint32_t		 wk_ref;
	int			 wk_draining;
	int			 wk_preparing;
	struct call		*wk_call;
	struct rds		*wk_rds;
	struct evcurl		*wk_ec;
	struct evdns_base	*wk_dns;
	struct profile_conn	*wk_pg;		/* warm PostgreSQL */
};

extern struct wk wk;

struct evcurl *worker_evcurl(void);
struct evcurl *worker_http(void);
void	worker_settle(void);
void	worker_settle_stack(void);
void	call_setup_free(struct call *);
void	worker_report_info(const struct msg_call_info *);
void	worker_report_load(uint32_t, uint32_t);
void	worker_finish(const struct msg_done *) __attribute__((noreturn));

/* ws.c - RFC 6455 over a non-blocking socket with wslay */
struct ws_cb {
	void	(*on_text)(void *, const uint8_t *, size_t);
	void	(*on_close)(void *, int, const char *);
	void	(*on_done)(void *);	/* nothing left to send or read */
	void	(*on_open)(void *);	/* client: handshake complete */
};

struct evdns_base;
struct ws	*ws_server_new(struct event_base *, int, const uint8_t *,
		    size_t, size_t, const struct ws_cb *, void *);
struct ws	*ws_client_new(struct event_base *, const char *, size_t,
		    const struct ws_cb *, void *, char *, size_t);
int		 ws_ping(struct ws *);
int		 ws_rx_stamp(struct ws *);
int		 ws_follow(struct ws *, struct ws *, int);
void		 ws_settle(struct ws *);
uint64_t	 ws_rx_ns(const struct ws *);
int		 ws_send_text(struct ws *, const char *, size_t);
void		 ws_close(struct ws *, uint16_t, const char *);
int		 ws_done(const struct ws *);
void		 ws_free(struct ws *);
int		 ws_accept_key(const char *, char [29]);

/* twilio_event.c - pure parser of Twilio Media Streams messages */
enum tw_ev {
	TWE_CONNECTED,
	TWE_START,
	TWE_MEDIA,
	TWE_MARK,
	TWE_DTMF,
	TWE_STOP,
	TWE_UNKNOWN
};

#define TW_MAX_PARAMS	16

struct tw_event {
	enum tw_ev	 te_type;
	long		 te_seq;		/* -1 if absent */
	char		 te_stream_sid[64];
	char		 te_call_sid[64];
	char		 te_account_sid[64];
	/* start */
	char		 te_encoding[32];
	long		 te_rate;
	long		 te_channels;
	int		 te_nparams;
	/* media */
	const char	*te_payload;		/* base64, not NUL-ended,
						   in te_root or the text */
	size_t		 te_payload_len;
	long		 te_chunk;
	long		 te_timestamp;
	char		 te_track[16];
	/* mark, dtmf */
	char		 te_name[64];
	char		 te_digit[8];
	void		*te_root;		/* json_t *, owned, or NULL */
	/* last: not cleared per message, valid below te_nparams */
	char		 te_pname[TW_MAX_PARAMS][64];
	char		 te_pvalue[TW_MAX_PARAMS][512];
};

int		 twilio_event_parse(const char *, size_t, struct tw_event *,
		    const char **) __attribute__((warn_unused_result));
int		 twilio_event_parse_slow(const char *, size_t,
		    struct tw_event *, const char **)
		    __attribute__((warn_unused_result));
void		 twilio_event_free(struct tw_event *);
const char	*twilio_event_param(const struct tw_event *, const char *);

/* twilio_ws.c - the Twilio side of a call */
int	twilio_ws_accept(struct call *, int, const uint8_t *, size_t);
int	twilio_ws_send(struct call *, const char *, size_t);
void	twilio_ws_close(struct call *);

/* eleven_event.c - pure parser of ElevenLabs server messages */
enum el_ev {
	ELE_OTHER,		/* any type we ignore */
	ELE_AUDIO,
	ELE_PING,
	ELE_INTERRUPTION,
	ELE_METADATA,
	ELE_TOOL_RESPONSE,
	ELE_ERROR
};

struct el_event {
	enum el_ev	 ee_type;
	char		 ee_type_name[48];
	long long	 ee_event_id;	/* -1 if absent */
	const char	*ee_audio;	/* base64, not NUL-ended, in
					   ee_root or the text */
	size_t		 ee_audio_len;
	char		 ee_conv_id[128];
	char		 ee_fmt_in[24];
	char		 ee_fmt_out[24];
	char		 ee_tool[64];
	char		 ee_error_type[64];
	char		 ee_error_msg[160];
	void		*ee_root;	/* json_t *, owned, or NULL */
};

int	eleven_event_parse(const char *, size_t, struct el_event *,
	    const char **) __attribute__((warn_unused_result));
int	eleven_event_parse_slow(const char *, size_t, struct el_event *,
	    const char **) __attribute__((warn_unused_result));
void	eleven_event_free(struct el_event *);

/* eleven_ws.c - the ElevenLabs side of a call */
enum el_state {
	EL_IDLE,
	EL_URL,			/* fetching the signed URL */
	EL_CONNECTING,		/* TLS + upgrade */
	EL_OPEN,		/* waiting for prompt and first message */
	EL_WAIT_META,		/* init sent, waiting for metadata */
	EL_READY,		/* bridging */
	EL_CLOSING,
	EL_CLOSED
};

int	eleven_start(struct call *);
int	eleven_send_init(struct call *);
void	eleven_close(struct call *, uint16_t);
int	eleven_send_audio(struct call *, const char *, size_t);

/* prepare.c - prompt variables, system prompt, first message, PREPARE */
#include "prompt.h"
#include "profile.h"


struct persona {
	struct prompt_var	pe_vars[16];
	size_t			pe_n;
	int			pe_first_call;
	int			pe_health;
	char			pe_age[16];
	char			pe_interests[2048];
	char			pe_dislikes[2048];
	char			pe_recent[8192];
	char			pe_conditions[2048];
	char			pe_meds[2048];
};

void		 persona_build(struct persona *, const struct profile *,
		    const char *, const char *);
const char	*persona_value(const struct persona *, const char *);
char		*persona_system(const struct persona *, const char *);
char		*persona_first_template(const struct persona *);
int		 persona_openai(const struct persona *,
		    void (*)(char *, void *), void *);
void		 prepare_start(const char *);

/* bridge.c - audio both ways */
void	bridge_caller_audio(struct call *, const char *, size_t);
void	bridge_agent_audio(struct call *, const char *, size_t, long long);
void	bridge_interruption(struct call *, long long);
int	bridge_formats(struct call *, const char *, const char *);
void	bridge_free(struct call *);
int	bridge_mark(struct call *, const char *);

/* call.c */
enum call_state {
	CS_HANDSHAKE,
	CS_WAIT_START,
	CS_BINDING,		/* checking the nonce against call:{sid} */
	CS_ACTIVE,
	CS_ENDING
};

struct call {
	enum call_state	 c_state;
	int		 c_fd;
	struct ws	*c_tw;
	struct event	*c_t_start;	/* no start in time */
	struct event	*c_t_max;	/* --max-call-seconds */
	struct event	*c_t_flush;	/* bounded wait for final frames */
	struct event	*c_t_bind;	/* bounded wait for Redis */
	char		 c_nonce[128];	/* from start.customParameters */
	char		 c_url_sid[40];	/* CallSid of a per-call stream URL */
	char		 c_phone[32];
	/* ElevenLabs side */
	enum el_state	 c_el_state;
	struct ws	*c_el;
	struct event	*c_t_el;	/* setup deadline, then keepalive */
	struct event	*c_t_load;	/* MSG_LOAD each second until DONE */
	uint64_t	 c_lag_max_ns;	/* this second's worst frame lag */
	uint32_t	 c_lag_frames;
	uint64_t	 c_tw_rx;	/* Twilio messages received */
	uint64_t	 c_tw_seen;	/* c_tw_rx at the last tick */
	long		 c_tw_idle;	/* ticks without a Twilio message */
	char		 c_conv_id[128];
	int		 c_el_close_code;
	char		 c_el_error[200];
	uint64_t	 c_t_started;	/* Twilio start, monotonic ns */
	/* bridge */
	struct tc	*c_tc_in;	/* caller -> agent, NULL: pass-through */
	struct tc	*c_tc_out;	/* agent -> caller */
	int		 c_passthrough_in, c_passthrough_out;
	long long	 c_interrupted;	/* drop agent audio <= this id */
	/* agent hang-up: mark, echo, REST */
	int		 c_agent_ending;
	char		 c_mark[32];
	struct event	*c_t_mark;
	int		 c_rest_pending;
	/* the person and the post-call steps */
	char		 c_user_id[64];
	int		 c_is_first_call;
	uint64_t	 c_t_started_ms;	/* wall clock at start */
	int		 c_session_written;
	int		 c_finishing;
	struct event	*c_t_post;	/* bound on the post-call steps */
	/* set-up only: freed once the init message is sent */
	struct profile	*c_profile;
	struct persona	*c_pe;		/* ~17 KiB of template variables */
	char		*c_system;	/* rendered system prompt */
	char		*c_first;	/* first message, prepared or not */
	int		 c_first_ready;
	uint64_t	 c_t_bound;	/* monotonic ns */
	struct event	*c_t_first;	/* polling for a prepared message */
	struct event	*c_t_quiet;	/* end_call: goodbye audio still coming */
	int		 c_end_tool;
	uint64_t	 c_t_end_tool;
	uint64_t	 c_t_begin;	/* monotonic ns at handoff */
	uint64_t	 c_t_handoff;
	char		 c_call_sid[64];
	char		 c_stream_sid[64];
	char		 c_call_type[16];
	char		 c_reason[64];
	struct msg_done	 c_cnt;
};

struct call	*call_new(int, const struct msg_handoff *, const uint8_t *,
		    size_t);
void		 call_set_state(struct call *, enum call_state);
void		 call_bind(struct call *, const char *, const char *);
void		 call_on_twilio(struct call *, const uint8_t *, size_t);
void		 call_end(struct call *, const char *);
void		 call_twilio_closed(struct call *, int);
void		 call_twilio_done(struct call *);
void		 call_twilio_mark(struct call *, const char *);
void		 call_el_ready(struct call *);
void		 call_el_closed(struct call *, int, const char *);
void		 call_el_done(struct call *);
void		 call_agent_hangup(struct call *, const char *);
void		 call_apologise(struct call *, const char *);
void		 call_try_init(struct call *);
void		 call_agent_end_tool(struct call *);
void		 call_agent_audio_seen(struct call *);

#endif
