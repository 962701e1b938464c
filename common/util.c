/*
 * util.c - time, base64, JSON string escaping and string helpers used
 * by both roles.  Pure functions, no allocation.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util.h"

static const char b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

uint64_t
now_mono_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t
now_real_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ULL + (uint64_t)ts.tv_nsec / 1000000;
}

void
iso8601_ms(uint64_t ms, char out[32])
{
	time_t		t = (time_t)(ms / 1000);
	struct tm	tm;
	size_t		n;

	gmtime_r(&t, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	out[n] = '.';
	out[n + 1] = (char)('0' + (ms % 1000) / 100);
	out[n + 2] = (char)('0' + (ms % 100) / 10);
	out[n + 3] = (char)('0' + ms % 10);
	out[n + 4] = 'Z';
	out[n + 5] = '\0';
}

size_t
strlcpy_n(char *dst, const char *src, size_t size)
{
	size_t	n = strlen(src);

	if (size > 0) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

/* Constant time in the length of b (the secret-derived value). */
int
ct_streq(const char *a, const char *b)
{
	size_t		la = strlen(a), lb = strlen(b), i;
	unsigned char	d = (unsigned char)(la != lb);

	for (i = 0; i < lb; i++)
		d |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
	return d == 0;
}

size_t
b64_enc_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

size_t
b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t	i, o = 0;
	uint32_t v;

	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alpha[v >> 18];
		out[o++] = b64_alpha[(v >> 12) & 63];
		out[o++] = b64_alpha[(v >> 6) & 63];
		out[o++] = b64_alpha[v & 63];
	}
	if (i < n) {
		v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alpha[v >> 18];
		out[o++] = b64_alpha[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64_alpha[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/*
 * Each byte's 6-bit value, or 0x80 for a byte outside the alphabet: one
 * load per byte and no branch on the data (the if-chain this replaces
 * mispredicted on most bytes of random audio, ~1 us per 216-byte frame).
 */
#define B64_BAD	0x80
static const uint8_t b64_tab[256] = {
#define B64_R16	B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, \
	B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, \
	B64_BAD
	B64_R16, B64_R16,
	/* 0x20: '+' 0x2b, '/' 0x2f */
	B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD,
	B64_BAD, B64_BAD, B64_BAD, 62, B64_BAD, B64_BAD, B64_BAD, 63,
	/* 0x30: '0'-'9' */
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
	B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD,
	/* 0x40: 'A'-'Z' */
	B64_BAD, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
	B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD,
	/* 0x60: 'a'-'z' */
	B64_BAD, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51,
	B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD,
	B64_R16, B64_R16, B64_R16, B64_R16, B64_R16, B64_R16, B64_R16, B64_R16
#undef B64_R16
};

static int
b64_val(unsigned char c)
{
	return b64_tab[c] == B64_BAD ? -1 : b64_tab[c];
}

/*
 * 1 to maxdig ASCII decimal digits, nothing else (no sign, no space):
 * 0 with the value, or -1.  maxdig <= 18 cannot overflow a long.
 */
int
dec_digits(const char *p, size_t n, size_t maxdig, long *v)
{
	long	x = 0;
	size_t	i;

	if (n == 0 || n > maxdig || maxdig > 18)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		x = x * 10 + (p[i] - '0');
	}
	*v = x;
	return 0;
}

long
b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
	size_t	i, o = 0, pad = 0;
	int	a, b, c, d;

	if (n % 4 != 0)
		return -1;
	if (n > 0 && in[n - 1] == '=')
		pad++;
	if (n > 1 && in[n - 2] == '=')
		pad++;
	if (n / 4 * 3 - pad > cap)
		return -1;
	for (i = 0; i < n; i += 4) {
		int last = (i + 4 == n);
		a = b64_val((unsigned char)in[i]);
		b = b64_val((unsigned char)in[i + 1]);
		c = (last && pad == 2) ? 0 : b64_val((unsigned char)in[i + 2]);
		d = (last && pad >= 1) ? 0 : b64_val((unsigned char)in[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -1;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		if (!(last && pad == 2))
			out[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
		if (!(last && pad >= 1))
			out[o++] = (uint8_t)((c & 3) << 6 | d);
	}
	return (long)o;
}

/*
 * b64_decode()'s acceptance without writing: the decoded length, or
 * -1 where b64_decode() with room enough would refuse.  Validators on
 * the audio path use it instead of decoding into a scratch buffer.
 */
long
b64_check(const char *in, size_t n)
{
	size_t	i, pad = 0;
	uint8_t	acc = 0;

	if (n % 4 != 0)
		return -1;
	if (n > 0 && in[n - 1] == '=')
		pad++;
	if (n > 1 && in[n - 2] == '=')
		pad++;
	/* b64_decode() reads every byte but the last pad ones. */
	for (i = 0; i < n - pad; i++)
		acc |= b64_tab[(unsigned char)in[i]];
	if (acc & B64_BAD)
		return -1;
	return (long)(n / 4 * 3 - pad);
}

int
json_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t	o = 0;
	unsigned char c;

	for (; (c = (unsigned char)*s) != '\0'; s++) {
		size_t need = (c == '"' || c == '\\' || c == '\n' ||
		    c == '\t') ? 2 : (c < 0x20 || c == 0x7f) ? 6 : 1;
		if (o + need >= cap)
			return -1;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c == '\n') {
			out[o++] = '\\', out[o++] = 'n';
		} else if (c == '\t') {
			out[o++] = '\\', out[o++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			out[o++] = '\\', out[o++] = 'u';
			out[o++] = '0', out[o++] = '0';
			out[o++] = hex[c >> 4], out[o++] = hex[c & 15];
		} else
			out[o++] = (char)c;
	}
	if (o >= cap)
		return -1;
	out[o] = '\0';
	return 0;
}

int
is_loopback_addr(const void *sa)
{
	const struct sockaddr *s = sa;
	const struct sockaddr_in6 *s6;

	if (s->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr)
		    >> 24) == 127;
	if (s->sa_family == AF_INET6) {
		s6 = sa;
		if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return 1;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			return s6->sin6_addr.s6_addr[12] == 127;
	}
	return 0;
}

int
e164_ok(const char *s)
{
	size_t	n;

	if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9')
		return 0;
	for (n = 1; s[n] != '\0'; n++)
		if (!isdigit((unsigned char)s[n]))
			return 0;
	return n - 1 >= 7 && n - 1 <= 15;
}

/* out must hold 2 * nbytes + 1 characters. */
int
random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t	buf[64];
	size_t	i;

	if (nbytes > sizeof(buf) ||
	    getrandom(buf, nbytes, 0) != (ssize_t)nbytes)
		return -1;
	for (i = 0; i < nbytes; i++) {
		out[2 * i] = hex[buf[i] >> 4];
		out[2 * i + 1] = hex[buf[i] & 15];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

int
xml_escape(const char *s, char *out, size_t cap)
{
	size_t		 o = 0, n;
	const char	*rep;
	char		 one[2] = { 0, 0 };

	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&apos;"; break;
		default:
			if ((unsigned char)*s < 0x20 && *s != '\t' &&
			    *s != '\n' && *s != '\r')
				continue;	/* not allowed in XML 1.0 */
			one[0] = *s;
			rep = one;
		}
		n = strlen(rep);
		if (o + n >= cap)
			return -1;
		memcpy(out + o, rep, n);
		o += n;
	}
	if (o >= cap)
		return -1;
	out[o] = '\0';
	return 0;
}

/*
 * Ask for a CPU time slice of us microseconds (EEVDF, Linux 6.12+: a
 * SCHED_OTHER task's sched_runtime).  A shorter slice gives the task an
 * earlier virtual deadline when it wakes, which is what a process that
 * wakes 100 times a second for a few microseconds of work wants; CPU
 * shares are unchanged.  The nice value is kept; children inherit it.
 * Older kernels ignore the field or refuse: -1 with errno, harmless.
 */
int
sched_set_slice(long us)
{
	struct {
		uint32_t	size, policy;
		uint64_t	flags;
		int32_t		nice;
		uint32_t	priority;
		uint64_t	runtime, deadline, period;
		uint32_t	util_min, util_max;
	} a;

	if (us <= 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.policy = SCHED_OTHER;
	errno = 0;
	a.nice = getpriority(PRIO_PROCESS, 0);
	if (errno != 0)
		return -1;
	a.runtime = (uint64_t)us * 1000;
	return (int)syscall(SYS_sched_setattr, 0, &a, 0);
}

/*
 * A child of the supervisor (the fork server, a worker) right after its
 * fork: default signal handlers (SIGPIPE, SIGINT and SIGHUP ignored: ^C
 * and reloads are the supervisor's), fd moved to at, every descriptor
 * above at closed, at close-on-exec.  0, or -1 (the caller exits).
 */
int
child_scrub(int fd, int at)
{
	struct sigaction	sa;
	int			sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (fd != at) {
		if (dup2(fd, at) == -1)
			return -1;
		close(fd);
	}
	closefrom(at + 1);
	return fcntl(at, F_SETFD, FD_CLOEXEC) == -1 ? -1 : 0;
}

/* The value of one hexadecimal digit, or -1. */
int
hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
