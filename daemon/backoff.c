/* backoff.c (base): retry delays (see backoff.h). Owns the per-thread generator
 * used to spread them; nothing here is for secrets. */
#include <time.h>
#include <unistd.h>

#include "kiln/backoff.h"

uint64_t backoff_rand(void)
{
	static _Thread_local uint64_t x;

	if (x == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = ((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uint64_t)getpid()) *
			0x9E3779B97F4A7C15ull |
		    1;
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

uint64_t backoff_exact_ms(uint64_t base_ms, unsigned attempt, uint64_t cap_ms)
{
	uint64_t d = base_ms;

	if (cap_ms < base_ms)
		cap_ms = base_ms;
	/* doubling stops at the cap, so no shift is ever wider than the type */
	for (unsigned i = 1; i < attempt && d < cap_ms; i++)
		d = d > cap_ms / 2 ? cap_ms : d * 2;
	return d < cap_ms ? d : cap_ms;
}

uint64_t backoff_jitter(uint64_t ms)
{
	uint64_t spread = ms / 10, low = ms - spread;
	uint64_t add = backoff_rand() % (2 * spread + 1);

	/* low + [0, 2 * spread], saturating at the top of the type */
	return add > UINT64_MAX - low ? UINT64_MAX : low + add;
}

uint64_t backoff_ms(uint64_t base_ms, unsigned attempt, uint64_t cap_ms)
{
	return backoff_jitter(backoff_exact_ms(base_ms, attempt, cap_ms));
}
