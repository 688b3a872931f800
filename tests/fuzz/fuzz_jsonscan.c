/* fuzz_jsonscan.c: the webhook payload scan on arbitrary bytes must never
 * crash or read out of bounds, and must agree with jansson (which kilnd used
 * before): what it accepts jansson parses to an object with the same ref,
 * after and before strings (jansson alone refusing numbers it cannot hold
 * is allowed); what it refuses jansson refuses too when asked to reject
 * duplicate keys (jsonscan refuses only those of its three keys). Inputs
 * nested deeper than JSONSCAN_DEPTH_MAX are left out of the comparison. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kiln/jsonscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool deep(const uint8_t *data, size_t size)
{
	size_t opens = 0;

	for (size_t i = 0; i < size; i++)
		opens += data[i] == '[' || data[i] == '{';
	return opens >= JSONSCAN_DEPTH_MAX;
}

static void compare(const char *copy, size_t size, int r, const struct jsonscan_field *f)
{
	json_error_t jerr;
	json_t *doc;

	if (r == 0) {
		doc = json_loadb(copy, size, 0, &jerr);
		if (doc == NULL) {
			if (strstr(jerr.text, "too big") == NULL &&
			    strstr(jerr.text, "overflow") == NULL)
				abort();
			return;
		}
		if (!json_is_object(doc))
			abort();
		for (size_t i = 0; i < 3; i++) {
			const char *v = json_string_value(json_object_get(doc, f[i].key));
			if ((v == NULL) != (f[i].value == NULL) ||
			    (v && strcmp(v, f[i].value) != 0))
				abort();
		}
		json_decref(doc);
	} else {
		/* jansson takes a NUL byte after a number ("1\0}") as the end of
		 * the number; JSON has no such byte outside strings, and the scan
		 * refuses it */
		doc = json_loadb(copy, size, JSON_REJECT_DUPLICATES, &jerr);
		if (doc && json_is_object(doc) && memchr(copy, '\0', size) == NULL)
			abort();
		json_decref(doc);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jsonscan_field f[] = {{"ref", NULL}, {"after", NULL}, {"before", NULL}};
	char *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees overreads */
	int r;

	memcpy(copy, data, size);
	r = jsonscan_object(copy, size, f, 3, NULL);
	if (r != 0 && r != -EINVAL)
		abort();
	for (size_t i = 0; i < 3; i++) {
		if (r < 0 && f[i].value)
			abort();
	}
	if (!deep(data, size))
		compare(copy, size, r, f);
	for (size_t i = 0; i < 3; i++)
		free(f[i].value);
	free(copy);
	return 0;
}
