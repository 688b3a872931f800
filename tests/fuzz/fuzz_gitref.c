/* fuzz_gitref.c (plan): repositories made of the input, read by the front's
 * fast path (gitref.c) and by libgit2. The input is up to eight parts
 * separated by "\n@@\n": the two revisions (FROM TO), HEAD, packed-refs,
 * config, refs/heads/main, a pack's .idx, the .pack, and a loose object (its
 * id in hex, then its content, deflated here so that mutations reach the
 * object's parser); an empty part is a file that is not there. No input may
 * crash or leak; and a commit gitref names, libgit2 must name too (what
 * kiln-changes.so asks: open from the directory, git_revparse_single, peel
 * to a commit). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>
#include <zlib.h>

#include "kiln/gitref.h"
#include "kiln/repo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libgit2 1.5 leaks a PCRE2 match block each time it opens a repository of
 * format version 1 (check_extensions' regular expression): the oracle's
 * leak, not gitref's */
const char *__lsan_default_suppressions(void)
{
	return "leak:libpcre2-8.so\n";
}

#define PARTS 8

static char top[64], gitdir[128];

static const char *const files[PARTS] = {
    NULL,
    "HEAD",
    "packed-refs",
    "config",
    "refs/heads/main",
    "objects/pack/pack-f.idx",
    "objects/pack/pack-f.pack",
    NULL,
};

static void once(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	char p[256];

	repo_global_init(REPO_ROLE_CLI);
	snprintf(top, sizeof(top), "%s/kiln-fuzz-gitref.XXXXXX", base);
	if (mkdtemp(top) == NULL)
		abort();
	snprintf(gitdir, sizeof(gitdir), "%s/.git", top);
	/* the caller's ~/.gitconfig is no part of the input */
	setenv("HOME", top, 1);
	unsetenv("XDG_CONFIG_HOME");
	mkdir(gitdir, 0755);
	snprintf(p, sizeof(p), "%s/refs", gitdir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/refs/heads", gitdir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/objects", gitdir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/objects/pack", gitdir);
	mkdir(p, 0755);
}

static void put(const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", gitdir, name);
	if (n == 0) {
		unlink(path);
		return;
	}
	f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0)
		abort();
}

static bool is_hex40(const char *s, size_t n)
{
	if (n < 40)
		return false;
	for (size_t i = 0; i < 40; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* a loose object: 40 hex digits, then its content */
static void put_loose(char *loose, const char *p, size_t n)
{
	char name[64];
	unsigned char *z;
	uLongf zn;

	if (loose[0]) { /* the last run's */
		put(loose, NULL, 0);
		loose[0] = '\0';
	}
	if (!is_hex40(p, n))
		return;
	snprintf(name, sizeof(name), "objects/%.2s", p);
	{
		char dir[512];
		snprintf(dir, sizeof(dir), "%s/%s", gitdir, name);
		mkdir(dir, 0755);
	}
	snprintf(loose, 64, "objects/%.2s/%.38s", p, p + 2);
	zn = compressBound((uLong)(n - 40));
	z = malloc(zn + 1);
	if (z == NULL || compress(z, &zn, (const Bytef *)p + 40, (uLong)(n - 40)) != Z_OK)
		abort();
	put(loose, z, zn);
	free(z);
}

/* libgit2's commit for rev, as repo_commit finds it; -1 when it finds none */
static int theirs(const char *rev, char id[41])
{
	git_repository *repo = NULL;
	git_object *obj = NULL, *peeled = NULL;
	int r = -1;

	if (git_repository_open_ext(&repo, top, 0, NULL) == 0 &&
	    git_revparse_single(&obj, repo, rev) == 0 &&
	    git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT) == 0) {
		git_oid_tostr(id, 41, git_object_id(peeled));
		r = 0;
	}
	git_object_free(peeled);
	git_object_free(obj);
	git_repository_free(repo);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char loose[64];
	const char *part[PARTS] = {0}, *s = (const char *)data, *end = s + size;
	size_t len[PARTS] = {0};
	char revs[2][128] = {"HEAD", "HEAD"};
	struct gitref *g = NULL;
	struct kiln_err err = {0};

	if (top[0] == '\0')
		once();
	for (int i = 0; i < PARTS && s <= end; i++) {
		const char *sep = memmem(s, (size_t)(end - s), "\n@@\n", 4);
		part[i] = s;
		len[i] = sep ? (size_t)(sep - s) : (size_t)(end - s);
		s += len[i] + 4;
	}
	if (len[0] > 0 && len[0] < 2 * sizeof(revs[0])) {
		char buf[256];
		memcpy(buf, part[0], len[0]);
		buf[len[0]] = '\0';
		if (sscanf(buf, "%127s %127s", revs[0], revs[1]) < 1)
			strcpy(revs[0], "HEAD");
	}
	for (int i = 1; i < PARTS - 1; i++)
		put(files[i], part[i], len[i]);
	put_loose(loose, part[PARTS - 1] ? part[PARTS - 1] : "", len[PARTS - 1]);
	if (gitref_open(top, &g, &err) == 0) {
		for (int k = 0; k < 2; k++) {
			char id[41], tree[41], lid[41] = "nothing";

			if (gitref_commit(g, revs[k], id, &err) < 0)
				continue;
			if (theirs(revs[k], lid) < 0 || strcmp(id, lid) != 0) {
				const git_error *ge = git_error_last();
				fprintf(stderr, "gitref named %s for '%s', libgit2 %s (%s)\n", id,
					revs[k], lid, ge ? ge->message : "no error");
				abort();
			}
			gitref_tree(g, id, tree, &err);
		}
	}
	gitref_free(g);
	return 0;
}
