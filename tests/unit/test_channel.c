/*
 * test_channel.c - unit tests for common/channel.c, the typed
 * supervisor<->worker channel.  Every message goes through a real
 * SOCK_SEQPACKET socketpair; HANDOFF carries a real descriptor (a pipe
 * end).  Rejections are driven both through chan_recv() (raw datagrams
 * written with sendmsg()) and through chan_decode() directly, and every
 * descriptor that arrives where none belongs must be closed by
 * chan_recv(): checked by the pipe's read end seeing EOF once the test
 * closed its own copies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cmocka.h>

#include "channel.h"

#define HDR	sizeof(struct msg_hdr)

struct pair {
	int	sp[2];		/* [0] supervisor end, [1] worker end */
	int	pp[2];		/* a pipe to pass around */
};

static int	setup(void **);
static int	teardown(void **);
static int	open_fds(void);
static void	new_pipe(struct pair *);
static void	send_raw(int, const void *, size_t, const int *, int);
static size_t	mk(uint8_t *, uint32_t, uint32_t, const void *, size_t);
static void	expect_recv_reject(int, const char *);
static void	expect_decode_reject(const uint8_t *, size_t, int, int);
static void	expect_pipe_eof(struct pair *);
static void	expect_reject_closes_fd(struct pair *, uint32_t, const void *,
		    size_t);
static struct msg_handoff mk_handoff(uint32_t);
static void	test_handoff(void **);
static void	test_handoff_ipv6_peer(void **);
static void	test_prepare(void **);
static void	test_drain(void **);
static void	test_accepted(void **);
static void	test_call_info(void **);
static void	test_done(void **);
static void	test_type_names(void **);
static void	test_reject_short(void **);
static void	test_reject_len_mismatch(void **);
static void	test_reject_len_too_big(void **);
static void	test_reject_unknown_type(void **);
static void	test_reject_fixed_sizes(void **);
static void	test_reject_unterminated(void **);
static void	test_reject_handoff(void **);
static void	test_unexpected_fd(void **);
static void	test_two_fds(void **);
static void	test_truncated(void **);
static void	test_eof_and_eagain(void **);
static void	test_send_limits(void **);
static void	test_no_fd_leak(void **);

static int	fds_at_start;

static int
setup(void **state)
{
	static struct pair	p;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p.sp) == -1)
		return -1;
	if (pipe2(p.pp, O_CLOEXEC) == -1)
		return -1;
	*state = &p;
	return 0;
}

static int
teardown(void **state)
{
	struct pair	*p = *state;
	int		 i;

	for (i = 0; i < 2; i++) {
		if (p->sp[i] != -1)
			close(p->sp[i]);
		if (p->pp[i] != -1)
			close(p->pp[i]);
	}
	return 0;
}

/* Count open descriptors (lowest 256). */
static int
open_fds(void)
{
	int	fd, n = 0;

	for (fd = 0; fd < 256; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			n++;
	return n;
}

/* Replace the pipe, closing whatever is left of the old one. */
static void
new_pipe(struct pair *p)
{
	if (p->pp[0] != -1)
		close(p->pp[0]);
	if (p->pp[1] != -1)
		close(p->pp[1]);
	assert_int_equal(pipe2(p->pp, O_CLOEXEC), 0);
}

/* One raw datagram with up to 8 descriptors. */
static void
send_raw(int s, const void *buf, size_t len, const int *fds, int nfd)
{
	struct msghdr	 mh;
	struct iovec	 iov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 8)];
	} cm;
	struct cmsghdr	*c;

	assert_true(nfd >= 0 && nfd <= 8);
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = (void *)(uintptr_t)buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfd > 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfd);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfd);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfd);
	}
	assert_int_equal(sendmsg(s, &mh, 0), (ssize_t)len);
}

/* Header plus payload into buf; returns the datagram length. */
static size_t
mk(uint8_t *buf, uint32_t type, uint32_t len, const void *payload,
    size_t plen)
{
	struct msg_hdr	h;

	memset(&h, 0, sizeof(h));
	h.mh_type = type;
	h.mh_len = len;
	h.mh_ref = 7;
	memcpy(buf, &h, HDR);
	if (plen > 0)
		memcpy(buf + HDR, payload, plen);
	return HDR + plen;
}

static void
expect_recv_reject(int s, const char *what)
{
	static struct chan_msg	m;
	const char		*why = NULL;

	m.cm_fd = 12345;
	errno = 0;
	if (chan_recv(s, &m, &why) != -1)
		fail_msg("%s: accepted", what);
	assert_non_null(why);
	assert_int_not_equal(errno, EAGAIN);
	assert_int_equal(m.cm_fd, -1);
	/* Exactly one datagram was consumed. */
	errno = 0;
	assert_int_equal(chan_recv(s, &m, &why), -1);
	assert_int_equal(errno, EAGAIN);
}

static void
expect_decode_reject(const uint8_t *buf, size_t n, int fd, int trunc)
{
	static struct chan_msg	m;
	const char		*why = NULL;

	m.cm_fd = 12345;
	assert_int_equal(chan_decode(buf, n, fd, trunc, &m, &why), -1);
	assert_non_null(why);
	assert_int_equal(m.cm_fd, -1);
}

/*
 * The test's own pipe write end is closed; if chan_recv() closed every
 * copy it received, the read end sees EOF at once.
 */
static void
expect_pipe_eof(struct pair *p)
{
	char	c;

	close(p->pp[1]);
	p->pp[1] = -1;
	assert_int_equal(fcntl(p->pp[0], F_SETFL, O_NONBLOCK), 0);
	if (read(p->pp[0], &c, 1) != 0)
		fail_msg("pipe write end still open after a rejected "
		    "message (read errno %d)", errno);
}

static struct msg_handoff
mk_handoff(uint32_t headlen)
{
	struct msg_handoff	ho;
	struct sockaddr_in	sin;

	memset(&ho, 0, sizeof(ho));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000);
	sin.sin_addr.s_addr = htonl(0x7f000001);
	memcpy(&ho.ho_peer, &sin, sizeof(sin));
	ho.ho_peerlen = sizeof(sin);
	ho.ho_headlen = headlen;
	return ho;
}

/* A message of this type with a pipe end attached: rejected, fd closed. */
static void
expect_reject_closes_fd(struct pair *p, uint32_t type, const void *pl,
    size_t plen)
{
	static uint8_t	buf[HDR + CHAN_MAX_PAYLOAD];
	size_t		n;

	n = mk(buf, type, (uint32_t)plen, pl, plen);
	send_raw(p->sp[0], buf, n, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], chan_type_name(type));
	expect_pipe_eof(p);
}

static void
test_handoff(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	const char		*why, *head = "GET /outbound-media-stream "
				    "HTTP/1.1\r\nHost: h\r\n\r\n\x81\x05";
	struct sockaddr_in	 sin, got;
	const struct msg_handoff *ho = &m.cm_u.handoff;
	char			 c;
	size_t			 hl = strlen(head);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(51234);
	inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
	assert_int_equal(chan_send_handoff(p->sp[0], 3, p->pp[1],
	    (struct sockaddr *)&sin, sizeof(sin), 123456789ULL, head, hl), 0);
	/* The sender still owns its copy. */
	assert_true(fcntl(p->pp[1], F_GETFD) != -1);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_HANDOFF);
	assert_int_equal(m.cm_hdr.mh_ref, 3);
	assert_int_equal(m.cm_hdr.mh_len, sizeof(*ho) + hl);
	assert_true(m.cm_fd >= 0);
	assert_int_not_equal(m.cm_fd, p->pp[1]);
	assert_int_not_equal(m.cm_fd, p->pp[0]);
	assert_int_equal(ho->ho_t_accept_ns, 123456789ULL);
	assert_true(ho->ho_t_send_ns > 0);
	assert_int_equal(ho->ho_headlen, hl);
	assert_memory_equal(chan_handoff_head(&m), head, hl);
	assert_int_equal(ho->ho_peerlen, sizeof(sin));
	memcpy(&got, &ho->ho_peer, sizeof(got));
	assert_int_equal(got.sin_family, AF_INET);
	assert_int_equal(got.sin_port, htons(51234));
	assert_memory_equal(&got.sin_addr, &sin.sin_addr, 4);
	/* The received fd is the same pipe: write through it. */
	assert_int_equal(write(m.cm_fd, "Z", 1), 1);
	assert_int_equal(read(p->pp[0], &c, 1), 1);
	assert_int_equal(c, 'Z');
	/* Close-on-exec is set on arrival (MSG_CMSG_CLOEXEC). */
	assert_true(fcntl(m.cm_fd, F_GETFD) & FD_CLOEXEC);
	/* Both write ends closed: EOF. */
	close(m.cm_fd);
	expect_pipe_eof(p);
}

static void
test_handoff_ipv6_peer(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	static char		 head[CHAN_HEAD_MAX];
	const char		*why;
	struct sockaddr_in6	 sin6, got;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(443);
	sin6.sin6_scope_id = 2;
	inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
	memset(head, 'h', sizeof(head));
	/* The largest head the supervisor keeps. */
	assert_int_equal(chan_send_handoff(p->sp[0], 9, p->pp[1],
	    (struct sockaddr *)&sin6, sizeof(sin6), 1, head, sizeof(head)), 0);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_int_equal(m.cm_u.handoff.ho_headlen, sizeof(head));
	assert_memory_equal(chan_handoff_head(&m), head, sizeof(head));
	assert_int_equal(m.cm_u.handoff.ho_peerlen, sizeof(sin6));
	memcpy(&got, &m.cm_u.handoff.ho_peer, sizeof(got));
	assert_memory_equal(&got, &sin6, sizeof(sin6));
	close(m.cm_fd);
}

static void
test_prepare(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	const char		*why;
	char			 sid[64];

	assert_int_equal(chan_send_prepare(p->sp[0], 5,
	    "CA0123456789abcdef0123456789abcdef"), 0);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_PREPARE);
	assert_int_equal(m.cm_hdr.mh_ref, 5);
	assert_int_equal(m.cm_fd, -1);
	assert_string_equal(m.cm_u.prepare.pr_call_sid,
	    "CA0123456789abcdef0123456789abcdef");
	/* 63 characters is the longest that fits. */
	memset(sid, 'S', 63);
	sid[63] = '\0';
	assert_int_equal(chan_send_prepare(p->sp[0], 5, sid), 0);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_string_equal(m.cm_u.prepare.pr_call_sid, sid);
	/* Empty is sent as is. */
	assert_int_equal(chan_send_prepare(p->sp[0], 5, ""), 0);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_string_equal(m.cm_u.prepare.pr_call_sid, "");
}

static void
test_drain(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	const char		*why;

	assert_int_equal(chan_send_drain(p->sp[0], 0xfffffffe), 0);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_DRAIN);
	assert_int_equal(m.cm_hdr.mh_len, 0);
	assert_int_equal(m.cm_hdr.mh_ref, 0xfffffffe);
	assert_int_equal(m.cm_fd, -1);
}

static void
test_accepted(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	const char		*why;

	/*
	 * Stamped with the sender's pid once it has set one: a worker handed
	 * a stream while starting may report ACCEPTED before SPAWNED names it.
	 */
	chan_set_pid(4242);
	assert_int_equal(chan_send_accepted(p->sp[1], 2,
	    0x0123456789abcdefULL, 0xfedcba9876543210ULL), 0);
	chan_set_pid(0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_ACCEPTED);
	assert_int_equal(m.cm_hdr.mh_ref, 2);
	assert_int_equal(m.cm_hdr.mh_pid, 4242);
	assert_int_equal(m.cm_hdr.mh_len, sizeof(struct msg_accepted));
	assert_int_equal(m.cm_u.accepted.ac_handoff_ns, 0x0123456789abcdefULL);
	assert_int_equal(m.cm_u.accepted.ac_channel_ns, 0xfedcba9876543210ULL);
	assert_int_equal(m.cm_fd, -1);
	assert_int_equal(chan_send_accepted(p->sp[1], 2, 1, 1), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_pid, 0);
}

static void
test_call_info(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	struct msg_call_info	 ci;
	const char		*why;

	memset(&ci, 0, sizeof(ci));
	strcpy(ci.ci_call_sid, "CA9a44");
	strcpy(ci.ci_stream_sid, "MZ7d1e");
	strcpy(ci.ci_conversation_id, "conv_01jabc");
	strcpy(ci.ci_user_id, "user-42");
	strcpy(ci.ci_phone, "+15550100");
	strcpy(ci.ci_call_type, "health_check");
	assert_int_equal(chan_send_call_info(p->sp[1], 4, &ci), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_CALL_INFO);
	assert_int_equal(m.cm_hdr.mh_ref, 4);
	assert_memory_equal(&m.cm_u.call_info, &ci, sizeof(ci));
	assert_string_equal(m.cm_u.call_info.ci_call_type, "health_check");

	/* Every field full (cap - 1 characters). */
	memset(&ci, 'x', sizeof(ci));
	ci.ci_call_sid[sizeof(ci.ci_call_sid) - 1] = '\0';
	ci.ci_stream_sid[sizeof(ci.ci_stream_sid) - 1] = '\0';
	ci.ci_conversation_id[sizeof(ci.ci_conversation_id) - 1] = '\0';
	ci.ci_user_id[sizeof(ci.ci_user_id) - 1] = '\0';
	ci.ci_phone[sizeof(ci.ci_phone) - 1] = '\0';
	ci.ci_call_type[sizeof(ci.ci_call_type) - 1] = '\0';
	assert_int_equal(chan_send_call_info(p->sp[1], 4, &ci), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_memory_equal(&m.cm_u.call_info, &ci, sizeof(ci));
}

static void
test_done(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	struct msg_done		 dn;
	const char		*why;

	memset(&dn, 0, sizeof(dn));
	dn.dn_frames_in = 3000;
	dn.dn_frames_out = 2900;
	dn.dn_frames_dropped = 1;
	dn.dn_bad_messages = 2;
	dn.dn_duration_ms = 60123;
	dn.dn_setup_ns = 41000000;
	dn.dn_pongs = 7;
	dn.dn_clears = 3;
	strcpy(dn.dn_reason, "twilio stop");
	assert_int_equal(chan_send_done(p->sp[1], 8, &dn), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_DONE);
	assert_int_equal(m.cm_hdr.mh_ref, 8);
	assert_memory_equal(&m.cm_u.done, &dn, sizeof(dn));
	assert_string_equal(m.cm_u.done.dn_reason, "twilio stop");
	assert_int_equal(m.cm_fd, -1);
}

static void
test_ready(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	struct msg_ready	 rd;
	static uint8_t		 buf[HDR + sizeof(rd)];
	const char		*why;
	size_t			 n;

	memset(&rd, 0, sizeof(rd));
	rd.rd_pid = 4242;
	rd.rd_flags = READY_REDIS | READY_HTTP;
	rd.rd_warm_ns = 12345678;
	assert_int_equal(chan_send_ready(p->sp[1], 9, &rd), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_READY);
	assert_int_equal(m.cm_hdr.mh_ref, 9);
	assert_memory_equal(&m.cm_u.ready, &rd, sizeof(rd));
	assert_int_equal(m.cm_fd, -1);
	/* A pid must be a pid. */
	rd.rd_pid = 0;
	n = mk(buf, MSG_READY, sizeof(rd), &rd, sizeof(rd));
	expect_decode_reject(buf, n, -1, 0);
	rd.rd_pid = -5;
	n = mk(buf, MSG_READY, sizeof(rd), &rd, sizeof(rd));
	expect_decode_reject(buf, n, -1, 0);
	n = mk(buf, MSG_READY, sizeof(rd) - 1, &rd, sizeof(rd) - 1);
	expect_decode_reject(buf, n, -1, 0);
}

/* SPAWN carries the worker's end of its channel, and must. */
static void
test_spawn(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	const char		*why;
	static uint8_t		 buf[HDR + 4];
	size_t			 n;
	char			 c;

	assert_int_equal(chan_send_spawn(p->sp[0], 77, p->pp[1]), 0);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_SPAWN);
	assert_int_equal(m.cm_hdr.mh_ref, 77);
	assert_true(m.cm_fd >= 0);
	assert_int_equal(write(m.cm_fd, "S", 1), 1);
	assert_int_equal(read(p->pp[0], &c, 1), 1);
	assert_int_equal(c, 'S');
	close(m.cm_fd);
	n = mk(buf, MSG_SPAWN, 0, NULL, 0);
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "SPAWN without fd");
	/* A payload on SPAWN: rejected, its fd closed. */
	n = mk(buf, MSG_SPAWN, 4, "abcd", 4);
	send_raw(p->sp[0], buf, n, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "SPAWN with payload");
	expect_pipe_eof(p);
}

static void
test_spawned(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	struct msg_spawned	 sp;
	static uint8_t		 buf[HDR + sizeof(sp)];
	const char		*why;
	size_t			 n;

	assert_int_equal(chan_send_spawned(p->sp[1], 5, 31337, 0), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_SPAWNED);
	assert_int_equal(m.cm_u.spawned.sp_pid, 31337);
	assert_int_equal(m.cm_u.spawned.sp_errno, 0);
	assert_int_equal(chan_send_spawned(p->sp[1], 6, 0, EAGAIN), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_u.spawned.sp_pid, 0);
	assert_int_equal(m.cm_u.spawned.sp_errno, EAGAIN);
	/* A pid and an error, or neither, or a negative pid: refused. */
	memset(&sp, 0, sizeof(sp));
	n = mk(buf, MSG_SPAWNED, sizeof(sp), &sp, sizeof(sp));
	expect_decode_reject(buf, n, -1, 0);
	sp.sp_pid = 10;
	sp.sp_errno = EAGAIN;
	n = mk(buf, MSG_SPAWNED, sizeof(sp), &sp, sizeof(sp));
	expect_decode_reject(buf, n, -1, 0);
	sp.sp_pid = -1;
	n = mk(buf, MSG_SPAWNED, sizeof(sp), &sp, sizeof(sp));
	expect_decode_reject(buf, n, -1, 0);
	/* No descriptor may ride on it. */
	sp.sp_pid = 10;
	sp.sp_errno = 0;
	n = mk(buf, MSG_SPAWNED, sizeof(sp), &sp, sizeof(sp));
	send_raw(p->sp[0], buf, n, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "SPAWNED with fd");
	expect_pipe_eof(p);
}

/* LOAD: a busy worker's heartbeat each second, with or without frames. */
static void
test_load(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	struct msg_load		 ld;
	static uint8_t		 buf[HDR + sizeof(ld) + 1];
	static const uint8_t	 zero[sizeof(ld) + 1];
	const char		*why;
	size_t			 n;

	/* During set-up: nothing relayed, still a heartbeat. */
	assert_int_equal(chan_send_load(p->sp[1], 4, 0, 0), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_LOAD);
	assert_int_equal(m.cm_hdr.mh_ref, 4);
	assert_int_equal(m.cm_hdr.mh_len, sizeof(struct msg_load));
	assert_int_equal(m.cm_u.load.ld_frames, 0);
	assert_int_equal(m.cm_u.load.ld_lag_max_us, 0);
	assert_int_equal(m.cm_fd, -1);
	assert_int_equal(chan_send_load(p->sp[1], 4, 1234, 50), 0);
	assert_int_equal(chan_recv(p->sp[0], &m, &why), 1);
	assert_int_equal(m.cm_u.load.ld_lag_max_us, 1234);
	assert_int_equal(m.cm_u.load.ld_frames, 50);
	/* Its size is exact. */
	memset(&ld, 0, sizeof(ld));
	n = mk(buf, MSG_LOAD, sizeof(ld) - 1, &ld, sizeof(ld) - 1);
	expect_decode_reject(buf, n, -1, 0);
	n = mk(buf, MSG_LOAD, sizeof(ld) + 1, zero, sizeof(zero));
	expect_decode_reject(buf, n, -1, 0);
}

static void
test_type_names(void **state)
{
	(void)state;
	assert_string_equal(chan_type_name(MSG_HANDOFF), "HANDOFF");
	assert_string_equal(chan_type_name(MSG_PREPARE), "PREPARE");
	assert_string_equal(chan_type_name(MSG_DRAIN), "DRAIN");
	assert_string_equal(chan_type_name(MSG_ACCEPTED), "ACCEPTED");
	assert_string_equal(chan_type_name(MSG_CALL_INFO), "CALL_INFO");
	assert_string_equal(chan_type_name(MSG_DONE), "DONE");
	assert_string_equal(chan_type_name(MSG_READY), "READY");
	assert_string_equal(chan_type_name(MSG_SPAWN), "SPAWN");
	assert_string_equal(chan_type_name(MSG_SPAWNED), "SPAWNED");
	assert_string_equal(chan_type_name(0), "unknown");
	assert_string_equal(chan_type_name(MSG_TYPE_MAX), "unknown");
	assert_string_equal(chan_type_name(0xffffffff), "unknown");
}

static void
test_reject_short(void **state)
{
	struct pair	*p = *state;
	uint8_t		 buf[HDR];
	size_t		 n;

	memset(buf, 0, sizeof(buf));
	buf[0] = MSG_DRAIN;
	for (n = 1; n < HDR; n++) {
		send_raw(p->sp[0], buf, n, NULL, 0);
		expect_recv_reject(p->sp[1], "short");
		expect_decode_reject(buf, n, -1, 0);
	}
	expect_decode_reject(buf, 0, -1, 0);
	/* A short datagram carrying an fd: rejected, fd closed. */
	send_raw(p->sp[0], buf, 4, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "short with fd");
	expect_pipe_eof(p);
	/* No bytes at all but an fd: not EOF, rejected, fd closed. */
	new_pipe(p);
	send_raw(p->sp[0], buf, 0, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "empty with fd");
	expect_pipe_eof(p);
}

static void
test_reject_len_mismatch(void **state)
{
	struct pair		*p = *state;
	static uint8_t		 buf[HDR + 512];
	struct msg_accepted	 ac;
	size_t			 n;

	memset(&ac, 0, sizeof(ac));
	/* Header says 8, datagram holds 7, 9, or nothing. */
	n = mk(buf, MSG_ACCEPTED, sizeof(ac), &ac, sizeof(ac) - 1);
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "len > datagram");
	expect_decode_reject(buf, n, -1, 0);
	n = mk(buf, MSG_ACCEPTED, sizeof(ac), &ac, sizeof(ac));
	buf[n++] = 0;
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "len < datagram");
	expect_decode_reject(buf, n, -1, 0);
	n = mk(buf, MSG_DRAIN, 1, NULL, 0);
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "len without payload");
	expect_decode_reject(buf, n, -1, 0);
	/* And the same for a HANDOFF with its fd: the fd is closed. */
	{
		struct msg_handoff ho = mk_handoff(4);
		uint8_t pl[sizeof(ho) + 4];

		memcpy(pl, &ho, sizeof(ho));
		memcpy(pl + sizeof(ho), "GET ", 4);
		n = mk(buf, MSG_HANDOFF, sizeof(pl) + 1, pl, sizeof(pl));
		send_raw(p->sp[0], buf, n, &p->pp[1], 1);
		expect_recv_reject(p->sp[1], "HANDOFF len mismatch");
		expect_pipe_eof(p);
	}
}

static void
test_reject_len_too_big(void **state)
{
	struct pair	*p = *state;
	static uint8_t	 buf[HDR + CHAN_MAX_PAYLOAD + 1];
	size_t		 n;

	memset(buf, 0, sizeof(buf));
	/* Header claims more than the maximum; datagram is short. */
	n = mk(buf, MSG_HANDOFF, CHAN_MAX_PAYLOAD + 1, NULL, 0);
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "len > max");
	expect_decode_reject(buf, n, -1, 0);
	n = mk(buf, MSG_HANDOFF, 0xffffffff, NULL, 0);
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "len huge");
	expect_decode_reject(buf, n, -1, 0);
	/* Header and datagram agree on max + 1: decoder must refuse. */
	n = mk(buf, MSG_HANDOFF, CHAN_MAX_PAYLOAD + 1, NULL, 0);
	expect_decode_reject(buf, n + CHAN_MAX_PAYLOAD + 1, -1, 0);
}

static void
test_reject_unknown_type(void **state)
{
	struct pair	*p = *state;
	static const uint32_t types[] = { 0, MSG_TYPE_MAX, MSG_TYPE_MAX + 1,
	    1000, 0x80000000, 0xffffffff };
	uint8_t		 buf[HDR + 8];
	size_t		 i, n;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		n = mk(buf, types[i], 0, NULL, 0);
		send_raw(p->sp[0], buf, n, NULL, 0);
		expect_recv_reject(p->sp[1], "unknown type");
		expect_decode_reject(buf, n, -1, 0);
		n = mk(buf, types[i], 8, "\0\0\0\0\0\0\0\0", 8);
		send_raw(p->sp[0], buf, n, NULL, 0);
		expect_recv_reject(p->sp[1], "unknown type with payload");
		expect_decode_reject(buf, n, -1, 0);
	}
}

/* Each fixed-size message one byte short and one byte long. */
static void
test_reject_fixed_sizes(void **state)
{
	struct pair	*p = *state;
	static const struct {
		uint32_t	type;
		size_t		size;
	} fixed[] = {
		{ MSG_PREPARE, sizeof(struct msg_prepare) },
		{ MSG_DRAIN, 0 },
		{ MSG_ACCEPTED, sizeof(struct msg_accepted) },
		{ MSG_CALL_INFO, sizeof(struct msg_call_info) },
		{ MSG_DONE, sizeof(struct msg_done) },
	};
	static uint8_t		 buf[HDR + 1024], zero[1024];
	static struct chan_msg	 m;
	const char		*why;
	size_t			 i, n, len;
	int			 d;

	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		/* The exact size (all-zero strings are terminated) passes. */
		n = mk(buf, fixed[i].type, (uint32_t)fixed[i].size, zero,
		    fixed[i].size);
		assert_int_equal(chan_decode(buf, n, -1, 0, &m, &why), 0);
		send_raw(p->sp[0], buf, n, NULL, 0);
		assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
		for (d = -1; d <= 1; d += 2) {
			if (fixed[i].size == 0 && d < 0)
				continue;
			len = d < 0 ? fixed[i].size - 1 : fixed[i].size + 1;
			n = mk(buf, fixed[i].type, (uint32_t)len, zero, len);
			send_raw(p->sp[0], buf, n, NULL, 0);
			expect_recv_reject(p->sp[1],
			    chan_type_name(fixed[i].type));
			expect_decode_reject(buf, n, -1, 0);
		}
	}
}

static void
test_reject_unterminated(void **state)
{
	struct pair		*p = *state;
	static uint8_t		 buf[HDR + 1024];
	struct msg_prepare	 pr;
	struct msg_call_info	 ci;
	struct msg_done		 dn;
	char			*fields[6];
	size_t			 caps[6], i, n;

	memset(&pr, 'A', sizeof(pr));
	n = mk(buf, MSG_PREPARE, sizeof(pr), &pr, sizeof(pr));
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "PREPARE unterminated");
	expect_decode_reject(buf, n, -1, 0);

	fields[0] = ci.ci_call_sid;
	caps[0] = sizeof(ci.ci_call_sid);
	fields[1] = ci.ci_stream_sid;
	caps[1] = sizeof(ci.ci_stream_sid);
	fields[2] = ci.ci_conversation_id;
	caps[2] = sizeof(ci.ci_conversation_id);
	fields[3] = ci.ci_user_id;
	caps[3] = sizeof(ci.ci_user_id);
	fields[4] = ci.ci_phone;
	caps[4] = sizeof(ci.ci_phone);
	fields[5] = ci.ci_call_type;
	caps[5] = sizeof(ci.ci_call_type);
	for (i = 0; i < 6; i++) {
		/* All fields terminated but field i, which runs to its end. */
		memset(&ci, 0, sizeof(ci));
		memset(fields[i], 'F', caps[i]);
		n = mk(buf, MSG_CALL_INFO, sizeof(ci), &ci, sizeof(ci));
		send_raw(p->sp[0], buf, n, NULL, 0);
		expect_recv_reject(p->sp[1], "CALL_INFO unterminated");
		expect_decode_reject(buf, n, -1, 0);
	}

	memset(&dn, 0, sizeof(dn));
	memset(dn.dn_reason, 'R', sizeof(dn.dn_reason));
	n = mk(buf, MSG_DONE, sizeof(dn), &dn, sizeof(dn));
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "DONE unterminated");
	expect_decode_reject(buf, n, -1, 0);
}

static void
test_reject_handoff(void **state)
{
	struct pair		*p = *state;
	static uint8_t		 buf[HDR + CHAN_MAX_PAYLOAD];
	static uint8_t		 pl[CHAN_MAX_PAYLOAD];
	struct msg_handoff	 ho;
	size_t			 n;

	/* Without a descriptor. */
	ho = mk_handoff(4);
	memcpy(pl, &ho, sizeof(ho));
	memcpy(pl + sizeof(ho), "GET ", 4);
	n = mk(buf, MSG_HANDOFF, sizeof(ho) + 4, pl, sizeof(ho) + 4);
	send_raw(p->sp[0], buf, n, NULL, 0);
	expect_recv_reject(p->sp[1], "HANDOFF without fd");
	expect_decode_reject(buf, n, -1, 0);

	/* headlen 0 (and no head bytes). */
	ho = mk_handoff(0);
	memcpy(pl, &ho, sizeof(ho));
	n = mk(buf, MSG_HANDOFF, sizeof(ho), pl, sizeof(ho));
	expect_decode_reject(buf, n, p->pp[1], 0);
	send_raw(p->sp[0], buf, n, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "HANDOFF headlen 0");

	/* headlen says 5, 4 bytes follow; and 3. */
	ho = mk_handoff(5);
	memcpy(pl, &ho, sizeof(ho));
	n = mk(buf, MSG_HANDOFF, sizeof(ho) + 4, pl, sizeof(ho) + 4);
	expect_decode_reject(buf, n, p->pp[1], 0);
	send_raw(p->sp[0], buf, n, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "HANDOFF headlen > bytes");
	ho = mk_handoff(3);
	memcpy(pl, &ho, sizeof(ho));
	expect_decode_reject(buf, n, p->pp[1], 0);
	send_raw(p->sp[0], buf, n, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "HANDOFF headlen < bytes");

	/* Shorter than struct msg_handoff. */
	n = mk(buf, MSG_HANDOFF, sizeof(ho) - 1, pl, sizeof(ho) - 1);
	expect_decode_reject(buf, n, p->pp[1], 0);
	send_raw(p->sp[0], buf, n, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "HANDOFF short");

	/* Peer address longer than sockaddr_storage. */
	ho = mk_handoff(4);
	ho.ho_peerlen = sizeof(ho.ho_peer) + 1;
	memcpy(pl, &ho, sizeof(ho));
	n = mk(buf, MSG_HANDOFF, sizeof(ho) + 4, pl, sizeof(ho) + 4);
	expect_decode_reject(buf, n, p->pp[1], 0);
	send_raw(p->sp[0], buf, n, &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "HANDOFF peerlen");

	/* Every copy sent above was closed by chan_recv(). */
	expect_pipe_eof(p);
}

/* A descriptor on any message but HANDOFF: rejected and closed. */
static void
test_unexpected_fd(void **state)
{
	struct pair		*p = *state;
	static uint8_t		 buf[HDR + 1024];
	struct msg_prepare	 pr;
	struct msg_accepted	 ac;
	struct msg_call_info	 ci;
	struct msg_done		 dn;
	size_t			 n;
	int			 fd;

	memset(&pr, 0, sizeof(pr));
	memset(&ac, 0, sizeof(ac));
	memset(&ci, 0, sizeof(ci));
	memset(&dn, 0, sizeof(dn));
	n = mk(buf, MSG_DRAIN, 0, NULL, 0);
	expect_decode_reject(buf, n, p->pp[1], 0);
	n = mk(buf, MSG_DONE, sizeof(dn), &dn, sizeof(dn));
	expect_decode_reject(buf, n, p->pp[1], 0);

	/* Each type with its own pipe, so each close is seen separately. */
	expect_reject_closes_fd(p, MSG_PREPARE, &pr, sizeof(pr));
	new_pipe(p);
	expect_reject_closes_fd(p, MSG_DRAIN, NULL, 0);
	new_pipe(p);
	expect_reject_closes_fd(p, MSG_ACCEPTED, &ac, sizeof(ac));
	new_pipe(p);
	expect_reject_closes_fd(p, MSG_CALL_INFO, &ci, sizeof(ci));
	new_pipe(p);
	expect_reject_closes_fd(p, MSG_DONE, &dn, sizeof(dn));
	new_pipe(p);
	expect_reject_closes_fd(p, 0, NULL, 0);
	new_pipe(p);
	expect_reject_closes_fd(p, MSG_TYPE_MAX, NULL, 0);

	/* The same via chan_send(): the sender keeps its copy. */
	new_pipe(p);
	fd = p->pp[1];
	assert_int_equal(chan_send(p->sp[0], MSG_DRAIN, 1, NULL, 0, fd), 0);
	assert_true(fcntl(fd, F_GETFD) != -1);
	expect_recv_reject(p->sp[1], "DRAIN with fd via chan_send");
	expect_pipe_eof(p);
}

static void
test_two_fds(void **state)
{
	struct pair		*p = *state;
	static uint8_t		 buf[HDR + 256];
	static uint8_t		 pl[256];
	struct msg_handoff	 ho = mk_handoff(4);
	int			 q[2], fds[8], i;
	size_t			 n;
	char			 c;

	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	memcpy(pl, &ho, sizeof(ho));
	memcpy(pl + sizeof(ho), "GET ", 4);
	n = mk(buf, MSG_HANDOFF, sizeof(ho) + 4, pl, sizeof(ho) + 4);
	/* A well-formed HANDOFF but with two descriptors. */
	fds[0] = p->pp[1];
	fds[1] = q[1];
	send_raw(p->sp[0], buf, n, fds, 2);
	expect_recv_reject(p->sp[1], "HANDOFF with two fds");
	expect_pipe_eof(p);
	close(q[1]);
	assert_int_equal(fcntl(q[0], F_SETFL, O_NONBLOCK), 0);
	if (read(q[0], &c, 1) != 0)
		fail_msg("second descriptor not closed");
	close(q[0]);

	/* Four on a DRAIN: all closed. */
	new_pipe(p);
	for (i = 0; i < 4; i++)
		fds[i] = p->pp[1];
	n = mk(buf, MSG_DRAIN, 0, NULL, 0);
	send_raw(p->sp[0], buf, n, fds, 4);
	expect_recv_reject(p->sp[1], "DRAIN with four fds");
	expect_pipe_eof(p);
	/* Eight on a HANDOFF: more than chan_recv() has room for. */
	new_pipe(p);
	for (i = 0; i < 8; i++)
		fds[i] = p->pp[1];
	n = mk(buf, MSG_HANDOFF, sizeof(ho) + 4, pl, sizeof(ho) + 4);
	send_raw(p->sp[0], buf, n, fds, 8);
	expect_recv_reject(p->sp[1], "HANDOFF with eight fds");
	expect_pipe_eof(p);
}

/* A datagram larger than header + CHAN_MAX_PAYLOAD is cut: MSG_TRUNC. */
static void
test_truncated(void **state)
{
	struct pair		*p = *state;
	static uint8_t		 buf[HDR + CHAN_MAX_PAYLOAD + 64];
	static uint8_t		 pl[CHAN_MAX_PAYLOAD];
	struct msg_handoff	 ho;
	struct msg_hdr		 h;
	size_t			 hl;

	/* The header claims exactly what arrives after truncation. */
	hl = CHAN_MAX_PAYLOAD - sizeof(ho);
	ho = mk_handoff((uint32_t)hl);
	memset(pl, 'h', sizeof(pl));
	memcpy(pl, &ho, sizeof(ho));
	memset(&h, 0, sizeof(h));
	h.mh_type = MSG_HANDOFF;
	h.mh_len = CHAN_MAX_PAYLOAD;
	memcpy(buf, &h, HDR);
	memcpy(buf + HDR, pl, CHAN_MAX_PAYLOAD);
	memset(buf + HDR + CHAN_MAX_PAYLOAD, 'x', 64);
	/* Sanity: the first part alone is a valid HANDOFF. */
	{
		static struct chan_msg	m;
		const char		*why;

		assert_int_equal(chan_decode(buf, HDR + CHAN_MAX_PAYLOAD,
		    p->pp[1], 0, &m, &why), 0);
		expect_decode_reject(buf, HDR + CHAN_MAX_PAYLOAD, p->pp[1],
		    1);
	}
	send_raw(p->sp[0], buf, sizeof(buf), &p->pp[1], 1);
	expect_recv_reject(p->sp[1], "truncated");
	expect_pipe_eof(p);
	/* One byte over is enough. */
	new_pipe(p);
	send_raw(p->sp[0], buf, HDR + CHAN_MAX_PAYLOAD + 1, NULL, 0);
	expect_recv_reject(p->sp[1], "truncated by one");
}

static void
test_eof_and_eagain(void **state)
{
	struct pair		*p = *state;
	static struct chan_msg	 m;
	const char		*why;

	errno = 0;
	assert_int_equal(chan_recv(p->sp[1], &m, &why), -1);
	assert_int_equal(errno, EAGAIN);
	assert_non_null(why);
	/* A message, then EOF once the peer is gone. */
	assert_int_equal(chan_send_drain(p->sp[0], 1), 0);
	close(p->sp[0]);
	p->sp[0] = -1;
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_DRAIN);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 0);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 0);
}

static void
test_send_limits(void **state)
{
	struct pair		*p = *state;
	static uint8_t		 big[CHAN_MAX_PAYLOAD + 1];
	static char		 head[CHAN_MAX_PAYLOAD];
	static struct chan_msg	 m;
	struct sockaddr_in	 sin;
	char			 sid[65];
	const char		*why;

	errno = 0;
	assert_int_equal(chan_send(p->sp[0], MSG_DRAIN, 0, big,
	    sizeof(big), -1), -1);
	assert_int_equal(errno, EMSGSIZE);
	errno = 0;
	assert_int_equal(chan_send(p->sp[0], MSG_DRAIN, 0, big,
	    (size_t)-1, -1), -1);
	assert_int_equal(errno, EMSGSIZE);
	/* The maximum itself goes through (and is refused as a DRAIN). */
	assert_int_equal(chan_send(p->sp[0], MSG_DRAIN, 0, big,
	    CHAN_MAX_PAYLOAD, -1), 0);
	expect_recv_reject(p->sp[1], "DRAIN with payload");

	memset(sid, 'C', 64);
	sid[64] = '\0';
	errno = 0;
	assert_int_equal(chan_send_prepare(p->sp[0], 0, sid), -1);
	assert_int_equal(errno, EINVAL);
	/* Nothing was sent by the failures. */
	errno = 0;
	assert_int_equal(chan_recv(p->sp[1], &m, &why), -1);
	assert_int_equal(errno, EAGAIN);

	/* HANDOFF: head too large or empty. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	errno = 0;
	assert_int_equal(chan_send_handoff(p->sp[0], 0, p->pp[1],
	    (struct sockaddr *)&sin, sizeof(sin), 0, head,
	    CHAN_MAX_PAYLOAD - sizeof(struct msg_handoff) + 1), -1);
	assert_int_equal(errno, EMSGSIZE);
	errno = 0;
	assert_int_equal(chan_send_handoff(p->sp[0], 0, p->pp[1],
	    (struct sockaddr *)&sin, sizeof(sin), 0, head, 0), -1);
	assert_int_equal(errno, EMSGSIZE);
	errno = 0;
	assert_int_equal(chan_send(p->sp[0], MSG_DRAIN, 0, NULL, 0, -1), 0);
	/* The largest head that fits is accepted end to end. */
	assert_int_equal(chan_send_handoff(p->sp[0], 0, p->pp[1],
	    (struct sockaddr *)&sin, sizeof(sin), 0, head,
	    CHAN_MAX_PAYLOAD - sizeof(struct msg_handoff)), 0);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_DRAIN);
	assert_int_equal(chan_recv(p->sp[1], &m, &why), 1);
	assert_int_equal(m.cm_hdr.mh_type, MSG_HANDOFF);
	assert_int_equal(m.cm_hdr.mh_len, CHAN_MAX_PAYLOAD);
	close(m.cm_fd);

	/* Sending to a closed peer fails without SIGPIPE. */
	close(p->sp[1]);
	p->sp[1] = -1;
	errno = 0;
	assert_int_equal(chan_send_drain(p->sp[0], 0), -1);
	assert_int_equal(errno, EPIPE);
}

/* Nothing above left descriptors behind in this process. */
static void
test_no_fd_leak(void **state)
{
	(void)state;
	assert_int_equal(open_fds(), fds_at_start);
}

#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_handoff),
		T(test_handoff_ipv6_peer),
		T(test_prepare),
		T(test_drain),
		T(test_accepted),
		T(test_call_info),
		T(test_done),
		T(test_ready),
		T(test_spawn),
		T(test_spawned),
		T(test_load),
		T(test_type_names),
		T(test_reject_short),
		T(test_reject_len_mismatch),
		T(test_reject_len_too_big),
		T(test_reject_unknown_type),
		T(test_reject_fixed_sizes),
		T(test_reject_unterminated),
		T(test_reject_handoff),
		T(test_unexpected_fd),
		T(test_two_fds),
		T(test_truncated),
		T(test_eof_and_eagain),
		T(test_send_limits),
		cmocka_unit_test(test_no_fd_leak),
	};

	fds_at_start = open_fds();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
