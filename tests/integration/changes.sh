#!/usr/bin/env bash
# changes.sh: `kiln changes` on real repositories made with git, one scenario
# per rule of change detection.
. "$(dirname "$0")/lib/common.sh"
R="$KILN changes"

t_added_modified_removed() {
	new_repo
	image a a 1
	image b b 1
	image c c 1
	commit one
	echo x >a/file
	rm -r c
	image d d 1
	commit two
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	removed	c	reg.example.com:5000/team/c:1
	added	d	reg.example.com:5000/team/d:1
	E
	# nothing changed: no output, exit 0
	expect_changes HEAD HEAD </dev/null
}

t_manifest_only_change() {
	new_repo
	image a a 1
	commit one
	image a a 2
	commit two
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:2
	E
}

t_root_and_nested_folders() {
	new_repo
	image . root 1
	image sub/inner inner 1
	image sub/inner/deeper deeper 1
	commit one
	echo x >sub/inner/deeper/f
	commit two
	# the change is inside every enclosing image's context
	expect_changes HEAD~1 HEAD <<-'E'
	modified	.	reg.example.com:5000/team/root:1
	modified	sub/inner	reg.example.com:5000/team/inner:1
	modified	sub/inner/deeper	reg.example.com:5000/team/deeper:1
	E
	# the parent ignores its nested image folder
	echo deeper >sub/inner/.dockerignore
	commit three
	echo y >sub/inner/deeper/f
	commit four
	expect_changes HEAD~1 HEAD <<-'E'
	modified	.	reg.example.com:5000/team/root:1
	modified	sub/inner/deeper	reg.example.com:5000/team/deeper:1
	E
}

t_rename_is_removed_plus_added() {
	new_repo
	image old img 1
	commit one
	git mv old new
	commit two
	expect_changes HEAD~1 HEAD <<-'E'
	added	new	reg.example.com:5000/team/img:1
	removed	old	reg.example.com:5000/team/img:1
	E
}

t_deletion_and_tree_file_swap() {
	new_repo
	image a a 1
	mkdir -p a/data && echo 1 >a/data/x && echo 2 >a/gone
	commit one
	rm a/gone
	commit two
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
	rm -r a/data && echo now-a-file >a/data
	commit three
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
}

t_dockerignore_rules() {
	new_repo
	image a a 1
	printf 'docs\n!docs/keep.md\n*.log\n' >a/.dockerignore
	mkdir -p a/docs && echo 1 >a/docs/keep.md && echo 1 >a/docs/other.md && echo 1 >a/x.log
	mkdir -p a/sub && echo 1 >a/sub/y.log
	commit one
	echo 2 >>a/docs/other.md
	echo 2 >>a/x.log
	commit ignored
	expect_changes HEAD~1 HEAD </dev/null
	echo 2 >>a/docs/keep.md
	commit exception
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
	# *.md matches only at the context root: sub/y.log counts
	echo 2 >>a/sub/y.log
	commit nested-log
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
	# the .dockerignore itself always counts, even when it ignores itself
	printf '.dockerignore\ndocs\n' >a/.dockerignore
	commit self
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
	# and so does the Dockerfile when ignored
	printf 'Dockerfile\n' >a/.dockerignore
	commit df-ignored
	echo 'RUN true' >>a/Dockerfile
	commit df-change
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
	# a change made and undone within the range is no change
	echo tmp >a/docs/keep.md
	commit do
	git revert --no-edit HEAD >/dev/null
	expect_changes HEAD~2 HEAD </dev/null
}

t_shared_context_and_dockerfile() {
	new_repo
	mkdir -p shared lib
	printf 'FROM scratch\n' >shared/Dockerfile.common
	echo 1 >lib/code
	manifest svc/a a 1 "dockerfile: ../../shared/Dockerfile.common"
	manifest svc/b b 1 "context: ../.." "dockerfile: Dockerfile"
	printf 'FROM scratch\n' >svc/b/Dockerfile
	printf 'unrelated\n' >.dockerignore.other
	printf 'docs\n' >.dockerignore
	commit one
	echo 'LABEL x=1' >>shared/Dockerfile.common
	commit shared-df
	# a's Dockerfile lives outside its folder; b's context is the root
	expect_changes HEAD~1 HEAD <<-'E'
	modified	svc/a	reg.example.com:5000/team/a:1
	modified	svc/b	reg.example.com:5000/team/b:1
	E
	echo 2 >lib/code
	commit lib
	expect_changes HEAD~1 HEAD <<-'E'
	modified	svc/b	reg.example.com:5000/team/b:1
	E
	mkdir -p docs && echo 1 >docs/readme
	commit docs-ignored-by-root-context
	expect_changes HEAD~1 HEAD </dev/null
}

t_mode_symlink_submodule() {
	new_repo
	image a a 1
	echo '#!/bin/sh' >a/run.sh
	ln -s target1 a/link
	commit one
	chmod +x a/run.sh
	commit mode
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
	ln -sfn target2 a/link
	commit symlink
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
	# a submodule is a commit id in the tree
	git update-index --add --cacheinfo 160000,1111111111111111111111111111111111111111,a/mod
	git commit -q -m sub1
	git update-index --add --cacheinfo 160000,2222222222222222222222222222222222222222,a/mod
	git commit -q -m sub2
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
}

t_unrelated_histories() {
	new_repo
	image a a 1
	image b b 1
	commit one
	git checkout -q --orphan other
	git rm -rq --cached . && rm -rf a b
	image b b 1
	image c c 1
	commit other-root
	expect_changes main other <<-'E'
	removed	a	reg.example.com:5000/team/a:1
	added	c	reg.example.com:5000/team/c:1
	E
}

t_dependencies() {
	new_repo
	image base base 1
	manifest base base 1 "tags: [latest, stable]"
	# mid uses base's tag through an ARG; app uses mid via build_args; tool has no tag (latest)
	printf 'ARG REG=reg.example.com:5000/team\nARG T=stable\nFROM ${REG}/base:${T}\n' >mid.Dockerfile
	manifest mid mid 2 "dockerfile: ../mid.Dockerfile"
	manifest app app 3 "build_args: {V: '2'}"
	printf 'ARG V\nFROM --platform=linux/amd64 reg.example.com:5000/team/mid:$V AS build\nFROM build\n' >app/Dockerfile
	image tool tool 1 reg.example.com:5000/team/base
	image zz zz 1 reg.example.com:5000/team/unrelated:1
	commit one
	echo 'RUN true' >>base/Dockerfile
	commit base-change
	expect_changes HEAD~1 HEAD <<-'E'
	modified	base	reg.example.com:5000/team/base:1
	dependency	mid	reg.example.com:5000/team/mid:2
	dependency	app	reg.example.com:5000/team/app:3
	dependency	tool	reg.example.com:5000/team/tool:1
	E
	expect_rc 0 $R --json HEAD~1 HEAD
	contains "$OUT" '"depends_on": [
        "mid"
      ]'
	# a change in mid only rebuilds mid and app, base first is not listed
	echo 'RUN x' >>mid.Dockerfile
	commit mid-change
	expect_changes HEAD~1 HEAD <<-'E'
	modified	mid	reg.example.com:5000/team/mid:2
	dependency	app	reg.example.com:5000/team/app:3
	E
	# a dependency that sorts before its base still comes after it
	image aaa aaa 1 reg.example.com:5000/team/zz:1
	commit aaa
	echo 'RUN y' >>zz/Dockerfile
	commit zz-change
	expect_changes HEAD~1 HEAD <<-'E'
	modified	zz	reg.example.com:5000/team/zz:1
	dependency	aaa	reg.example.com:5000/team/aaa:1
	E
}

t_dependency_cycle() {
	new_repo
	image a a 1 reg.example.com:5000/team/b:1
	image b b 1 reg.example.com:5000/team/a:1
	image c c 1
	commit one
	echo 'RUN 1' >>a/Dockerfile
	echo 'RUN 1' >>c/Dockerfile
	commit two
	expect_rc 1 $R HEAD~1 HEAD
	contains "$ERR" "dependency cycle"
	contains "$ERR" "'a'"
	contains "$ERR" "'b'"
	contains "$OUT" "modified	c	"
}

t_invalid_manifests() {
	new_repo
	image a a 1
	image b b 1
	commit one
	printf 'name: b\nversion: "1"\nregistry: reg.example.com\nbrnach: x\n' >b/manifest.yaml
	echo x >a/f
	commit two
	expect_rc 1 $R HEAD~1 HEAD
	[ "$OUT" = "modified	a	reg.example.com:5000/team/a:1" ] || fail "valid image not listed: $OUT"
	contains "$ERR" "b/manifest.yaml:4:1: unknown key 'brnach'"
	expect_rc 1 $R --json HEAD~1 HEAD
	echo "$OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert [i["path"] for i in d["images"]] == ["a"], d
e = d["errors"][0]
assert (e["path"], e["line"], e["column"]) == ("b/manifest.yaml", 4, 1), e
assert "brnach" in e["message"], e
' || fail "JSON errors wrong: $OUT"
	# an invalid manifest that is not affected is not reported
	echo y >a/f
	commit three
	expect_rc 0 $R HEAD~1 HEAD
	# a YAML syntax error is located too
	printf 'name: [b\n' >b/manifest.yaml
	commit four
	expect_rc 1 $R HEAD~1 HEAD
	contains "$ERR" "b/manifest.yaml:2:1: YAML syntax error"
}

t_duplicate_reference() {
	new_repo
	image a same 1
	image b same 1
	commit one
	echo x >b/f
	commit two
	expect_rc 1 $R HEAD~1 HEAD
	contains "$ERR" "reg.example.com:5000/team/same:1' is also produced by 'a'"
}

t_bad_input() {
	new_repo
	image a a 1
	commit one
	expect_rc 2 $R nosuchrev HEAD
	contains "$ERR" "unknown revision 'nosuchrev'"
	expect_rc 2 $R HEAD 0000000000000000000000000000000000000000
	contains "$ERR" "0000000000000000000000000000000000000000"
	expect_rc 2 $R --repo "$TEST_TMP/none" HEAD HEAD
	contains "$ERR" "$TEST_TMP/none"
	expect_rc 2 $R HEAD
	expect_rc 2 $R --bogus HEAD HEAD
	expect_rc 2 $R --manifest a/b HEAD HEAD
	expect_rc 2 "$KILN" frobnicate
	contains "$ERR" "unknown command 'frobnicate'"
	expect_rc 0 $R --help
	contains "$OUT" "usage: kiln changes"
	expect_rc 0 "$KILN" --version
	contains "$OUT" "kiln "
	# a tree id is not a commit
	expect_rc 2 $R "HEAD^{tree}" HEAD
	contains "$ERR" "does not name a commit"
}

t_revision_forms() {
	new_repo
	image a a 1
	commit one
	git tag v1
	echo x >a/f
	commit two
	git branch feature
	full=$(git rev-parse HEAD~1)
	short=$(git rev-parse --short HEAD~1)
	for from in v1 "$full" "$short" HEAD~1 HEAD^; do
		expect_changes "$from" feature <<-'E'
		modified	a	reg.example.com:5000/team/a:1
		E
	done
}

t_bare_repository_and_repo_option() {
	mkdir src && cd src && new_repo
	image a a 1
	commit one
	echo x >a/f
	commit two
	cd ..
	git clone -q --bare src bare.git
	expect_changes --repo bare.git HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
	# from a subdirectory the repository is found upwards
	cd src/a
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	E
}

t_manifest_option() {
	new_repo
	mkdir a b
	printf 'name: a\nversion: "1"\nregistry: r.example.com\n' >a/image.yaml
	image b b 1
	commit one
	echo x >a/f && echo x >b/f
	commit two
	expect_changes --manifest image.yaml HEAD~1 HEAD <<-'E'
	modified	a	r.example.com/a:1
	E
	expect_changes HEAD~1 HEAD <<-'E'
	modified	b	reg.example.com:5000/team/b:1
	E
}

t_json_shape() {
	new_repo
	image a a 1
	manifest a a 1 "tags: [latest]"
	commit one
	echo x >a/f
	rm -f a/Dockerfile
	printf 'FROM scratch\n' >a/Dockerfile
	git rm -q --cached a/manifest.yaml 2>/dev/null
	git add -A
	commit two
	expect_rc 0 $R --json HEAD~1 HEAD
	from=$(git rev-parse HEAD~1) to=$(git rev-parse HEAD)
	echo "$OUT" | FROM="$from" TO="$to" python3 -c '
import json, os, sys
d = json.load(sys.stdin)
assert d["from"] == os.environ["FROM"] and d["to"] == os.environ["TO"], d
assert list(d) == ["from", "to", "images", "errors"], list(d)
im = d["images"][0]
assert im == {"path": "a", "change": "modified", "name": "a", "version": "1",
              "registry": "reg.example.com:5000/team", "image": "reg.example.com:5000/team/a:1",
              "tags": ["latest"], "depends_on": []}, im
assert d["errors"] == []
' || fail "JSON shape wrong: $OUT"
}

t_cache_is_safe() {
	new_repo
	image a a 1
	image b b 1 reg.example.com:5000/team/a:1
	commit one
	echo x >a/f
	commit two
	want=$(printf 'modified\ta\treg.example.com:5000/team/a:1\ndependency\tb\treg.example.com:5000/team/b:1')
	cold=$($R HEAD~1 HEAD)
	[ "$cold" = "$want" ] || fail "cold run: $cold"
	ls .git/kiln/catalog-* >/dev/null 2>&1 || fail "no cache file written"
	warm=$($R HEAD~1 HEAD)
	[ "$warm" = "$want" ] || fail "warm run: $warm"
	# a damaged cache is rebuilt, never trusted
	for f in .git/kiln/catalog-*; do
		printf 'garbage' | dd of="$f" bs=1 seek=40 conv=notrunc 2>/dev/null
	done
	[ "$($R HEAD~1 HEAD)" = "$want" ] || fail "damaged cache header changed the answer"
	# damage inside a data block: found when the block is first read, then rebuilt
	for f in .git/kiln/catalog-*; do
		printf 'XXXXXXXX' | dd of="$f" bs=1 seek=200 conv=notrunc 2>/dev/null
	done
	[ "$($R HEAD~1 HEAD)" = "$want" ] || fail "damaged cache block changed the answer"
	[ "$($R HEAD~1 HEAD)" = "$want" ] || fail "rebuilt cache changed the answer"
	for f in .git/kiln/catalog-*; do : >"$f"; done
	[ "$($R HEAD~1 HEAD)" = "$want" ] || fail "empty cache changed the answer"
	# a cache written for another tree is brought up to date by diffing
	$R HEAD~1 HEAD~1 >/dev/null
	image b b 1 reg.example.com:5000/team/c:1
	image c c 1
	commit three
	$R HEAD~1 HEAD >/dev/null
	git checkout -q HEAD~1
	echo y >a/f
	commit four
	expect_changes HEAD~1 HEAD <<-'E'
	modified	a	reg.example.com:5000/team/a:1
	dependency	b	reg.example.com:5000/team/b:1
	E
	# concurrent runs each see a whole cache
	rm -rf .git/kiln
	for i in 1 2 3 4 5 6; do $R HEAD~2 HEAD >"$TEST_TMP/c$i" & done
	wait
	for i in 1 2 3 4 5 6; do
		cmp -s "$TEST_TMP/c1" "$TEST_TMP/c$i" || fail "concurrent run $i differs"
	done
	ls .git/kiln/*.tmp.* >/dev/null 2>&1 && fail "temporary cache files left behind"
	# --no-cache neither reads nor writes
	rm -rf .git/kiln
	[ "$($R --no-cache HEAD~1 HEAD)" = "$want" ] || fail "--no-cache answer"
	[ -e .git/kiln ] && fail "--no-cache wrote a cache"
	return 0
}

t_read_only_repository() {
	new_repo
	image a a 1
	commit one
	echo x >a/f
	commit two
	chmod -R a-w .git
	want='modified	a	reg.example.com:5000/team/a:1'
	if [ "$(id -u)" = 0 ]; then
		# another user may read but not write; git's ownership check is lifted for it
		chmod 755 "$TEST_TMP" "$TEST_TMP/$FUNCNAME"
		git config --global safe.directory "$PWD"
		chmod 644 "$HOME/.gitconfig"
		got=$(HOME="$HOME" setpriv --reuid=65534 --regid=65534 --clear-groups "$KILN" changes --repo . HEAD~1 HEAD 2>&1)
	else
		got=$($R HEAD~1 HEAD 2>&1)
	fi
	[ "$got" = "$want" ] || fail "read-only repository: $got"
	[ -e .git/kiln ] && fail "a cache was written into a read-only repository"
	chmod -R u+w .git
}

run_all
