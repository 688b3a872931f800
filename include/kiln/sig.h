/* sig.h (base; used by trigger): webhook signatures: HMAC-SHA256 over the raw body, hex decoding,
 * and comparisons that take the same time whatever the input. */
#ifndef KILN_SIG_H
#define KILN_SIG_H

#include <stdbool.h>
#include <stddef.h>

#define SIG_SHA256_LEN 32

void sig_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		     unsigned char out[SIG_SHA256_LEN]);
/* Constant-time equality of two equal-length buffers. */
bool sig_equal(const void *a, const void *b, size_t n);
/* Constant-time equality of two strings of possibly different lengths (the
 * length is not secret; the contents are). */
bool sig_str_equal(const char *a, const char *b);
/* Strict lowercase/uppercase hex of exactly 2*n digits -> n bytes; -EINVAL otherwise. */
int sig_hex_decode(const char *hex, size_t hex_len, unsigned char *out, size_t n);
/* Does `header` (e.g. "sha256=<hex>" or "<hex>", per prefix) carry the HMAC
 * of body under secret? Never says why not: any mismatch is just false. */
bool sig_check_hmac(const char *secret, const char *prefix, const char *header, const void *body,
		    size_t len);

#endif
