#!/usr/bin/env bash
# Installs what the hostreach lab and its tests need on a fresh Debian machine.
# Idempotent: packages already present are left alone. Needs root (apt-get).
set -euo pipefail

PKGS=(
  docker.io          # dockerd 20.10 + containerd + runc: the lab's own engine
  iptables nftables  # real firewall rules inside the lab namespace
  busybox-static     # the FROM-scratch lab image (sh, nc, wget, ping, ip)
  socat              # host-side listeners in the lab, and the relay benchmark peer
  iproute2 util-linux
  gcc                # the C build of mimalloc, the binary's allocator (and the linker Rust needs)
  psmisc procps
  tshark tcpdump     # reading pcapng written by `hostreach trace`
  hyperfine          # benchmarks (BENCHMARKS.md)
  iperf3 jq          # scripts/bench-relay: bulk TCP throughput, reading its JSON
  redis-server       # a real service bound to 127.0.0.1 for LOOPBACK_ONLY_BIND tests
  dnsmasq-base       # the lab's own DNS server (no service, started by lab/up.sh)
  docker-compose     # compose lint lab tests: a real compose project, and `docker-compose config` as an oracle
  ufw                # enabled only inside throwaway namespaces over private copies of /etc/ufw (firewall lab tests, capture-fixtures); never on the machine
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "lab/install.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # tshark asks whether non-root users may capture: answer no, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  # Packages must not start services in the machine's own namespace: docker.io's
  # init script would create docker0 and iptables rules there, redis-server would
  # listen on the machine. policy-rc.d exit 101 = "no service starts" (Debian policy).
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  [ "$rc" = 0 ] || exit "$rc"

  # Belt and braces: a redis-server the package started anyway (root namespace only;
  # redis servers the lab or its tests run live in the lab namespace and stay).
  root_ns=$(readlink /proc/1/ns/net)
  for pid in $(pgrep -x redis-server || true); do
    if [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$root_ns" ]; then kill "$pid" 2>/dev/null || true; fi
  done
fi

# tracefs: the kernel's drop reasons (skb:kfree_skb) are read from it.
if [ ! -d /sys/kernel/tracing/events ] && ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "lab/install.sh: could not mount tracefs" >&2
fi
