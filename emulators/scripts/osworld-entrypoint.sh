#!/usr/bin/env bash
# Entrypoint of guiagent's osworld-worker image: the OSWorld VM (happysixd/osworld-docker, QEMU/KVM
# booting the qcow2 mounted at /System.qcow2) and guiagent's farm worker in one container, living and
# dying together. Run under tini (the image's ENTRYPOINT), as root: QEMU's tap networking needs it.
#
#  1. start the image's own entry script (/run/entry.sh, OSWORLD_VM_ENTRY): it lays a copy-on-write
#     overlay over the read-only /System.qcow2 inside this container and boots the VM;
#  2. wait until the VM's OSWorld server answers GET /screenshot (OSWORLD_BOOT_TIMEOUT seconds), trying
#     GUIAGENT_OSWORLD_URL if set, else the VM's address on QEMU's bridge (20.20.20.21, the image's
#     tap network) and 127.0.0.1 (its user-mode network); the address found is exported to the worker
#     as GUIAGENT_OSWORLD_URL and written to /run/guiagent/osworld_url for the health check;
#  3. run the worker as the unprivileged user guiagent, with no way to gain privileges:
#     guiagent-worker --kind osworld (+ GUIAGENT_WORKER_ARGS and this script's arguments);
#  4. watch: when the worker or the VM exits, or SIGTERM arrives, stop both and exit, so compose's
#     restart policy brings back a fresh pair (with a fresh overlay).
set -euo pipefail

log() { printf '[guiagent-osworld] %s\n' "$*" >&2; }

boot_timeout=${OSWORLD_BOOT_TIMEOUT:-1800}
vm_entry=${OSWORLD_VM_ENTRY:-/run/entry.sh}
py=${GUIAGENT_PYTHON:-/opt/guiagent/bin/python}
uid=${GUIAGENT_UID:-1300}
gid=${GUIAGENT_GID:-1301}
poll=${GUIAGENT_POLL_INTERVAL:-10}

disk=${OSWORLD_DISK:-/System.qcow2}
[[ -s "$disk" ]] || { log "$disk is missing or empty: mount the OSWorld qcow2 there (compose: OSWORLD_QCOW2)"; exit 64; }

pids=()
stop_all() {
  trap - TERM INT
  log "stopping (the VM gets up to the stop grace period to shut down)"
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap 'stop_all; exit 143' TERM INT

"$vm_entry" &
vm=$!
pids+=("$vm")

probe() {  # prints the first base URL whose /screenshot answers 200
  "$py" - "$@" <<'PY'
import sys, urllib.request
for base in sys.argv[1:]:
    try:
        with urllib.request.urlopen(base + "/screenshot", timeout=5) as r:
            if r.status == 200:
                print(base)
                break
    except Exception:
        pass
PY
}

if [[ -n "${GUIAGENT_OSWORLD_URL:-}" ]]; then
  candidates=("${GUIAGENT_OSWORLD_URL%/}")
else
  candidates=("http://${OSWORLD_VM_IP:-20.20.20.21}:5000" "http://127.0.0.1:5000")
fi
log "waiting up to ${boot_timeout}s for the VM's server (${candidates[*]})"
deadline=$((SECONDS + boot_timeout))
url=
until url=$(probe "${candidates[@]}") && [[ -n "$url" ]]; do
  if ! kill -0 "$vm" 2>/dev/null; then log "the VM's entry script exited before the VM was ready"; stop_all; exit 1; fi
  if ((SECONDS >= deadline)); then log "the VM is not ready after ${boot_timeout}s"; stop_all; exit 1; fi
  sleep "$poll" & wait $!
done
log "VM server at $url"
export GUIAGENT_OSWORLD_URL=$url

# The VM's QEMU monitor (HMP): the worker pauses the guest while the model thinks and resets it by snapshot
# through it. GUIAGENT_OSWORLD_MONITOR names it; else OSWORLD_MONITOR_PROBE (default 127.0.0.1:7100, where
# the qemux-based image's entry script puts its telnet monitor) is used when a QEMU monitor answers there.
if [[ -z "${GUIAGENT_OSWORLD_MONITOR:-}" ]]; then
  monitor=$("$py" - "${OSWORLD_MONITOR_PROBE:-127.0.0.1:7100}" <<'PY'
import socket, sys
host, _, port = sys.argv[1].rpartition(":")
try:
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.settimeout(5)
        banner = b""
        while b"(qemu)" not in banner and len(banner) < 4096:  # telnet negotiation bytes may come first
            chunk = s.recv(4096)
            if not chunk:
                break
            banner += chunk
        if b"QEMU" in banner:
            print(sys.argv[1])
except (OSError, ValueError):
    pass
PY
  ) || monitor=
  if [[ -n "$monitor" ]]; then
    export GUIAGENT_OSWORLD_MONITOR=$monitor
    log "QEMU monitor at $monitor"
  else
    log "no QEMU monitor found: the worker will neither pause the VM nor reset it by snapshot"
  fi
fi
run_dir=${GUIAGENT_RUN_DIR:-/run/guiagent}
mkdir -p "$run_dir"
printf '%s\n' "$url" > "$run_dir/osworld_url"

HOME=/home/guiagent USER=guiagent GUIAGENT_PYTHON="$py" \
  setpriv --reuid="$uid" --regid="$gid" --init-groups --no-new-privs -- \
  guiagent-worker --kind osworld "$@" &
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
  if ! kill -0 "$vm" 2>/dev/null; then
    log "the VM is gone"
    stop_all
    exit 1
  fi
  sleep "$poll" & wait $!
done
