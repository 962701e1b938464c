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
