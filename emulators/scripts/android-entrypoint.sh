#!/usr/bin/env bash
# Entrypoint of guiagent's android-worker image: docker-android's emulator and guiagent's farm worker
# in one container, living and dying together.
#
#  1. start the emulator the way docker-android's own run.sh does (its supervisord configs), minus the
#     socat forwarder that opens the emulator's adb ports (5554/5555) on the container's network
#     address: the worker beside the emulator talks to it over 127.0.0.1, so nothing else on the
#     compose network can `adb connect` to it. ANDROID_ADB_FORWARD=true keeps upstream's forwarder;
#     if the configs are not where this release of docker-android keeps them, upstream's run.sh runs;
#  2. wait until docker-android reports the device READY (ANDROID_BOOT_TIMEOUT seconds);
#  3. save the emulator snapshot ANDROID_SNAPSHOT_NAME once (the worker's reset loads it: seconds,
#     where a cold boot takes minutes); empty skips it;
#  4. run the worker: guiagent-worker --kind android --device-config FILE (+ GUIAGENT_WORKER_ARGS), FILE
#     being ANDROID_DEVICE_CONFIG or an AndroidEnvConfig written for this emulator (serial, adb server
#     port, gRPC endpoint, snapshot), as this image's unprivileged user (docker-android's androidusr),
#     unable to gain privileges;
#  5. watch: when the worker exits, the emulator dies, or SIGTERM arrives, stop everything and exit, so
#     compose's restart policy brings back a fresh pair.
set -euo pipefail

log() { printf '[guiagent-android] %s\n' "$*" >&2; }

: "${APP_PATH:?APP_PATH is not set: is the base image budtmo/docker-android?}"
: "${WORK_PATH:=/home/androidusr}"
# docker-android reports usage analytics unless told not to; never send them from the farm.
export USER_BEHAVIOR_ANALYTICS=false
serial=${ANDROID_SERIAL:-emulator-5554}
adb_port=${ANDROID_ADB_SERVER_PORT:-5037}
boot_timeout=${ANDROID_BOOT_TIMEOUT:-900}
snapshot=${ANDROID_SNAPSHOT_NAME-guiagent_ready}
status_file="$WORK_PATH/device_status"
poll=${GUIAGENT_POLL_INTERVAL:-5}
export ANDROID_ADB_SERVER_PORT=$adb_port

pids=()
stop_all() {
  trap - TERM INT
  log "stopping"
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap 'stop_all; exit 143' TERM INT

rm -f "$status_file"
conf="$APP_PATH/mixins/configs/process"
if [[ "${ANDROID_ADB_FORWARD:-false}" != true && -f "$conf/supervisord-base.conf" \
      && -f "$conf/supervisord-screen.conf" ]]; then
  if [[ "${EMULATOR_HEADLESS:-false}" != true ]]; then
    /usr/bin/supervisord --configuration "$conf/supervisord-screen.conf" &
    pids+=($!)
  fi
  /usr/bin/supervisord --configuration "$conf/supervisord-base.conf" &
  pids+=($!)
else
  "$APP_PATH/mixins/scripts/run.sh" &
  pids+=($!)
fi

alive() { local pid; for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done; }

log "waiting up to ${boot_timeout}s for the emulator to boot"
deadline=$((SECONDS + boot_timeout))
until [[ -f "$status_file" && "$(<"$status_file")" == READY ]]; do
  if ! alive; then log "docker-android exited before the device was ready"; stop_all; exit 1; fi
  if ((SECONDS >= deadline)); then
    log "the device is not READY after ${boot_timeout}s (status: $(cat "$status_file" 2>/dev/null || echo none))"
    stop_all
    exit 1
  fi
  sleep "$poll" & wait $!
done
log "device $serial is ready"

if [[ -n "$snapshot" ]]; then
  if timeout 60 adb -P "$adb_port" -s "$serial" emu avd snapshot list 2>/dev/null | grep -qw -- "$snapshot"; then
    log "snapshot $snapshot exists"
  elif timeout 300 adb -P "$adb_port" -s "$serial" emu avd snapshot save "$snapshot"; then
    log "saved snapshot $snapshot"
  else
    log "could not save snapshot $snapshot: the worker's reset will fail until it exists"
  fi
fi

# The worker's device: ANDROID_DEVICE_CONFIG (an AndroidEnvConfig YAML file mounted into the container),
# else one written here for this emulator: its serial, the adb server, the gRPC port given to the
# emulator with -grpc, the snapshot saved above.
device_config=${ANDROID_DEVICE_CONFIG:-}
if [[ -z "$device_config" ]]; then
  device_config="${TMPDIR:-/tmp}/guiagent-device-$$.yaml"
  grpc=null
  if [[ " ${EMULATOR_ADDITIONAL_ARGS:-} " =~ \ -grpc\ +([0-9]+)\  ]]; then
    grpc="\"127.0.0.1:${BASH_REMATCH[1]}\""
  fi
  snapshot_yaml=null
  [[ -n "$snapshot" ]] && snapshot_yaml="\"$snapshot\""
  cat > "$device_config" <<YAML
serial: "$serial"
adb_server_port: $adb_port
grpc_endpoint: $grpc
snapshot_name: $snapshot_yaml
reset_method: adb_emu
YAML
fi

# androidusr may sudo (docker-android needs it to take /dev/kvm); the worker and its children may not.
nonewprivs=()
command -v setpriv >/dev/null && nonewprivs=(setpriv --no-new-privs --)
"${nonewprivs[@]}" guiagent-worker --kind android --device-config "$device_config" "$@" &
worker=$!
pids+=("$worker")

while true; do
  if ! kill -0 "$worker" 2>/dev/null; then
    rc=0
    wait "$worker" || rc=$?
    log "the worker exited ($rc)"
    stop_all
    exit "$rc"
  fi
  if ! alive || ! pgrep -f qemu-system >/dev/null; then
    log "the emulator is gone"
    stop_all
    exit 1
  fi
  sleep "$poll" & wait $!
done
