/*
 * channel.c - the supervisor<->worker channel: typed SOCK_SEQPACKET
 * datagrams, at most one descriptor each (SCM_RIGHTS, HANDOFF only).
 * Runs in both roles.  Every message's sender sits next to the size
 * rule its receiver enforces (chan_check()).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "channel.h"
#include "util.h"

static int	chan_check(struct chan_msg *, const char **);
static int	chan_strok(const char *, size_t);

static const char *const chan_names[MSG_TYPE_MAX] = {
	[MSG_HANDOFF] = "HANDOFF",
	[MSG_PREPARE] = "PREPARE",
	[MSG_DRAIN] = "DRAIN",
	[MSG_ACCEPTED] = "ACCEPTED",
	[MSG_CALL_INFO] = "CALL_INFO",
	[MSG_DONE] = "DONE",
	[MSG_READY] = "READY",
	[MSG_SPAWN] = "SPAWN",
	[MSG_SPAWNED] = "SPAWNED",
	[MSG_LOAD] = "LOAD",
};

const char *
chan_type_name(uint32_t t)
{
	if (t == 0 || t >= MSG_TYPE_MAX)
		return "unknown";
	return chan_names[t];
}

/*
 * A worker stamps its pid on what it sends: a worker handed a stream
 * before it said READY may report ACCEPTED before the fork server's
 * SPAWNED has told the supervisor who it is.
 */
static int32_t	chan_pid;

void
chan_set_pid(int32_t pid)
{
	chan_pid = pid;
}

int
chan_send(int fd, uint32_t type, uint32_t ref, const void *payload,
    size_t len, int passfd)
{
	struct msg_hdr	 h;
	struct iovec	 iov[2];
	struct msghdr	 mh;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct cmsghdr	*c;
	ssize_t		 n;

	if (len > CHAN_MAX_PAYLOAD) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&h, 0, sizeof(h));
	h.mh_type = type;
	h.mh_len = (uint32_t)len;
	h.mh_ref = ref;
	h.mh_pid = chan_pid;
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)(uintptr_t)payload;
	iov[1].iov_len = len;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = len > 0 ? 2 : 1;
	if (passfd >= 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &passfd, sizeof(int));
	}
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if ((size_t)n != sizeof(h) + len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

int
chan_recv(int fd, struct chan_msg *m, const char **why)
{
	struct msghdr	 mh;
	struct iovec	 iov[2];
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 4)];
	} cm;
	struct cmsghdr	*c;
	ssize_t		 n;
	int		 fds[4], nfd = 0, i, extra = 0, r;
	uint8_t		 dgram[sizeof(struct msg_hdr) + CHAN_MAX_PAYLOAD];

	*why = NULL;
	iov[0].iov_base = dgram;
	iov[0].iov_len = sizeof(dgram);
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		*why = "recvmsg";
		return -1;
	}
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		size_t k, cnt;
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < cnt; k++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
			if (nfd < 4)
				fds[nfd++] = f;
			else
				close(f);
		}
	}
	if (n == 0 && nfd == 0)
		return 0;
	/* At most one descriptor: close any extras. */
	for (i = 1; i < nfd; i++) {
		close(fds[i]);
		extra = 1;
	}
	r = chan_decode(dgram, (size_t)n, nfd > 0 ? fds[0] : -1,
	    (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || extra, m, why);
	if (r == -1) {
		if (nfd > 0)
			close(fds[0]);
		errno = EBADMSG;
		return -1;
	}
	return 1;
}

int
chan_decode(const uint8_t *buf, size_t n, int fd, int truncated,
    struct chan_msg *m, const char **why)
{
	m->cm_fd = -1;
	if (truncated) {
		*why = "truncated message or too many descriptors";
		return -1;
	}
	if (n < sizeof(struct msg_hdr)) {
		*why = "short message";
		return -1;
	}
	memcpy(&m->cm_hdr, buf, sizeof(m->cm_hdr));
	if (m->cm_hdr.mh_len > CHAN_MAX_PAYLOAD ||
	    m->cm_hdr.mh_len != n - sizeof(struct msg_hdr)) {
		*why = "length mismatch";
		return -1;
	}
	memset(&m->cm_u, 0, sizeof(m->cm_u.handoff));
	memcpy(m->cm_u.raw, buf + sizeof(struct msg_hdr), m->cm_hdr.mh_len);
	m->cm_fd = fd;
	if (chan_check(m, why) == -1) {
		m->cm_fd = -1;
		return -1;
	}
	return 0;
}

static int
chan_strok(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

/* Exact sizes, terminated strings, and a descriptor only on HANDOFF. */
static int
chan_check(struct chan_msg *m, const char **why)
{
	uint32_t	len = m->cm_hdr.mh_len;
	const struct msg_handoff *ho = &m->cm_u.handoff;
	const struct msg_call_info *ci = &m->cm_u.call_info;

	if (m->cm_hdr.mh_type != MSG_HANDOFF &&
	    m->cm_hdr.mh_type != MSG_SPAWN && m->cm_fd != -1) {
		*why = "unexpected descriptor";
		return -1;
	}
	switch (m->cm_hdr.mh_type) {
	case MSG_HANDOFF:
		if (m->cm_fd == -1) {
			*why = "HANDOFF without a descriptor";
			return -1;
		}
		if (len < sizeof(*ho) || ho->ho_headlen == 0 ||
		    ho->ho_headlen > CHAN_HEAD_MAX * 2 ||
		    len != sizeof(*ho) + ho->ho_headlen ||
		    ho->ho_peerlen > sizeof(ho->ho_peer)) {
			*why = "bad HANDOFF size";
			return -1;
		}
		return 0;
	case MSG_PREPARE:
		if (len != sizeof(struct msg_prepare) ||
		    !chan_strok(m->cm_u.prepare.pr_call_sid,
		    sizeof(m->cm_u.prepare.pr_call_sid)))
			break;
		return 0;
	case MSG_DRAIN:
		if (len != 0)
			break;
		return 0;
	case MSG_ACCEPTED:
		if (len != sizeof(struct msg_accepted))
			break;
		return 0;
	case MSG_CALL_INFO:
		if (len != sizeof(*ci) ||
		    !chan_strok(ci->ci_call_sid, sizeof(ci->ci_call_sid)) ||
		    !chan_strok(ci->ci_stream_sid, sizeof(ci->ci_stream_sid)) ||
		    !chan_strok(ci->ci_conversation_id,
		    sizeof(ci->ci_conversation_id)) ||
		    !chan_strok(ci->ci_user_id, sizeof(ci->ci_user_id)) ||
		    !chan_strok(ci->ci_phone, sizeof(ci->ci_phone)) ||
		    !chan_strok(ci->ci_call_type, sizeof(ci->ci_call_type)))
			break;
		return 0;
	case MSG_DONE:
		if (len != sizeof(struct msg_done) ||
		    !chan_strok(m->cm_u.done.dn_reason,
		    sizeof(m->cm_u.done.dn_reason)) ||
		    !chan_strok(m->cm_u.done.dn_call_sid,
		    sizeof(m->cm_u.done.dn_call_sid)))
			break;
		return 0;
	case MSG_READY:
		if (len != sizeof(struct msg_ready) ||
		    m->cm_u.ready.rd_pid <= 0)
			break;
		return 0;
	case MSG_LOAD:
		if (len != sizeof(struct msg_load))
			break;
		return 0;
	case MSG_SPAWN:
		if (m->cm_fd == -1) {
			*why = "SPAWN without a descriptor";
			return -1;
		}
		if (len != 0)
			break;
		return 0;
	case MSG_SPAWNED:
		if (len != sizeof(struct msg_spawned) ||
		    m->cm_u.spawned.sp_pid < 0 ||
		    (m->cm_u.spawned.sp_pid == 0) ==
		    (m->cm_u.spawned.sp_errno == 0))
			break;
		return 0;
	default:
		*why = "unknown message type";
		return -1;
	}
	*why = "bad payload size or unterminated string";
	return -1;
}

int
chan_send_handoff(int fd, uint32_t ref, int sock, const struct sockaddr *peer,
    socklen_t peerlen, uint64_t t_accept, const void *head, size_t headlen)
{
	uint8_t			 buf[CHAN_MAX_PAYLOAD];
	struct msg_handoff	 ho;


	if (headlen == 0 || sizeof(ho) + headlen > sizeof(buf) ||
	    peerlen > sizeof(ho.ho_peer)) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&ho, 0, sizeof(ho));
	ho.ho_t_accept_ns = t_accept;
	ho.ho_t_send_ns = now_mono_ns();
	memcpy(&ho.ho_peer, peer, peerlen);
	ho.ho_peerlen = peerlen;
	ho.ho_headlen = (uint32_t)headlen;
	memcpy(buf, &ho, sizeof(ho));
	memcpy(buf + sizeof(ho), head, headlen);
	return chan_send(fd, MSG_HANDOFF, ref, buf, sizeof(ho) + headlen, sock);
}

const uint8_t *
chan_handoff_head(const struct chan_msg *m)
{
	return m->cm_u.raw + sizeof(struct msg_handoff);
}

int
chan_send_prepare(int fd, uint32_t ref, const char *callsid)
{
	struct msg_prepare	pr;

	memset(&pr, 0, sizeof(pr));
	if (strlen(callsid) >= sizeof(pr.pr_call_sid)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(pr.pr_call_sid, callsid, strlen(callsid));
	return chan_send(fd, MSG_PREPARE, ref, &pr, sizeof(pr), -1);
}

int
chan_send_drain(int fd, uint32_t ref)
{
	return chan_send(fd, MSG_DRAIN, ref, NULL, 0, -1);
}

int
chan_send_accepted(int fd, uint32_t ref, uint64_t handoff_ns,
    uint64_t channel_ns)
{
	struct msg_accepted	ac;

	memset(&ac, 0, sizeof(ac));
	ac.ac_handoff_ns = handoff_ns;
	ac.ac_channel_ns = channel_ns;
	return chan_send(fd, MSG_ACCEPTED, ref, &ac, sizeof(ac), -1);
}

int
chan_send_call_info(int fd, uint32_t ref, const struct msg_call_info *ci)
{
	return chan_send(fd, MSG_CALL_INFO, ref, ci, sizeof(*ci), -1);
}

int
chan_send_done(int fd, uint32_t ref, const struct msg_done *dn)
{
	return chan_send(fd, MSG_DONE, ref, dn, sizeof(*dn), -1);
}

int
chan_send_ready(int fd, uint32_t ref, const struct msg_ready *rd)
{
	return chan_send(fd, MSG_READY, ref, rd, sizeof(*rd), -1);
}

int
chan_send_spawn(int fd, uint32_t ref, int chan)
{
	return chan_send(fd, MSG_SPAWN, ref, NULL, 0, chan);
}

int
chan_send_spawned(int fd, uint32_t ref, int32_t pid, int32_t err)
{
	struct msg_spawned	sp;

	memset(&sp, 0, sizeof(sp));
	sp.sp_pid = pid;
	sp.sp_errno = err;
	return chan_send(fd, MSG_SPAWNED, ref, &sp, sizeof(sp), -1);
}

int
chan_send_load(int fd, uint32_t ref, uint32_t lag_us, uint32_t frames)
{
	struct msg_load	ld;

	memset(&ld, 0, sizeof(ld));
	ld.ld_lag_max_us = lag_us;
	ld.ld_frames = frames;
	return chan_send(fd, MSG_LOAD, ref, &ld, sizeof(ld), -1);
}
