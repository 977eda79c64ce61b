#!/usr/bin/env bash
# Installs, from Debian's packages, what building and testing need and a fresh machine
# lacks: clang and libbpf headers (make generate, make verify), nftables, iproute2, ping
# and ethtool (the network-namespace tests; ethtool turns GRO on), iperf3 (the
# throughput benchmark), containerd, runc and the CNI plugins (the images are imported
# and run in a real containerd), and mounts bpffs.
# A no-op when everything is there.
set -euo pipefail

packages=(make git gcc clang llvm libbpf-dev linux-libc-dev nftables iproute2 iputils-ping ethtool procps iperf3 containerd runc containernetworking-plugins conntrack)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if ((EUID != 0)); then
		echo "missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
		exit 1
	fi
	echo "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The node agents pin their BPF maps and links on bpffs.
if ((EUID == 0)) && ! mount | grep -q ' /sys/fs/bpf type bpf'; then
	mkdir -p /sys/fs/bpf
	mount -t bpf bpf /sys/fs/bpf
	# Shared, as systemd mounts it: the agent's pod mounts it with HostToContainer.
	mount --make-shared /sys/fs/bpf
fi
