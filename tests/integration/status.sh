#!/usr/bin/env bash
# status.sh: the status socket and the kiln commands that use it: every
# command, permission refusals for another uid, rights from the peer's
# credentials for members of either group, per-uid connection caps with a
# reserve for root, half-closed pipelining clients, and bad clients beside
# good.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}" "${KILN:?}"

not_contains() {
	case "$1" in *"$2"*) fail "did not expect '$2' in: $1" ;; esac
	return 0
}

start() { # [extra listen yaml]
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
	(cd c && image a a 1 && image b b 1 reg.example.com:5000/team/a:1 && commit one &&
		git push -q origin HEAD:main)
	cat >kilnd.yaml <<-Y
	state_dir: $PWD/state
	builds: {dry_run: true}
	listen: {status_socket: $PWD/kiln.sock${1:-}}
	repositories:
	  - name: images
	    url: $PWD/origin.git
	    poll_interval: 300ms
	Y
	"$KILND" --config kilnd.yaml >kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 test -S kiln.sock || fail "no status socket"
	wait_for 10 grep -q "first seen" kilnd.log || fail "no first poll"
	export KILN_SOCKET=$PWD/kiln.sock
}

# idle_builder: kilnd reports no build queued or running
idle_builder() {
	"$KILN" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["queued"] == 0 and s["running"] == 0 else 1)'
}

# follow_queued SHA SECONDS: logs -f waits for a queued build to end: one
# is queued behind kilnd's back and followed; after SECONDS a rebuild wakes
# the builder, which takes the oldest first, and the follower prints its log
follow_queued() {
	local fid fpid
	python3 -c "
import sqlite3
c = sqlite3.connect('state/kilnd.db')
c.execute(\"INSERT INTO builds (repository, branch, path, image, commit_sha, change, state, created_at) VALUES ('images', 'main', 'b', 'reg.example.com:5000/team/b:1', '$1', 'modified', 'queued', 0)\")
c.commit()"
	fid=$(python3 -c "import sqlite3; print(sqlite3.connect('state/kilnd.db').execute('SELECT max(id) FROM builds').fetchone()[0])")
	"$KILN" logs -f "$fid" >follow.out 2>&1 &
	fpid=$!
	sleep "$2"
	kill -0 "$fpid" 2>/dev/null || fail "logs -f returned before the build ran: $(cat follow.out)"
	expect_rc 0 "$KILN" rebuild images a
	wait "$fpid" || fail "logs -f failed: $(cat follow.out)"
	contains "$(cat follow.out)" "would build reg.example.com:5000/team/b:1"
}

t_commands() {
	start
	(cd c && echo x >>a/f && commit two && git push -q origin HEAD:main)
	sha=$(git -C c rev-parse HEAD)
	wait_for 10 grep -q "2 builds queued" kilnd.log || fail "push not planned"
	# the dry-run builds end at their own pace (a sanitizer build is slower)
	wait_for 10 idle_builder || fail "the builds did not end: $("$KILN" status --json)"
	expect_rc 0 "$KILN" status
	contains "$OUT" "images"
	contains "$OUT" "${sha:0:12}"
	expect_rc 0 "$KILN" status --json
	echo "$OUT" | SHA="$sha" python3 -c '
import json, os, sys
s = json.load(sys.stdin)
assert s["version"] and s["uptime_s"] >= 0 and s["queued"] == 0 and s["running"] == 0, s
b = s["repositories"][0]["branches"][0]
assert s["repositories"][0]["name"] == "images" and b["name"] == "main", s
assert b["head"] == os.environ["SHA"] and b["last_seen"] == os.environ["SHA"], b
' || fail "status --json: $OUT"
	expect_rc 0 "$KILN" builds --json
	echo "$OUT" | SHA="$sha" python3 -c '
import json, os, re, sys
bs = json.load(sys.stdin)
assert [b["path"] for b in bs] == ["b", "a"], bs          # newest first: a was queued before b
for b in bs:
    for k in ("id", "repository", "branch", "path", "image", "commit", "state", "attempts",
              "digest", "error", "queued_at", "started_at", "finished_at"):
        assert k in b, (k, b)
    assert b["commit"] == os.environ["SHA"] and b["state"] == "succeeded", b
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", b["queued_at"]), b
' || fail "builds --json: $OUT"
	expect_rc 0 "$KILN" builds --image a
	contains "$OUT" "reg.example.com:5000/team/a:1"
	id=$(echo "$OUT" | awk 'NR == 2 {print $1}')
	expect_rc 0 "$KILN" show "$id" --json
	contains "$OUT" '"path": "a"'
	expect_rc 1 "$KILN" show 9999
	contains "$ERR" "no build 9999"
	expect_rc 0 "$KILN" trigger images main
	expect_rc 1 "$KILN" trigger images nosuchbranch
	expect_rc 1 "$KILN" trigger nope
	contains "$ERR" "'nope' is not watched"
	# cancel: a queued build (put there behind kilnd's back, so nothing takes it)
	python3 -c "
import sqlite3, time
c = sqlite3.connect('state/kilnd.db')
c.execute(\"INSERT INTO builds (repository, branch, path, image, commit_sha, change, state, created_at) VALUES ('images', 'main', 'a', 'x:1', '$sha', 'modified', 'queued', 0)\")
c.commit()"
	qid=$(python3 -c "import sqlite3; print(sqlite3.connect('state/kilnd.db').execute(\"SELECT max(id) FROM builds\").fetchone()[0])")
	expect_rc 0 "$KILN" cancel "$qid"
	contains "$OUT" "cancelled"
	expect_rc 1 "$KILN" cancel "$qid"
	contains "$ERR" "is cancelled, not queued"
	# logs: the dry run's log names what it would have built
	expect_rc 0 "$KILN" logs "$id"
	contains "$OUT" "dry run: would build reg.example.com:5000/team/a:1"
	contains "$OUT" "$sha"
	expect_rc 1 "$KILN" logs 9999
	# rebuild queues one build of a folder at the last-seen commit (or a given one)
	expect_rc 0 "$KILN" rebuild images b
	contains "$OUT" "reg.example.com:5000/team/b:1 at ${sha:0:12}"
	expect_rc 0 "$KILN" rebuild images a "$(git -C c rev-parse HEAD~1)"
	expect_rc 1 "$KILN" rebuild images nope
	contains "$ERR" "no image folder 'nope' at ${sha:0:12} (no nope/manifest.yaml)"
	expect_rc 1 "$KILN" rebuild images a 0123456789abcdef0123456789abcdef01234567
	contains "$ERR" "unknown revision '0123456789abcdef0123456789abcdef01234567'"
	expect_rc 1 "$KILN" rebuild nope a
	expect_rc 2 "$KILN" rebuild images
	follow_queued "$sha" 1
	expect_rc 0 "$KILN" health
	contains "$OUT" "healthy"
	expect_rc 2 "$KILN" build notanumber
	expect_rc 2 "$KILN" build 12 34 # FROM and TO: an offline build, here of no repository
	not_contains "$ERR" "deprecated"
	expect_rc 2 "$KILN" status --socket "$PWD/none.sock"
	contains "$ERR" "cannot reach kilnd"
	expect_rc 1 "$KILN" health --socket "$PWD/none.sock"
	kill -TERM "$KPID"
	wait "$KPID"
	[ -e kiln.sock ] && fail "the socket was left behind"
	return 0
}

# The digest a push recorded (store_set_result's column) comes back through
# the socket: kiln show, its text and JSON, and kiln builds --json. The old
# spelling `kiln build ID` still shows it, with a note on stderr only.
t_show_digest() {
	start
	expect_rc 0 "$KILN" rebuild images a
	id=$(echo "$OUT" | sed -n 's/^queued build \([0-9]*\):.*/\1/p')
	[ -n "$id" ] || { fail "no build of a: $OUT"; return; }
	wait_for 10 sh -c "'$KILN' show $id | grep -q 'state *succeeded'" || fail "the dry run did not end"
	expect_rc 0 "$KILN" show "$id" --json
	echo "$OUT" | python3 -c 'import json, sys; b = json.load(sys.stdin); assert b["digest"] is None, b' ||
		fail "a dry run has no digest: $OUT"
	digest=sha256:$(printf 'kiln %s' "$id" | sha256sum | cut -d' ' -f1)
	python3 -c "
import sqlite3
c = sqlite3.connect('state/kilnd.db')
c.execute('UPDATE builds SET image_id = ?, digest = ? WHERE id = ?', ('sha256:img', '$digest', $id))
c.commit()"
	expect_rc 0 "$KILN" show "$id" --json
	echo "$OUT" | D="$digest" python3 -c '
import json, os, sys
b = json.load(sys.stdin)
assert b["digest"] == os.environ["D"] and b["path"] == "a", b' || fail "show --json: $OUT"
	expect_rc 0 "$KILN" builds --json
	echo "$OUT" | D="$digest" ID="$id" python3 -c '
import json, os, sys
bs = {b["id"]: b for b in json.load(sys.stdin)}
assert bs[int(os.environ["ID"])]["digest"] == os.environ["D"], bs
assert all(b["digest"] is None for i, b in bs.items() if i != int(os.environ["ID"])), bs' ||
		fail "builds --json: $OUT"
	expect_rc 0 "$KILN" show "$id"
	contains "$OUT" "digest       $digest"
	[ -z "$ERR" ] || fail "kiln show wrote to stderr: $ERR"
	shown=$OUT
	expect_rc 0 "$KILN" build "$id"
	[ "$OUT" = "$shown" ] || fail "kiln build ID differs from kiln show ID: $OUT"
	contains "$ERR" "'kiln build ID' is deprecated; use 'kiln show ID'"
	expect_rc 0 "$KILN" show --help
	contains "$OUT" "kiln show ID"
	expect_rc 0 "$KILN" build --help
	not_contains "$OUT" "kiln build ID ["
	expect_rc 2 "$KILN" show
	expect_rc 2 "$KILN" show 1 2
	kill -TERM "$KPID"
	wait "$KPID"
}

# A damaged object is an error that says what failed, never "not found".
t_rebuild_damaged() {
	start
	mirror=$(find state -name HEAD -path '*.git/HEAD' | head -n1)
	mirror=${mirror%/HEAD}
	[ -d "$mirror/objects" ] || { fail "no mirror under state: $(find state -maxdepth 3)"; return; }
	# a commit with a folder c whose manifest is a loose object, then damage it
	blob=$(printf 'name: c\nversion: "1"\nregistry: r\n' | git --git-dir="$mirror" hash-object -w --stdin)
	df=$(printf 'FROM scratch\n' | git --git-dir="$mirror" hash-object -w --stdin)
	sub=$(printf '100644 blob %s\tDockerfile\n100644 blob %s\tmanifest.yaml\n' "$df" "$blob" |
		git --git-dir="$mirror" mktree)
	tree=$(printf '040000 tree %s\tc\n' "$sub" | git --git-dir="$mirror" mktree)
	c=$(git --git-dir="$mirror" commit-tree "$tree" -m damaged)
	expect_rc 0 "$KILN" rebuild images c "$c"
	obj="$mirror/objects/${blob:0:2}/${blob:2}"
	[ -f "$obj" ] || { fail "the manifest is not a loose object"; return; }
	chmod u+w "$obj"
	printf 'not zlib' >"$obj"
	expect_rc 1 "$KILN" rebuild images c "$c"
	contains "$ERR" "cannot read blob $blob"
	not_contains "$ERR" "no such manifest"
	not_contains "$ERR" "no image folder"
	kill -TERM "$KPID"
	wait "$KPID"
}

t_permissions() {
	[ "$(id -u)" = 0 ] || { skip "not root (another uid is needed)"; return; }
	command -v setpriv >/dev/null || { fail "no setpriv"; return; }
	chmod 755 "$TEST_TMP" "$PWD"
	# nogroup may read; nobody (uid 65534, gid nogroup) reads but may not trigger
	start ", status_group: nogroup"
	expect_rc 0 setpriv --reuid=65534 --regid=65534 --clear-groups "$KILN" status
	contains "$OUT" "images"
	expect_rc 1 setpriv --reuid=65534 --regid=65534 --clear-groups "$KILN" trigger images
	contains "$ERR" "permission denied"
	expect_rc 1 setpriv --reuid=65534 --regid=65534 --clear-groups "$KILN" rebuild images a
	contains "$ERR" "permission denied"
	expect_rc 0 setpriv --reuid=65534 --regid=65534 --clear-groups "$KILN" builds
	# a user outside the groups is told why on accept (mode 0666: the check on
	# accept is the authority)
	[ "$(stat -c %a kiln.sock)" = 666 ] || fail "socket mode $(stat -c %a kiln.sock), not 666"
	expect_rc 1 setpriv --reuid=65533 --regid=65533 --clear-groups "$KILN" status
	contains "$ERR" "permission denied: uid 65533 is not root, kilnd's user or a member"
	kill -TERM "$KPID"
	wait "$KPID"
}

t_bad_clients() {
	start
	python3 - "$PWD/kiln.sock" <<-'PY' || fail "bad clients affected others"
	import json, socket, sys
	path = sys.argv[1]
	def conn():
	    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	    s.settimeout(10)
	    s.connect(path)
	    return s
	pending = {}
	def line(s):
	    data = pending.get(s, b"")
	    while b"\n" not in data:
	        chunk = s.recv(65536)
	        if not chunk:
	            break
	        data += chunk
	    first, _, rest = data.partition(b"\n")
	    pending[s] = rest
	    return first
	stalled = conn()
	stalled.sendall(b'{"v":1,"cmd":"sta')          # never finishes its line
	garbage = conn()
	good = conn()
	garbage.sendall(b"this is not json\n")
	a = json.loads(line(garbage))
	assert a["ok"] is False and "not a JSON object" in a["error"], a
	garbage.sendall(b'{"v":1,"cmd":"nope"}\n{"v":9,"cmd":"status"}\n["array"]\n')
	for want in ("unknown command", "protocol version 9", "not a JSON object"):
	    a = json.loads(line(garbage))
	    assert a["ok"] is False and want in a["error"], (want, a)
	# a negative limit would mean "no limit" to SQLite: refused, as is a huge one
	garbage.sendall(b'{"v":1,"cmd":"builds","limit":-1}\n{"v":1,"cmd":"builds","limit":100001}\n')
	for _ in range(2):
	    a = json.loads(line(garbage))
	    assert a["ok"] is False and "'limit' must be 1 to 100000" in a["error"], a
	# several requests in one write: answered in order, while others misbehave
	good.sendall(b'{"v":1,"cmd":"status"}\n{"v":1,"cmd":"builds","limit":1}\n{"v":1,"cmd":"health"}\n')
	r1, r2, r3 = json.loads(line(good)), json.loads(line(good)), json.loads(line(good))
	assert r1["ok"] and "repositories" in r1["result"], r1
	assert r2["ok"] and isinstance(r2["result"], list), r2
	assert r3["ok"] and r3["result"]["healthy"] is True, r3
	# an over-long line ends that client only
	big = conn()
	try:
	    big.sendall(b"x" * (200 * 1024))
	except OSError:
	    pass
	a = line(big)
	assert b"longer than" in a, a
	# a half-closed client still gets its answer
	half = conn()
	half.sendall(b'{"v":1,"cmd":"health"}\n')
	half.shutdown(socket.SHUT_WR)
	assert json.loads(line(half))["ok"] is True
	good.sendall(b'{"v":1,"cmd":"status"}\n')
	assert json.loads(line(good))["ok"] is True
	stalled.close()
	PY
	kill -0 "$KPID" || fail "kilnd died"
	for bad in 0 -3 5x 100001; do
		expect_rc 2 "$KILN" builds --limit "$bad" --socket "$PWD/kiln.sock"
		contains "$ERR" "--limit must be 1 to 100000, not '$bad'"
	done
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

# A client that pipelines 1,000 requests and half-closes gets all 1,000
# answers, in order, then the end of the connection; one that never reads
# its answers is still cut off at CLIENT_BACKLOG_MAX.
t_half_close_pipeline() {
	start
	[ "$(stat -c %a kiln.sock)" = 600 ] || fail "no group configured: mode $(stat -c %a kiln.sock), not 600"
	python3 - "$PWD/kiln.sock" <<-'PY' || fail "half-closed pipelining client"
	import json, socket, sys, time
	path = sys.argv[1]
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.settimeout(30)
	s.connect(path)
	# on the loop and on a worker, answers and errors, so that order shows
	kinds = [b'{"v":1,"cmd":"health"}', b'{"v":1,"cmd":"builds","limit":1}',
	         b'{"v":1,"cmd":"status"}', b'{"v":1,"cmd":"build","id":999999}']
	n = 1000
	s.sendall(b"".join(kinds[i % 4] + b"\n" for i in range(n)))
	s.shutdown(socket.SHUT_WR)
	time.sleep(1)  # let the answers pile up beyond the socket's buffers
	data = b""
	while True:
	    chunk = s.recv(65536)
	    if not chunk:
	        break
	    data += chunk
	lines = data.split(b"\n")
	assert lines[-1] == b"", "the last answer is cut: %r" % lines[-1][:80]
	lines = lines[:-1]
	assert len(lines) == n, "%d answers to %d requests" % (len(lines), n)
	for i, l in enumerate(lines):
	    a = json.loads(l)
	    k = i % 4
	    if k == 0:
	        assert a["ok"] and a["result"]["healthy"] is True, (i, a)
	    elif k == 1:
	        assert a["ok"] and isinstance(a["result"], list), (i, a)
	    elif k == 2:
	        assert a["ok"] and "repositories" in a["result"], (i, a)
	    else:
	        assert not a["ok"] and "no build 999999" in a["error"], (i, a)
	print("all %d answers in order" % n)
	# never reads: cut off once 4 MiB of answers wait, long before all came
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.settimeout(30)
	s.connect(path)
	n = 60000
	try:
	    s.sendall(b'{"v":1,"cmd":"status"}\n' * n)
	    s.shutdown(socket.SHUT_WR)
	except OSError:
	    pass
	time.sleep(1)
	got = 0
	try:
	    while True:
	        chunk = s.recv(1 << 20)
	        if not chunk:
	            break
	        got += chunk.count(b"\n")
	except ConnectionResetError:
	    pass
	assert 0 < got < n, "%d answers of %d for a client that did not read" % (got, n)
	print("a client that did not read got %d of %d" % (got, n))
	PY
	expect_rc 0 "$KILN" health
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

# 1,998 connections from nine uids: none holds more than 32 slots, together
# they fill the 256, every refused one is told why in an error line, and
# root's `kiln health` is still answered (the reserve) while another uid is
# refused.
t_uid_cap() {
	[ "$(id -u)" = 0 ] || { skip "not root (other uids are needed)"; return; }
	command -v setpriv >/dev/null || { fail "no setpriv"; return; }
	chmod 755 "$TEST_TMP" "$PWD"
	start ", status_group: nogroup"
	python3 - "$PWD/kiln.sock" "$KILN" <<-'PY' || fail "per-uid cap"
	import json, os, socket, subprocess, sys, time, traceback
	path, kiln = sys.argv[1], sys.argv[2]
	UIDS, PER = [70000 + k for k in range(9)], 222
	HEALTH = b'{"v":1,"cmd":"health"}\n'
	def first_line(s):
	    data = b""
	    try:
	        while b"\n" not in data:
	            chunk = s.recv(4096)
	            if not chunk:
	                break
	            data += chunk
	    except OSError as e:
	        return "error: %s" % e
	    return data.partition(b"\n")[0].decode()
	def child(uid, out, release):
	    os.setgroups([])
	    os.setgid(65534)
	    os.setuid(uid)
	    socks = []
	    for _ in range(PER):
	        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	        s.settimeout(20)
	        for _ in range(400):  # EAGAIN: the listen backlog is full for now
	            try:
	                s.connect(path)
	                break
	            except BlockingIOError:
	                time.sleep(0.05)
	        socks.append(s)
	    admitted, refused, bad = 0, {}, []
	    for s in socks:
	        try:
	            s.sendall(HEALTH)
	        except OSError:
	            pass  # refused and closed already: its line is still there
	    for s in socks:
	        line = first_line(s)
	        try:
	            a = json.loads(line)
	        except ValueError:
	            bad.append(line)
	            continue
	        if a["ok"]:
	            admitted += 1
	        else:
	            refused[a["error"]] = refused.get(a["error"], 0) + 1
	            s.close()
	    os.write(out, (json.dumps({"uid": uid, "admitted": admitted, "refused": refused, "bad": bad}) + "\n").encode())
	    os.read(release, 1)  # hold the admitted ones until the parent is done
	    os._exit(0)
	out_r, out_w = os.pipe()
	rel_r, rel_w = os.pipe()
	pids = []
	for uid in UIDS:
	    pid = os.fork()
	    if pid == 0:
	        try:
	            child(uid, out_w, rel_r)
	        except BaseException:
	            traceback.print_exc()
	        os._exit(1)
	    pids.append(pid)
	os.close(out_w)
	res, buf = [], b""
	with os.fdopen(out_r, "rb") as f:
	    for _ in UIDS:
	        line = f.readline()
	        assert line, "a client process died: %r" % res
	        res.append(json.loads(line))
	    try:
	        total = sum(r["admitted"] for r in res)
	        for r in res:
	            assert not r["bad"], "uid %d: %d without an error line (a reset), e.g. %r" % (
	                r["uid"], len(r["bad"]), r["bad"][-3:])
	            assert r["admitted"] <= 32, "uid %d holds %d slots" % (r["uid"], r["admitted"])
	            for why in r["refused"]:
	                assert why.startswith("too many connections"), r
	            assert r["admitted"] + sum(r["refused"].values()) == PER, r
	        assert total == 256, "%d admitted: %r" % (total, res)
	        assert any("from uid" in w for r in res for w in r["refused"]), res
	        assert any("(256)" in w for r in res for w in r["refused"]), res
	        # the slots are full: root is still answered, another uid is refused
	        p = subprocess.run([kiln, "health"], capture_output=True, text=True, timeout=20)
	        assert p.returncode == 0 and "healthy" in p.stdout, p
	        p = subprocess.run(["setpriv", "--reuid=70100", "--regid=65534", "--clear-groups", kiln, "status"],
	                           capture_output=True, text=True, timeout=20)
	        assert p.returncode == 1 and "too many connections (256)" in p.stderr, p
	        print("admitted per uid:", [r["admitted"] for r in res])
	    finally:
	        os.write(rel_w, b"x" * len(pids))
	        for pid in pids:
	            os.waitpid(pid, 0)
	PY
	# the slots come back once those clients are gone
	wait_for 10 setpriv --reuid=70100 --regid=65534 --clear-groups "$KILN" status || fail "slots not freed"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

# Members of either group reach the rights documented for them, and the
# groups are those the peer holds (its credentials), not what the group
# database says of its uid.
t_groups() {
	[ -n "$ACCOUNTS" ] || { skip "$ACCOUNTS_WHY"; return; }
	chmod 755 "$TEST_TMP" "$PWD"
	local sg=kis$$ ag=kia$$
	start ", status_group: $sg, admin_group: $ag"
	as() { # USER SETPRIV-GROUP-OPTION KILN-ARGS...
		local user=$1 grp=$2
		shift 2
		expect_rc "$RC" setpriv --reuid="$user" --regid="$(id -g "$user")" "$grp" "$KILN" "$@"
	}
	# the admin member is not in the status group: it reads and changes
	RC=0 as kid$$ --init-groups status
	contains "$OUT" "images"
	RC=0 as kid$$ --init-groups trigger images
	# the status member reads, and may not change
	RC=0 as kir$$ --init-groups status
	RC=1 as kir$$ --init-groups trigger images
	contains "$ERR" "permission denied: 'trigger' needs"
	# neither: refused on accept with a reason, not a reset
	RC=1 as kin$$ --init-groups status
	contains "$ERR" "permission denied: uid $(id -u kin$$) is not root"
	# what the process holds counts: the group database says kir is in the
	# status group, its process is not; kin is in no group, its process is
	RC=1 as kir$$ --clear-groups status
	contains "$ERR" "permission denied: uid $(id -u kir$$)"
	RC=0 as kin$$ --groups="$(getent group "$ag" | cut -d: -f3)" trigger images
	RC=0 as kin$$ --groups="$(getent group "$sg" | cut -d: -f3)" builds
	RC=1 as kin$$ --groups="$(getent group "$sg" | cut -d: -f3)" cancel 1
	contains "$ERR" "permission denied: 'cancel' needs"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

# t_groups' users and groups, made by the script (a scenario runs in a
# subshell, whose at_exit would be lost) and removed when it ends: kir$$ in
# the status group kis$$, kid$$ in the admin group kia$$, kin$$ in neither
ACCOUNTS= ACCOUNTS_WHY=
make_accounts() {
	case t_groups in "t_${KILN_ONLY:-}"*) ;; *) return ;; esac
	[ "$(id -u)" = 0 ] || { ACCOUNTS_WHY="not root (users and groups are made)"; return; }
	command -v setpriv >/dev/null && command -v useradd >/dev/null &&
		command -v groupadd >/dev/null ||
		{ ACCOUNTS_WHY="no setpriv, useradd or groupadd"; return; }
	at_exit "userdel kir$$ 2>/dev/null; userdel kid$$ 2>/dev/null; userdel kin$$ 2>/dev/null"
	at_exit "groupdel kis$$ 2>/dev/null; groupdel kia$$ 2>/dev/null"
	groupadd kis$$ && groupadd kia$$ &&
		useradd -M -N -s /bin/false -G kis$$ kir$$ &&
		useradd -M -N -s /bin/false -G kia$$ kid$$ &&
		useradd -M -N -s /bin/false kin$$ &&
		ACCOUNTS=1 || ACCOUNTS_WHY="cannot make users and groups"
}
make_accounts
# listen.status_idle_timeout: a connection that asks nothing is closed after
# it; one whose request is being answered (logs -f waiting for a build) is not
t_idle_timeout() {
	start ", status_idle_timeout: 2s"
	python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(8)
t0 = time.monotonic()
got = s.recv(100)
dt = time.monotonic() - t0
sys.exit(0 if got == b"" and 1.5 < dt < 6 else "idle connection: %r after %.1f s" % (got, dt))' kiln.sock ||
		fail "an idle connection was not closed after 2 s"
	# past kilnd's idle timeout and past the 30 s every other command of
	# kiln waits for an answer
	follow_queued "$(git -C c rev-parse HEAD)" 32
}

run_all
