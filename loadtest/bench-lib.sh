# Shared by loadtest/bench and loadtest/kafka-bench (sourced, not run).

# The median of the numbers on standard input, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# start_server LOG ARGS...: starts `$bin/switchboard serve ARGS... --listen
# 127.0.0.1:0` in the background with its output in LOG, sets `server` to
# its pid and `base` to its address once it listens; exits if it does not.
start_server() {
    local log=$1
    shift
    "$bin/switchboard" serve "$@" --listen 127.0.0.1:0 > "$log" 2>&1 &
    server=$!
    for _ in $(seq 1 600); do
        if grep -q '^listening on ' "$log"; then break; fi
        sleep 0.1
    done
    base=$(sed -n 's/^listening on //p' "$log" | head -n 1)
    [ -n "$base" ] || { cat "$log" >&2; echo "$(basename "$0"): switchboard serve did not start" >&2; exit 1; }
}

# stop_server: stops the server start_server started, if any.
stop_server() {
    if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    server=""
}

# run_load CONFIG OUT: drives the engine at `$base` with `$bin/switchboard-loadtest`
# at `$rate` for `$duration` seconds, the agents of CONFIG, and keeps its JSON line in OUT.
run_load() {
    "$bin/switchboard-loadtest" --target "$base" --rate "$rate" --duration "$duration" --config "$1" --quiet \
        | tail -n 1 > "$2"
}

# json_fields FILE KEY...: the values of KEYs in the JSON object in FILE, on one line.
json_fields() {
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(*(r[k] for k in sys.argv[2:]))' "$@"
}
