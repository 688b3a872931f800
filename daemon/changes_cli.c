/* changes_cli.c (plan): `kiln changes` options and --json output, shared by
 * the front and kiln-changes.so so that both parse and print alike. */
#include <getopt.h>
#include <stdio.h>

#include "kiln/changes_cli.h"
#include "kiln/manifest.h"

bool changes_cli_parse(const struct cli_call *call, struct changes_cli *ret, int *rc)
{
	static const struct option opts[] = {
	    {"repo", required_argument, NULL, 'r'}, {"manifest", required_argument, NULL, 'm'},
	    {"json", no_argument, NULL, 'j'},	    {"no-cache", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},	    {NULL, 0, NULL, 0},
	};
	struct changes_cli a = {
	    .repo_dir = ".", .manifest_name = "manifest.yaml", .use_cache = true};
	int argc = call->argc, c;
	char **argv = call->argv;

	*rc = CLI_EXIT_USAGE;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			a.repo_dir = optarg;
			break;
		case 'm':
			a.manifest_name = optarg;
			break;
		case 'j':
			a.json = true;
			break;
		case 'n':
			a.use_cache = false;
			break;
		case 'h':
			call->help(stdout);
			*rc = 0;
			return false;
		default:
			fprintf(stderr, "kiln changes: see 'kiln changes --help'\n");
			return false;
		}
	}
	if (!changes_cli_check("changes", argc - optind, a.manifest_name))
		return false;
	a.from = argv[optind];
	a.to = argv[optind + 1];
	*ret = a;
	*rc = 0;
	return true;
}

bool changes_cli_check(const char *cmd, int nargs, const char *manifest_name)
{
	if (nargs != 2) {
		fprintf(stderr,
			"kiln %s: expected FROM and TO, got %d argument%s; see 'kiln %s --help'\n",
			cmd, nargs, nargs == 1 ? "" : "s", cmd);
		return false;
	}
	if (!manifest_valid_file_name(manifest_name)) {
		fprintf(stderr, "kiln %s: --manifest '%s' must be a file name, not a path\n", cmd,
			manifest_name);
		return false;
	}
	return true;
}

void changes_cli_print_json(const char *from, const char *to, json_t *images, json_t *errors)
{
	json_t *o = json_object();

	json_object_set_new(o, "from", json_string(from));
	json_object_set_new(o, "to", json_string(to));
	json_object_set_new(o, "images", images);
	json_object_set_new(o, "errors", errors);
	json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(o);
}
