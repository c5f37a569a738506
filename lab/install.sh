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
  psmisc procps
  tshark tcpdump     # reading pcapng written by `hostreach trace`
  hyperfine          # benchmarks (BENCHMARKS.md)
  redis-server       # a real service bound to 127.0.0.1 for LOOPBACK_ONLY_BIND tests
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
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's redis-server package starts a server in the root namespace when
# installed under systemd; no systemd here, but make sure none is left running.
pkill -x redis-server 2>/dev/null || true

# tracefs: the kernel's drop reasons (skb:kfree_skb) are read from it.
if [ ! -d /sys/kernel/tracing/events ] && ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "lab/install.sh: could not mount tracefs" >&2
fi
