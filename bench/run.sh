#!/usr/bin/env bash
# The Riffle benchmark: one command, from any directory.
#
#   bash bench/run.sh            # the default run (about 35 minutes)
#   bash bench/run.sh --quick    # fewer records, shorter phases (about 15 minutes)
#
# Options: --quick | --targets riffle,kinesalite,kinesis-mock,moto,ferrokinesis
#          --wait-quiet SECONDS (wait this long at most for other builds to finish; 600)
#          --skip-physical (no fio / loopback measurement)
#
# Builds riffle-broker and riffle-load (release), installs the peers under bench/.peers/
# (npm: kinesalite, kinesis-local; PyPI: moto[server] in a venv; crates.io: ferrokinesis),
# starts each target on 127.0.0.1 only, runs every workload against it with riffle-load,
# measures the machine's physical limits (fio in the data directory's filesystem, loopback
# TCP with iperf3), then writes bench/results/latest.jsonl (one JSON line per run) and
# bench/results/latest.md (the tables), and prints the tables. Every process it starts is
# stopped by its PID; every workload is bounded in records and in time.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
PEERS="$BENCH/.peers"
RESULTS="$BENCH/results"
LOAD="$ROOT/target/release/riffle-load"
BROKER="$ROOT/target/release/riffle-broker"

MODE=default
TARGETS="riffle,kinesalite,kinesis-mock,moto,ferrokinesis"
WAIT_QUIET=600
PHYSICAL=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --targets) TARGETS="$2"; shift ;;
        --wait-quiet) WAIT_QUIET="$2"; shift ;;
        --skip-physical) PHYSICAL=0 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
    shift
done

# Workload bounds per mode. Every phase is bounded in time; records bound the rest.
if [ "$MODE" = quick ]; then
    PUT_SECS=5; LAT_SECS=5; READ_RECORDS=200000; FILL_SECS=20; READ_SECS=30
    PROP_SECS=6; BURST_SECS=5; BURST_RECOVERY=30; BURST_NORMAL=0.5
    SCALE_SECS=8; STARTUP_GB=2
else
    PUT_SECS=10; LAT_SECS=20; READ_RECORDS=1000000; FILL_SECS=60; READ_SECS=60
    PROP_SECS=20; BURST_SECS=30; BURST_RECOVERY=100; BURST_NORMAL=0.25
    SCALE_SECS=20; STARTUP_GB=10
fi

# Ports on 127.0.0.1 (override with BENCH_PORT_BASE).
BASE="${BENCH_PORT_BASE:-14560}"
RIFFLE_PORT=$((BASE + 7)); RIFFLE_ADMIN=$((BASE + 8))
KINESALITE_PORT=$((BASE + 10)); KMOCK_PORT=$((BASE + 11)); KMOCK_TLS=$((BASE + 12))
MOTO_PORT=$((BASE + 13)); FERRO_PORT=$((BASE + 14)); IPERF_PORT=$((BASE + 15))

mkdir -p "$PEERS" "$RESULTS"
WORK="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/riffle-bench.XXXXXX")"
JSONL="$WORK/results.jsonl"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
: > "$JSONL"
STARTED=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Running and not a zombie (a zombie only waits for our `wait`).
is_running() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# Stops one process this script started: SIGTERM, up to 10 s, then SIGKILL; reaps it and
# forgets its PID (so a later cleanup can never signal a reused PID).
stop_pid() {
    local pid="$1" i
    if is_running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            is_running "$pid" || break
            sleep 0.1
        done
        is_running "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in "${!STARTED[@]}"; do
        if [ "${STARTED[$i]}" = "$pid" ]; then unset 'STARTED[i]'; fi
    done
    return 0
}

cleanup() {
    local pid
    for pid in "${STARTED[@]:-}"; do
        if [ -n "$pid" ]; then stop_pid "$pid"; fi
    done
    rm -rf "$WORK/data" "$WORK/fio"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A line for a run that produced none (crash, hard timeout, missing peer).
emit_failed() { # workload target reason [params-json]
    python3 - "$1" "$2" "$3" "${4:-}" >> "$JSONL" <<'EOF'
import json, sys, time
w, t, reason, params = sys.argv[1:5]
print(json.dumps({"workload": w, "target": t, "status": "failed", "reason": reason,
                  "params": json.loads(params or "{}"), "finished_unix_s": int(time.time())}))
EOF
}

emit_json() { python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])))' "$1" >> "$JSONL"; }

# Runs riffle-load; its one JSON line goes to the results, anything else to the logs.
load() { # target workload args...
    local target="$1" workload="$2"; shift 2
    local out="$LOGS/$target-$workload.out"
    log "$target: $workload $*"
    local rc=0 busy_before busy_after
    busy_before="$(busy_processes)"
    timeout --signal=TERM --kill-after=10 1800 \
        "$LOAD" "$workload" --target-name "$target" "$@" > "$out" 2>> "$LOGS/$target-load.err" || rc=$?
    busy_after="$(busy_processes)"
    if [ -s "$out" ] && tail -n 1 "$out" | python3 -c 'import json,sys; json.loads(sys.stdin.read())' 2>/dev/null; then
        # Note other engineers' compilers seen at the start or end of the run.
        tail -n 1 "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
d["compilers_seen"] = max(int(sys.argv[1]), int(sys.argv[2]))
print(json.dumps(d))' "$busy_before" "$busy_after" >> "$JSONL"
        tail -n 1 "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
print("    -> %s  %s rec/s  %s MB/s  p50 %s p99 %s ms" % (d["status"], d.get("records_per_s"),
      d.get("mb_per_s"), d.get("latency_ms", {}).get("p50"), d.get("latency_ms", {}).get("p99")))' >&2
    else
        emit_failed "$workload" "$target" "riffle-load exited $rc without a result"
    fi
}

# Other engineers' builds distort measurements: wait (bounded) until none runs.
busy_processes() {
    ps -eo comm= | grep -cxE 'rustc|cargo|cargo-fuzz|clippy-driver|rustdoc|cc1|cc1plus|ld' || true
}
# Percent of both cores busy over 3 seconds (anything: builds, fuzzers, test suites).
cpu_busy() {
    local a b
    a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
quiet() { [ "$(busy_processes)" -eq 0 ] && [ "$(cpu_busy)" -lt 15 ]; }
# Waits until quiet, at most what is left of the run's --wait-quiet budget; prints the wait.
WAIT_LEFT_FILE="$WORK/wait-left"
echo "$WAIT_QUIET" > "$WAIT_LEFT_FILE"
wait_quiet() {
    local waited=0 left
    left="$(cat "$WAIT_LEFT_FILE")"
    while ! quiet && [ "$waited" -lt "$left" ]; do
        [ $((waited % 60)) -ne 0 ] || log "waiting for a quiet machine ($(busy_processes) compiler processes, top: $(ps -eo pcpu=,comm= --sort=-pcpu | head -1 | xargs); ${waited}s of ${WAIT_QUIET}s)"
        sleep 7
        waited=$((waited + 10))
    done
    echo $(( left > waited ? left - waited : 0 )) > "$WAIT_LEFT_FILE"
    echo "$waited"
}

# ---------------------------------------------------------------- build and install
log "building riffle-broker and riffle-load (release)"
(cd "$ROOT" && cargo build --release --locked -p riffle-broker -p riffle-bench) >&2

declare -A INSTALL_ERR
install_peers() {
    if ! [ -f "$PEERS/loopback_bind.so" ] || [ "$BENCH/support/loopback_bind.c" -nt "$PEERS/loopback_bind.so" ]; then
        cc -shared -fPIC -O2 -o "$PEERS/loopback_bind.so" "$BENCH/support/loopback_bind.c" -ldl
    fi
    case ",$TARGETS," in *,kinesalite,*|*,kinesis-mock,*)
        if ! [ -f "$PEERS/node/node_modules/kinesalite/cli.js" ] || ! [ -f "$PEERS/node/node_modules/kinesis-local/main.js" ]; then
            log "installing kinesalite and kinesis-local (npm)"
            mkdir -p "$PEERS/node"
            (cd "$PEERS/node" && npm install --no-audit --no-fund --prefix . kinesalite kinesis-local) \
                > "$LOGS/npm.log" 2>&1 || INSTALL_ERR[npm]="npm install failed (see npm.log)"
        fi ;;
    esac
    case ",$TARGETS," in *,moto,*)
        if ! [ -x "$PEERS/venv/bin/moto_server" ]; then
            log "installing moto[server] (PyPI, venv)"
            { python3 -m venv "$PEERS/venv" && "$PEERS/venv/bin/pip" install -q 'moto[server]'; } \
                > "$LOGS/pip.log" 2>&1 || INSTALL_ERR[moto]="pip install moto[server] failed"
        fi ;;
    esac
    case ",$TARGETS," in *,ferrokinesis,*)
        if ! [ -x "$PEERS/cargo/bin/ferrokinesis" ]; then
            log "installing ferrokinesis (crates.io; a few minutes of compiling)"
            cargo install --locked --root "$PEERS/cargo" ferrokinesis > "$LOGS/cargo-install.log" 2>&1 \
                || INSTALL_ERR[ferrokinesis]="cargo install ferrokinesis failed"
        fi ;;
    esac
    if [ "$PHYSICAL" = 1 ] && { ! command -v fio >/dev/null || ! command -v iperf3 >/dev/null; }; then
        log "installing fio and iperf3 (Debian)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio iperf3; } \
            > "$LOGS/apt.log" 2>&1 || log "apt-get install failed; physical limits may be missing"
    fi
}
install_peers

# ---------------------------------------------------------------- wait for a quiet machine
WAITED="$(wait_quiet)"
BUSY_AT_START="$(busy_processes)"
CPU_AT_START="$(cpu_busy)"
TOP_AT_START="$(ps -eo pcpu=,comm= --sort=-pcpu | head -3 | xargs)"
if [ "$BUSY_AT_START" -gt 0 ] || [ "$CPU_AT_START" -ge 15 ]; then
    log "machine still busy after ${WAITED}s (${BUSY_AT_START} compilers, ${CPU_AT_START}% CPU); measuring anyway (recorded in the results)"
fi
emit_json "$(python3 - "$MODE" "$WAITED" "$BUSY_AT_START" "$ROOT" "$CPU_AT_START" "$TOP_AT_START" <<'EOF'
import json, os, platform, subprocess, sys, time
mode, waited, busy, root = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cpu_busy, top = int(sys.argv[5]), sys.argv[6]
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""
model = next((l.split(":", 1)[1].strip() for l in sh("lscpu").splitlines() if l.startswith("Model name")), "")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
print(json.dumps({
    "workload": "meta", "target": "machine", "status": "ok", "mode": mode,
    "nproc": int(sh("nproc") or 0), "cpu_model": model, "mem_gib": round(int(mem) / 1048576, 1),
    "kernel": platform.release(), "disk": sh(f"df -h --output=source,fstype,size,avail {os.environ.get('BENCH_TMPDIR', '/tmp')} | tail -1"),
    "git": sh(f"git -C {root} describe --always --dirty"),
    "waited_for_quiet_s": waited, "compiler_processes_at_start": busy,
    "cpu_busy_percent_at_start": cpu_busy, "top_processes_at_start": top,
    "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    "started_unix_s": int(time.time())}))
EOF
)"

# ---------------------------------------------------------------- physical limits
physical() {
    local dir="$WORK/fio"
    mkdir -p "$dir"
    if command -v fio >/dev/null; then
        log "fio: sequential writes in $(df --output=target "$dir" | tail -1) (the data directory's filesystem)"
        local spec name
        for spec in "seq-64k 64k 0 1G" "seq-4k-fsync 4k 1 64M" "seq-64k-fsync 64k 1 512M" "seq-1m-fsync 1M 1 2G"; do
            set -- $spec
            name="$1"
            local fsync_opt="--end_fsync=1"
            if [ "$3" = 1 ]; then fsync_opt="--fdatasync=1"; fi
            if fio --name="$name" --directory="$dir" --rw=write --bs="$2" --size="$4" \
                   --ioengine=psync $fsync_opt --runtime=10 --output-format=json \
                   > "$LOGS/fio-$name.json" 2>> "$LOGS/fio.err"; then
                python3 - "$name" "$2" "$3" "$LOGS/fio-$name.json" >> "$JSONL" <<'EOF'
import json, sys, time
name, bs, fsync, path = sys.argv[1:5]
text = open(path).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
w = job["write"]
sync = job.get("sync", {}).get("lat_ns", {}).get("percentile", {})
pct = lambda p: round(sync.get(p, 0) / 1e6, 3) if sync else None
print(json.dumps({"workload": "physical", "target": f"fio {name}", "status": "ok",
    "params": {"bs": bs, "fdatasync_per_write": fsync == "1"},
    "mb_per_s": round(w["bw_bytes"] / 1e6, 1), "iops": round(w["iops"]),
    "fsync_latency_ms": {"p50": pct("50.000000"), "p99": pct("99.000000")} if sync else None,
    "finished_unix_s": int(time.time())}))
EOF
            else
                emit_failed physical "fio $name" "fio failed (see fio.err)"
            fi
            rm -f "$dir"/*
        done
    else
        emit_failed physical "fio" "fio not installed"
    fi
    if command -v iperf3 >/dev/null; then
        log "iperf3: loopback TCP bandwidth"
        iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" -1 > "$LOGS/iperf3-server.log" 2>&1 &
        local spid=$!
        STARTED+=("$spid")
        sleep 0.5
        if iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t 5 -J > "$LOGS/iperf3.json" 2>> "$LOGS/iperf3.err"; then
            python3 - "$LOGS/iperf3.json" >> "$JSONL" <<'EOF'
import json, sys, time
d = json.load(open(sys.argv[1]))
bps = d["end"]["sum_received"]["bits_per_second"]
print(json.dumps({"workload": "physical", "target": "loopback tcp (iperf3, 1 stream)", "status": "ok",
    "mb_per_s": round(bps / 8 / 1e6, 1), "gbit_per_s": round(bps / 1e9, 2),
    "finished_unix_s": int(time.time())}))
EOF
        else
            emit_failed physical "loopback tcp" "iperf3 failed"
        fi
        stop_pid "$spid"
    fi
}
if [ "$PHYSICAL" = 1 ]; then physical; fi

# ---------------------------------------------------------------- targets
# Checks that every listening socket of the process is on loopback.
loopback_only() { # pid
    local bad
    bad="$(ss -Hltnp 2>/dev/null | grep "pid=$1," | awk '{print $4}' \
           | grep -vE '^(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]):' || true)"
    [ -z "$bad" ] || { log "pid $1 listens beyond loopback: $bad"; return 1; }
}

wait_port() { # port seconds pid
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        kill -0 "$3" 2>/dev/null || return 1
        local code
        code="$(curl -s -o /dev/null -w '%{http_code}' -m 2 -X POST \
            -H 'Content-Type: application/x-amz-json-1.1' \
            -H 'X-Amz-Target: Kinesis_20131202.ListStreams' -d '{}' "http://127.0.0.1:$1/" || true)"
        [ -n "$code" ] && [ "$code" != 000 ] && return 0
        sleep 0.1
    done
    return 1
}

RIFFLE_CONFIG="$WORK/riffle.toml"
cat > "$RIFFLE_CONFIG" <<EOF
listen = "127.0.0.1:$RIFFLE_PORT"
admin_listen = "127.0.0.1:$RIFFLE_ADMIN"
data_dir = "$WORK/data"

[auth]
anonymous = true

[streams]
status_delay = "100ms"
shard_limit = 20000
max_shards_per_stream = 10000

[storage]
fsync = "always"

[control_plane]
enabled = false

[limits]
write_bytes_per_second = "off"
write_records_per_second = "off"
read_bytes_per_second = "off"
get_records_per_second = "off"
get_shard_iterator_per_second = "off"
subscriber_bytes_per_second = "off"
EOF

PID=""
start_target() { # name -> sets PID and PORT
    local name="$1"
    PID=""
    case "$name" in
        riffle)
            PORT=$RIFFLE_PORT
            rm -rf "$WORK/data"
            "$BROKER" --config "$RIFFLE_CONFIG" > "$LOGS/riffle.out" 2> "$LOGS/riffle.err" &
            PID=$! ;;
        kinesalite)
            PORT=$KINESALITE_PORT
            [ -n "${INSTALL_ERR[npm]:-}" ] && return 1
            LD_PRELOAD="$PEERS/loopback_bind.so" node "$PEERS/node/node_modules/kinesalite/cli.js" \
                --port "$PORT" --createStreamMs 100 --deleteStreamMs 100 --updateStreamMs 100 \
                --shardLimit 20000 > "$LOGS/kinesalite.log" 2>&1 &
            PID=$! ;;
        kinesis-mock)
            PORT=$KMOCK_PORT
            [ -n "${INSTALL_ERR[npm]:-}" ] && return 1
            LD_PRELOAD="$PEERS/loopback_bind.so" \
            KINESIS_MOCK_CERT_PATH="$PEERS/node/node_modules/kinesis-local/server.json" \
            KINESIS_MOCK_PLAIN_PORT="$PORT" KINESIS_MOCK_TLS_PORT="$KMOCK_TLS" SHARD_LIMIT=20000 \
            CREATE_STREAM_DURATION=100ms DELETE_STREAM_DURATION=100ms LOG_LEVEL=WARN \
                node "$PEERS/node/node_modules/kinesis-local/main.js" > "$LOGS/kinesis-mock.log" 2>&1 &
            PID=$! ;;
        moto)
            PORT=$MOTO_PORT
            [ -n "${INSTALL_ERR[moto]:-}" ] && return 1
            LD_PRELOAD="$PEERS/loopback_bind.so" "$PEERS/venv/bin/moto_server" -H 127.0.0.1 -p "$PORT" \
                > "$LOGS/moto.log" 2>&1 &
            PID=$! ;;
        ferrokinesis)
            PORT=$FERRO_PORT
            [ -n "${INSTALL_ERR[ferrokinesis]:-}" ] && return 1
            LD_PRELOAD="$PEERS/loopback_bind.so" "$PEERS/cargo/bin/ferrokinesis" --port "$PORT" \
                --shard-limit 20000 --create-stream-ms 100 --delete-stream-ms 100 \
                --update-stream-ms 100 > "$LOGS/ferrokinesis.log" 2>&1 &
            PID=$! ;;
        *) log "unknown target $name"; return 1 ;;
    esac
    STARTED+=("$PID")
    if ! wait_port "$PORT" 60 "$PID"; then
        log "$name did not answer on 127.0.0.1:$PORT"
        return 1
    fi
    loopback_only "$PID" || { stop_pid "$PID"; return 1; }
}

run_target() {
    local t="$1" E
    local busy cpu waited
    waited="$(wait_quiet)"
    busy="$(busy_processes)"; cpu="$(cpu_busy)"
    log "=== $t (compiler processes now: $busy, CPU busy ${cpu}%, load $(cut -d' ' -f1-3 /proc/loadavg))"
    emit_json "{\"workload\": \"meta\", \"target\": \"before-$t\", \"status\": \"ok\", \"compiler_processes\": $busy, \"cpu_busy_percent\": $cpu, \"waited_s\": $waited, \"finished_unix_s\": $(date +%s)}"
    if ! start_target "$t"; then
        local why="did not start"
        case "$t" in
            kinesalite|kinesis-mock) why="${INSTALL_ERR[npm]:-did not start (see $t.log)}" ;;
            moto|ferrokinesis) why="${INSTALL_ERR[$t]:-did not start (see $t.log)}" ;;
        esac
        for w in put-records put-record-latency read propagation subscribe burst scale; do
            emit_failed "$w" "$t" "$why"
        done
        [ -n "$PID" ] && stop_pid "$PID"
        return 0
    fi
    E=(--endpoint "http://127.0.0.1:$PORT")
    local size conc
    for size in 100 10240; do
        for conc in 1 4 16; do
            load "$t" put-records "${E[@]}" --record-size "$size" --concurrency "$conc" \
                --shards 4 --duration-secs "$PUT_SECS"
        done
    done
    if [ "$t" = riffle ]; then
        load "$t" put-records "${E[@]}" --http2 --record-size 100 --concurrency 16 \
            --shards 4 --duration-secs "$PUT_SECS"
    fi
    load "$t" put-record-latency "${E[@]}" --rate 200 --duration-secs "$LAT_SECS"
    load "$t" read "${E[@]}" --records "$READ_RECORDS" --fill-secs "$FILL_SECS" \
        --duration-secs "$READ_SECS"
    load "$t" propagation "${E[@]}" --poll-mode interval --poll-interval-ms 200 \
        --rate 50 --duration-secs "$PROP_SECS"
    load "$t" propagation "${E[@]}" --poll-mode max-rate --max-calls-per-sec 5 \
        --rate 50 --duration-secs "$PROP_SECS"
    load "$t" subscribe "${E[@]}" --rate 100 --duration-secs "$PROP_SECS"
    load "$t" burst "${E[@]}" --consumer-rate 1000 --burst-factor 3 \
        --normal-factor "$BURST_NORMAL" --burst-secs "$BURST_SECS" --recovery-secs "$BURST_RECOVERY"
    # Memory is measured on a freshly started process, so earlier workloads' allocations
    # (and, for Riffle, their data) do not count.
    stop_pid "$PID"
    if start_target "$t"; then
        load "$t" scale "${E[@]}" --broker-pid "$PID" --big-shards 1000 --streams 100 \
            --duration-secs "$SCALE_SECS"
    else
        emit_failed scale "$t" "did not restart for the scale run"
        return 0
    fi
    if [ "$t" = riffle ]; then
        # Start-up with a large data directory: fill, stop, start again, time to first answer.
        # riffle-load stops the restarted broker itself before it exits.
        load "$t" startup "${E[@]}" --broker-pid "$PID" --data-dir "$WORK/data" \
            --fill-gb "$STARTUP_GB" --fill-secs 600 -- "$BROKER" --config "$RIFFLE_CONFIG"
    fi
    stop_pid "$PID"
    rm -rf "$WORK/data"
    return 0
}

IFS=',' read -r -a TARGET_LIST <<< "$TARGETS"
for t in "${TARGET_LIST[@]}"; do
    run_target "$t"
done

BUSY_AT_END="$(busy_processes)"
emit_json "{\"workload\": \"meta\", \"target\": \"end\", \"status\": \"ok\", \"compiler_processes_at_end\": $BUSY_AT_END, \"loadavg_at_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"finished_unix_s\": $(date +%s)}"

cp "$JSONL" "$RESULTS/latest.jsonl"
python3 "$BENCH/support/report.py" "$RESULTS/latest.jsonl" > "$RESULTS/latest.md"
cat "$RESULTS/latest.md"
log "results: $RESULTS/latest.md and $RESULTS/latest.jsonl (logs in $LOGS)"
