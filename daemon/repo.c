/* repo.c (fetch): libgit2 for everything kiln reads from git: open a repository,
 * resolve revisions, read blobs and trees, and keep the bare mirrors current
 * (ls-remote tip check, fetch). Blocking: worker threads and the CLI only. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "kiln/buf.h"

#include "kiln/err.h"
#include "kiln/jsonscan.h"
#include "kiln/map.h"
#include "kiln/packindex.h"
#include "kiln/path.h"
#include "kiln/repo.h"

void repo_global_init(enum repo_role role)
{
	git_libgit2_init();
	/* Change detection reads each tree once in its walk; the few it reads
	 * again go through struct repo_trees. libgit2's object cache would only
	 * keep every tree of a large diff alive (and faulting memory in). */
	git_libgit2_opts(GIT_OPT_ENABLE_CACHING, 0);
	/* Objects come from our own mirrors and the user's repository; git itself
	 * does not rehash every object it reads either. */
	git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
	/* libgit2 maps pack files in windows of 1 GiB, up to 8 GiB at once on
	 * 64-bit hosts; every mapped page it touches counts in our RSS. kilnd
	 * stays up: small windows under a small limit keep a 1 GiB fetch or
	 * build context from growing it by that size, at the cost of more mmap
	 * calls. The CLI exits after one walk: in a pack repacked with deep
	 * delta chains (every clone) the walk jumps from an object to its bases
	 * all over the file, and 4 MiB windows under a 16 MiB limit were mapped
	 * and unmapped thousands of times (page faults and munmap were the
	 * profile). Bigger windows are mapped once; only the pages touched count
	 * in the RSS, so the limit bounds it for packs larger than the limit. */
	if (role == REPO_ROLE_CLI) {
		git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, (size_t)REPO_CLI_WINDOW);
		git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, (size_t)REPO_CLI_MAPPED);
	} else {
		git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, (size_t)4 << 20);
		git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, (size_t)16 << 20);
	}
	/* libgit2 keeps every pack file it read open (no limit by default): a
	 * mirror with many packs would take file descriptors without bound, and
	 * kilnd's reserve of them (kilnd.c, FD_RESERVE) counts on this cap. */
	git_libgit2_opts(GIT_OPT_SET_MWINDOW_FILE_LIMIT, (size_t)REPO_PACK_FILES_MAX);
}

static int open_flags(const char *path, unsigned flags, git_repository **ret, struct kiln_err *err)
{
	git_repository *repo = NULL;
	int r = git_repository_open_ext(&repo, path, flags, NULL);

	if (r == GIT_ENOTFOUND)
		return kiln_err_set(err, -ENOENT, "not a git repository: '%s'", path);
	if (r == GIT_EOWNER)
		return kiln_err_set(err, -EPERM,
				    "repository '%s' is owned by another user; if it is trusted, "
				    "add it to git's safe.directory",
				    path);
	if (r < 0)
		return kiln_err_git(err, -EIO, "cannot open repository '%s'", path);
	*ret = repo;
	return 0;
}

int repo_open(const char *path, git_repository **ret, struct kiln_err *err)
{
	return open_flags(path, 0, ret, err);
}

int repo_open_at(const char *path, git_repository **ret, struct kiln_err *err)
{
	return open_flags(path, GIT_REPOSITORY_OPEN_NO_SEARCH, ret, err);
}

int repo_commit(git_repository *repo, const char *rev, git_commit **ret, struct kiln_err *err)
{
	git_object *obj = NULL, *peeled = NULL;
	int r;

	r = git_revparse_single(&obj, repo, rev);
	if (r == GIT_ENOTFOUND || r == GIT_EAMBIGUOUS || r == GIT_EINVALIDSPEC)
		return kiln_err_set(err, -ENOENT, "unknown revision '%s'%s", rev,
				    r == GIT_EAMBIGUOUS ? " (ambiguous)" : "");
	if (r < 0)
		return kiln_err_git(err, -EIO, "cannot resolve revision '%s'", rev);
	r = git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT);
	git_object_free(obj);
	if (r < 0)
		return kiln_err_set(err, -ENOENT, "revision '%s' does not name a commit", rev);
	*ret = (git_commit *)peeled;
	return 0;
}

char *repo_commit_summary(git_commit *c)
{
	const unsigned char *s = (const unsigned char *)git_commit_summary(c), *end;
	struct buf b = {0};

	if (s == NULL)
		return NULL;
	end = s + strlen((const char *)s);
	buf_puts(&b, "");
	while (s < end && b.len < REPO_SUMMARY_MAX) {
		size_t n = *s >= 0x80 ? jsonscan_utf8_len(s, end) : 1;
		if (n == 0) {
			/* another encoding (git's i18n.commitEncoding): JSON
			 * and the pages need UTF-8 */
			if (b.len + 3 > REPO_SUMMARY_MAX)
				break;
			buf_puts(&b, "\xEF\xBF\xBD");
			s++;
			continue;
		}
		if (b.len + n > REPO_SUMMARY_MAX)
			break; /* not inside a character */
		/* shown on terminals and pages: no control character gets there
		 * (C1's, U+0080 to U+009F, included: U+009B is CSI to some) */
		if ((n == 1 && (*s < 0x20 || *s == 0x7f)) || (n == 2 && *s == 0xC2 && s[1] < 0xA0))
			buf_putc(&b, ' ');
		else
			buf_append(&b, s, n);
		s += n;
	}
	return b.p;
}

char *repo_summary_of(git_repository *repo, const char *sha)
{
	git_commit *c = NULL;
	git_oid id;
	char *s;

	if (git_oid_fromstr(&id, sha) < 0 || git_commit_lookup(&c, repo, &id) < 0)
		return NULL;
	s = repo_commit_summary(c);
	git_commit_free(c);
	return s;
}

int repo_blob(git_repository *repo, const git_oid *id, size_t max, git_blob **ret,
	      struct kiln_err *err)
{
	git_blob *b = NULL;
	char hex[GIT_OID_HEXSZ + 1];

	if (git_blob_lookup(&b, repo, id) < 0)
		return kiln_err_git(err, -EIO, "cannot read blob %s",
				    git_oid_tostr(hex, sizeof(hex), id));
	if (git_blob_rawsize(b) > (git_object_size_t)max) {
		git_blob_free(b);
		return kiln_err_set(err, -EFBIG, "blob %s is larger than %zu bytes",
				    git_oid_tostr(hex, sizeof(hex), id), max);
	}
	*ret = b;
	return 0;
}

int repo_entry(git_tree *tree, const char *path, git_tree_entry **ret)
{
	int r;

	if (path[0] == '\0')
		return -EISDIR;
	r = git_tree_entry_bypath(ret, tree, path);
	if (r == GIT_ENOTFOUND)
		return -ENOENT;
	return r < 0 ? -EIO : 0; /* a subtree git cannot read is no "not found" */
}

/* libgit2 asks again after every rejection; one try per kind is enough. */
struct cred_state {
	const struct repo_creds *cr;
	unsigned tried; /* bit per credential type */
};

static int cred_cb(git_credential **out, const char *url, const char *username_from_url,
		   unsigned int allowed, void *payload)
{
	struct cred_state *cs = payload;
	const struct repo_creds *cr = cs->cr;

	(void)url;
	if (cr == NULL)
		return GIT_PASSTHROUGH;
	if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && cr->username && cr->password &&
	    !(cs->tried & GIT_CREDENTIAL_USERPASS_PLAINTEXT)) {
		cs->tried |= GIT_CREDENTIAL_USERPASS_PLAINTEXT;
		return git_credential_userpass_plaintext_new(out, cr->username, cr->password);
	}
	if ((allowed & GIT_CREDENTIAL_SSH_KEY) && cr->ssh_key_file &&
	    !(cs->tried & GIT_CREDENTIAL_SSH_KEY)) {
		cs->tried |= GIT_CREDENTIAL_SSH_KEY;
		return git_credential_ssh_key_new(out,
						  cr->username	      ? cr->username
						  : username_from_url ? username_from_url
								      : "git",
						  NULL, cr->ssh_key_file, NULL);
	}
	if ((allowed & GIT_CREDENTIAL_USERNAME) && !(cs->tried & GIT_CREDENTIAL_USERNAME)) {
		cs->tried |= GIT_CREDENTIAL_USERNAME;
		return git_credential_username_new(out, cr->username	    ? cr->username
							: username_from_url ? username_from_url
									    : "git");
	}
	git_error_set_str(GIT_ERROR_NET, "authentication failed (no accepted credentials left)");
	return GIT_EAUTH;
}

int repo_mirror_open(const char *path, git_repository **ret, struct kiln_err *err)
{
	git_repository *repo = NULL;
	int r = git_repository_open_bare(&repo, path);

	if (r == GIT_ENOTFOUND) {
		git_repository_init_options opts;
		git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
		opts.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
		r = git_repository_init_ext(&repo, path, &opts);
	}
	if (r < 0)
		return kiln_err_git(err, -EIO, "cannot open mirror '%s'", path);
	*ret = repo;
	return 0;
}

/* Removes dir's *.lock files, and with recurse those of its subdirectories. */
static int unlock_dir(const char *dir, bool recurse, unsigned *n, struct kiln_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int r = 0;

	if (d == NULL)
		return errno == ENOENT ? 0
				       : kiln_err_set(err, -errno, "cannot read '%s': %s", dir,
						      strerror(errno));
	while (r == 0 && (e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		char *path;
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		path = xasprintf("%s/%s", dir, e->d_name);
		if (lstat(path, &st) < 0)
			r = errno == ENOENT ? 0
					    : kiln_err_set(err, -errno, "cannot stat '%s': %s",
							   path, strerror(errno));
		else if (S_ISDIR(st.st_mode) && recurse)
			r = unlock_dir(path, true, n, err);
		else if (S_ISREG(st.st_mode) && len > 5 &&
			 strcmp(e->d_name + len - 5, ".lock") == 0) {
			if (unlink(path) < 0)
				r = kiln_err_set(err, -errno, "cannot remove '%s': %s", path,
						 strerror(errno));
			else
				(*n)++;
		}
		free(path);
	}
	closedir(d);
	return r;
}

int repo_mirror_unlock(const char *path, unsigned *ret_removed, struct kiln_err *err)
{
	char *refs = xasprintf("%s/refs", path);
	unsigned n = 0;
	int r = unlock_dir(path, false, &n, err); /* packed-refs.lock, HEAD.lock, config.lock */

	if (r == 0)
		r = unlock_dir(refs, true, &n, err);
	free(refs);
	*ret_removed = n; /* those removed before a failure are gone too */
	return r;
}

/* Remotes are anonymous (the URL comes from kilnd.yaml, not the mirror's
 * config): libgit2 1.5's named-remote lookup matches config keys with PCRE2
 * and leaks the match data on every miss, tens of KiB per poll. */
int repo_remote_heads(const char *url, const struct repo_creds *cr, const char *const *branches,
		      size_t n, git_oid *ret_oids, bool *ret_found, struct kiln_err *err)
{
	git_remote *remote = NULL;
	git_remote_callbacks cbs;
	struct cred_state cs = {cr, 0};
	const git_remote_head **heads = NULL;
	size_t nheads = 0;
	int r = 0;

	git_remote_init_callbacks(&cbs, GIT_REMOTE_CALLBACKS_VERSION);
	cbs.credentials = cred_cb;
	cbs.payload = &cs;
	if (git_remote_create_detached(&remote, url) < 0)
		return kiln_err_git(err, -EINVAL, "bad remote URL '%s'", url);
	if (git_remote_connect(remote, GIT_DIRECTION_FETCH, &cbs, NULL, NULL) < 0 ||
	    git_remote_ls(&heads, &nheads, remote) < 0) {
		r = kiln_err_git(err, -EIO, "cannot list '%s'", url);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ret_found[i] = false;
		for (size_t k = 0; k < nheads; k++) {
			const char *name = heads[k]->name;
			if (strncmp(name, "refs/heads/", 11) == 0 &&
			    strcmp(name + 11, branches[i]) == 0) {
				git_oid_cpy(&ret_oids[i], &heads[k]->oid);
				ret_found[i] = true;
				break;
			}
		}
	}
out:
	git_remote_disconnect(remote);
	git_remote_free(remote);
	return r;
}

/* No pack yet: the first fetch into a new mirror (kilnd writes no loose
 * objects into mirrors). A pack without its index (a run killed between
 * the two renames) is unused and does not count. */
static bool has_packs(git_repository *repo)
{
	char *dir = xasprintf("%sobjects/pack", git_repository_path(repo));
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;

	if (d == NULL) {
		free(dir);
		return errno != ENOENT; /* unknown: as if it had some */
	}
	while (!found && (e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len > 5 && strcmp(e->d_name + len - 5, ".pack") == 0) {
			char *idx = xasprintf("%s/%.*s.idx", dir, (int)len - 5, e->d_name);
			found = access(idx, F_OK) == 0;
			free(idx);
		}
	}
	closedir(d);
	free(dir);
	return found;
}

int repo_fetch(git_repository *mirror, const char *url, const struct repo_creds *cr,
	       const char *const *branches, size_t n, struct kiln_err *err)
{
	git_remote *remote = NULL;
	git_fetch_options opts;
	git_remote_create_options ropts;
	struct cred_state cs = {cr, 0};
	struct strv specs = {0};
	git_strarray arr;
	int r = 0;

	git_fetch_options_init(&opts, GIT_FETCH_OPTIONS_VERSION);
	opts.callbacks.credentials = cred_cb;
	opts.callbacks.payload = &cs;
	opts.prune = GIT_FETCH_NO_PRUNE;
	opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	opts.update_fetchhead = 0;
	for (size_t i = 0; i < n; i++)
		strv_push(&specs,
			  xasprintf("+refs/heads/%s:refs/heads/%s", branches[i], branches[i]));
	arr.strings = specs.v;
	arr.count = specs.n;
	git_remote_create_options_init(&ropts, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ropts.repository = mirror;
	/* insteadOf rewriting is the regex lookup that leaks (see above); kilnd's
	 * URLs are taken as written. */
	ropts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	if (git_remote_create_with_opts(&remote, url, &ropts) < 0) {
		r = kiln_err_git(err, -EINVAL, "bad remote URL '%s'", url);
		goto out;
	}
	/* The first fetch is the whole repository: indexed by packindex.c in a
	 * fraction of libgit2's memory. Later ones are small and may be thin
	 * (deltas against objects the mirror has), which only libgit2's
	 * indexer completes. */
	if (!has_packs(mirror) && (r = packindex_attach(mirror, err)) < 0)
		goto out;
	if (git_remote_fetch(remote, &arr, &opts, "kilnd fetch") < 0)
		r = kiln_err_git(err, -EIO, "cannot fetch from '%s'", url);
out:
	git_remote_free(remote);
	strv_done(&specs);
	return r;
}

int repo_branch_tip(git_repository *mirror, const char *branch, git_oid *ret)
{
	char *ref = xasprintf("refs/heads/%s", branch);
	int r = git_reference_name_to_id(ret, mirror, ref);

	free(ref);
	return r == 0 ? 0 : -ENOENT;
}

void repo_trees_init(struct repo_trees *t, git_repository *repo, git_tree *root)
{
	memset(t, 0, sizeof(*t));
	t->repo = repo;
	t->root = root;
}

int repo_trees_get(struct repo_trees *t, const char *dir, size_t len, git_tree **ret)
{
	size_t plen;
	git_tree *parent, *tree = NULL;
	const git_tree_entry *e;
	char *key;
	int r;

	if (len == 0) {
		*ret = t->root;
		return 0;
	}
	if ((*ret = strmap_get(&t->map, dir, len)) != NULL)
		return 0;
	plen = path_parent_len(dir, len);
	r = repo_trees_get(t, dir, plen, &parent);
	if (r < 0)
		return r;
	key = xstrndup(dir, len);
	e = git_tree_entry_byname(parent, key + (plen ? plen + 1 : 0));
	if (e == NULL || git_tree_entry_type(e) != GIT_OBJECT_TREE) {
		free(key);
		return -ENOENT;
	}
	if (git_tree_lookup(&tree, t->repo, git_tree_entry_id(e)) < 0) {
		free(key);
		return -EIO;
	}
	strv_push(&t->keys, key);
	*strmap_put(&t->map, key, len) = tree;
	*ret = tree;
	return 0;
}

int repo_trees_entry(struct repo_trees *t, const char *path, const git_tree_entry **ret)
{
	size_t len = strlen(path), plen = path_parent_len(path, len);
	git_tree *dir;
	int r = repo_trees_get(t, path, plen, &dir);

	if (r < 0)
		return r;
	*ret = git_tree_entry_byname(dir, path + (plen ? plen + 1 : 0));
	return *ret ? 0 : -ENOENT;
}

void repo_trees_done(struct repo_trees *t)
{
	for (size_t i = 0; i < t->map.cap; i++) {
		if (t->map.slots && t->map.slots[i].key)
			git_tree_free(t->map.slots[i].val);
	}
	strmap_done(&t->map);
	strv_done(&t->keys);
}

git_repository *repo_close(git_repository *repo)
{
	git_repository_free(repo);
	return NULL;
}

static uint64_t fp_add(uint64_t h, const char *path)
{
	struct stat st;
	uint64_t v[6] = {0};

	if (stat(path, &st) == 0) {
		v[0] = (uint64_t)st.st_ino;
		v[1] = (uint64_t)st.st_size;
		v[2] = (uint64_t)st.st_mtim.tv_sec;
		v[3] = (uint64_t)st.st_mtim.tv_nsec;
		v[4] = (uint64_t)st.st_ctim.tv_nsec;
		v[5] = 1;
	}
	return strmap_hash(v, sizeof(v)) ^ (h * 0x100000001b3ull);
}

int repo_local_fingerprint(const char *url, const char *const *branches, size_t n, uint64_t *ret)
{
	const char *path = strncmp(url, "file://", 7) == 0 ? url + 7 : url;
	struct stat st;
	char *gitdir, *f;
	uint64_t h = 0;

	if (path[0] != '/')
		return -ENOTSUP;
	gitdir = xasprintf("%s/.git", path);
	if (stat(gitdir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		free(gitdir);
		gitdir = xasprintf("%s/HEAD", path);
		if (stat(gitdir, &st) < 0) { /* neither a work tree nor a bare repository */
			free(gitdir);
			return -ENOTSUP;
		}
		free(gitdir);
		gitdir = xstrdup(path);
	}
	f = xasprintf("%s/packed-refs", gitdir);
	h = fp_add(h, f);
	free(f);
	for (size_t i = 0; i < n; i++) {
		f = xasprintf("%s/refs/heads/%s", gitdir, branches[i]);
		h = fp_add(h, f);
		free(f);
	}
	free(gitdir);
	*ret = h;
	return 0;
}
