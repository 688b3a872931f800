/* backoff.h (base): the one formula for every retry delay in kiln (a failing poll,
 * an engine that does not answer, a build retried after a transient failure,
 * `kiln build`'s retries): base doubled per attempt, capped, spread by +-10%
 * so that many waiters do not retry together. */
#ifndef KILN_BACKOFF_H
#define KILN_BACKOFF_H

#include <stdint.h>

/* A build retried after a transient failure waits at most this long. */
#define BACKOFF_RETRY_MAX_MS (10ull * 60 * 1000)

/* base_ms * 2^(attempt - 1), at most max(cap_ms, base_ms); attempt 0 counts
 * as 1. Saturates instead of overflowing for any attempt. */
uint64_t backoff_exact_ms(uint64_t base_ms, unsigned attempt, uint64_t cap_ms);
/* backoff_exact_ms spread uniformly over [90 %, 110 %] of its value. */
uint64_t backoff_ms(uint64_t base_ms, unsigned attempt, uint64_t cap_ms);
/* A uniformly spread delay in [ms - ms/10, ms + ms/10], overflow-safe. */
uint64_t backoff_jitter(uint64_t ms);
/* A pseudo-random number (xorshift, per thread): for spreading, not secrets. */
uint64_t backoff_rand(void);

#endif
