#!/usr/bin/env bash
# End-to-end check of the binary on a simulated day: simulate, replay
# --verify twice (same digest), simulate again with the same seed (same
# digest), and cut the last record in half (replays to the last whole record
# and says so).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin switchboard
bin=target/release/switchboard
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" simulate --data "$work/a" --seed 7 --conversations 2000
"$bin" replay --data "$work/a" --verify > "$work/a1.txt"
"$bin" replay --data "$work/a" --verify > "$work/a2.txt"
"$bin" simulate --data "$work/b" --seed 7 --conversations 2000 > /dev/null
"$bin" replay --data "$work/b" --verify > "$work/b.txt"
"$bin" simulate --data "$work/c" --seed 8 --conversations 2000 > /dev/null
"$bin" replay --data "$work/c" --verify > "$work/c.txt"
cat "$work/a1.txt"

digest() { grep '^digest: ' "$1"; }
[ "$(digest "$work/a1.txt")" = "$(digest "$work/a2.txt")" ] || { echo "FAIL: two replays of one log differ"; exit 1; }
[ "$(digest "$work/a1.txt")" = "$(digest "$work/b.txt")" ] || { echo "FAIL: same seed, different digest"; exit 1; }
[ "$(digest "$work/a1.txt")" != "$(digest "$work/c.txt")" ] || { echo "FAIL: another seed gave the same digest"; exit 1; }

first=$("$bin" replay --data "$work/a" --format json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["replay"]["timeline"] == [] and d["replay"]["records"])')
segment=$(ls "$work/a"/*.log | tail -n 1)
size=$(stat -c %s "$segment")
# Cut the last record in half: its frame is the last bytes of the file.
"$bin" replay --data "$work/a" --conversation none > /dev/null
truncate -s $((size - 20)) "$segment"
out=$("$bin" replay --data "$work/a" --verify) || { echo "FAIL: torn log did not verify"; echo "$out"; exit 1; }
echo "$out" | grep -q "torn record" || { echo "FAIL: torn tail not reported"; echo "$out"; exit 1; }
records=$(echo "$out" | sed -n 's/^\([0-9]*\) records.*/\1/p')
[ "$records" = $((first - 1)) ] || { echo "FAIL: expected $((first - 1)) records after the cut, got $records"; exit 1; }
echo "$out" | head -n 1
echo "smoke: 4 passed, 0 failed"
