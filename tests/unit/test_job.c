/* test_job.c (build): job_prepare on a real repository (revisions, the policy's
 * part of the spec) and the engine reply parsers the job and client use. */
#include <errno.h>
#include <git2.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kiln/buf.h"
#include "kiln/docker.h"
#include "kiln/job.h"

static char dir[] = "/tmp/kiln-test-job.XXXXXX";
static char sha[GIT_OID_HEXSZ + 1];

/* One commit: app/manifest.yaml. */
static int make_repo(void **state)
{
	static const char manifest[] = "name: app\nversion: \"2.0\"\nregistry: reg.example/team\n";
	git_repository *repo = NULL;
	git_treebuilder *tb = NULL, *root = NULL;
	git_oid blob, sub, tree, commit;
	git_tree *t = NULL;
	git_signature *sig = NULL;

	(void)state;
	git_libgit2_init();
	if (!mkdtemp(dir))
		return -1;
	if (git_repository_init(&repo, dir, 1) < 0 ||
	    git_blob_create_from_buffer(&blob, repo, manifest, strlen(manifest)) < 0 ||
	    git_treebuilder_new(&tb, repo, NULL) < 0 ||
	    git_treebuilder_insert(NULL, tb, "manifest.yaml", &blob, GIT_FILEMODE_BLOB) < 0 ||
	    git_treebuilder_write(&sub, tb) < 0 || git_treebuilder_new(&root, repo, NULL) < 0 ||
	    git_treebuilder_insert(NULL, root, "app", &sub, GIT_FILEMODE_TREE) < 0 ||
	    git_treebuilder_write(&tree, root) < 0 || git_tree_lookup(&t, repo, &tree) < 0 ||
	    git_signature_new(&sig, "t", "t@example", 1700000000, 0) < 0 ||
	    git_commit_create_v(&commit, repo, "HEAD", sig, sig, NULL, "one", t, 0) < 0)
		return -1;
	git_oid_tostr(sha, sizeof(sha), &commit);
	git_signature_free(sig);
	git_tree_free(t);
	git_treebuilder_free(root);
	git_treebuilder_free(tb);
	git_repository_free(repo);
	return 0;
}

static int remove_repo(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);

	(void)state;
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(cmd);
	git_libgit2_shutdown();
	return 0;
}

static void prepare_manifest_only(void **state)
{
	struct job_spec s;
	struct kiln_err err = {0};
	char shortsha[8];

	(void)state;
	snprintf(shortsha, sizeof(shortsha), "%.7s", sha);
	assert_int_equal(job_prepare(dir, shortsha, "app", "manifest.yaml", NULL, &s, &err), 0);
	assert_string_equal(s.commit, sha); /* the short sha resolved to the full one */
	assert_string_equal(s.m.name, "app");
	assert_string_equal(s.manifest_file, "app/manifest.yaml");
	assert_false(s.push);
	assert_null(s.registry_auth);
	job_spec_done(&s);
	assert_int_equal(job_prepare(dir, "HEAD", "app", "manifest.yaml", NULL, &s, &err), 0);
	assert_string_equal(s.commit, sha);
	job_spec_done(&s);
	assert_int_equal(job_prepare(dir, "HEAD", "nope", "manifest.yaml", NULL, &s, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "no image folder 'nope' at "));
	assert_int_equal(job_prepare(dir, "no-such-rev", "app", "manifest.yaml", NULL, &s, &err),
			 -ENOENT);
}

static void prepare_policy(void **state)
{
	struct job_policy p = {.id = 7,
			       .push = true,
			       .source_url = "https://git.example/images",
			       .test_timeout_ms = 5000};
	struct job_spec s;
	struct kiln_err err = {0};

	(void)state;
	assert_int_equal(job_prepare(dir, sha, "app", "manifest.yaml", &p, &s, &err), 0);
	assert_int_equal(s.id, 7);
	assert_true(s.push);
	assert_true(s.check_tag);
	assert_false(s.pushed_before);
	assert_string_equal(s.source_url, "https://git.example/images");
	assert_non_null(s.registry_auth);
	assert_non_null(s.registry_config);
	assert_int_equal(s.test_timeout_ms, 5000);
	/* no builder or network in the policy or the manifest: auto, the engine's */
	assert_int_equal(s.builder, DOCKER_BUILDER_AUTO);
	assert_null(s.network);
	job_spec_done(&s);
	p.builder = "buildkit";
	p.network = "none";
	assert_int_equal(job_prepare(dir, sha, "app", "manifest.yaml", &p, &s, &err), 0);
	assert_int_equal(s.builder, DOCKER_BUILDER_BUILDKIT);
	assert_string_equal(s.network, "none");
	job_spec_done(&s);
	p.network = "default"; /* sends nothing: the engine's default */
	assert_int_equal(job_prepare(dir, sha, "app", "manifest.yaml", &p, &s, &err), 0);
	assert_null(s.network);
	job_spec_done(&s);
	p.builder = p.network = NULL;
	/* a dependency rebuild and an overwriting repository push without the check */
	p.dependency = true;
	assert_int_equal(job_prepare(dir, sha, "app", "manifest.yaml", &p, &s, &err), 0);
	assert_false(s.check_tag);
	job_spec_done(&s);
	p.dependency = false;
	p.overwrite_tags = true;
	assert_int_equal(job_prepare(dir, sha, "app", "manifest.yaml", &p, &s, &err), 0);
	assert_false(s.check_tag);
	job_spec_done(&s);
	p.overwrite_tags = false;
	p.push = false;
	assert_int_equal(job_prepare(dir, sha, "app", "manifest.yaml", &p, &s, &err), 0);
	assert_false(s.check_tag);
	job_spec_done(&s);
}

static void collect(const char *line, size_t len, void *arg)
{
	struct buf *b = arg;

	buf_append(b, line, len);
	buf_putc(b, '|');
}

static bool feed(struct job_reply *rp, const char *line, struct buf *shown)
{
	return job_reply_line(rp, line, strlen(line), collect, shown);
}

static void reply_build(void **state)
{
	struct job_reply rp = {.kind = JOB_STREAM_BUILD};
	struct buf shown = {0};

	(void)state;
	assert_false(feed(&rp, "{\"stream\":\"Step 1/2\\nok\\n\"}", &shown));
	assert_false(
	    feed(&rp, "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":1}}", &shown));
	assert_false(feed(&rp, "{\"aux\":{\"ID\":\"sha256:abc\"}}", &shown));
	assert_false(feed(&rp, "not json", &shown));
	assert_string_equal(rp.id, "sha256:abc");
	assert_true(
	    feed(&rp, "{\"errorDetail\":{\"message\":\"boom\"},\"error\":\"boom\"}", &shown));
	assert_string_equal(rp.error, "boom");
	/* progress bars are not shown; plain lines and errors are */
	assert_string_equal(shown.p, "Step 1/2|ok|not json|boom|");
	buf_done(&shown);
}

static void reply_push(void **state)
{
	struct job_reply rp = {.kind = JOB_STREAM_PUSH};
	struct buf shown = {0};

	(void)state;
	assert_false(
	    feed(&rp, "{\"status\":\"Pushed\",\"progressDetail\":{},\"id\":\"l1\"}", &shown));
	assert_false(
	    feed(&rp, "{\"aux\":{\"Tag\":\"2.0\",\"Digest\":\"sha256:d\",\"ID\":\"x\"}}", &shown));
	assert_false(feed(&rp, "not json", &shown));
	assert_string_equal(rp.id, "sha256:d");
	assert_string_equal(shown.p, "l1: Pushed|");
	buf_done(&shown);
}

static void demux(void **state)
{
	static const char frames[] = "\1\0\0\0\0\0\0\3abc"
				     "\2\0\0\0\0\0\0\2de"
				     "\1\0\0\0\0\0\0\11cut"; /* says 9, has 3 */
	struct buf out = {0};

	(void)state;
	docker_demux_logs(frames, sizeof(frames) - 1, &out);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.p, "abcdecut", 8);
	buf_done(&out);
	docker_demux_logs("\1\0\0", 3, &out); /* a partial header */
	assert_int_equal(out.len, 0);
	buf_done(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(prepare_manifest_only),
	    cmocka_unit_test(prepare_policy),
	    cmocka_unit_test(reply_build),
	    cmocka_unit_test(reply_push),
	    cmocka_unit_test(demux),
	};
	return cmocka_run_group_tests(tests, make_repo, remove_repo);
}
