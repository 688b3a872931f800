/* fuzz_forge.c: a forge's answer headers on arbitrary bytes (one header per
 * line, the first line's first bytes as the status) must never crash or
 * overrun the fields, and never ask for a wait past FORGE_WAIT_MAX_MS. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/forge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct forge_reply rp = {0};
	const char *p = (const char *)data, *end = p + size;
	uint64_t ms = 0;

	rp.status = size >= 2 ? (long)(data[0] << 8 | data[1]) % 600 : 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p + 1) : (size_t)(end - p);
		forge_reply_header(&rp, p, len);
		p += len;
	}
	if (strlen(rp.retry_after) >= sizeof(rp.retry_after) ||
	    strlen(rp.ratelimit_reset) >= sizeof(rp.ratelimit_reset) ||
	    strlen(rp.ratelimit_remaining) >= sizeof(rp.ratelimit_remaining))
		abort();
	forge_verdict(&rp, 1700000000, &ms);
	if (ms > FORGE_WAIT_MAX_MS)
		abort();
	if (forge_retry_after(rp.retry_after, 1700000000, &ms) == 0 && rp.retry_after[0] == '\0')
		abort();
	return 0;
}
