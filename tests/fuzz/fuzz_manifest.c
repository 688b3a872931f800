/* fuzz_manifest.c: manifest_parse on arbitrary bytes must never crash or leak,
 * and must either succeed with the required fields or report a diagnostic. */
#include <stdint.h>
#include <stdlib.h>

#include "kiln/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest m;
	struct kiln_diags d = {0};
	int r = manifest_parse((const char *)data, size, "f/manifest.yaml", "f", &m, &d);

	if (r == 0 && (m.name == NULL || m.version == NULL || m.registry == NULL || d.n != 0))
		abort();
	if (r < 0 && d.n == 0)
		abort();
	manifest_done(&m);
	kiln_diags_done(&d);
	return 0;
}
