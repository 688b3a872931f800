/* fuzz_config.c (input): config_parse, the parser config_load runs, on
 * arbitrary bytes. It must never crash or leak, and must either succeed with
 * a complete configuration and no diagnostics, or fail with at least one
 * diagnostic and leave the result zeroed. Relative secret files resolve
 * beside "fuzz/kilnd.yaml", which does not exist, so they fail to open. */
#include <stdint.h>
#include <stdlib.h>

#include "kiln/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ok(const struct config *c)
{
	if (c->path == NULL || c->state_dir == NULL || c->state_dir[0] != '/')
		abort();
	for (size_t i = 0; i < c->nrepos; i++) {
		const struct config_repo *r = &c->repos[i];
		if (r->name == NULL || r->url == NULL || r->branches.n == 0 || r->manifest == NULL)
			abort();
		if (r->webhook_provider && r->webhook_secret == NULL)
			abort();
		if (config_repo(c, r->name) != r) /* names are unique */
			abort();
	}
	for (size_t i = 0; i < c->nregistries; i++) {
		const struct config_registry *g = &c->registries[i];
		if (g->host == NULL || g->username == NULL || g->password == NULL)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	struct kiln_diags d = {0};
	int r = config_parse((const char *)data, size, "fuzz/kilnd.yaml", &c, &d);

	if (r == 0) {
		if (d.n != 0)
			abort();
		check_ok(&c);
	} else if (r != -EINVAL || d.n == 0 || c.path != NULL || c.nrepos != 0) {
		abort();
	}
	for (size_t i = 0; i < d.n; i++) {
		if (d.v[i].path == NULL || d.v[i].message == NULL)
			abort();
	}
	config_done(&c);
	kiln_diags_done(&d);
	return 0;
}
