/* lazyload.c (base, kilnd only): libcurl, libarchive and libnghttp2 are
 * loaded on the first call into them, not at start.
 *
 * They serve the builder (the Engine API, build contexts, BuildKit's
 * session) and the outbox (commit statuses, notifications). A kilnd that
 * polls and has not built since it started needs none of them, yet linking
 * them maps some thirty libraries (GnuTLS, Kerberos, LDAP, ICU and the C++
 * runtime among them): 5 MiB of its 21 MiB idle, measured with
 * tests/bench/idle.sh. kilnd is linked against this file instead of them
 * (with --as-needed the linker then drops them from its DT_NEEDED), and each
 * function below forwards to the library's own, found with dlsym on first
 * use. Every function kilnd calls must be here: a missing one fails the
 * link, a wrong prototype fails the compile (the libraries' headers declare
 * them). The `kiln` CLI and the tests link the libraries as usual.
 *
 * A library that cannot be loaded is logged once, and every call into it
 * fails as the library itself fails (curl_easy_init NULL, curl_easy_perform
 * CURLE_FAILED_INIT, archive_write_header ARCHIVE_FATAL, ...), with errno
 * ELIBACC, which the callers report as they report any such failure. */
#define CURL_DISABLE_TYPECHECK /* the setopt macros would rename our definitions */
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "kiln/log.h"

/* X(return type, name, failure value, (parameters), (arguments)) for the
 * functions with a return value; V(name, (parameters), (arguments)) for
 * those without, which do nothing when the library could not be loaded
 * (they free or set up what only a loaded library makes). The failure value
 * is what the function returns then: the library's own error for that
 * case where it has one. */
#define CURL_FUNCS(X, V)                                                                           \
	X(CURL *, curl_easy_init, NULL, (void), ())                                                \
	V(curl_easy_cleanup, (CURL * h), (h))                                                      \
	X(CURLcode, curl_easy_pause, CURLE_FAILED_INIT, (CURL * h, int bitmask), (h, bitmask))     \
	X(CURLcode, curl_easy_perform, CURLE_FAILED_INIT, (CURL * h), (h))                         \
	X(CURLcode, curl_easy_recv, CURLE_FAILED_INIT, (CURL * h, void *b, size_t len, size_t *n), \
	  (h, b, len, n))                                                                          \
	X(CURLcode, curl_easy_send, CURLE_FAILED_INIT,                                             \
	  (CURL * h, const void *b, size_t len, size_t *n), (h, b, len, n))                        \
	X(const char *, curl_easy_strerror, "libcurl could not be loaded", (CURLcode code),        \
	  (code))                                                                                  \
	X(CURLcode, curl_global_init, CURLE_FAILED_INIT, (long flags), (flags))                    \
	X(CURLMcode, curl_multi_add_handle, CURLM_INTERNAL_ERROR, (CURLM * m, CURL * h), (m, h))   \
	X(CURLMcode, curl_multi_assign, CURLM_INTERNAL_ERROR,                                      \
	  (CURLM * m, curl_socket_t fd, void *p), (m, fd, p))                                      \
	X(CURLMcode, curl_multi_cleanup, CURLM_INTERNAL_ERROR, (CURLM * m), (m))                   \
	X(CURLMsg *, curl_multi_info_read, NULL, (CURLM * m, int *left), (m, left))                \
	X(CURLM *, curl_multi_init, NULL, (void), ())                                              \
	X(const char *, curl_multi_strerror, "libcurl could not be loaded", (CURLMcode code),      \
	  (code))                                                                                  \
	X(CURLMcode, curl_multi_remove_handle, CURLM_INTERNAL_ERROR, (CURLM * m, CURL * h),        \
	  (m, h))                                                                                  \
	X(CURLMcode, curl_multi_socket_action, CURLM_INTERNAL_ERROR,                               \
	  (CURLM * m, curl_socket_t fd, int mask, int *running), (m, fd, mask, running))           \
	X(struct curl_slist *, curl_slist_append, NULL, (struct curl_slist * l, const char *s),    \
	  (l, s))                                                                                  \
	V(curl_slist_free_all, (struct curl_slist * l), (l))
/* F(name): forwarded by hand below (variadic, or not loading the library) */
#define CURL_BY_HAND(F)                                                                            \
	F(curl_easy_setopt) F(curl_easy_getinfo) F(curl_multi_setopt) F(curl_global_cleanup)

#define ARCHIVE_FUNCS(X, V)                                                                        \
	X(struct archive_entry *, archive_entry_new, NULL, (void), ())                             \
	X(struct archive_entry *, archive_entry_clear, NULL, (struct archive_entry * e), (e))      \
	V(archive_entry_free, (struct archive_entry * e), (e))                                     \
	V(archive_entry_set_filetype, (struct archive_entry * e, unsigned int t), (e, t))          \
	V(archive_entry_set_gid, (struct archive_entry * e, la_int64_t v), (e, v))                 \
	V(archive_entry_set_mtime, (struct archive_entry * e, time_t s, long ns), (e, s, ns))      \
	V(archive_entry_set_pathname, (struct archive_entry * e, const char *p), (e, p))           \
	V(archive_entry_set_perm, (struct archive_entry * e, __LA_MODE_T m), (e, m))               \
	V(archive_entry_set_size, (struct archive_entry * e, la_int64_t v), (e, v))                \
	V(archive_entry_set_symlink, (struct archive_entry * e, const char *p), (e, p))            \
	V(archive_entry_set_uid, (struct archive_entry * e, la_int64_t v), (e, v))                 \
	X(const char *, archive_error_string, "libarchive could not be loaded",                    \
	  (struct archive * a), (a))                                                               \
	X(struct archive *, archive_write_new, NULL, (void), ())                                   \
	X(int, archive_write_close, ARCHIVE_FATAL, (struct archive * a), (a))                      \
	X(la_ssize_t, archive_write_data, ARCHIVE_FATAL,                                           \
	  (struct archive * a, const void *b, size_t n), (a, b, n))                                \
	X(int, archive_write_free, ARCHIVE_FATAL, (struct archive * a), (a))                       \
	X(int, archive_write_header, ARCHIVE_FATAL,                                                \
	  (struct archive * a, struct archive_entry * e), (a, e))                                  \
	X(int, archive_write_open2, ARCHIVE_FATAL,                                                 \
	  (struct archive * a, void *arg, archive_open_callback *o, archive_write_callback *w,     \
	   archive_close_callback *c, archive_free_callback *f),                                   \
	  (a, arg, o, w, c, f))                                                                    \
	X(int, archive_write_set_bytes_in_last_block, ARCHIVE_FATAL, (struct archive * a, int n),  \
	  (a, n))                                                                                  \
	X(int, archive_write_set_format_pax_restricted, ARCHIVE_FATAL, (struct archive * a), (a))
#define NONE_BY_HAND(F)
#define ARCHIVE_BY_HAND(F) F(archive_set_error)

#define NGHTTP2_FUNCS(X, V)                                                                        \
	X(int, nghttp2_session_callbacks_new, NGHTTP2_ERR_NOMEM,                                   \
	  (nghttp2_session_callbacks * *cbs), (cbs))                                               \
	V(nghttp2_session_callbacks_del, (nghttp2_session_callbacks * cbs), (cbs))                 \
	V(nghttp2_session_callbacks_set_on_begin_headers_callback,                                 \
	  (nghttp2_session_callbacks * cbs, nghttp2_on_begin_headers_callback cb), (cbs, cb))      \
	V(nghttp2_session_callbacks_set_on_data_chunk_recv_callback,                               \
	  (nghttp2_session_callbacks * cbs, nghttp2_on_data_chunk_recv_callback cb), (cbs, cb))    \
	V(nghttp2_session_callbacks_set_on_frame_recv_callback,                                    \
	  (nghttp2_session_callbacks * cbs, nghttp2_on_frame_recv_callback cb), (cbs, cb))         \
	V(nghttp2_session_callbacks_set_on_header_callback,                                        \
	  (nghttp2_session_callbacks * cbs, nghttp2_on_header_callback cb), (cbs, cb))             \
	V(nghttp2_session_callbacks_set_on_stream_close_callback,                                  \
	  (nghttp2_session_callbacks * cbs, nghttp2_on_stream_close_callback cb), (cbs, cb))       \
	V(nghttp2_session_del, (nghttp2_session * s), (s))                                         \
	X(void *, nghttp2_session_get_stream_user_data, NULL, (nghttp2_session * s, int32_t id),   \
	  (s, id))                                                                                 \
	X(ssize_t, nghttp2_session_mem_recv, NGHTTP2_ERR_FATAL,                                    \
	  (nghttp2_session * s, const uint8_t *in, size_t n), (s, in, n))                          \
	X(ssize_t, nghttp2_session_mem_send, NGHTTP2_ERR_FATAL,                                    \
	  (nghttp2_session * s, const uint8_t **out), (s, out))                                    \
	X(int, nghttp2_session_server_new, NGHTTP2_ERR_NOMEM,                                      \
	  (nghttp2_session * *s, const nghttp2_session_callbacks *cbs, void *arg), (s, cbs, arg))  \
	X(int, nghttp2_session_set_stream_user_data, NGHTTP2_ERR_FATAL,                            \
	  (nghttp2_session * s, int32_t id, void *p), (s, id, p))                                  \
	X(int, nghttp2_session_want_read, NGHTTP2_ERR_FATAL, (nghttp2_session * s), (s))           \
	X(int, nghttp2_session_want_write, NGHTTP2_ERR_FATAL, (nghttp2_session * s), (s))          \
	X(int, nghttp2_submit_response, NGHTTP2_ERR_FATAL,                                         \
	  (nghttp2_session * s, int32_t id, const nghttp2_nv *nva, size_t n,                       \
	   const nghttp2_data_provider *dp),                                                       \
	  (s, id, nva, n, dp))                                                                     \
	X(int, nghttp2_submit_settings, NGHTTP2_ERR_FATAL,                                         \
	  (nghttp2_session * s, uint8_t flags, const nghttp2_settings_entry *iv, size_t n),        \
	  (s, flags, iv, n))                                                                       \
	X(int, nghttp2_submit_trailer, NGHTTP2_ERR_FATAL,                                          \
	  (nghttp2_session * s, int32_t id, const nghttp2_nv *nva, size_t n), (s, id, nva, n))

/* One library: its functions' addresses, filled once (pthread_once: the
 * build context is written on a worker while the loop talks to the
 * engine). */
struct lib {
	const char *soname;
	const char *const *names;
	void **fns;
	size_t n;
	pthread_once_t once;
	bool ok;
	void (*init)(void **fns); /* run once loaded; NULL: none */
};

static void lib_open(struct lib *l)
{
	void *h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);

	if (h == NULL) {
		log_error("cannot load %s (builds and outgoing requests need it): %s", l->soname,
			  dlerror());
		return;
	}
	for (size_t i = 0; i < l->n; i++) {
		l->fns[i] = dlsym(h, l->names[i]);
		if (l->fns[i] == NULL) {
			log_error("cannot load %s: it has no %s (%s)", l->soname, l->names[i],
				  dlerror());
			return; /* the handle stays open: dlclose of a half-used library is no
				   saving */
		}
	}
	if (l->init)
		l->init(l->fns);
	l->ok = true;
}

/* The tables: an enum of the functions, their names and their addresses. */
#define ENUM_X(ret, name, fail, params, args) FN_##name,
#define ENUM_V(name, params, args)	      FN_##name,
#define ENUM_F(name)			      FN_##name,
#define NAME_X(ret, name, fail, params, args) #name,
#define NAME_V(name, params, args)	      #name,
#define NAME_F(name)			      #name,

#define LIB(id, soname, FUNCS, BY_HAND, init)                                                      \
	enum { FUNCS(ENUM_X, ENUM_V) BY_HAND(ENUM_F) id##_N };                                     \
	static const char *const id##_names[] = {FUNCS(NAME_X, NAME_V) BY_HAND(NAME_F)};           \
	static void *id##_fns[id##_N];                                                             \
	static struct lib id = {soname, id##_names, id##_fns, id##_N, PTHREAD_ONCE_INIT,           \
				false,	init};                                                     \
	static void id##_open(void)                                                                \
	{                                                                                          \
		lib_open(&id);                                                                     \
	}                                                                                          \
	static bool id##_loaded(void)                                                              \
	{                                                                                          \
		pthread_once(&id.once, id##_open);                                                 \
		return id.ok;                                                                      \
	}

static void curl_global(void **fns);

LIB(curl, KILN_SONAME_CURL, CURL_FUNCS, CURL_BY_HAND, curl_global)
LIB(archive, KILN_SONAME_ARCHIVE, ARCHIVE_FUNCS, ARCHIVE_BY_HAND, NULL)
LIB(nghttp2, KILN_SONAME_NGHTTP2, NGHTTP2_FUNCS, NONE_BY_HAND, NULL)

/* What kilnd did at start when it linked libcurl: its global init, once
 * and before any handle (thread-safe since 7.84; the multi handle is made
 * on the loop, the BuildKit session's easy handle too). */
static void curl_global(void **fns)
{
	((CURLcode(*)(long))fns[FN_curl_global_init])(CURL_GLOBAL_DEFAULT);
}

/* The forwarding functions. */
#define FWD_X(lib, ret, name, fail, params, args)                                                  \
	ret name params                                                                            \
	{                                                                                          \
		if (!lib##_loaded()) {                                                             \
			errno = ELIBACC;                                                           \
			return fail;                                                               \
		}                                                                                  \
		return ((ret(*) params)lib##_fns[FN_##name])args;                                  \
	}
#define FWD_V(lib, name, params, args)                                                             \
	void name params                                                                           \
	{                                                                                          \
		if (!lib##_loaded())                                                               \
			return;                                                                    \
		((void(*) params)lib##_fns[FN_##name]) args;                                       \
	}
#define CURL_X(ret, name, fail, params, args)	 FWD_X(curl, ret, name, fail, params, args)
#define CURL_V(name, params, args)		 FWD_V(curl, name, params, args)
#define ARCHIVE_X(ret, name, fail, params, args) FWD_X(archive, ret, name, fail, params, args)
#define ARCHIVE_V(name, params, args)		 FWD_V(archive, name, params, args)
#define NGHTTP2_X(ret, name, fail, params, args) FWD_X(nghttp2, ret, name, fail, params, args)
#define NGHTTP2_V(name, params, args)		 FWD_V(nghttp2, name, params, args)

CURL_FUNCS(CURL_X, CURL_V)
ARCHIVE_FUNCS(ARCHIVE_X, ARCHIVE_V)
NGHTTP2_FUNCS(NGHTTP2_X, NGHTTP2_V)

/* ---- the variadic ones ---- */

/* The option's number says its argument's type (curl.h, CURLOPTTYPE_*; the
 * multi options use the same ranges), so the value is read as what it is. */
typedef void (*any_fn)(void);
#define SETOPT_FORWARD(fn, handle, option, ap)                                                     \
	do {                                                                                       \
		if ((option) < CURLOPTTYPE_OBJECTPOINT)                                            \
			return fn(handle, option, va_arg(ap, long));                               \
		if ((option) < CURLOPTTYPE_FUNCTIONPOINT || (option) >= CURLOPTTYPE_BLOB)          \
			return fn(handle, option, va_arg(ap, void *));                             \
		if ((option) < CURLOPTTYPE_OFF_T)                                                  \
			return fn(handle, option, va_arg(ap, any_fn));                             \
		return fn(handle, option, va_arg(ap, curl_off_t));                                 \
	} while (0)

static CURLcode easy_setopt(CURL *h, CURLoption option, va_list ap)
{
	CURLcode (*fn)(CURL *, CURLoption, ...) =
	    (CURLcode(*)(CURL *, CURLoption, ...))curl_fns[FN_curl_easy_setopt];

	SETOPT_FORWARD(fn, h, option, ap);
}

CURLcode curl_easy_setopt(CURL *h, CURLoption option, ...)
{
	va_list ap;
	CURLcode r;

	if (!curl_loaded())
		return CURLE_FAILED_INIT;
	va_start(ap, option);
	r = easy_setopt(h, option, ap);
	va_end(ap);
	return r;
}

static CURLMcode multi_setopt(CURLM *m, CURLMoption option, va_list ap)
{
	CURLMcode (*fn)(CURLM *, CURLMoption, ...) =
	    (CURLMcode(*)(CURLM *, CURLMoption, ...))curl_fns[FN_curl_multi_setopt];

	SETOPT_FORWARD(fn, m, option, ap);
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption option, ...)
{
	va_list ap;
	CURLMcode r;

	if (!curl_loaded())
		return CURLM_INTERNAL_ERROR;
	va_start(ap, option);
	r = multi_setopt(m, option, ap);
	va_end(ap);
	return r;
}

/* The argument is a pointer to what CURLINFO_TYPEMASK names. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	CURLcode (*fn)(CURL *, CURLINFO, ...);
	va_list ap;
	CURLcode r;

	if (!curl_loaded())
		return CURLE_FAILED_INIT;
	fn = (CURLcode(*)(CURL *, CURLINFO, ...))curl_fns[FN_curl_easy_getinfo];
	va_start(ap, info);
	switch (info & CURLINFO_TYPEMASK) {
	case CURLINFO_STRING:
		r = fn(h, info, va_arg(ap, char **));
		break;
	case CURLINFO_LONG:
		r = fn(h, info, va_arg(ap, long *));
		break;
	case CURLINFO_DOUBLE:
		r = fn(h, info, va_arg(ap, double *));
		break;
	case CURLINFO_SOCKET:
		r = fn(h, info, va_arg(ap, curl_socket_t *));
		break;
	case CURLINFO_OFF_T:
		r = fn(h, info, va_arg(ap, curl_off_t *));
		break;
	default: /* CURLINFO_SLIST, CURLINFO_PTR */
		r = fn(h, info, va_arg(ap, void *));
		break;
	}
	va_end(ap);
	return r;
}

/* At exit: nothing to clean up in a library never loaded (and no reason to
 * load it now). */
void curl_global_cleanup(void)
{
	if (curl.ok)
		((void (*)(void))curl_fns[FN_curl_global_cleanup])();
}

/* The message is formatted here; the library gets it as a plain string. */
void archive_set_error(struct archive *a, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!archive_loaded())
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	((void (*)(struct archive *, int, const char *, ...))archive_fns[FN_archive_set_error])(
	    a, err, "%s", msg);
}
