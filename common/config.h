/*
 * config.h - the option table and the configuration it builds.
 *
 * One row per setting drives the config file parser, the environment,
 * the command line, `naiberd -t`, usage() and the man-page check.
 * Precedence, lowest first: default < file < environment < flag.
 * config_build() never stops at the first problem: it gathers every
 * one as "where: message" and returns NULL if there was any.
 */
#ifndef NAIBER_CONFIG_H
#define NAIBER_CONFIG_H

#include <stddef.h>

struct prompt_set;

#define NAIBER_VERSION		"0.1.0"
#define CONFIG_DEFAULT_FILE	"/etc/naiber/naiberd.conf"
#define CONFIG_MAX_ERRORS	64

enum opt_type {
	OT_STR,		/* any text */
	OT_INT,		/* decimal integer within [min, max] */
	OT_BOOL,	/* true/false, yes/no, on/off, 1/0 */
	OT_URL,		/* absolute http(s):// or ws(s):// or redis:// URL */
	OT_CHOICE	/* one of the words in choices */
};

#define OF_SECRET	0x01	/* never logged; file must not be group/other readable */
#define OF_NORELOAD	0x02	/* fixed at start; a change on SIGHUP is warned about */
#define OF_REQUIRED	0x04	/* must be set */

struct opt {
	const char	*o_key;		/* config file key */
	const char	*o_env;		/* environment name, or NULL */
	int		 o_short;	/* short flag, or 0 */
	const char	*o_long;	/* long flag, or NULL */
	enum opt_type	 o_type;
	const char	*o_def;		/* default as text, or NULL */
	long		 o_min, o_max;
	int		 o_flags;
	size_t		 o_off;		/* offset in struct config */
	const char	*o_choices;	/* "a|b|c" for OT_CHOICE */
	const char	*o_arg;		/* argument name for usage and man */
	const char	*o_doc;
};

struct config {
	/* supervisor */
	long	 port;
	char	*listen_addr;
	long	 workers;
	long	 max_calls;
	char	*user;
	char	*pidfile;
	char	*log_format;
	char	*log_level;
	char	*log_target;
	long	 drain_timeout;
	long	 max_call_seconds;
	long	 first_message_wait;
	long	 sched_slice;
	char	*spool_dir;
	char	*prompts_dir;
	char	*api_token;
	long	 head_timeout;
	long	 max_conns_per_ip;
	long	 request_min_rate;
	long	 relay_coalesce;	/* ms; 0: agent socket polled by epoll */
	long	 worker_stall;	/* seconds without a heartbeat or media */
	/* admission from measured headroom */
	int	 admission;
	long	 admission_lag;
	long	 admission_cpu;
	long	 admission_memory;
	/* Twilio */
	char	*twilio_account_sid;
	char	*twilio_auth_token;
	char	*twilio_number;
	char	*twilio_api_base;
	char	*phone_number;
	/* public URLs */
	char	*base_url;
	char	*twilio_url;
	char	*stream_url;
	int	 use_dynamic_ngrok;
	char	*ngrok_api_url;
	/* ElevenLabs */
	char	*elevenlabs_api_key;
	char	*elevenlabs_agent_id;
	char	*elevenlabs_base_url;
	char	*elevenlabs_number_id;
	char	*elevenlabs_voice_id;
	char	*elevenlabs_language;
	/* OpenAI */
	char	*openai_api_key;
	char	*openai_base_url;
	char	*openai_model;
	/* stores */
	char	*redis_url;
	char	*database_url;
	char	*tls_ca_file;
	char	*bullmq_prefix;
	long	 database_timeout;
	long	 elevenlabs_timeout;
	/* resolver */
	char	*resolv_conf;
	long	 dns_timeout;

	/* derived, filled by config_build() */
	char	*cf_file;	/* file that was read, or NULL */
	struct prompt_set *cf_prompts;	/* set by the supervisor */
};

/* A value given on the command line, kept for reloads. */
struct cfg_override {
	int		 co_opt;	/* index in config_opts */
	const char	*co_val;
};

struct cfg_errors {
	int	 ce_n;
	char	 ce_msg[CONFIG_MAX_ERRORS][256];
};

extern const struct opt	config_opts[];
extern const size_t	config_nopts;

int		 config_find_long(const char *);
int		 config_find_short(int);
struct config	*config_build(const char *, int, const struct cfg_override *,
		    size_t, struct cfg_errors *);
void		 config_free(struct config *);
void		 config_error(struct cfg_errors *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
/* Names the keys whose values differ and cannot change on reload. */
int		 config_noreload_changed(const struct config *,
		    const struct config *, char *, size_t);
int		 config_has_api_token(const struct config *);

#endif
