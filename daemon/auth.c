/* auth.c (build): registry credentials as the Engine API wants them. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/auth.h"
#include "kiln/buf.h"
#include "kiln/err.h"

char *auth_registry_host(const char *registry)
{
	return xstrndup(registry, strcspn(registry, "/"));
}

/* base64url with padding, as the engine decodes X-Registry-Auth */
static char *b64url(const char *s)
{
	size_t n = strlen(s);
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	for (char *p = out; *p; p++) {
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
	}
	return out;
}

static char *b64_decode(const char *s)
{
	size_t n = strlen(s);
	unsigned char *out = xmalloc(3 * (n / 4) + 4);
	int len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);

	if (len < 0) {
		free(out);
		return NULL;
	}
	while (len > 0 && n > 0 && s[n - 1] == '=') { /* DecodeBlock counts padding */
		len--;
		n--;
	}
	out[len] = '\0';
	return (char *)out;
}

/* "https://host:5000/v1/" or "host:5000" -> "host:5000" */
static bool same_host(const char *key, const char *host)
{
	const char *k = strstr(key, "://");
	size_t n;

	k = k ? k + 3 : key;
	n = strcspn(k, "/");
	return strlen(host) == n && strncmp(k, host, n) == 0;
}

static json_t *docker_config_auths(void)
{
	const char *dir = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
	char *path;
	json_t *root, *auths;

	if (dir && *dir)
		path = xasprintf("%s/config.json", dir);
	else if (home && *home)
		path = xasprintf("%s/.docker/config.json", home);
	else
		return NULL;
	root = json_load_file(path, 0, NULL);
	free(path);
	auths = json_object_get(root, "auths");
	if (json_is_object(auths))
		json_incref(auths);
	else
		auths = NULL;
	json_decref(root);
	return auths;
}

/* One host's credentials as a JSON AuthConfig, or NULL. */
static json_t *credentials(const struct config_registry *regs, size_t n, json_t *auths,
			   const char *host)
{
	const char *key;
	json_t *v;

	for (size_t i = 0; i < n; i++)
		if (strcmp(regs[i].host, host) == 0)
			return json_pack("{s:s, s:s, s:s}", "username", regs[i].username,
					 "password", regs[i].password, "serveraddress", host);
	json_object_foreach(auths, key, v)
	{
		const char *a = json_string_value(json_object_get(v, "auth"));
		const char *tok = json_string_value(json_object_get(v, "identitytoken"));
		if (!same_host(key, host))
			continue;
		if (tok && *tok)
			return json_pack("{s:s, s:s}", "identitytoken", tok, "serveraddress", host);
		if (a && *a) {
			char *up = b64_decode(a), *colon = up ? strchr(up, ':') : NULL;
			json_t *o = NULL;
			if (colon) {
				*colon = '\0';
				o = json_pack("{s:s, s:s, s:s}", "username", up, "password",
					      colon + 1, "serveraddress", host);
				explicit_bzero(colon + 1, strlen(colon + 1));
			}
			free(up);
			return o;
		}
		if (json_is_string(json_object_get(v, "username"))) {
			const char *pw = json_string_value(json_object_get(v, "password"));
			return json_pack("{s:s, s:s, s:s}", "username",
					 json_string_value(json_object_get(v, "username")),
					 "password", pw ? pw : "", "serveraddress", host);
		}
	}
	return NULL;
}

static char *encode(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT), *r;

	r = b64url(s ? s : "{}");
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
	return r;
}

char *auth_header(const struct config_registry *regs, size_t n, const char *host)
{
	json_t *auths = docker_config_auths(), *c = credentials(regs, n, auths, host);
	char *r;

	r = c ? encode(c) : xstrdup("e30=");
	json_decref(c);
	json_decref(auths);
	return r;
}

char *auth_config_header(const struct config_registry *regs, size_t n)
{
	json_t *auths = docker_config_auths(), *all = json_object(), *v;
	const char *key;
	char *r;

	json_object_foreach(auths, key, v)
	{
		const char *k = strstr(key, "://");
		char *host = xstrndup(k ? k + 3 : key, strcspn(k ? k + 3 : key, "/"));
		json_t *c = credentials(NULL, 0, auths, host);
		if (c)
			json_object_set_new(all, host, c);
		free(host);
	}
	for (size_t i = 0; i < n; i++)
		json_object_set_new(all, regs[i].host, credentials(regs, n, NULL, regs[i].host));
	r = encode(all);
	json_decref(all);
	json_decref(auths);
	return r;
}

/* BuildKit asks for Docker Hub as registry-1.docker.io; the docker CLI
 * stores it as https://index.docker.io/v1/ */
static const char *hub_alias(const char *host)
{
	return strcmp(host, "index.docker.io") == 0 || strcmp(host, "docker.io") == 0
		   ? "registry-1.docker.io"
		   : NULL;
}

static void add_cred(struct session_data *sd, const char *host, json_t *c)
{
	const char *tok = json_string_value(json_object_get(c, "identitytoken"));

	/* an identity token goes as the secret with no username */
	if (tok)
		session_data_add_cred(sd, host, "", tok);
	else
		session_data_add_cred(sd, host, json_string_value(json_object_get(c, "username")),
				      json_string_value(json_object_get(c, "password")));
	if (hub_alias(host))
		add_cred(sd, hub_alias(host), c);
}

void auth_session_creds(const struct config_registry *regs, size_t n, struct session_data *sd)
{
	json_t *auths = docker_config_auths(), *v;
	const char *key;

	for (size_t i = 0; i < n; i++) {
		json_t *c = credentials(regs, n, NULL, regs[i].host);
		add_cred(sd, regs[i].host, c);
		json_decref(c);
	}
	json_object_foreach(auths, key, v)
	{
		const char *k = strstr(key, "://");
		char *host = xstrndup(k ? k + 3 : key, strcspn(k ? k + 3 : key, "/"));
		bool known = false;
		json_t *c;

		for (size_t i = 0; i < sd->ncreds; i++)
			known = known || strcmp(sd->creds[i].host, host) == 0;
		c = known ? NULL : credentials(NULL, 0, auths, host);
		if (c)
			add_cred(sd, host, c);
		json_decref(c);
		free(host);
	}
	json_decref(auths);
}

int auth_read_secret(const char *id, const char *path, struct session_data *sd,
		     struct kiln_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	unsigned char *data = NULL;
	size_t len = 0;
	int r = 0;

	if (fd < 0)
		return kiln_err_set(err, -errno, "secret '%s': cannot open '%s': %s", id, path,
				    strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = kiln_err_set(err, -EINVAL, "secret '%s': '%s' is not a regular file", id, path);
		goto out;
	}
	if ((uint64_t)st.st_size > SESSION_SECRET_MAX) {
		r = kiln_err_set(err, -EFBIG, "secret '%s': '%s' is larger than %u bytes", id, path,
				 SESSION_SECRET_MAX);
		goto out;
	}
	data = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, data + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = kiln_err_set(err, n < 0 ? -errno : -EIO, "secret '%s': cannot read '%s'%s%s",
					 id, path, n < 0 ? ": " : " (it shrank)",
					 n < 0 ? strerror(errno) : "");
			goto out;
		}
		len += (size_t)n;
	}
	session_data_add_secret(sd, id, data, len);
	data = NULL;
out:
	if (data) {
		explicit_bzero(data, len);
		free(data);
	}
	close(fd);
	return r;
}
