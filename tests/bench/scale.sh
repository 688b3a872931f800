#!/usr/bin/env bash
# scale.sh (issue #14): kilnd's memory and push -> builds latency on a large
# monorepo, beside git doing the same transfers. For each image count N the
# generated repository (gen_images_repo.py through changes.sh: N image
# folders, 2N commits, repacked -adf --depth=50 --window=250 as a forge
# serves it) is served by `git daemon` on 127.0.0.1, and kilnd (dry run, one
# repository over git://, poll interval 1h, so that only `kiln trigger` makes
# it poll) is measured for:
#   1. initial mirror + baseline: from kilnd's start with an empty state dir
#      to its log's "first seen" line (polled every 10 ms), and its VmHWM
#      then; beside `git clone --mirror` of the same URL (wall time, peak RSS
#      of its process tree from wait4).
#   2. push -> builds recorded: a push (to the served repository, through
#      its path) of 1 commit changing 1 image's sources, then `kiln trigger`;
#      the time from the push's end to the branch's last-seen commit being
#      the pushed tip in kilnd's state db (polled every 10 ms; recorded in
#      the plan's transaction, with its builds). The first push after the
#      baseline (kilnd's catalog built cold) is shown alone, the next ROUNDS
#      as their median. Then ROUNDS pushes of 500 commits, each changing one
#      image. Reference: `git fetch` of the same commits into the mirror
#      `git clone --mirror` made, right after kilnd recorded them.
#   3. kilnd's VmRSS and RssAnon 5 s after the last 1-commit plan, and 5 s
#      after the last 500-commit plan.
#   4. a restart: SIGTERM, wait for kilnd's exit, start it again on the same
#      state dir and config; once it is ready (its log) its first poll is
#      triggered (with the 1h interval it would come any time in the hour)
#      and awaited. Then pushes of 1 commit as in 2: the first alone (what
#      kilnd kept of its catalog across the restart shows there), the next
#      ROUNDS as their median; and the RSS 5 s after the last plan.
#
#   tests/bench/scale.sh [--kilnd KILND] [--kiln KILN] [--work DIR]
#                        [--images 1000,10000] [--rounds N] [--quick]
#
# --work DIR keeps the generated repositories (as changes.sh and plan.sh,
# which share them) for the next run, and kilnd's debug log of each count
# (scale-kilnd-N.log; the restarted kilnd's lines after the first one's).
# --quick: 1,000 images, 1 round.
# Prints one markdown table per image count. Needs git (with git-daemon),
# python3. Not run in CI.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kilnd=$here/../../build/kilnd kiln=$here/../../build/kiln keep='' images=1000,10000 rounds=5
while [ $# -gt 0 ]; do
	case $1 in
	--kilnd) kilnd=$2; shift 2 ;;
	--kiln) kiln=$2; shift 2 ;;
	--work) keep=$2; shift 2 ;;
	--images) images=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--quick) images=1000 rounds=1; shift ;;
	*) echo "unknown argument '$1'" >&2; exit 2 ;;
	esac
done
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
kilnd=$(abs "$kilnd") kiln=$(abs "$kiln")
[ -x "$kilnd" ] || { echo "no kilnd at $kilnd" >&2; exit 2; }
[ -x "$kiln" ] || { echo "no kiln at $kiln" >&2; exit 2; }
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 2; }
git daemon --help >/dev/null 2>&1 || { echo "needs git daemon" >&2; exit 2; }

# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
bench_workdir scale
if [ -n "$keep" ]; then
	mkdir -p "$keep"
	keep=$(cd "$keep" && pwd)
else
	keep=$work
fi
measure() { python3 "$here/measure.py" 1 -- "$@"; } # "ms peak_kib ms"

# commits IMAGES COUNT SEED: a fast-import stream of COUNT commits on main,
# each changing one image's src/app.txt (the images spread by SEED)
commits() {
	python3 - "$@" <<-'PY'
	import sys
	images, count, seed = map(int, sys.argv[1:])
	out = sys.stdout
	for k in range(count):
	    i = (seed * 7919 + k * 104729) % images
	    text = "app %d scale %d.%d\n" % (i, seed, k)
	    msg = "scale %d.%d" % (seed, k)
	    out.write("commit refs/heads/main\ncommitter s <s@example.invalid> %d +0000\n"
	              % (1800000000 + seed * 1000 + k))
	    out.write("data %d\n%s\n" % (len(msg), msg))
	    if k == 0:
	        out.write("from refs/heads/main^0\n")
	    out.write("M 100644 inline images/g%02d/img%05d/src/app.txt\n" % (i // 100, i))
	    out.write("data %d\n%s\n" % (len(text), text))
	out.write("done\n")
	PY
}

# recorded DB TIP: the push just ended; triggers kilnd and prints the ms until
# the branch's last-seen commit is TIP, and the builds recorded at TIP
recorded() {
	python3 - "$kiln" "$d/kiln.sock" "$@" <<-'PY'
	import sqlite3, subprocess, sys, time
	kiln, sock, db, tip = sys.argv[1:]
	t0 = time.perf_counter()
	subprocess.run([kiln, "trigger", "images", "--socket", sock], check=True,
	               stdout=subprocess.DEVNULL)
	con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
	while True:
	    try:
	        row = con.execute("SELECT last_seen FROM branches WHERE repository = 'images'"
	                          " AND branch = 'main'").fetchone()
	    except sqlite3.OperationalError:
	        row = None
	    if row and row[0] == tip:
	        break
	    if time.perf_counter() - t0 > 300:
	        sys.exit("no plan of %s in 300 s" % tip)
	    time.sleep(0.01)
	ms = (time.perf_counter() - t0) * 1000
	n = con.execute("SELECT count(*) FROM builds WHERE commit_sha = ?", (tip,)).fetchone()[0]
	print("%.1f %d" % (ms, n))
	PY
}

status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$kpid/status"; }

# generated N: sets $repos, the generated repository of N images (made
# once, then kept under --work)
generated() {
	repos=$keep/repos-$1-$(($1 * 2))
	if [ ! -e "$repos/done" ]; then
		"$here/changes.sh" --kiln /bin/true --work "$keep" --images "$1" --commits "$(($1 * 2))" \
			--generate-only
	fi
}

# serve_large N: $d/served/images.git, a copy of the generated repository of
# N images (pushes must not touch the kept one), and $d/pusher.git to push to it
serve_large() {
	generated "$1"
	mkdir -p "$d/served"
	git clone -q --bare --no-local "$repos/real.git" "$d/served/images.git"
	git clone -q --bare --shared "$d/served/images.git" "$d/pusher.git"
	git -C "$d/pusher.git" remote add served "$d/served/images.git"
}

# start_gitd: `git daemon` serving $d/served at $base (git://127.0.0.1:PORT)
start_gitd() {
	local gport
	gport=$(bench_free_port)
	git daemon --reuseaddr --listen=127.0.0.1 --port="$gport" --base-path="$d/served" \
		--export-all "$d/served" >/dev/null 2>"$d/gitd.log" &
	gpid=$!
	pid="$pid $gpid"
	base=git://127.0.0.1:$gport
	for _ in $(seq 1 50); do
		git ls-remote "$base/images.git" >/dev/null 2>&1 && break
		sleep 0.2
	done
	git ls-remote "$base/images.git" >/dev/null
}

# start_kilnd: kilnd on $d/kilnd.yaml, its debug log appended to $d/kilnd.log
# (a restart's lines follow the first run's); its pid in $kpid
start_kilnd() {
	"$kilnd" --config "$d/kilnd.yaml" --log-level debug >>"$d/kilnd.log" 2>&1 &
	kpid=$!
	pid="$pid $kpid"
}

# stop_kilnd: SIGTERM, then waits for kilnd's exit; its status in $kst (not
# a function printing it: a subshell cannot wait for kilnd)
stop_kilnd() {
	kst=0
	kill -TERM "$kpid"
	wait "$kpid" || kst=$?
	pid=${pid/ $kpid/}
}

# wait_log PATTERN [COUNT]: waits (10 ms polls, 30,000 of them) until kilnd's
# log has COUNT (default 1) lines matching PATTERN (grep -E) after its first
# $from lines; exits if kilnd does
wait_log() {
	for _ in $(seq 1 30000); do
		[ "$(tail -n "+$((from + 1))" "$d/kilnd.log" | grep -cE -- "$1")" -lt "${2:-1}" ] || return 0
		kill -0 "$kpid" 2>/dev/null || { tail -5 "$d/kilnd.log" >&2; exit 1; }
		sleep 0.01
	done
	echo "kilnd's log never had ${2:-1} lines like '$1'" >&2
	exit 1
}

# push_one KIND KEY ROUND: pushes KIND commits to the large repository, then
# appends to $out "KEY ROUND push->recorded_ms builds plan_ms changes_ms
# fetch_ms fetch_kib fetch_ms"
push_one() {
	local tip line
	seed=$((seed + 1))
	commits "$n" "$1" "$seed" | git -C "$d/pusher.git" fast-import --quiet --force
	tip=$(git -C "$d/pusher.git" rev-parse main)
	git -C "$d/pusher.git" push -q served main
	line=$(recorded "$d/state/kilnd.db" "$tip")
	# kilnd's own figure for the plan: from its fetch's end
	line="$line $(grep -o "planned in [0-9.]* ms (changes [0-9.]* ms)" "$d/kilnd.log" |
		tail -1 | awk '{ print $3, $6 }')"
	echo "$2 $3 $line $(cd "$d" && measure git -C ref.git fetch -q)" >>"$out"
	echo "$n images: push of $1, round $3: $(tail -1 "$out")" >&2
}

# one_count N: writes this count's results to $work/results-N as "key value..." lines
one_count() {
	local n=$1 t0 t1 line seed=0 kind r
	d=$work/n$n from=0
	serve_large "$n"
	start_gitd
	out=$work/results-$n
	echo "size $(du -sk "$d/served/images.git" | cut -f1)" >"$out"
	echo "load0 $(cut -d' ' -f1 /proc/loadavg)" >>"$out"

	# 1. the reference first (kilnd then finds the served pack as warm)
	echo "$n images: git clone --mirror..." >&2
	echo "clone $(cd "$d" && measure git clone -q --mirror "$base/images.git" ref.git)" >>"$out"
	echo "$n images: kilnd's first mirror..." >&2
	cat >"$d/kilnd.yaml" <<-Y
	state_dir: $d/state
	builds: {dry_run: true}
	listen: {status_socket: $d/kiln.sock}
	repositories:
	  - name: images
	    url: "$base/images.git"
	    poll_interval: 1h
	Y
	t0=$(date +%s%N)
	start_kilnd
	wait_log "first seen"
	line=$(date +%s%N)
	echo "first $(((line - t0) / 1000000)) $(status_kib VmHWM) $(status_kib VmRSS)" \
		"$(status_kib RssAnon)" >>"$out"

	# 2. pushes, each followed by a trigger; the reference fetch after
	for kind in 1 500; do
		for r in $(seq 0 "$rounds"); do
			[ "$kind" = 1 ] || [ "$r" -gt 0 ] || continue # no cold 500: kilnd is warm
			push_one "$kind" "push$kind" "$r"
		done
		# 3. idle after the plans (the dry-run builds have long ended)
		sleep 5
		echo "idle$kind $(status_kib VmRSS) $(status_kib RssAnon) $(status_kib VmHWM)" >>"$out"
	done

	# 4. a restart on the same state dir: what kilnd keeps across it (its
	# mirror, its state db, and whatever of its catalog it persists) is what
	# the first push after it costs
	echo "$n images: restart..." >&2
	t0=$(date +%s%N)
	stop_kilnd
	t1=$(date +%s%N)
	from=$(wc -l <"$d/kilnd.log")
	start_kilnd
	wait_log "kilnd .* ready: "
	line=$(date +%s%N)
	# with poll_interval 1h its first poll could come any time in the hour:
	# trigger it, so that the push below is the only news of its poll
	"$kiln" trigger images --socket "$d/kiln.sock" >/dev/null
	wait_log "watch 'images': [a-z]+ -> idle"
	echo "restart $(((t1 - t0) / 1000000)) $kst $(((line - t1) / 1000000))" \
		"$((($(date +%s%N) - t1) / 1000000)) $(status_kib VmRSS) $(status_kib RssAnon)" >>"$out"
	for r in $(seq 0 "$rounds"); do
		push_one 1 pushR "$r"
	done
	sleep 5
	echo "idleR $(status_kib VmRSS) $(status_kib RssAnon) $(status_kib VmHWM)" >>"$out"

	echo "load1 $(cut -d' ' -f1 /proc/loadavg)" >>"$out"
	[ "$keep" = "$work" ] || cp "$d/kilnd.log" "$keep/scale-kilnd-$n.log"
	stop_kilnd
	kill -TERM "$gpid"
	wait "$gpid" || true
	pid=
	rm -rf "$d"
}

for n in ${images//,/ }; do
	one_count "$n"
done

for n in ${images//,/ }; do
	python3 - "$work/results-$n" "$n" <<-'PY'
	import statistics, sys
	path, n = sys.argv[1:]
	res, push = {}, {"1": [], "500": [], "R": []}
	for line in open(path):
	    f = line.split()
	    if f[0].startswith("push"):
	        push[f[0][4:]].append(f[1:])
	    else:
	        res[f[0]] = f[1:]
	mib = lambda kib: "%.0f MiB" % (int(kib) / 1024)
	med = lambda rows, k: statistics.median(float(r[k]) for r in rows)
	cold = [r for r in push["1"] if r[0] == "0"]
	warm = [r for r in push["1"] if r[0] != "0"]
	clone = res["clone"]
	first = res["first"]
	print()
	print("%s images, %d commits (%.0f MiB served, repack -adf --depth=50 --window=250), git://"
	      " on 127.0.0.1; load average %s at the start, %s at the end"
	      % (n, 2 * int(n), int(res["size"][0]) / 1024, res["load0"][0], res["load1"][0]))
	print()
	print("| what | kilnd | reference, same run |")
	print("|---|---|---|")
	print("| first mirror + baseline | %.2f s, peak RSS %s (then: %s, of which %s anonymous) |"
	      " `git clone --mirror`: %.2f s, peak %s (kilnd / git: %.1fx) |"
	      % (int(first[0]) / 1000, mib(first[1]), mib(first[2]), mib(first[3]),
	         float(clone[0]) / 1000, mib(clone[1]), int(first[1]) / int(clone[1])))
	row = ("| push -> trigger -> builds recorded, %s (%s builds) | %.0f ms, of which plan %.0f ms"
	       " (changes %.0f ms) | `git fetch` of it: %.0f ms |")
	builds = lambda rows: "/".join(sorted({r[2] for r in rows}, key=int))
	after = [r for r in push["R"] if r[0] != "0"]
	for what, rows in (("1 commit, first after the baseline", cold),
	                   ("1 commit, median of %d" % len(warm), warm),
	                   ("500 commits, median of %d" % len(push["500"]), push["500"]),
	                   ("1 commit, first after a restart (target < 1 s),",
	                    [r for r in push["R"] if r[0] == "0"]),
	                   ("1 commit after the restart, median of %d" % len(after), after)):
	    if rows:
	        print(row % ((what, builds(rows)) + tuple(med(rows, k) for k in (1, 3, 4, 5))))
	idle = "| RSS idle, 5 s after the last %s | %s, of which %s anonymous (peak so far %s) | — |"
	for k, what in (("idle1", "1-commit plan"), ("idle500", "500-commit plan")):
	    v = res[k]
	    print(idle % (what, mib(v[0]), mib(v[1]), mib(v[2])))
	v = res["restart"]
	print("| restart on the same state dir | SIGTERM -> exit %.2f s (status %s); start -> ready"
	      " %.2f s, -> its first poll (triggered) done %.2f s; RSS then %s, of which %s anonymous"
	      " | — |" % (int(v[0]) / 1000, v[1], int(v[2]) / 1000, int(v[3]) / 1000, mib(v[4]),
	                  mib(v[5])))
	v = res["idleR"]
	print(idle % ("plan after the restart", mib(v[0]), mib(v[1]), mib(v[2]) + " since the restart"))
	PY
done
