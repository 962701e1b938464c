/*
 * config.c - the option table and configuration building.
 *
 * Used by main() in the supervisor at start, by -t, and again on
 * SIGHUP (a new struct config is built and validated; the caller swaps
 * it in only if config_build() succeeded).  Workers inherit the struct
 * the supervisor held when it forked them and never parse anything.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "redis.h"

#ifndef NAIBER_DATADIR
#define NAIBER_DATADIR	"/usr/local/share/naiberd"
#endif

#define O(f)	offsetof(struct config, f)
#define INTMAX	LONG_MAX

/* Keep sorted by key: the man-page check and -h walk it in this order. */
const struct opt config_opts[] = {
	{ "admission", "NAIBER_ADMISSION", 0, NULL, OT_BOOL, "true", 0, 0,
	  0, O(admission), NULL, "bool",
	  "Refuse new calls when measured headroom is gone; false: max_calls "
	  "only" },
	{ "admission_cpu", "NAIBER_ADMISSION_CPU", 0, NULL, OT_INT, "95", 1,
	  100, 0, O(admission_cpu), NULL, "percent",
	  "CPU pressure (time some task waited for a CPU) that closes "
	  "admission" },
	{ "admission_lag", "NAIBER_ADMISSION_LAG", 0, NULL, OT_INT, "10", 1,
	  10000, 0, O(admission_lag), NULL, "ms",
	  "Relay lag of live calls that closes admission" },
	{ "admission_memory", "NAIBER_ADMISSION_MEMORY", 0, NULL, OT_INT,
	  "256", 0, 1048576, 0, O(admission_memory), NULL, "MiB",
	  "Available memory below which admission closes; 0: not watched" },
	{ "api_token", "NAIBER_API_TOKEN", 0, NULL, OT_STR, NULL, 0, 0,
	  OF_SECRET, O(api_token), NULL, "token",
	  "Bearer token for /call, /sessions and /metrics; unset: loopback "
	  "clients only" },
	{ "base_url", "BASE_URL", 0, NULL, OT_URL, NULL, 0, 0,
	  0, O(base_url), NULL, "url",
	  "Public base URL of this service" },
	{ "bullmq_prefix", "NAIBER_BULLMQ_PREFIX", 0, NULL, OT_STR, "bull", 0,
	  0, 0, O(bullmq_prefix), NULL, "prefix",
	  "BullMQ key prefix of the post-call queue" },
	{ "database_timeout", "NAIBER_DATABASE_TIMEOUT", 0, NULL, OT_INT,
	  "3000", 100, 60000, 0, O(database_timeout), NULL, "ms",
	  "Longest wait for the person's profile (connect and queries)" },
	{ "database_url", "DATABASE_URL", 0, NULL, OT_URL, NULL, 0, 0,
	  OF_SECRET | OF_REQUIRED, O(database_url), NULL, "url",
	  "PostgreSQL connection URL" },
	{ "dns_timeout", "NAIBER_DNS_TIMEOUT", 0, NULL, OT_INT, "5000", 100,
	  60000, OF_NORELOAD, O(dns_timeout), NULL, "ms",
	  "Longest wait for a host name to resolve" },
	{ "drain_timeout", "NAIBER_DRAIN_TIMEOUT", 0, "drain-timeout", OT_INT,
	  "600", 0, 86400, 0, O(drain_timeout), NULL, "seconds",
	  "How long live calls may run after SIGTERM" },
	{ "elevenlabs_agent_id", "ELEVENLABS_AGENT_ID", 0, NULL, OT_STR, NULL,
	  0, 0, OF_REQUIRED, O(elevenlabs_agent_id), NULL, "id",
	  "ElevenLabs conversational agent id" },
	{ "elevenlabs_api_key", "ELEVENLABS_API_KEY", 0, NULL, OT_STR, NULL,
	  0, 0, OF_SECRET | OF_REQUIRED, O(elevenlabs_api_key), NULL, "key",
	  "ElevenLabs API key (xi-api-key)" },
	{ "elevenlabs_base_url", "ELEVENLABS_BASE_URL", 0, NULL, OT_URL,
	  "https://api.elevenlabs.io", 0, 0, 0, O(elevenlabs_base_url), NULL,
	  "url", "ElevenLabs API base URL" },
	{ "elevenlabs_language", "ELEVENLABS_LANGUAGE", 0, NULL, OT_STR,
	  NULL, 0, 0, 0, O(elevenlabs_language), NULL, "code",
	  "Language override sent to the agent (e.g. en); unset: none" },
	{ "elevenlabs_number_id", "ELEVENLABS_NUMBER_ID", 0, NULL, OT_STR,
	  NULL, 0, 0, 0, O(elevenlabs_number_id), NULL, "id",
	  "ElevenLabs phone number id (accepted for compatibility)" },
	{ "elevenlabs_timeout", "NAIBER_ELEVENLABS_TIMEOUT", 0, NULL, OT_INT,
	  "5000", 100, 60000, 0, O(elevenlabs_timeout), NULL, "ms",
	  "Longest wait for the signed URL; twice this for the conversation "
	  "to start" },
	{ "elevenlabs_voice_id", "ELEVENLABS_VOICE_ID", 0, NULL, OT_STR, NULL,
	  0, 0, 0, O(elevenlabs_voice_id), NULL, "id",
	  "Voice id override sent to the agent" },
	{ "first_message_wait", "NAIBER_FIRST_MESSAGE_WAIT", 0,
	  "first-message-wait", OT_INT, "1500", 0, 10000, 0,
	  O(first_message_wait), NULL, "ms",
	  "Longest wait for a prepared first message" },
	{ "head_timeout", "NAIBER_HEAD_TIMEOUT", 0, NULL, OT_INT, "10", 1,
	  300, 0, O(head_timeout), NULL, "seconds",
	  "Time allowed to receive a request head" },
	{ "listen", "NAIBER_LISTEN", 'l', NULL, OT_STR, "0.0.0.0", 0, 0,
	  OF_NORELOAD, O(listen_addr), NULL, "address",
	  "Address to listen on" },
	{ "log_format", "NAIBER_LOG_FORMAT", 0, "log-format", OT_CHOICE,
	  "text", 0, 0, 0, O(log_format), "text|json", "format",
	  "Log line format" },
	{ "log_level", "NAIBER_LOG_LEVEL", 0, "log-level", OT_CHOICE, "info",
	  0, 0, 0, O(log_level), "error|warn|info|debug", "level",
	  "Lowest level logged" },
	{ "log_target", "NAIBER_LOG_TARGET", 0, NULL, OT_CHOICE, "stderr", 0,
	  0, 0, O(log_target), "stderr|syslog", "target",
	  "Where log lines go" },
	{ "max_call_seconds", "NAIBER_MAX_CALL_SECONDS", 0, "max-call-seconds",
	  OT_INT, "3600", 10, 86400, 0, O(max_call_seconds), NULL, "seconds",
	  "Longest call before it is ended" },
	{ "max_calls", "NAIBER_MAX_CALLS", 'm', NULL, OT_INT, "100", 1, 10000,
	  0, O(max_calls), NULL, "n", "Most calls in progress at once" },
	{ "max_conns_per_ip", "NAIBER_MAX_CONNS_PER_IP", 0, NULL, OT_INT,
	  "256", 0, 1024, 0, O(max_conns_per_ip), NULL, "n",
	  "HTTP connections one source address may hold; 0: no limit" },
	{ "ngrok_api_url", "NGROK_API_URL", 0, NULL, OT_URL,
	  "http://127.0.0.1:4040", 0, 0, 0, O(ngrok_api_url), NULL, "url",
	  "ngrok agent API used with use_dynamic_ngrok" },
	{ "openai_api_key", "OPENAI_API_KEY", 0, NULL, OT_STR, NULL, 0, 0,
	  OF_SECRET, O(openai_api_key), NULL, "key",
	  "OpenAI key for generated first messages; unset: templates" },
	{ "openai_base_url", "OPENAI_BASE_URL", 0, NULL, OT_URL,
	  "https://api.openai.com/v1", 0, 0, 0, O(openai_base_url), NULL,
	  "url", "OpenAI API base URL, including /v1" },
	{ "openai_model", "OPENAI_MODEL", 0, NULL, OT_STR, "gpt-4o", 0, 0, 0,
	  O(openai_model), NULL, "model",
	  "Model for generated first messages" },
	{ "phone_number", "PHONE_NUMBER", 0, NULL, OT_STR, NULL, 0, 0, 0,
	  O(phone_number), NULL, "e164", "Number dialled when a request names "
	  "none" },
	{ "pidfile", "NAIBER_PIDFILE", 0, "pidfile", OT_STR, NULL, 0, 0,
	  OF_NORELOAD, O(pidfile), NULL, "file",
	  "PID file written with -D" },
	{ "port", "PORT", 'p', NULL, OT_INT, "3000", 1, 65535, OF_NORELOAD,
	  O(port), NULL, "port", "TCP port to listen on" },
	{ "prompts_dir", "NAIBER_PROMPTS_DIR", 0, NULL, OT_STR,
	  NAIBER_DATADIR "/prompts", 0, 0, 0, O(prompts_dir), NULL,
	  "dir", "Directory of prompt templates" },
	{ "redis_url", "REDIS_URL", 0, NULL, OT_URL, "redis://localhost:6379",
	  0, 0, OF_SECRET | OF_NORELOAD, O(redis_url), NULL, "url",
	  "Redis URL, with password and db number" },
	{ "relay_coalesce", "NAIBER_RELAY_COALESCE", 0, NULL, OT_INT, "0", 0,
	  1000, 0, O(relay_coalesce), NULL, "ms",
	  "Read the agent's socket on the caller's frames, at most this "
	  "late; 0: on its own wake-ups" },
	{ "request_min_rate", "NAIBER_REQUEST_MIN_RATE", 0, NULL, OT_INT,
	  "1024", 0, 1048576, 0, O(request_min_rate), NULL, "bytes/s",
	  "Slowest a request may arrive after its first 2 s; 0: no floor" },
	{ "resolv_conf", "NAIBER_RESOLV_CONF", 0, NULL, OT_STR,
	  "/etc/resolv.conf", 0, 0, OF_NORELOAD, O(resolv_conf), NULL, "file",
	  "Nameservers to ask (resolv.conf format; /etc/hosts is read too)" },
	{ "sched_slice", "NAIBER_SCHED_SLICE", 0, NULL, OT_INT, "100", 0,
	  100000, OF_NORELOAD, O(sched_slice), NULL, "us",
	  "CPU time slice asked of the kernel (Linux 6.12+); 0: default" },
	{ "spool_dir", "NAIBER_SPOOL_DIR", 0, "spool-dir", OT_STR,
	  "/var/spool/naiberd", 0, 0, 0, O(spool_dir), NULL, "dir",
	  "Where post-call jobs wait while Redis is down" },
	{ "stream_url", "STREAM_URL", 0, NULL, OT_URL, NULL, 0, 0, 0,
	  O(stream_url), NULL, "url",
	  "Public wss:// URL Twilio streams to (signature base)" },
	{ "tls_ca_file", "TLS_CA_FILE", 0, NULL, OT_STR, NULL, 0, 0, OF_NORELOAD,
	  O(tls_ca_file), NULL, "file", "Extra trust anchor (PEM)" },
	{ "twilio_account_sid", "TWILIO_ACCOUNT_SID", 0, NULL, OT_STR, NULL,
	  0, 0, OF_REQUIRED, O(twilio_account_sid), NULL, "sid",
	  "Twilio Account SID" },
	{ "twilio_api_base", "TWILIO_API_BASE", 0, NULL, OT_URL,
	  "https://api.twilio.com", 0, 0, 0, O(twilio_api_base), NULL, "url",
	  "Twilio REST API base URL" },
	{ "twilio_auth_token", "TWILIO_AUTH_TOKEN", 0, NULL, OT_STR, NULL, 0,
	  0, OF_SECRET | OF_REQUIRED, O(twilio_auth_token), NULL, "token",
	  "Twilio Auth Token (REST and signatures)" },
	{ "twilio_number", "TWILIO_NUMBER", 0, NULL, OT_STR, NULL, 0, 0,
	  OF_REQUIRED, O(twilio_number), NULL, "e164",
	  "Our Twilio number (From)" },
	{ "twilio_url", "TWILIO_URL", 0, NULL, OT_URL, NULL, 0, 0, 0,
	  O(twilio_url), NULL, "url",
	  "Public https:// base for /twiml and /status-callback" },
	{ "use_dynamic_ngrok", "USE_DYNAMIC_NGROK", 0, NULL, OT_BOOL, "false",
	  0, 0, OF_NORELOAD, O(use_dynamic_ngrok), NULL, "bool",
	  "Derive public URLs from the ngrok agent" },
	{ "user", "NAIBER_USER", 'u', NULL, OT_STR, NULL, 0, 0, OF_NORELOAD,
	  O(user), NULL, "user", "Drop privileges to this user" },
	{ "worker_stall", "NAIBER_WORKER_STALL", 0, NULL, OT_INT, "10", 2,
	  600, 0, O(worker_stall), NULL, "seconds",
	  "A busy worker silent this long is killed; a call with no Twilio "
	  "message this long is ended" },
	{ "workers", "NAIBER_WORKERS", 'w', NULL, OT_INT, "4", 1, 1000, 0,
	  O(workers), NULL, "n", "Idle workers kept ready" },
};
const size_t config_nopts = sizeof(config_opts) / sizeof(config_opts[0]);

struct cfg_raw {
	const char	*cr_val;
	char		 cr_where[128];
	char		*cr_own;	/* allocated copy (file values) */
};

static int	 config_file(const char *, int, struct cfg_raw *,
		    struct cfg_errors *);
static void	 config_set(const struct opt *, struct config *,
		    const struct cfg_raw *, struct cfg_errors *);
static int	 config_bool(const char *);
static int	 config_url_ok(const char *);
static void	 config_cross(struct config *, struct cfg_errors *);
static char	*config_trim(char *);

void
config_error(struct cfg_errors *e, const char *fmt, ...)
{
	va_list	ap;

	if (e->ce_n >= CONFIG_MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(e->ce_msg[e->ce_n++], sizeof(e->ce_msg[0]), fmt, ap);
	va_end(ap);
}

int
config_find_long(const char *name)
{
	size_t	i;

	for (i = 0; i < config_nopts; i++)
		if (config_opts[i].o_long != NULL &&
		    strcmp(config_opts[i].o_long, name) == 0)
			return (int)i;
	return -1;
}

int
config_find_short(int c)
{
	size_t	i;

	for (i = 0; i < config_nopts; i++)
		if (config_opts[i].o_short == c)
			return (int)i;
	return -1;
}

static int
config_find_key(const char *key)
{
	size_t	i;

	for (i = 0; i < config_nopts; i++)
		if (strcmp(config_opts[i].o_key, key) == 0)
			return (int)i;
	return -1;
}

static char *
config_trim(char *s)
{
	char	*e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/*
 * key = value lines; '#' starts a comment line; values may be quoted
 * with double quotes.  A file that holds a secret must not be readable
 * by group or others.
 */
static int
config_file(const char *path, int must_exist, struct cfg_raw *raw,
    struct cfg_errors *e)
{
	FILE		*fp;
	char		 line[4096], *k, *v, *eq;
	int		 lineno = 0, i, secret = 0;
	struct stat	 st;

	if ((fp = fopen(path, "r")) == NULL) {
		if (errno == ENOENT && !must_exist)
			return 0;
		config_error(e, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) == -1 || S_ISDIR(st.st_mode)) {
		config_error(e, "%s: is a directory", path);
		fclose(fp);
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			config_error(e, "%s:%d: line too long", path, lineno);
			while (fgets(line, sizeof(line), fp) != NULL &&
			    strchr(line, '\n') == NULL)
				;
			continue;
		}
		k = config_trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		if ((eq = strchr(k, '=')) == NULL) {
			config_error(e, "%s:%d: expected key = value", path,
			    lineno);
			continue;
		}
		*eq = '\0';
		k = config_trim(k);
		v = config_trim(eq + 1);
		if (v[0] == '"' && strlen(v) >= 2 && v[strlen(v) - 1] == '"') {
			v[strlen(v) - 1] = '\0';
			v++;
		}
		if ((i = config_find_key(k)) == -1) {
			config_error(e, "%s:%d: unknown key \"%s\"", path,
			    lineno, k);
			continue;
		}
		if (config_opts[i].o_flags & OF_SECRET)
			secret = 1;
		if (*v == '\0')
			continue;	/* empty: as if not set */
		free(raw[i].cr_own);
		if ((raw[i].cr_own = strdup(v)) == NULL) {
			config_error(e, "%s:%d: out of memory", path, lineno);
			continue;
		}
		raw[i].cr_val = raw[i].cr_own;
		snprintf(raw[i].cr_where, sizeof(raw[i].cr_where), "%s:%d",
		    path, lineno);
	}
	fclose(fp);
	if (secret && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		config_error(e, "%s: holds secrets but is accessible by group "
		    "or others (mode %03o); chmod 600 it", path,
		    (unsigned)(st.st_mode & 0777));
	return 0;
}

static int
config_bool(const char *s)
{
	if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") ||
	    !strcasecmp(s, "on") || !strcmp(s, "1"))
		return 1;
	if (!strcasecmp(s, "false") || !strcasecmp(s, "no") ||
	    !strcasecmp(s, "off") || !strcmp(s, "0") || *s == '\0')
		return 0;
	return -1;
}

static int
config_url_ok(const char *s)
{
	static const char *const schemes[] = { "http://", "https://", "ws://",
	    "wss://", "redis://", "rediss://", "postgres://",
	    "postgresql://", NULL };
	size_t	i, n;

	for (i = 0; schemes[i] != NULL; i++) {
		n = strlen(schemes[i]);
		if (strncasecmp(s, schemes[i], n) == 0 && s[n] != '\0' &&
		    s[n] != '/' && strpbrk(s, " \t\r\n\"<>") == NULL)
			return 1;
	}
	return 0;
}

static void
config_set(const struct opt *o, struct config *c, const struct cfg_raw *r,
    struct cfg_errors *e)
{
	char		*p = (char *)c + o->o_off, *end;
	const char	*v = r->cr_val;
	long		 n;
	size_t		 len;
	int		 b;

	switch (o->o_type) {
	case OT_INT:
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0' || n < o->o_min ||
		    n > o->o_max) {
			config_error(e, "%s: %s: \"%s\" is not an integer in "
			    "%ld..%ld", r->cr_where, o->o_key, v, o->o_min,
			    o->o_max);
			return;
		}
		memcpy(p, &n, sizeof(n));
		return;
	case OT_BOOL:
		if ((b = config_bool(v)) == -1) {
			config_error(e, "%s: %s: \"%s\" is not true or false",
			    r->cr_where, o->o_key, v);
			return;
		}
		memcpy(p, &b, sizeof(b));
		return;
	case OT_CHOICE:
		len = strlen(v);
		for (end = (char *)o->o_choices; *end != '\0';) {
			size_t w = strcspn(end, "|");
			if (w == len && strncasecmp(end, v, len) == 0)
				break;
			end += w + (end[w] == '|');
		}
		if (len == 0 || *end == '\0') {
			config_error(e, "%s: %s: \"%s\" is not one of %s",
			    r->cr_where, o->o_key, v, o->o_choices);
			return;
		}
		break;
	case OT_URL:
		if (*v != '\0' && !config_url_ok(v)) {
			config_error(e, "%s: %s: not an absolute URL",
			    r->cr_where, o->o_key);
			return;
		}
		break;
	case OT_STR:
		break;
	}
	if (*v == '\0')
		return;		/* empty means unset */
	if (strlen(v) > 4096) {
		config_error(e, "%s: %s: value too long", r->cr_where, o->o_key);
		return;
	}
	if ((end = strdup(v)) == NULL) {
		config_error(e, "%s: out of memory", o->o_key);
		return;
	}
	memcpy(p, &end, sizeof(end));
}

static void
config_cross(struct config *c, struct cfg_errors *e)
{
	const char	*why;
	size_t		 i;
	char		*v;

	for (i = 0; i < config_nopts; i++) {
		const struct opt *o = &config_opts[i];
		if (!(o->o_flags & OF_REQUIRED))
			continue;
		memcpy(&v, (char *)c + o->o_off, sizeof(v));
		if (v == NULL)
			config_error(e, "%s (%s) is required but not set",
			    o->o_key, o->o_env);
	}
	if (!c->use_dynamic_ngrok) {
		if (c->stream_url == NULL)
			config_error(e, "stream_url (STREAM_URL) is required "
			    "unless use_dynamic_ngrok is true");
		if (c->twilio_url == NULL)
			config_error(e, "twilio_url (TWILIO_URL) is required "
			    "unless use_dynamic_ngrok is true");
	}
	if (c->stream_url != NULL && (strncasecmp(c->stream_url, "wss://", 6)
	    != 0 || strchr(c->stream_url, '?') != NULL))
		config_error(e, "stream_url: Twilio streams only to a wss:// "
		    "URL without a query string");
	if (c->twilio_url != NULL && strncasecmp(c->twilio_url, "http", 4))
		config_error(e, "twilio_url: must be an http(s):// URL");
	if (c->redis_url != NULL && (why = rds_url_error(c->redis_url)) !=
	    NULL)
		config_error(e, "redis_url: not a usable redis:// or rediss:// "
		    "URL: %s", why);
	if (c->workers > c->max_calls)
		config_error(e, "workers (%ld) must not exceed max_calls (%ld)",
		    c->workers, c->max_calls);
}

/*
 * The prompts of the source checkout this binary was built in, if it runs
 * from one (<checkout>/build/naiberd, or one level deeper such as
 * build/asan/naiberd): a directory that holds prompts/ and
 * supervisor/main.c.  Looked up once, before privileges are dropped, so a
 * reload sees the same answer.  NULL for an installed binary.
 */
static const char *
config_checkout_prompts(void)
{
	static int	 done;
	static char	 found[PATH_MAX];
	char		 exe[PATH_MAX], probe[PATH_MAX + 32], *slash;
	struct stat	 st;
	ssize_t		 n;
	int		 up;

	if (done)
		return found[0] != '\0' ? found : NULL;
	done = 1;
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) <= 0)
		return NULL;
	exe[n] = '\0';
	for (up = 0; up < 3; up++) {
		if ((slash = strrchr(exe, '/')) == NULL || slash == exe)
			return NULL;
		*slash = '\0';
		if (up == 0)
			continue;	/* the binary's own directory */
		snprintf(probe, sizeof(probe), "%s/supervisor/main.c", exe);
		if (stat(probe, &st) == -1 || !S_ISREG(st.st_mode))
			continue;
		snprintf(probe, sizeof(probe), "%s/prompts", exe);
		if (stat(probe, &st) == -1 || !S_ISDIR(st.st_mode) ||
		    strlen(probe) >= sizeof(found))
			continue;
		memcpy(found, probe, strlen(probe) + 1);
		return found;
	}
	return NULL;
}

/*
 * Build a configuration from defaults, the file (path; must_exist when
 * named with -c), the environment and the overrides.  NULL if any error
 * was gathered in e.
 */
struct config *
config_build(const char *path, int must_exist, const struct cfg_override *ov,
    size_t nov, struct cfg_errors *e)
{
	struct cfg_raw	*raw;
	struct config	*c;
	size_t		 i;
	const char	*v;

	e->ce_n = 0;
	if ((raw = calloc(config_nopts, sizeof(*raw))) == NULL ||
	    (c = calloc(1, sizeof(*c))) == NULL) {
		free(raw);
		config_error(e, "out of memory");
		return NULL;
	}
	for (i = 0; i < config_nopts; i++) {
		raw[i].cr_val = config_opts[i].o_def;
		snprintf(raw[i].cr_where, sizeof(raw[i].cr_where), "default");
		if (config_opts[i].o_off == O(prompts_dir) &&
		    (v = config_checkout_prompts()) != NULL) {
			raw[i].cr_val = v;
			snprintf(raw[i].cr_where, sizeof(raw[i].cr_where),
			    "the checkout");
		}
	}
	if (path != NULL)
		config_file(path, must_exist, raw, e);
	for (i = 0; i < config_nopts; i++) {
		const struct opt *o = &config_opts[i];
		/* An empty variable counts as unset, as in the original. */
		if (o->o_env != NULL && (v = getenv(o->o_env)) != NULL &&
		    v[0] != '\0') {
			raw[i].cr_val = v;
			snprintf(raw[i].cr_where, sizeof(raw[i].cr_where),
			    "environment %s", o->o_env);
		}
	}
	for (i = 0; i < nov; i++) {
		const struct opt *o = &config_opts[ov[i].co_opt];
		raw[ov[i].co_opt].cr_val = ov[i].co_val;
		if (o->o_long != NULL)
			snprintf(raw[ov[i].co_opt].cr_where,
			    sizeof(raw[0].cr_where), "flag --%s", o->o_long);
		else
			snprintf(raw[ov[i].co_opt].cr_where,
			    sizeof(raw[0].cr_where), "flag -%c", o->o_short);
	}
	for (i = 0; i < config_nopts; i++)
		if (raw[i].cr_val != NULL)
			config_set(&config_opts[i], c, &raw[i], e);
	config_cross(c, e);
	if (path != NULL)
		c->cf_file = strdup(path);
	for (i = 0; i < config_nopts; i++)
		free(raw[i].cr_own);
	free(raw);
	if (e->ce_n > 0) {
		config_free(c);
		return NULL;
	}
	return c;
}

void
config_free(struct config *c)
{
	size_t	i;
	char	*v;

	if (c == NULL)
		return;
	for (i = 0; i < config_nopts; i++) {
		const struct opt *o = &config_opts[i];
		if (o->o_type == OT_INT || o->o_type == OT_BOOL)
			continue;
		memcpy(&v, (char *)c + o->o_off, sizeof(v));
		free(v);
	}
	free(c->cf_file);
	free(c);
}

/* Values compared as text; secrets are named, never shown. */
int
config_noreload_changed(const struct config *a, const struct config *b,
    char *names, size_t cap)
{
	size_t	i, n = 0;
	int	changed = 0;

	names[0] = '\0';
	for (i = 0; i < config_nopts; i++) {
		const struct opt *o = &config_opts[i];
		const char *pa = (const char *)a + o->o_off;
		const char *pb = (const char *)b + o->o_off;
		int diff;
		if (!(o->o_flags & OF_NORELOAD))
			continue;
		if (o->o_type == OT_INT)
			diff = memcmp(pa, pb, sizeof(long)) != 0;
		else if (o->o_type == OT_BOOL)
			diff = memcmp(pa, pb, sizeof(int)) != 0;
		else {
			const char *sa, *sb;
			memcpy(&sa, pa, sizeof(sa));
			memcpy(&sb, pb, sizeof(sb));
			diff = (sa == NULL) != (sb == NULL) ||
			    (sa != NULL && strcmp(sa, sb) != 0);
		}
		if (diff) {
			changed = 1;
			n += (size_t)snprintf(names + n, n < cap ? cap - n : 0,
			    "%s%s", n ? ", " : "", o->o_key);
		}
	}
	return changed;
}

int
config_has_api_token(const struct config *c)
{
	return c->api_token != NULL && c->api_token[0] != '\0';
}
