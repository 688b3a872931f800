/* fuzz_dashboard.c: what the dashboard parses of a request and of its auth
 * file, with arbitrary bytes: the query string (filters, cursors, the live
 * log's offset), the path's route, a log's text through the ANSI stripping
 * and the HTML escaping, an Authorization header checked against one user
 * (a cheap sha-crypt hash: the check's parsing is the target, not its
 * hash), and the bytes as an auth file. Nothing may crash, leak or read
 * past the input; escaped text never holds a '<'. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/dashboard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* carol:carol, $5$ at its fewest rounds */
#define USERS "carol:$5$rounds=1000$wAxwKsEzZdI6sIT3$AYWtfE7WMlFrew92xkY/HyqeSAc.VQ3UiO2QAarlKN4\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dashboard_auth *users;
	char *s = malloc(size + 1);
	struct dashboard_query q;
	struct dashboard_auth *a = NULL;
	struct kiln_err err = {0};
	struct buf t = {0}, h = {0};

	if (users == NULL && dashboard_auth_parse(USERS, strlen(USERS), "users", &users, &err) < 0)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	if (dashboard_parse_query(s, &q, &err) == 0 &&
	    (strlen(q.repo) >= sizeof(q.repo) || strlen(q.image) >= sizeof(q.image) ||
	     q.before < 0 || q.offset < -1))
		abort();
	(void)dashboard_path(s);
	dashboard_ansi_text(&t, (const char *)data, size);
	dashboard_escape(&h, t.p ? t.p : "", t.len);
	if (h.len && memchr(h.p, '<', h.len))
		abort();
	if (strncmp(s, "Basic ", 6) == 0)
		(void)dashboard_auth_check(users, s);
	if (dashboard_auth_parse((const char *)data, size, "users", &a, &err) == 0)
		dashboard_auth_unref(a);
	buf_done(&t);
	buf_done(&h);
	free(s);
	return 0;
}
