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
#
#   tests/bench/scale.sh [--kilnd KILND] [--kiln KILN] [--work DIR]
#                        [--images 1000,10000] [--rounds N] [--quick]
#
# --work DIR keeps the generated repositories (as changes.sh and plan.sh,
# which share them) for the next run, and kilnd's debug log of each count
# (scale-kilnd-N.log). --quick: 1,000 images, 1 round.
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

# one_count N: appends this count's results to $work/results-N as "key value..." lines
one_count() {
	local n=$1 c=$(($1 * 2)) repos d url t0 line tip seed=0 kind
	repos=$keep/repos-$n-$c
	if [ ! -e "$repos/done" ]; then
		"$here/changes.sh" --kiln /bin/true --work "$keep" --images "$n" --commits "$c" \
			--generate-only
	fi
	d=$work/n$n
	mkdir -p "$d/served"
	git clone -q --bare --no-local "$repos/real.git" "$d/served/images.git"
	git clone -q --bare --shared "$d/served/images.git" "$d/pusher.git"
	git -C "$d/pusher.git" remote add served "$d/served/images.git"
	gport=$(bench_free_port)
	git daemon --reuseaddr --listen=127.0.0.1 --port="$gport" --base-path="$d/served" \
		--export-all "$d/served" >/dev/null 2>"$d/gitd.log" &
	gpid=$!
	pid="$pid $gpid"
	url=git://127.0.0.1:$gport/images.git
	for _ in $(seq 1 50); do
		git ls-remote "$url" >/dev/null 2>&1 && break
		sleep 0.2
	done
	git ls-remote "$url" >/dev/null
	out=$work/results-$n
	echo "size $(du -sk "$d/served/images.git" | cut -f1)" >"$out"
	echo "load0 $(cut -d' ' -f1 /proc/loadavg)" >>"$out"

	# 1. the reference first (kilnd then finds the served pack as warm)
	echo "$n images: git clone --mirror..." >&2
	echo "clone $(cd "$d" && measure git clone -q --mirror "$url" ref.git)" >>"$out"
	echo "$n images: kilnd's first mirror..." >&2
	cat >"$d/kilnd.yaml" <<-Y
	state_dir: $d/state
	builds: {dry_run: true}
	listen: {status_socket: $d/kiln.sock}
	repositories:
	  - name: images
	    url: "$url"
	    poll_interval: 1h
	Y
	t0=$(date +%s%N)
	"$kilnd" --config "$d/kilnd.yaml" --log-level debug >"$d/kilnd.log" 2>&1 &
	kpid=$!
	pid="$pid $kpid"
	line=
	for _ in $(seq 1 30000); do
		grep -q "first seen" "$d/kilnd.log" && line=$(date +%s%N) && break
		kill -0 "$kpid" 2>/dev/null || { tail -5 "$d/kilnd.log" >&2; exit 1; }
		sleep 0.01
	done
	[ -n "$line" ] || { echo "kilnd never saw the branch" >&2; exit 1; }
	echo "first $(((line - t0) / 1000000)) $(status_kib VmHWM) $(status_kib VmRSS)" \
		"$(status_kib RssAnon)" >>"$out"

	# 2. pushes, each followed by a trigger; the reference fetch after
	for kind in 1 500; do
		for r in $(seq 0 "$rounds"); do
			[ "$kind" = 1 ] || [ "$r" -gt 0 ] || continue # no cold 500: kilnd is warm
			seed=$((seed + 1))
			commits "$n" "$kind" "$seed" | git -C "$d/pusher.git" fast-import --quiet --force
			tip=$(git -C "$d/pusher.git" rev-parse main)
			git -C "$d/pusher.git" push -q served main
			line=$(recorded "$d/state/kilnd.db" "$tip")
			# kilnd's own figure for the plan: from its fetch's end
			line="$line $(grep -o "planned in [0-9.]* ms (changes [0-9.]* ms)" "$d/kilnd.log" |
				tail -1 | awk '{ print $3, $6 }')"
			echo "push$kind $r $line $(cd "$d" && measure git -C ref.git fetch -q)" >>"$out"
			echo "$n images: push of $kind, round $r: $(tail -1 "$out")" >&2
		done
		# 3. idle after the plans (the dry-run builds have long ended)
		sleep 5
		echo "idle$kind $(status_kib VmRSS) $(status_kib RssAnon) $(status_kib VmHWM)" >>"$out"
	done
	echo "load1 $(cut -d' ' -f1 /proc/loadavg)" >>"$out"
	[ "$keep" = "$work" ] || cp "$d/kilnd.log" "$keep/scale-kilnd-$n.log"
	kill -TERM "$kpid" "$gpid"
	wait "$kpid" "$gpid" || true
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
	res, push = {}, {"1": [], "500": []}
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
	for what, rows in (("1 commit, first after the baseline", cold),
	                   ("1 commit, median of %d" % len(warm), warm),
	                   ("500 commits, median of %d" % len(push["500"]), push["500"])):
	    print(row % ((what, builds(rows)) + tuple(med(rows, k) for k in (1, 3, 4, 5))))
	for k, what in (("idle1", "1-commit"), ("idle500", "500-commit")):
	    v = res[k]
	    print("| RSS idle, 5 s after the last %s plan | %s, of which %s anonymous (peak so far %s) | — |"
	          % (what, mib(v[0]), mib(v[1]), mib(v[2])))
	PY
done
