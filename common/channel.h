/*
 * channel.h - typed messages between the supervisor and one worker.
 *
 * One SOCK_SEQPACKET datagram per message: a fixed header then the
 * payload, at most CHAN_MAX_PAYLOAD bytes, at most one descriptor
 * (SCM_RIGHTS, only on MSG_HANDOFF and MSG_SPAWN).  The same codec
 * carries the supervisor's requests to the fork server (SPAWN) and its
 * answers (SPAWNED).  Each message has its sender and
 * its decoder side by side in channel.c.  Decoders check the exact
 * length, NUL-terminated strings, truncation and unexpected fds.
 *
 * fd ownership: chan_send() never closes the fd it passes; the caller
 * closes its copy once chan_send() returned 0.  A received fd belongs
 * to the caller of chan_recv(); fds arriving where none is expected
 * are closed by chan_recv() and the message is rejected.
 */
#ifndef NAIBER_CHANNEL_H
#define NAIBER_CHANNEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct config;

#define CHAN_MAX_PAYLOAD	16384
#define CHAN_HEAD_MAX		8192	/* request head bytes in a HANDOFF */

enum msg_type {
	MSG_HANDOFF = 1,	/* s->w: socket + head bytes + peer */
	MSG_PREPARE,		/* s->w: prepare the first message for a call */
	MSG_DRAIN,		/* s->w: stop when idle, finish the call */
	MSG_ACCEPTED,		/* w->s: took the socket */
	MSG_CALL_INFO,		/* w->s: what the call is, for orphan clean-up */
	MSG_DONE,		/* w->s: call over, counters */
	MSG_READY,		/* w->s: warmed up, may be marked idle */
	MSG_SPAWN,		/* s->f: fork a worker on this channel (fd) */
	MSG_SPAWNED,		/* f->s: its pid, or why not */
	MSG_LOAD,		/* w->s: each second from ACCEPTED to DONE:
				   the heartbeat, and the relay lag */
	MSG_TYPE_MAX
};

struct msg_hdr {
	uint32_t	mh_type;
	uint32_t	mh_len;		/* payload bytes after the header */
	uint32_t	mh_ref;		/* sender's reference (worker slot) */
	int32_t		mh_pid;		/* sender's pid (workers), else 0 */
};

struct msg_handoff {
	uint64_t		ho_t_accept_ns;	/* CLOCK_MONOTONIC at accept */
	uint64_t		ho_t_send_ns;	/* CLOCK_MONOTONIC at send */
	struct sockaddr_storage	ho_peer;
	uint32_t		ho_peerlen;
	uint32_t		ho_headlen;
	/* followed by ho_headlen bytes of raw request bytes */
};

struct msg_prepare {
	char	pr_call_sid[64];
};

struct msg_accepted {
	uint64_t	ac_handoff_ns;	/* accept -> worker owns the fd */
	uint64_t	ac_channel_ns;	/* supervisor's send -> worker owns it */
};

struct msg_call_info {
	char	ci_call_sid[64];
	char	ci_stream_sid[64];
	char	ci_conversation_id[128];
	char	ci_user_id[64];
	char	ci_phone[32];
	char	ci_call_type[16];
	int32_t	ci_is_first_call;
	int32_t	ci_pad;
};

struct msg_done {
	uint64_t	dn_frames_in;	/* Twilio media messages received */
	uint64_t	dn_frames_out;	/* media messages sent to Twilio */
	uint64_t	dn_frames_dropped;
	uint64_t	dn_bad_messages;
	uint64_t	dn_duration_ms;
	uint64_t	dn_setup_ns;	/* start -> first agent audio, 0 if none */
	uint64_t	dn_pongs;
	uint64_t	dn_clears;
	uint32_t	dn_job;		/* enum job_outcome + 1; 0: no job */
	uint32_t	dn_keys_deleted;
	char		dn_call_sid[64];	/* even if never bound */
	char		dn_reason[64];
};

#define READY_REDIS	0x1	/* Redis connected and authenticated */
#define READY_DATABASE	0x2	/* PostgreSQL connected, statement prepared */
#define READY_HTTP	0x4	/* HTTP client and resolver made */

struct msg_ready {
	int32_t		rd_pid;
	uint32_t	rd_flags;	/* READY_* done; missing ones failed */
	uint64_t	rd_warm_ns;	/* start of the worker -> ready */
};

struct msg_load {
	uint32_t	ld_lag_max_us;	/* largest frame lag this second */
	uint32_t	ld_frames;	/* caller frames relayed this second */
};

struct msg_spawned {
	int32_t		sp_pid;		/* > 0, or 0 with sp_errno */
	int32_t		sp_errno;
};

/* One received message; payload is aligned for the structs above. */
struct chan_msg {
	struct msg_hdr	cm_hdr;
	int		cm_fd;		/* -1 if none */
	union {
		uint8_t			raw[CHAN_MAX_PAYLOAD];
		struct msg_handoff	handoff;
		struct msg_prepare	prepare;
		struct msg_accepted	accepted;
		struct msg_call_info	call_info;
		struct msg_done		done;
		struct msg_ready	ready;
		struct msg_spawned	spawned;
		struct msg_load		load;
	} cm_u;
};

/* Low level. Returns 0, or -1 with errno set (EAGAIN possible). */
void	chan_set_pid(int32_t);
int	chan_send(int, uint32_t, uint32_t, const void *, size_t, int)
	    __attribute__((warn_unused_result));
/*
 * Receive and validate one message.  Returns 1 with a message, 0 on
 * EOF, -1 on error with *why set (errno EAGAIN: nothing to read).
 */
int	chan_recv(int, struct chan_msg *, const char **)
	    __attribute__((warn_unused_result));
/* Pure validation of a datagram; used by chan_recv() and the fuzzer. */
int	chan_decode(const uint8_t *, size_t, int, int, struct chan_msg *,
	    const char **) __attribute__((warn_unused_result));

int	chan_send_handoff(int, uint32_t, int, const struct sockaddr *,
	    socklen_t, uint64_t, const void *, size_t)
	    __attribute__((warn_unused_result));
const uint8_t *chan_handoff_head(const struct chan_msg *);
int	chan_send_prepare(int, uint32_t, const char *)
	    __attribute__((warn_unused_result));
int	chan_send_drain(int, uint32_t) __attribute__((warn_unused_result));
int	chan_send_accepted(int, uint32_t, uint64_t, uint64_t)
	    __attribute__((warn_unused_result));
int	chan_send_call_info(int, uint32_t, const struct msg_call_info *)
	    __attribute__((warn_unused_result));
int	chan_send_done(int, uint32_t, const struct msg_done *)
	    __attribute__((warn_unused_result));
int	chan_send_ready(int, uint32_t, const struct msg_ready *)
	    __attribute__((warn_unused_result));
int	chan_send_spawn(int, uint32_t, int) __attribute__((warn_unused_result));
int	chan_send_load(int, uint32_t, uint32_t, uint32_t)
	    __attribute__((warn_unused_result));
int	chan_send_spawned(int, uint32_t, int32_t, int32_t)
	    __attribute__((warn_unused_result));
const char *chan_type_name(uint32_t);

/*
 * The entry of a freshly forked worker process (worker/worker.c): the
 * supervisor's pool calls it in the child with the child's end of the
 * channel and the configuration it held at fork time.  Never returns.
 */
void	worker_main(int, struct config *) __attribute__((noreturn));

#endif
