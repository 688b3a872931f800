/* dockerfile.c (plan): extract FROM references from a Dockerfile without building it. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kiln/buf.h"
#include "kiln/dockerfile.h"
#include "kiln/err.h"

struct var {
	char *name, *value; /* value NULL: declared without a value */
};

struct vars {
	struct var *v;
	size_t n, cap;
};

static const struct var *vars_get(const struct vars *vs, const char *name, size_t len)
{
	for (size_t i = vs->n; i-- > 0;) {
		if (strlen(vs->v[i].name) == len && memcmp(vs->v[i].name, name, len) == 0)
			return &vs->v[i];
	}
	return NULL;
}

static void vars_set(struct vars *vs, char *name, char *value)
{
	if (vs->n == vs->cap) {
		vs->cap = vs->cap ? vs->cap * 2 : 8;
		vs->v = xreallocarray(vs->v, vs->cap, sizeof(*vs->v));
	}
	vs->v[vs->n].name = name;
	vs->v[vs->n].value = value;
	vs->n++;
}

static void vars_done(struct vars *vs)
{
	for (size_t i = 0; i < vs->n; i++) {
		free(vs->v[i].name);
		free(vs->v[i].value);
	}
	free(vs->v);
}

static bool is_name_start(char c)
{
	return isalpha((unsigned char)c) || c == '_';
}

static bool is_name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

static void expand(const char *s, size_t len, char esc, const struct vars *vs, struct buf *out);

/* ${...} starting after "${"; returns the index just past the closing brace. */
static size_t expand_braced(const char *s, size_t i, size_t len, char esc, const struct vars *vs,
			    struct buf *out)
{
	size_t ns = i, depth = 1, ws;
	const struct var *v;
	const char *val;
	char op[3] = {0};

	while (i < len && is_name_char(s[i]))
		i++;
	v = vars_get(vs, s + ns, i - ns);
	val = v ? v->value : NULL;
	if (i < len && s[i] == ':' && i + 1 < len && strchr("-+?", s[i + 1])) {
		op[0] = ':';
		op[1] = s[i + 1];
		i += 2;
	} else if (i < len && strchr("-+?", s[i])) {
		op[0] = s[i++];
	}
	ws = i;
	while (i < len && depth > 0) {
		if (s[i] == esc && i + 1 < len)
			i++;
		else if (s[i] == '{')
			depth++;
		else if (s[i] == '}')
			depth--;
		i++;
	}
	if (depth > 0) /* unterminated: keep the text as Docker would fail on it later */
		return len;
	{
		size_t wl = i - 1 - ws;
		bool set = val != NULL, nonempty = val && val[0];
		bool use_word = false, use_val = true;

		if (strcmp(op, ":-") == 0)
			use_word = !nonempty;
		else if (strcmp(op, "-") == 0)
			use_word = !set;
		else if (strcmp(op, ":+") == 0)
			use_word = nonempty, use_val = false;
		else if (strcmp(op, "+") == 0)
			use_word = set, use_val = false;
		if (use_word)
			expand(s + ws, wl, esc, vs, out);
		else if (use_val && val)
			buf_puts(out, val);
	}
	return i;
}

/* Shell-style word processing: quotes removed, escapes honoured, variables
 * substituted. */
static void expand(const char *s, size_t len, char esc, const struct vars *vs, struct buf *out)
{
	char quote = 0;

	for (size_t i = 0; i < len;) {
		char c = s[i];

		if (quote == '\'') {
			if (c == '\'')
				quote = 0;
			else
				buf_putc(out, c);
			i++;
		} else if (c == esc && i + 1 < len) {
			buf_putc(out, s[i + 1]);
			i += 2;
		} else if (c == '\'' && quote == 0) {
			quote = '\'';
			i++;
		} else if (c == '"') {
			quote = quote == '"' ? 0 : '"';
			i++;
		} else if (c == '$' && i + 1 < len && s[i + 1] == '{') {
			i = expand_braced(s, i + 2, len, esc, vs, out);
		} else if (c == '$' && i + 1 < len && is_name_start(s[i + 1])) {
			size_t ns = ++i;
			const struct var *v;
			while (i < len && is_name_char(s[i]))
				i++;
			v = vars_get(vs, s + ns, i - ns);
			if (v && v->value)
				buf_puts(out, v->value);
		} else {
			buf_putc(out, c);
			i++;
		}
	}
}

/* Next whitespace-separated word of s[*i..len), quotes and escapes kept in. */
static bool next_word(const char *s, size_t len, size_t *i, char esc, size_t *ret_start,
		      size_t *ret_len)
{
	char quote = 0;
	size_t j = *i;

	while (j < len && isspace((unsigned char)s[j]))
		j++;
	if (j == len)
		return false;
	*ret_start = j;
	while (j < len && (quote || !isspace((unsigned char)s[j]))) {
		if (s[j] == esc && quote != '\'' && j + 1 < len)
			j++;
		else if ((s[j] == '"' || s[j] == '\'') && (quote == 0 || quote == s[j]))
			quote = quote ? 0 : s[j];
		j++;
	}
	*ret_len = j - *ret_start;
	*i = j;
	return true;
}

char *dockerfile_normalize_ref(const char *ref)
{
	const char *slash = strrchr(ref, '/');
	const char *last = slash ? slash + 1 : ref;

	if (strchr(ref, '@') != NULL || strchr(last, ':') != NULL)
		return xstrdup(ref);
	return xasprintf("%s:latest", ref);
}

struct parse {
	char esc;
	struct vars meta;   /* ARGs before the first FROM */
	struct strv stages; /* lowercased AS names */
	bool seen_from;
	const struct kv *build_args;
	size_t nbuild_args;
	struct dockerfile_froms *out;
	size_t cap;
};

static const char *build_arg(const struct parse *p, const char *name)
{
	for (size_t i = 0; i < p->nbuild_args; i++) {
		if (strcmp(p->build_args[i].key, name) == 0)
			return p->build_args[i].value;
	}
	return NULL;
}

static void do_arg(struct parse *p, const char *s, size_t len)
{
	size_t i = 0, ws, wl;

	while (next_word(s, len, &i, p->esc, &ws, &wl)) {
		const char *w = s + ws, *eq = memchr(w, '=', wl);
		size_t nl = eq ? (size_t)(eq - w) : wl;
		char *name = xstrndup(w, nl), *value = NULL;
		const char *ba = build_arg(p, name);

		if (ba) {
			value = xstrdup(ba);
		} else if (eq) {
			struct buf b = {0};
			expand(eq + 1, wl - nl - 1, p->esc, &p->meta, &b);
			value = buf_steal(&b);
		}
		vars_set(&p->meta, name, value);
	}
}

static bool is_stage(const struct parse *p, const char *name)
{
	for (size_t i = 0; i < p->stages.n; i++) {
		if (strcasecmp(p->stages.v[i], name) == 0)
			return true;
	}
	return false;
}

static void do_from(struct parse *p, const char *s, size_t len, unsigned line)
{
	size_t i = 0, ws, wl;
	char *image = NULL;
	struct buf b = {0};

	p->seen_from = true;
	while (next_word(s, len, &i, p->esc, &ws, &wl)) {
		if (image == NULL && wl > 2 && s[ws] == '-' && s[ws + 1] == '-')
			continue; /* --platform=..., any flag */
		if (image == NULL) {
			expand(s + ws, wl, p->esc, &p->meta, &b);
			image = buf_steal(&b);
			continue;
		}
		if (wl == 2 && strncasecmp(s + ws, "as", 2) == 0 &&
		    next_word(s, len, &i, p->esc, &ws, &wl)) {
			char *st = xstrndup(s + ws, wl);
			for (char *c = st; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			strv_push(&p->stages, st);
		}
		break;
	}
	if (image == NULL)
		return;
	if (image[0] != '\0' && strcasecmp(image, "scratch") != 0 && !is_stage(p, image)) {
		if (p->out->n == p->cap) {
			p->cap = p->cap ? p->cap * 2 : 4;
			p->out->v = xreallocarray(p->out->v, p->cap, sizeof(*p->out->v));
		}
		p->out->v[p->out->n].ref = dockerfile_normalize_ref(image);
		p->out->v[p->out->n].line = line;
		p->out->n++;
	}
	free(image);
}

static void instruction(struct parse *p, const char *s, size_t len, unsigned line)
{
	size_t i = 0, ws, wl;

	if (!next_word(s, len, &i, 0, &ws, &wl))
		return;
	if (wl == 4 && strncasecmp(s + ws, "from", 4) == 0)
		do_from(p, s + i, len - i, line);
	else if (wl == 3 && strncasecmp(s + ws, "arg", 3) == 0 && !p->seen_from)
		do_arg(p, s + i, len - i);
}

/* Parser directives: "# key=value" lines at the very top. Only escape matters. */
static const char *directives(struct parse *p, const char *s, const char *end, unsigned *line)
{
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl ? nl : end, *k, *q;

		q = s;
		while (q < e && (*q == ' ' || *q == '\t'))
			q++;
		if (q == e || *q != '#')
			break;
		q++;
		while (q < e && (*q == ' ' || *q == '\t'))
			q++;
		k = q;
		while (q < e && isalpha((unsigned char)*q))
			q++;
		if (q == k)
			break;
		{
			size_t kl = (size_t)(q - k);
			while (q < e && (*q == ' ' || *q == '\t'))
				q++;
			if (q == e || *q != '=')
				break;
			q++;
			while (q < e && (*q == ' ' || *q == '\t'))
				q++;
			if (kl == 6 && strncasecmp(k, "escape", 6) == 0 && q < e &&
			    (*q == '`' || *q == '\\'))
				p->esc = *q;
		}
		s = nl ? nl + 1 : end;
		(*line)++;
	}
	return s;
}

int dockerfile_froms(const char *data, size_t len, const struct kv *build_args, size_t nbuild_args,
		     struct dockerfile_froms *ret, struct kiln_err *err)
{
	struct dockerfile_froms out = {0};
	struct parse p = {
	    .esc = '\\', .build_args = build_args, .nbuild_args = nbuild_args, .out = &out};
	const char *s = data, *end = data + len;
	struct buf logical = {0};
	unsigned line = 1, start_line = 0;

	if (len > DOCKERFILE_SIZE_MAX)
		return kiln_err_set(err, -EFBIG, "Dockerfile is larger than %u bytes",
				    DOCKERFILE_SIZE_MAX);
	if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	s = directives(&p, s, end, &line);
	for (; s < end; line++) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *b = s, *e = nl ? nl : end, *from;
		bool cont;

		from = s;
		s = nl ? nl + 1 : end;
		while (e > b && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
			e--;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		/* Comments and blank lines vanish, also inside a continuation. */
		if (b == e || *b == '#')
			continue;
		cont = e[-1] == p.esc;
		if (cont)
			e--;
		if (logical.len == 0)
			start_line = line;
		else
			b = from; /* a continued line is joined as is, indentation included */
		buf_append(&logical, b, (size_t)(e - b));
		if (cont)
			continue;
		instruction(&p, logical.p, logical.len, start_line);
		logical.len = 0;
	}
	if (logical.len)
		instruction(&p, logical.p, logical.len, start_line);
	buf_done(&logical);
	vars_done(&p.meta);
	strv_done(&p.stages);
	*ret = out;
	return 0;
}

void dockerfile_froms_done(struct dockerfile_froms *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->v[i].ref);
	free(f->v);
	memset(f, 0, sizeof(*f));
}
