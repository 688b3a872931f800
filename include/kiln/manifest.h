/* manifest.h (input): an image folder's manifest.yaml, parsed and checked. */
#ifndef KILN_MANIFEST_H
#define KILN_MANIFEST_H

#include <stddef.h>

#include "kiln/err.h"

struct kv {
	char *key, *value;
};

struct manifest {
	char *name;	/* repository path, e.g. "tools/jq" */
	char *version;	/* the tag built from this folder */
	char *registry; /* host[:port][/namespace] */
	char **tags;	/* extra tags */
	size_t ntags;
	char *dockerfile; /* repository-relative, normalised */
	char *context;	  /* repository-relative directory, "" for the root */
	struct kv *build_args;
	size_t nbuild_args;
	char *target;	/* NULL when absent */
	char *platform; /* NULL when absent */
	struct kv *labels;
	size_t nlabels;
	char *builder; /* auto | buildkit | classic; NULL: the daemon's builds.builder */
	char *network; /* default | none | host; NULL: the daemon's builds.network */
	char **secrets; /* ids of the repository's build secrets this build may see */
	size_t nsecrets;
	char **test_command; /* NULL when there is no smoke test */
	size_t ntest_command;
};

/* Parses a manifest read from `file` (shown in messages) of the image folder
 * `dir` ("" for the repository root). Every problem found is added to diags;
 * on any, returns -EINVAL and leaves *ret zeroed. */
int manifest_parse(const char *data, size_t len, const char *file, const char *dir,
		   struct manifest *ret, struct kiln_diags *diags);
void manifest_done(struct manifest *m);

/* "<registry>/<name>:<tag>"; the caller frees it. */
char *manifest_ref(const struct manifest *m, const char *tag);

/* The grammar checks, exposed for tests and for the config. */
bool manifest_valid_name(const char *s);
bool manifest_valid_tag(const char *s);
bool manifest_valid_registry(const char *s);
bool manifest_valid_builder(const char *s); /* auto, buildkit, classic */
bool manifest_valid_network(const char *s); /* default, none, host */
bool manifest_valid_secret_id(const char *s); /* [A-Za-z0-9._-]+, at most 128 characters */
/* A manifest file name (--manifest, repositories[].manifest): no '/', not . or .. */
bool manifest_valid_file_name(const char *s);

#endif
