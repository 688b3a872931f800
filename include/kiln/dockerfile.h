/* dockerfile.h (plan): the images a Dockerfile builds FROM, read the way Docker reads
 * them: parser directives (escape), line continuations, comments, flags such
 * as --platform=, "AS name" stages, and $VAR / ${VAR} / ${VAR:-x} / ${VAR:+x}
 * from the ARGs declared before the first FROM (build args override their
 * defaults, as `docker build --build-arg` does; undeclared build args are not
 * visible to FROM, as in Docker). */
#ifndef KILN_DOCKERFILE_H
#define KILN_DOCKERFILE_H

#include "kiln/common.h"
#include "kiln/manifest.h"

struct dockerfile_from {
	char *ref;     /* normalised: ":latest" added when there is no tag or digest */
	unsigned line; /* 1-based line of the FROM instruction */
};

struct dockerfile_froms {
	struct dockerfile_from *v;
	size_t n;
};

/* Only external images are returned: "scratch" and earlier stages are not.
 * Never fails on content (Docker's own parser reports real syntax errors at
 * build time); -EFBIG when the file is over DOCKERFILE_SIZE_MAX. */
int dockerfile_froms(const char *data, size_t len, const struct kv *build_args, size_t nbuild_args,
		     struct dockerfile_froms *ret, struct kiln_err *err);
void dockerfile_froms_done(struct dockerfile_froms *f);

/* "img" -> "img:latest"; "host:5000/img" -> "host:5000/img:latest"; a tag or
 * digest is kept. The caller frees the result. */
char *dockerfile_normalize_ref(const char *ref);

#endif
