/* test_graph.c: dependency order (parents first, then by path) and cycles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/graph.h"

static void order_by_key_without_edges(void **state)
{
	const char *keys[] = {"c", "a", "b"};
	struct graph g;
	size_t order[3];

	(void)state;
	graph_init(&g, 3, keys);
	assert_int_equal(graph_order(&g, order), 3);
	assert_string_equal(keys[order[0]], "a");
	assert_string_equal(keys[order[1]], "b");
	assert_string_equal(keys[order[2]], "c");
	graph_done(&g);
}

static void dependencies_first(void **state)
{
	/* z -> a (a builds FROM z), z -> m, m -> b: order z, a, m, b */
	const char *keys[] = {"a", "b", "m", "z"};
	struct graph g;
	size_t order[4];

	(void)state;
	graph_init(&g, 4, keys);
	graph_edge(&g, 3, 0);
	graph_edge(&g, 3, 2);
	graph_edge(&g, 2, 1);
	graph_edge(&g, 2, 1); /* duplicates are harmless */
	assert_int_equal(graph_order(&g, order), 4);
	assert_string_equal(keys[order[0]], "z");
	assert_string_equal(keys[order[1]], "a");
	assert_string_equal(keys[order[2]], "m");
	assert_string_equal(keys[order[3]], "b");
	graph_done(&g);
}

static void cycle_is_found(void **state)
{
	/* a -> b -> c -> a, and d behind the cycle (c -> d), e free */
	const char *keys[] = {"a", "b", "c", "d", "e"};
	struct graph g;
	size_t order[5], cycle[5], n, nordered;

	(void)state;
	graph_init(&g, 5, keys);
	graph_edge(&g, 0, 1);
	graph_edge(&g, 1, 2);
	graph_edge(&g, 2, 0);
	graph_edge(&g, 2, 3);
	nordered = graph_order(&g, order);
	assert_int_equal(nordered, 1);
	assert_string_equal(keys[order[0]], "e");
	/* the rest follow by key */
	assert_string_equal(keys[order[1]], "a");
	assert_string_equal(keys[order[4]], "d");
	n = graph_cycle(&g, order, nordered, cycle);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		/* each element's successor in the cycle is an edge target */
		size_t a = cycle[i], b = cycle[(i + 1) % n];
		bool edge = false;
		for (size_t k = 0; k < g.out[a].n; k++)
			edge |= g.out[a].v[k] == b;
		assert_true(edge);
		assert_true(strcmp(keys[a], "d") != 0);
	}
	graph_done(&g);
}

static void self_loop_is_a_cycle(void **state)
{
	const char *keys[] = {"a"};
	struct graph g;
	size_t order[1], cycle[1];

	(void)state;
	graph_init(&g, 1, keys);
	graph_edge(&g, 0, 0);
	assert_int_equal(graph_order(&g, order), 0);
	assert_int_equal(graph_cycle(&g, order, 0, cycle), 1);
	assert_int_equal(cycle[0], 0);
	graph_done(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(order_by_key_without_edges),
	    cmocka_unit_test(dependencies_first),
	    cmocka_unit_test(cycle_is_found),
	    cmocka_unit_test(self_loop_is_a_cycle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
