/* repack.c (fetch): folds a mirror's packs and loose objects into one pack,
 * leaving alone a pack that holds twice what the others do.
 * Every fetch adds a pack; an object lookup tries the packs one after
 * another, and libgit2 keeps at most REPO_PACK_FILES_MAX of them open over
 * all mirrors, so a mirror that only grows gets slower with every fetch.
 * Blocking: a worker thread, on a mirror nothing else writes to meanwhile.
 *
 * Order, so that a crash anywhere leaves a usable mirror: list what is
 * there; write the new pack and its index (libgit2's indexer renames them
 * into place); fsync both and the directory; only then remove the old packs,
 * each index before its pack (git and libgit2 find a pack by its index, so a
 * pack whose index is gone is merely unused), and the loose objects. A crash
 * before the removals leaves every object twice, which git accepts. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>
#include <git2/sys/odb_backend.h>

#include "kiln/buf.h"
#include "kiln/err.h"
#include "kiln/fsio.h"
#include "kiln/repack.h"
#include "kiln/repo.h"

/* libgit2's indexer writes each piece it is given through a fresh mmap of
 * the pack file, and git_packbuilder_write gives it every object's header
 * and data apart: tens of thousands of map/unmap pairs (18 s for 10,000
 * objects on a 2-core VM). Given 1 MiB at a time, the same pack takes under
 * a second. */
#define REPACK_CHUNK ((size_t)1 << 20)

/* Files that belong to a pack, removed with it; the index goes first. */
static const char *const pack_suffixes[] = {".idx",    ".pack",	  ".rev",
					    ".bitmap", ".mtimes", ".promisor"};

static bool ends_with(const char *s, const char *suffix, size_t *ret_stem)
{
	size_t n = strlen(s), k = strlen(suffix);

	if (n < k || strcmp(s + n - k, suffix) != 0)
		return false;
	*ret_stem = n - k;
	return true;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* The stems ("pack-<hex>") of the packs in dir that have no .keep file; a
 * .keep asks git, and so us, to leave that pack alone. */
static int scan_packs(const char *dir, struct strv *ret_stems, unsigned *ret_n,
		      struct kiln_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	if (d == NULL) {
		if (errno == ENOENT) {
			*ret_n = 0;
			return 0;
		}
		return kiln_err_set(err, -errno, "cannot read '%s': %s", dir, strerror(errno));
	}
	while ((e = readdir(d)) != NULL) {
		size_t stem;
		char *keep;
		bool kept;

		if (strncmp(e->d_name, "pack-", 5) != 0 || !ends_with(e->d_name, ".pack", &stem))
			continue;
		keep = xasprintf("%s/%.*s.keep", dir, (int)stem, e->d_name);
		kept = exists(keep);
		free(keep);
		if (kept)
			continue;
		n++;
		if (ret_stems)
			strv_push(ret_stems, xstrndup(e->d_name, stem));
	}
	closedir(d);
	*ret_n = n;
	return 0;
}

/* Loose objects as "xx/yyyy…" under objects/. */
static void scan_loose(const char *objects, struct strv *ret)
{
	for (unsigned i = 0; i < 256; i++) {
		char *dir = xasprintf("%s/%02x", objects, i);
		DIR *d = opendir(dir);
		struct dirent *e;

		while (d && (e = readdir(d)) != NULL) {
			if (strlen(e->d_name) == GIT_OID_HEXSZ - 2 &&
			    hex_is_lower(e->d_name, GIT_OID_HEXSZ - 2))
				strv_push(ret, xasprintf("%02x/%s", i, e->d_name));
		}
		if (d)
			closedir(d);
		free(dir);
	}
}

/* The new pack and its index on disk, and their names in the directory. */
static int make_durable(const char *pack_dir, const char *name, struct kiln_err *err)
{
	char *pack = xasprintf("%s/pack-%s.pack", pack_dir, name);
	char *idx = xasprintf("%s/pack-%s.idx", pack_dir, name);
	int r = fsio_sync_path(pack, 0, err);

	if (r == 0)
		r = fsio_sync_path(idx, 0, err);
	if (r == 0)
		r = fsio_sync_path(pack_dir, O_DIRECTORY, err);
	free(pack);
	free(idx);
	return r;
}

/* Removes what the new pack replaces. Keeps going past a failure (what
 * stays is a duplicate, harmless) and reports the first. */
static int remove_replaced(const char *objects, const char *pack_dir, const struct strv *stems,
			   const char *keep_stem, const struct strv *loose, struct kiln_err *err)
{
	int r = 0;

	for (size_t i = 0; i < stems->n; i++) {
		if (strcmp(stems->v[i], keep_stem) == 0)
			continue; /* the same objects, packed the same way: the new pack */
		for (size_t k = 0; k < ARRAY_SIZE(pack_suffixes); k++) {
			char *f = xasprintf("%s/%s%s", pack_dir, stems->v[i], pack_suffixes[k]);
			if (unlink(f) < 0 && errno != ENOENT && r == 0)
				r = kiln_err_set(err, -errno, "cannot remove '%s': %s", f,
						 strerror(errno));
			free(f);
		}
	}
	for (size_t i = 0; i < loose->n; i++) {
		char *f = xasprintf("%s/%s", objects, loose->v[i]);
		if (unlink(f) < 0 && errno != ENOENT && r == 0)
			r = kiln_err_set(err, -errno, "cannot remove '%s': %s", f, strerror(errno));
		free(f);
	}
	for (unsigned i = 0; i < 256 && loose->n > 0; i++) {
		char *dir = xasprintf("%s/%02x", objects, i);
		rmdir(dir); /* only if empty; git recreates it as needed */
		free(dir);
	}
	return r;
}

struct pack_sink {
	git_indexer *ix;
	git_indexer_progress stats;
	char *buf;
	size_t len;
};

static int sink_flush(struct pack_sink *s)
{
	int r = s->len ? git_indexer_append(s->ix, s->buf, s->len, &s->stats) : 0;

	s->len = 0;
	return r;
}

static int sink_cb(void *data, size_t size, void *payload)
{
	struct pack_sink *s = payload;

	if (s->len + size > REPACK_CHUNK && sink_flush(s) < 0)
		return -1;
	if (size > REPACK_CHUNK)
		return git_indexer_append(s->ix, data, size, &s->stats);
	memcpy(s->buf + s->len, data, size);
	s->len += size;
	return 0;
}

/* The packbuilder's pack through an indexer into pack_dir; *ret_name is the
 * new pack's name (the hex after "pack-"), the caller frees it. */
static int write_pack(git_packbuilder *pb, git_odb *odb, const char *pack_dir, char **ret_name,
		      struct kiln_err *err)
{
	struct pack_sink s = {0};
	git_indexer_options opts;
	int r = 0;

	git_indexer_options_init(&opts, GIT_INDEXER_OPTIONS_VERSION);
	if (git_indexer_new(&s.ix, pack_dir, 0, odb, &opts) < 0)
		return kiln_err_git(err, -EIO, "cannot write a pack into '%s'", pack_dir);
	s.buf = xmalloc(REPACK_CHUNK);
	if (git_packbuilder_foreach(pb, sink_cb, &s) < 0 || sink_flush(&s) < 0 ||
	    git_indexer_commit(s.ix, &s.stats) < 0)
		r = kiln_err_git(err, -EIO, "cannot write a pack into '%s'", pack_dir);
	else
		*ret_name = xstrdup(git_indexer_name(s.ix));
	free(s.buf);
	git_indexer_free(s.ix);
	return r;
}

static int insert_cb(const git_oid *id, void *payload)
{
	return git_packbuilder_insert(payload, id, NULL);
}

static bool has_index(const char *pack_dir, const char *stem)
{
	char *f = xasprintf("%s/%s.idx", pack_dir, stem);
	bool r = exists(f);

	free(f);
	return r;
}

/* 0 for a pack without its index (unused: a crash between the indexer's
 * renames), so that it is never the one kept */
static uint64_t pack_size(const char *pack_dir, const char *stem)
{
	char *f = xasprintf("%s/%s.pack", pack_dir, stem);
	struct stat st;
	uint64_t n = has_index(pack_dir, stem) && stat(f, &st) == 0 ? (uint64_t)st.st_size : 0;

	free(f);
	return n;
}

/* The pack to leave as it is: the largest, when it holds at least twice
 * what the others hold together (the first fetch's, beside those of the
 * fetches since). Folding only the others costs what they hold; folding it
 * too cost a delta search over the whole repository every repack_packs
 * fetches (22 s and 158 MiB at 10,000 images, every 5 minutes under a push
 * every 10 s). Once the others reach half of it, everything is folded.
 * Moves it out of stems; NULL: fold everything. */
static char *base_to_keep(const char *pack_dir, struct strv *stems)
{
	uint64_t best = 0, rest = 0;
	size_t at = 0;
	char *stem;

	for (size_t i = 0; i < stems->n; i++) {
		uint64_t n = pack_size(pack_dir, stems->v[i]);
		if (n > best) {
			rest += best;
			best = n;
			at = i;
		} else {
			rest += n;
		}
	}
	if (stems->n < 2 || best < 2 * rest)
		return NULL;
	stem = stems->v[at];
	stems->v[at] = stems->v[--stems->n];
	return stem;
}

/* The objects of the packs in stems and the loose ones, into pb. */
static int insert_folded(git_packbuilder *pb, const char *pack_dir, const struct strv *stems,
			 const struct strv *loose, struct kiln_err *err)
{
	int r = 0;

	for (size_t i = 0; i < stems->n && r == 0; i++) {
		char *idx = xasprintf("%s/%s.idx", pack_dir, stems->v[i]);
		git_odb_backend *one = NULL;
		if (!exists(idx))
			; /* unused, removed with the others */
		else if (git_odb_backend_one_pack(&one, idx) < 0 ||
			 one->foreach (one, insert_cb, pb) < 0)
			r = kiln_err_git(err, -EIO, "cannot list the objects of '%s'", idx);
		if (one)
			one->free(one);
		free(idx);
	}
	for (size_t i = 0; i < loose->n && r == 0; i++) {
		char hex[GIT_OID_HEXSZ + 1];
		git_oid id;
		/* "xx/yyyy..." */
		snprintf(hex, sizeof(hex), "%.2s%s", loose->v[i], loose->v[i] + 3);
		if (git_oid_fromstr(&id, hex) < 0 || git_packbuilder_insert(pb, &id, NULL) < 0)
			r = kiln_err_git(err, -EIO, "cannot pack loose object %s", hex);
	}
	return r;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int repack_count(const char *path, unsigned *ret)
{
	struct kiln_err err = {0};
	char *dir = xasprintf("%s/objects/pack", path);
	int r = scan_packs(dir, NULL, ret, &err);

	free(dir);
	return r;
}

int repack_mirror(const char *path, struct repack_result *ret, struct kiln_err *err)
{
	uint64_t t0 = mono_ms();
	char *objects = xasprintf("%s/objects", path);
	char *pack_dir = xasprintf("%s/pack", objects);
	struct strv stems = {0}, loose = {0};
	struct repack_result res = {0};
	git_repository *repo = NULL;
	git_packbuilder *pb = NULL;
	git_odb *odb = NULL;
	char *name = NULL, *stem = NULL, *base = NULL;
	int r;

	r = scan_packs(pack_dir, &stems, &res.packs_before, err);
	if (r < 0)
		goto out;
	scan_loose(objects, &loose);
	base = base_to_keep(pack_dir, &stems);
	if (stems.n <= 1 && loose.n == 0) {
		res.packs_after = res.packs_before;
		goto done;
	}
	r = repo_open_at(path, &repo, err);
	if (r < 0)
		goto out;
	/* Every object the folded packs and the loose objects hold (with no
	 * pack kept: every object the database holds), not only those reachable from the
	 * branches: kilnd plans from each branch's last-seen commit (in the
	 * state database), and queued builds name commits too; after a force
	 * push those may be reachable from no ref. Keeping all costs the
	 * space of force-pushed-away history, nothing more; a walk from the
	 * refs plus those commits would have to know every reader of the
	 * mirror. Objects come without path names: libgit2's delta search
	 * then pairs objects by type and size only, a somewhat larger pack. */
	if (git_repository_odb(&odb, repo) < 0 || git_packbuilder_new(&pb, repo) < 0) {
		r = kiln_err_git(err, -EIO, "cannot start a pack for '%s'", path);
		goto out;
	}
	git_packbuilder_set_threads(pb, 1); /* the worker pool is shared by every mirror */
	if (base) {
		r = insert_folded(pb, pack_dir, &stems, &loose, err);
		if (r < 0)
			goto out;
	} else if (git_odb_foreach(odb, insert_cb, pb) < 0) {
		r = kiln_err_git(err, -EIO, "cannot list the objects of '%s'", path);
		goto out;
	}
	res.objects = git_packbuilder_object_count(pb);
	r = write_pack(pb, odb, pack_dir, &name, err);
	if (r < 0)
		goto out;
	r = make_durable(pack_dir, name, err);
	if (r < 0)
		goto out;
	/* The old packs stay mapped by this handle until it is freed; Linux
	 * keeps an unlinked file readable, but free it first all the same. */
	stem = xasprintf("pack-%s", name);
	git_packbuilder_free(pb);
	pb = NULL;
	git_odb_free(odb);
	odb = NULL;
	repo = repo_close(repo);
	r = remove_replaced(objects, pack_dir, &stems, stem, &loose, err);
	if (r < 0)
		goto out;
	res.loose_removed = loose.n;
	r = scan_packs(pack_dir, NULL, &res.packs_after, err);
	if (r < 0)
		goto out;
done:
	res.ms = mono_ms() - t0;
	*ret = res;
out:
	git_packbuilder_free(pb);
	git_odb_free(odb);
	repo_close(repo);
	free(name);
	free(stem);
	free(base);
	strv_done(&stems);
	strv_done(&loose);
	free(pack_dir);
	free(objects);
	return r;
}
