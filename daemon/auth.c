/* auth.c (build): registry credentials as the Engine API wants them. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/auth.h"
#include "kiln/buf.h"

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
