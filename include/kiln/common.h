/* common.h (base): what every kiln module shares: the error record, container_of,
 * and the limits every input is held to. */
#ifndef KILN_COMMON_H
#define KILN_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <errno.h>

#define KILN_VERSION "0.1.0"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define ARRAY_SIZE(a)			(sizeof(a) / sizeof((a)[0]))

/* Caps on untrusted input: a file larger than these is rejected, not read. */
#define MANIFEST_SIZE_MAX     (1u << 20)
#define DOCKERIGNORE_SIZE_MAX (4u << 20)
#define DOCKERIGNORE_LINE_MAX (64u << 10)
#define DOCKERFILE_SIZE_MAX   (4u << 20)

/* The human half of a failure: the function returns a negative errno and the
 * lowest level that knows the detail writes it here, once. */
struct kiln_err {
	int code;
	char msg[1024];
};

#endif
