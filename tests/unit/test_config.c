/*
 * test_config.c - unit tests for common/config.c: the option table and
 * config_build().  Precedence default < file < environment < flag, all
 * problems gathered at once with their "file:line" or origin, the
 * secrecy rule for files holding secrets, cross checks, and the list of
 * keys that cannot change on reload.  Every test starts from an empty
 * environment (each o_env of config_opts unset) and writes its files
 * with mkstemp(); teardown removes them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define NFILES	16

static char	files[NFILES][64];
static int	nfiles;

static int	setup(void **);
static int	teardown(void **);
static void	clear_env(void);
static void	set_required_env(void);
static const char *write_file(const char *, mode_t);
static int	count_errors(const struct cfg_errors *, const char *);
static void	expect_error(const struct cfg_errors *, const char *,
		    const char *);
static struct cfg_override ov_short(int, const char *);
static struct cfg_override ov_long(const char *, const char *);
static int	n_required(void);
static void	test_defaults(void **);
static void	test_precedence(void **);
static void	test_precedence_layers(void **);
static void	test_find(void **);
static void	test_table(void **);
static void	test_required_all_at_once(void **);
static void	test_invalid_gathered(void **);
static void	test_invalid_origins(void **);
static void	test_unknown_key(void **);
static void	test_secret_file_mode(void **);
static void	test_nonsecret_file_mode(void **);
static void	test_file_syntax(void **);
static void	test_missing_file(void **);
static void	test_empty_env_unset(void **);
static void	test_empty_env_falls_back(void **);
static void	test_stream_url(void **);
static void	test_dynamic_ngrok(void **);
static void	test_workers_max_calls(void **);
static void	test_noreload_changed(void **);
static void	test_noreload_small_buffer(void **);

static int
setup(void **state)
{
	(void)state;
	clear_env();
	nfiles = 0;
	return 0;
}

static int
teardown(void **state)
{
	int	i;

	(void)state;
	for (i = 0; i < nfiles; i++)
		unlink(files[i]);
	nfiles = 0;
	clear_env();
	return 0;
}

/* The machine's environment must not leak into a test. */
static void
clear_env(void)
{
	size_t	i;

	for (i = 0; i < config_nopts; i++)
		if (config_opts[i].o_env != NULL)
			assert_int_equal(unsetenv(config_opts[i].o_env), 0);
}

static void
set_required_env(void)
{
	setenv("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000", 1);
	setenv("TWILIO_AUTH_TOKEN", "authtoken", 1);
	setenv("TWILIO_NUMBER", "+15550100", 1);
	setenv("ELEVENLABS_API_KEY", "xi-key", 1);
	setenv("ELEVENLABS_AGENT_ID", "agent-1", 1);
	setenv("DATABASE_URL", "postgres://u:p@localhost/naiber", 1);
	setenv("STREAM_URL", "wss://voice.example.test/outbound-media-stream",
	    1);
	setenv("TWILIO_URL", "https://voice.example.test", 1);
}

/* A temporary file with this text and mode; removed by teardown. */
static const char *
write_file(const char *text, mode_t mode)
{
	const char	*tmp = getenv("TMPDIR");
	char		*p;
	int		 fd;

	assert_true(nfiles < NFILES);
	p = files[nfiles];
	snprintf(p, sizeof(files[0]), "%s/naiberd-conf.XXXXXX",
	    tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp");
	assert_true((fd = mkstemp(p)) != -1);
	nfiles++;
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return p;
}

static int
count_errors(const struct cfg_errors *e, const char *needle)
{
	int	i, n = 0;

	for (i = 0; i < e->ce_n; i++)
		if (strstr(e->ce_msg[i], needle) != NULL)
			n++;
	return n;
}

/* Some message holds both a and b (b may be NULL). */
static void
expect_error(const struct cfg_errors *e, const char *a, const char *b)
{
	int	i;

	for (i = 0; i < e->ce_n; i++)
		if (strstr(e->ce_msg[i], a) != NULL &&
		    (b == NULL || strstr(e->ce_msg[i], b) != NULL))
			return;
	for (i = 0; i < e->ce_n; i++)
		print_message("  error: %s\n", e->ce_msg[i]);
	fail_msg("no error with \"%s\" and \"%s\"", a, b ? b : "");
}

static struct cfg_override
ov_short(int c, const char *v)
{
	struct cfg_override	o;

	o.co_opt = config_find_short(c);
	assert_true(o.co_opt >= 0);
	o.co_val = v;
	return o;
}

static struct cfg_override
ov_long(const char *name, const char *v)
{
	struct cfg_override	o;

	o.co_opt = config_find_long(name);
	assert_true(o.co_opt >= 0);
	o.co_val = v;
	return o;
}

static int
n_required(void)
{
	size_t	i;
	int	n = 0;

	for (i = 0; i < config_nopts; i++)
		if (config_opts[i].o_flags & OF_REQUIRED)
			n++;
	return n;
}

static void
test_defaults(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;

	(void)state;
	set_required_env();
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(e.ce_n, 0);
	assert_int_equal(c->port, 3000);
	assert_int_equal(c->workers, 4);
	assert_int_equal(c->max_calls, 100);
	assert_int_equal(c->drain_timeout, 600);
	assert_int_equal(c->first_message_wait, 1500);
	assert_int_equal(c->head_timeout, 10);
	assert_int_equal(c->worker_stall, 10);
	assert_string_equal(c->listen_addr, "0.0.0.0");
	assert_string_equal(c->log_format, "text");
	assert_string_equal(c->log_level, "info");
	assert_string_equal(c->log_target, "stderr");
	assert_string_equal(c->twilio_api_base, "https://api.twilio.com");
	assert_string_equal(c->redis_url, "redis://localhost:6379");
	assert_int_equal(c->use_dynamic_ngrok, 0);
	assert_null(c->api_token);
	assert_false(config_has_api_token(c));
	assert_null(c->user);
	assert_null(c->cf_file);
	assert_string_equal(c->twilio_account_sid,
	    "AC00000000000000000000000000000000");
	assert_string_equal(c->stream_url,
	    "wss://voice.example.test/outbound-media-stream");
	config_free(c);
	config_free(NULL);

	/* A missing default file (must_exist 0) is no error. */
	c = config_build("/nonexistent/naiberd.conf", 0, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 3000);
	config_free(c);
}

static void
test_precedence(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	struct cfg_override	 ov[2];
	const char		*f;

	(void)state;
	set_required_env();
	f = write_file("port = 4000\nworkers = 5\nlog_level = debug\n"
	    "log_format = json\nphone_number = +15550111\n", 0600);
	setenv("PORT", "5000", 1);
	setenv("NAIBER_WORKERS", "6", 1);
	setenv("NAIBER_LOG_FORMAT", "text", 1);
	ov[0] = ov_short('p', "6000");
	ov[1] = ov_long("log-format", "json");
	c = config_build(f, 1, ov, 2, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 6000);		/* flag */
	assert_string_equal(c->log_format, "json");	/* flag */
	assert_int_equal(c->workers, 6);		/* environment */
	assert_string_equal(c->log_level, "debug");	/* file */
	assert_string_equal(c->phone_number, "+15550111");
	assert_int_equal(c->max_calls, 100);		/* default */
	assert_string_equal(c->cf_file, f);
	config_free(c);
}

/* Peel the layers off one at a time. */
static void
test_precedence_layers(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	struct cfg_override	 ov;
	const char		*f;

	(void)state;
	set_required_env();
	f = write_file("port = 4000\n", 0600);
	setenv("PORT", "5000", 1);
	ov = ov_short('p', "6000");
	c = config_build(f, 1, &ov, 1, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 6000);
	config_free(c);
	c = config_build(f, 1, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 5000);
	config_free(c);
	unsetenv("PORT");
	c = config_build(f, 1, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 4000);
	config_free(c);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 3000);
	config_free(c);
	/* A flag beats a file without the environment too. */
	c = config_build(f, 1, &ov, 1, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 6000);
	config_free(c);
	/* The last of two flags for one setting wins. */
	{
		struct cfg_override two[2];

		two[0] = ov_short('w', "2");
		two[1] = ov_short('w', "3");
		c = config_build(NULL, 0, two, 2, &e);
		assert_non_null(c);
		assert_int_equal(c->workers, 3);
		config_free(c);
	}
}

static void
test_find(void **state)
{
	(void)state;
	assert_string_equal(config_opts[config_find_short('p')].o_key,
	    "port");
	assert_string_equal(config_opts[config_find_short('w')].o_key,
	    "workers");
	assert_string_equal(config_opts[config_find_short('m')].o_key,
	    "max_calls");
	assert_string_equal(config_opts[config_find_short('l')].o_key,
	    "listen");
	assert_string_equal(config_opts[config_find_short('u')].o_key,
	    "user");
	assert_string_equal(config_opts[config_find_long("log-format")].o_key,
	    "log_format");
	assert_string_equal(config_opts[config_find_long("drain-timeout")]
	    .o_key, "drain_timeout");
	assert_int_equal(config_find_short('z'), -1);
	assert_int_equal(config_find_short('?'), -1);	/* getopt's error */
	assert_int_equal(config_find_long("port"), -1);
	assert_int_equal(config_find_long("log"), -1);
	assert_int_equal(config_find_long(""), -1);
}

/* The table is sorted by key, and each row is usable by -h and man. */
static void
test_table(void **state)
{
	size_t	i;

	(void)state;
	assert_true(config_nopts > 0);
	for (i = 0; i < config_nopts; i++) {
		const struct opt *o = &config_opts[i];

		assert_non_null(o->o_key);
		assert_non_null(o->o_doc);
		assert_non_null(o->o_arg);
		if (i > 0 && strcmp(config_opts[i - 1].o_key, o->o_key) >= 0)
			fail_msg("table not sorted at %s", o->o_key);
		if (o->o_flags & OF_REQUIRED)
			assert_non_null(o->o_env);
		if (o->o_type == OT_CHOICE)
			assert_non_null(o->o_choices);
		if (o->o_type == OT_INT) {
			assert_non_null(o->o_def);
			assert_true(o->o_min <= o->o_max);
		}
	}
}

static void
test_required_all_at_once(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	size_t			 i;

	(void)state;
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, n_required() + 2);
	for (i = 0; i < config_nopts; i++)
		if (config_opts[i].o_flags & OF_REQUIRED)
			expect_error(&e, config_opts[i].o_key,
			    config_opts[i].o_env);
	expect_error(&e, "stream_url", "STREAM_URL");
	expect_error(&e, "twilio_url", "TWILIO_URL");
	assert_int_equal(count_errors(&e, "required"), n_required() + 2);

	/* With some set, exactly the others are named. */
	setenv("TWILIO_ACCOUNT_SID", "AC1", 1);
	setenv("DATABASE_URL", "postgres://localhost/x", 1);
	setenv("STREAM_URL", "wss://x.test/s", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, n_required() - 2 + 1);
	assert_int_equal(count_errors(&e, "twilio_account_sid"), 0);
	assert_int_equal(count_errors(&e, "database_url"), 0);
	assert_int_equal(count_errors(&e, "stream_url"), 0);
	expect_error(&e, "twilio_url", NULL);
	expect_error(&e, "twilio_auth_token", NULL);
}

static void
test_invalid_gathered(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	const char		*f;
	char			 loc[96];

	(void)state;
	set_required_env();
	f = write_file(
	    "# invalid values, each on its own line\n"	/* 1 */
	    "port = 70000\n"				/* 2 */
	    "workers = abc\n"				/* 3 */
	    "log_format = xml\n"			/* 4 */
	    "use_dynamic_ngrok = maybe\n"		/* 5 */
	    "base_url = not a url\n"			/* 6 */
	    "max_calls = 12x\n"				/* 7 */
	    "openai_base_url = ftp://files.example.test\n", /* 8 */
	    0600);
	c = config_build(f, 1, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 7);
	snprintf(loc, sizeof(loc), "%s:2:", f);
	expect_error(&e, loc, "port");
	snprintf(loc, sizeof(loc), "%s:3:", f);
	expect_error(&e, loc, "workers");
	snprintf(loc, sizeof(loc), "%s:4:", f);
	expect_error(&e, loc, "log_format");
	snprintf(loc, sizeof(loc), "%s:5:", f);
	expect_error(&e, loc, "use_dynamic_ngrok");
	snprintf(loc, sizeof(loc), "%s:6:", f);
	expect_error(&e, loc, "base_url");
	snprintf(loc, sizeof(loc), "%s:7:", f);
	expect_error(&e, loc, "max_calls");
	snprintf(loc, sizeof(loc), "%s:8:", f);
	expect_error(&e, loc, "openai_base_url");
	/* Secrets never appear in messages. */
	assert_int_equal(count_errors(&e, "authtoken"), 0);
	assert_int_equal(count_errors(&e, "xi-key"), 0);

	/* Range ends. */
	setenv("PORT", "0", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	expect_error(&e, "port", "1..65535");
	setenv("PORT", "65535", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 65535);
	config_free(c);
	setenv("PORT", "99999999999999999999999", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	expect_error(&e, "environment PORT", "port");
	unsetenv("PORT");
	/* worker_stall: a heartbeat a second, so at least 2 s. */
	setenv("NAIBER_WORKER_STALL", "1", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	expect_error(&e, "worker_stall", "2..600");
	setenv("NAIBER_WORKER_STALL", "601", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	expect_error(&e, "worker_stall", "2..600");
	setenv("NAIBER_WORKER_STALL", "2", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->worker_stall, 2);
	config_free(c);
	unsetenv("NAIBER_WORKER_STALL");
}

/* Errors say where the value came from: environment or flag. */
static void
test_invalid_origins(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	struct cfg_override	 ov[3];

	(void)state;
	set_required_env();
	setenv("PORT", "abc", 1);
	setenv("USE_DYNAMIC_NGROK", "maybe", 1);
	setenv("REDIS_URL", "localhost:6379", 1);
	ov[0] = ov_short('w', "0");
	ov[1] = ov_long("log-format", "xml");
	ov[2] = ov_short('m', "-5");
	c = config_build(NULL, 0, ov, 3, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 6);
	expect_error(&e, "environment PORT", "\"abc\"");
	expect_error(&e, "environment USE_DYNAMIC_NGROK", "maybe");
	expect_error(&e, "environment REDIS_URL", "redis_url");
	expect_error(&e, "flag -w", "workers");
	expect_error(&e, "flag --log-format", "xml");
	expect_error(&e, "flag -m", "max_calls");
}

static void
test_unknown_key(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	const char		*f;
	char			 loc[96];

	(void)state;
	set_required_env();
	f = write_file("port = 4000\n"
	    "bogus_key = 1\n"
	    "PORT = 4001\n"
	    "workers = x\n"
	    "listen = 127.0.0.1\n"
	    "also_unknown = \"y\"\n", 0600);
	c = config_build(f, 1, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 4);
	snprintf(loc, sizeof(loc), "%s:2:", f);
	expect_error(&e, loc, "bogus_key");
	/* Keys are the lower-case names. */
	snprintf(loc, sizeof(loc), "%s:3:", f);
	expect_error(&e, loc, "PORT");
	/* Parsing went on after the unknown keys. */
	snprintf(loc, sizeof(loc), "%s:4:", f);
	expect_error(&e, loc, "workers");
	snprintf(loc, sizeof(loc), "%s:6:", f);
	expect_error(&e, loc, "also_unknown");
}

static void
test_secret_file_mode(void **state)
{
	static const mode_t	bad[] = { 0644, 0640, 0604, 0660, 0610 };
	struct cfg_errors	 e;
	struct config		*c;
	const char		*f;
	size_t			 i;

	(void)state;
	set_required_env();
	unsetenv("TWILIO_AUTH_TOKEN");
	f = write_file("port = 4000\ntwilio_auth_token = x\n", 0644);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(chmod(f, bad[i]), 0);
		c = config_build(f, 1, NULL, 0, &e);
		assert_null(c);
		assert_int_equal(e.ce_n, 1);
		expect_error(&e, f, "chmod 600");
		/* The secret itself is not in the message. */
		assert_int_equal(count_errors(&e, "= x"), 0);
	}
	assert_int_equal(chmod(f, 0600), 0);
	c = config_build(f, 1, NULL, 0, &e);
	assert_non_null(c);
	assert_string_equal(c->twilio_auth_token, "x");
	assert_int_equal(c->port, 4000);
	config_free(c);
	assert_int_equal(chmod(f, 0400), 0);
	c = config_build(f, 1, NULL, 0, &e);
	assert_non_null(c);
	config_free(c);

	/* Every secret key counts, e.g. database_url and api_token. */
	f = write_file("database_url = postgres://u:pw@db/x\n", 0644);
	c = config_build(f, 1, NULL, 0, &e);
	assert_null(c);
	expect_error(&e, f, "chmod 600");
	f = write_file("api_token = t0k3n\n", 0640);
	c = config_build(f, 1, NULL, 0, &e);
	assert_null(c);
	expect_error(&e, f, "chmod 600");
}

static void
test_nonsecret_file_mode(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	const char		*f;

	(void)state;
	set_required_env();
	f = write_file("port = 4000\nworkers = 2\nlog_level = warn\n", 0644);
	c = config_build(f, 1, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(e.ce_n, 0);
	assert_int_equal(c->port, 4000);
	assert_int_equal(c->workers, 2);
	assert_string_equal(c->log_level, "warn");
	config_free(c);
}

static void
test_file_syntax(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	const char		*f;
	char			 loc[96];

	(void)state;
	set_required_env();
	f = write_file(
	    "# naiberd.conf\n"
	    "\n"
	    "   # indented comment = with equals\n"
	    "\t\n"
	    "  port=4100  \n"
	    "phone_number = \"+1 555 0100\"\n"
	    "elevenlabs_voice_id = \"a=b # not a comment\"\n"
	    "spool_dir =   /var/tmp/spool   \n"
	    "prompts_dir = \"\"\n"
	    "log_level = \"DEBUG\"\n"
	    "user = \"\n"
	    "pidfile = \"/run/naiberd.pid\n"
	    "use_dynamic_ngrok = no\n"
	    "tls_ca_file = \"/etc/ssl/ca \"quoted\" file.pem\"\n"
	    "max_calls = 50\r\n"
	    "workers = 3", 0644);
	c = config_build(f, 1, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->port, 4100);
	assert_string_equal(c->phone_number, "+1 555 0100");
	assert_string_equal(c->elevenlabs_voice_id, "a=b # not a comment");
	assert_string_equal(c->spool_dir, "/var/tmp/spool");
	/*
	 * An empty quoted value counts as not set: the default stays (the
	 * prefix's, or the checkout's when this binary runs from build/).
	 */
	assert_true(strcmp(c->prompts_dir,
	    "/usr/local/share/naiberd/prompts") == 0 ||
	    (strlen(c->prompts_dir) > 8 && strcmp(c->prompts_dir +
	    strlen(c->prompts_dir) - 8, "/prompts") == 0 &&
	    access(c->prompts_dir, F_OK) == 0));
	assert_string_equal(c->log_level, "DEBUG");
	/* A lone or unbalanced quote is kept as text. */
	assert_string_equal(c->user, "\"");
	assert_string_equal(c->pidfile, "\"/run/naiberd.pid");
	assert_int_equal(c->use_dynamic_ngrok, 0);
	assert_string_equal(c->tls_ca_file, "/etc/ssl/ca \"quoted\" file.pem");
	assert_int_equal(c->max_calls, 50);
	/* The last line needs no newline. */
	assert_int_equal(c->workers, 3);
	config_free(c);

	/* A line without '=' is an error at its line; the rest is read. */
	f = write_file("port = 4200\njust some words\nworkers = zz\n", 0644);
	c = config_build(f, 1, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 2);
	snprintf(loc, sizeof(loc), "%s:2:", f);
	expect_error(&e, loc, "key = value");
	snprintf(loc, sizeof(loc), "%s:3:", f);
	expect_error(&e, loc, "workers");
}

static void
test_missing_file(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;

	(void)state;
	set_required_env();
	c = config_build("/nonexistent/naiberd.conf", 1, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 1);
	expect_error(&e, "/nonexistent/naiberd.conf", NULL);
	c = config_build("/", 1, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 1);
	expect_error(&e, "/", NULL);
	c = config_build("/", 0, NULL, 0, &e);
	assert_null(c);
}

/* An empty environment value leaves the setting unset. */
static void
test_empty_env_unset(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;

	(void)state;
	set_required_env();
	setenv("TWILIO_NUMBER", "", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 1);
	expect_error(&e, "twilio_number", "required");

	set_required_env();
	setenv("NAIBER_API_TOKEN", "", 1);
	setenv("OPENAI_API_KEY", "", 1);
	setenv("BASE_URL", "", 1);
	setenv("USE_DYNAMIC_NGROK", "", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	assert_null(c->api_token);
	assert_false(config_has_api_token(c));
	assert_null(c->openai_api_key);
	assert_null(c->base_url);
	assert_int_equal(c->use_dynamic_ngrok, 0);
	config_free(c);
}

/*
 * "Empty means unset" for the environment: an empty variable is as if
 * it were not there, so the file or the built-in default shows through
 * (PORT= in an env file must not stop the daemon, nor drop the file's
 * value).  All mismatches are listed together.
 */
static void
test_empty_env_falls_back(void **state)
{
	static const struct {
		const char	*env;
		const char	*file;	/* or NULL */
		const char	*want;	/* as text */
	} cases[] = {
		{ "PORT", NULL, "3000" },
		{ "NAIBER_LOG_FORMAT", NULL, "text" },
		{ "NAIBER_LISTEN", NULL, "0.0.0.0" },
		{ "NAIBER_SPOOL_DIR", NULL, "/var/spool/naiberd" },
		{ "REDIS_URL", NULL, "redis://localhost:6379" },
		{ "PORT", "port = 4000\n", "4000" },
		{ "PHONE_NUMBER", "phone_number = +15550111\n", "+15550111" },
		{ "NAIBER_SPOOL_DIR", "spool_dir = /srv/spool\n",
		    "/srv/spool" },
		{ "USE_DYNAMIC_NGROK", "use_dynamic_ngrok = true\n", "1" },
	};
	struct cfg_errors	 e;
	struct config		*c;
	const struct opt	*o;
	const char		*f, *sv;
	char			 msg[4096], got[300];
	size_t			 i, k, n = 0;
	long			 lv;
	int			 iv;

	(void)state;
	msg[0] = '\0';
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (k = 0; k < config_nopts; k++)
			if (config_opts[k].o_env != NULL &&
			    strcmp(config_opts[k].o_env, cases[i].env) == 0)
				break;
		assert_true(k < config_nopts);
		o = &config_opts[k];
		clear_env();
		set_required_env();
		setenv(cases[i].env, "", 1);
		f = cases[i].file ? write_file(cases[i].file, 0644) : NULL;
		c = config_build(f, f != NULL, NULL, 0, &e);
		if (c == NULL) {
			snprintf(got, sizeof(got), "error: %s",
			    e.ce_n > 0 ? e.ce_msg[0] : "?");
		} else if (o->o_type == OT_INT) {
			memcpy(&lv, (char *)c + o->o_off, sizeof(lv));
			snprintf(got, sizeof(got), "%ld", lv);
		} else if (o->o_type == OT_BOOL) {
			memcpy(&iv, (char *)c + o->o_off, sizeof(iv));
			snprintf(got, sizeof(got), "%d", iv);
		} else {
			memcpy(&sv, (char *)c + o->o_off, sizeof(sv));
			snprintf(got, sizeof(got), "%s", sv ? sv : "NULL");
		}
		config_free(c);
		if (strcmp(got, cases[i].want) != 0)
			n += (size_t)snprintf(msg + n, sizeof(msg) - n,
			    "\n  %s=\"\"%s: want %s, got %s", cases[i].env,
			    cases[i].file ? " over a file" : "",
			    cases[i].want, got);
		if (n >= sizeof(msg))
			break;
	}
	if (n > 0)
		fail_msg("empty environment values not treated as unset:%s",
		    msg);
}

static void
test_stream_url(void **state)
{
	static const char *const bad[] = {
		"https://voice.example.test/s",
		"ws://voice.example.test/s",
		"wss://voice.example.test/s?token=1",
		"wss://voice.example.test/?",
	};
	struct cfg_errors	 e;
	struct config		*c;
	size_t			 i;

	(void)state;
	set_required_env();
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("STREAM_URL", bad[i], 1);
		c = config_build(NULL, 0, NULL, 0, &e);
		if (c != NULL)
			fail_msg("accepted STREAM_URL=%s", bad[i]);
		assert_int_equal(e.ce_n, 1);
		expect_error(&e, "stream_url", "wss://");
	}
	setenv("STREAM_URL", "not-a-url", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	expect_error(&e, "environment STREAM_URL", "stream_url");
	setenv("STREAM_URL", "WSS://Voice.Example.Test:8443/a/b", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	config_free(c);

	/* twilio_url: http(s) only. */
	setenv("TWILIO_URL", "wss://voice.example.test", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 1);
	expect_error(&e, "twilio_url", "http");
	setenv("TWILIO_URL", "http://127.0.0.1:3000", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	config_free(c);
}

static void
test_dynamic_ngrok(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;

	(void)state;
	set_required_env();
	unsetenv("STREAM_URL");
	unsetenv("TWILIO_URL");
	setenv("USE_DYNAMIC_NGROK", "true", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->use_dynamic_ngrok, 1);
	assert_null(c->stream_url);
	assert_string_equal(c->ngrok_api_url, "http://127.0.0.1:4040");
	config_free(c);
	setenv("USE_DYNAMIC_NGROK", "Yes", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->use_dynamic_ngrok, 1);
	config_free(c);
	setenv("USE_DYNAMIC_NGROK", "off", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 2);
}

static void
test_workers_max_calls(void **state)
{
	struct cfg_errors	 e;
	struct config		*c;
	struct cfg_override	 ov;

	(void)state;
	set_required_env();
	setenv("NAIBER_WORKERS", "10", 1);
	setenv("NAIBER_MAX_CALLS", "5", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_null(c);
	assert_int_equal(e.ce_n, 1);
	expect_error(&e, "workers (10)", "max_calls (5)");
	setenv("NAIBER_MAX_CALLS", "10", 1);
	c = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(c);
	assert_int_equal(c->workers, 10);
	assert_int_equal(c->max_calls, 10);
	config_free(c);
	/* The flag's value is the one compared. */
	ov = ov_short('m', "9");
	c = config_build(NULL, 0, &ov, 1, &e);
	assert_null(c);
	expect_error(&e, "workers (10)", "max_calls (9)");
}

static void
test_noreload_changed(void **state)
{
	struct cfg_errors	 e;
	struct config		*a, *b;
	struct cfg_override	 ov[4];
	char			 names[256];

	(void)state;
	set_required_env();
	a = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(a);
	b = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(b);
	assert_int_equal(config_noreload_changed(a, b, names, sizeof(names)),
	    0);
	assert_string_equal(names, "");
	config_free(b);

	/* port changes; workers and the log format may change freely. */
	ov[0] = ov_short('p', "3001");
	ov[1] = ov_short('w', "2");
	ov[2] = ov_long("log-format", "json");
	setenv("TWILIO_AUTH_TOKEN", "rotated", 1);
	b = config_build(NULL, 0, ov, 3, &e);
	assert_non_null(b);
	assert_int_equal(config_noreload_changed(a, b, names, sizeof(names)),
	    1);
	assert_string_equal(names, "port");
	config_free(b);

	/* Several: named in table order; NULL to set counts. */
	ov[3] = ov_short('u', "nobody");
	ov[1] = ov_short('l', "127.0.0.1");
	setenv("USE_DYNAMIC_NGROK", "true", 1);
	b = config_build(NULL, 0, ov, 4, &e);
	assert_non_null(b);
	assert_int_equal(config_noreload_changed(a, b, names, sizeof(names)),
	    1);
	assert_string_equal(names, "listen, port, use_dynamic_ngrok, user");
	assert_null(strstr(names, "workers"));
	assert_null(strstr(names, "log_format"));
	assert_null(strstr(names, "twilio_auth_token"));
	/* Symmetric. */
	assert_int_equal(config_noreload_changed(b, a, names, sizeof(names)),
	    1);
	assert_string_equal(names, "listen, port, use_dynamic_ngrok, user");
	config_free(b);
	config_free(a);
}

static void
test_noreload_small_buffer(void **state)
{
	struct cfg_errors	 e;
	struct config		*a, *b;
	struct cfg_override	 ov[3];
	char			*names;

	(void)state;
	set_required_env();
	a = config_build(NULL, 0, NULL, 0, &e);
	assert_non_null(a);
	ov[0] = ov_short('p', "3001");
	ov[1] = ov_short('l', "127.0.0.1");
	ov[2] = ov_short('u', "nobody");
	b = config_build(NULL, 0, ov, 3, &e);
	assert_non_null(b);
	/* Heap buffers of the exact size so ASan sees any overrun. */
	names = malloc(4);
	assert_non_null(names);
	assert_int_equal(config_noreload_changed(a, b, names, 4), 1);
	assert_string_equal(names, "lis");
	free(names);
	names = malloc(1);
	assert_non_null(names);
	assert_int_equal(config_noreload_changed(a, b, names, 1), 1);
	assert_string_equal(names, "");
	free(names);
	config_free(b);
	config_free(a);
}

#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_defaults),
		T(test_precedence),
		T(test_precedence_layers),
		T(test_find),
		T(test_table),
		T(test_required_all_at_once),
		T(test_invalid_gathered),
		T(test_invalid_origins),
		T(test_unknown_key),
		T(test_secret_file_mode),
		T(test_nonsecret_file_mode),
		T(test_file_syntax),
		T(test_missing_file),
		T(test_empty_env_unset),
		T(test_empty_env_falls_back),
		T(test_stream_url),
		T(test_dynamic_ngrok),
		T(test_workers_max_calls),
		T(test_noreload_changed),
		T(test_noreload_small_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
