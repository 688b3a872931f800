/* path.c (base): normalising repository-relative paths without touching a filesystem. */
#include <errno.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/manifest.h"
#include "kiln/path.h"

int path_resolve(const char *dir, const char *rel, char **ret)
{
	struct buf out = {0};
	const char *s;

	if (rel[0] == '\0' || rel[0] == '/')
		return -EINVAL;
	/* Walk "dir/rel" segment by segment; ".." pops the last kept segment. */
	for (int part = 0; part < 2; part++) {
		s = part == 0 ? dir : rel;
		while (*s) {
			const char *e = strchr(s, '/');
			size_t n = e ? (size_t)(e - s) : strlen(s);

			if (n == 0 || (n == 1 && s[0] == '.')) {
				/* empty or "." segment: nothing */
			} else if (n == 2 && s[0] == '.' && s[1] == '.') {
				if (out.len == 0) {
					buf_done(&out);
					return -EXDEV;
				}
				out.len = path_parent_len(out.p, out.len);
				out.p[out.len] = '\0';
			} else {
				if (out.len)
					buf_putc(&out, '/');
				buf_append(&out, s, n);
			}
			s += n;
			if (*s == '/')
				s++;
		}
	}
	*ret = buf_steal(&out);
	return 0;
}

const char *path_display(const char *p)
{
	return p[0] ? p : ".";
}

const char *path_below(const char *p, const char *dir)
{
	size_t n = strlen(dir);

	if (n == 0)
		return p;
	if (strncmp(p, dir, n) == 0 && p[n] == '/')
		return p + n + 1;
	return NULL;
}

size_t path_parent_len(const char *p, size_t len)
{
	while (len > 0 && p[len - 1] != '/')
		len--;
	return len > 0 ? len - 1 : 0;
}

/* declared in manifest.h; here, in a file that needs no library, so that
 * kiln's front can check --manifest without linking the YAML parser */
bool manifest_valid_file_name(const char *s)
{
	return s[0] && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}
