/* cli.h (main): the contract between kiln's front (kiln.c) and the modules
 * it loads for the commands that run here. The front links only libc and
 * jansson, so `kiln --help` and the status socket commands load nothing
 * else; `kiln changes` loads kiln-changes.so (libgit2, libyaml) and
 * `kiln build` kiln-build.so (the engine client too: libcurl, libarchive,
 * libuv, ...), each when the command runs. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stdio.h>

struct changeset;
struct git_repository;
struct kiln_err;

enum { CLI_EXIT_INVALID = 1, CLI_EXIT_USAGE = 2 };

/* A command's arguments as the front found them: argv[0] is the command's
 * name; help prints the command's --help text. */
struct cli_call {
	int argc;
	char **argv;
	void (*help)(FILE *f);
};

/* A module's one exported function: the command's exit status. */
typedef int cli_main_fn(const struct cli_call *call);

cli_main_fn cli_changes_main; /* kiln-changes.so */
cli_main_fn cli_build_main;   /* kiln-build.so */

/* The changeset FROM..TO of the repository at repo_dir, with the catalog
 * cache under its git directory unless use_cache is false. The caller frees
 * *ret_repo (git_repository_free) and *ret (changeset_done). */
int cli_plan(const char *repo_dir, const char *manifest_name, bool use_cache, const char *from_rev,
	     const char *to_rev, struct git_repository **ret_repo, struct changeset *ret,
	     struct kiln_err *err);

#endif
