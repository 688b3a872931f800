/* graph.h (plan): ordering images so that dependencies come before dependents, ties
 * broken by key (the image path), and naming a cycle when there is one. */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

struct graph_adj {
	size_t *v;
	size_t n, cap;
};

struct graph {
	size_t n;
	const char *const *keys; /* borrowed; n entries */
	struct graph_adj *out;	 /* out[a] holds b for each edge a -> b */
	size_t *indeg;
};

void graph_init(struct graph *g, size_t n, const char *const *keys);
/* a must come before b. Duplicate edges are fine. */
void graph_edge(struct graph *g, size_t a, size_t b);
/* Writes all n nodes to ret_order: first those that can be ordered (Kahn's
 * algorithm, smallest key first), then the rest (on or behind a cycle) by key.
 * Returns how many were ordered; n means no cycle. */
size_t graph_order(const struct graph *g, size_t *ret_order);
/* With graph_order's result: one cycle among the unordered nodes, written to
 * ret_cycle (at most n entries, first node not repeated). Returns its length. */
size_t graph_cycle(const struct graph *g, const size_t *order, size_t nordered, size_t *ret_cycle);
void graph_done(struct graph *g);

#endif
