/*
 * fuzz_channel.c - libFuzzer target for chan_decode() in
 * common/channel.c, the check every datagram between supervisor and
 * worker passes.  Bit 0 of byte 0 says whether a descriptor came with
 * the datagram (a fake one, never used), bit 1 whether recvmsg()
 * reported truncation; the rest is the datagram, in a buffer of its own
 * size.  A message that decodes is checked against its type's size rule
 * and then sent over a real SOCK_SEQPACKET pair with chan_send() and
 * read back with chan_recv().  Links common/channel.c, common/util.c.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"

#define FZ_CHECK(c)	do { if (!(c)) fz_fail(__LINE__, #c); } while (0)
#define FZ_FD		99	/* stands for a received descriptor */
#define FZ_STR(a)	(memchr((a), '\0', sizeof(a)) != NULL)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fz_fail(int, const char *) __attribute__((noreturn));
static void	fz_check_size(const struct chan_msg *);
static void	fz_check_ok(const struct chan_msg *, const uint8_t *, size_t,
		    int);
static void	fz_roundtrip(const struct chan_msg *);

static void
fz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_channel.c:%d: invariant failed: %s\n", line,
	    what);
	abort();
}

/* The type's rule from channel.h, restated. */
static void
fz_check_size(const struct chan_msg *m)
{
	const struct msg_handoff	*ho = &m->cm_u.handoff;
	const struct msg_call_info	*ci = &m->cm_u.call_info;
	uint32_t			 len = m->cm_hdr.mh_len;

	switch (m->cm_hdr.mh_type) {
	case MSG_HANDOFF:
		FZ_CHECK(len >= sizeof(*ho));
		FZ_CHECK(ho->ho_headlen > 0 &&
		    ho->ho_headlen <= CHAN_HEAD_MAX * 2);
		FZ_CHECK(len == sizeof(*ho) + ho->ho_headlen);
		FZ_CHECK(ho->ho_peerlen <= sizeof(ho->ho_peer));
		FZ_CHECK(chan_handoff_head(m) == m->cm_u.raw + sizeof(*ho));
		break;
	case MSG_PREPARE:
		FZ_CHECK(len == sizeof(struct msg_prepare));
		FZ_CHECK(FZ_STR(m->cm_u.prepare.pr_call_sid));
		break;
	case MSG_DRAIN:
		FZ_CHECK(len == 0);
		break;
	case MSG_ACCEPTED:
		FZ_CHECK(len == sizeof(struct msg_accepted));
		break;
	case MSG_CALL_INFO:
		FZ_CHECK(len == sizeof(*ci));
		FZ_CHECK(FZ_STR(ci->ci_call_sid) && FZ_STR(ci->ci_stream_sid) &&
		    FZ_STR(ci->ci_conversation_id) && FZ_STR(ci->ci_user_id) &&
		    FZ_STR(ci->ci_phone) && FZ_STR(ci->ci_call_type));
		break;
	case MSG_DONE:
		FZ_CHECK(len == sizeof(struct msg_done));
		FZ_CHECK(FZ_STR(m->cm_u.done.dn_call_sid) &&
		    FZ_STR(m->cm_u.done.dn_reason));
		break;
	case MSG_READY:
		FZ_CHECK(len == sizeof(struct msg_ready));
		FZ_CHECK(m->cm_u.ready.rd_pid > 0);
		break;
	case MSG_SPAWN:
		FZ_CHECK(len == 0);
		break;
	case MSG_SPAWNED:
		FZ_CHECK(len == sizeof(struct msg_spawned));
		FZ_CHECK(m->cm_u.spawned.sp_pid >= 0);
		FZ_CHECK((m->cm_u.spawned.sp_pid > 0) ==
		    (m->cm_u.spawned.sp_errno == 0));
		break;
	case MSG_LOAD:
		FZ_CHECK(len == sizeof(struct msg_load));
		break;
	default:
		FZ_CHECK(!"unknown type accepted");
	}
}

static void
fz_check_ok(const struct chan_msg *m, const uint8_t *dg, size_t n, int fd)
{
	uint8_t	*head;
	size_t	 hl;

	FZ_CHECK(n >= sizeof(struct msg_hdr));
	FZ_CHECK(memcmp(&m->cm_hdr, dg, sizeof(m->cm_hdr)) == 0);
	FZ_CHECK(m->cm_hdr.mh_len <= CHAN_MAX_PAYLOAD);
	FZ_CHECK(m->cm_hdr.mh_len == n - sizeof(struct msg_hdr));
	FZ_CHECK(memcmp(m->cm_u.raw, dg + sizeof(struct msg_hdr),
	    m->cm_hdr.mh_len) == 0);
	FZ_CHECK(strcmp(chan_type_name(m->cm_hdr.mh_type), "unknown") != 0);
	fz_check_size(m);
	if (m->cm_hdr.mh_type == MSG_SPAWN) {
		FZ_CHECK(fd != -1 && m->cm_fd == fd);	/* the worker's end */
		return;
	}
	if (m->cm_hdr.mh_type != MSG_HANDOFF) {
		FZ_CHECK(m->cm_fd == -1);
		return;
	}
	FZ_CHECK(fd != -1 && m->cm_fd == fd);
	/* What call_new() copies: the head, as an exact-size buffer. */
	hl = m->cm_u.handoff.ho_headlen;
	if ((head = malloc(hl)) == NULL)
		abort();
	memcpy(head, chan_handoff_head(m), hl);
	FZ_CHECK(memcmp(head, dg + sizeof(struct msg_hdr) +
	    sizeof(struct msg_handoff), hl) == 0);
	free(head);
}

/* chan_send() then chan_recv() gives the same message back. */
static void
fz_roundtrip(const struct chan_msg *m)
{
	static int		 sp[2] = { -1, -1 };
	static struct chan_msg	 r;
	const char		*why = NULL;
	int			 fd = -1;

	if (sp[0] == -1 && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC,
	    0, sp) == -1)
		abort();
	if ((m->cm_hdr.mh_type == MSG_HANDOFF ||
	    m->cm_hdr.mh_type == MSG_SPAWN) &&
	    (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
		abort();
	FZ_CHECK(chan_send(sp[0], m->cm_hdr.mh_type, m->cm_hdr.mh_ref,
	    m->cm_u.raw, m->cm_hdr.mh_len, fd) == 0);
	if (fd != -1)
		close(fd);
	FZ_CHECK(chan_recv(sp[1], &r, &why) == 1);
	FZ_CHECK(r.cm_hdr.mh_type == m->cm_hdr.mh_type);
	FZ_CHECK(r.cm_hdr.mh_len == m->cm_hdr.mh_len);
	FZ_CHECK(r.cm_hdr.mh_ref == m->cm_hdr.mh_ref);
	FZ_CHECK(memcmp(r.cm_u.raw, m->cm_u.raw, m->cm_hdr.mh_len) == 0);
	FZ_CHECK((r.cm_fd != -1) == (fd != -1));
	if (r.cm_fd != -1)
		close(r.cm_fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chan_msg	*m;
	const char	*why = NULL;
	uint8_t		*dg;
	size_t		 n;
	int		 fd, trunc, rc;

	if (size < 1)
		return 0;
	fd = (data[0] & 1) ? FZ_FD : -1;
	trunc = (data[0] >> 1) & 1;
	n = size - 1;
	if ((dg = malloc(n)) == NULL || (m = malloc(sizeof(*m))) == NULL)
		abort();
	memcpy(dg, data + 1, n);
	memset(m, 0xa5, sizeof(*m));
	rc = chan_decode(dg, n, fd, trunc, m, &why);
	if (rc == 0) {
		FZ_CHECK(!trunc);
		fz_check_ok(m, dg, n, fd);
		fz_roundtrip(m);
	} else {
		FZ_CHECK(rc == -1);
		FZ_CHECK(why != NULL && *why != '\0');
		FZ_CHECK(m->cm_fd == -1);
	}
	if (n >= sizeof(uint32_t)) {
		uint32_t t;

		memcpy(&t, dg, sizeof(t));
		FZ_CHECK(chan_type_name(t) != NULL);
	}
	free(dg);
	free(m);
	return 0;
}
