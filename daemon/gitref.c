/* gitref.c (plan): two revisions' trees compared from the repository's files,
 * for kiln's front; see gitref.h. It mirrors what libgit2 1.5 does where it
 * answers (find_repo in repository.c, git_reference_dwim in refs.c,
 * revparse_lookup_object in revparse.c, refdb_fs.c for loose and packed
 * refs, the pack and loose backends) and gives up everywhere else: giving
 * up costs the module's load, a wrong answer would cost a build.
 *
 * Pack index (git's pack-format.txt, version 2): "\377tOc", version, 256
 * big-endian u32 counts (fanout: objects whose first byte is <= i), the
 * sorted ids, their CRCs, their offsets (u32; the top bit set: an index in
 * the table of u64 offsets that follows), the pack's checksum, the index's. */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "kiln/buf.h"
#include "kiln/err.h"
#include "kiln/gitref.h"
#include "kiln/packentry.h"

#define REF_DEPTH_MAX	5		   /* symbolic refs followed (libgit2: 10) */
#define REF_FILE_MAX	4096		   /* a loose ref */
#define PACKED_REFS_MAX ((size_t)64 << 20) /* packed-refs */
#define CONFIG_MAX	((size_t)1 << 20)  /* one config file */
#define COMMIT_MAX	((size_t)1 << 20)  /* a commit, inflated */
#define LOOSE_MAX	((size_t)2 << 20)  /* a loose object's file */
#define DELTA_HOPS_MAX	64		   /* OFS_DELTA bases walked for a type */
#define IDX_HEADER	(8 + 256 * 4)
#define PARENTS_MAX	16    /* parents of a commit kept for ^N */
#define WALK_MAX	10000 /* commits walked by ~N and ^N in all */

struct idx {
	unsigned char *map;
	size_t len;
	uint32_t n;
	int pack_fd;
	uint64_t pack_len;
};

struct gitref {
	char *dir; /* the git directory, with a trailing '/' */
	char *packed;
	size_t npacked;
	bool packed_read;
	int packed_r; /* packed_parse's (load_once) */
	struct idx *idx;
	size_t nidx;
	bool idx_read;
	int idx_r; /* idx_scan's */
};

/* Names git's dwim tries, in order (refs.c, git_reference_dwim). */
static const char *const dwim_rules[] = {
    "%s", "refs/%s", "refs/tags/%s", "refs/heads/%s", "refs/remotes/%s", "refs/remotes/%s/HEAD",
};

/* What libgit2 reads only when asked to open "from the environment"
 * (repository.c, _git_repository_open_ext_from_env), which kiln does not
 * ask: the module ignores them too, but a range under them is left to it,
 * the slow path, rather than read here in doubt. (GIT_CONFIG_NOSYSTEM and
 * the like are git's, libgit2 reads no such variable.) */
static const char *const env_doubts[] = {
    "GIT_DIR",	      "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_INDEX_FILE", "GIT_NAMESPACE",		 "GIT_OBJECT_DIRECTORY",
    "GIT_WORK_TREE",  "GIT_COMMON_DIR",		 "GIT_ALTERNATE_OBJECT_DIRECTORIES",
};

static bool isalpha_ascii(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool isalnum_ascii(char c)
{
	return isalpha_ascii(c) || (c >= '0' && c <= '9');
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 || errno != ENOENT;
}

/* The whole file at path, at most max bytes, NUL-terminated. -ENOENT: none. */
static int read_file(const char *path, size_t max, char **ret, size_t *ret_len,
		     struct kiln_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *p = NULL;
	size_t got = 0;
	int r = 0;

	if (fd < 0)
		return errno == ENOENT ? -ENOENT
				       : kiln_err_set(err, -errno, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		r = kiln_err_set(err, -ENOTSUP, "'%s' is no file of at most %zu bytes", path, max);
		goto out;
	}
	p = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		if (n <= 0) {
			r = kiln_err_set(err, -EIO, "cannot read '%s'", path);
			goto out;
		}
		got += (size_t)n;
	}
	p[got] = '\0';
	*ret = p;
	*ret_len = got;
	p = NULL;
out:
	free(p);
	close(fd);
	return r;
}

/* ---- the repository ---- */

/* core.bare's values libgit2 takes (git_config_parse_bool) */
static bool config_bool(const char *v, size_t n)
{
	static const char *const words[] = {"true", "false", "yes", "no", "on", "off", "1", "0"};
	for (size_t i = 0; i < ARRAY_SIZE(words); i++)
		if (strlen(words[i]) == n && strncasecmp(v, words[i], n) == 0)
			return true;
	return false;
}

/* A config value up to the end of the line or a comment: quotes balanced,
 * only the escapes git knows, no continuation line. Its bare text (no
 * quotes, no trailing blanks) in *v, *vn when it has no quote. */
static bool config_value(const char *s, const char *end, const char **v, size_t *vn)
{
	bool quoted = false, plain = true;
	const char *last = s;

	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	*v = s;
	for (; s < end; s++) {
		if (*s == '\\') {
			if (s + 1 >= end || strchr("\"\\ntb", s[1]) == NULL)
				return false;
			s++;
			plain = false;
			last = s + 1;
		} else if (*s == '"') {
			quoted = !quoted;
			plain = false;
		} else if (!quoted && (*s == '#' || *s == ';')) {
			break;
		} else if (*s != ' ' && *s != '\t' && *s != '\r') {
			last = s + 1;
		}
	}
	*vn = plain && last > *v ? (size_t)(last - *v) : 0;
	if (!plain)
		*v = NULL;
	return !quoted;
}

/* A config file whose syntax git's reader takes and that changes nothing
 * about opening the repository but what is checked here: no include, no
 * extensions, core.repositoryformatversion 0 or 1, core.bare a boolean, no
 * core.worktree. Anything else, or a line read in doubt: -ENOTSUP. */
static int config_check(const char *path, struct kiln_err *err)
{
	char *text = NULL, section[64] = "";
	size_t len;
	int r = read_file(path, CONFIG_MAX, &text, &len, err);
	const char *s, *end;
	unsigned line = 0;

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (s = text; s < text + len; s = end + 1) {
		const char *k, *v;
		size_t kn, vn;

		line++;
		end = memchr(s, '\n', (size_t)(text + len - s));
		if (end == NULL)
			end = text + len;
		if (memchr(s, '\0', (size_t)(end - s)) != NULL)
			goto doubt;
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
			s++;
		if (s == end || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			const char *close = memchr(s, ']', (size_t)(end - s));
			size_t n = 0;

			for (k = s + 1; k < end && (isalnum_ascii(*k) || *k == '-' || *k == '.');
			     k++)
				n++;
			if (close == NULL || n == 0 || n >= sizeof(section))
				goto doubt;
			if (*k == ' ') { /* [section "subsection"] */
				const char *q = k + 1;
				if (*q != '"')
					goto doubt;
				for (q++; q < close && *q != '"' && *q != '\\'; q++)
					;
				if (q + 1 != close)
					goto doubt;
			} else if (k != close) {
				goto doubt;
			}
			for (v = close + 1; v < end && (*v == ' ' || *v == '\t' || *v == '\r'); v++)
				;
			if (v < end && *v != '#' && *v != ';')
				goto doubt;
			for (size_t i = 0; i < n; i++)
				section[i] = (char)(s[1 + i] | 0x20);
			section[n] = '\0';
			if (strcmp(section, "extensions") == 0 || strcmp(section, "include") == 0 ||
			    strcmp(section, "includeif") == 0)
				goto doubt;
			continue;
		}
		if (section[0] == '\0' || !isalpha_ascii(*s))
			goto doubt;
		for (k = s, kn = 0; k + kn < end && (isalnum_ascii(k[kn]) || k[kn] == '-'); kn++)
			;
		for (v = k + kn; v < end && (*v == ' ' || *v == '\t'); v++)
			;
		if (v < end && *v != '=' && *v != '#' && *v != ';' && *v != '\r')
			goto doubt;
		if (v < end && *v == '=') {
			if (!config_value(v + 1, end, &v, &vn))
				goto doubt;
		} else {
			v = "true";
			vn = 4;
		}
		if (strcmp(section, "core") != 0)
			continue;
		if (kn == 23 && strncasecmp(k, "repositoryformatversion", kn) == 0 &&
		    !(v && vn == 1 && (*v == '0' || *v == '1')))
			goto doubt;
		if (kn == 4 && strncasecmp(k, "bare", kn) == 0 && !(v && config_bool(v, vn)))
			goto doubt;
		if (kn == 8 && strncasecmp(k, "worktree", kn) == 0)
			goto doubt;
	}
	free(text);
	return 0;
doubt:
	free(text);
	return kiln_err_set(err, -ENOTSUP, "%s:%u: a line not read here", path, line);
}

/* Every config file libgit2 reads when it opens the repository. */
static int configs_check(const char *gitdir, struct kiln_err *err)
{
	const char *home = getenv("HOME"), *xdg = getenv("XDG_CONFIG_HOME");
	char *paths[4];
	int r = 0;

	if (home == NULL || home[0] == '\0')
		return kiln_err_set(err, -ENOTSUP, "no $HOME: libgit2 asks the password file");
	paths[0] = xasprintf("%sconfig", gitdir);
	paths[1] = xasprintf("%s/.gitconfig", home);
	paths[2] = xdg && xdg[0] ? xasprintf("%s/git/config", xdg)
				 : xasprintf("%s/.config/git/config", home);
	paths[3] = xstrdup("/etc/gitconfig");
	for (size_t i = 0; i < ARRAY_SIZE(paths) && r == 0; i++)
		r = config_check(paths[i], err);
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
		free(paths[i]);
	return r;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* libgit2's is_valid_repository_path: HEAD, objects/ and refs/; a commondir
 * file (a worktree's git directory) is not followed here. */
static int valid_git_dir(const char *d, bool *ret, struct kiln_err *err)
{
	char *p = xasprintf("%s/commondir", d);
	bool common = exists(p);

	free(p);
	if (common)
		return kiln_err_set(err, -ENOTSUP, "'%s' has a commondir file", d);
	p = xasprintf("%s/HEAD", d);
	*ret = is_file(p);
	free(p);
	p = xasprintf("%s/objects", d);
	*ret = *ret && is_dir(p);
	free(p);
	p = xasprintf("%s/refs", d);
	*ret = *ret && is_dir(p);
	free(p);
	return 0;
}

static int owned(const char *path, struct kiln_err *err)
{
	struct stat st;

	if (stat(path, &st) < 0 || st.st_uid != geteuid())
		return kiln_err_set(err, -ENOTSUP, "'%s' is not the user's (safe.directory)", path);
	return 0;
}

/* find_repo: DIR/.git, DIR, then each parent's .git and itself, up to but
 * not including "/", on DIR's file system. */
static int find_git_dir(const char *dir, char **ret, struct kiln_err *err)
{
	char *path = realpath(dir, NULL), *cand = NULL;
	bool have_dev = false, valid = false;
	dev_t dev = 0;
	int r = 0;

	if (path == NULL)
		return kiln_err_set(err, -ENOENT, "no directory '%s'", dir);
	if (strcmp(path, "/") == 0 || strlen(path) > 2048) {
		r = kiln_err_set(err, -ENOTSUP, "'%s': not searched here", path);
		goto out;
	}
	for (;;) {
		for (int k = 0; k < 2; k++) {
			struct stat st;

			free(cand);
			cand = k == 0 ? xasprintf("%s/.git", path) : xstrdup(path);
			if (stat(cand, &st) < 0)
				continue;
			if (!have_dev) {
				dev = st.st_dev;
				have_dev = true;
			} else if (st.st_dev != dev) {
				r = kiln_err_set(err, -ENOENT,
						 "no repository on the file system of '%s'", dir);
				goto out;
			}
			if (S_ISREG(st.st_mode) && k == 0) {
				r = kiln_err_set(err, -ENOTSUP,
						 "'%s' is a file (a worktree's link)", cand);
				goto out;
			}
			if (!S_ISDIR(st.st_mode))
				continue;
			if ((r = valid_git_dir(cand, &valid, err)) < 0)
				goto out;
			if (!valid)
				continue;
			/* libgit2 checks the work tree's owner too; a bare one's is
			 * its parent unless core.bare says so: both, here */
			if ((r = owned(cand, err)) < 0 || (r = owned(path, err)) < 0)
				goto out;
			if (k == 1 && strchr(path + 1, '/') == NULL) {
				r = kiln_err_set(err, -ENOTSUP, "'%s': a repository under '/'",
						 path);
			} else if (k == 1) {
				*strrchr(path, '/') = '\0';
				r = owned(path, err);
			}
			if (r == 0)
				*ret = xasprintf("%s/", cand);
			goto out;
		}
		if (strrchr(path, '/') == path)
			break;
		*strrchr(path, '/') = '\0';
	}
	r = kiln_err_set(err, -ENOENT, "not a git repository: '%s'", dir);
out:
	free(cand);
	free(path);
	return r;
}

int gitref_open(const char *dir, struct gitref **ret, struct kiln_err *err)
{
	static const char *const doubts[] = {"shallow", "info/grafts", "objects/info/alternates",
					     "refs/replace"};
	struct gitref *g;
	char *gitdir = NULL;
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(env_doubts); i++)
		if (getenv(env_doubts[i]) != NULL)
			return kiln_err_set(err, -ENOTSUP, "$%s is set", env_doubts[i]);
	if ((r = find_git_dir(dir, &gitdir, err)) < 0)
		return r;
	if ((r = configs_check(gitdir, err)) < 0)
		goto fail;
	for (size_t i = 0; i < ARRAY_SIZE(doubts); i++) {
		char *p = xasprintf("%s%s", gitdir, doubts[i]);
		bool there = exists(p);

		free(p);
		if (there) {
			r = kiln_err_set(err, -ENOTSUP, "the repository has %s", doubts[i]);
			goto fail;
		}
	}
	g = xcalloc(1, sizeof(*g));
	g->dir = gitdir;
	*ret = g;
	return 0;
fail:
	free(gitdir);
	return r;
}

void gitref_free(struct gitref *g)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < g->nidx; i++) {
		munmap(g->idx[i].map, g->idx[i].len);
		close(g->idx[i].pack_fd);
	}
	free(g->idx);
	free(g->packed);
	free(g->dir);
	free(g);
}

/* ---- refs ---- */

/* A name git would read as a plain ref name and nothing else: no revision
 * syntax (^ ~ : @ { ...), none of check-ref-format's exceptions. */
static bool plain_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255 || s[0] == '/' || s[0] == '-' || s[n - 1] == '/' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!(isalnum_ascii(c) || c == '.' || c == '_' || c == '-' || c == '/'))
			return false;
		if ((i == 0 || s[i - 1] == '/') && c == '.')
			return false; /* a component starting with '.' (and so "..") */
		if (c == '/' && s[i - 1] == '/')
			return false;
		if (c == '.' && s[i + 1] == '.')
			return false;
		if (strncmp(s + i, ".lock", 5) == 0 && (s[i + 5] == '/' || s[i + 5] == '\0'))
			return false;
	}
	return true;
}

/* packed-refs, checked whole when first read: an optional "# pack-refs
 * with:" line, then "<hex> <name>" lines, each maybe followed by "^<hex>"
 * (the tag's peeled id). Anything else: -ENOTSUP. */
static int packed_parse(struct gitref *g, struct kiln_err *err)
{
	char *path;
	const char *s, *end, *prev = NULL;
	size_t prev_n = 0;
	bool after_ref = false;
	int r;

	path = xasprintf("%spacked-refs", g->dir);
	r = read_file(path, PACKED_REFS_MAX, &g->packed, &g->npacked, err);
	free(path);
	if (r == -ENOENT)
		r = 0;
	if (r < 0 || g->packed == NULL)
		return r;
	if (g->npacked > 0 && g->packed[g->npacked - 1] != '\n')
		return kiln_err_set(err, -ENOTSUP, "packed-refs: no newline at its end");
	for (s = g->packed; s < g->packed + g->npacked; s = end + 1) {
		size_t n;

		end = memchr(s, '\n', (size_t)(g->packed + g->npacked - s));
		n = (size_t)(end - s);
		if (s == g->packed && strncmp(s, "# pack-refs with:", 17) == 0)
			continue;
		if (n > GITREF_HEX + 1 && hex_is_lower(s, GITREF_HEX) && s[GITREF_HEX] == ' ') {
			const char *name = s + GITREF_HEX + 1;
			size_t nn = n - GITREF_HEX - 1;

			/* libgit2 searches a file that says "sorted" by halves:
			 * one whose names are not in order is left to it */
			if (prev &&
			    (memcmp(prev, name, prev_n < nn ? prev_n : nn) > 0 ||
			     (memcmp(prev, name, prev_n < nn ? prev_n : nn) == 0 && prev_n >= nn)))
				return kiln_err_set(err, -ENOTSUP,
						    "packed-refs: names out of order");
			prev = name;
			prev_n = nn;
			after_ref = true;
			continue;
		}
		if (n == GITREF_HEX + 1 && s[0] == '^' && hex_is_lower(s + 1, GITREF_HEX) &&
		    after_ref) {
			after_ref = false;
			continue;
		}
		return kiln_err_set(err, -ENOTSUP, "packed-refs: a line not read here");
	}
	if (memmem(g->packed, g->npacked, " refs/replace/", 14) != NULL)
		return kiln_err_set(err, -ENOTSUP, "packed-refs has refs/replace/");
	return 0;
}

/* load's result the first time, and the same for every later call: a file
 * refused once stays refused, never half read */
static int load_once(struct gitref *g, bool *done, int *saved,
		     int (*load)(struct gitref *g, struct kiln_err *err), const char *what,
		     struct kiln_err *err)
{
	if (!*done) {
		*done = true;
		return *saved = load(g, err);
	}
	if (*saved < 0)
		return kiln_err_set(err, *saved, "%s not read here (as before)", what);
	return 0;
}

static int packed_load(struct gitref *g, struct kiln_err *err)
{
	return load_once(g, &g->packed_read, &g->packed_r, packed_parse, "packed-refs", err);
}

/* name's id in packed-refs; -ENOENT: not there */
static int packed_find(struct gitref *g, const char *name, char id[GITREF_HEX + 1],
		       struct kiln_err *err)
{
	size_t n = strlen(name);
	const char *s, *end;
	int r = packed_load(g, err);

	if (r < 0)
		return r;
	for (s = g->packed; s && s < g->packed + g->npacked; s = end + 1) {
		end = memchr(s, '\n', (size_t)(g->packed + g->npacked - s));
		if (s[0] != '#' && s[0] != '^' && (size_t)(end - s) == GITREF_HEX + 1 + n &&
		    memcmp(s + GITREF_HEX + 1, name, n) == 0) {
			memcpy(id, s, GITREF_HEX);
			id[GITREF_HEX] = '\0';
			return 0;
		}
	}
	return -ENOENT;
}

static int ref_exists(struct gitref *g, const char *name, bool *ret, struct kiln_err *err)
{
	char *path = xasprintf("%s%s", g->dir, name), id[GITREF_HEX + 1];
	int r = 0;

	*ret = exists(path);
	free(path);
	if (!*ret) {
		r = packed_find(g, name, id, err);
		*ret = r == 0;
		r = r == -ENOENT ? 0 : r;
	}
	return r;
}

/* The id the ref name points at, symbolic refs followed; -ENOENT: no such
 * ref (a loose one wins over a packed one, as in refdb_fs.c). */
static int ref_resolve(struct gitref *g, const char *name, int depth, char id[GITREF_HEX + 1],
		       struct kiln_err *err)
{
	char *path, *text = NULL;
	size_t len;
	struct stat st;
	int r;

	if (depth > REF_DEPTH_MAX)
		return kiln_err_set(err, -ENOTSUP, "ref '%s': symbolic refs nested too deep", name);
	path = xasprintf("%s%s", g->dir, name);
	if (lstat(path, &st) < 0) {
		r = errno == ENOENT
			? packed_find(g, name, id, err)
			: kiln_err_set(err, -ENOTSUP, "ref '%s': %s", name, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) { /* refs/remotes/origin: no loose ref (futils.c) */
		r = packed_find(g, name, id, err);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = kiln_err_set(err, -ENOTSUP, "ref '%s' is no regular file", name);
		goto out;
	}
	if ((r = read_file(path, REF_FILE_MAX, &text, &len, err)) < 0) {
		if (r == -ENOENT) /* gone since: a ref being updated */
			r = kiln_err_set(err, -ENOTSUP, "ref '%s' changed under us", name);
		goto out;
	}
	if (len == GITREF_HEX + 1 && hex_is_lower(text, GITREF_HEX) && text[GITREF_HEX] == '\n') {
		memcpy(id, text, GITREF_HEX);
		id[GITREF_HEX] = '\0';
	} else if (len > 5 + 5 + 1 && strncmp(text, "ref: refs/", 10) == 0 &&
		   text[len - 1] == '\n' && memchr(text, '\0', len) == NULL) {
		text[len - 1] = '\0';
		if (!plain_name(text + 5)) {
			r = kiln_err_set(err, -ENOTSUP, "ref '%s': a target not read here", name);
			goto out;
		}
		r = ref_resolve(g, text + 5, depth + 1, id, err);
		if (r == -ENOENT) /* libgit2's dwim would go on to the next rule */
			r = kiln_err_set(err, -ENOTSUP, "ref '%s' is dangling", name);
	} else {
		r = kiln_err_set(err, -ENOTSUP, "ref '%s': content not read here", name);
	}
out:
	free(text);
	free(path);
	return r;
}

/* git_reference_dwim: the first rule naming a ref wins. Rule "%s" is taken
 * for HEAD and names under refs/ only: other files in the git directory
 * (FETCH_HEAD, ORIG_HEAD, ...) and libgit2's one-level name rules are left
 * to libgit2. */
static int dwim(struct gitref *g, const char *name, char id[GITREF_HEX + 1], struct kiln_err *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(dwim_rules); i++) {
		char *full = xasprintf(dwim_rules[i], name);
		bool there;
		int r = 0;

		if (i == 0 && strcmp(name, "HEAD") != 0 && strncmp(name, "refs/", 5) != 0) {
			r = ref_exists(g, full, &there, err);
			if (r == 0 && there)
				r = kiln_err_set(err, -ENOTSUP,
						 "'%s' is a file of the git directory", name);
			r = r == 0 ? -ENOENT : r;
		} else {
			r = ref_resolve(g, full, 0, id, err);
		}
		free(full);
		if (r != -ENOENT)
			return r;
	}
	return kiln_err_set(err, -ENOENT, "no ref '%s'", name);
}

/* ---- objects ---- */

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int idx_add(struct gitref *g, const char *idx_path, struct kiln_err *err)
{
	char *pack_path = xasprintf("%.*s.pack", (int)(strlen(idx_path) - 4), idx_path);
	int fd = open(idx_path, O_RDONLY | O_CLOEXEC), pfd = -1;
	unsigned char trailer[PACK_OID_LEN], head[12];
	struct stat st, pst;
	struct idx x = {.pack_fd = -1};
	uint32_t prev = 0;
	int r = 0;

	pfd = open(pack_path, O_RDONLY | O_CLOEXEC);
	if (pfd < 0) { /* libgit2 skips an index without its pack too */
		r = errno == ENOENT ? 0
				    : kiln_err_set(err, -ENOTSUP, "cannot open '%s'", pack_path);
		goto out;
	}
	if (fd < 0 || fstat(fd, &st) < 0 || fstat(pfd, &pst) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < IDX_HEADER + 2 * PACK_OID_LEN ||
	    pst.st_size < 12 + PACK_OID_LEN) {
		r = kiln_err_set(err, -ENOTSUP, "'%s': too short for a pack's index", idx_path);
		goto out;
	}
	x.len = (size_t)st.st_size;
	x.map = mmap(NULL, x.len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (x.map == MAP_FAILED) {
		x.map = NULL;
		r = kiln_err_set(err, -ENOTSUP, "cannot map '%s'", idx_path);
		goto out;
	}
	if (memcmp(x.map, "\377tOc", 4) != 0 || be32(x.map + 4) != 2) {
		r = kiln_err_set(err, -ENOTSUP, "'%s' is no version 2 index", idx_path);
		goto out;
	}
	for (int i = 0; i < 256; i++) {
		uint32_t f = be32(x.map + 8 + 4 * i);
		if (f < prev)
			break;
		prev = f;
		if (i == 255)
			x.n = f;
	}
	/* pack.c's pack_index_check_locked: the size the count makes, with
	 * room for fewer 64-bit offsets than objects */
	if (prev != x.n || x.len < (uint64_t)IDX_HEADER + (uint64_t)x.n * 28 + 2 * PACK_OID_LEN ||
	    x.len > (uint64_t)IDX_HEADER + (uint64_t)x.n * 28 + 2 * PACK_OID_LEN +
			(x.n ? (uint64_t)(x.n - 1) * 8 : 0)) {
		r = kiln_err_set(err, -ENOTSUP, "'%s': an index of a size not read here", idx_path);
		goto out;
	}
	/* libgit2 takes a pack whose checksum is the one its index names */
	x.pack_len = (uint64_t)pst.st_size;
	if (pread(pfd, head, 12, 0) != 12 || memcmp(head, "PACK", 4) != 0 ||
	    (be32(head + 4) != 2 && be32(head + 4) != 3) || be32(head + 8) != x.n ||
	    pread(pfd, trailer, PACK_OID_LEN, (off_t)(x.pack_len - PACK_OID_LEN)) != PACK_OID_LEN ||
	    memcmp(trailer, x.map + x.len - 2 * PACK_OID_LEN, PACK_OID_LEN) != 0) {
		r = kiln_err_set(err, -ENOTSUP, "'%s' does not match its index", pack_path);
		goto out;
	}
	x.pack_fd = pfd;
	pfd = -1;
	g->idx = xreallocarray(g->idx, g->nidx + 1, sizeof(*g->idx));
	g->idx[g->nidx++] = x;
	x.map = NULL;
out:
	if (x.map)
		munmap(x.map, x.len);
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		close(pfd);
	free(pack_path);
	return r;
}

static int idx_scan(struct gitref *g, struct kiln_err *err)
{
	char *dir;
	DIR *d;
	struct dirent *e;
	int r = 0;

	dir = xasprintf("%sobjects/pack", g->dir);
	d = opendir(dir);
	if (d == NULL) {
		r = errno == ENOENT ? 0 : kiln_err_set(err, -ENOTSUP, "cannot list '%s'", dir);
		free(dir);
		return r;
	}
	while (r == 0 && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n > 4 && strcmp(e->d_name + n - 4, ".idx") == 0) {
			char *p = xasprintf("%s/%s", dir, e->d_name);
			r = idx_add(g, p, err);
			free(p);
		}
	}
	closedir(d);
	free(dir);
	return r;
}

static int idx_load(struct gitref *g, struct kiln_err *err)
{
	return load_once(g, &g->idx_read, &g->idx_r, idx_scan, "a pack index", err);
}

/* The offset of id in pack x; -ENOENT: not in it. */
static int idx_find(const struct idx *x, const unsigned char id[PACK_OID_LEN], uint64_t *ret,
		    struct kiln_err *err)
{
	const unsigned char *ids = x->map + IDX_HEADER, *offs = ids + (size_t)x->n * 24;
	uint32_t lo = id[0] ? be32(x->map + 8 + 4 * (id[0] - 1)) : 0;
	uint32_t hi = be32(x->map + 8 + 4 * id[0]);

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = memcmp(ids + (size_t)mid * PACK_OID_LEN, id, PACK_OID_LEN);
		uint64_t off = 0;

		if (c < 0) {
			lo = mid + 1;
			continue;
		}
		if (c > 0) {
			hi = mid;
			continue;
		}
		off = be32(offs + (size_t)mid * 4);
		if (off & 0x80000000u) {
			size_t at =
			    (size_t)IDX_HEADER + (size_t)x->n * 28 + (off & 0x7fffffffu) * 8;
			if (at + 8 + 2 * PACK_OID_LEN > x->len)
				return kiln_err_set(err, -ENOTSUP,
						    "a large offset out of the index");
			off = (uint64_t)be32(x->map + at) << 32 | be32(x->map + at + 4);
		}
		if (off < 12 || off >= x->pack_len - PACK_OID_LEN)
			return kiln_err_set(err, -ENOTSUP, "an offset out of the pack");
		*ret = off;
		return 0;
	}
	return -ENOENT;
}

/* The header at off; a REF_DELTA's base id copied to base (e.base_id is
 * not kept: it pointed into a buffer gone). */
static int entry_at(const struct idx *x, uint64_t off, struct pack_entry *ret,
		    unsigned char base[PACK_OID_LEN], struct kiln_err *err)
{
	unsigned char h[64];
	ssize_t n = pread(x->pack_fd, h, sizeof(h), (off_t)off);
	int r = n > 0 ? pack_entry_parse(h, (size_t)n, ret) : -EIO;

	if (r <= 0)
		return kiln_err_set(err, -ENOTSUP, "pack entry at %llu not read here",
				    (unsigned long long)off);
	if (ret->type == PACK_REF_DELTA)
		memcpy(base, ret->base_id, PACK_OID_LEN);
	ret->base_id = NULL;
	return 0;
}

/* The pack's next bytes, from *off, as z's input; false: none left. */
static bool feed(z_stream *z, int fd, uint64_t *off, unsigned char *in, size_t cap)
{
	ssize_t n = pread(fd, in, cap, (off_t)*off);

	if (n <= 0)
		return false;
	*off += (uint64_t)n;
	z->next_in = in;
	z->avail_in = (uInt)n;
	return true;
}

/* Inflates exactly want bytes from fd at off (a pack) or from mem (a loose
 * object), at most want: a stream that ends short or goes on fails. */
static int inflate_all(int fd, uint64_t off, const unsigned char *mem, size_t mem_len,
		       unsigned char *out, size_t want, size_t *got, bool whole,
		       struct kiln_err *err)
{
	z_stream z = {0};
	unsigned char in[8192];
	int zr = Z_OK;

	if (inflateInit(&z) != Z_OK)
		return kiln_err_set(err, -ENOMEM, "cannot start zlib");
	z.next_out = out;
	z.avail_out = (uInt)want;
	if (mem) {
		z.next_in = (unsigned char *)(uintptr_t)mem;
		z.avail_in = (uInt)mem_len;
	}
	while (zr == Z_OK && z.avail_out > 0) {
		if (z.avail_in == 0 && (mem || !feed(&z, fd, &off, in, sizeof(in))))
			break;
		zr = inflate(&z, Z_NO_FLUSH);
	}
	*got = want - z.avail_out;
	/* all the bytes it should have: the stream must end there, with no
	 * byte more (its checksum may need more input) */
	for (int i = 0; whole && zr == Z_OK && *got == want && i < 4; i++) {
		unsigned char extra;

		z.next_out = &extra;
		z.avail_out = 1;
		if (z.avail_in == 0 && !mem && !feed(&z, fd, &off, in, sizeof(in)))
			break;
		zr = inflate(&z, Z_NO_FLUSH);
		if (z.avail_out == 0)
			zr = Z_DATA_ERROR; /* longer than it says */
	}
	inflateEnd(&z);
	if (whole ? zr != Z_STREAM_END || *got != want : zr != Z_OK && zr != Z_STREAM_END)
		return kiln_err_set(err, -ENOTSUP, "a zlib stream not read here");
	return 0;
}

/* The object at off in pack x, its deltas resolved (their bases in the same
 * pack, as git writes them but for a thin pack): its type and, when data is
 * not NULL, its content (at most max bytes, as is each object of its chain;
 * the caller frees it). */
static int pack_read(const struct idx *x, uint64_t off, const char *hex, unsigned *ret_type,
		     unsigned char **data, size_t *len, size_t max, struct kiln_err *err)
{
	uint64_t chain[DELTA_HOPS_MAX], blen = 0;
	struct pack_entry e, deltas[DELTA_HOPS_MAX];
	unsigned char base[PACK_OID_LEN], *buf = NULL, *d = NULL;
	size_t depth = 0, got;
	int r = entry_at(x, off, &e, base, err);

	while (r == 0 && (e.type == PACK_OFS_DELTA || e.type == PACK_REF_DELTA)) {
		if (depth == DELTA_HOPS_MAX)
			return kiln_err_set(err, -ENOTSUP, "object %s: a delta chain that long",
					    hex);
		chain[depth] = off;
		deltas[depth++] = e;
		if (e.type == PACK_OFS_DELTA && (e.dist == 0 || e.dist > off - 12))
			return kiln_err_set(err, -ENOTSUP,
					    "object %s: a delta base out of the pack", hex);
		if (e.type == PACK_OFS_DELTA)
			off -= e.dist;
		else if ((r = idx_find(x, base, &off, err)) == -ENOENT)
			return kiln_err_set(err, -ENOTSUP,
					    "object %s: a delta base in another pack", hex);
		if (r == 0)
			r = entry_at(x, off, &e, base, err);
	}
	if (r < 0)
		return r;
	*ret_type = e.type;
	if (data == NULL)
		return 0;
	if (e.size > max)
		return kiln_err_set(err, -ENOTSUP, "object %s is large", hex);
	buf = xmalloc(e.size + 1);
	blen = e.size;
	r = inflate_all(x->pack_fd, off + e.len, NULL, 0, buf, (size_t)e.size, &got, true, err);
	while (r == 0 && depth > 0) {
		const struct pack_entry *de = &deltas[--depth];
		unsigned char *next;

		if (de->size > max) {
			r = kiln_err_set(err, -ENOTSUP, "object %s: a large delta", hex);
			break;
		}
		d = xmalloc(de->size + 1);
		r = inflate_all(x->pack_fd, chain[depth] + de->len, NULL, 0, d, (size_t)de->size,
				&got, true, err);
		next = r == 0 ? pack_delta_apply(buf, blen, d, de->size, max, &blen) : NULL;
		free(d);
		d = NULL;
		if (r == 0 && next == NULL)
			r = kiln_err_set(err, -ENOTSUP, "object %s: a delta not read here", hex);
		free(buf);
		buf = next;
	}
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[blen] = '\0';
	*data = buf;
	*len = (size_t)blen;
	return 0;
}

/* An object's type and, when data is not NULL, its whole content (at most
 * max bytes; the caller frees it). -ENOENT: in no pack and not loose. */
static int object_read(struct gitref *g, const char *hex, unsigned *ret_type, unsigned char **data,
		       size_t *len, size_t max, struct kiln_err *err)
{
	unsigned char id[PACK_OID_LEN], *out = NULL;
	char *path, *file = NULL;
	size_t flen, got;
	int r;

	hex_decode(hex, GITREF_HEX, id, PACK_OID_LEN); /* checked as lower hex */
	if ((r = idx_load(g, err)) < 0)
		return r;
	for (size_t i = 0; i < g->nidx; i++) {
		uint64_t off = 0;

		if ((r = idx_find(&g->idx[i], id, &off, err)) == -ENOENT)
			continue;
		if (r < 0)
			return r;
		return pack_read(&g->idx[i], off, hex, ret_type, data, len, max, err);
	}
	path = xasprintf("%sobjects/%.2s/%s", g->dir, hex, hex + 2);
	r = read_file(path, LOOSE_MAX, &file, &flen, err);
	free(path);
	if (r < 0)
		return r == -ENOENT ? kiln_err_set(err, -ENOENT, "no object %s", hex) : r;
	{
		/* "<type> <size>\0" then the content */
		static const char *const names[] = {"", "commit", "tree", "blob", "tag"};
		unsigned char head[32];
		const char *sp, *nul;
		unsigned long long size;
		char *end;

		r = inflate_all(-1, 0, (unsigned char *)file, flen, head, sizeof(head), &got, false,
				err);
		nul = r == 0 ? memchr(head, '\0', got) : NULL;
		sp = nul ? memchr(head, ' ', (size_t)(nul - (char *)head)) : NULL;
		if (sp == NULL || sp[1] < '0' || sp[1] > '9' ||
		    (size = strtoull(sp + 1, &end, 10), end != nul)) {
			r = kiln_err_set(err, -ENOTSUP, "object %s: a header not read here", hex);
			goto out;
		}
		*ret_type = 0;
		for (unsigned t = PACK_COMMIT; t <= PACK_TAG; t++)
			if ((size_t)(sp - (char *)head) == strlen(names[t]) &&
			    memcmp(head, names[t], strlen(names[t])) == 0)
				*ret_type = t;
		if (*ret_type == 0) {
			r = kiln_err_set(err, -ENOTSUP, "object %s: a type not read here", hex);
			goto out;
		}
		if (data == NULL)
			goto out;
		if (size > max) {
			r = kiln_err_set(err, -ENOTSUP, "object %s is large", hex);
			goto out;
		}
		out = xmalloc((size_t)(nul - (char *)head) + 1 + size + 1);
		r = inflate_all(-1, 0, (unsigned char *)file, flen, out,
				(size_t)(nul - (char *)head) + 1 + (size_t)size, &got, true, err);
		if (r < 0) {
			free(out);
			goto out;
		}
		*len = (size_t)size;
		memmove(out, out + (nul - (char *)head) + 1, (size_t)size);
		out[size] = '\0';
		*data = out;
	}
out:
	free(file);
	return r;
}

/* What a commit says that is read here */
struct commit_info {
	char tree[GITREF_HEX + 1];
	char parents[PARENTS_MAX][GITREF_HEX + 1]; /* the first PARENTS_MAX */
	size_t nparents;
};

/* A commit as libgit2's parser takes it (commit.c): its tree, parents, an
 * author and a committer with an address. */
static int commit_read(struct gitref *g, const char *hex, struct commit_info *ret,
		       struct kiln_err *err)
{
	unsigned char *data = NULL;
	const char *s, *e;
	size_t len = 0;
	unsigned type;
	int r = object_read(g, hex, &type, NULL, NULL, 0, err);

	if (r < 0)
		return r;
	if (type != PACK_COMMIT)
		return kiln_err_set(err, -ENOTSUP, "object %s is no commit", hex);
	if ((r = object_read(g, hex, &type, &data, &len, COMMIT_MAX, err)) < 0)
		return r;
	s = (const char *)data;
	e = s + len;
	if (len < 46 || strncmp(s, "tree ", 5) != 0 || !hex_is_lower(s + 5, GITREF_HEX) ||
	    s[45] != '\n')
		goto doubt;
	memcpy(ret->tree, s + 5, GITREF_HEX);
	ret->tree[GITREF_HEX] = '\0';
	ret->nparents = 0;
	for (s += 46; (size_t)(e - s) >= 48 && strncmp(s, "parent ", 7) == 0; s += 48) {
		if (!hex_is_lower(s + 7, GITREF_HEX) || s[47] != '\n')
			goto doubt;
		if (ret->nparents < PARENTS_MAX) {
			memcpy(ret->parents[ret->nparents], s + 7, GITREF_HEX);
			ret->parents[ret->nparents][GITREF_HEX] = '\0';
		}
		ret->nparents++;
	}
	for (int k = 0; k < 2; k++) {
		const char *want = k == 0 ? "author " : "committer ";
		const char *nl = memchr(s, '\n', (size_t)(e - s)), *lt, *gt;

		if (nl == NULL || strncmp(s, want, strlen(want)) != 0)
			goto doubt;
		/* signature.c: the last '<' and '>', and a time when there is
		 * room for one (libgit2 refuses one it cannot read) */
		lt = memrchr(s, '<', (size_t)(nl - s));
		gt = memrchr(s, '>', (size_t)(nl - s));
		if (lt == NULL || gt == NULL || gt <= lt)
			goto doubt;
		if (gt + 2 < nl) {
			size_t digits = 0;
			while (gt + 2 + digits < nl && gt[2 + digits] >= '0' &&
			       gt[2 + digits] <= '9')
				digits++;
			if (gt[1] != ' ' || digits == 0 || digits > 18)
				goto doubt;
		}
		s = nl + 1;
	}
	free(data);
	return 0;
doubt:
	free(data);
	return kiln_err_set(err, -ENOTSUP, "commit %s: a form not read here", hex);
}

/* The object a full id or a plain name names (revparse_lookup_object). */
static int rev_base(struct gitref *g, const char *name, char id[GITREF_HEX + 1],
		    struct kiln_err *err)
{
	int r;

	if (strlen(name) == GITREF_HEX && hex_is_lower(name, GITREF_HEX)) {
		/* revparse takes an object of that id first, else a ref of that
		 * name: either way, a ref of that name is left to libgit2 */
		for (size_t i = 0; i < ARRAY_SIZE(dwim_rules); i++) {
			char *full = xasprintf(dwim_rules[i], name);
			bool there;

			r = ref_exists(g, full, &there, err);
			free(full);
			if (r == 0 && there)
				r = kiln_err_set(err, -ENOTSUP, "'%s' is a ref's name too", name);
			if (r < 0)
				return r;
		}
		memcpy(id, name, GITREF_HEX + 1);
		return 0;
	}
	if (!plain_name(name))
		return kiln_err_set(err, -ENOTSUP, "'%s' is no plain ref name", name);
	return dwim(g, name, id, err);
}

/* One ~N or ^N of a revision at *p, as revparse.c's extract_how_many counts
 * it ("~~2" is 3, "^" is 1, "^0" is 0); its kind in *kind. */
static int how_many(const char **p, char *kind, long *ret)
{
	const char *s = *p;
	long n = 0;

	*kind = *s;
	do {
		do {
			s++;
			n++;
		} while (*s == *kind && *kind == '~');
		if (*s >= '0' && *s <= '9') {
			long v = 0;
			for (int i = 0; *s >= '0' && *s <= '9'; i++, s++) {
				if (i == 6)
					return -ENOTSUP;
				v = v * 10 + (*s - '0');
			}
			n += v - 1;
		}
	} while (*s == *kind && *kind == '~');
	if (*s != '\0' && *s != '~' && *s != '^')
		return -ENOTSUP; /* ^{...}, :path, @{...}, ... */
	*p = s;
	*ret = n;
	return 0;
}

int gitref_commit(struct gitref *g, const char *rev, char ret_id[GITREF_HEX + 1],
		  struct kiln_err *err)
{
	size_t b = strcspn(rev, "~^");
	char id[GITREF_HEX + 1], *base;
	const char *p = rev + b;
	struct commit_info c;
	long walked = 0;
	int r;

	if (b == 0)
		return kiln_err_set(err, -ENOTSUP, "'%s' has no name before ~ or ^", rev);
	base = xasprintf("%.*s", (int)b, rev);
	r = rev_base(g, base, id, err);
	free(base);
	if (r < 0 || (r = commit_read(g, id, &c, err)) < 0)
		return r;
	while (*p) {
		char kind;
		long n;

		if (how_many(&p, &kind, &n) < 0)
			return kiln_err_set(err, -ENOTSUP, "'%s': a form not read here", rev);
		walked += n;
		if (walked > WALK_MAX)
			return kiln_err_set(err, -ENOTSUP, "'%s': a walk that long", rev);
		if (kind == '^' && n > 0) {
			if ((size_t)n > c.nparents || n > PARENTS_MAX)
				return kiln_err_set(err, -ENOTSUP, "'%s': no parent %ld", rev, n);
			memcpy(id, c.parents[n - 1], sizeof(id));
			if ((r = commit_read(g, id, &c, err)) < 0)
				return r;
		}
		for (; kind == '~' && n > 0; n--) {
			if (c.nparents == 0)
				return kiln_err_set(err, -ENOTSUP, "'%s': a root commit's parent",
						    rev);
			memcpy(id, c.parents[0], sizeof(id));
			if ((r = commit_read(g, id, &c, err)) < 0)
				return r;
		}
	}
	memcpy(ret_id, id, sizeof(id));
	return 0;
}

int gitref_tree(struct gitref *g, const char *id, char ret_tree[GITREF_HEX + 1],
		struct kiln_err *err)
{
	struct commit_info c;
	unsigned type;
	int r = commit_read(g, id, &c, err);

	/* libgit2 reads the tree (git_commit_tree) before it compares ids */
	if (r == 0 && (r = object_read(g, c.tree, &type, NULL, NULL, 0, err)) == 0 &&
	    type != PACK_TREE)
		r = kiln_err_set(err, -ENOTSUP, "commit %s: its tree %s is no tree", id, c.tree);
	if (r == 0)
		memcpy(ret_tree, c.tree, sizeof(c.tree));
	return r;
}

int gitref_unchanged(const char *dir, const char *from, const char *to,
		     char ret_from[GITREF_HEX + 1], char ret_to[GITREF_HEX + 1],
		     struct kiln_err *err)
{
	char f[GITREF_HEX + 1], t[GITREF_HEX + 1], ft[GITREF_HEX + 1], tt[GITREF_HEX + 1];
	struct gitref *g = NULL;
	int r;

	if ((r = gitref_open(dir, &g, err)) < 0)
		return r;
	if ((r = gitref_commit(g, from, f, err)) < 0 || (r = gitref_commit(g, to, t, err)) < 0 ||
	    (r = gitref_tree(g, f, ft, err)) < 0 || (r = gitref_tree(g, t, tt, err)) < 0)
		goto out;
	if (strcmp(ft, tt) != 0) {
		r = kiln_err_set(err, -ESRCH, "trees %s and %s differ", ft, tt);
		goto out;
	}
	memcpy(ret_from, f, sizeof(f));
	memcpy(ret_to, t, sizeof(t));
out:
	gitref_free(g);
	return r;
}
