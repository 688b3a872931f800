/* test_manifest.c: manifest.yaml parsing, every error path, reference building. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln/manifest.h"
#include "kiln/yaml.h"

static int parse(const char *text, const char *dir, struct manifest *m, struct kiln_diags *d)
{
	return manifest_parse(text, strlen(text), "img/manifest.yaml", dir, m, d);
}

/* Parses text expecting failure; asserts some diag is at line:col and contains needle. */
static void expect_error(const char *text, unsigned line, unsigned col, const char *needle)
{
	struct manifest m;
	struct kiln_diags d = {0};
	bool found = false;

	assert_int_equal(parse(text, "img", &m, &d), -EINVAL);
	assert_true(d.n > 0);
	for (size_t i = 0; i < d.n; i++) {
		assert_string_equal(d.v[i].path, "img/manifest.yaml");
		if (d.v[i].line == line && d.v[i].column == col && strstr(d.v[i].message, needle))
			found = true;
	}
	if (!found) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "got %u:%u: %s\n", d.v[i].line, d.v[i].column,
				d.v[i].message);
		fail_msg("no error at %u:%u containing '%s'", line, col, needle);
	}
	assert_null(m.name);
	kiln_diags_done(&d);
}

static void full_manifest(void **state)
{
	const char *text = "name: tools/jq\n"
			   "version: \"1.7.1\"\n"
			   "registry: registry.example.com:5000/team\n"
			   "tags: [latest, \"1.7\"]\n"
			   "dockerfile: ../shared/Dockerfile.jq\n"
			   "context: .\n"
			   "build_args: {KEY: value, N: 3}\n"
			   "target: runtime\n"
			   "platform: linux/amd64\n"
			   "labels: {team: infra}\n"
			   "test: {command: [\"jq\", \"--version\"]}\n"
			   "builder: buildkit\n"
			   "network: none\n"
			   "secrets: [pypi-token, npm.rc]\n";
	struct manifest m;
	struct kiln_diags d = {0};
	char *ref;

	(void)state;
	assert_int_equal(parse(text, "tools/jq", &m, &d), 0);
	assert_int_equal(m.nsecrets, 2);
	assert_string_equal(m.secrets[1], "npm.rc");
	assert_int_equal(d.n, 0);
	assert_string_equal(m.name, "tools/jq");
	assert_string_equal(m.version, "1.7.1");
	assert_string_equal(m.registry, "registry.example.com:5000/team");
	assert_int_equal(m.ntags, 2);
	assert_string_equal(m.tags[0], "latest");
	assert_string_equal(m.tags[1], "1.7");
	assert_string_equal(m.dockerfile, "tools/shared/Dockerfile.jq");
	assert_string_equal(m.context, "tools/jq");
	assert_int_equal(m.nbuild_args, 2);
	assert_string_equal(m.build_args[1].key, "N");
	assert_string_equal(m.build_args[1].value, "3");
	assert_string_equal(m.target, "runtime");
	assert_string_equal(m.platform, "linux/amd64");
	assert_string_equal(m.builder, "buildkit");
	assert_string_equal(m.network, "none");
	assert_string_equal(m.labels[0].key, "team");
	assert_int_equal(m.ntest_command, 2);
	assert_string_equal(m.test_command[1], "--version");
	ref = manifest_ref(&m, m.version);
	assert_string_equal(ref, "registry.example.com:5000/team/tools/jq:1.7.1");
	free(ref);
	manifest_done(&m);
}

static void defaults_and_root(void **state)
{
	struct manifest m;
	struct kiln_diags d = {0};

	(void)state;
	/* A bare 1.10 stays "1.10": the scalar's text, not a float. */
	assert_int_equal(parse("name: a\nversion: 1.10\nregistry: localhost\n", "", &m, &d), 0);
	assert_string_equal(m.version, "1.10");
	assert_string_equal(m.dockerfile, "Dockerfile");
	assert_string_equal(m.context, "");
	assert_int_equal(m.ntags, 0);
	assert_null(m.test_command);
	manifest_done(&m);
	assert_int_equal(parse("name: a\nversion: 1\nregistry: localhost\n", "x/y", &m, &d), 0);
	assert_string_equal(m.dockerfile, "x/y/Dockerfile");
	assert_string_equal(m.context, "x/y");
	manifest_done(&m);
}

static void errors_located(void **state)
{
	(void)state;
	expect_error("name: a\nversion: 1\nregistry: r\nbrnach: x\n", 4, 1, "unknown key 'brnach'");
	expect_error("name: a\nversion: 1\n", 1, 1, "missing required key 'registry'");
	expect_error("version: 1\nregistry: r\n", 1, 1, "missing required key 'name'");
	expect_error("name: [a]\nversion: 1\nregistry: r\n", 1, 7, "'name' must be a string");
	expect_error("name: a\nversion: {a: 1}\nregistry: r\n", 2, 10,
		     "'version' must be a scalar");
	expect_error("name: a\nversion:\nregistry: r\n", 2, 9, "not null");
	expect_error("name: Tools/JQ\nversion: 1\nregistry: r\n", 1, 7, "not a valid image name");
	expect_error("name: a\nversion: 'bad tag'\nregistry: r\n", 2, 10, "not a valid tag");
	expect_error("name: a\nversion: 1\nregistry: 'r:99999'\n", 3, 11, "host[:port]");
	expect_error("name: a\nversion: 1\nregistry: r\ntags: latest\n", 4, 7, "must be a list");
	expect_error("name: a\nversion: 1\nregistry: r\ntags: [ok, 'no good']\n", 4, 12,
		     "not a valid tag");
	expect_error("name: a\nversion: 1\nregistry: r\nsecrets: [tok, 'a/b']\n", 4, 16,
		     "secret id 'a/b' is not a valid secret id");
	expect_error("name: a\nversion: 1\nregistry: r\nsecrets: tok\n", 4, 10, "must be a list");
	expect_error("name: a\nversion: 1\nregistry: r\ndockerfile: ../../x\n", 4, 13,
		     "leaves the repository");
	expect_error("name: a\nversion: 1\nregistry: r\ncontext: /abs\n", 4, 10,
		     "must be a relative path");
	expect_error("name: a\nversion: 1\nregistry: r\ncontext: ../..\n", 4, 10,
		     "leaves the repository");
	expect_error("name: a\nversion: 1\nregistry: r\nbuild_args: [a]\n", 4, 13,
		     "must be a mapping");
	expect_error("name: a\nversion: 1\nregistry: r\nbuild_args: {A: [1]}\n", 4, 17,
		     "'A' must be a string");
	expect_error("name: a\nversion: 1\nregistry: r\nlabels: {'a=b': c}\n", 4, 10,
		     "invalid key");
	expect_error("name: a\nversion: 1\nregistry: r\ntarget: '1x'\n", 4, 9,
		     "not a build stage name");
	expect_error("name: a\nversion: 1\nregistry: r\nplatform: 'linux//amd64'\n", 4, 11,
		     "not a platform");
	expect_error("name: a\nversion: 1\nregistry: r\nbuilder: kit\n", 4, 10,
		     "'builder' is not auto, buildkit or classic");
	expect_error("name: a\nversion: 1\nregistry: r\nnetwork: bridge\n", 4, 10,
		     "'network' is not default, none or host");
	expect_error("name: a\nversion: 1\nregistry: r\ntest: {cmd: [a]}\n", 4, 8,
		     "unknown key 'cmd' in 'test'");
	expect_error("name: a\nversion: 1\nregistry: r\ntest: {command: []}\n", 4, 17,
		     "non-empty list");
	expect_error("name: a\nversion: 1\nregistry: r\ntest: {command: ls}\n", 4, 17,
		     "non-empty list");
	expect_error("name: a\nname: b\nversion: 1\nregistry: r\n", 2, 1, "duplicate key 'name'");
	expect_error("name: a\nversion: [1\nregistry: r\n", 3, 9, "YAML syntax error");
	expect_error("- a\n- b\n", 1, 1, "must be a mapping");
	expect_error("", 1, 1, "manifest is empty");
	expect_error("name: a\nversion: 1\nregistry: r\n---\nname: b\n", 4, 1,
		     "more than one YAML document");
	expect_error("name: &x a\nversion: 1\nregistry: *x\n", 0, 0, "aliases");
}

static void every_error_is_reported(void **state)
{
	struct manifest m;
	struct kiln_diags d = {0};

	(void)state;
	assert_int_equal(parse("name: A\nversion: 'x y'\nfoo: 1\n", "img", &m, &d), -EINVAL);
	/* bad name, bad version, unknown key, missing registry */
	assert_int_equal(d.n, 4);
	kiln_diags_done(&d);
}

static void size_and_nul_limits(void **state)
{
	struct manifest m;
	struct kiln_diags d = {0};
	size_t big = MANIFEST_SIZE_MAX + 1;
	char *text = malloc(big);

	(void)state;
	memset(text, ' ', big);
	assert_int_equal(manifest_parse(text, big, "m", "", &m, &d), -EINVAL);
	assert_non_null(strstr(d.v[0].message, "larger than"));
	kiln_diags_done(&d);
	assert_int_equal(manifest_parse("name: a\0", 8, "m", "", &m, &d), -EINVAL);
	assert_non_null(strstr(d.v[0].message, "NUL"));
	kiln_diags_done(&d);
	free(text);
}

static void grammars(void **state)
{
	(void)state;
	assert_true(manifest_valid_name("tools/jq"));
	assert_true(manifest_valid_name("a.b_c__d---e/f"));
	assert_false(manifest_valid_name("a_"));
	assert_false(manifest_valid_name("a___b"));
	assert_false(manifest_valid_name("/a"));
	assert_false(manifest_valid_name("a//b"));
	assert_false(manifest_valid_name(""));
	assert_true(manifest_valid_tag("1.7.1"));
	assert_true(manifest_valid_tag("_x-Y.1"));
	assert_false(manifest_valid_tag(".x"));
	assert_false(manifest_valid_tag("a:b"));
	assert_true(manifest_valid_registry("localhost"));
	assert_true(manifest_valid_registry("registry.example.com:5000/team/sub"));
	assert_true(manifest_valid_registry("127.0.0.1:5000"));
	assert_true(manifest_valid_registry("[::1]:5000/ns"));
	assert_false(manifest_valid_registry("reg:0"));
	assert_false(manifest_valid_registry("reg:"));
	assert_false(manifest_valid_registry("-reg.com"));
	assert_false(manifest_valid_registry("reg.com/"));
	assert_false(manifest_valid_registry("reg.com/Team"));
	assert_false(manifest_valid_registry("https://reg.com"));
}

/* The parser-less subset: what it takes must be libyaml's document, and what
 * libyaml reads otherwise (spaces, escapes, nesting, continuations) it must
 * leave to libyaml. */
static void simple_subset(void **state)
{
	static const char *const taken[] = {
	    "name: a\nversion: \"1.7\"\nregistry: r.example.com:5000/x\n",
	    "tags: [latest, \"1.7\"]\nlabels: {team: bench}\n",
	    "# c\nname: a  # trailing\n\n  # indented comment\nversion: '1 2'\n",
	    "k: []\nm: {}\nn: [ ]\n",
	    "k: a:b\nl: a-b+c=d~e\nm: .5\nn: /x\n",
	    "k: \"a # b: c\"\nl: 'x \\ \"y\"'\nm: {a: \"b c\", d: 'e'}\n",
	    "k: null\nl: true\nm: 010\n",
	    "k: v",
	};
	static const char *const left[] = {
	    "k: a b\n",	     "k:\n  x: 1\n", "k: \"a\\nb\"\n", "k: 'it''s'\n",
	    "k: [a, b,]\n",  "k: [a:b]\n",   "- a\n",	       "---\nk: v\n",
	    "k: v\r\n",	     "k: &x v\n",    "k: *x\n",	       "k: !t v\n",
	    "k: |\n  x\n",   "k: a#b\n",     "k: v#c\n",       "",
	    "# only\n",	     "k: -1\n",	     "k: [a, [b]]\n",  "k: {a: [b]}\n",
	    "k: \"a\" b\n",  "k:v\n",	     "k: a:\n",	       "k: v\n  more\n",
	    "k: 'a\n  b'\n", "\tk: v\n",     "k : v\n",	       "k: \xc3\xa9\n",
	    "k: [a\n, b]\n", "k: {a:b}\n",   "k: ~\n",	       "k: ?x\n",
	};
	struct kiln_diags d = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(taken) / sizeof(*taken); i++) {
		struct ydoc fast, full;

		if (ydoc_load_simple(&fast, taken[i], strlen(taken[i]), "m") != 0)
			fail_msg("not taken: %s", taken[i]);
		assert_int_equal(ydoc_load(&full, taken[i], strlen(taken[i]), "m", &d), 0);
		if (!ydoc_same(&fast, &full))
			fail_msg("not libyaml's document: %s", taken[i]);
		ydoc_done(&fast);
		ydoc_done(&full);
	}
	for (size_t i = 0; i < sizeof(left) / sizeof(*left); i++) {
		struct ydoc fast;

		if (ydoc_load_simple(&fast, left[i], strlen(left[i]), "m") != -ENOTSUP)
			fail_msg("taken: %s", left[i]);
	}
	assert_int_equal(d.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(full_manifest),	   cmocka_unit_test(defaults_and_root),
	    cmocka_unit_test(errors_located),	   cmocka_unit_test(every_error_is_reported),
	    cmocka_unit_test(size_and_nul_limits), cmocka_unit_test(grammars),
	    cmocka_unit_test(simple_subset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
