/* oneshot.h (build): `kiln build FROM TO`, the builder in the foreground for CI
 * jobs. It builds (and with push, pushes) every affected image of a
 * changeset on a Docker engine, in dependency order, streaming each job's
 * output to stdout with the image's name as a prefix, and ends with a
 * summary. No daemon and no state: a dependent whose base failed is skipped. */
#ifndef KILN_ONESHOT_H
#define KILN_ONESHOT_H

#include "kiln/changes.h"
#include "kiln/config.h"

struct oneshot_opts {
	const char *repo_path; /* the git directory the changeset came from */
	const char *commit;    /* TO, full sha */
	const char *manifest_name;
	const char *source_url;		     /* org.opencontainers.image.source; may be NULL */
	const char *docker_host;	     /* NULL: $DOCKER_HOST or the default socket */
	const char *builder;		     /* auto | buildkit | classic; NULL: auto */
	const char *network;		     /* default | none | host; NULL: the engine's default */
	const struct config_secret *secrets; /* --secret: what manifests may grant */
	size_t nsecrets;
	bool push;
	bool pull;     /* --pull */
	bool no_cache; /* --no-build-cache */
	bool overwrite_tags;
	unsigned concurrency;
	unsigned retries;
	uint64_t retry_delay_ms;
	uint64_t test_timeout_ms;
};

/* Runs the builds; returns 0 when every one succeeded, 1 when any failed or
 * was skipped, 2 when the engine client cannot be set up. */
int oneshot_run(const struct oneshot_opts *o, const struct changeset *cs);

#endif
