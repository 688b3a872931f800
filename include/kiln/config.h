/* config.h: kilnd.yaml -> struct config. Every error is located
 * (file:line:col) and all are reported at once; secrets are read from files
 * (relative names inside $CREDENTIALS_DIRECTORY when it is set) and never
 * appear in messages. */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stdint.h>

#include "kiln/buf.h"
#include "kiln/err.h"

#define CONFIG_DEFAULT_PATH "/etc/kiln/kilnd.yaml"
#define CONFIG_SECRET_MAX   (64u << 10)
#define CONFIG_FILE_MAX	    (1u << 20)

enum config_build_on_start { CONFIG_BUILD_ON_START_NONE, CONFIG_BUILD_ON_START_ALL };

struct config_repo {
	char *name; /* [A-Za-z0-9._-]+, unique */
	char *url;
	struct strv branches; /* at least one; the first is the reference for new ones */
	uint64_t poll_interval_ms;
	char *manifest;
	enum config_build_on_start build_on_start;
	char *username;		/* NULL: none */
	char *password;		/* the secret itself; NULL: none */
	char *ssh_key_file;	/* resolved path; NULL: none */
	char *webhook_provider; /* github | gitlab | gitea | generic; NULL: no webhook */
	char *webhook_secret;
	char *webhook_header; /* generic only */
};

struct config {
	char *path;
	char *state_dir;
	char *docker_host;
	unsigned concurrency;
	bool dry_run;
	struct strv listen_http;
	char *status_socket;
	char *status_group; /* may read over the status socket; NULL: root and kilnd's user */
	char *admin_group;  /* may also trigger and cancel */
	uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms; /* the HTTP listener's */
	uint64_t shutdown_grace_ms;
	struct config_repo *repos;
	size_t nrepos;
};

/* Loads and checks path. On any error, returns -EINVAL with every problem in
 * diags and leaves *ret zeroed. */
int config_load(const char *path, struct config *ret, struct kiln_diags *diags);
void config_done(struct config *c);
/* "500ms", "30s", "5m", "1h" -> milliseconds. */
int config_parse_duration(const char *s, uint64_t *ret_ms);
const struct config_repo *config_repo(const struct config *c, const char *name);

#endif
