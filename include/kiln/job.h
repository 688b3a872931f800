/* job.h (build -> push): one image's build on a Docker engine, from tag check to push.
 *
 *   check (is <registry>/<name>:<version> already in the registry?)
 *   -> build (POST /build, the context streamed from the commit's tree)
 *   -> test (the manifest's test.command in a container of the image)
 *   -> push (each tag) -> done
 *
 * A job runs on the loop and never blocks it; job_prepare, which reads the
 * manifest from git, is the one blocking step and runs on a worker. The
 * daemon's builder and `kiln build` both drive jobs. */
#ifndef KILN_JOB_H
#define KILN_JOB_H

#include <uv.h>

#include "kiln/bktrace.h"
#include "kiln/config.h"
#include "kiln/docker.h"
#include "kiln/manifest.h"
#include "kiln/session.h"

enum job_state {
	JOB_CHECK,
	JOB_BUILD,
	JOB_TEST,
	JOB_PUSH,
	JOB_CLEANUP, /* removing the smoke test's container */
	JOB_DONE,
};

const char *job_state_str(enum job_state s);

struct job_spec {
	int64_t id;	     /* for names and messages; 0 in `kiln build` */
	char *repo_path;     /* the repository the context comes from */
	char *commit;	     /* full sha */
	char *subject;	     /* the commit's summary; NULL: none */
	char *source_url;    /* org.opencontainers.image.source; may be NULL */
	char *path;	     /* the image folder, "" for the root */
	char *manifest_file; /* "<path>/manifest.yaml", for messages */
	struct manifest m;
	bool push;
	bool check_tag;	       /* refuse to overwrite an existing version tag */
	bool pushed_before;    /* kiln itself pushed this version from this commit */
	char *registry_auth;   /* X-Registry-Auth for m.registry's host ("e30=" for none) */
	char *registry_config; /* X-Registry-Config (auths for base image pulls) */
	uint64_t test_timeout_ms;
	enum docker_builder builder; /* the manifest's, else the policy's; AUTO: the engine's */
	char *network;		     /* networkmode; NULL: the engine's default */
	bool pull;		     /* pull=1: base images pulled even when present */
	bool no_cache;		     /* nocache=1: no step from the build cache */
	/* what the BuildKit session hands out: registry credentials and the
	 * granted secrets' values (read in job_prepare; wiped with the spec) */
	struct session_data session;
};

struct store;

/* How the daemon or `kiln build` wants an image built: job_prepare turns
 * it, with the manifest, into the whole spec. */
struct job_policy {
	int64_t id; /* the build's, for names and messages; 0 in `kiln build` */
	bool push;
	bool overwrite_tags;	/* the repository allows replacing a version tag */
	bool dependency;	/* rebuilt because a base changed: its tags are pushed again */
	const char *source_url; /* org.opencontainers.image.source; may be NULL */
	/* credentials by registry host; hosts not listed come from the user's
	 * ~/.docker/config.json */
	const struct config_registry *registries;
	size_t nregistries;
	uint64_t test_timeout_ms;
	/* builds.builder and builds.network (a manifest's own override them);
	 * NULL: auto and the engine's default network */
	const char *builder;
	const char *network;
	bool pull;     /* builds.pull, kiln build --pull */
	bool no_cache; /* kiln build --no-build-cache */
	/* the build secrets a manifest may grant (kilnd.yaml's, or kiln build
	 * --secret), and how to say that one is missing */
	const struct config_secret *secrets;
	size_t nsecrets;
	const char *secrets_where; /* "the repository's secrets in kilnd.yaml" */
	/* asked whether kiln itself pushed this version from this commit, when
	 * the tag is checked; NULL: never (`kiln build` keeps no record) */
	struct store *store;
};

/* Reads and checks the manifest of the image folder `path` at `commit` (any
 * revision libgit2 resolves; spec.commit gets the full sha), then, unless
 * policy is NULL, fills the rest of the spec from the policy: push, the tag
 * check and whether kiln pushed this version before, registry credentials.
 * Blocking (git, a file, the store): call from a worker. Errors: -ENOENT (no
 * such revision or manifest), -EINVAL (a bad manifest), -EAGAIN (the store
 * could not answer: worth retrying), -EIO; ret is untouched on failure. */
int job_prepare(const char *repo_path, const char *commit, const char *path,
		const char *manifest_name, const struct job_policy *policy, struct job_spec *ret,
		struct kiln_err *err);
void job_spec_done(struct job_spec *s);

struct job;
typedef void job_log_cb(struct job *j, const char *line, size_t len, void *arg);
typedef void job_done_cb(struct job *j, void *arg);

struct job_result {
	int code;	/* 0: built (and pushed); -ECANCELED; other: failed */
	bool transient; /* worth retrying: the engine or registry failed, not the build */
	char error[1024];
	char image_id[80];
	char digest[80];  /* of the version tag, when pushed */
	char builder[16]; /* "classic" or "buildkit" once the build started, else "" */
};

/* Takes the spec (it is freed with the job). The log callback gets every
 * line of the build's output; done is called once, on the loop. */
struct job *job_start(uv_loop_t *loop, struct docker *d, struct job_spec *spec, job_log_cb *log,
		      job_done_cb *done, void *arg);
/* Aborts the transfer in flight (the engine stops a build when the
 * connection closes), removes the test container, then ends as cancelled. */
void job_cancel(struct job *j);
const struct job_result *job_result(const struct job *j);
/* Call after done (or never started): frees everything. */
struct job *job_free(struct job *j);

/* The engine's progress streams (POST /build, POST /images/{name}/push):
 * NDJSON, one object per line. Exposed for the fuzzer. */
enum job_stream { JOB_STREAM_BUILD, JOB_STREAM_BUILDKIT, JOB_STREAM_PUSH };
typedef void job_show_cb(const char *line, size_t len, void *arg);
struct job_reply {
	enum job_stream kind;
	/* build: the image id (aux.ID; BuildKit: moby.image.id's); push: the
	 * digest (aux.Digest); the last seen */
	char id[80];
	char error[1024];      /* the last error line's text */
	struct bktrace *trace; /* BuildKit: decodes moby.buildkit.trace; NULL: not shown */
};
/* Consumes one line: what is worth showing goes to show, a line per call.
 * Returns true when the line reported an error (its text in rp->error). */
bool job_reply_line(struct job_reply *rp, const char *line, size_t len, job_show_cb *show,
		    void *arg);

#endif
