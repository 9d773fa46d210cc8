#!/usr/bin/env bash
# Entrypoint of guiagent's trainer image: `guiagent "$@"` as the unprivileged user guiagent.
#
# Started as root only to make the mounted volumes writable for that user (a named volume that vLLM's
# container, running as root, mounted first belongs to root), then drops to guiagent with no way to gain
# privileges back. Started as any other user (`user:` in compose), it just runs guiagent.
set -euo pipefail

user=${GUIAGENT_USER:-guiagent}
if [[ "$(id -u)" == 0 ]]; then
  uid=$(id -u "$user")
  for dir in /checkpoints /workspace/runs /data/trajectories "/home/$user/.cache"; do
    if [[ -d "$dir" && "$(stat -c %u "$dir")" != "$uid" ]]; then
      # An NFS export with root_squash refuses: say so and let the user's own permissions decide.
      chown "$user:" "$dir" 2>/dev/null || printf '[guiagent-trainer] cannot chown %s\n' "$dir" >&2
    fi
  done
  exec setpriv --reuid="$user" --regid="$user" --init-groups --no-new-privs -- \
    env HOME="/home/$user" USER="$user" guiagent "$@"
fi
exec guiagent "$@"
