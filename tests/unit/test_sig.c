/* test_sig.c: HMAC-SHA256 against RFC 4231 vectors and GitHub's documented
 * example, fed in one go and piece by piece, hex decoding, signature header
 * checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/buf.h"
#include "kiln/sig.h"

static void rfc4231(void **state)
{
	/* RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?" */
	unsigned char out[SIG_SHA256_LEN], want[SIG_SHA256_LEN];

	(void)state;
	sig_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out);
	assert_int_equal(
	    hex_decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 64, want,
		       sizeof(want)),
	    0);
	assert_memory_equal(out, want, sizeof(out));
}

static void github_example(void **state)
{
	/* docs.github.com "Validating webhook deliveries": secret "It's a Secret to Everybody",
	 * payload "Hello, World!" */
	const char *hdr = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

	(void)state;
	assert_true(
	    sig_check_hmac("It's a Secret to Everybody", "sha256=", hdr, "Hello, World!", 13));
	assert_false(
	    sig_check_hmac("It's a Secret to Everybody", "sha256=", hdr, "Hello, World?", 13));
	assert_false(sig_check_hmac("wrong secret", "sha256=", hdr, "Hello, World!", 13));
	/* Gitea sends the bare hex */
	assert_true(sig_check_hmac("It's a Secret to Everybody", "", hdr + 7, "Hello, World!", 13));
	assert_false(
	    sig_check_hmac("It's a Secret to Everybody", "sha256=", hdr + 7, "Hello, World!", 13));
	assert_false(sig_check_hmac("s", "sha256=", NULL, "x", 1));
	assert_false(sig_check_hmac("s", "sha256=", "sha256=zz", "x", 1));
	assert_false(sig_check_hmac("s", "sha256=", "sha256=", "x", 1));
}

/* The HMAC fed piece by piece, as a body arrives, equals the one-shot HMAC;
 * a second final is refused rather than answering a digest of nothing. */
static void incremental(void **state)
{
	const char *hdr = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
	const char *key = "It's a Secret to Everybody";
	unsigned char mac[SIG_SHA256_LEN], again[SIG_SHA256_LEN];
	struct sig_hmac *h = sig_hmac_new(key, strlen(key));

	(void)state;
	assert_non_null(h);
	sig_hmac_update(h, "Hello", 5);
	sig_hmac_update(h, "", 0);
	sig_hmac_update(h, ", World!", 8);
	assert_true(sig_hmac_final(h, mac));
	assert_true(sig_check_mac("sha256=", hdr, mac));
	assert_true(sig_check_mac("", hdr + 7, mac));
	assert_false(sig_check_mac("sha256=", hdr + 7, mac));
	assert_false(sig_check_mac("sha256=", NULL, mac));
	sig_hmac_update(h, "more", 4);
	assert_false(sig_hmac_final(h, again));
	h = sig_hmac_free(h);
	assert_null(h);
	/* nothing fed: the HMAC of an empty body */
	h = sig_hmac_new(key, strlen(key));
	assert_true(sig_hmac_final(h, mac));
	sig_hmac_sha256(key, strlen(key), "", 0, again);
	assert_memory_equal(mac, again, sizeof(mac));
	sig_hmac_free(h);
}

static void compares(void **state)
{
	unsigned char b[2];

	(void)state;
	assert_true(sig_str_equal("token", "token"));
	assert_false(sig_str_equal("token", "tokem"));
	assert_false(sig_str_equal("token", "token2"));
	assert_false(sig_str_equal("", "x"));
	assert_true(sig_equal("ab", "ab", 2));
	assert_false(sig_equal("ab", "ac", 2));
	assert_int_equal(hex_decode("0aFF", 4, b, 2), 0);
	assert_int_equal(b[0], 0x0a);
	assert_int_equal(b[1], 0xff);
	assert_int_equal(hex_decode("0aF", 3, b, 2), -EINVAL);
	assert_int_equal(hex_decode("0g00", 4, b, 2), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(rfc4231),
	    cmocka_unit_test(github_example),
	    cmocka_unit_test(incremental),
	    cmocka_unit_test(compares),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
