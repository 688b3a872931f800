/* test_backoff.c: the retry-delay formula at its edges: the first attempts,
 * the cap, a base above the cap, attempts far past 64 (where a shift would be
 * undefined and the old formula wrapped to 0), and the jitter's bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kiln/backoff.h"

static void doubles_until_cap(void **state)
{
	(void)state;
	assert_int_equal(backoff_exact_ms(1000, 0, 60000), 1000);
	assert_int_equal(backoff_exact_ms(1000, 1, 60000), 1000);
	assert_int_equal(backoff_exact_ms(1000, 2, 60000), 2000);
	assert_int_equal(backoff_exact_ms(1000, 6, 60000), 32000);
	assert_int_equal(backoff_exact_ms(1000, 7, 60000), 60000);
	assert_int_equal(backoff_exact_ms(1000, 8, 60000), 60000);
}

static void base_above_cap(void **state)
{
	(void)state;
	/* a poll interval of an hour with a 10 min cap stays an hour */
	assert_int_equal(backoff_exact_ms(3600000, 1, 600000), 3600000);
	assert_int_equal(backoff_exact_ms(3600000, 9, 600000), 3600000);
}

static void no_overflow(void **state)
{
	(void)state;
	/* retries may be 100: 30 s << 99 is undefined, << 61 wrapped to 0 */
	for (unsigned a = 1; a <= 1000; a++) {
		uint64_t d = backoff_exact_ms(30000, a, 600000);
		assert_true(d >= 30000 && d <= 600000);
	}
	assert_int_equal(backoff_exact_ms(30000, 61, 600000), 600000);
	assert_int_equal(backoff_exact_ms(30000, 100, 600000), 600000);
	assert_int_equal(backoff_exact_ms(30000, UINT32_MAX, 600000), 600000);
	/* a cap near the top of the type: doubling saturates at it */
	assert_int_equal(backoff_exact_ms(3, 200, UINT64_MAX), UINT64_MAX);
	assert_int_equal(backoff_exact_ms(UINT64_MAX, 2, 1000), UINT64_MAX);
	assert_int_equal(backoff_exact_ms(0, 50, 1000), 0);
}

static void jitter_bounds(void **state)
{
	uint64_t lo = UINT64_MAX, hi = 0;

	(void)state;
	for (int i = 0; i < 10000; i++) {
		uint64_t d = backoff_ms(1000, 3, 60000);
		assert_true(d >= 3600 && d <= 4400);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	/* it does spread: 10,000 draws cover most of the range */
	assert_true(lo < 3700 && hi > 4300);
	assert_int_equal(backoff_jitter(0), 0);
	assert_int_equal(backoff_jitter(9), 9);
	for (int i = 0; i < 1000; i++) {
		uint64_t d = backoff_jitter(UINT64_MAX);
		assert_true(d >= UINT64_MAX - UINT64_MAX / 10);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(doubles_until_cap),
	    cmocka_unit_test(base_above_cap),
	    cmocka_unit_test(no_overflow),
	    cmocka_unit_test(jitter_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
