# crash.sh: the kill -9 loop shared by tests/integration/crash.sh (50 rounds
# in CI) and tests/bench/crash.sh (500 and a table). Sourced after common.sh
# and kilnd.sh (which sets LIB); crash.py does the rounds and checks the
# invariants (see its docstring).

# crash_loop ROUNDS [crash.py options...]: an origin with base, app and
# CRASH_IMAGES more images built FROM base, kilnd watching it with a GitHub
# webhook and an hour between polls (only deliveries and triggers make it
# poll), then ROUNDS kill -9s under webhook load. CRASH_TRIGGERS=0 leaves
# out the check that an acknowledged `kiln trigger` survives the kill.
crash_loop() {
	local rounds=$1 clone port images i
	shift
	clone=$(origin "$PWD/origin.git")
	images="base,app"
	(
		cd "$clone" || exit 1
		for i in $(seq 1 "${CRASH_IMAGES:-50}"); do
			image "many/i$i" "i$i" 1 reg.example.com:5000/team/base:latest
		done
		# the file each push changes, tracked from the start (commit -a)
		for i in base app many/*; do echo 0 >"$i/data.txt"; done
		commit many && git push -q origin HEAD:main
	) || { fail "could not make the origin"; return; }
	for i in $(seq 1 "${CRASH_IMAGES:-50}"); do images="$images,many/i$i"; done
	port=$(free_port)
	config "$PWD/state" "$PWD/origin.git" 1h "$port" >kilnd.yaml
	python3 "$LIB/crash.py" --kilnd "$KILND" --kiln "$KILN" --config "$PWD/kilnd.yaml" \
		--state "$PWD/state" --origin "$PWD/origin.git" --clone "$clone" --port "$port" \
		--secret topsecret --images "$images" --rounds "$rounds" \
		--triggers "${CRASH_TRIGGERS:-1}" "$@" ||
		fail "the kill -9 loop broke an invariant (log: $PWD/kilnd.log)"
}
