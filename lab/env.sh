# hostreach lab: names and paths shared by lab/*.sh, scripts/*, and tests/src/lib.rs.
# Source it:  . lab/env.sh   (bash or sh). It only sets variables.
#
# The "lab host" is the network namespace hostreach-lab. Its own dockerd (with its
# own containerd) answers on DOCKER_HOST below. A second namespace, hostreach-remote,
# is joined to it by a veth pair and plays "the LAN": it runs the lab's DNS server.
# Nothing in the lab has a route off the machine.

LAB_NETNS=hostreach-lab
LAB_NETNS_PATH=/run/netns/hostreach-lab
LAB_REMOTE_NETNS=hostreach-remote
LAB_REMOTE_NETNS_PATH=/run/netns/hostreach-remote
LAB_RUN_DIR=/run/hostreach-lab            # sockets, pidfiles, logs (removed by down.sh)
LAB_DATA_DIR=/var/lib/hostreach-lab       # docker data-root: image cache (kept unless --purge)
LAB_DOCKER_SOCK=/run/hostreach-lab/docker.sock
LAB_DOCKERD_PIDFILE=/run/hostreach-lab/dockerd.pid
LAB_DOCKERD_LOG=/run/hostreach-lab/dockerd.log
LAB_CONTAINERD_SOCK=/run/hostreach-lab/containerd/containerd.sock
LAB_CONTAINERD_PIDFILE=/run/hostreach-lab/containerd.pid
LAB_DNSMASQ_PIDFILE=/run/hostreach-lab/dnsmasq.pid
LAB_IMAGE=hostreach-lab/busybox:latest
LAB_LAN_IF=hrlan0                         # in hostreach-lab
LAB_LAN_IP=198.18.0.1                     # the lab host's "LAN address"
LAB_REMOTE_IF=hrlan1                      # in hostreach-remote
LAB_REMOTE_IP=198.18.0.2                  # the "remote" host, also the DNS server
LAB_DNS=198.18.0.2
LAB_BRIDGE_GW=172.17.0.1                  # docker0 in the lab
DOCKER_HOST=unix:///run/hostreach-lab/docker.sock

export LAB_NETNS LAB_NETNS_PATH LAB_REMOTE_NETNS LAB_REMOTE_NETNS_PATH LAB_RUN_DIR LAB_DATA_DIR \
  LAB_DOCKER_SOCK LAB_DOCKERD_PIDFILE LAB_DOCKERD_LOG LAB_CONTAINERD_SOCK LAB_CONTAINERD_PIDFILE \
  LAB_DNSMASQ_PIDFILE LAB_IMAGE LAB_LAN_IF LAB_LAN_IP LAB_REMOTE_IF LAB_REMOTE_IP LAB_DNS \
  LAB_BRIDGE_GW DOCKER_HOST
