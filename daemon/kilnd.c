/* kilnd.c: the daemon's entry point. For now it only identifies itself; the
 * event loop, configuration and watching arrive with the daemon issue. */
#include <stdio.h>
#include <string.h>

#include "kiln/common.h"

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("kilnd %s\n", KILN_VERSION);
		return 0;
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: kilnd --version\n\n"
		       "The kiln daemon. This build can only report its version.\n");
		return 0;
	}
	fprintf(stderr, "usage: kilnd --version\n");
	return 2;
}
