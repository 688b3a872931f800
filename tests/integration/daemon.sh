#!/usr/bin/env bash
# daemon.sh: the real kilnd against real repositories: bare repositories on
# disk and one served by `git daemon` on 127.0.0.1, with NOTIFY_SOCKET
# pointing at a datagram socket this script reads.
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/kilnd.sh"

t_check_config() {
	config /tmp/x /tmp/repo 10s >good.yaml
	expect_rc 0 "$KILND" --check-config --config good.yaml
	contains "$OUT" "valid, 1 repository"
	printf 'state_dir: /tmp/x\nbrnach: 1\nrepositories:\n  - name: "bad name"\n    url: /r\n    poll_interval: 10 parsecs\n' >bad.yaml
	expect_rc 1 "$KILND" --check-config --config bad.yaml
	contains "$ERR" "bad.yaml:2:1: unknown key 'brnach'"
	contains "$ERR" "bad.yaml:4:11: 'name' must match"
	contains "$ERR" "bad.yaml:6:20: 'poll_interval' is not a duration"
	printf 'state_dir: /tmp/x\nrepositories:\n  - name: a\n    url: /r\n    webhook: {provider: github, secret_file: missing.secret}\n' >secret.yaml
	expect_rc 1 "$KILND" --check-config --config secret.yaml
	contains "$ERR" "missing.secret"
	# relative secret files come from $CREDENTIALS_DIRECTORY when it is set
	mkdir creds && echo s3cret >creds/missing.secret
	CREDENTIALS_DIRECTORY=$PWD/creds expect_rc 0 "$KILND" --check-config --config secret.yaml
	case "$OUT$ERR" in *s3cret*) fail "a secret was printed" ;; esac
	expect_rc 1 "$KILND" --check-config --config nonexistent.yaml
	expect_rc 2 "$KILND" --bogus
	expect_rc 0 "$KILND" --help
	contains "$OUT" "--check-config"
}

t_plans_pushes_and_reports() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 300ms >kilnd.yaml
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	grep -q "STATUS=.*1 repositories watched" "$NOTES" || fail "no STATUS line: $(cat "$NOTES")"
	[ -z "$(db state/kilnd.db 'SELECT id FROM builds')" ] || fail "first sight built something"
	push "$clone" base/Dockerfile
	sha=$(git -C "$clone" rev-parse HEAD)
	# planned within about one poll interval (generous bound for slow machines)
	wait_for 5 grep -q "build.*dry run.*app:1" kilnd.log || fail "push not planned: $(tail -5 kilnd.log)"
	got=$(builds_for state "$sha")
	[ "$got" = "$(printf 'app|succeeded\nbase|succeeded')" ] || fail "builds for $sha: $got"
	seen=$(db state/kilnd.db "SELECT last_seen FROM branches WHERE repository = 'images'")
	[ "$seen" = "$sha" ] || fail "last_seen $seen, want $sha"
	# idle polls ask the remote but fetch nothing
	n=$(grep -c "fetched" kilnd.log)
	sleep 1.5
	[ "$(grep -c "fetched" kilnd.log)" = "$n" ] || fail "fetched while nothing changed"
	polls=$(grep -c "idle -> fetching" kilnd.log)
	[ "$polls" -ge 4 ] || fail "only $polls polls in about 2s at 300ms"
	stop_kilnd
	grep -q "STOPPING=1" "$NOTES" || fail "no STOPPING=1"
}

# A poll plans the range from the last-seen commit to the head, whatever
# commits lie between. The poll interval is an hour so that only SIGUSR1
# polls: no timer poll can fall between the two pushes, however slow the
# machine.
t_two_quick_pushes_coalesce() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 1h >kilnd.yaml
	start_kilnd kilnd.yaml
	kill -USR1 "$KPID"
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	push "$clone" base/a
	first=$(git -C "$clone" rev-parse HEAD)
	push "$clone" app/b
	second=$(git -C "$clone" rev-parse HEAD)
	kill -USR1 "$KPID"
	wait_for 10 grep -q "2 builds queued" kilnd.log || fail "pushes not planned: $(tail -5 kilnd.log)"
	want=$(printf 'app|succeeded\nbase|succeeded')
	built() { [ "$(builds_for state "$second")" = "$want" ]; }
	wait_for 10 built || fail "builds: $(builds_for state "$second")"
	[ -z "$(builds_for state "$first")" ] || fail "the first push was planned on its own"
	[ "$(grep -c "fetched" kilnd.log)" = 2 ] || fail "expected 2 fetches (initial, one for both pushes)"
	stop_kilnd
}

t_git_daemon_fetch() {
	mkdir served
	clone=$(origin "$PWD/served/images.git")
	serve_git "$PWD/served" || return
	config "$PWD/state" "git://127.0.0.1:$GIT_PORT/images.git" 300ms >kilnd.yaml
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "no first poll over git://: $(tail -5 kilnd.log)"
	push "$clone" app/x
	sha=$(git -C "$clone" rev-parse HEAD)
	wait_for 10 grep -q "1 build queued" kilnd.log || fail "push not planned over git://"
	[ "$(builds_for state "$sha")" = "app|succeeded" ] || fail "builds: $(builds_for state "$sha")"
	[ "$(git --git-dir=state/mirrors/images.git rev-parse main)" = "$sha" ] || fail "mirror not fetched"
	stop_kilnd
	# an unreachable server: errors, backoff, then recovery
	kill "$GIT_PID"
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "poll failed.*retrying in" kilnd.log || fail "no poll error logged"
	wait_for 5 grep -q "STATUS=.*last error" "$NOTES" || fail "STATUS has no last error"
	stop_kilnd
}

# Over git:// every poll asks the server for its refs; one that finds the
# branch where the mirror has it fetches nothing. A head that moves is
# fetched and planned, also a force push back to a commit the mirror holds.
t_git_daemon_idle_polls_do_not_fetch() {
	local port m0 m1
	mkdir served
	clone=$(origin "$PWD/served/images.git")
	serve_git "$PWD/served" || return
	port=$(free_port)
	config "$PWD/state" "git://127.0.0.1:$GIT_PORT/images.git" 300ms "$port" >kilnd.yaml
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "planning -> idle" kilnd.log || fail "no first poll over git://: $(tail -5 kilnd.log)"
	metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
	m0=$(metric kiln_polls_total)
	[ "$(metric kiln_fetches_total)" = 1 ] || fail "fetches after the first poll: $(metric kiln_fetches_total)"
	sleep 2
	m1=$(metric kiln_polls_total)
	[ $((m1 - m0)) -ge 4 ] || fail "only $((m1 - m0)) polls in 2 s at 300ms"
	[ "$(metric kiln_fetches_total)" = 1 ] || fail "idle polls fetched: $(metric kiln_fetches_total) fetches"
	[ "$(grep -c "fetched" kilnd.log)" = 1 ] || fail "idle polls fetched: $(grep "fetched" kilnd.log)"
	push "$clone" app/x
	wait_for 10 grep -q "1 build queued" kilnd.log || fail "push not planned over git://"
	[ "$(metric kiln_fetches_total)" = 2 ] || fail "the push was not one fetch: $(metric kiln_fetches_total)"
	# back to the first commit, which the mirror holds: no new object, a moved head
	old=$(git -C "$clone" rev-parse HEAD~1)
	git -C "$clone" push -q -f origin HEAD~1:main
	wait_for 10 grep -q "\.\.$(echo "$old" | cut -c1-12): .*app" kilnd.log ||
		fail "force push to an older commit not planned: $(tail -5 kilnd.log)"
	[ "$(git --git-dir=state/mirrors/images.git rev-parse main)" = "$old" ] || fail "mirror not moved back"
	[ "$(metric kiln_fetches_total)" = 3 ] || fail "the force push was not one fetch: $(metric kiln_fetches_total)"
	wait_for 10 test "$(builds_for state "$old")" = "app|succeeded" || fail "builds: $(builds_for state "$old")"
	stop_kilnd
}

t_watchdog_reload_and_stop() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 300ms >kilnd.yaml
	NOTES="$PWD/notify.log"
	: >"$NOTES"
	python3 "$LIB/notify_listen.py" "$PWD/notify.sock" "$NOTES" &
	track_pid $!
	wait_for 5 test -S notify.sock
	NOTIFY_SOCKET="$PWD/notify.sock" WATCHDOG_USEC=400000 sh -c \
		'WATCHDOG_PID=$$ exec "$0" --config kilnd.yaml >>kilnd.log 2>&1' "$KILND" &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "READY=1" "$NOTES" || fail "no READY"
	sleep 1
	n=$(grep -c "WATCHDOG=1" "$NOTES")
	[ "$n" -ge 3 ] || fail "only $n watchdog pings in 1s at 400ms/2"
	# a broken config is rejected and the old one stays in force
	cp kilnd.yaml good.yaml
	printf 'this: is: not yaml\n' >kilnd.yaml
	kill -HUP "$KPID"
	wait_for 5 grep -q "keeping the old one" kilnd.log || fail "broken reload not reported"
	grep -q "RELOADING=1" "$NOTES" || fail "no RELOADING=1"
	grep -q "MONOTONIC_USEC=" "$NOTES" || fail "no MONOTONIC_USEC"
	[ "$(grep -c "READY=1" "$NOTES")" -ge 2 ] || fail "no READY=1 after the reload"
	push "$clone" base/y
	wait_for 10 grep -q "build.*dry run.*base:1" kilnd.log || fail "old config not in force"
	# a valid reload adds a repository
	origin "$PWD/second.git" >/dev/null
	cp good.yaml kilnd.yaml
	printf '  - name: second\n    url: %s\n    poll_interval: 300ms\n' "$PWD/second.git" >>kilnd.yaml
	kill -HUP "$KPID"
	wait_for 5 grep -q "configuration reloaded: 2 repositories" kilnd.log || fail "reload not applied"
	wait_for 10 grep -q "watch 'second'.*first seen" kilnd.log || fail "new repository not watched"
	stop_kilnd
	grep -q "STOPPING=1" "$NOTES" || fail "no STOPPING=1"
}

t_build_on_start_all() {
	origin "$PWD/origin.git" >/dev/null
	config "$PWD/state" "$PWD/origin.git" 300ms >kilnd.yaml
	echo "    build_on_start: all" >>kilnd.yaml
	start_kilnd kilnd.yaml
	head=$(git --git-dir=origin.git rev-parse main)
	wait_for 10 grep -q "2 builds queued" kilnd.log || fail "build_on_start: all built nothing"
	sleep 0.3
	[ "$(builds_for state "$head")" = "$(printf 'app|succeeded\nbase|succeeded')" ] ||
		fail "builds: $(builds_for state "$head")"
	# base before app: the dependency order of change detection
	order=$(db state/kilnd.db "SELECT path FROM builds ORDER BY id" | tr '\n' ' ')
	[ "$order" = "base app " ] || fail "queued in order: $order"
	stop_kilnd
}

t_new_branch_and_force_push() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 300ms >kilnd.yaml
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	# a branch added to the config later starts from main's last-seen commit
	(cd "$clone" && git checkout -q -b dev && echo x >>app/f && git add -A &&
		git commit -qm dev && git push -q origin dev)
	dev=$(git -C "$clone" rev-parse dev)
	sed -i 's/^    poll_interval: 300ms$/    poll_interval: 300ms\n    branches: [main, dev]/' kilnd.yaml
	kill -HUP "$KPID"
	wait_for 10 grep -q "1 build queued" kilnd.log || fail "new branch not planned: $(tail -5 kilnd.log)"
	[ "$(db state/kilnd.db "SELECT branch, path FROM builds WHERE commit_sha = '$dev'")" = "dev|app" ] ||
		fail "dev builds: $(db state/kilnd.db "SELECT branch, path FROM builds")"
	# a force push: the tree diff between the old and the new head decides
	(cd "$clone" && git checkout -q main && git reset -q --hard HEAD && echo y >>base/g &&
		git add -A && git commit -qm a && git push -q origin main && git reset -q --hard HEAD~1 &&
		echo z >>app/h && git add -A && git commit -qm b && git push -q -f origin main)
	forced=$(git -C "$clone" rev-parse main)
	wait_for 10 grep -q "$(echo "$forced" | cut -c1-12).*app" kilnd.log || fail "force push not planned"
	stop_kilnd
}

# A trigger while a poll runs makes one more poll after it, however many
# come. The poll is held in flight by stopping the git daemon it talks to
# (the kernel queues the connection; nothing answers it), so every trigger
# after the first lands while it runs, on any machine.
t_trigger_polls_now_and_coalesces() {
	mkdir served
	clone=$(origin "$PWD/served/images.git")
	serve_git "$PWD/served" || return
	config "$PWD/state" "git://127.0.0.1:$GIT_PORT/images.git" 1h >kilnd.yaml
	start_kilnd kilnd.yaml
	# the branch has no last-seen commit: kilnd polls at once for its baseline
	wait_for 10 grep -q "first seen" kilnd.log || fail "no baseline poll at start"
	wait_for 10 grep -q "planning -> idle" kilnd.log || fail "the baseline poll did not end"
	push "$clone" base/t
	base=$(grep -c "idle -> fetching" kilnd.log)
	polls() { echo $(($(grep -c "idle -> fetching" kilnd.log) - base)); }
	signals() { grep -c "SIGUSR1" kilnd.log; }
	more_signals_than() { [ "$(signals)" -gt "$1" ]; }
	polling() { [ "$(polls)" = 1 ]; }
	kill -STOP "$GIT_PID"
	kill -USR1 "$KPID"
	wait_for 10 polling || fail "SIGUSR1 did not start a poll"
	# one signal at a time, so the kernel cannot merge them
	for _ in 1 2 3 4; do
		n=$(signals)
		kill -USR1 "$KPID"
		wait_for 10 more_signals_than "$n" || fail "kilnd did not see SIGUSR1"
	done
	[ "$(polls)" = 1 ] || fail "a trigger started a poll while one was in flight"
	kill -CONT "$GIT_PID"
	wait_for 10 grep -q "2 builds queued" kilnd.log || fail "triggered poll did not plan the push"
	# the second poll finds nothing new and goes idle; a status request is
	# answered by the loop after that, so a third poll would be logged by then
	wait_for 10 grep -q "fetching -> idle" kilnd.log || fail "the coalesced poll did not run"
	expect_rc 0 "$KILN" status --socket "$PWD/state.sock"
	[ "$(polls)" = 2 ] || fail "$(polls) polls for 5 triggers, 4 of them while busy; want 2"
	stop_kilnd
}

# kilnd builds a repository's catalog when it first sees a branch and keeps
# it in a file in the mirror: a push, also after a restart, is planned from
# it without reading a manifest again; a damaged file is found when read,
# and the plan is made from the tree.
t_catalog_kept_across_restarts() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 1h >kilnd.yaml
	plans() { grep -c "planned in" kilnd.log; }
	planned_after() { [ "$(plans)" -gt "$1" ]; }
	plan_of() { # PATH: pushed and planned; prints the plan's log line
		local n
		n=$(plans)
		push "$clone" "$1"
		kill -USR1 "$KPID"
		wait_for 10 planned_after "$n" || fail "push of $1 not planned: $(tail -3 kilnd.log)"
		grep "planned in" kilnd.log | tail -1
	}
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "planning -> idle" kilnd.log || fail "first poll missing"
	contains "$(grep "planned in" kilnd.log)" "0 builds queued, 2 manifests read"
	[ -s state/mirrors/images.git/kiln-catalog ] || fail "no catalog file in the mirror"
	contains "$(plan_of base/a)" "2 builds queued, 0 manifests read"
	stop_kilnd

	start_kilnd kilnd.yaml
	contains "$(plan_of app/b)" "1 builds queued, 0 manifests read"
	sha=$(git -C "$clone" rev-parse HEAD)
	app_built() { [ "$(builds_for state "$sha")" = "app|succeeded" ]; }
	wait_for 10 app_built || fail "builds after the restart: $(builds_for state "$sha")"
	stop_kilnd

	# damage inside the records (the header is checked when the file is opened)
	printf 'xxxxxxxxxxxxxxxx' | dd of=state/mirrors/images.git/kiln-catalog bs=1 seek=120 \
		conv=notrunc status=none
	start_kilnd kilnd.yaml
	contains "$(plan_of base/c)" "2 builds queued, 2 manifests read"
	stop_kilnd
}

t_single_instance() {
	origin "$PWD/origin.git" >/dev/null
	config "$PWD/state" "$PWD/origin.git" 1s >kilnd.yaml
	start_kilnd kilnd.yaml
	expect_rc 1 "$KILND" --config kilnd.yaml
	contains "$ERR" "another kilnd (pid $KPID) is using the state directory"
	stop_kilnd
}

t_kill_9_loses_and_duplicates_nothing() {
	clone=$(origin "$PWD/origin.git")
	# enough images that planning takes a while to be interrupted
	(cd "$clone" && for i in $(seq 1 400); do image "many/i$i" "i$i" 1 reg.example.com:5000/team/base:latest; done &&
		commit many && git push -q origin HEAD:main)
	start=$(git -C "$clone" rev-parse HEAD)
	config "$PWD/state" "$PWD/origin.git" 200ms >kilnd.yaml
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	kill -TERM "$KPID"; wait "$KPID"
	for round in 1 2 3 4 5; do
		push "$clone" base/Dockerfile
		start_kilnd kilnd.yaml
		sleep "0.$((RANDOM % 6))"
		kill -KILL "$KPID"
		wait "$KPID" 2>/dev/null
	done
	head=$(git -C "$clone" rev-parse HEAD)
	start_kilnd kilnd.yaml
	caught_up() { [ "$(db state/kilnd.db "SELECT last_seen FROM branches")" = "$head" ]; }
	queue_empty() { [ -z "$(db state/kilnd.db "SELECT id FROM builds WHERE state IN ('queued', 'running')")" ]; }
	wait_for 30 caught_up || fail "never caught up to $head"
	wait_for 30 queue_empty || fail "builds left in the queue"
	stop_kilnd
	dups=$(db state/kilnd.db "SELECT path, commit_sha, count(*) FROM builds GROUP BY path, commit_sha HAVING count(*) > 1")
	[ -z "$dups" ] || fail "duplicated builds: $dups"
	# nothing lost: every image changed since the start has a build in the range
	want=$("$KILN" changes --repo "$PWD/origin.git" --no-cache "$start" "$head" | cut -f2 | sort)
	got=$(db state/kilnd.db "SELECT DISTINCT path FROM builds WHERE state = 'succeeded'" | sort)
	[ "$want" = "$got" ] || fail "built $(echo "$got" | wc -l) images, expected $(echo "$want" | wc -l)"
	[ "$(echo "$got" | wc -l)" = 402 ] || fail "expected 402 images (base, app, 400 dependents)"
}

# A kill -9 in the middle of a fetch leaves libgit2's lock file beside the
# branch's ref in the mirror; every later fetch failed on it ("failed to lock
# file ... for writing"), so nothing pushed was built again. The lock is made
# by hand here, where the kill loop of crash.sh meets it by chance.
t_kill_9_stale_mirror_lock_is_removed() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 1h >kilnd.yaml
	start_kilnd kilnd.yaml
	kill -USR1 "$KPID"
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	kill -KILL "$KPID"
	wait "$KPID" 2>/dev/null
	git --git-dir=state/mirrors/images.git rev-parse main >state/mirrors/images.git/refs/heads/main.lock
	push "$clone" base/Dockerfile
	sha=$(git -C "$clone" rev-parse HEAD)
	start_kilnd kilnd.yaml
	grep -q "mirror 'images.git': removed 1 lock file" kilnd.log || fail "the stale lock was not reported"
	kill -USR1 "$KPID"
	built() { [ "$(builds_for state "$sha")" = "$(printf 'app|succeeded\nbase|succeeded')" ]; }
	wait_for 10 built || fail "the push was not built: $(grep "poll failed" kilnd.log | tail -1)"
	stop_kilnd
}

# ---- a damaged state database: refused, recovered from the snapshot ----

# damage_db STATE: 4 KiB of random bytes into the middle of STATE/kilnd.db,
# again until sqlite3 itself reports the file malformed (a stretch of unused
# bytes can take random ones unnoticed)
damage_db() {
	python3 - "$1/kilnd.db" <<-'PY'
	import os, sqlite3, sys
	path = sys.argv[1]
	size = os.path.getsize(path)
	for _ in range(10):
	    with open(path, "r+b") as f:
	        f.seek(size // 2)
	        f.write(os.urandom(4096))
	    try:
	        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
	        rows = con.execute("PRAGMA quick_check").fetchall()
	        con.close()
	        if rows != [("ok",)]:
	            sys.exit(0)
	    except sqlite3.DatabaseError:
	        sys.exit(0)
	sys.exit("the damage went unnoticed by sqlite3")
	PY
}

# refuses CONFIG: kilnd exits 65 by itself, naming the file and the way out;
# its messages in $OUT
refuses() {
	timeout 20 "$KILND" --config "$1" >refused.log 2>&1
	local rc=$?
	OUT=$(cat refused.log)
	case $rc in
	65) ;; # the unit's RestartPreventExitStatus
	124) fail "kilnd did not exit by itself (it started): $(tail -3 refused.log)" ;;
	*) fail "kilnd exited $rc, expected 65: $(tail -3 refused.log)" ;;
	esac
	contains "$OUT" "$PWD/state/kilnd.db"
	contains "$OUT" "kilnd --recover"
}

# A database of a newer schema (a downgrade) is refused with exit 65, the
# unit's RestartPreventExitStatus: restarting cannot help. Left untouched.
t_state_newer_schema_is_refused() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 300ms >kilnd.yaml
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	stop_kilnd
	db state/kilnd.db "PRAGMA user_version = 99" >/dev/null
	timeout 20 "$KILND" --config kilnd.yaml >refused.log 2>&1
	rc=$?
	[ "$rc" = 65 ] || fail "kilnd exited $rc, expected 65: $(tail -3 refused.log)"
	contains "$(cat refused.log)" "state database schema 99 is newer than this kilnd knows"
	contains "$(cat refused.log)" "Operations runbook"
	[ "$(db state/kilnd.db "PRAGMA user_version")" = 99 ] || fail "the newer database was changed"
}

t_state_zero_length_db_is_refused() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 300ms >kilnd.yaml
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	stop_kilnd
	: >state/kilnd.db
	refuses kilnd.yaml
	contains "$OUT" "is empty"
	contains "$OUT" "state/mirrors"
	[ ! -s state/kilnd.db ] || fail "the refused file was written to"
	# a fresh state directory (no mirrors) starts as before, empty file or none
	config "$PWD/fresh" "$PWD/origin.git" 300ms >fresh.yaml
	mkdir fresh && : >fresh/kilnd.db
	start_kilnd fresh.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "fresh state: no first poll"
	stop_kilnd
}

t_state_malformed_db_is_refused_and_recovered() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 300ms >kilnd.yaml
	echo "state_backup_interval: 200ms" >>kilnd.yaml
	first=$(git -C "$clone" rev-parse HEAD)
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	snapshot_has_first() {
		[ "$(db state/kilnd.db.backup "SELECT last_seen FROM branches")" = "$first" ]
	}
	wait_for 10 snapshot_has_first || fail "no snapshot with the first-seen commit"
	stop_kilnd
	# a push while kilnd is down, then a damaged database
	push "$clone" base/Dockerfile
	sha=$(git -C "$clone" rev-parse HEAD)
	damage_db state || return
	refuses kilnd.yaml
	contains "$OUT" "malformed"
	expect_rc 0 "$KILND" --recover --config kilnd.yaml
	contains "$OUT" "kilnd.db.damaged-"
	contains "$OUT" "start kilnd again"
	ls state/kilnd.db.damaged-* >/dev/null 2>&1 || fail "the damaged file was not kept"
	# a second --recover finds nothing to recover
	expect_rc 1 "$KILND" --recover --config kilnd.yaml
	contains "$ERR" "nothing to recover"
	# kilnd starts on the snapshot's last-seen commit: the push is built
	start_kilnd kilnd.yaml
	built() { [ "$(builds_for state "$sha")" = "$(printf 'app|succeeded\nbase|succeeded')" ]; }
	wait_for 10 built || fail "the push made while down was not built: $(builds_for state "$sha")"
	[ "$(grep -c "first seen" kilnd.log)" = 1 ] || fail "the branch was first seen again"
	stop_kilnd
}

# Every fetch adds a pack to the mirror; past repack_packs they are folded
# into one. The repack keeps every object: a commit kilnd had as a branch's
# last-seen commit and that a force push then took out of every ref is still
# there (kilnd plans from last-seen commits, wherever they are), the mirror
# passes git fsck, and pushes after the repack are planned as before.
t_repack_folds_packs_keeps_every_object() {
	clone=$(origin "$PWD/origin.git")
	config "$PWD/state" "$PWD/origin.git" 100ms >kilnd.yaml
	echo "    repack_packs: 4" >>kilnd.yaml
	mirror=state/mirrors/images.git
	start_kilnd kilnd.yaml
	wait_for 10 grep -q "first seen" kilnd.log || fail "first poll missing"
	seen_is() { [ "$(db state/kilnd.db "SELECT last_seen FROM branches")" = "$1" ]; }
	push "$clone" base/Dockerfile
	gone=$(git -C "$clone" rev-parse HEAD)
	wait_for 10 seen_is "$gone" || fail "push not seen: $(tail -3 kilnd.log)"
	(cd "$clone" && git reset -q --hard HEAD~1 && echo z >>app/h && git add -A &&
		git commit -qm rewritten && git push -q -f origin HEAD:main)
	wait_for 10 seen_is "$(git -C "$clone" rev-parse HEAD)" || fail "force push not seen"
	[ -z "$(git -C "$mirror" for-each-ref --contains "$gone")" ] ||
		fail "$gone is still reachable in the mirror"
	# one pack per fetch: the fifth one makes more than 4
	for i in 1 2 3; do
		push "$clone" "app/n$i"
		wait_for 10 seen_is "$(git -C "$clone" rev-parse HEAD)" || fail "push $i not seen"
	done
	wait_for 10 grep -q "repacked the mirror" kilnd.log ||
		fail "no repack: $(ls "$mirror/objects/pack" | grep -c 'pack$') packs"
	grep -q "repacked the mirror: [5-9] packs -> 1 (" kilnd.log ||
		fail "repack line: $(grep repacked kilnd.log)"
	packs=$(ls "$mirror/objects/pack" | grep -c '\.pack$')
	[ "$packs" -le 2 ] || fail "$packs packs after the repack"
	git -C "$mirror" cat-file -e "$gone^{commit}" || fail "the force-pushed-away commit is gone"
	git -C "$mirror" fsck --full --strict --no-progress >fsck.log 2>&1 ||
		fail "fsck: $(tail -5 fsck.log)"
	# planning goes on: a push after the repack is planned and built
	push "$clone" base/Dockerfile
	sha=$(git -C "$clone" rev-parse HEAD)
	built() { [ "$(builds_for state "$sha")" = "$(printf 'app|succeeded\nbase|succeeded')" ]; }
	wait_for 10 built || fail "push after the repack not planned: $(builds_for state "$sha")"
	stop_kilnd
}

run_all
