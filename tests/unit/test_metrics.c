/* test_metrics.c: the exposition text metrics.c writes: HELP/TYPE once per
 * family in registration order, held series and read callbacks, label and
 * HELP escaping, whole and fractional values, histograms, unregistering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/metrics.h"

static char *scrape(struct metrics *m)
{
	struct buf b = {0};

	metrics_write(m, &b);
	return buf_steal(&b);
}

static void read_two(struct metrics_out *o, void *arg)
{
	const double *v = arg;

	metrics_put(o, "repository", "a\"b\\c\nd", v[0]);
	metrics_put(o, NULL, NULL, v[1]);
}

static void held_and_read_in_order(void **state)
{
	struct metrics *m = metrics_new();
	double v[2] = {1712345678, 0.25};
	struct metrics_series *acc, *dup;
	char *text;

	(void)state;
	acc = metrics_series(m, "t_total", METRICS_COUNTER, "Requests\\by\nresult.", "result",
			     "accepted");
	metrics_series(m, "t_total", METRICS_COUNTER, "ignored help", "result", "failed");
	metrics_read(m, "t_seconds", METRICS_GAUGE, "Times.", read_two, v);
	dup = metrics_series(m, "t_total", METRICS_COUNTER, "x", "result", "accepted");
	assert_ptr_equal(acc, dup);
	metrics_inc(acc);
	metrics_inc(dup);
	text = scrape(m);
	assert_string_equal(text, "# HELP t_total Requests\\\\by\\nresult.\n"
				  "# TYPE t_total counter\n"
				  "t_total{result=\"accepted\"} 2\n"
				  "t_total{result=\"failed\"} 0\n"
				  "# HELP t_seconds Times.\n"
				  "# TYPE t_seconds gauge\n"
				  "t_seconds{repository=\"a\\\"b\\\\c\\nd\"} 1712345678\n"
				  "t_seconds 0.25\n");
	free(text);
	metrics_set(acc, 0.1);
	metrics_unregister(m, v);
	text = scrape(m);
	assert_non_null(strstr(text, "t_total{result=\"accepted\"} 0.1\n"));
	assert_null(strstr(text, "t_seconds"));
	free(text);
	metrics_free(m);
}

static void read_histogram(struct metrics_out *o, void *arg)
{
	static const double bounds[] = {1, 2.5, 3600};
	static const uint64_t buckets[] = {1, 2, 3};

	(void)arg;
	metrics_put_histogram(o, bounds, buckets, 3, 4, 4000.5);
}

static void histogram(void **state)
{
	struct metrics *m = metrics_new();
	char *text;

	(void)state;
	metrics_read(m, "h_seconds", METRICS_HISTOGRAM, "H.", read_histogram, NULL);
	text = scrape(m);
	assert_string_equal(text, "# HELP h_seconds H.\n"
				  "# TYPE h_seconds histogram\n"
				  "h_seconds_bucket{le=\"1\"} 1\n"
				  "h_seconds_bucket{le=\"2.5\"} 2\n"
				  "h_seconds_bucket{le=\"3600\"} 3\n"
				  "h_seconds_bucket{le=\"+Inf\"} 4\n"
				  "h_seconds_sum 4000.5\n"
				  "h_seconds_count 4\n");
	free(text);
	assert_null(metrics_free(m));
	assert_null(metrics_free(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(held_and_read_in_order),
	    cmocka_unit_test(histogram),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
