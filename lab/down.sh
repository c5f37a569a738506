#!/usr/bin/env bash
# Tears the hostreach lab down: every lab container and network, dockerd, its
# containerd, dnsmasq, every process still living in the lab's namespaces (listeners,
# the demo's redis), both namespaces, and /run/hostreach-lab.
# Keeps /var/lib/hostreach-lab (the image cache) unless --purge.
# Touches nothing in the machine's own network namespace.
set -uo pipefail

LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=env.sh
. "$LAB_SRC/env.sh"

purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: lab/down.sh [--purge]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "lab/down.sh: must run as root" >&2; exit 1; }

mkdir -p /run/lock
exec 9>/run/lock/hostreach-lab.lock
flock -w 120 9 || { echo "lab/down.sh: another lab/up.sh or lab/down.sh holds the lock" >&2; exit 1; }

rm -f "$LAB_RUN_DIR/ready"

pid_of() {  # pid_of PIDFILE COMM -> pid if that pidfile names a live COMM
  local p
  [ -s "$1" ] || return 1
  p=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] \
    && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null && echo "$p"
}
stop_pid() {  # stop_pid PID SECONDS: TERM, wait, then KILL
  local p=$1 n=$(( $2 * 10 ))
  kill -TERM "$p" 2>/dev/null || return 0
  alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
  while [ "$n" -gt 0 ] && alive "$p"; do sleep 0.1; n=$((n - 1)); done
  if alive "$p"; then
    echo "lab/down.sh: pid $p ($(cat /proc/$p/comm 2>/dev/null)) ignored SIGTERM, killing" >&2
    kill -KILL "$p" 2>/dev/null
    sleep 0.2
  fi
}

# 1. Containers and networks, through the lab's own daemon.
if pid_of "$LAB_DOCKERD_PIDFILE" dockerd >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
  ids=$(docker ps -aq 2>/dev/null)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || timeout 60 docker rm -f $ids >/dev/null 2>&1 || echo "lab/down.sh: could not remove every container" >&2
  timeout 30 docker network prune -f >/dev/null 2>&1 || true
fi

# 2. dockerd, then its containerd, then dnsmasq.
if p=$(pid_of "$LAB_DOCKERD_PIDFILE" dockerd); then stop_pid "$p" 30; fi
# Containers left behind by a daemon that died uncleanly (runc state of the lab's namespace).
runc_root=$LAB_RUN_DIR/exec/runtime-runc/hostreach-lab
if [ -d "$runc_root" ]; then
  for c in $(runc --root "$runc_root" list -q 2>/dev/null); do
    runc --root "$runc_root" delete --force "$c" >/dev/null 2>&1 || true
  done
fi
if p=$(pid_of "$LAB_CONTAINERD_PIDFILE" containerd); then stop_pid "$p" 15; fi
if p=$(pid_of "$LAB_DNSMASQ_PIDFILE" dnsmasq); then stop_pid "$p" 5; fi

# 3. Whatever still lives in the lab's namespaces (socat listeners, the demo's redis,
#    leftover shims), found by namespace identity, one pid at a time.
for ns in "$LAB_NETNS_PATH" "$LAB_REMOTE_NETNS_PATH"; do
  [ -e "$ns" ] || continue
  id=$(stat -L -c 'net:[%i]' "$ns" 2>/dev/null) || continue
  victims=()
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$$" ] && continue
    [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$id" ] && victims+=("$p")
  done
  for p in "${victims[@]}"; do kill -TERM "$p" 2>/dev/null; done
  if ((${#victims[@]})); then
    sleep 0.3
    for p in "${victims[@]}"; do [ -d "/proc/$p" ] && kill -KILL "$p" 2>/dev/null; done
    for p in "${victims[@]}"; do  # gone (or a zombie) within 2 s
      for _ in $(seq 1 20); do
        { [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; } || break
        sleep 0.1
      done
    done
  fi
done

# 4. Mounts left under the lab's directories (only after an unclean daemon exit).
for dir in "$LAB_RUN_DIR" "$LAB_DATA_DIR"; do
  awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
done

# 5. The namespaces (deleting hostreach-lab also deletes docker0, veths, its rules).
for ns in "$LAB_NETNS" "$LAB_REMOTE_NETNS"; do
  if [ -e "/run/netns/$ns" ]; then
    ip netns delete "$ns" 2>/dev/null || { umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
  fi
done

rm -rf "$LAB_RUN_DIR"
if [ "$purge" = 1 ]; then
  rm -rf "$LAB_DATA_DIR"
  echo "hostreach lab is down (purged $LAB_DATA_DIR)"
else
  echo "hostreach lab is down (image cache kept in $LAB_DATA_DIR; --purge removes it)"
fi
