/* auth.h (build): registry credentials for the engine's X-Registry-Auth and
 * X-Registry-Config headers, from kilnd.yaml's `registries` or, when a host
 * has none there, from the service user's ~/.docker/config.json `auths`
 * ($DOCKER_CONFIG/config.json when that is set). Blocking (reads a file):
 * call from a worker. The returned headers hold secrets: never log them. */
#ifndef KILN_AUTH_H
#define KILN_AUTH_H

#include "kiln/config.h"
#include "kiln/session.h"

/* The registry host of an image registry setting: "host[:port]" without
 * the namespace. The caller frees it. */
char *auth_registry_host(const char *registry);
/* X-Registry-Auth for host: base64url of {"username","password",
 * "serveraddress"}, or "e30=" ({}) when no credentials are known. */
char *auth_header(const struct config_registry *regs, size_t n, const char *host);
/* X-Registry-Config: every known host's credentials, for base image pulls. */
char *auth_config_header(const struct config_registry *regs, size_t n);

/* Every known host's credentials, for the BuildKit session's
 * Auth/Credentials (BuildKit asks by host, as the pull needs them). */
void auth_session_creds(const struct config_registry *regs, size_t n, struct session_data *sd);
/* Reads a build secret's file (a regular file, at most SESSION_SECRET_MAX
 * bytes) into sd. Errors name the id and the file, never the contents. */
int auth_read_secret(const char *id, const char *path, struct session_data *sd,
		     struct kiln_err *err);

#endif
