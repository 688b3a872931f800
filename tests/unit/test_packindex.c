/* test_packindex.c: kiln's pack indexer against libgit2's on the same packs
 * (libgit2's packbuilder's, with deltas by id, and packs made here by hand
 * with deltas by offset and chains of both), fed in pieces of every size;
 * the .idx must be the same bytes. Then packs that are broken in each way
 * the format allows, and a real first fetch into an empty mirror. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "gitrepo.h"
#include "kiln/buf.h"
#include "kiln/packindex.h"
#include "kiln/repo.h"

static char dir[64], ours[96], theirs[96];
static git_repository *repo;

static int setup(void **state)
{
	(void)state;
	repo = gitrepo_new(dir);
	snprintf(ours, sizeof(ours), "%s/ours", dir);
	snprintf(theirs, sizeof(theirs), "%s/theirs", dir);
	mkdir(ours, 0755);
	mkdir(theirs, 0755);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gitrepo_remove(repo, dir);
	return 0;
}

static void read_file(const char *path, struct buf *b)
{
	int fd = open(path, O_RDONLY);
	char chunk[4096];
	ssize_t n;

	assert_true(fd >= 0);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(b, chunk, (size_t)n);
	close(fd);
}

static unsigned count_files(const char *d)
{
	DIR *dd = opendir(d);
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(dd);
	while ((e = readdir(dd)) != NULL)
		n += e->d_name[0] != '.';
	closedir(dd);
	return n;
}

/* ours: the pack fed in pieces of `piece` bytes; 0 and its name, or the error */
static int index_ours(const struct buf *pack, size_t piece, char name[41], struct kiln_err *err)
{
	struct packindex *pi;
	git_indexer_progress st = {0};
	int r = packindex_new(ours, &pi, err);

	assert_int_equal(r, 0);
	for (size_t at = 0; r == 0 && at < pack->len; at += piece) {
		size_t n = pack->len - at < piece ? pack->len - at : piece;
		r = packindex_append(pi, pack->p + at, n, &st, err);
	}
	if (r == 0)
		r = packindex_commit(pi, &st, name, err);
	packindex_free(pi);
	if (r == 0) {
		assert_int_equal(st.received_objects, st.total_objects);
		assert_int_equal(st.indexed_deltas, st.total_deltas);
	}
	return r;
}

/* The same pack through libgit2's indexer and ours (in pieces of 1, 7,
 * 4096 bytes and whole): the same name and the same .idx bytes. Returns the
 * number of deltas. */
static unsigned same_as_libgit2(const struct buf *pack)
{
	static const size_t pieces[] = {1, 7, 4096, SIZE_MAX};
	git_indexer *idx;
	git_indexer_progress st = {0};
	struct buf want = {0};
	char *path;
	char name[41];
	unsigned deltas;

	assert_int_equal(git_indexer_new(&idx, theirs, 0, NULL, NULL), 0);
	assert_int_equal(git_indexer_append(idx, pack->p, pack->len, &st), 0);
	assert_int_equal(git_indexer_commit(idx, &st), 0);
	deltas = st.total_deltas;
	path = xasprintf("%s/pack-%s.idx", theirs, git_indexer_name(idx));
	read_file(path, &want);
	free(path);
	for (size_t k = 0; k < ARRAY_SIZE(pieces); k++) {
		struct kiln_err err = {0};
		struct buf got = {0};
		if (index_ours(pack, pieces[k], name, &err) != 0)
			fail_msg("piece %zu: %s", pieces[k], err.msg);
		assert_string_equal(name, git_indexer_name(idx));
		path = xasprintf("%s/pack-%s.idx", ours, name);
		read_file(path, &got);
		assert_int_equal(got.len, want.len);
		assert_memory_equal(got.p, want.p, want.len);
		unlink(path);
		free(path);
		path = xasprintf("%s/pack-%s.pack", ours, name);
		assert_int_equal(access(path, R_OK), 0);
		unlink(path);
		free(path);
		buf_done(&got);
	}
	assert_int_equal(count_files(ours), 0); /* no temporary file left */
	git_indexer_free(idx);
	buf_done(&want);
	return deltas;
}

static int pb_cb(void *data, size_t len, void *payload)
{
	buf_append(payload, data, len);
	return 0;
}

static void same_index_as_libgit2(void **state)
{
	char text[3000];
	git_commit *c = NULL;
	git_packbuilder *pb;
	struct buf pack = {0};

	(void)state;
	/* similar files in every commit, so that the packbuilder makes deltas */
	for (int i = 0; i < 12; i++) {
		for (size_t k = 0; k + 1 < sizeof(text); k++)
			text[k] = (char)('a' + (k * 7 + k / 100) % 26);
		text[sizeof(text) - 1] = '\0';
		text[i * 100] = 'X';
		const struct gitrepo_file f[] = {{"app/manifest.yaml", text, 0},
						 {i % 2 ? "base/x" : "base/y", text + i, 0}};
		git_commit *next = gitrepo_commit(repo, c, f, 2);
		git_commit_free(c);
		c = next;
	}
	assert_int_equal(git_packbuilder_new(&pb, repo), 0);
	git_packbuilder_set_threads(pb, 1);
	assert_int_equal(git_packbuilder_insert_commit(pb, git_commit_id(c)), 0);
	{
		git_revwalk *w;
		git_oid id;
		assert_int_equal(git_revwalk_new(&w, repo), 0);
		git_revwalk_push(w, git_commit_id(c));
		while (git_revwalk_next(&id, w) == 0)
			assert_int_equal(git_packbuilder_insert_commit(pb, &id), 0);
		git_revwalk_free(w);
	}
	assert_int_equal(git_packbuilder_foreach(pb, pb_cb, &pack), 0);
	assert_true(same_as_libgit2(&pack) > 0); /* deltas by id */
	git_packbuilder_free(pb);
	git_commit_free(c);
	buf_done(&pack);
}

/* ---- packs made by hand ---- */

static void put_be32(struct buf *b, uint32_t v)
{
	unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
			      (unsigned char)(v >> 8), (unsigned char)v};
	buf_append(b, x, 4);
}

static void pk_start(struct buf *b, uint32_t count)
{
	buf_append(b, "PACK", 4);
	put_be32(b, 2);
	put_be32(b, count);
}

static void put_head(struct buf *b, unsigned type, uint64_t size)
{
	unsigned char c = (unsigned char)(type << 4 | (size & 15));

	size >>= 4;
	while (size) {
		buf_putc(b, (char)(c | 0x80));
		c = size & 0x7f;
		size >>= 7;
	}
	buf_putc(b, (char)c);
}

static void put_deflated(struct buf *b, const void *data, size_t len)
{
	uLongf zlen = compressBound((uLong)len);
	unsigned char *z = xmalloc(zlen);

	assert_int_equal(compress(z, &zlen, data, (uLong)len), Z_OK);
	buf_append(b, z, zlen);
	free(z);
}

/* an object whose header says size, then data deflated; returns its offset */
static size_t pk_obj(struct buf *b, unsigned type, uint64_t size, const void *data, size_t len)
{
	size_t at = b->len;

	put_head(b, type, size);
	put_deflated(b, data, len);
	return at;
}

static size_t pk_blob(struct buf *b, const char *s)
{
	return pk_obj(b, 3, strlen(s), s, strlen(s));
}

/* the distance back to the base, as OFS_DELTA writes it */
static void put_ofs(struct buf *b, uint64_t dist)
{
	unsigned char x[16];
	size_t i = sizeof(x) - 1;

	x[i] = dist & 0x7f;
	while (dist >>= 7)
		x[--i] = 0x80 | (--dist & 0x7f);
	buf_append(b, x + i, sizeof(x) - i);
}

static size_t pk_delta(struct buf *b, int kind, uint64_t base_off, const unsigned char *base_id,
		       const struct buf *delta)
{
	size_t at = b->len;

	put_head(b, kind == 6 ? 6 : 7, delta->len);
	if (kind == 6)
		put_ofs(b, at - base_off);
	else
		buf_append(b, base_id, 20);
	put_deflated(b, delta->p, delta->len);
	return at;
}

static void pk_end(struct buf *b)
{
	unsigned char sum[20];
	unsigned n = 20;
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	EVP_DigestInit_ex(c, EVP_sha1(), NULL);
	EVP_DigestUpdate(c, b->p, b->len);
	EVP_DigestFinal_ex(c, sum, &n);
	EVP_MD_CTX_free(c);
	buf_append(b, sum, 20);
}

static void put_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		buf_putc(b, (char)(0x80 | (v & 0x7f)));
		v >>= 7;
	}
	buf_putc(b, (char)v);
}

/* a delta: copy base[off, off+n), then insert s */
static void delta_of(struct buf *d, size_t base_len, size_t off, size_t n, const char *s)
{
	size_t len = n + strlen(s);

	d->len = 0;
	put_varint(d, base_len);
	put_varint(d, len);
	buf_putc(d, (char)(0x80 | 0x01 | 0x10)); /* one offset byte, one size byte */
	buf_putc(d, (char)off);
	buf_putc(d, (char)n);
	buf_putc(d, (char)strlen(s));
	buf_append(d, s, strlen(s));
}

static void blob_id(const char *s, unsigned char id[20])
{
	git_oid oid;
	assert_int_equal(git_odb_hash(&oid, s, strlen(s), GIT_OBJECT_BLOB), 0);
	memcpy(id, oid.id, 20);
}

#define A      "the base blob, long enough to copy from: 0123456789"
#define B_OF_A "the base blob, + b" /* A[0,15) + "+ b" */

/* A, B an OFS delta of A, C an OFS delta of B (a chain), D a REF delta of B
 * (a base that is itself a delta), E a REF delta placed before its base F. */
static void deltas_by_offset_and_by_id(void **state)
{
	struct buf p = {0}, d = {0};
	unsigned char id[20];
	size_t a, b;

	(void)state;
	pk_start(&p, 6);
	a = pk_blob(&p, A);
	delta_of(&d, strlen(A), 0, 15, "+ b");
	b = pk_delta(&p, 6, a, NULL, &d);
	delta_of(&d, strlen(B_OF_A), 0, 9, "+ c");
	pk_delta(&p, 6, b, NULL, &d);
	blob_id(B_OF_A, id);
	delta_of(&d, strlen(B_OF_A), 4, 4, " d");
	pk_delta(&p, 7, 0, id, &d);
	blob_id("F: a blob later in the pack", id);
	delta_of(&d, strlen("F: a blob later in the pack"), 0, 2, "e");
	pk_delta(&p, 7, 0, id, &d);
	pk_blob(&p, "F: a blob later in the pack");
	pk_end(&p);
	assert_int_equal(same_as_libgit2(&p), 4);
	buf_done(&p);
	buf_done(&d);
}

/* A pack of no object (a server may send one) has an index all the same. */
static void an_empty_pack(void **state)
{
	struct buf p = {0};

	(void)state;
	pk_start(&p, 0);
	pk_end(&p);
	assert_int_equal(same_as_libgit2(&p), 0);
	buf_done(&p);
}

/* p is refused with a message holding want, at commit or before, and
 * leaves no file. */
static void refused(struct buf *p, const char *want)
{
	struct kiln_err err = {0};
	char name[41];

	assert_true(index_ours(p, 5, name, &err) < 0);
	if (strstr(err.msg, want) == NULL)
		fail_msg("wanted '%s' in '%s'", want, err.msg);
	assert_int_equal(count_files(ours), 0);
	buf_done(p);
}

/* A blob and a delta of it by offset, the delta as delta_of makes it. */
static void two(struct buf *p, size_t base_len, uint64_t base_off_shift, size_t off, size_t n)
{
	struct buf d = {0};
	size_t a;

	pk_start(p, 2);
	a = pk_blob(p, A);
	delta_of(&d, base_len, off, n, "+ b");
	pk_delta(p, 6, a + base_off_shift, NULL, &d);
	pk_end(p);
	buf_done(&d);
}

static void one(struct buf *p, unsigned type, uint64_t size, const char *data, size_t len)
{
	pk_start(p, 1);
	pk_obj(p, type, size, data, len);
	pk_end(p);
}

static void bad_packs_are_refused(void **state)
{
	static const struct {
		unsigned type;
		uint64_t size;
		const char *data, *want;
	} ones[] = {
	    {3, 10, "12345", "its header says 10"},
	    {3, 3, "12345", "more data than its size"},
	    {5, 5, "12345", "bad type 5"},
	    {3, (uint64_t)1 << 40, "12345", "more than kiln takes"},
	};
	struct buf p = {0}, d = {0};
	unsigned char id[20];

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(ones); k++) {
		one(&p, ones[k].type, ones[k].size, ones[k].data, 5);
		refused(&p, ones[k].want);
	}
	two(&p, strlen(A), 0, 0, 15);
	p.len -= 5;
	refused(&p, "the pack ended early");
	two(&p, strlen(A), 0, 0, 15);
	p.p[p.len - 1] ^= 1;
	refused(&p, "checksum does not match");
	two(&p, strlen(A), 0, 0, 15);
	buf_putc(&p, 'x');
	refused(&p, "data after the pack's checksum");
	two(&p, strlen(A), 0, 0, 15);
	p.p[3] = 'X';
	refused(&p, "no 'PACK' signature");
	two(&p, strlen(A), 0, 0, 15);
	p.p[7] = 9;
	refused(&p, "pack version 9");
	two(&p, strlen(A), 0, 0, 15);
	p.p[7] = 3; /* git reads version 3, libgit2 1.5 does not: no object of it is found */
	refused(&p, "pack version 3");
	two(&p, strlen(A), 1, 0, 15); /* the base offset inside the blob */
	refused(&p, "starts no object");
	two(&p, strlen(A), 0, 40, 100); /* a copy past the base's end */
	refused(&p, "a bad delta of the object at offset 12");
	two(&p, strlen(A) + 1, 0, 0, 15); /* the base's size is not the blob's */
	refused(&p, "a bad delta");

	/* a delta by id of an object not in the pack (a thin pack) */
	pk_start(&p, 1);
	blob_id("not in this pack", id);
	delta_of(&d, strlen("not in this pack"), 0, 3, "x");
	pk_delta(&p, 7, 0, id, &d);
	pk_end(&p);
	refused(&p, "1 of the pack's 1 deltas have no base in it");
	/* a delta by offset 12 bytes back: the pack's header */
	pk_start(&p, 1);
	delta_of(&d, 10, 0, 3, "x");
	pk_delta(&p, 6, 0, NULL, &d);
	pk_end(&p);
	refused(&p, "base offset out of the pack");
	pk_start(&p, 2);
	pk_blob(&p, A);
	pk_blob(&p, A);
	pk_end(&p);
	refused(&p, "is in the pack twice");
	pk_start(&p, 1);
	buf_putc(&p, (char)(3 << 4 | 3));
	buf_append(&p, "\x78\x9c\xff\xff\xff\xff", 6);
	pk_end(&p);
	refused(&p, "bad zlib data");
	buf_done(&d);
}

/* repo_fetch into an empty mirror goes through packindex (libgit2's local
 * transport packs what it sends): every object is there, and the mirror's
 * only pack is indexed as git's index-pack would. */
static void first_fetch_into_an_empty_mirror(void **state)
{
	const struct gitrepo_file f[] = {{"app/manifest.yaml", "name: app\n", 0},
					 {"app/Dockerfile", "FROM scratch\n", 0}};
	const struct gitrepo_file g[] = {{"app/Dockerfile", "FROM scratch\nCOPY x /\n", 0}};
	git_commit *c1 = gitrepo_commit(repo, NULL, f, 2);
	git_commit *c2 = gitrepo_commit(repo, c1, g, 1);
	git_reference *ref;
	git_repository *mirror;
	struct kiln_err err = {0};
	const char *branches[] = {"main"};
	char *mpath = xasprintf("%s/mirror.git", dir), *pack_dir;
	git_oid tip;
	git_commit *got;

	(void)state;
	assert_int_equal(
	    git_reference_create(&ref, repo, "refs/heads/main", git_commit_id(c2), 1, NULL), 0);
	git_reference_free(ref);
	assert_int_equal(repo_mirror_open(mpath, &mirror, &err), 0);
	pack_dir = xasprintf("%s/objects/pack", mpath);
	{
		/* what a run killed while writing the pack left; also a pack
		 * whose index was not renamed yet (unused: still a first fetch) */
		char *orphan = xasprintf("%s/pack-%040d.pack", pack_dir, 0);
		int ofd = open(orphan, O_CREAT | O_WRONLY, 0444);
		char *left = xasprintf("%s/tmp_kiln_pack_AbCdEf", pack_dir);
		assert_true(ofd >= 0);
		close(ofd);
		free(orphan);
		int fd = open(left, O_CREAT | O_WRONLY, 0444);
		assert_true(fd >= 0);
		close(fd);
		free(left);
	}
	if (repo_fetch(mirror, dir, &(struct repo_creds){0}, branches, 1, &err) != 0)
		fail_msg("%s", err.msg);
	{
		git_odb *odb;
		assert_int_equal(git_repository_odb(&odb, mirror), 0);
		assert_int_equal(git_odb_num_backends(odb), 3); /* loose, packs and ours */
		git_odb_free(odb);
	}
	assert_int_equal(repo_branch_tip(mirror, "main", &tip), 0);
	assert_true(git_oid_equal(&tip, git_commit_id(c2)));
	assert_int_equal(git_commit_lookup(&got, mirror, git_commit_parent_id(c2, 0)), 0);
	git_commit_free(got);
	assert_int_equal(count_files(pack_dir), 3); /* the orphan, one .pack, its .idx */
	{
		/* The mirror's handle lives on and its next fetches may bring a
		 * thin pack (a delta of a blob the mirror has): libgit2's
		 * indexer, not ours, must take it. */
		struct buf p = {0}, d = {0};
		unsigned char id[20];
		git_odb *odb;
		git_odb_writepack *wp;
		git_indexer_progress st = {0};
		git_oid want;

		pk_start(&p, 1);
		blob_id("FROM scratch\n", id);
		delta_of(&d, strlen("FROM scratch\n"), 0, 13, "RUN x\n");
		pk_delta(&p, 7, 0, id, &d);
		pk_end(&p);
		assert_int_equal(git_repository_odb(&odb, mirror), 0);
		assert_int_equal(git_odb_write_pack(&wp, odb, NULL, NULL), 0);
		assert_int_equal(wp->append(wp, p.p, p.len, &st), 0);
		if (wp->commit(wp, &st) != 0)
			fail_msg("a thin pack after the first: %s", git_error_last()->message);
		wp->free(wp);
		assert_int_equal(git_odb_hash(&want, "FROM scratch\nRUN x\n", 19, GIT_OBJECT_BLOB),
				 0);
		assert_true(git_odb_exists(odb, &want));
		git_odb_free(odb);
		buf_done(&p);
		buf_done(&d);
	}
	free(pack_dir);
	repo_close(mirror);
	free(mpath);
	git_commit_free(c1);
	git_commit_free(c2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(same_index_as_libgit2, setup, teardown),
	    cmocka_unit_test_setup_teardown(deltas_by_offset_and_by_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(an_empty_pack, setup, teardown),
	    cmocka_unit_test_setup_teardown(bad_packs_are_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(first_fetch_into_an_empty_mirror, setup, teardown),
	};

	repo_global_init(REPO_ROLE_DAEMON);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
