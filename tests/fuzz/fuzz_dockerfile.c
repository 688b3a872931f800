/* fuzz_dockerfile.c: FROM extraction on arbitrary Dockerfiles must never
 * crash, and every reference it returns is non-empty with a tag or digest. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/dockerfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct kv args[] = {{"A", "x"}, {"B", ""}};
	struct dockerfile_froms f = {0};

	if (dockerfile_froms((const char *)data, size, args, 2, &f, NULL) == 0) {
		for (size_t i = 0; i < f.n; i++) {
			if (f.v[i].ref[0] == '\0' || f.v[i].line == 0)
				abort();
		}
		dockerfile_froms_done(&f);
	}
	return 0;
}
