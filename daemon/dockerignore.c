/* dockerignore.c (plan): parse .dockerignore and match paths with Docker's semantics.
 * Patterns compile to a small token program run as an NFA, so matching is
 * linear in the path whatever the pattern (no backtracking blow-up). */
#include <stdlib.h>
#include <string.h>

#include "kiln/buf.h"
#include "kiln/dockerignore.h"
#include "kiln/err.h"

enum tok_kind {
	T_CHAR,	       /* one literal byte */
	T_ANY,	       /* "?": one byte but '/' */
	T_CLASS,       /* "[...]" */
	T_STAR,	       /* "*": any run of bytes without '/' */
	T_DSTAR_SLASH, /* "**" or "**\/" inside a pattern: (.*\/)? */
	T_DSTAR_END,   /* "**" ending the pattern: .* */
};

struct tok {
	enum tok_kind kind;
	unsigned char c;
	bool negate;  /* T_CLASS */
	char *ranges; /* T_CLASS: pairs lo,hi */
	size_t nranges;
};

struct pattern {
	char *text; /* cleaned, without the leading '!' */
	bool exclusion;
	struct tok *toks;
	size_t ntoks;
};

struct dockerignore {
	struct pattern *v;
	size_t n;
	bool has_exclusions;
};

/* Go's filepath.Clean on a slash path. */
static char *clean(const char *s)
{
	struct buf out = {0};
	bool rooted = s[0] == '/';
	size_t keep_dotdot = 0; /* leading ".." segments that cannot be popped */

	while (*s) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);

		if (n == 0 || (n == 1 && s[0] == '.')) {
			/* skip */
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			size_t segs = 0;
			for (size_t i = 0; i < out.len; i++)
				segs += out.p[i] == '/';
			if (out.len > 0 && segs + 1 > keep_dotdot) {
				while (out.len > 0 && out.p[out.len - 1] != '/')
					out.len--;
				if (out.len > 0)
					out.len--;
				out.p[out.len] = '\0';
			} else if (!rooted) {
				if (out.len)
					buf_putc(&out, '/');
				buf_puts(&out, "..");
				keep_dotdot++;
			}
		} else {
			if (out.len)
				buf_putc(&out, '/');
			buf_append(&out, s, n);
		}
		s += n;
		if (*s == '/')
			s++;
	}
	if (rooted) {
		char *r = xasprintf("/%s", out.p ? out.p : "");
		buf_done(&out);
		return r;
	}
	if (out.len == 0)
		buf_puts(&out, ".");
	return buf_steal(&out);
}

/* A character class, validated as Go's filepath.Match does (Docker checks each
 * pattern with it): a range end may not be an unescaped '-' or ']'. */
static int class_char(const char *p, size_t *j, unsigned char *ret)
{
	if (p[*j] == '\0' || p[*j] == '-' || p[*j] == ']')
		return -EINVAL;
	if (p[*j] == '\\' && p[++*j] == '\0')
		return -EINVAL;
	*ret = (unsigned char)p[(*j)++];
	return 0;
}

static int compile_class(const char *p, size_t *i, struct tok *t)
{
	size_t j = *i + 1;
	struct buf r = {0};

	if (p[j] == '^') {
		t->negate = true;
		j++;
	}
	for (;;) {
		unsigned char lo, hi;

		if (p[j] == ']' && r.len > 0) {
			j++;
			break;
		}
		if (class_char(p, &j, &lo) < 0)
			goto bad;
		hi = lo;
		if (p[j] == '-') {
			j++;
			if (class_char(p, &j, &hi) < 0 || hi < lo)
				goto bad;
		}
		buf_putc(&r, (char)lo);
		buf_putc(&r, (char)hi);
	}
	t->kind = T_CLASS;
	t->nranges = r.len / 2;
	t->ranges = buf_steal(&r);
	*i = j;
	return 0;
bad:
	buf_done(&r);
	return -EINVAL;
}

static int compile(struct pattern *pt)
{
	const char *p = pt->text;
	size_t n = strlen(p), cap = n + 1;

	pt->toks = xcalloc(cap, sizeof(struct tok));
	for (size_t i = 0; i < n;) {
		struct tok *t = &pt->toks[pt->ntoks];

		if (p[i] == '*') {
			if (p[i + 1] == '*') {
				i += 2;
				if (p[i] == '/')
					i++;
				t->kind = p[i] == '\0' ? T_DSTAR_END : T_DSTAR_SLASH;
			} else {
				t->kind = T_STAR;
				i++;
			}
		} else if (p[i] == '?') {
			t->kind = T_ANY;
			i++;
		} else if (p[i] == '[') {
			if (compile_class(p, &i, t) < 0)
				return -EINVAL;
		} else if (p[i] == '\\') {
			if (p[i + 1] == '\0')
				return -EINVAL;
			t->kind = T_CHAR;
			t->c = (unsigned char)p[i + 1];
			i += 2;
		} else {
			t->kind = T_CHAR;
			t->c = (unsigned char)p[i++];
		}
		pt->ntoks++;
	}
	return 0;
}

static bool class_has(const struct tok *t, unsigned char c)
{
	bool in = false;

	for (size_t i = 0; i < t->nranges && !in; i++)
		in = c >= (unsigned char)t->ranges[2 * i] &&
		     c <= (unsigned char)t->ranges[2 * i + 1];
	return in != t->negate;
}

/* Epsilon moves: a star-like token may match nothing. */
static void closure(const struct pattern *pt, unsigned char *at)
{
	for (size_t i = 0; i < pt->ntoks; i++) {
		if (at[i] && (pt->toks[i].kind == T_STAR || pt->toks[i].kind == T_DSTAR_END ||
			      pt->toks[i].kind == T_DSTAR_SLASH))
			at[i + 1] = 1;
	}
}

/* Whole-string match of pattern against s[0..len). at[i]: before token i;
 * in[i]: inside the (.*\/)? of token i, which may only be left after a '/'. */
static bool pattern_match(const struct pattern *pt, const char *s, size_t len)
{
	size_t nt = pt->ntoks;
	unsigned char small[4 * 64];
	unsigned char *mem = nt + 1 <= 64 ? small : xmalloc(4 * (nt + 1));
	unsigned char *at = mem, *in = mem + (nt + 1), *nat = mem + 2 * (nt + 1),
		      *nin = mem + 3 * (nt + 1);
	bool ok, any = true;

	memset(mem, 0, 4 * (nt + 1));
	at[0] = 1;
	closure(pt, at);
	for (size_t k = 0; k < len && any; k++) {
		unsigned char c = (unsigned char)s[k];
		unsigned char *tmp;

		memset(nat, 0, 2 * (nt + 1));
		any = false;
		for (size_t i = 0; i < nt; i++) {
			const struct tok *t = &pt->toks[i];
			if (in[i]) {
				nin[i] = 1;
				if (c == '/')
					nat[i + 1] = 1;
			}
			if (!at[i])
				continue;
			switch (t->kind) {
			case T_CHAR:
				if (c == t->c)
					nat[i + 1] = 1;
				break;
			case T_ANY:
				if (c != '/')
					nat[i + 1] = 1;
				break;
			case T_CLASS:
				if (class_has(t, c))
					nat[i + 1] = 1;
				break;
			case T_STAR:
				if (c != '/')
					nat[i] = 1;
				break;
			case T_DSTAR_END:
				nat[i] = 1;
				break;
			case T_DSTAR_SLASH:
				nin[i] = 1;
				if (c == '/')
					nat[i + 1] = 1;
				break;
			}
		}
		closure(pt, nat);
		for (size_t i = 0; i <= nt; i++)
			any |= nat[i] | nin[i];
		tmp = at;
		at = nat;
		nat = tmp;
		tmp = in;
		in = nin;
		nin = tmp;
	}
	ok = any && at[nt];
	if (mem != small)
		free(mem);
	return ok;
}

static void add_pattern(struct dockerignore *di, size_t *cap, char *text, bool exclusion)
{
	if (di->n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		di->v = xreallocarray(di->v, *cap, sizeof(*di->v));
	}
	memset(&di->v[di->n], 0, sizeof(di->v[0]));
	di->v[di->n].text = text;
	di->v[di->n].exclusion = exclusion;
	di->n++;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int dockerignore_parse(const char *data, size_t len, struct dockerignore **ret,
		       struct kiln_err *err)
{
	struct dockerignore *di = xcalloc(1, sizeof(*di));
	size_t cap = 0, lineno = 0;
	const char *p = data, *end = data + len;

	if (len > DOCKERIGNORE_SIZE_MAX) {
		dockerignore_free(di);
		return kiln_err_set(err, -EFBIG, ".dockerignore is larger than %u bytes",
				    DOCKERIGNORE_SIZE_MAX);
	}
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end, *s = p, *e = le;
		bool exclusion = false;
		char *raw, *cleaned;

		lineno++;
		p = nl ? nl + 1 : end;
		if ((size_t)(le - s) > DOCKERIGNORE_LINE_MAX) {
			dockerignore_free(di);
			return kiln_err_set(err, -EINVAL,
					    ".dockerignore:%zu: line longer than %u bytes", lineno,
					    DOCKERIGNORE_LINE_MAX);
		}
		if (s < e && *s == '#')
			continue;
		while (s < e && is_space(*s))
			s++;
		while (e > s && is_space(e[-1]))
			e--;
		if (s == e)
			continue;
		if (*s == '!') {
			exclusion = true;
			s++;
			while (s < e && is_space(*s))
				s++;
			if (s == e) {
				dockerignore_free(di);
				return kiln_err_set(
				    err, -EINVAL,
				    ".dockerignore:%zu: illegal exclusion pattern \"!\"", lineno);
			}
		}
		if (memchr(s, '\0', (size_t)(e - s)) != NULL) {
			dockerignore_free(di);
			return kiln_err_set(err, -EINVAL, ".dockerignore:%zu: NUL byte in pattern",
					    lineno);
		}
		raw = xstrndup(s, (size_t)(e - s));
		cleaned = clean(raw);
		free(raw);
		if (strlen(cleaned) > 1 && cleaned[0] == '/')
			memmove(cleaned, cleaned + 1, strlen(cleaned));
		add_pattern(di, &cap, cleaned, exclusion);
		di->has_exclusions |= exclusion;
		if (compile(&di->v[di->n - 1]) < 0) {
			int r = kiln_err_set(err, -EINVAL, ".dockerignore:%zu: bad pattern '%s'",
					     lineno, di->v[di->n - 1].text);
			dockerignore_free(di);
			return r;
		}
	}
	*ret = di;
	return 0;
}

struct dockerignore *dockerignore_free(struct dockerignore *di)
{
	if (di == NULL)
		return NULL;
	for (size_t i = 0; i < di->n; i++) {
		for (size_t j = 0; j < di->v[i].ntoks; j++)
			free(di->v[i].toks[j].ranges);
		free(di->v[i].toks);
		free(di->v[i].text);
	}
	free(di->v);
	free(di);
	return NULL;
}

size_t dockerignore_npatterns(const struct dockerignore *di)
{
	return di->n;
}

bool dockerignore_match(const struct dockerignore *di, const char *path, const bool *parent,
			bool *ret_matched)
{
	size_t len = strlen(path);
	bool matched = false;

	for (size_t i = 0; i < di->n; i++) {
		const struct pattern *pt = &di->v[i];
		bool m = parent ? parent[i] : false;

		if (!m) {
			/* An inclusion cannot change an already excluded path, nor an
			 * exception a kept one: skip them, as moby does (and then the
			 * pattern counts as not matched for the children). */
			if (pt->exclusion != matched) {
				ret_matched[i] = false;
				continue;
			}
			m = pattern_match(pt, path, len);
			/* Without parent results (top level or a lone path), a
			 * pattern that matches an ancestor directory matches too. */
			if (!m && parent == NULL) {
				for (size_t k = 0; k < len && !m; k++) {
					if (path[k] == '/')
						m = pattern_match(pt, path, k);
				}
			}
		}
		ret_matched[i] = m;
		if (m)
			matched = !pt->exclusion;
	}
	return matched;
}

bool dockerignore_enter_dir(const struct dockerignore *di, const char *dir)
{
	size_t n = strlen(dir);

	if (!di->has_exclusions)
		return false;
	for (size_t i = 0; i < di->n; i++) {
		const struct pattern *pt = &di->v[i];
		size_t tn = strlen(pt->text);
		/* pattern + "/" starts with dir + "/" */
		if (!pt->exclusion || tn < n)
			continue;
		if (memcmp(pt->text, dir, n) == 0 && (tn == n || pt->text[n] == '/'))
			return true;
	}
	return false;
}

bool dockerignore_excluded(const struct dockerignore *di, const char *path)
{
	size_t len = strlen(path), n = di->n ? di->n : 1;
	bool *base = xcalloc(2 * n, sizeof(bool)), *parent = base, *cur = base + n, *tmp;
	char *prefix = xstrdup(path);
	bool have_parent = false, skip = false;

	if (di->n == 0) {
		free(prefix);
		free(base);
		return false;
	}
	for (size_t k = 0; k <= len; k++) {
		if (k < len && path[k] != '/')
			continue;
		prefix[k] = '\0';
		skip = dockerignore_match(di, prefix, have_parent ? parent : NULL, cur);
		if (k < len && skip && !dockerignore_enter_dir(di, prefix))
			break; /* an excluded directory the walk never enters */
		prefix[k] = path[k];
		tmp = parent;
		parent = cur;
		cur = tmp;
		have_parent = true;
	}
	free(prefix);
	free(base);
	return skip;
}
