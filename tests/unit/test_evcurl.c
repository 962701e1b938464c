/*
 * test_evcurl.c - unit tests for common/evcurl.c against a real peer:
 * tests/peers/http-echo.mjs (node; HTTP_ECHO and NODE override the
 * script and interpreter) on 127.0.0.1, HTTP and HTTPS.  The group
 * setup makes a self-signed certificate (CN and SAN 127.0.0.1 and
 * localhost) with the openssl CLI in a temporary directory and starts
 * the peer; the teardown kills it by pid and removes the directory.  The
 * peer also exits when its stdin closes and then removes the directory
 * itself (--cleanup), so a crashed test leaves neither behind.
 * Runs under ASan and UBSan: no leak may remain after evcurl_free().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <event2/event.h>
#include <openssl/x509.h>

#include "evcurl.h"

#define NCONC		50
#define AUTH_B64	"QUN0ZXN0OnMzY3JldA=="	/* ACtest:s3cret */

struct res {
	int		 calls;
	long		 status;
	int		 failed;
	int		 nul_ok;
	char		 error[64];
	char		*body;
	size_t		 len;
	double		 seconds;
	double		 t_done;
	struct evcurl	*free_ec;	/* evcurl_free() it from the callback */
};

static double	now_s(void);
static int	run_quiet(char *const []);
static int	peer_read(int, char *, size_t, double);
static int	peer_start(void);
static void	peer_stop(void);
static int	group_setup(void **);
static int	group_teardown(void **);
static void	on_resp(const struct evcurl_resp *, void *);
static void	on_guard(evutil_socket_t, short, void *);
static void	run_until(int, int);
static const char *url(char *, int, const char *);
static const char *turl(char *, const char *, const char *);
static void	req_init(struct evcurl_req *, const char *, const char *);
static void	res_clear(struct res *);
static void	fetch(struct evcurl *, struct evcurl_req *, struct res *);
static void	test_new_cafile(void **);
static void	test_start_rejects(void **);
static void	test_get(void **);
static void	test_post_echo(void **);
static void	test_other_methods(void **);
static void	test_status_404(void **);
static void	test_timeout(void **);
static void	test_refused(void **);
static void	test_too_large(void **);
static void	test_body_at_limit(void **);
static void	test_concurrent(void **);
static void	test_https_ca(void **);
static void	test_https_no_ca(void **);
static void	test_https_store(void **);
static void	test_free_inflight(void **);
static void	test_free_in_callback(void **);

static struct {
	struct event_base	*base;
	pid_t			 pid;
	int			 in_fd;		/* peer's stdin */
	int			 out_fd;	/* peer's stdout */
	int			 port;
	int			 tlsport;
	char			 dir[64];
	char			 cert[128];
	char			 key[128];
	int			 total;		/* callbacks, all requests */
} g = { .pid = -1, .in_fd = -1, .out_fd = -1 };

static double
now_s(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run argv with stdout and stderr to /dev/null; its exit status. */
static int
run_quiet(char *const argv[])
{
	pid_t	pid;
	int	st, fd;

	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		if ((fd = open("/dev/null", O_WRONLY)) != -1) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) == -1)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Read the peer's banner up to "READY" within the deadline. */
static int
peer_read(int fd, char *buf, size_t size, double deadline)
{
	struct pollfd	pfd = { .fd = fd, .events = POLLIN };
	size_t		len = 0;
	ssize_t		n;
	int		ms;

	while (strstr(buf, "READY\n") == NULL) {
		if ((ms = (int)((deadline - now_s()) * 1000)) <= 0 ||
		    poll(&pfd, 1, ms) <= 0 || len + 1 >= size)
			return -1;
		if ((n = read(fd, buf + len, size - len - 1)) <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
	}
	return 0;
}

static int
peer_start(void)
{
	const char	*node = getenv("NODE"), *script = getenv("HTTP_ECHO");
	char		 banner[256] = "", *p;
	int		 in[2], out[2];

	node = node ? node : "node";
	script = script ? script : "tests/peers/http-echo.mjs";
	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1)
		return -1;
	if ((g.pid = fork()) == -1)
		return -1;
	if (g.pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execlp(node, node, script, g.cert, g.key, "--cleanup",
		    (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	g.in_fd = in[1];
	g.out_fd = out[0];
	if (peer_read(g.out_fd, banner, sizeof(banner), now_s() + 15) == -1)
		return -1;
	if ((p = strstr(banner, "PORT ")) == NULL ||
	    (g.port = atoi(p + 5)) <= 0)
		return -1;
	if ((p = strstr(banner, "TLSPORT ")) == NULL ||
	    (g.tlsport = atoi(p + 8)) <= 0)
		return -1;
	return 0;
}

/* SIGTERM by pid, SIGKILL if it lingers; always reaped. */
static void
peer_stop(void)
{
	double	deadline = now_s() + 5;
	int	st;

	if (g.in_fd != -1)
		close(g.in_fd);
	if (g.out_fd != -1)
		close(g.out_fd);
	g.in_fd = g.out_fd = -1;
	if (g.pid <= 0)
		return;
	kill(g.pid, SIGTERM);
	while (waitpid(g.pid, &st, WNOHANG) == 0) {
		if (now_s() > deadline) {
			kill(g.pid, SIGKILL);
			waitpid(g.pid, &st, 0);
			break;
		}
		usleep(10000);
	}
	g.pid = -1;
}

static int
group_setup(void **state)
{
	char *const	 gen[] = { "openssl", "req", "-x509", "-newkey", "ec",
	    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
	    "-subj", "/CN=127.0.0.1", "-addext",
	    "subjectAltName=IP:127.0.0.1,DNS:localhost",
	    "-keyout", g.key, "-out", g.cert, NULL };
	static const char *const proxies[] = { "http_proxy", "https_proxy",
	    "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY" };
	size_t		 i;

	for (i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
		unsetenv(proxies[i]);
	snprintf(g.dir, sizeof(g.dir), "/tmp/test_evcurl.XXXXXX");
	if (mkdtemp(g.dir) == NULL)
		return -1;
	snprintf(g.cert, sizeof(g.cert), "%s/cert.pem", g.dir);
	snprintf(g.key, sizeof(g.key), "%s/key.pem", g.dir);
	if (run_quiet(gen) != 0)
		print_error("openssl req failed\n");
	else if (peer_start() == -1)
		print_error("could not start the node peer\n");
	else if ((g.base = event_base_new()) != NULL)
		return 0;
	group_teardown(state);	/* cmocka skips it when setup fails */
	return -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	peer_stop();
	if (g.base != NULL)
		event_base_free(g.base);
	unlink(g.cert);
	unlink(g.key);
	rmdir(g.dir);
	return 0;
}

static void
on_resp(const struct evcurl_resp *er, void *arg)
{
	struct res	*r = arg;

	r->calls++;
	g.total++;
	r->t_done = now_s();
	r->status = er->er_status;
	r->failed = er->er_failed;
	snprintf(r->error, sizeof(r->error), "%s",
	    er->er_error ? er->er_error : "");
	r->nul_ok = er->er_body != NULL && er->er_body[er->er_len] == '\0';
	free(r->body);
	if ((r->body = malloc(er->er_len + 1)) != NULL && er->er_body) {
		memcpy(r->body, er->er_body, er->er_len + 1);
		r->len = er->er_len;
	}
	r->seconds = er->er_seconds;
	if (r->free_ec != NULL)
		evcurl_free(r->free_ec);
}

static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Run the loop until g.total reaches want or ms pass. */
static void
run_until(int want, int ms)
{
	struct timeval	 tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event	*guard;
	int		 expired = 0;

	guard = evtimer_new(g.base, on_guard, &expired);
	assert_non_null(guard);
	evtimer_add(guard, &tv);
	while (g.total < want && !expired)
		event_base_loop(g.base, EVLOOP_ONCE);
	event_free(guard);
}

static const char *
url(char *buf, int port, const char *path)
{
	snprintf(buf, 256, "http://127.0.0.1:%d%s", port, path);
	return buf;
}

static const char *
turl(char *buf, const char *host, const char *path)
{
	snprintf(buf, 256, "https://%s:%d%s", host, g.tlsport, path);
	return buf;
}

static void
req_init(struct evcurl_req *rq, const char *method, const char *u)
{
	memset(rq, 0, sizeof(*rq));
	rq->rq_method = method;
	rq->rq_url = u;
	rq->rq_timeout_ms = 5000;
}

static void
res_clear(struct res *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* One request to completion, plus a pause to catch a second callback. */
static void
fetch(struct evcurl *ec, struct evcurl_req *rq, struct res *r)
{
	g.total = 0;
	assert_int_equal(evcurl_start(ec, rq, on_resp, r), 0);
	assert_int_equal(evcurl_pending(ec), 1);
	assert_int_equal(r->calls, 0);	/* never from inside start */
	run_until(1, 10000);
	run_until(2, 100);
	assert_int_equal(r->calls, 1);
	assert_int_equal(evcurl_pending(ec), 0);
	assert_true(r->nul_ok);
}

static void
test_new_cafile(void **state)
{
	char		 path[160];
	struct evcurl	*ec;
	FILE		*fp;

	(void)state;
	assert_null(evcurl_new(g.base, "/nonexistent/ca.pem"));
	assert_null(evcurl_new(g.base, g.dir));		/* a directory */
	snprintf(path, sizeof(path), "%s/junk.pem", g.dir);
	assert_non_null(fp = fopen(path, "w"));
	fputs("not a certificate\n", fp);
	fclose(fp);
	assert_null(evcurl_new(g.base, path));
	assert_non_null(fp = fopen(path, "w"));		/* empty */
	fclose(fp);
	assert_null(evcurl_new(g.base, path));
	unlink(path);
	assert_non_null(ec = evcurl_new(g.base, g.cert));
	evcurl_free(ec);
	assert_non_null(ec = evcurl_new(g.base, NULL));
	assert_int_equal(evcurl_pending(ec), 0);
	evcurl_free(ec);
	evcurl_free(NULL);
}

static void
test_start_rejects(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	url(u, g.port, "/hello");
	req_init(&rq, "GET", u);
	rq.rq_headers[0] = "X-A: b\r\nX-Injected: yes";
	assert_int_equal(evcurl_start(ec, &rq, on_resp, &r), -1);
	req_init(&rq, "GET /x HTTP/1.1\r\n", u);
	assert_int_equal(evcurl_start(ec, &rq, on_resp, &r), -1);
	req_init(&rq, "POST", u);
	rq.rq_bodylen = 3;			/* no body pointer */
	assert_int_equal(evcurl_start(ec, &rq, on_resp, &r), -1);
	req_init(&rq, "GET", u);
	rq.rq_body = "abc";
	rq.rq_bodylen = 3;
	assert_int_equal(evcurl_start(ec, &rq, on_resp, &r), -1);
	req_init(&rq, "GET", NULL);
	assert_int_equal(evcurl_start(ec, &rq, on_resp, &r), -1);
	req_init(&rq, "GET", u);
	assert_int_equal(evcurl_start(ec, &rq, NULL, &r), -1);
	assert_int_equal(evcurl_pending(ec), 0);
	g.total = 0;
	run_until(1, 100);
	assert_int_equal(r.calls, 0);
	evcurl_free(ec);
}

static void
test_get(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	req_init(&rq, "GET", url(u, g.port, "/hello"));
	fetch(ec, &rq, &r);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "hello, world\n");
	assert_int_equal(r.len, 13);
	assert_true(r.seconds > 0 && r.seconds < 5);
	res_clear(&r);
	req_init(&rq, NULL, u);			/* NULL method is GET */
	fetch(ec, &rq, &r);
	assert_int_equal(r.status, 200);
	res_clear(&r);
	evcurl_free(ec);
}

static void
test_post_echo(void **state)
{
	static const char	 form[] = "From=%2B15551234567&Body=hi+there";
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	req_init(&rq, "POST", url(u, g.port, "/echo"));
	rq.rq_headers[0] = "X-Test: yes";
	rq.rq_headers[1] = "Accept: application/json";
	rq.rq_body = form;
	rq.rq_bodylen = strlen(form);
	rq.rq_user = "ACtest";
	rq.rq_password = "s3cret";
	fetch(ec, &rq, &r);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"method\":\"POST\""));
	assert_non_null(strstr(r.body,
	    "\"authorization\":\"Basic " AUTH_B64 "\""));
	assert_non_null(strstr(r.body, "\"x-test\":\"yes\""));
	assert_non_null(strstr(r.body, "\"accept\":\"application/json\""));
	assert_non_null(strstr(r.body, "\"content-type\":"
	    "\"application/x-www-form-urlencoded\""));
	assert_non_null(strstr(r.body, "\"content-length\":\"33\""));
	assert_non_null(strstr(r.body, "\"body\":\"From=%2B15551234567"
	    "&Body=hi+there\""));
	assert_null(strstr(r.body, "\"expect\""));
	res_clear(&r);
	evcurl_free(ec);
}

static void
test_other_methods(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	req_init(&rq, "PUT", url(u, g.port, "/echo"));
	rq.rq_body = "a\0b";			/* binary safe, sized */
	rq.rq_bodylen = 3;
	fetch(ec, &rq, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"method\":\"PUT\""));
	assert_non_null(strstr(r.body, "\"body\":\"a\\u0000b\""));
	res_clear(&r);
	req_init(&rq, "DELETE", u);
	fetch(ec, &rq, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"method\":\"DELETE\""));
	assert_non_null(strstr(r.body, "\"body\":\"\""));
	res_clear(&r);
	req_init(&rq, "POST", u);		/* POST without a body */
	fetch(ec, &rq, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"content-length\":\"0\""));
	res_clear(&r);
	evcurl_free(ec);
}

static void
test_status_404(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	req_init(&rq, "GET", url(u, g.port, "/status/404"));
	fetch(ec, &rq, &r);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "status 404");
	res_clear(&r);
	req_init(&rq, "GET", url(u, g.port, "/status/302"));
	fetch(ec, &rq, &r);			/* not followed */
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.status, 302);
	res_clear(&r);
	evcurl_free(ec);
}

static void
test_timeout(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];
	double			 t0, took;

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	req_init(&rq, "GET", url(u, g.port, "/hang"));
	rq.rq_timeout_ms = 300;
	t0 = now_s();
	fetch(ec, &rq, &r);
	took = r.t_done - t0;
	assert_int_equal(r.failed, 1);
	assert_string_equal(r.error, "timeout");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.len, 0);
	assert_string_equal(r.body, "");
	/* a bound, not a speed test */
	assert_true(took >= 0.25 && took <= 0.9);
	res_clear(&r);
	evcurl_free(ec);
}

static void
test_refused(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	struct sockaddr_in	 sin = { .sin_family = AF_INET };
	socklen_t		 sl = sizeof(sin);
	char			 u[256];
	int			 s;

	(void)state;
	/* bound and never listening: the port stays ours and refuses */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((s = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
	assert_non_null(ec = evcurl_new(g.base, NULL));
	req_init(&rq, "GET", url(u, ntohs(sin.sin_port), "/"));
	fetch(ec, &rq, &r);
	assert_int_equal(r.failed, 1);
	assert_string_equal(r.error, "could not connect");
	assert_int_equal(r.status, 0);
	res_clear(&r);
	close(s);
	evcurl_free(ec);
}

static void
test_too_large(void **state)
{
	static const char *const paths[] = { "/big", "/big?chunked=1" };
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];
	size_t			 i;

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	for (i = 0; i < 2; i++) {
		req_init(&rq, "GET", url(u, g.port, paths[i]));
		fetch(ec, &rq, &r);
		assert_int_equal(r.failed, 1);
		assert_string_equal(r.error, "response too large");
		assert_int_equal(r.len, 0);
		assert_string_equal(r.body, "");
		res_clear(&r);
	}
	evcurl_free(ec);
}

static void
test_body_at_limit(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256], path[64];
	size_t			 i;

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	snprintf(path, sizeof(path), "/big?chunked=1&n=%d", EVCURL_BODY_MAX);
	req_init(&rq, "GET", url(u, g.port, path));
	fetch(ec, &rq, &r);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.len, EVCURL_BODY_MAX);
	for (i = 0; i < r.len; i++)
		if (r.body[i] != 'x')
			fail_msg("byte %zu is %d", i, r.body[i]);
	res_clear(&r);
	snprintf(path, sizeof(path), "/big?n=%d", EVCURL_BODY_MAX + 1);
	req_init(&rq, "GET", url(u, g.port, path));
	fetch(ec, &rq, &r);
	assert_int_equal(r.failed, 1);
	assert_string_equal(r.error, "response too large");
	res_clear(&r);
	evcurl_free(ec);
}

static void
test_concurrent(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		*r;
	char			 u[NCONC][256], path[64], want[32];
	int			 i;

	(void)state;
	assert_non_null(r = calloc(NCONC, sizeof(*r)));
	assert_non_null(ec = evcurl_new(g.base, NULL));
	g.total = 0;
	for (i = 0; i < NCONC; i++) {
		snprintf(path, sizeof(path), "/slow?ms=%d&id=%d", 50 + i, i);
		req_init(&rq, "GET", url(u[i], g.port, path));
		assert_int_equal(evcurl_start(ec, &rq, on_resp, &r[i]), 0);
	}
	assert_int_equal(evcurl_pending(ec), NCONC);
	run_until(NCONC, 15000);
	run_until(NCONC + 1, 200);
	assert_int_equal(g.total, NCONC);
	assert_int_equal(evcurl_pending(ec), 0);
	for (i = 0; i < NCONC; i++) {
		snprintf(want, sizeof(want), "id %d", i);
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].failed, 0);
		assert_int_equal(r[i].status, 200);
		assert_string_equal(r[i].body, want);
		res_clear(&r[i]);
	}
	free(r);
	evcurl_free(ec);
}

static void
test_https_ca(void **state)
{
	static const char *const hosts[] = { "127.0.0.1", "localhost" };
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];
	size_t			 i;

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, g.cert));
	for (i = 0; i < 2; i++) {
		req_init(&rq, "GET", turl(u, hosts[i], "/hello"));
		fetch(ec, &rq, &r);
		if (r.failed)
			fail_msg("%s: %s", hosts[i], r.error);
		assert_int_equal(r.status, 200);
		assert_string_equal(r.body, "hello, world\n");
		res_clear(&r);
	}
	evcurl_free(ec);
}

static void
test_https_no_ca(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	char			 u[256];

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	req_init(&rq, "GET", turl(u, "127.0.0.1", "/hello"));
	fetch(ec, &rq, &r);
	assert_int_equal(r.failed, 1);
	assert_string_equal(r.error, "TLS verification failed");
	assert_int_equal(r.status, 0);
	res_clear(&r);
	evcurl_free(ec);
}

/* A shared store is trusted exactly: its anchor passes, without it fails. */
static void
test_https_store(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r = { 0 };
	X509_STORE		*st, *empty;
	char			 u[256];
	int			 i;

	(void)state;
	assert_non_null(st = X509_STORE_new());
	assert_non_null(empty = X509_STORE_new());
	assert_int_equal(X509_STORE_load_file(st, g.cert), 1);
	assert_non_null(ec = evcurl_new_store(g.base, st, NULL));
	for (i = 0; i < 2; i++) {	/* the second from curl's cache */
		req_init(&rq, "GET", turl(u, "127.0.0.1", "/hello"));
		fetch(ec, &rq, &r);
		if (r.failed)
			fail_msg("%s", r.error);
		assert_int_equal(r.status, 200);
		res_clear(&r);
	}
	evcurl_free(ec);
	assert_non_null(ec = evcurl_new_store(g.base, empty, g.cert));
	req_init(&rq, "GET", turl(u, "127.0.0.1", "/hello"));
	fetch(ec, &rq, &r);
	assert_int_equal(r.failed, 1);
	assert_string_equal(r.error, "TLS verification failed");
	res_clear(&r);
	evcurl_free(ec);
	/* Still usable, and no CA file was added to it. */
	assert_int_equal(sk_X509_OBJECT_num(X509_STORE_get0_objects(empty)),
	    0);
	X509_STORE_free(st);
	X509_STORE_free(empty);
}

static void
test_free_inflight(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 r[6];
	char			 u[3][256];
	int			 i;

	(void)state;
	memset(r, 0, sizeof(r));
	assert_non_null(ec = evcurl_new(g.base, g.cert));
	url(u[0], g.port, "/hang");
	turl(u[1], "127.0.0.1", "/hang");
	url(u[2], g.port, "/slow?ms=2000&id=0");
	g.total = 0;
	for (i = 0; i < 3; i++) {
		req_init(&rq, i == 0 ? "POST" : "GET", u[i]);
		assert_int_equal(evcurl_start(ec, &rq, on_resp, &r[i]), 0);
	}
	run_until(1, 300);		/* connected, sent, waiting */
	for (i = 3; i < 6; i++) {	/* and some not yet connected */
		req_init(&rq, "GET", u[i - 3]);
		assert_int_equal(evcurl_start(ec, &rq, on_resp, &r[i]), 0);
	}
	assert_int_equal(evcurl_pending(ec), 6);
	evcurl_free(ec);
	/* nothing of ours is left on the base */
	assert_int_equal(event_base_get_num_events(g.base,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	run_until(1, 300);
	assert_int_equal(g.total, 0);
	for (i = 0; i < 6; i++)
		assert_int_equal(r[i].calls, 0);
}

static void
test_free_in_callback(void **state)
{
	struct evcurl		*ec;
	struct evcurl_req	 rq;
	struct res		 a = { 0 }, b = { 0 };
	char			 u[2][256];

	(void)state;
	assert_non_null(ec = evcurl_new(g.base, NULL));
	g.total = 0;
	req_init(&rq, "GET", url(u[0], g.port, "/hello"));
	a.free_ec = ec;
	assert_int_equal(evcurl_start(ec, &rq, on_resp, &a), 0);
	req_init(&rq, "GET", url(u[1], g.port, "/hang"));
	assert_int_equal(evcurl_start(ec, &rq, on_resp, &b), 0);
	run_until(1, 10000);
	run_until(2, 300);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.status, 200);
	assert_int_equal(b.calls, 0);
	assert_int_equal(event_base_get_num_events(g.base,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	res_clear(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_cafile),
		cmocka_unit_test(test_start_rejects),
		cmocka_unit_test(test_get),
		cmocka_unit_test(test_post_echo),
		cmocka_unit_test(test_other_methods),
		cmocka_unit_test(test_status_404),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_body_at_limit),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_https_ca),
		cmocka_unit_test(test_https_no_ca),
		cmocka_unit_test(test_https_store),
		cmocka_unit_test(test_free_inflight),
		cmocka_unit_test(test_free_in_callback),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
