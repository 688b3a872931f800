/* fuzz_dockerignore.c: the first line of input is a path, the rest a
 * .dockerignore; parsing and matching must never crash, and matching must
 * agree with itself (a path is excluded iff it is excluded). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/dockerignore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	struct dockerignore *di = NULL;
	struct kiln_err err = {0};
	char *path;

	if (nl == NULL)
		return 0;
	path = xstrndup((const char *)data, (size_t)(nl - (const char *)data));
	if (dockerignore_parse(nl + 1, size - (size_t)(nl + 1 - (const char *)data), &di, &err) ==
	    0) {
		if (strlen(path) > 0 &&
		    dockerignore_excluded(di, path) != dockerignore_excluded(di, path))
			abort();
		dockerignore_free(di);
	}
	free(path);
	return 0;
}
