/* fuzz_jsonscan.c: the webhook payload scan on arbitrary bytes must never
 * crash or read out of bounds; on success what it kept are NUL-terminated
 * strings without a NUL inside, and on failure nothing is kept. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/jsonscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jsonscan_field f[] = {{"ref", NULL}, {"after", NULL}, {"before", NULL}};
	char *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees overreads */
	int r;

	memcpy(copy, data, size);
	r = jsonscan_object(copy, size, f, 3, NULL);
	for (size_t i = 0; i < 3; i++) {
		if (r < 0 && f[i].value)
			abort();
		if (f[i].value && strlen(f[i].value) > size)
			abort();
		free(f[i].value);
	}
	if (r != 0 && r != -EINVAL)
		abort();
	free(copy);
	return 0;
}
