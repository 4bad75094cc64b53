#!/usr/bin/env bash
# The remote cache's benchmark (docs/src/recipes/remote.md): starts a moto S3 server on a free port,
# computes the baseline into a local cache (or reuses one), pushes it, then three times fetches the fully cached
# baseline into an empty local cache, and re-runs it from the local cache with and without the remote, printing each
# wall time and the requests the server logged.
#
#   bash bench/remote.sh [MOTO_SERVER] [CACHE] [REPORTS]
#
# MOTO_SERVER defaults to `moto_server` on PATH (`pip install 'moto[server]'`); CACHE and REPORTS to a cache and
# reports directory that already hold a baseline run (default `cache` and `reports`; the baseline is run if not).
set -euo pipefail
cd "$(dirname "$0")/.."
moto=${1:-$(command -v moto_server || true)}
cache=${2:-cache}
reports=${3:-reports}
[ -x "$moto" ] || { echo "error: no moto_server; pip install 'moto[server]' or pass its path" >&2; exit 1; }
cargo build --release -q
P=target/release/pipeline
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$moto" -H 127.0.0.1 -p "$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server; rm -rf "$work"' EXIT
ep=http://127.0.0.1:$port
until curl -s -o /dev/null "$ep/"; do sleep 0.2; done
export AWS_ENDPOINT_URL=$ep AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
curl -s -X PUT "$ep/bench" >/dev/null
url=s3://bench/team
$P run experiments/baseline.toml --cache-dir "$cache" --reports-dir "$reports" >/dev/null
$P cache push --cache-dir "$cache" --reports-dir "$reports" --experiment baseline --remote "$url"
requests() { grep -c '"[A-Z]* /bench' "$work/server.log" || true; }
seconds() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$@"; }
for i in 1 2 3; do
    before=$(requests)
    s=$(date +%s.%N)
    $P run experiments/baseline.toml --cache-dir "$work/empty$i" --reports-dir "$work/reports" --remote "$url" >/dev/null 2>&1
    e=$(date +%s.%N)
    after=$(requests)
    methods=$(grep '"[A-Z]* /bench' "$work/server.log" | tail -n $((after - before)) | awk '{print $6}' | tr -d '"' | sort | uniq -c | xargs)
    echo "round $i: empty local cache, from the remote: $(seconds "$s" "$e") s, $((after - before)) requests ($methods)"
    s=$(date +%s.%N)
    $P run experiments/baseline.toml --cache-dir "$cache" --reports-dir "$work/reports" >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "round $i: local cache re-run, no remote: $(seconds "$s" "$e") s"
    before=$(requests)
    s=$(date +%s.%N)
    $P run experiments/baseline.toml --cache-dir "$work/empty$i" --reports-dir "$work/reports" --remote "$url" >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "round $i: local cache re-run, remote set: $(seconds "$s" "$e") s, $(($(requests) - before)) requests"
done
