#!/usr/bin/env bash
# CI: build the container image on a Debian base made here and smoke-test it (after `make install`).
#  1. mmdebstrap: a Debian bookworm rootfs with python3, python3-venv, python3-pip (no registry pull needed)
#  2. buildah: that rootfs as the base image, then infra/Containerfile with BASE pointing at it (make image)
#  3. inside the image (buildah run, host network): `tiering --version`, and `tiering archive run` against a
#     PostgreSQL on 127.0.0.1 (embedded, from the project venv) seeded with demo jobs; checked from the host.
# Skips (exit 0, with a message) only when buildah or mmdebstrap cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
say() { echo "image-smoke: $*"; }

if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah mmdebstrap \
         || { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive \
              apt-get install -y -qq --no-install-recommends buildah mmdebstrap; }; }; then
    say "SKIPPED: buildah and mmdebstrap cannot be installed here (apt-get failed); the image was not tested"
    exit 0
  fi
fi
export BUILDAH_ISOLATION=chroot   # the OCI runtime cannot run in this sandbox; chroot isolation can
VENV_PY=.venv/bin/python
WORK=$(mktemp -d /tmp/tiering-image.XXXXXX)
BASE_IMAGE=localhost/tiering-base:bookworm
IMAGE=localhost/tiering:ci
ctr=""
serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" >/dev/null 2>&1 || true
  [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
  [ -d "$WORK/pg/pg" ] && "$VENV_PY" .ci/pg_loopback.py stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

t=$SECONDS
if [ -n "${REUSE_BASE:-}" ] && buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  say "reusing $BASE_IMAGE (REUSE_BASE is set)"
else
  say "debian base (mmdebstrap)"
  mmdebstrap --quiet --variant=apt --include=python3,python3-venv,python3-pip,passwd,ca-certificates \
    bookworm "$WORK/rootfs.tar"
  base=$(buildah from scratch)
  buildah add --quiet "$base" "$WORK/rootfs.tar" / >/dev/null
  buildah commit --quiet --rm "$base" "$BASE_IMAGE" >/dev/null
  rm -f "$WORK/rootfs.tar"
  say "base built in $((SECONDS - t)) s"
fi

say "image (make image, BASE=$BASE_IMAGE)"
t=$SECONDS
make --no-print-directory image BASE="$BASE_IMAGE" IMAGE="$IMAGE" CONTAINER_TOOL=buildah
say "image built in $((SECONDS - t)) s; size: $(buildah images --format '{{.Size}}' "$IMAGE")"

say "checks"
config=$(buildah inspect --type image --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}' "$IMAGE")
[ "$config" = "10001:10001 [tiering]" ] || { say "FAILED: image user/entrypoint is '$config'"; exit 1; }
ctr=$(buildah from "$IMAGE")
version=$(buildah run --network host "$ctr" -- tiering --version)
expected="tiering $("$VENV_PY" -c 'import tiering; print(tiering.__version__)')"
[ "$version" = "$expected" ] || { say "FAILED: tiering --version said '$version', expected '$expected'"; exit 1; }
uid=$(buildah run --network host "$ctr" -- id -u)
[ "$uid" = "10001" ] || { say "FAILED: runs as uid $uid, not 10001"; exit 1; }

DB_URL=$("$VENV_PY" .ci/pg_loopback.py start "$WORK/pg")
TIERING_DATABASE_URL="$DB_URL" DATABASE_URL="$DB_URL" TIERING_HOME="$WORK/home" \
  .venv/bin/tiering demo seed --count 2000 --days 60
buildah config --env DATABASE_URL="$DB_URL" --env TIERING_DATABASE_URL="$DB_URL" \
  --env TIERING_STORE_URL=file:///var/lib/tiering/objects "$ctr"
buildah run --network host "$ctr" -- tiering archive run --reason automatic --initiated-by ci-image \
  --format json --metrics-file /var/lib/tiering/tiering.prom > "$WORK/run.json"
"$VENV_PY" - "$DB_URL" "$WORK/run.json" <<'PY'
import json, sys
import psycopg
url, path = sys.argv[1], sys.argv[2]
result = json.load(open(path))
with psycopg.connect(url) as conn:
    indexed = conn.execute("SELECT count(*) FROM tiering_job_index").fetchone()[0]
    committed = conn.execute("SELECT count(*) FROM tiering_manifest WHERE state = 'committed'").fetchone()[0]
    who = conn.execute("SELECT initiated_by FROM tiering_operations WHERE operation = 'archive'").fetchone()[0]
with psycopg.connect(url) as conn:
    staged = conn.execute("SELECT count(*) FROM hammerwork_jobs_archive").fetchone()[0]
# the demo's history (staged by "Hammerwork") is flushed together with what this run archived
assert result["jobs_archived"] > 0 and result["flush"]["jobs_flushed"] >= result["jobs_archived"], result
assert result["flush"]["jobs_flushed"] == indexed and staged == 0, (result["flush"], indexed, staged)
assert committed > 0 and who == "ci-image", (committed, who)
print(f"image-smoke: archive run inside the image: {indexed} jobs in {committed} committed objects")
PY
objects=$(buildah run --network host "$ctr" -- sh -c 'find /var/lib/tiering/objects -name "*.parquet" | wc -l')
prom=$(buildah run --network host "$ctr" -- cat /var/lib/tiering/tiering.prom)
grep -q 'tiering_last_success_timestamp_seconds{operation="archive"}' <<<"$prom" \
  || { say "FAILED: no metrics textfile written inside the image"; exit 1; }
[ "$objects" -gt 0 ] || { say "FAILED: no Parquet objects inside the image"; exit 1; }
say "archive run in the image wrote $objects Parquet objects and its metrics textfile"

# `tiering serve` from the image: API behind a token, dashboard, /healthz, /metrics alone on a second port
ports=$("$VENV_PY" -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
read -r port mport <<<"$ports"
buildah config --env TIERING_API_TOKEN=ci-image-token "$ctr"
buildah run --network host "$ctr" -- sh -c "echo \$\$ > /var/lib/tiering/serve.pid; exec tiering serve \
  --host 127.0.0.1 --port $port --metrics-port $mport --no-scheduler --log-level warning" > "$WORK/serve.log" 2>&1 &
runner=$!
for _ in $(seq 120); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$runner" 2>/dev/null || { cat "$WORK/serve.log"; say "FAILED: tiering serve exited"; exit 1; }
  sleep 0.5
done
serve_pid=$(buildah run "$ctr" -- cat /var/lib/tiering/serve.pid)
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code "http://127.0.0.1:$port/healthz")" = 200 ] || { cat "$WORK/serve.log"; say "FAILED: /healthz"; exit 1; }
[ "$(code "http://127.0.0.1:$port/api/archive/stats")" = 401 ] || { say "FAILED: the API answered without a token"; exit 1; }
[ "$(code -H 'Authorization: Bearer ci-image-token' "http://127.0.0.1:$port/api/archive/stats")" = 200 ] \
  || { say "FAILED: /api/archive/stats with the token"; exit 1; }
# Each body goes to a file before grep reads it: `curl | grep -q` under pipefail fails with curl's exit 23 when grep
# stops at its first match before a body larger than the pipe buffer is written.
curl -fsS -o "$WORK/dashboard.html" "http://127.0.0.1:$port/archive" && grep -qi "<html" "$WORK/dashboard.html" \
  || { say "FAILED: the dashboard is not served"; exit 1; }
curl -fsS -o "$WORK/metrics.txt" "http://127.0.0.1:$mport/metrics" && grep -q "^tiering_database_up 1" "$WORK/metrics.txt" \
  || { say "FAILED: /metrics on the metrics port"; exit 1; }
kill "$serve_pid"
wait "$runner" || true
serve_pid=""
say "tiering serve in the image: /healthz, token-protected API, dashboard and /metrics on port $mport answer"
say "OK in $((SECONDS - started)) s; image $IMAGE: $(buildah images --format '{{.Size}}' "$IMAGE")"
