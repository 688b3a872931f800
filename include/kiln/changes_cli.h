/* changes_cli.h (plan): the command line and the JSON output of
 * `kiln changes`, one definition compiled into both kiln's front (its fast
 * path for an unchanged range, gitref.h) and kiln-changes.so. Needs libc and
 * jansson only. */
#ifndef KILN_CHANGES_CLI_H
#define KILN_CHANGES_CLI_H

#include <stdbool.h>

#include <jansson.h>

#include "kiln/cli.h"

struct changes_cli {
	const char *repo_dir;	   /* --repo, default "." */
	const char *manifest_name; /* --manifest, default manifest.yaml */
	const char *from, *to;
	bool json;	/* --json */
	bool use_cache; /* not --no-cache */
};

/* Parses call's arguments (getopt_long: argv may be permuted). true: run
 * with *ret; false: the command is over with exit status *rc (--help was
 * printed, or a usage error on stderr). */
bool changes_cli_parse(const struct cli_call *call, struct changes_cli *ret, int *rc);

/* The checks `kiln changes` and `kiln build` share once their options are
 * read: FROM and TO, and a --manifest that is a file name. false: the usage
 * error is on stderr, named for cmd ("changes", "build"). */
bool changes_cli_check(const char *cmd, int nargs, const char *manifest_name);

/* Prints the --json object {from, to, images, errors} to stdout; takes
 * images and errors (arrays). */
void changes_cli_print_json(const char *from, const char *to, json_t *images, json_t *errors);

#endif
