#!/usr/bin/env bash
# The riffle-kpl benchmark: user records/s through the producer library, from one process to a
# broker on the same machine, aggregation on and off.
#
#   bash bench/kpl.sh                 # 20 s per run
#   bash bench/kpl.sh --secs 10 --shards 8 --runs "agg noagg"
#
# Builds riffle-broker and riffle-load (release), starts the broker on 127.0.0.1 (every limit
# off, fsync = "always", a fresh temporary data directory per run), runs `riffle-load kpl`
# (100-byte records, 100,000 partition keys, the producer's own rate limit off since the
# broker's are), and records for each run the producer's user records/s, its CPU seconds per
# million records (getrusage), its peak RSS (VmHWM), and the broker's CPU over the same time.
# Writes bench/results/kpl.jsonl and prints a table. Every process it starts is stopped by PID;
# every run is bounded in time.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
LOAD="$ROOT/target/release/riffle-load"
BROKER="$ROOT/target/release/riffle-broker"
SECS=20
SHARDS=8
RUNS="agg noagg"
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS="$2"; shift ;;
        --shards) SHARDS="$2"; shift ;;
        --runs) RUNS="$2"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
PORT=$(( ${BENCH_PORT_BASE:-14560} + 20 ))
ADMIN=$((PORT + 1))
WORK="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/riffle-kpl-bench.XXXXXX")"
OUT="$BENCH/results/kpl.jsonl"
mkdir -p "$BENCH/results"
: > "$WORK/results.jsonl"
BROKER_PID=""

log() { printf '[kpl-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    [ -n "$BROKER_PID" ] && wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}
trap 'stop_broker; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# CPU seconds (user + system) of a process so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

log "building riffle-broker and riffle-load (release)"
(cd "$ROOT" && cargo build --release --locked -p riffle-broker -p riffle-bench) >&2

start_broker() {
    rm -rf "$WORK/data"
    cat > "$WORK/riffle.toml" <<TOML
listen = "127.0.0.1:$PORT"
admin_listen = "127.0.0.1:$ADMIN"
data_dir = "$WORK/data"

[streams]
status_delay = "100ms"

[storage]
fsync = "always"

[auth]
anonymous = true

[control_plane]
enabled = false

[limits]
write_bytes_per_second = "off"
write_records_per_second = "off"
read_bytes_per_second = "off"
get_records_per_second = "off"
get_shard_iterator_per_second = "off"
subscriber_bytes_per_second = "off"
TOML
    "$BROKER" --config "$WORK/riffle.toml" > "$WORK/broker.out" 2> "$WORK/broker.err" &
    BROKER_PID=$!
    for _ in $(seq 1 100); do
        grep -q "riffle-broker ready" "$WORK/broker.out" 2>/dev/null && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "the broker did not start"; cat "$WORK/broker.err" >&2; return 1
}

for run in $RUNS; do
    case "$run" in
        agg) extra=() ;;
        noagg) extra=(--no-aggregation) ;;
        ordered) extra=(--ordered) ;;
        *) log "unknown run $run"; exit 64 ;;
    esac
    start_broker
    compilers="$(ps -eo comm= | grep -cxE 'rustc|cargo|cc1|ld|clippy-driver|rustdoc' || true)"
    before="$(cpu_of "$BROKER_PID")"
    log "$run: riffle-load kpl --shards $SHARDS --duration-secs $SECS ${extra[*]:-} (compilers running: $compilers)"
    line="$(timeout --signal=TERM --kill-after=10 $((SECS + 300)) "$LOAD" kpl \
        --endpoint "http://127.0.0.1:$PORT" --shards "$SHARDS" --duration-secs "$SECS" \
        --record-size 100 --keys 100000 "${extra[@]}" 2>> "$WORK/load.err" | tail -n 1)" || true
    after="$(cpu_of "$BROKER_PID")"
    stop_broker
    python3 - "$run" "$before" "$after" "$compilers" "$line" >> "$WORK/results.jsonl" <<'PY'
import json, sys
run, before, after, compilers, line = sys.argv[1:6]
try:
    d = json.loads(line)
except Exception:
    d = {"workload": "kpl", "status": "failed", "reason": "riffle-load printed no result"}
d["run"] = run
d["compilers_seen"] = int(compilers)
elapsed = d.get("elapsed_s") or 0
d["broker_cpu_s"] = round(float(after) - float(before), 3)
if elapsed:
    d["broker_cores"] = round(d["broker_cpu_s"] / elapsed, 3)
print(json.dumps(d))
PY
    tail -n 1 "$WORK/results.jsonl" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
print("    -> %s %s user rec/s, producer %s cores, %s CPU s/M records, peak RSS %s MB, broker %s cores" % (
    d.get("status"), d.get("records_per_s"), (d.get("loadgen_cpu") or {}).get("cores"),
    d.get("extra", {}).get("cpu_s_per_million_records"), d.get("extra", {}).get("peak_rss_mb"),
    d.get("broker_cores")))' >&2
done
cp "$WORK/results.jsonl" "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| run | user records/s | producer cores | producer CPU s / M records | producer peak RSS (MB) | broker cores | user records per Kinesis record | compilers running |")
print("|---|---|---|---|---|---|---|---|")
for d in rows:
    e = d.get("extra", {})
    print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
        d["run"], f'{d.get("records_per_s", 0):,.0f}', (d.get("loadgen_cpu") or {}).get("cores"),
        e.get("cpu_s_per_million_records"), e.get("peak_rss_mb"), d.get("broker_cores"),
        e.get("user_records_per_kinesis_record"), d.get("compilers_seen")))
PY
log "results: $OUT"
