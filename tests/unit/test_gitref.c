/* test_gitref.c: the front's fast path (gitref.c) against libgit2 itself on
 * repositories made here with the git CLI: loose and packed objects and
 * refs, packed-refs with peeled lines, symbolic refs, annotated and light
 * tags, a branch and a tag of one name, a branch named like an id, a ref to
 * a tree, commits stored as deltas, a pack index with 64-bit offsets, a
 * worktree, a bare repository, a search upward, a repository of another
 * user. Whenever gitref answers, its commit and tree must be libgit2's
 * (git_repository_open_ext(dir, 0), git_revparse_single, peeled to a commit,
 * as repo.c asks); the forms it is meant to answer, it must answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <git2.h>

#include "kiln/gitref.h"

const char *__lsan_default_suppressions(void);

/* libgit2 1.5 leaks when it opens a repository of format version 1 (a PCRE2
 * match block of check_extensions) and on some refusals: the oracle's
 * leaks. gitref calls no libgit2, so its own would still show. */
const char *__lsan_default_suppressions(void)
{
	return "leak:libpcre2-8.so\nleak:libgit2.so\n";
}

static char top[64];
static unsigned answered, fell_back;

/* runs a shell command in top; fails the test unless it succeeds */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[4096];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && ", top);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	if (system(cmd) != 0) {
		fprintf(stderr, "failed: %s\n", cmd);
		fail();
	}
}

/* the first line of a command's output */
static void out(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void out(char *buf, size_t size, const char *fmt, ...)
{
	char cmd[4096];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && ", top);
	va_list ap;
	FILE *p;

	va_start(ap, fmt);
	vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(buf, (int)size, p));
	buf[strcspn(buf, "\n")] = '\0';
	pclose(p);
}

/* what kiln-changes.so finds: 0 and the commit and its tree, or -1 */
static int libgit2(const char *dir, const char *rev, char id[41], char tree[41])
{
	git_repository *repo = NULL;
	git_object *obj = NULL, *peeled = NULL;
	git_tree *t = NULL;
	int r = -1;

	if (git_repository_open_ext(&repo, dir, 0, NULL) < 0 ||
	    git_revparse_single(&obj, repo, rev) < 0 ||
	    git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT) < 0 ||
	    git_commit_tree(&t, (git_commit *)peeled) < 0)
		goto out;
	git_oid_tostr(id, 41, git_object_id(peeled));
	git_oid_tostr(tree, 41, git_tree_id(t));
	r = 0;
out:
	git_tree_free(t);
	git_object_free(peeled);
	git_object_free(obj);
	git_repository_free(repo);
	return r;
}

static int fast(const char *dir, const char *rev, char id[41], char tree[41], struct kiln_err *err)
{
	struct gitref *g = NULL;
	int r = gitref_open(dir, &g, err);

	if (r == 0)
		r = gitref_commit(g, rev, id, err);
	if (r == 0)
		r = gitref_tree(g, id, tree, err);
	gitref_free(g);
	return r;
}

enum expect { MAY, YES, NO };

/* rev in repository dir (under top): gitref's answer, if any, is libgit2's;
 * YES: it answers; NO: it leaves rev to libgit2 (a form it does not read) */
static void check(const char *dir, const char *rev, enum expect want)
{
	char path[256], id[41] = "", tree[41] = "", lid[41] = "", ltree[41] = "";
	struct kiln_err err = {0};
	int r, lr;

	snprintf(path, sizeof(path), "%s/%s", top, dir);
	r = fast(path, rev, id, tree, &err);
	lr = libgit2(path, rev, lid, ltree);
	if (r == 0 && want == NO) {
		fprintf(stderr, "%s %s: gitref answered %s\n", dir, rev, id);
		fail();
	}
	if (r == 0) {
		answered++;
		if (lr < 0 || strcmp(id, lid) != 0 || strcmp(tree, ltree) != 0) {
			fprintf(stderr, "%s %s: gitref %s (tree %s), libgit2 %s %s (tree %s)\n",
				dir, rev, id, tree, lr < 0 ? "failed" : "found", lid, ltree);
			fail();
		}
	} else {
		fell_back++;
		if (want == YES) {
			fprintf(stderr, "%s %s: gitref did not answer: %s\n", dir, rev, err.msg);
			fail();
		}
	}
}

#define GIT "git -c user.name=t -c user.email=t@example.org -c advice.detachedHead=false "

static int setup(void **state)
{
	char home[128];

	(void)state;
	snprintf(top, sizeof(top), "/tmp/kiln-test-gitref.XXXXXX");
	assert_non_null(mkdtemp(top));
	/* the machine's ~/.gitconfig is no part of the test (gitref gives up
	 * on an include, say) */
	snprintf(home, sizeof(home), "%s/home", top);
	setenv("HOME", home, 1);
	unsetenv("XDG_CONFIG_HOME");
	git_libgit2_init();
	sh("mkdir home && : >home/.gitconfig");
	/* r: two commits of one tree, one that differs, tags of each kind */
	sh(GIT "init -q -b main r && cd r && mkdir -p app/sub && echo a >app/f && echo s "
	       ">app/sub/g && " GIT "add -A && " GIT "commit -qm one && " GIT
	       "commit -q --allow-empty -m same && " GIT "tag light && " GIT
	       "tag -a -m annotated annotated && echo b >app/f && " GIT "commit -qam two");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sh("cd / && rm -rf '%s'", top);
	git_libgit2_shutdown();
	return 0;
}

static void loose_refs_and_objects(void **state)
{
	char id[41];

	(void)state;
	out(id, sizeof(id), "git -C r rev-parse HEAD~1");
	check("r", "HEAD", YES);
	check("r", "main", YES);
	check("r", "heads/main", YES);
	check("r", "refs/heads/main", YES);
	check("r", "light", YES);
	check("r", "tags/light", YES);
	check("r", id, YES);
	check("r/app/sub", "HEAD", YES); /* searched upward */
	for (const char *const *f =
		 (const char *const[]){"HEAD~1", "HEAD^", "main~2", "HEAD^^", "HEAD~~", "HEAD~0",
				       "HEAD^0", "HEAD~1^", "light~1", "HEAD^1~1", NULL};
	     *f; f++)
		check("r", *f, YES);
	/* answered by libgit2 only */
	for (const char *const *f =
		 (const char *const[]){"annotated", "annotated~1", "@", "main@{0}", "HEAD:app",
				       "HEAD^{tree}", "HEAD~3", "HEAD^2", "HEAD~1a", "~1",
				       "HEAD~1234567", "nosuch", "HEAD@{1}", NULL};
	     *f; f++)
		check("r", *f, NO);
	/* a merge: its second parent */
	sh("cd r && git checkout -q -b other HEAD~1 && echo o >o && " GIT "add o && " GIT
	   "commit -qm other && git checkout -q main && " GIT "merge -q --no-edit other && git "
	   "branch -D -q other");
	check("r", "HEAD^2", YES);
	check("r", "HEAD^2~1", YES);
	check("r", "HEAD^1", YES);
	check("r", "HEAD^3", NO);
	sh("cd r && git reset -q --hard HEAD^1");
	id[7] = '\0'; /* a short id */
	check("r", id, NO);
	assert_int_not_equal(answered, 0);
}

static void packed_refs_and_objects(void **state)
{
	char id[41];

	(void)state;
	sh("git clone -q --no-local r p && cd p && " GIT "branch side HEAD~1 && " GIT
	   "gc -q && test -f packed-refs -o -f .git/packed-refs && grep -q '^\\^' .git/packed-refs "
	   "&& ! ls .git/refs/tags/* 2>/dev/null");
	out(id, sizeof(id), "git -C p rev-parse side");
	check("p", "HEAD", YES);
	check("p", "main", YES);
	check("p", "side", YES);
	check("p", "origin/main", YES);
	check("p", "origin", YES); /* refs/remotes/origin/HEAD, a loose symbolic ref */
	check("p", "light", YES);
	check("p", id, YES);
	check("p", "annotated", NO);
	/* a loose ref wins over its packed line */
	sh("cd p && git update-ref refs/heads/side HEAD && test -f .git/refs/heads/side");
	check("p", "side", YES);
	/* a file that says "sorted" and is not: libgit2 searches it by halves
	 * and misses names (found by fuzz_gitref) */
	sh("cd p/.git && cp packed-refs sorted && printf '%%s refs/heads/aaa\n' $(git rev-parse "
	   "HEAD) >>packed-refs");
	check("p", "main", NO);
	sh("cd p/.git && mv sorted packed-refs");
	check("p", "main", YES);
	/* a loose commit one byte longer than its header says */
	sh("cd p && git cat-file commit HEAD >body && echo more >>body && c=$(git hash-object -t "
	   "commit body) && git update-ref --no-deref refs/heads/long $(git rev-parse HEAD) && "
	   "printf '%%s\\n' $c >.git/refs/heads/long && python3 -c "
	   "\"import sys, zlib; b = open('body', 'rb').read(); "
	   "sys.stdout.buffer.write(zlib.compress(b'commit %%d\\0' %% (len(b) - 1) + b))\" "
	   ">long && mkdir -p .git/objects/${c%%${c#??}} && rm -f "
	   ".git/objects/${c%%${c#??}}/${c#??} "
	   "&& mv long .git/objects/${c%%${c#??}}/${c#??} && ! git cat-file -p $c >/dev/null 2>&1");
	check("p", "long", NO);
}

static void symbolic_and_ambiguous_refs(void **state)
{
	char id[41], tree[41];

	(void)state;
	out(id, sizeof(id), "git -C r rev-parse HEAD~2");
	out(tree, sizeof(tree), "git -C r rev-parse 'HEAD^{tree}'");
	sh("cd r && git symbolic-ref refs/heads/s1 refs/heads/s2 && git symbolic-ref "
	   "refs/heads/s2 refs/heads/main && git branch dup HEAD~1 && git tag dup HEAD~2 && git "
	   "branch %s HEAD~1 && git update-ref refs/tags/treeref %s && git symbolic-ref "
	   "refs/heads/dangling refs/heads/none",
	   id, tree);
	check("r", "s1", YES);
	check("r", "dup", YES); /* refs/tags/ before refs/heads/ */
	check("r", "heads/dup", YES);
	check("r", id, NO); /* a branch named like an id */
	check("r", "treeref", NO);
	check("r", "dangling", NO);
	/* a chain longer than gitref follows */
	sh("cd r && for i in 1 2 3 4 5 6 7; do git symbolic-ref refs/heads/c$i refs/heads/c$((i + "
	   "1)); done && git symbolic-ref refs/heads/c8 refs/heads/main");
	check("r", "c1", NO);
	check("r", "c4", YES);
}

/* git deltifies commits that look alike (here 59 of 60, in chains up to
 * 50 deep): gitref resolves them, and reads each as libgit2 does */
static void commits_stored_as_deltas(void **state)
{
	char line[256], id[41];
	unsigned deltas = 0;
	FILE *p;

	(void)state;
	sh("git init -q -b main d && cd d && for i in $(seq 1 60); do echo $i >f && " GIT
	   "add f && " GIT "commit -qm \"$(seq 1 40 | sed 's/^/a long and similar commit message "
	   "line /')\"; done && git repack -qadf --depth=50 --window=250");
	sh("cd d && git verify-pack -v .git/objects/pack/*.idx | awk '$2 == \"commit\" && NF >= "
	   "7' >deltas");
	p = fopen(strcat(strcpy(line, top), "/d/deltas"), "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p)) {
		memcpy(id, line, 40);
		id[40] = '\0';
		check("d", id, YES);
		deltas++;
	}
	fclose(p);
	fprintf(stderr, "%u commits stored as deltas\n", deltas);
	assert_int_not_equal(deltas, 0);
	p = popen("git -C \"$HOME/../d\" rev-list HEAD", "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p)) {
		line[40] = '\0';
		check("d", line, YES);
	}
	pclose(p);
	check("d", "HEAD", YES);
	check("d", "HEAD~5", YES);
	check("d", "HEAD~59", YES);
	/* deltas by id (REF_DELTA, pack type 7) instead of by offset */
	sh("cd d && git -c repack.useDeltaBaseOffset=false repack -qadf --depth=50 --window=250");
	for (int k = 0; k <= 59; k += 7) {
		char rev[16];
		snprintf(rev, sizeof(rev), "HEAD~%d", k);
		check("d", rev, YES);
	}
}

/* index-pack --index-version=2,OFFSET puts every offset above OFFSET in the
 * 64-bit table */
static void large_offsets(void **state)
{
	(void)state;
	sh("git clone -q --no-local --bare r big.git && cd big.git && git repack -qad && for i in "
	   "objects/pack/*.pack; do git index-pack -o tmp.idx --index-version=2,12 $i && chmod "
	   "u+w ${i%%.pack}.idx && mv tmp.idx ${i%%.pack}.idx; done >/dev/null && git fsck "
	   "--no-progress");
	check("big.git", "HEAD", YES);
	check("big.git", "main~2", YES);
	check("big.git", "light", YES);
}

static void worktree_bare_and_others(void **state)
{
	(void)state;
	sh("cd r && git worktree add -q ../wt HEAD~1");
	check("wt", "HEAD", NO);
	check("wt", "main", NO);
	sh("git clone -q --bare r bare.git");
	check("bare.git", "HEAD", YES);
	check("bare.git", "light", YES);
	/* a config gitref does not read */
	sh("git clone -q r x && git -C x config extensions.noop true && git -C x config "
	   "core.repositoryformatversion 1");
	check("x", "HEAD", NO);
	sh("git clone -q r y && printf '[include]\\n\\tpath = other\\n' >>y/.git/config");
	check("y", "HEAD", NO);
	/* another user's repository: libgit2's safe.directory check */
	if (geteuid() == 0) {
		sh("git clone -q r z && chown -R 65534 z");
		check("z", "HEAD", NO);
	}
	check("nowhere", "HEAD", NO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(loose_refs_and_objects),
	    cmocka_unit_test(packed_refs_and_objects),
	    cmocka_unit_test(symbolic_and_ambiguous_refs),
	    cmocka_unit_test(commits_stored_as_deltas),
	    cmocka_unit_test(large_offsets),
	    cmocka_unit_test(worktree_bare_and_others),
	};
	int r = cmocka_run_group_tests(tests, setup, teardown);

	fprintf(stderr, "gitref answered %u, left %u to libgit2\n", answered, fell_back);
	return r;
}
