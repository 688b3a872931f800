/* sig.h (base; used by trigger): webhook signatures: HMAC-SHA256 over the raw body, hex decoding,
 * and comparisons that take the same time whatever the input. */
#ifndef KILN_SIG_H
#define KILN_SIG_H

#include <stdbool.h>
#include <stddef.h>

#define SIG_SHA256_LEN 32

void sig_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		     unsigned char out[SIG_SHA256_LEN]);

/* The same HMAC fed piece by piece, as a body arrives. */
struct sig_hmac;
/* NULL only when libcrypto cannot set it up. The caller frees with sig_hmac_free. */
struct sig_hmac *sig_hmac_new(const void *key, size_t key_len);
void sig_hmac_update(struct sig_hmac *h, const void *data, size_t len);
/* Once: later updates are ignored and a second final is false, as is a
 * libcrypto failure (then out means nothing). */
bool sig_hmac_final(struct sig_hmac *h, unsigned char out[SIG_SHA256_LEN]);
struct sig_hmac *sig_hmac_free(struct sig_hmac *h); /* NULL-safe, returns NULL */
/* Constant-time equality of two equal-length buffers. */
bool sig_equal(const void *a, const void *b, size_t n);
/* Constant-time equality of two strings of possibly different lengths (the
 * length is not secret; the contents are). */
bool sig_str_equal(const char *a, const char *b);
/* Does `header` (e.g. "sha256=<hex>" or "<hex>", per prefix) carry the HMAC
 * of body under secret? Never says why not: any mismatch is just false. */
bool sig_check_hmac(const char *secret, const char *prefix, const char *header, const void *body,
		    size_t len);
/* The same check against an HMAC already computed (sig_hmac_final). */
bool sig_check_mac(const char *prefix, const char *header, const unsigned char mac[SIG_SHA256_LEN]);

#endif
