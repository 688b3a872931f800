/* fuzz_packindex.c (fetch): packs as a remote may send them, through kiln's
 * indexer in two pieces. The input's first byte is no part of the pack (a
 * pack's own first byte is 'P', even): it says where to split and, when odd,
 * that the trailing checksum is made right first, so that mutated packs
 * reach delta resolution instead of failing the checksum. No input may
 * crash, leak or leave a file behind; and a pack kiln accepts, libgit2's
 * indexer must accept too, naming it the same (the checksum both verify). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "kiln/packindex.h"
#include "kiln/repo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char ours[64], theirs[64];

/* empties d; returns how many files it held */
static unsigned clear(const char *d)
{
	DIR *dd = opendir(d);
	struct dirent *e;
	unsigned n = 0;

	if (dd == NULL)
		abort();
	while ((e = readdir(dd)) != NULL) {
		char path[512];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
		unlink(path);
		n++;
	}
	closedir(dd);
	return n;
}

static void once(void)
{
	/* tmpfs where there is one: every commit syncs its files */
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	repo_global_init(REPO_ROLE_DAEMON);
	snprintf(ours, sizeof(ours), "%s/kiln-fuzz-pack.XXXXXX", base);
	snprintf(theirs, sizeof(theirs), "%s/kiln-fuzz-pack.XXXXXX", base);
	if (mkdtemp(ours) == NULL || mkdtemp(theirs) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct packindex *pi;
	struct kiln_err err = {0};
	char name[41];
	unsigned ctl = size > 0 ? data[0] : 0;
	size_t cut;
	int r;

	uint8_t *fixed = NULL;

	if (ours[0] == '\0')
		once();
	if (size > 0) {
		data++;
		size--;
	}
	cut = ctl % (size + 1);
	if (size >= 32 && ctl & 1) {
		unsigned n = 20;
		fixed = malloc(size);
		memcpy(fixed, data, size);
		EVP_Digest(fixed, size - 20, fixed + size - 20, &n, EVP_sha1(), NULL);
		data = fixed;
	}
	if (packindex_new(ours, &pi, &err) < 0)
		abort();
	r = packindex_append(pi, data, cut, NULL, &err);
	if (r == 0)
		r = packindex_append(pi, data + cut, size - cut, NULL, &err);
	if (r == 0)
		r = packindex_commit(pi, NULL, name, &err);
	packindex_free(pi);
	if (r < 0) {
		if (err.msg[0] == '\0' || clear(ours) != 0)
			abort(); /* no message, or a file left behind */
		free(fixed);
		return 0;
	}
	if (clear(ours) != 2) /* the pack and its index */
		abort();
	{
		git_indexer *idx;
		git_indexer_progress st = {0};
		if (git_indexer_new(&idx, theirs, 0, NULL, NULL) < 0 ||
		    git_indexer_append(idx, data, size, &st) < 0 ||
		    git_indexer_commit(idx, &st) < 0 || strcmp(git_indexer_name(idx), name) != 0)
			abort();
		git_indexer_free(idx);
		clear(theirs);
	}
	free(fixed);
	return 0;
}
