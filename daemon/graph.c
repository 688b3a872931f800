/* graph.c (plan): topological order with a key-ordered heap, and cycle extraction. */
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/graph.h"

void graph_init(struct graph *g, size_t n, const char *const *keys)
{
	g->n = n;
	g->keys = keys;
	g->out = xcalloc(n, sizeof(*g->out));
	g->indeg = xcalloc(n, sizeof(*g->indeg));
}

void graph_edge(struct graph *g, size_t a, size_t b)
{
	struct graph_adj *adj = &g->out[a];

	if (adj->n == adj->cap) {
		adj->cap = adj->cap ? adj->cap * 2 : 2;
		adj->v = xreallocarray(adj->v, adj->cap, sizeof(*adj->v));
	}
	adj->v[adj->n++] = b;
	g->indeg[b]++;
}

struct heap {
	size_t *v, n;
	const char *const *keys;
};

static bool less(const struct heap *h, size_t a, size_t b)
{
	return strcmp(h->keys[h->v[a]], h->keys[h->v[b]]) < 0;
}

static void swap(struct heap *h, size_t a, size_t b)
{
	size_t t = h->v[a];
	h->v[a] = h->v[b];
	h->v[b] = t;
}

static void heap_push(struct heap *h, size_t x)
{
	size_t i = h->n++;

	h->v[i] = x;
	while (i > 0 && less(h, i, (i - 1) / 2)) {
		swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static size_t heap_pop(struct heap *h)
{
	size_t top = h->v[0], i = 0;

	h->v[0] = h->v[--h->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < h->n && less(h, l, m))
			m = l;
		if (r < h->n && less(h, r, m))
			m = r;
		if (m == i)
			break;
		swap(h, i, m);
		i = m;
	}
	return top;
}

static int by_key(const void *a, const void *b, void *keys)
{
	const char *const *k = keys;
	return strcmp(k[*(const size_t *)a], k[*(const size_t *)b]);
}

size_t graph_order(const struct graph *g, size_t *ret_order)
{
	size_t *indeg = xmalloc((g->n ? g->n : 1) * sizeof(size_t));
	unsigned char *done = xcalloc(g->n, 1);
	struct heap h = {xmalloc((g->n ? g->n : 1) * sizeof(size_t)), 0, g->keys};
	size_t k = 0, nordered;

	memcpy(indeg, g->indeg, g->n * sizeof(size_t));
	for (size_t i = 0; i < g->n; i++) {
		if (indeg[i] == 0)
			heap_push(&h, i);
	}
	while (h.n > 0) {
		size_t x = heap_pop(&h);
		ret_order[k++] = x;
		done[x] = 1;
		for (size_t j = 0; j < g->out[x].n; j++) {
			if (--indeg[g->out[x].v[j]] == 0)
				heap_push(&h, g->out[x].v[j]);
		}
	}
	nordered = k;
	for (size_t i = 0; i < g->n; i++) {
		if (!done[i])
			ret_order[k++] = i;
	}
	qsort_r(ret_order + nordered, g->n - nordered, sizeof(size_t), by_key, (void *)g->keys);
	free(h.v);
	free(done);
	free(indeg);
	return nordered;
}

size_t graph_cycle(const struct graph *g, const size_t *order, size_t nordered, size_t *ret_cycle)
{
	/* Every unordered node has an unordered predecessor, so walking
	 * predecessors backwards from any of them must revisit a node. */
	unsigned char *left = xcalloc(g->n, 1);
	size_t *pos = xmalloc((g->n ? g->n : 1) * sizeof(size_t));
	size_t *pred = xmalloc((g->n ? g->n : 1) * sizeof(size_t));
	size_t len = 0, x, steps = 0;

	if (nordered == g->n)
		goto out;
	for (size_t i = nordered; i < g->n; i++)
		left[order[i]] = 1;
	for (size_t i = 0; i < g->n; i++)
		pred[i] = (size_t)-1;
	for (size_t a = 0; a < g->n; a++) {
		for (size_t j = 0; j < g->out[a].n; j++) {
			size_t b = g->out[a].v[j];
			if (left[a] && left[b] &&
			    (pred[b] == (size_t)-1 || strcmp(g->keys[a], g->keys[pred[b]]) < 0))
				pred[b] = a;
		}
	}
	for (size_t i = 0; i < g->n; i++)
		pos[i] = (size_t)-1;
	x = order[nordered];
	while (pos[x] == (size_t)-1 && steps < g->n) {
		pos[x] = steps++;
		x = pred[x];
	}
	/* x is on the cycle; collect it forwards (reverse of the pred walk). */
	{
		size_t y = x;
		do {
			ret_cycle[len++] = y;
			y = pred[y];
		} while (y != x && len < g->n);
		for (size_t i = 0; i < len / 2; i++) {
			size_t t = ret_cycle[i];
			ret_cycle[i] = ret_cycle[len - 1 - i];
			ret_cycle[len - 1 - i] = t;
		}
	}
out:
	free(pred);
	free(pos);
	free(left);
	return len;
}

void graph_done(struct graph *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->out[i].v);
	free(g->out);
	free(g->indeg);
	memset(g, 0, sizeof(*g));
}
