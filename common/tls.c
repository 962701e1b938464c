/*
 * tls.c - the process-wide TLS client context (SSL_CTX) used by workers
 * for the ElevenLabs WebSocket.  The supervisor builds it before forking
 * so the CA store is parsed once; a reload builds a new one for the
 * workers forked afterwards and the old one stays with the live calls.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/x509v3.h>

#include "tls.h"

static SSL_CTX	*client_ctx;

/* Returns NULL with a reason in err. */
SSL_CTX *
tls_client_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX		*ctx;
	X509_STORE	*st;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new failed");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "cannot load the system CA store");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (ca_file != NULL && ca_file[0] != '\0') {
		st = SSL_CTX_get_cert_store(ctx);
		if (X509_STORE_load_file(st, ca_file) != 1) {
			snprintf(err, errlen, "tls_ca_file %s: %s", ca_file,
			    ERR_reason_error_string(ERR_get_error()));
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	return ctx;
}

void
tls_set_client_ctx(SSL_CTX *ctx)
{
	client_ctx = ctx;
}

SSL_CTX *
tls_client_ctx(void)
{
	return client_ctx;
}

int
tls_set_peer(SSL *ssl, const char *host)
{
	X509_VERIFY_PARAM	*vp = SSL_get0_param(ssl);
	unsigned char		 buf[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1 ? 0 : -1;
	X509_VERIFY_PARAM_set_hostflags(vp,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1 ||
	    SSL_set_tlsext_host_name(ssl, host) != 1)
		return -1;
	return 0;
}

/*
 * OpenSSL 3 builds its algorithm tables (the method store, the name
 * map, the fetch cache) on first use, in whichever process uses them
 * first.  Done in the fork server before it forks, they are written
 * once and shared by every worker; left to the workers, each call's
 * first digest, cipher or key exchange copied pages it inherited
 * (algorithm names and OIDs): a busy bench worker's copied heap was
 * 92 KiB without this, 44 KiB with it.
 */
static void tls_md_cb(EVP_MD *x, void *a) { (void)x, (void)a; }
static void tls_ci_cb(EVP_CIPHER *x, void *a) { (void)x, (void)a; }
static void tls_mac_cb(EVP_MAC *x, void *a) { (void)x, (void)a; }
static void tls_kdf_cb(EVP_KDF *x, void *a) { (void)x, (void)a; }
static void tls_km_cb(EVP_KEYMGMT *x, void *a) { (void)x, (void)a; }
static void tls_kx_cb(EVP_KEYEXCH *x, void *a) { (void)x, (void)a; }
static void tls_sig_cb(EVP_SIGNATURE *x, void *a) { (void)x, (void)a; }
static void tls_rand_cb(EVP_RAND *x, void *a) { (void)x, (void)a; }

void
tls_prewarm(void)
{
	static const char *mds[] = { "SHA1", "SHA256", "SHA384", "SHA512",
	    "MD5", "MD5-SHA1" };
	static const char *cis[] = { "AES-128-GCM", "AES-256-GCM",
	    "ChaCha20-Poly1305", "AES-128-CBC", "AES-256-CBC" };
	static const char *kms[] = { "X25519", "EC", "RSA", "RSA-PSS",
	    "ED25519", "X448" };
	static const char *kxs[] = { "X25519", "ECDH", "X448" };
	static const char *sigs[] = { "RSA", "ECDSA", "ED25519" };
	static const char *kdfs[] = { "TLS1-PRF", "HKDF", "TLS13-KDF" };
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen;
	size_t		 i;

	EVP_MD_do_all_provided(NULL, tls_md_cb, NULL);
	EVP_CIPHER_do_all_provided(NULL, tls_ci_cb, NULL);
	EVP_MAC_do_all_provided(NULL, tls_mac_cb, NULL);
	EVP_KDF_do_all_provided(NULL, tls_kdf_cb, NULL);
	EVP_KEYMGMT_do_all_provided(NULL, tls_km_cb, NULL);
	EVP_KEYEXCH_do_all_provided(NULL, tls_kx_cb, NULL);
	EVP_SIGNATURE_do_all_provided(NULL, tls_sig_cb, NULL);
	EVP_RAND_do_all_provided(NULL, tls_rand_cb, NULL);
	/* The fetch cache, by name, as the calls ask (each type its own API). */
#define TLS_FETCH_EACH(names, TYPE)					\
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)		\
		EVP_##TYPE##_free(EVP_##TYPE##_fetch(NULL, names[i], NULL))
	TLS_FETCH_EACH(mds, MD);
	TLS_FETCH_EACH(cis, CIPHER);
	TLS_FETCH_EACH(kms, KEYMGMT);
	TLS_FETCH_EACH(kxs, KEYEXCH);
	TLS_FETCH_EACH(sigs, SIGNATURE);
	TLS_FETCH_EACH(kdfs, KDF);
#undef TLS_FETCH_EACH
	EVP_MAC_free(EVP_MAC_fetch(NULL, "HMAC", NULL));
	/* Implicit fetches: EVP_sha1() (ws.c, jobs.c), HMAC() (streamtok.c). */
	(void)EVP_Digest("x", 1, md, &mdlen, EVP_sha1(), NULL);
	(void)HMAC(EVP_sha256(), "k", 1, (const unsigned char *)"x", 1, md,
	    &mdlen);
	ERR_clear_error();
}
