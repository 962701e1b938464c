/*
 * tls.h - the TLS client context: built once in the supervisor before
 * it forks (CA store loaded once, shared copy-on-write by every worker),
 * rebuilt on reload for workers forked afterwards.  Peer verification is
 * always on; TLS_CA_FILE adds a trust anchor to the system store.
 */
#ifndef NAIBER_TLS_H
#define NAIBER_TLS_H

#include <openssl/ssl.h>

SSL_CTX	*tls_client_ctx_new(const char *, char *, size_t);
/* The process's current context (set by the supervisor). */
void	 tls_set_client_ctx(SSL_CTX *);
SSL_CTX	*tls_client_ctx(void);
/* Make ssl verify host (a name or an IP literal) and send SNI. */
int	 tls_set_peer(SSL *, const char *);
/* Build OpenSSL's algorithm tables now (the fork server, once). */
void	 tls_prewarm(void);

#endif
