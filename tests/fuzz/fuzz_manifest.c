/* fuzz_manifest.c: manifest_parse on arbitrary bytes must never crash or leak,
 * and must either succeed with the required fields or report a diagnostic.
 * Every document the parser-less subset (ydoc_load_simple) takes must be the
 * one libyaml's parser makes of the same bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "kiln/manifest.h"
#include "kiln/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest m;
	struct kiln_diags d = {0};
	int r = manifest_parse((const char *)data, size, "f/manifest.yaml", "f", &m, &d);
	struct ydoc fast, full;

	if (ydoc_load_simple(&fast, (const char *)data, size, "f") == 0) {
		struct kiln_diags ignored = {0};
		if (ydoc_load(&full, (const char *)data, size, "f", &ignored) < 0 ||
		    !ydoc_same(&fast, &full))
			abort();
		ydoc_done(&full);
		ydoc_done(&fast);
		kiln_diags_done(&ignored);
	}

	if (r == 0 && (m.name == NULL || m.version == NULL || m.registry == NULL || d.n != 0))
		abort();
	if (r < 0 && d.n == 0)
		abort();
	manifest_done(&m);
	kiln_diags_done(&d);
	return 0;
}
