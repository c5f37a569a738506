#!/usr/bin/env bash
# Brings up the hostreach lab: a Docker host of its own inside the network namespace
# hostreach-lab, with no route off the machine. Idempotent, and fast when already up.
#
#   hostreach-lab     "the lab host": lo, hrlan0 198.18.0.1/24, docker0 172.17.0.1/16,
#                     its own dockerd + containerd, its own iptables/nft rules and sysctls
#   hostreach-remote  "a LAN neighbour": hrlan1 198.18.0.2/24, dnsmasq (the lab's only DNS)
#
# Nothing here changes the machine's own network namespace (no iptables, no links,
# no sysctls). Usage: bash lab/up.sh     Tear down: bash lab/down.sh [--purge]
set -euo pipefail

LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=env.sh
. "$LAB_SRC/env.sh"

die() { echo "lab/up.sh: $*" >&2; exit 1; }
note() { echo "lab/up.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || die "must run as root (it creates network namespaces and runs dockerd)"

t0=$(date +%s%N)

bash "$LAB_SRC/install.sh"

# One up/down at a time (tests, demo and people may all call up.sh). Every daemon
# started below gets `9>&-`: a daemon that inherited fd 9 would hold this lock forever.
mkdir -p /run/lock
exec 9>/run/lock/hostreach-lab.lock
flock -w 120 9 || die "another lab/up.sh or lab/down.sh holds /run/lock/hostreach-lab.lock"

in_lab() { nsenter --net="$LAB_NETNS_PATH" -- "$@"; }
in_remote() { nsenter --net="$LAB_REMOTE_NETNS_PATH" -- "$@"; }

# pid_alive PIDFILE COMM: the pidfile names a live process called COMM. (PID 1 on these
# machines is slow to reap orphans: a killed daemon can linger as a zombie with its comm.)
pid_alive() {
  local f=$1 comm=$2 p
  [ -s "$f" ] || return 1
  p=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$comm" ] \
    && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null  # zombies are dead
}
docker_ok() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

# ---------------------------------------------------------------- fast path
if [ -e "$LAB_RUN_DIR/ready" ] \
   && pid_alive "$LAB_DNSMASQ_PIDFILE" dnsmasq \
   && pid_alive "$LAB_CONTAINERD_PIDFILE" containerd \
   && pid_alive "$LAB_DOCKERD_PIDFILE" dockerd \
   && docker image inspect "$LAB_IMAGE" >/dev/null 2>&1; then
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "hostreach lab is up (already; ${ms} ms): netns $LAB_NETNS, DOCKER_HOST=$DOCKER_HOST, LAN $LAB_LAN_IP, DNS $LAB_DNS, image $LAB_IMAGE"
  exit 0
fi
rm -f "$LAB_RUN_DIR/ready"

mkdir -p "$LAB_RUN_DIR" "$LAB_DATA_DIR" /run/netns

# tracefs (drop reasons). install.sh tries too; say so if it is still missing.
if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || note "warning: tracefs not mounted at /sys/kernel/tracing"
fi

# The machine's own firewall, before the lab starts: tests check the lab never changes it.
# (iptables-save and nft list are read-only; never run anything else in the root namespace.)
if [ ! -e "$LAB_RUN_DIR/root-iptables.before" ]; then
  { iptables-save 2>/dev/null || true; } | { grep -v '^#' || true; } | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/' > "$LAB_RUN_DIR/root-iptables.before"
  { nft list ruleset 2>/dev/null || true; } > "$LAB_RUN_DIR/root-nft.before"
fi

# ---------------------------------------------------------------- namespaces
ensure_netns() {
  local name=$1 path=/run/netns/$1
  # /run is not a tmpfs on these machines: a netns file can outlive its namespace.
  if [ -e "$path" ] && ! nsenter --net="$path" true 2>/dev/null; then
    umount "$path" 2>/dev/null || true
    rm -f "$path"
  fi
  if [ ! -e "$path" ]; then
    ip netns add "$name"
    [ "$name" != "$LAB_NETNS" ] || fresh=1
  fi
  nsenter --net="$path" ip link set lo up
}
fresh=0
ensure_netns "$LAB_NETNS"
ensure_netns "$LAB_REMOTE_NETNS"

# The veth pair is created inside the lab namespace: it never exists in the root one.
if ! in_lab ip link show "$LAB_LAN_IF" >/dev/null 2>&1; then
  in_remote ip link del "$LAB_REMOTE_IF" 2>/dev/null || true
  in_lab ip link add "$LAB_LAN_IF" type veth peer name "$LAB_REMOTE_IF" netns "$LAB_REMOTE_NETNS"
fi
in_lab ip addr replace "$LAB_LAN_IP/24" dev "$LAB_LAN_IF"
in_lab ip link set "$LAB_LAN_IF" up
in_remote ip addr replace "$LAB_REMOTE_IP/24" dev "$LAB_REMOTE_IF"
in_remote ip link set "$LAB_REMOTE_IF" up
# No default route anywhere in the lab: the only routes are the connected ones.
while in_lab ip route del default 2>/dev/null; do :; done
while in_remote ip route del default 2>/dev/null; do :; done

# ---------------------------------------------------------------- DNS (dnsmasq in hostreach-remote)
# Answers db.lab.test and host.lab.test (A; NOERROR/no data for AAAA and other types),
# NXDOMAIN for every other name at once (--local=/#/: every domain is "local", so no
# upstream is ever asked; --no-resolv: none is known anyway).
if ! pid_alive "$LAB_DNSMASQ_PIDFILE" dnsmasq; then
  rm -f "$LAB_DNSMASQ_PIDFILE"
  in_remote dnsmasq \
    --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --listen-address="$LAB_REMOTE_IP" --bind-interfaces --port=53 \
    --local=/#/ \
    --host-record=db.lab.test,"$LAB_LAN_IP" \
    --host-record=host.lab.test,"$LAB_BRIDGE_GW" \
    --user=root --pid-file="$LAB_DNSMASQ_PIDFILE" \
    --log-queries --log-facility="$LAB_RUN_DIR/dnsmasq.log" 9>&- \
    || die "dnsmasq failed to start (see $LAB_RUN_DIR/dnsmasq.log)"
fi
answer=$(in_lab timeout 5 busybox nslookup db.lab.test "$LAB_DNS" 2>&1 || true)
case "$answer" in
  *"$LAB_LAN_IP"*) ;;
  *) die "lab DNS at $LAB_DNS does not answer db.lab.test: $answer" ;;
esac

# ---------------------------------------------------------------- containerd (the lab's own)
# dockerd would reuse a system containerd at /run/containerd/containerd.sock if one
# existed; the lab always runs its own instead, on its own socket and namespace.
mkdir -p "$LAB_RUN_DIR/containerd" "$LAB_DATA_DIR/containerd"
cat > "$LAB_RUN_DIR/containerd.toml" <<EOF
version = 2
root = "$LAB_DATA_DIR/containerd"
state = "$LAB_RUN_DIR/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$LAB_CONTAINERD_SOCK"
[debug]
  address = ""
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$LAB_DATA_DIR/opt"
EOF
if ! pid_alive "$LAB_CONTAINERD_PIDFILE" containerd; then
  rm -f "$LAB_CONTAINERD_PIDFILE" "$LAB_CONTAINERD_SOCK"
  # setsid: own session, no terminal; not a group leader here, so setsid and nsenter
  # both exec in place and $! is containerd's own pid.
  setsid nsenter --net="$LAB_NETNS_PATH" -- containerd --config "$LAB_RUN_DIR/containerd.toml" \
    </dev/null >>"$LAB_RUN_DIR/containerd.log" 2>&1 9>&- &
  echo $! > "$LAB_CONTAINERD_PIDFILE"
  for _ in $(seq 1 100); do
    ctr --address "$LAB_CONTAINERD_SOCK" version >/dev/null 2>&1 && break
    pid_alive "$LAB_CONTAINERD_PIDFILE" containerd || { tail -n 20 "$LAB_RUN_DIR/containerd.log" >&2; die "containerd exited"; }
    sleep 0.1
  done
  ctr --address "$LAB_CONTAINERD_SOCK" version >/dev/null 2>&1 \
    || { tail -n 20 "$LAB_RUN_DIR/containerd.log" >&2; die "containerd did not answer on $LAB_CONTAINERD_SOCK within 10 s"; }
fi

# ---------------------------------------------------------------- dockerd
cat > "$LAB_RUN_DIR/daemon.json" <<EOF
{
  "dns": ["$LAB_DNS"],
  "deprecated-key-path": "$LAB_DATA_DIR/key.json",
  "log-level": "info"
}
EOF
if ! pid_alive "$LAB_DOCKERD_PIDFILE" dockerd; then
  rm -f "$LAB_DOCKERD_PIDFILE" "$LAB_DOCKER_SOCK"
  note "starting dockerd in netns $LAB_NETNS (log: $LAB_DOCKERD_LOG)"
  # nsenter --net only: `ip netns exec` would remount /sys and dockerd then fails
  # with "Devices cgroup isn't mounted".
  setsid nsenter --net="$LAB_NETNS_PATH" -- dockerd \
    --data-root "$LAB_DATA_DIR/docker" \
    --exec-root "$LAB_RUN_DIR/exec" \
    --pidfile "$LAB_DOCKERD_PIDFILE" \
    -H "unix://$LAB_DOCKER_SOCK" \
    --config-file "$LAB_RUN_DIR/daemon.json" \
    --containerd "$LAB_CONTAINERD_SOCK" \
    --containerd-namespace hostreach-lab \
    --containerd-plugins-namespace hostreach-lab-plugins \
    </dev/null >>"$LAB_DOCKERD_LOG" 2>&1 9>&- &
  dockerd_pid=$!
  deadline=$(( $(date +%s) + 60 ))
  until docker_ok; do
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
      echo "---- tail of $LAB_DOCKERD_LOG" >&2; tail -n 30 "$LAB_DOCKERD_LOG" >&2
      die "dockerd exited during startup"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "---- tail of $LAB_DOCKERD_LOG" >&2; tail -n 30 "$LAB_DOCKERD_LOG" >&2
      die "dockerd did not answer on $DOCKER_HOST within 60 s"
    fi
    sleep 0.2
  done
  [ -s "$LAB_DOCKERD_PIDFILE" ] || echo "$dockerd_pid" > "$LAB_DOCKERD_PIDFILE"
elif ! docker_ok; then
  echo "---- tail of $LAB_DOCKERD_LOG" >&2; tail -n 30 "$LAB_DOCKERD_LOG" >&2
  die "dockerd (pid $(cat "$LAB_DOCKERD_PIDFILE")) runs but does not answer on $DOCKER_HOST; try lab/down.sh && lab/up.sh"
fi
# A lab that starts from nothing has no containers: drop any a dead daemon left in the
# data-root (down.sh removes them when the daemon still answers).
if [ "$fresh" = 1 ]; then
  stale=$(docker ps -aq)
  # shellcheck disable=SC2086
  [ -z "$stale" ] || docker rm -f $stale >/dev/null
fi
in_lab ip -br addr show docker0 2>/dev/null | grep -q "$LAB_BRIDGE_GW/" \
  || die "docker0 in $LAB_NETNS does not have $LAB_BRIDGE_GW (another bridge config?)"

# ---------------------------------------------------------------- image
if ! docker image inspect "$LAB_IMAGE" >/dev/null 2>&1; then
  note "building $LAB_IMAGE from busybox-static"
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp /bin/busybox "$ctx/busybox"
  cp "$LAB_SRC/image/Dockerfile" "$ctx/Dockerfile"
  # The legacy builder: no buildx plugin here, and BuildKit would want a registry for its frontend.
  DOCKER_BUILDKIT=0 docker build -q -t "$LAB_IMAGE" "$ctx" >/dev/null 2>"$LAB_RUN_DIR/build.log" \
    || { cat "$LAB_RUN_DIR/build.log" >&2; die "could not build $LAB_IMAGE"; }
fi

touch "$LAB_RUN_DIR/ready"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
ver=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
echo "hostreach lab is up (${ms} ms): netns $LAB_NETNS, DOCKER_HOST=$DOCKER_HOST (docker $ver), LAN $LAB_LAN_IP, DNS $LAB_DNS, image $LAB_IMAGE"
