/* jsonscan.h (base): one pass over a JSON document that checks all of it and
 * keeps only a few string members of its top-level object, building no tree.
 * A webhook needs three strings of a 7 KB push payload: a full parse
 * (jansson) allocated every member of every commit and was half of kilnd's
 * CPU under webhook load. */
#ifndef KILN_JSONSCAN_H
#define KILN_JSONSCAN_H

#include <stddef.h>

#include "kiln/err.h"

/* Nesting deeper than this is refused (jansson's limit is 2048; payloads
 * from forges nest less than 10 deep). */
#define JSONSCAN_DEPTH_MAX 512

/* Length of the valid UTF-8 sequence at p (its first byte >= 0x80, before
 * end), or 0: not UTF-8 (overlong, a surrogate, cut short, ...). */
size_t jsonscan_utf8_len(const unsigned char *p, const unsigned char *end);

/* A top-level member wanted: value is set to a new string (decoded, UTF-8,
 * the caller frees it) when the member is there and is a string; it stays
 * NULL otherwise (absent, or another type). */
struct jsonscan_field {
	const char *key;
	char *value;
};

/* Checks that [p, p + len) is one JSON object (RFC 8259: strings valid UTF-8,
 * no \u0000, nesting at most JSONSCAN_DEPTH_MAX) in which no wanted key
 * comes twice, and fills the wanted fields (n at most 32, else -E2BIG). On
 * failure (-EINVAL, err says what and at which byte) every value is NULL. */
int jsonscan_object(const char *p, size_t len, struct jsonscan_field *fields, size_t n,
		    struct kiln_err *err);

#endif
