/* sig.c (base; used by trigger): HMAC-SHA256 with OpenSSL's libcrypto, constant-time compares. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "kiln/buf.h"
#include "kiln/sig.h"

struct sig_hmac {
	EVP_MAC_CTX *ctx;
	bool done;
};

void sig_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		     unsigned char out[SIG_SHA256_LEN])
{
	unsigned int n = SIG_SHA256_LEN;

	HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n);
}

struct sig_hmac *sig_hmac_new(const void *key, size_t key_len)
{
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
			       OSSL_PARAM_construct_end()};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	struct sig_hmac *h = xcalloc(1, sizeof(*h));

	h->ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac); /* the context holds its own reference */
	if (h->ctx == NULL || !EVP_MAC_init(h->ctx, key, key_len, params))
		return sig_hmac_free(h);
	return h;
}

void sig_hmac_update(struct sig_hmac *h, const void *data, size_t len)
{
	if (!h->done && len)
		EVP_MAC_update(h->ctx, data, len);
}

bool sig_hmac_final(struct sig_hmac *h, unsigned char out[SIG_SHA256_LEN])
{
	size_t n = 0;
	bool ok = !h->done && EVP_MAC_final(h->ctx, out, &n, SIG_SHA256_LEN) && n == SIG_SHA256_LEN;

	h->done = true;
	return ok;
}

struct sig_hmac *sig_hmac_free(struct sig_hmac *h)
{
	if (h) {
		EVP_MAC_CTX_free(h->ctx);
		free(h);
	}
	return NULL;
}

bool sig_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

bool sig_str_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char da[SIG_SHA256_LEN], db[SIG_SHA256_LEN];

	/* compare digests: equal length, and no early exit on content */
	sig_hmac_sha256("kiln", 4, a, la, da);
	sig_hmac_sha256("kiln", 4, b, lb, db);
	return sig_equal(da, db, sizeof(da)) && la == lb;
}

bool sig_check_mac(const char *prefix, const char *header, const unsigned char mac[SIG_SHA256_LEN])
{
	unsigned char got[SIG_SHA256_LEN];
	size_t plen = strlen(prefix);

	if (header == NULL || strncmp(header, prefix, plen) != 0 ||
	    hex_decode(header + plen, strlen(header + plen), got, sizeof(got)) < 0)
		return false;
	return sig_equal(mac, got, sizeof(got));
}

bool sig_check_hmac(const char *secret, const char *prefix, const char *header, const void *body,
		    size_t len)
{
	unsigned char want[SIG_SHA256_LEN];

	sig_hmac_sha256(secret, strlen(secret), body, len, want);
	return sig_check_mac(prefix, header, want);
}
