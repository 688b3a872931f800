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
# --soak MINUTES measures instead, for MINUTES, one kilnd watching the
# repository of the first --images count (default 10,000: "the large one",
# poll interval 1h) and --small N small ones (default 200; 5 image folders,
# 8 commits, from one fast-import stream; poll interval 60 s, so that idle
# polls run too), all served by one `git daemon`. Every 10 s: a 1-commit
# push to a small repository (round robin) and to the large one, each
# followed by `kiln trigger`; the large one's push -> builds recorded as in
# 2. Each minute: kilnd's VmRSS, RssAnon (and of it the [heap] mapping's
# resident size), VmHWM, open fds, threads, state db and WAL sizes, state
# dir size. Printed as a series, with the growth
# from minute 1 to the end, whether every small repository's last push was
# recorded, and kilnd's warnings and errors.
#
#   tests/bench/scale.sh [--kilnd KILND] [--kiln KILN] [--work DIR]
#                        [--images 1000,10000] [--rounds N] [--quick]
#                        [--soak MINUTES [--small N]]
#
# --work DIR keeps the generated repositories (as changes.sh and plan.sh,
# which share them) for the next run, and kilnd's debug log of each count
# (scale-kilnd-N.log; the restarted kilnd's lines after the first one's;
# scale-kilnd-soak.log). --quick: 1,000 images, 1 round.
# Prints one markdown table per image count (or the soak's). Needs git
# (with git-daemon), python3. Not run in CI.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kilnd=$here/../../build/kilnd kiln=$here/../../build/kiln keep='' images='' rounds=5
soak='' small=200
while [ $# -gt 0 ]; do
	case $1 in
	--kilnd) kilnd=$2; shift 2 ;;
	--kiln) kiln=$2; shift 2 ;;
	--work) keep=$2; shift 2 ;;
	--images) images=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--quick) images=1000 rounds=1; shift ;;
	--soak) soak=$2; shift 2 ;;
	--small) small=$2; shift 2 ;;
	*) echo "unknown argument '$1'" >&2; exit 2 ;;
	esac
done
# the soak's large repository: 10,000 images unless --images says otherwise
if [ -z "$images" ] && [ -n "$soak" ]; then
	images=10000
elif [ -z "$images" ]; then
	images=1000,10000
fi
case $soak$small in *[!0-9]*) echo "--soak and --small take whole numbers" >&2; exit 2 ;; esac
[ "$small" -gt 0 ] || { echo "--small must be at least 1" >&2; exit 2; }
[ "$soak" != 0 ] || { echo "--soak must be at least 1 (minute)" >&2; exit 2; }
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
# heap_kib: the resident KiB of kilnd's [heap] mapping (glibc's main arena,
# which kilnd's allocations all go to: M_ARENA_MAX 1), to tell the heap's
# growth from the rest of the anonymous memory (stacks, libraries' data)
heap_kib() { awk '/^[0-9a-f]+-[0-9a-f]+ / { h = $6 == "[heap]" } h && $1 == "Rss:" { print $2; exit }' "/proc/$kpid/smaps"; }

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
	bench_tie "$gpid"
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
	bench_tie "$kpid"
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

# push_large KIND: pushes KIND commits to the large repository; sets $line to
# "push->recorded_ms builds plan_ms changes_ms"
push_large() {
	local tip plans
	seed=$((seed + 1))
	plans=$(tail -n "+$((from + 1))" "$d/kilnd.log" | grep -c "'images': planned in" || true)
	commits "$n" "$1" "$seed" | git -C "$d/pusher.git" fast-import --quiet --force
	tip=$(git -C "$d/pusher.git" rev-parse main)
	git -C "$d/pusher.git" push -q served main
	line=$(recorded "$d/state/kilnd.db" "$tip")
	# kilnd's own figure for the plan: from its fetch's end. It is logged
	# after the plan's transaction that `recorded` saw: wait for the line.
	wait_log "'images': planned in" $((plans + 1))
	line="$line $(grep -o "'images': planned in [0-9.]* ms (changes [0-9.]* ms)" \
		"$d/kilnd.log" | tail -1 | awk '{ print $4, $7 }')"
}

# push_one KIND KEY ROUND: push_large, then appends to $out "KEY ROUND
# push->recorded_ms builds plan_ms changes_ms fetch_ms fetch_kib fetch_ms"
push_one() {
	local line
	push_large "$1"
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

# soak N MINUTES: the large repository of N images and $small small ones
# served by one git daemon and watched by one kilnd, pushed to every 10 s;
# kilnd sampled every minute. Writes $work/results-soak as "key value..." lines.
soak() {
	local n=$1 minutes=$2 i k name t0 t1 left seed=0 line
	d=$work/soak from=0 out=$work/results-soak
	serve_large "$n"
	# small ones: the generator's layout at 5 images and 8 commits, one
	# fast-import stream for all (fast-import packs: no repack needed)
	echo "soak: $small small repositories..." >&2
	python3 "$here/gen_images_repo.py" 5 8 >"$d/small.fi"
	for i in $(seq 0 $((small - 1))); do
		printf -v name 's%03d' "$i"
		git init -q --bare -b main "$d/served/$name.git"
		git -C "$d/served/$name.git" fast-import --quiet <"$d/small.fi"
	done
	start_gitd
	# the small ones poll every minute on their own (idle polls are part of
	# the soak); the large one only when triggered, as in one_count
	{
		printf 'state_dir: %s\nbuilds: {dry_run: true}\nlisten: {status_socket: %s}\n' \
			"$d/state" "$d/kiln.sock"
		printf 'repositories:\n  - {name: images, url: "%s/images.git", poll_interval: 1h}\n' \
			"$base"
		for i in $(seq 0 $((small - 1))); do
			printf -v name 's%03d' "$i"
			printf '  - {name: %s, url: "%s/%s.git", poll_interval: 60s}\n' "$name" "$base" "$name"
		done
	} >"$d/kilnd.yaml"
	echo "soak: kilnd's first mirrors..." >&2
	t0=$(date +%s%N)
	start_kilnd
	# the large one's first (it comes first in the config), then all
	wait_log "watch 'images': branch 'main' first seen"
	t1=$(date +%s%N)
	wait_log "branch 'main' first seen" $((small + 1))
	echo "first $((($(date +%s%N) - t0) / 1000000)) $(cut -d' ' -f1 /proc/loadavg)" \
		"$(((t1 - t0) / 1000000))" >"$out"

	# tick k at t0 + 10k s: a sample each minute (minute 0: right after the
	# first mirrors), then a push to a small repository (round robin) and to
	# the large one, both triggered; the large one's push -> recorded kept
	echo "soak: $minutes minutes of pushes every 10 s..." >&2
	t0=$(date +%s%N)
	for k in $(seq 0 $((minutes * 6))); do
		if [ $((k % 6)) = 0 ]; then
			echo "min $((k / 6)) $(status_kib VmRSS) $(status_kib RssAnon) $(status_kib VmHWM)" \
				"$(find "/proc/$kpid/fd" -mindepth 1 | wc -l) $(db_kib) $(du -sk "$d/state" | cut -f1)" \
				"$(status_kib Threads) $k $(heap_kib)" >>"$out"
			echo "fds $((k / 6)) $(fd_kinds)" >>"$out"
			echo "soak: $(tail -1 "$out")" >&2
		fi
		[ "$k" -lt $((minutes * 6)) ] || break
		printf -v name 's%03d' $((k % small))
		commits 5 1 "$((100000 + k))" | git -C "$d/served/$name.git" fast-import --quiet --force
		"$kiln" trigger "$name" --socket "$d/kiln.sock" >/dev/null
		push_large 1
		echo "push $k $line" >>"$out"
		left=$(((t0 + (k + 1) * 10000000000 - $(date +%s%N)) / 1000000))
		[ "$left" -le 0 ] || sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"
	done

	# whether each small repository's last push was recorded too (their
	# polls share kilnd's workers with the large one's)
	sleep 5
	for i in $(seq 0 $((small - 1))); do
		printf -v name 's%03d' "$i"
		echo "$name $(git -C "$d/served/$name.git" rev-parse main)"
	done >"$d/tips"
	{
		python3 - "$d/state/kilnd.db" "$d/tips" <<-'PY'
		import sqlite3, sys
		con = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=5)
		seen = dict(con.execute("SELECT repository, last_seen FROM branches WHERE branch = 'main'"))
		tips = dict(l.split() for l in open(sys.argv[2]))
		print("small %d %d" % (sum(seen.get(r) == t for r, t in tips.items()), len(tips)))
		PY
		echo "log $(grep -c '^<4>' "$d/kilnd.log") $(grep -c '^<[0-3]>' "$d/kilnd.log")"
		echo "load1 $(cut -d' ' -f1 /proc/loadavg)"
	} >>"$out"
	[ "$keep" = "$work" ] || cp "$d/kilnd.log" "$keep/scale-kilnd-soak.log"
	stop_kilnd
	kill -TERM "$gpid"
	wait "$gpid" || true
	pid=
}

# fd_kinds: kilnd's open fds counted by what they are, "socket=3,pipe=2,..."
# (which kind grows, when the count does)
fd_kinds() {
	find "/proc/$kpid/fd" -mindepth 1 -printf '%l\n' 2>/dev/null |
		sed -E 's/^(socket|pipe|anon_inode):.*/\1/; s/.*\.(pack|idx)$/\1/; s/.*kilnd\.db.*/db/;
			s|^/.*|other-file|' | sort | uniq -c | awk '{ printf "%s%s=%s", (NR > 1 ? "," : ""), $2, $1 }'
}

# db_kib: the sizes of kilnd's state db and of its write-ahead log, KiB (the
# log is only rewritten from its start at checkpoints, not truncated)
db_kib() {
	local f
	for f in "$d/state/kilnd.db" "$d/state/kilnd.db-wal"; do
		if [ -e "$f" ]; then echo $(($(stat -c %s "$f") / 1024)); else echo 0; fi
	done | paste -sd' '
}

if [ -n "$soak" ]; then
	soak "${images%%,*}" "$soak"
	python3 - "$work/results-soak" "${images%%,*}" "$small" "$soak" <<-'PY'
	import statistics, sys
	path, n, small, minutes = sys.argv[1:]
	res, mins, push = {}, [], []
	for line in open(path):
	    f = line.split()
	    if f[0] == "min":
	        mins.append([int(x) for x in f[1:]])
	    elif f[0] == "fds":
	        res["fds%s" % f[1]] = f[2:]
	    elif f[0] == "push":
	        push.append((int(f[1]), float(f[2])))
	    else:
	        res[f[0]] = f[1:]
	mib = lambda kib: "%.1f MiB" % (kib / 1024)
	print()
	print("soak: %s images (the large one, triggered) and %s small repositories (5 images, 8 commits,"
	      " polled every 60 s) over git:// from one git daemon, one kilnd, dry run; the large one"
	      " first seen %.1f s after kilnd's start, all %.1f s; every 10 s a 1-commit push to the"
	      " large one and to a small one (round robin), both triggered; %s minutes; load average %s"
	      " at the start, %s at the end"
	      % (n, small, int(res["first"][2]) / 1000, int(res["first"][0]) / 1000, minutes,
	         res["first"][1], res["load1"][0]))
	print()
	print("| minute | RSS | anonymous | of which heap | peak | fds | threads | state db + WAL"
	      " | state dir | large push -> recorded, median that minute | pushes so far |")
	print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for m, rss, anon, hwm, fds, db, wal, sdir, threads, k, heap in mins:
	    lat = [ms for t, ms in push if k - 6 <= t < k]
	    print("| %d | %s | %s | %s | %s | %d | %d | %d + %d KiB | %.1f MiB | %s | %d |"
	          % (m, mib(rss), mib(anon), mib(heap), mib(hwm), fds, threads, db, wal,
	             sdir / 1024, "%.0f ms" % statistics.median(lat) if lat else "—", k))
	first, last = mins[min(1, len(mins) - 1)], mins[-1]
	print()
	print("From minute %d to %d: RSS %+.1f MiB (%+.0f%%), anonymous %+.1f MiB (heap %+.1f MiB),"
	      " fds %d -> %d, threads"
	      " %d -> %d, state db + WAL %d -> %d KiB; large push -> recorded median of all %d: %.0f ms"
	      " (max %.0f)"
	      % (first[0], last[0], (last[1] - first[1]) / 1024, 100 * (last[1] - first[1]) / first[1],
	         (last[2] - first[2]) / 1024, (last[10] - first[10]) / 1024, first[4], last[4], first[8], last[8], first[5] + first[6],
	         last[5] + last[6],
	         len(push), statistics.median(ms for _, ms in push), max(ms for _, ms in push)))
	print("Open fds by kind at minute %d: %s; at minute %d: %s"
	      % (first[0], " ".join(res["fds%d" % first[0]]), last[0], " ".join(res["fds%d" % last[0]])))
	print("Small repositories whose last-seen commit is their served tip at the end: %s of %s;"
	      " kilnd logged %s warnings, %s errors" % tuple(res["small"] + res["log"]))
	PY
	exit 0
fi

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
	                   ("1 commit, first after a restart, target < 1 s",
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
