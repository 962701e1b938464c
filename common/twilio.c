/*
 * twilio.c - X-Twilio-Signature: computing it; checking a form webhook,
 * a JSON (bodySHA256) webhook and a Media Streams upgrade against it;
 * parsing the x-www-form-urlencoded bodies those webhooks carry.
 * Pure code for the supervisor's HTTP side: no I/O, no logging, no
 * global state; scratch memory is malloc'd per call and freed on return.
 * The URL forms accepted mirror twilio-node 5.13.1 validateRequest(),
 * which first normalises the URL with the WHATWG parser, so a subset of
 * that parser (tw_url_*) and of Node's legacy querystring (tw_qs_*)
 * lives here.  See docs/protocols.md 1.5, 1.9, 1.10.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "twilio.h"
#include "util.h"

#define TW_URLMAX	4096	/* longest URL checked */
#define TW_MAXPARAMS	256	/* most params, form pairs, query pairs */
#define TW_NORMMAX	(TW_URLMAX * 3 + 16)	/* normalised URL */
#define TW_LEGMAX	(TW_NORMMAX * 3 + TW_MAXPARAMS)	/* legacy query */
#define TW_B64LEN	(TWILIO_SIG_LEN - 1)
#define TW_MAXIOV	8
#define TW_PORTBUF	24

#define TW_FL_LEGACY	0x01	/* query re-encoded by querystring */
#define TW_FL_BUILT	0x02	/* buildUrlWithStandardPort(): no bare ?, # */

/* percent-encode sets (WHATWG, as Node 20's parser applies them) */
#define TW_SET_FRAG	"\"<>`"
#define TW_SET_QUERY	"\"#<>'"
#define TW_SET_PATH	"\"#<>?`{}"
#define TW_SET_USER	"\"#<>?`{}/:;=@[\\]^|"

struct tw_buf {
	char	*tb_base;
	size_t	 tb_len;
	size_t	 tb_cap;
	int	 tb_err;	/* set on overflow; later adds are dropped */
};

struct tw_iov {
	const char	*ti_base;
	size_t		 ti_len;
};

struct tw_mac {
	EVP_MAC		*tm_mac;
	EVP_MAC_CTX	*tm_ctx;
};

/* params sorted as JavaScript sorts, identical pairs dropped */
struct tw_plist {
	const struct tw_param	*pl_p[TW_MAXPARAMS];
	size_t			 pl_n;
};

/* offsets into tc_norm, which holds the URL without its port */
struct tw_url {
	int	 tu_scheme;	/* index into tw_schemes */
	long	 tu_port;	/* explicit non-default port, or -1 */
	size_t	 tu_schend;	/* end of the scheme name */
	size_t	 tu_hostend;	/* where ":port" goes; path starts */
	size_t	 tu_pathend;	/* '?' of the query, or fragment, or end */
	size_t	 tu_fragoff;	/* '#' of the fragment, or end */
	size_t	 tu_len;
};

/* one decoded query pair: offsets into tc_qraw */
struct tw_qpair {
	size_t	 qp_key;
	size_t	 qp_klen;
	size_t	 qp_val;
	size_t	 qp_vlen;
};

struct tw_ctx {
	struct tw_mac	 tc_mac;
	struct tw_plist	 tc_pl;
	struct tw_url	 tc_url;
	struct tw_qpair	 tc_qp[TW_MAXPARAMS];
	size_t		 tc_nqp;
	size_t		 tc_leglen;
	char		 tc_clean[TW_URLMAX + 1];
	char		 tc_tmp[TW_NORMMAX];
	char		 tc_norm[TW_NORMMAX];
	char		 tc_qraw[TW_NORMMAX];
	char		 tc_leg[TW_LEGMAX];
};

static const struct {
	const char	*ts_name;
	long		 ts_port;
} tw_schemes[] = {
	{ "http", 80 }, { "https", 443 }, { "ws", 80 }, { "wss", 443 }
};
#define TW_NSCHEMES	(sizeof(tw_schemes) / sizeof(tw_schemes[0]))
#define TW_TWIN(s)	((s) ^ 2)	/* http <-> ws, https <-> wss */

static void	tb_init(struct tw_buf *, char *, size_t);
static void	tb_add(struct tw_buf *, const void *, size_t);
static void	tb_addc(struct tw_buf *, int);
static void	tb_pct(struct tw_buf *, unsigned char);
static size_t	utf8_dec(const unsigned char *, size_t, uint32_t *);
static int	utf8_valid(const char *, size_t);
static void	utf8_fix(struct tw_buf *, const unsigned char *, size_t);
static int	js_cmp(const char *, const char *);
static int	tw_plist_cmp(const void *, const void *);
static int	tw_plist_build(struct tw_plist *, const struct tw_param *,
		    size_t);
static int	tw_mac_open(struct tw_mac *);
static void	tw_mac_close(struct tw_mac *);
static int	tw_mac_sig(struct tw_mac *, const char *,
		    const struct tw_iov *, size_t, const struct tw_plist *,
		    char [TWILIO_SIG_LEN]);
static void	tw_iov_set(struct tw_iov *, const char *, size_t);
static int	tw_try(struct tw_ctx *, const char *, const struct tw_iov *,
		    size_t, const char *);
static int	tw_args_ok(const char *, const char *, const char *);
static struct tw_ctx *tw_ctx_new(const struct tw_param *, size_t);
static void	tw_ctx_free(struct tw_ctx *);
static int	tw_check(struct tw_ctx *, const char *, const char *,
		    const char *);
static int	tw_body_param(struct tw_ctx *, const char *);
static size_t	tw_url_clean(char *, const char *);
static int	tw_url_scheme(const char *, size_t *);
static int	tw_url_parse(struct tw_ctx *, const char *);
static int	tw_url_auth(struct tw_ctx *, struct tw_buf *, const char *,
		    size_t);
static void	tw_url_userinfo(struct tw_buf *, const char *, size_t);
static int	tw_url_host(struct tw_ctx *, struct tw_buf *, const char *,
		    size_t);
static int	tw_url_port(const char *, size_t, int, long *);
static int	tw_ipv4_num(const char *, size_t, uint64_t *);
static int	tw_ipv4_like(const char *, size_t);
static int	tw_ipv4(struct tw_buf *, const char *, size_t);
static void	tw_url_tail(struct tw_ctx *, struct tw_buf *, const char *);
static void	tw_url_path(struct tw_buf *, const char *, size_t);
static int	tw_dots(const char *, size_t);
static void	tw_enc(struct tw_buf *, const char *, size_t, const char *);
static size_t	tw_url_form(struct tw_ctx *, int, long, int,
		    char [TW_PORTBUF], struct tw_iov *);
static int	tw_qs_parse(struct tw_ctx *, const char *, size_t);
static void	tw_qs_decode(struct tw_ctx *, struct tw_buf *, const char *,
		    size_t);
static int	tw_qs_keyeq(const struct tw_ctx *, size_t, size_t);
static int	tw_qs_first(const struct tw_ctx *, size_t);
static int	tw_qs_index(const struct tw_ctx *, size_t, uint32_t *);
static size_t	tw_qs_keys(const struct tw_ctx *, size_t *);
static void	tw_qs_escape(struct tw_buf *, const char *, size_t);
static int	tw_qs_legacy(struct tw_ctx *);
static int	tw_form_decode(char *, size_t, size_t, size_t *);

/*
 * Bounded string builder.
 */

static void
tb_init(struct tw_buf *b, char *base, size_t cap)
{
	b->tb_base = base;
	b->tb_len = 0;
	b->tb_cap = cap;
	b->tb_err = 0;
}

static void
tb_add(struct tw_buf *b, const void *p, size_t n)
{
	if (b->tb_err || n > b->tb_cap - b->tb_len) {
		b->tb_err = 1;
		return;
	}
	if (n > 0)
		memcpy(b->tb_base + b->tb_len, p, n);
	b->tb_len += n;
}

static void
tb_addc(struct tw_buf *b, int c)
{
	char	 ch = (char)c;

	tb_add(b, &ch, 1);
}

static void
tb_pct(struct tw_buf *b, unsigned char c)
{
	static const char	 hex[] = "0123456789ABCDEF";
	char			 t[3];

	t[0] = '%';
	t[1] = hex[c >> 4];
	t[2] = hex[c & 0x0f];
	tb_add(b, t, sizeof(t));
}

/*
 * Characters.
 */


/* Strict UTF-8: returns the sequence length, 0 if invalid. */
static size_t
utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t	 c, min;
	size_t		 len, i;

	if (n == 0)
		return 0;
	c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, c &= 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, c &= 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, c &= 0x07, min = 0x10000;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static int
utf8_valid(const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	uint32_t		 cp;
	size_t			 i, k;

	for (i = 0; i < n; i += k)
		if ((k = utf8_dec(p + i, n - i, &cp)) == 0)
			return 0;
	return 1;
}

/*
 * Append s, each maximal invalid subpart replaced by U+FFFD, as the
 * WHATWG UTF-8 decoder (and so Node's Buffer.toString()) does.
 */
static void
utf8_fix(struct tw_buf *b, const unsigned char *s, size_t n)
{
	size_t		 i = 0, j, need;
	unsigned	 lo, hi, c;

	while (i < n) {
		c = s[i];
		lo = 0x80, hi = 0xbf, need = 0;
		if (c >= 0xc2 && c <= 0xdf)
			need = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			lo = c == 0xe0 ? 0xa0 : 0x80;
			hi = c == 0xed ? 0x9f : 0xbf;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			lo = c == 0xf0 ? 0x90 : 0x80;
			hi = c == 0xf4 ? 0x8f : 0xbf;
		}
		if (c < 0x80 || need == 0) {
			if (c < 0x80)
				tb_addc(b, (int)c);
			else
				tb_add(b, "\xef\xbf\xbd", 3);
			i++;
			continue;
		}
		for (j = 1; j <= need && i + j < n && s[i + j] >= lo &&
		    s[i + j] <= hi; j++)
			lo = 0x80, hi = 0xbf;
		if (j > need)
			tb_add(b, s + i, j);
		else
			tb_add(b, "\xef\xbf\xbd", 3);
		i += j;
	}
}

/*
 * Order of JavaScript's default sort(): UTF-16 code units.  Equals byte
 * order except that U+10000 and above sort before U+E000..U+FFFF.
 * Invalid UTF-8 falls back to byte order.
 */
static int
js_cmp(const char *a, const char *b)
{
	const unsigned char	*p = (const unsigned char *)a;
	const unsigned char	*q = (const unsigned char *)b;
	uint32_t		 cp, cq, kp, kq;
	size_t			 i = 0, j;

	while (p[i] != '\0' && p[i] == q[i])
		i++;
	if (p[i] == q[i])
		return 0;
	for (j = i; j > 0 && (p[j] & 0xc0) == 0x80; j--)
		;
	if (utf8_dec(p + j, strlen(a + j), &cp) == 0 ||
	    utf8_dec(q + j, strlen(b + j), &cq) == 0)
		return p[i] < q[i] ? -1 : 1;
	kp = cp >= 0x10000 ? 0xd800 + ((cp - 0x10000) >> 10) : cp;
	kq = cq >= 0x10000 ? 0xd800 + ((cq - 0x10000) >> 10) : cq;
	if (kp != kq)
		return kp < kq ? -1 : 1;
	return cp < cq ? -1 : 1;
}

/*
 * Parameters and the MAC.
 */

static int
tw_plist_cmp(const void *a, const void *b)
{
	const struct tw_param	*p = *(const struct tw_param * const *)a;
	const struct tw_param	*q = *(const struct tw_param * const *)b;
	int			 r;

	if ((r = js_cmp(p->tp_name, q->tp_name)) != 0)
		return r;
	return js_cmp(p->tp_value, q->tp_value);
}

/*
 * twilio-node's order: names sorted; a repeated name's values become
 * Array.from(new Set(values)).sort().  Sorting (name, value) pairs and
 * dropping identical neighbours gives the same sequence.
 */
static int
tw_plist_build(struct tw_plist *pl, const struct tw_param *p, size_t n)
{
	size_t	 i, k;

	pl->pl_n = 0;
	if (n > TW_MAXPARAMS || (n > 0 && p == NULL))
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i].tp_name == NULL || p[i].tp_value == NULL)
			return -1;
		pl->pl_p[i] = &p[i];
	}
	if (n == 0)
		return 0;
	qsort(pl->pl_p, n, sizeof(pl->pl_p[0]), tw_plist_cmp);
	for (i = 1, k = 1; i < n; i++)
		if (tw_plist_cmp(&pl->pl_p[i], &pl->pl_p[k - 1]) != 0)
			pl->pl_p[k++] = pl->pl_p[i];
	pl->pl_n = k;
	return 0;
}

static int
tw_mac_open(struct tw_mac *m)
{
	m->tm_ctx = NULL;
	if ((m->tm_mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return -1;
	if ((m->tm_ctx = EVP_MAC_CTX_new(m->tm_mac)) == NULL) {
		EVP_MAC_free(m->tm_mac);
		m->tm_mac = NULL;
		return -1;
	}
	return 0;
}

static void
tw_mac_close(struct tw_mac *m)
{
	EVP_MAC_CTX_free(m->tm_ctx);
	EVP_MAC_free(m->tm_mac);
	m->tm_ctx = NULL;
	m->tm_mac = NULL;
}

/* base64(HMAC-SHA1(token, iov... + name value...)) */
static int
tw_mac_sig(struct tw_mac *m, const char *token, const struct tw_iov *iov,
    size_t niov, const struct tw_plist *pl, char out[TWILIO_SIG_LEN])
{
	char			 digest[] = "SHA1";
	OSSL_PARAM		 op[2];
	unsigned char		 md[EVP_MAX_MD_SIZE];
	const struct tw_param	*p;
	size_t			 i, mdlen = 0;

	op[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    digest, 0);
	op[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(m->tm_ctx, (const unsigned char *)token,
	    strlen(token), op))
		return -1;
	for (i = 0; i < niov; i++)
		if (!EVP_MAC_update(m->tm_ctx,
		    (const unsigned char *)iov[i].ti_base, iov[i].ti_len))
			return -1;
	for (i = 0; i < pl->pl_n; i++) {
		p = pl->pl_p[i];
		if (!EVP_MAC_update(m->tm_ctx, (const unsigned char *)
		    p->tp_name, strlen(p->tp_name)) ||
		    !EVP_MAC_update(m->tm_ctx, (const unsigned char *)
		    p->tp_value, strlen(p->tp_value)))
			return -1;
	}
	if (!EVP_MAC_final(m->tm_ctx, md, &mdlen, sizeof(md)) || mdlen != 20)
		return -1;
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
	return 0;
}

static void
tw_iov_set(struct tw_iov *iov, const char *base, size_t len)
{
	iov->ti_base = base;
	iov->ti_len = len;
}

/* 1 if sig (TW_B64LEN long, checked by the caller) signs this URL */
static int
tw_try(struct tw_ctx *c, const char *token, const struct tw_iov *iov,
    size_t niov, const char *sig)
{
	char	 exp[TWILIO_SIG_LEN];

	if (tw_mac_sig(&c->tc_mac, token, iov, niov, &c->tc_pl, exp) == -1)
		return 0;
	return CRYPTO_memcmp(exp, sig, TW_B64LEN) == 0;
}

/* An empty token is refused: it would make signatures forgeable. */
static int
tw_args_ok(const char *token, const char *url, const char *sig)
{
	if (token == NULL || *token == '\0' || url == NULL || sig == NULL)
		return 0;
	if (strnlen(url, TW_URLMAX + 1) > TW_URLMAX)
		return 0;
	return strnlen(sig, TWILIO_SIG_LEN) == TW_B64LEN;
}

static struct tw_ctx *
tw_ctx_new(const struct tw_param *p, size_t n)
{
	struct tw_ctx	*c;

	if ((c = malloc(sizeof(*c))) == NULL)
		return NULL;
	if (tw_plist_build(&c->tc_pl, p, n) == -1 ||
	    tw_mac_open(&c->tc_mac) == -1) {
		free(c);
		return NULL;
	}
	return c;
}

static void
tw_ctx_free(struct tw_ctx *c)
{
	tw_mac_close(&c->tc_mac);
	free(c);
}

/*
 * validateRequest(): the URL normalised (WHATWG) without its port, then
 * addPort() (an explicit port kept, else the scheme's default built in),
 * then both with the query re-encoded by querystring (withLegacy...
 * re-parses, which drops a default port again).  Plus the URL as given.
 */
static int
tw_check(struct tw_ctx *c, const char *token, const char *url,
    const char *sig)
{
	const struct tw_url	*u = &c->tc_url;
	struct tw_iov		 iov[TW_MAXIOV];
	char			 pbuf[TW_PORTBUF];
	size_t			 k;
	int			 ok, s;

	tw_iov_set(&iov[0], url, strlen(url));
	ok = tw_try(c, token, iov, 1, sig);
	if (tw_url_parse(c, url) == -1)
		return ok;
	s = u->tu_scheme;
	k = tw_url_form(c, s, -1, 0, pbuf, iov);
	ok |= tw_try(c, token, iov, k, sig);
	if (u->tu_port >= 0)
		k = tw_url_form(c, s, u->tu_port, 0, pbuf, iov);
	else
		k = tw_url_form(c, s, tw_schemes[s].ts_port, TW_FL_BUILT,
		    pbuf, iov);
	ok |= tw_try(c, token, iov, k, sig);
	if (tw_qs_legacy(c) == -1)
		return ok;
	k = tw_url_form(c, s, -1, TW_FL_LEGACY, pbuf, iov);
	ok |= tw_try(c, token, iov, k, sig);
	if (u->tu_port >= 0)
		k = tw_url_form(c, s, u->tu_port, TW_FL_LEGACY, pbuf, iov);
	else
		k = tw_url_form(c, s, -1, TW_FL_LEGACY | TW_FL_BUILT, pbuf,
		    iov);
	ok |= tw_try(c, token, iov, k, sig);
	return ok;
}

/*
 * 1 if the first bodySHA256 query parameter of the parsed URL is hex
 * (64 lower-case digits); URLSearchParams.get() and querystring agree
 * on such a name and value.
 */
static int
tw_body_param(struct tw_ctx *c, const char *hex)
{
	const struct tw_url	*u = &c->tc_url;
	const struct tw_qpair	*qp;
	size_t			 i;

	if (u->tu_fragoff - u->tu_pathend < 2 ||
	    tw_qs_parse(c, c->tc_norm + u->tu_pathend + 1,
	    u->tu_fragoff - u->tu_pathend - 1) == -1)
		return 0;
	for (i = 0; i < c->tc_nqp; i++) {
		qp = &c->tc_qp[i];
		if (qp->qp_klen != 10 ||
		    memcmp(c->tc_qraw + qp->qp_key, "bodySHA256", 10) != 0)
			continue;
		return qp->qp_vlen == 64 &&
		    CRYPTO_memcmp(c->tc_qraw + qp->qp_val, hex, 64) == 0;
	}
	return 0;
}

/*
 * WHATWG URL parsing, the part twilio-node's URLs need: special schemes
 * only, ASCII hosts (XXX no IDNA, no IPv6 literals: such URLs are
 * refused, which errs on the side of "not valid").
 */

/*
 * Copy src without leading/trailing C0 controls and spaces and without
 * any tab or newline.  Returns the length, or -1 if too long or not
 * UTF-8 (a JavaScript string could not have held it).
 */
static size_t
tw_url_clean(char *dst, const char *src)
{
	size_t	 n, a, i, k = 0;

	n = strnlen(src, TW_URLMAX + 1);
	if (n > TW_URLMAX || !utf8_valid(src, n))
		return (size_t)-1;
	for (a = 0; a < n && (unsigned char)src[a] <= 0x20; a++)
		;
	while (n > a && (unsigned char)src[n - 1] <= 0x20)
		n--;
	for (i = a; i < n; i++)
		if (src[i] != '\t' && src[i] != '\n' && src[i] != '\r')
			dst[k++] = src[i];
	dst[k] = '\0';
	return k;
}

/* Returns the tw_schemes index and *end just past ':', or -1. */
static int
tw_url_scheme(const char *s, size_t *end)
{
	char	 name[8], ch;
	size_t	 i, k;

	for (i = 0; s[i] != ':'; i++) {
		if (s[i] == '\0' || i == sizeof(name) - 1)
			return -1;
		ch = s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 'a' - 'A' : s[i];
		if (!(ch >= 'a' && ch <= 'z') &&
		    (i == 0 || strchr("0123456789+-.", ch) == NULL))
			return -1;
		name[i] = ch;
	}
	name[i] = '\0';
	for (k = 0; k < TW_NSCHEMES; k++)
		if (strcmp(name, tw_schemes[k].ts_name) == 0) {
			*end = i + 1;
			return (int)k;
		}
	return -1;
}

/* Fills tc_norm and tc_url from url.  Returns 0, or -1 if it fails. */
static int
tw_url_parse(struct tw_ctx *c, const char *url)
{
	struct tw_url	*u = &c->tc_url;
	struct tw_buf	 b;
	const char	*s = c->tc_clean;
	size_t		 i, n;
	int		 sch;

	if (tw_url_clean(c->tc_clean, url) == (size_t)-1 ||
	    (sch = tw_url_scheme(s, &i)) == -1)
		return -1;
	u->tu_scheme = sch;
	tb_init(&b, c->tc_norm, sizeof(c->tc_norm));
	tb_add(&b, tw_schemes[sch].ts_name, strlen(tw_schemes[sch].ts_name));
	u->tu_schend = b.tb_len;
	tb_add(&b, "://", 3);
	while (s[i] == '/' || s[i] == '\\')
		i++;
	n = strcspn(s + i, "/\\?#");
	if (tw_url_auth(c, &b, s + i, n) == -1)
		return -1;
	u->tu_hostend = b.tb_len;
	tw_url_tail(c, &b, s + i + n);
	u->tu_len = b.tb_len;
	return b.tb_err ? -1 : 0;
}

/* [userinfo@]host[:port] */
static int
tw_url_auth(struct tw_ctx *c, struct tw_buf *b, const char *s, size_t n)
{
	const char	*hs = s, *colon;
	size_t		 i, hn, hlen;

	for (i = n; i > 0; i--)
		if (s[i - 1] == '@') {
			tw_url_userinfo(b, s, i - 1);
			hs = s + i;
			break;
		}
	hn = n - (size_t)(hs - s);
	colon = memchr(hs, ':', hn);
	hlen = colon != NULL ? (size_t)(colon - hs) : hn;
	if (tw_url_host(c, b, hs, hlen) == -1)
		return -1;
	if (colon == NULL) {
		c->tc_url.tu_port = -1;
		return 0;
	}
	return tw_url_port(colon + 1, hn - hlen - 1, c->tc_url.tu_scheme,
	    &c->tc_url.tu_port);
}

static void
tw_url_userinfo(struct tw_buf *b, const char *s, size_t n)
{
	const char	*colon;
	size_t		 ulen, plen;

	colon = memchr(s, ':', n);
	ulen = colon != NULL ? (size_t)(colon - s) : n;
	plen = colon != NULL ? n - ulen - 1 : 0;
	if (ulen == 0 && plen == 0)
		return;
	tw_enc(b, s, ulen, TW_SET_USER);
	if (plen > 0) {
		tb_addc(b, ':');
		tw_enc(b, colon + 1, plen, TW_SET_USER);
	}
	tb_addc(b, '@');
}

/* Percent-decoded, lower-cased, checked; IPv4 forms canonicalised. */
static int
tw_url_host(struct tw_ctx *c, struct tw_buf *b, const char *s, size_t n)
{
	char		*h = c->tc_tmp;
	size_t		 i, hn = 0;
	unsigned char	 ch;

	if (n == 0 || memchr(s, '[', n) != NULL)
		return -1;
	for (i = 0; i < n; i++) {
		ch = (unsigned char)s[i];
		if (ch == '%' && i + 2 < n && hex_digit(s[i + 1]) >= 0 &&
		    hex_digit(s[i + 2]) >= 0) {
			ch = (unsigned char)(hex_digit(s[i + 1]) << 4 |
			    hex_digit(s[i + 2]));
			i += 2;
		}
		if (ch >= 'A' && ch <= 'Z')
			ch += 'a' - 'A';
		if (ch <= 0x20 || ch >= 0x7f ||
		    strchr("#%/:<>?@[\\]^|", ch) != NULL)
			return -1;
		h[hn++] = (char)ch;
	}
	if (tw_ipv4_like(h, hn))
		return tw_ipv4(b, h, hn);
	tb_add(b, h, hn);
	return 0;
}

/* Digits only, at most 65535; the scheme's default port is dropped. */
static int
tw_url_port(const char *s, size_t n, int sch, long *port)
{
	long	 v = 0;
	size_t	 i;

	*port = -1;
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
		if (v > 65535)
			return -1;
	}
	if (v != tw_schemes[sch].ts_port)
		*port = v;
	return 0;
}

/* WHATWG "IPv4 number": decimal, 0x hex or 0-prefixed octal. */
static int
tw_ipv4_num(const char *s, size_t n, uint64_t *v)
{
	unsigned	 radix = 10;
	int		 d;

	*v = 0;
	if (n == 0)
		return -1;
	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		radix = 16, s += 2, n -= 2;
	else if (n >= 2 && s[0] == '0')
		radix = 8, s++, n--;
	for (; n > 0; s++, n--) {
		d = hex_digit(*s);
		if (d < 0 || (unsigned)d >= radix)
			return -1;
		if (*v <= UINT32_MAX)
			*v = *v * radix + (unsigned)d;
	}
	return 0;
}

/* WHATWG "ends in a number": then the host must parse as IPv4. */
static int
tw_ipv4_like(const char *h, size_t n)
{
	uint64_t	 v;
	size_t		 st, i;

	if (n > 0 && h[n - 1] == '.')
		n--;
	for (st = n; st > 0 && h[st - 1] != '.'; st--)
		;
	for (i = st; i < n && h[i] >= '0' && h[i] <= '9'; i++)
		;
	if (n > st && i == n)
		return 1;
	return tw_ipv4_num(h + st, n - st, &v) == 0;
}

static int
tw_ipv4(struct tw_buf *b, const char *h, size_t n)
{
	uint64_t	 part[4], ip;
	size_t		 np = 0, st = 0, i;
	char		 out[16];

	if (n > 0 && h[n - 1] == '.')
		n--;
	for (i = 0; i <= n; i++) {
		if (i < n && h[i] != '.')
			continue;
		if (np == 4 || tw_ipv4_num(h + st, i - st, &part[np]) == -1)
			return -1;
		np++;
		st = i + 1;
	}
	for (i = 0; i + 1 < np; i++)
		if (part[i] > 255)
			return -1;
	if (part[np - 1] >= (uint64_t)1 << (8 * (5 - np)))
		return -1;
	ip = part[np - 1];
	for (i = 0; i + 1 < np; i++)
		ip += part[i] << (8 * (3 - i));
	snprintf(out, sizeof(out), "%u.%u.%u.%u", (unsigned)(ip >> 24),
	    (unsigned)(ip >> 16 & 0xff), (unsigned)(ip >> 8 & 0xff),
	    (unsigned)(ip & 0xff));
	tb_add(b, out, strlen(out));
	return 0;
}

/* path, "?query", "#fragment"; s starts at '/', '\', '?', '#' or NUL */
static void
tw_url_tail(struct tw_ctx *c, struct tw_buf *b, const char *s)
{
	struct tw_url	*u = &c->tc_url;
	size_t		 n;

	n = strcspn(s, "?#");
	tw_url_path(b, s, n);
	s += n;
	u->tu_pathend = b->tb_len;
	if (*s == '?') {
		n = strcspn(s + 1, "#");
		tb_addc(b, '?');
		tw_enc(b, s + 1, n, TW_SET_QUERY);
		s += 1 + n;
	}
	u->tu_fragoff = b->tb_len;
	if (*s == '#') {
		tb_addc(b, '#');
		tw_enc(b, s + 1, strlen(s + 1), TW_SET_FRAG);
	}
}

/* Segments split on '/' or '\', "." and ".." resolved, each encoded. */
static void
tw_url_path(struct tw_buf *b, const char *s, size_t n)
{
	size_t	 start = b->tb_len, i = 1, e;
	int	 d, last;

	if (n == 0) {
		tb_addc(b, '/');
		return;
	}
	for (;;) {
		for (e = i; e < n && s[e] != '/' && s[e] != '\\'; e++)
			;
		last = e >= n;
		if ((d = tw_dots(s + i, e - i)) == 2 && !b->tb_err) {
			while (b->tb_len > start &&
			    b->tb_base[b->tb_len - 1] != '/')
				b->tb_len--;
			if (b->tb_len > start)
				b->tb_len--;
		}
		if (d == 0) {
			tb_addc(b, '/');
			tw_enc(b, s + i, e - i, TW_SET_PATH);
		} else if (last)
			tb_addc(b, '/');
		if (last)
			break;
		i = e + 1;
	}
}

/* 1 for "." or "%2e", 2 for "..", ".%2e" and so on, else 0 */
static int
tw_dots(const char *s, size_t n)
{
	int	 dots = 0;

	while (n > 0) {
		if (s[0] == '.')
			s++, n--;
		else if (n >= 3 && s[0] == '%' && s[1] == '2' &&
		    (s[2] == 'e' || s[2] == 'E'))
			s += 3, n -= 3;
		else
			return 0;
		dots++;
	}
	return dots <= 2 ? dots : 0;
}

static void
tw_enc(struct tw_buf *b, const char *s, size_t n, const char *set)
{
	unsigned char	 c;
	size_t		 i;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || strchr(set, c) != NULL)
			tb_pct(b, c);
		else
			tb_addc(b, c);
	}
}

/*
 * One candidate URL as pieces: the parsed URL under scheme sch, with
 * ":port" if port >= 0.  TW_FL_BUILT drops an empty "?" and "#" (the
 * URL getters search and hash are "" for those); TW_FL_LEGACY moves the
 * fragment before "?" + the re-encoded query, as withLegacyQuerystring().
 */
static size_t
tw_url_form(struct tw_ctx *c, int sch, long port, int fl,
    char pbuf[TW_PORTBUF], struct tw_iov *iov)
{
	const struct tw_url	*u = &c->tc_url;
	const char		*nm = c->tc_norm;
	size_t			 k = 0, q, f;

	q = u->tu_fragoff - u->tu_pathend;
	f = u->tu_len - u->tu_fragoff;
	if ((fl & TW_FL_BUILT) && q == 1)
		q = 0;
	if ((fl & TW_FL_BUILT) && f == 1)
		f = 0;
	tw_iov_set(&iov[k++], tw_schemes[sch].ts_name,
	    strlen(tw_schemes[sch].ts_name));
	tw_iov_set(&iov[k++], nm + u->tu_schend, u->tu_hostend - u->tu_schend);
	if (port >= 0) {
		snprintf(pbuf, TW_PORTBUF, ":%ld", port);
		tw_iov_set(&iov[k++], pbuf, strlen(pbuf));
	}
	tw_iov_set(&iov[k++], nm + u->tu_hostend,
	    u->tu_pathend - u->tu_hostend);
	if (!(fl & TW_FL_LEGACY))
		tw_iov_set(&iov[k++], nm + u->tu_pathend, q);
	tw_iov_set(&iov[k++], nm + u->tu_fragoff, f);
	if (fl & TW_FL_LEGACY) {
		tw_iov_set(&iov[k++], "?", 1);
		tw_iov_set(&iov[k++], c->tc_leg, c->tc_leglen);
	}
	return k;
}

/*
 * Node's legacy querystring module.
 */

/*
 * querystring.parse(): split on '&', the first '=' splits key from
 * value; a piece with neither key nor '=' is skipped.  More than
 * TW_MAXPARAMS pairs fails (Node would stop at 1000).
 */
static int
tw_qs_parse(struct tw_ctx *c, const char *q, size_t n)
{
	struct tw_buf	 b;
	struct tw_qpair	*qp;
	const char	*amp, *eq;
	size_t		 i, e, klen;

	tb_init(&b, c->tc_qraw, sizeof(c->tc_qraw));
	c->tc_nqp = 0;
	for (i = 0; i < n; i = e + 1) {
		amp = memchr(q + i, '&', n - i);
		e = amp != NULL ? (size_t)(amp - q) : n;
		if (e == i)
			continue;
		if (c->tc_nqp == TW_MAXPARAMS)
			return -1;
		qp = &c->tc_qp[c->tc_nqp++];
		eq = memchr(q + i, '=', e - i);
		klen = eq != NULL ? (size_t)(eq - (q + i)) : e - i;
		qp->qp_key = b.tb_len;
		tw_qs_decode(c, &b, q + i, klen);
		qp->qp_klen = b.tb_len - qp->qp_key;
		qp->qp_val = b.tb_len;
		if (eq != NULL)
			tw_qs_decode(c, &b, eq + 1, e - i - klen - 1);
		qp->qp_vlen = b.tb_len - qp->qp_val;
	}
	return b.tb_err ? -1 : 0;
}

/*
 * querystring.unescape(): '+' is a space, valid %XX a byte, any other
 * '%' literal; then UTF-8 with U+FFFD for invalid bytes.  (Node tries
 * decodeURIComponent() first, which gives the same when it succeeds.)
 */
static void
tw_qs_decode(struct tw_ctx *c, struct tw_buf *b, const char *s, size_t n)
{
	unsigned char	*t = (unsigned char *)c->tc_tmp;
	size_t		 i, k = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '+')
			t[k++] = ' ';
		else if (s[i] == '%' && i + 2 < n && hex_digit(s[i + 1]) >= 0 &&
		    hex_digit(s[i + 2]) >= 0) {
			t[k++] = (unsigned char)(hex_digit(s[i + 1]) << 4 |
			    hex_digit(s[i + 2]));
			i += 2;
		} else
			t[k++] = (unsigned char)s[i];
	}
	utf8_fix(b, t, k);
}

static int
tw_qs_keyeq(const struct tw_ctx *c, size_t i, size_t j)
{
	const struct tw_qpair	*a = &c->tc_qp[i], *b = &c->tc_qp[j];

	return a->qp_klen == b->qp_klen && memcmp(c->tc_qraw + a->qp_key,
	    c->tc_qraw + b->qp_key, a->qp_klen) == 0;
}

/* 1 if pair j is the first with its key */
static int
tw_qs_first(const struct tw_ctx *c, size_t j)
{
	size_t	 i;

	for (i = 0; i < j; i++)
		if (tw_qs_keyeq(c, i, j))
			return 0;
	return 1;
}

/* 1 if pair j's key is a JavaScript array index ("0", "7", not "07") */
static int
tw_qs_index(const struct tw_ctx *c, size_t j, uint32_t *v)
{
	const char	*k = c->tc_qraw + c->tc_qp[j].qp_key;
	size_t		 n = c->tc_qp[j].qp_klen, i;
	uint64_t	 x = 0;

	if (n == 0 || n > 10 || (n > 1 && k[0] == '0'))
		return 0;
	for (i = 0; i < n; i++) {
		if (k[i] < '0' || k[i] > '9')
			return 0;
		x = x * 10 + (uint64_t)(k[i] - '0');
	}
	if (x > 4294967294U)
		return 0;
	*v = (uint32_t)x;
	return 1;
}

/*
 * Distinct keys in Object.keys() order: array indices ascending, then
 * the others in order of first appearance.  Fills order with the index
 * of each key's first pair; returns their number.
 */
static size_t
tw_qs_keys(const struct tw_ctx *c, size_t *order)
{
	uint32_t	 idx[TW_MAXPARAMS], v;
	size_t		 n = 0, j, k;

	for (j = 0; j < c->tc_nqp; j++) {
		if (!tw_qs_first(c, j) || !tw_qs_index(c, j, &v))
			continue;
		for (k = n; k > 0 && idx[k - 1] > v; k--) {
			idx[k] = idx[k - 1];
			order[k] = order[k - 1];
		}
		idx[k] = v;
		order[k] = j;
		n++;
	}
	for (j = 0; j < c->tc_nqp; j++)
		if (tw_qs_first(c, j) && !tw_qs_index(c, j, &v))
			order[n++] = j;
	return n;
}

/* querystring.escape(): all but A-Z a-z 0-9 - . _ ~ ! ' ( ) * */
static void
tw_qs_escape(struct tw_buf *b, const char *s, size_t n)
{
	unsigned char	 c;
	size_t		 i;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') ||
		    (c != '\0' && strchr("-._~!'()*", c) != NULL))
			tb_addc(b, c);
		else
			tb_pct(b, c);
	}
}

/*
 * tc_leg = querystring.stringify(querystring.parse(query)): each key,
 * in Object.keys() order, with all its values in order.  -1 if the
 * parsed URL has no or an empty query (the legacy form is then the
 * same URL), or on overflow.
 */
static int
tw_qs_legacy(struct tw_ctx *c)
{
	const struct tw_url	*u = &c->tc_url;
	const struct tw_qpair	*qp;
	struct tw_buf		 b;
	size_t			 order[TW_MAXPARAMS], nk, i, j;

	if (u->tu_fragoff - u->tu_pathend < 2 ||
	    tw_qs_parse(c, c->tc_norm + u->tu_pathend + 1,
	    u->tu_fragoff - u->tu_pathend - 1) == -1)
		return -1;
	nk = tw_qs_keys(c, order);
	tb_init(&b, c->tc_leg, sizeof(c->tc_leg));
	for (i = 0; i < nk; i++)
		for (j = order[i]; j < c->tc_nqp; j++) {
			if (!tw_qs_keyeq(c, order[i], j))
				continue;
			qp = &c->tc_qp[j];
			if (b.tb_len > 0)
				tb_addc(&b, '&');
			tw_qs_escape(&b, c->tc_qraw + qp->qp_key, qp->qp_klen);
			tb_addc(&b, '=');
			tw_qs_escape(&b, c->tc_qraw + qp->qp_val, qp->qp_vlen);
		}
	c->tc_leglen = b.tb_len;
	return b.tb_err ? -1 : 0;
}

/*
 * Public interface.
 */

/*
 * Also -1 for a NULL token, URL, name or value, or more than
 * TW_MAXPARAMS params.
 */
int
twilio_sig_compute(const char *token, const char *url,
    const struct tw_param *p, size_t n, char out[TWILIO_SIG_LEN])
{
	struct tw_plist	 pl;
	struct tw_mac	 m;
	struct tw_iov	 iov;
	int		 rv;

	memset(out, 0, TWILIO_SIG_LEN);
	if (token == NULL || url == NULL || tw_plist_build(&pl, p, n) == -1)
		return -1;
	if (tw_mac_open(&m) == -1)
		return -1;
	tw_iov_set(&iov, url, strlen(url));
	rv = tw_mac_sig(&m, token, &iov, 1, &pl, out);
	tw_mac_close(&m);
	if (rv == -1)
		memset(out, 0, TWILIO_SIG_LEN);
	return rv;
}

int
twilio_sig_check(const char *token, const char *url,
    const struct tw_param *p, size_t n, const char *sig)
{
	struct tw_ctx	*c;
	int		 ok;

	if (!tw_args_ok(token, url, sig) || (c = tw_ctx_new(p, n)) == NULL)
		return 0;
	ok = tw_check(c, token, url, sig);
	tw_ctx_free(c);
	return ok;
}

int
twilio_sig_check_body(const char *token, const char *url, const void *body,
    size_t len, const char *sig)
{
	struct tw_ctx	*c;
	unsigned char	 md[EVP_MAX_MD_SIZE];
	char		 hex[2 * EVP_MAX_MD_SIZE + 1];
	size_t		 mdlen = 0, i;
	int		 ok = 0;

	if (!tw_args_ok(token, url, sig) || (body == NULL && len > 0))
		return 0;
	if (!EVP_Q_digest(NULL, "SHA256", NULL, body != NULL ? body : "",
	    len, md, &mdlen) || mdlen != 32)
		return 0;
	for (i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if ((c = tw_ctx_new(NULL, 0)) == NULL)
		return 0;
	if (tw_url_parse(c, url) == 0 && tw_body_param(c, hex))
		ok = tw_check(c, token, url, sig);
	tw_ctx_free(c);
	return ok;
}

int
twilio_sig_check_stream(const char *token, const char *url, const char *sig)
{
	struct tw_ctx	*c;
	struct tw_iov	 iov[TW_MAXIOV];
	char		 pbuf[TW_PORTBUF];
	size_t		 k;
	long		 port;
	int		 ok, i, sch;

	if (!tw_args_ok(token, url, sig) || (c = tw_ctx_new(NULL, 0)) == NULL)
		return 0;
	tw_iov_set(&iov[0], url, strlen(url));
	ok = tw_try(c, token, iov, 1, sig);
	for (i = tw_url_parse(c, url) == 0 ? 0 : 2; i < 2; i++) {
		sch = i == 0 ? c->tc_url.tu_scheme :
		    TW_TWIN(c->tc_url.tu_scheme);
		port = c->tc_url.tu_port >= 0 ? c->tc_url.tu_port :
		    tw_schemes[sch].ts_port;
		k = tw_url_form(c, sch, -1, 0, pbuf, iov);
		ok |= tw_try(c, token, iov, k, sig);
		k = tw_url_form(c, sch, port, 0, pbuf, iov);
		ok |= tw_try(c, token, iov, k, sig);
	}
	tw_ctx_free(c);
	return ok;
}

/*
 * buf must hold len + 1 bytes: the last NUL may land on buf[len].
 * Empty pieces ("a=1&&b=2") are skipped, as WHATWG and Node do.
 */
int
twilio_form_parse(char *buf, size_t len, struct tw_param *out, size_t max)
{
	const char	*eq;
	size_t		 r = 0, w = 0, e, n = 0;
	const char	*amp;

	if (len == 0)
		return 0;
	if (buf == NULL || memchr(buf, '\0', len) != NULL)
		return -1;
	if (max > TW_MAXPARAMS)
		max = TW_MAXPARAMS;
	for (; r < len; r = e + 1) {
		amp = memchr(buf + r, '&', len - r);
		e = amp != NULL ? (size_t)(amp - buf) : len;
		if (e == r)
			continue;
		if (n == max || out == NULL)
			return -1;
		eq = memchr(buf + r, '=', e - r);
		out[n].tp_name = buf + w;
		if (tw_form_decode(buf, r, eq != NULL ?
		    (size_t)(eq - buf) : e, &w) == -1)
			return -1;
		buf[w++] = '\0';
		out[n].tp_value = "";
		if (eq != NULL) {
			out[n].tp_value = buf + w;
			if (tw_form_decode(buf, (size_t)(eq - buf) + 1, e,
			    &w) == -1)
				return -1;
			buf[w++] = '\0';
		}
		n++;
	}
	return (int)n;
}

/* Decode buf[from..to) to buf[*w...]; *w never passes the read point. */
static int
tw_form_decode(char *buf, size_t from, size_t to, size_t *w)
{
	size_t	 i;
	int	 hi, lo;
	char	 ch;

	for (i = from; i < to; i++) {
		ch = buf[i];
		if (ch == '+')
			ch = ' ';
		else if (ch == '%') {
			if (to - i < 3 || (hi = hex_digit(buf[i + 1])) < 0 ||
			    (lo = hex_digit(buf[i + 2])) < 0 || (hi | lo) == 0)
				return -1;
			ch = (char)(hi << 4 | lo);
			i += 2;
		}
		buf[(*w)++] = ch;
	}
	return 0;
}
