/* config.h (input): kilnd.yaml -> struct config. Every error is located
 * (file:line:col) and all are reported at once; secrets are read from files
 * (relative names inside $CREDENTIALS_DIRECTORY when it is set) and never
 * appear in messages. Every key is one row of config_keys[]: its parser,
 * where it lands, its range, its default and its one-line help, so the parser,
 * the unknown-key errors and README.md's table cannot disagree. */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/buf.h"
#include "kiln/err.h"

#define CONFIG_DEFAULT_PATH "/etc/kiln/kilnd.yaml"
#define CONFIG_SECRET_MAX   (64u << 10)
#define CONFIG_FILE_MAX	    (1u << 20)

enum config_build_on_start { CONFIG_BUILD_ON_START_NONE, CONFIG_BUILD_ON_START_ALL };

/* A build secret a repository's manifests may grant (`secrets: [id, ...]`). */
struct config_secret {
	char *id;   /* [A-Za-z0-9._-]+, unique in the repository */
	char *file; /* resolved path, checked readable; read when a build starts */
};

/* A notification target (`notify: [...]`, global or a repository's). */
struct config_notify {
	char *url;	    /* http:// or https:// */
	char *secret;	    /* signs each body; NULL: unsigned */
	struct strv events; /* build end states: succeeded, failed, cancelled, superseded */
};
struct config_notifies {
	struct config_notify *v;
	size_t n;
};

struct config_repo {
	char *name; /* [A-Za-z0-9._-]+, unique */
	char *url;
	struct strv branches; /* at least one; the first is the reference for new ones */
	uint64_t poll_interval_ms;
	unsigned repack_packs; /* fold the mirror's packs past this many; 0: never */
	char *manifest;
	enum config_build_on_start build_on_start;
	char *username;		/* NULL: none */
	char *password;		/* the secret itself; NULL: none */
	char *ssh_key_file;	/* resolved path; NULL: none */
	char *webhook_provider; /* github | gitlab | gitea | generic; NULL: no webhook */
	char *webhook_secret;
	char *webhook_header; /* generic only */
	bool overwrite_tags;  /* let a build replace an existing version tag */
	struct config_secret *secrets;
	size_t nsecrets;
	/* commit statuses (`status:`); provider NULL: none */
	char *status_provider; /* github | gitlab | gitea */
	char *status_api_url;  /* NULL: the provider's public API */
	char *status_token;    /* the secret itself */
	char *status_project;  /* NULL: what url names */
	struct config_notifies notify;
};

/* Credentials for one registry host ("registry.example.com:5000"). */
struct config_registry {
	char *host;
	char *username;
	char *password; /* the secret itself */
};

struct config {
	char *path;
	char *state_dir;
	char *docker_host;	/* NULL: $DOCKER_HOST, else the default socket */
	char *docker_cert_path; /* NULL: $DOCKER_CERT_PATH */
	int docker_tls_verify;	/* -1: $DOCKER_TLS_VERIFY */
	unsigned concurrency;
	bool dry_run;
	unsigned retries;	  /* transient failures retried this often */
	uint64_t retry_delay_ms;  /* the first retry's delay; doubles each time */
	uint64_t test_timeout_ms; /* a smoke test's time limit */
	uint64_t log_max_bytes;	  /* a build log is cut here */
	unsigned keep_logs;	  /* build logs kept; older ones are removed */
	char *builder;		  /* auto | buildkit | classic */
	char *network;		  /* default | none | host */
	bool pull;		  /* pull=1: the newest base images on every build */
	struct config_registry *registries;
	size_t nregistries;
	struct strv listen_http;
	bool listen_dashboard;	     /* the dashboard on listen_http too */
	char *listen_dashboard_http; /* the dashboard's own address; NULL: none */
	char *dashboard_auth_file;   /* htpasswd-style; NULL: no authentication */
	char *status_socket;
	uint64_t status_idle_ms; /* listen.status_idle_timeout */
	char *status_group;	 /* may read over the status socket; NULL: root and kilnd's user */
	char *admin_group;	 /* may also trigger and cancel */
	uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms; /* the HTTP listener's */
	uint64_t first_byte_timeout_ms; /* a new HTTP connection's time to send something */
	unsigned conns_per_client;	/* HTTP connections from one address (IPv6: one /64) */
	uint64_t bodies_max;		/* request body bytes held at once, over all connections */
	uint64_t shutdown_grace_ms;
	uint64_t backup_interval_ms; /* at most one state snapshot this often */
	/* health: a repository failing this long is a reason, and less free
	 * space in state_dir than min_free (0: not checked) */
	uint64_t health_repo_failing_ms;
	uint64_t health_min_free_bytes;
	struct config_repo *repos;
	size_t nrepos;
	char *dashboard_url; /* the dashboard's public base URL; NULL: no links */
	struct config_notifies notify;
};

struct config_ctx;
struct config_key;
struct yaml_node_s;

/* What a key's value looks like (for the help table and the tests; the parser
 * does the work). */
enum config_type {
	CONFIG_SECTION, /* a mapping of further keys */
	CONFIG_LIST,	/* a list (of strings, or of sections) */
	CONFIG_STRING,
	CONFIG_BOOL,
	CONFIG_NUMBER,	 /* unsigned, min to max */
	CONFIG_DURATION, /* milliseconds, at least min */
	CONFIG_SIZE,	 /* bytes */
	CONFIG_FILE,	 /* a file name, resolved like secrets */
};

/* Parses node n (NULL never) into dst, the field at k->offset; reports into
 * the context's diags and goes on. */
typedef void config_parse_fn(struct config_ctx *c, const struct config_key *k,
			     const struct yaml_node_s *n, void *dst);

/* One known key. section is "" at the top, "builds", "registries[]" (each
 * entry of a list), "repositories[].webhook"; offset is into struct config
 * for "", "docker", "builds" and "listen", struct config_registry for
 * "registries[]", struct config_repo for "repositories[]" and below. */
struct config_key {
	const char *section;
	const char *key;
	enum config_type type;
	config_parse_fn *parse;
	size_t offset;
	uint64_t min, max; /* CONFIG_NUMBER: the range; CONFIG_DURATION: min ms */
	bool secret;	   /* names a file holding a secret: never print what it holds */
	bool required;	   /* in every instance of its section */
	const char *def;   /* YAML text run through parse before the file's value; NULL: none */
	const char *help;  /* one line of Markdown */
};

extern const struct config_key config_keys[];
extern const size_t config_nkeys;

/* Parses the text of a kilnd.yaml (len bytes, need not end in NUL); path is
 * for messages and the directory of relative secret files. On any error,
 * returns -EINVAL with every problem in diags and leaves *ret zeroed. */
int config_parse(const char *text, size_t len, const char *path, struct config *ret,
		 struct kiln_diags *diags);
/* Loads and checks path. On any error, returns -EINVAL with every problem in
 * diags and leaves *ret zeroed. */
int config_load(const char *path, struct config *ret, struct kiln_diags *diags);
void config_done(struct config *c);
/* "500ms", "30s", "5m", "1h" -> milliseconds. */
int config_parse_duration(const char *s, uint64_t *ret_ms);
/* "512K", "10M", "1G" or bytes -> bytes. */
int config_parse_size(const char *s, uint64_t *ret);
const struct config_repo *config_repo(const struct config *c, const char *name);
/* The project a repository's statuses go to: status.project, else what its
 * URL names; NULL when neither says (config_load refuses that). */
char *config_status_project(const struct config_repo *r);

/* README.md's configuration table: one Markdown row per config_keys[] row.
 * Prints defaults and help only, never a value read from a file. */
void config_keys_markdown(FILE *f);

#endif
