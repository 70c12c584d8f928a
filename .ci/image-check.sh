# Sourced by .ci/run (uses its free_port and http_status): the image check, counted as one test. It builds the real
# docker/Dockerfile with podman on stand-in base images (../shared/containers/make-base-images.sh, beside the
# repository) and runs the image on the host network against the LM Studio simulator. Every step has a time limit;
# the containers, the simulator and the files made here are removed however it ends (image_cleanup, from the trap).

image_dir=""
image_containers=()
image_pids=()

image_cleanup() {
  local c pid
  for c in "${image_containers[@]}"; do timeout 30 podman rm -f -t 2 "$c" >/dev/null 2>&1; done
  image_containers=()
  for pid in "${image_pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.5
  for pid in "${image_pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  image_pids=()
  [ -n "$image_dir" ] && rm -rf "$image_dir"
  image_dir=""
}

image_fail() {
  echo "image check failed: $1" >&2
  local c
  for c in "${image_containers[@]}"; do echo "--- podman logs $c" >&2; timeout 10 podman logs --tail 20 "$c" >&2 2>&1; done
  local log
  for log in "$image_dir"/*.log; do [ -f "$log" ] && { echo "--- $(basename "$log")" >&2; tail -n 20 "$log" >&2; }; done
  return 1
}

# models_list port: the ids /v1/models lists, one a line
models_list() { curl -s --max-time 5 "http://127.0.0.1:$1/v1/models" | grep -o '"id": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'; }

# wait_for seconds command...: runs the command every 0.5 s until it succeeds or the time is up
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

image_check() {  # [dockerfile, default docker/Dockerfile]
  local dockerfile=${1:-docker/Dockerfile}
  image_dir=$(mktemp -d)
  local d=$image_dir repo shared
  repo=$(pwd)
  shared="$(dirname "$repo")/shared"
  [ -x "$shared/containers/make-base-images.sh" ] || [ -f "$shared/containers/make-base-images.sh" ] \
    || { image_fail "no $shared/containers/make-base-images.sh beside the repository"; return 1; }
  timeout 600 bash "$shared/containers/make-base-images.sh" >"$d/base-images.log" 2>&1 \
    || { image_fail "make-base-images.sh"; return 1; }
  local tag="lmsproxy-ci:$$"
  timeout 600 podman build --format docker --network host --build-arg TARGETARCH=amd64 -f "$dockerfile" -t "$tag" . >"$d/build.log" 2>&1 \
    || { image_fail "podman build -f $dockerfile"; return 1; }
  local size
  size=$(podman image inspect "$tag" --format '{{.Size}}')

  local sim=tests/LmStudioSimulator/bin/Debug/net10.0/LmStudioSimulator.dll
  [ -f "$sim" ] || timeout 180 dotnet build tests/LmStudioSimulator -c Debug >"$d/simulator-build.log" 2>&1 \
    || { image_fail "dotnet build tests/LmStudioSimulator"; return 1; }
  local sim_port port
  sim_port=$(free_port) && port=$(free_port) && [ "$sim_port" != "$port" ] || { image_fail "no free port"; return 1; }
  dotnet "$sim" --port "$sim_port" --load-time-ms 300 >"$d/simulator.log" 2>&1 &
  image_pids+=($!); disown $!
  [ "$(http_status "http://127.0.0.1:$sim_port/v1/models" 60)" = 200 ] || { image_fail "the simulator did not start"; return 1; }

  # The settings file mounted over the image's own, and settings from the environment.
  cp appsettings.json "$d/appsettings.json"
  chmod 644 "$d/appsettings.json"
  local name="lmsproxy-ci-$$"
  image_containers+=("$name")
  timeout 60 podman run -d --name "$name" --network host \
    -e ASPNETCORE_HTTP_PORTS="$port" -e LmsProxy__Upstream="http://127.0.0.1:$sim_port" -e LmsProxy__Loader=rest \
    -e LmsProxy__Aliases__from-environment=qwen/qwen3-8b \
    -v "$d/appsettings.json:/app/appsettings.json:ro" "$tag" >"$d/run.log" 2>&1 \
    || { image_fail "podman run"; return 1; }

  [ "$(http_status "http://127.0.0.1:$port/healthz" 60)" = 200 ] || { image_fail "GET /healthz did not answer 200"; return 1; }
  local chat
  chat=$(curl -s -o "$d/chat.json" -D "$d/chat.headers" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' \
    -d '{"model":"qwen/qwen3-8b","messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:$port/v1/chat/completions")
  [ "$chat" = 200 ] || { image_fail "the cold chat request answered $chat: $(head -c 300 "$d/chat.json")"; return 1; }
  grep -qi '^x-lmsproxy-hold-ms:' "$d/chat.headers" || { image_fail "the cold chat request was not held for a load"; return 1; }

  # The main process runs as the image's app user (1654), not root.
  local uid
  uid=$(timeout 30 podman exec "$name" cat /proc/1/status | awk '/^Uid:/ { print $2 }')
  [ "$uid" = 1654 ] || { image_fail "the process runs as uid '$uid', not 1654"; return 1; }

  # The image's HEALTHCHECK, as the engine runs it.
  timeout 60 podman healthcheck run "$name" >"$d/healthcheck.log" 2>&1 || { image_fail "podman healthcheck run"; return 1; }

  # Settings from the environment, and an edit of the mounted file while it runs (rewritten in place: a bind mount
  # of a single file follows its inode; the image's polling watcher sees the change within a few seconds).
  models_list "$port" | grep -qx 'from-environment' || { image_fail "the alias set in the environment is not in /v1/models"; return 1; }
  sed 's/"Aliases": {}/"Aliases": { "from-the-file": "qwen\/qwen3-8b" }/' appsettings.json >"$d/edited.json"
  grep -q 'from-the-file' "$d/edited.json" || { image_fail "could not make the edited settings file"; return 1; }
  cat "$d/edited.json" >"$d/appsettings.json"
  wait_for 30 bash -c "curl -s --max-time 5 http://127.0.0.1:$port/v1/models | grep -q '\"from-the-file\"'" \
    || { image_fail "the alias added to the mounted appsettings.json did not appear in /v1/models within 30 s"; return 1; }

  # The state volume: a file the proxy keeps in /data must outlive a restart (only once the proxy writes one).
  local state="no state file in /data (nothing writes LmsProxy:State:Path yet)"
  if timeout 30 podman exec "$name" test -f /data/lmsproxy.db; then
    timeout 60 podman restart -t 10 "$name" >/dev/null 2>&1 || { image_fail "podman restart"; return 1; }
    [ "$(http_status "http://127.0.0.1:$port/healthz" 60)" = 200 ] || { image_fail "no /healthz after the restart"; return 1; }
    timeout 30 podman exec "$name" test -f /data/lmsproxy.db || { image_fail "/data/lmsproxy.db did not survive a restart"; return 1; }
    state="/data/lmsproxy.db survived a restart"
  fi
  echo "image check: passed ($dockerfile built with podman, $((size / 1000000)) MB; /healthz, cold chat 200, uid 1654, HEALTHCHECK, environment and live settings file; $state)"
  timeout 60 podman rmi -f "$tag" >/dev/null 2>&1
}
