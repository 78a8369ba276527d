#!/bin/bash
# Install every Debian 12 package sealtrail needs to build, run, test and
# benchmark. Idempotent: a second run only checks. Run as root.
set -euo pipefail

packages=(
	# build: BPF (CO-RE) and the userspace programs
	clang llvm make gcc pkg-config libbpf-dev bpftool libelf-dev zlib1g-dev
	libssl-dev libsqlite3-dev libzstd-dev
	# fuzzing under ASan/UBSan
	libclang-rt-14-dev
	# tests: a real sshd and clients, users, sudo/su, namespaces, asciicast
	openssh-server openssh-client sudo passwd login iproute2 procps python3 tmux
	asciinema rsync
	# benchmarks: peers to compare against, and the physical limits
	# (openssl speed and dgst, zstd -b) that bench-seal measures beside them
	tlog openssl zstd
)

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh: run as root (it installs packages)" >&2
	exit 1
fi
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "setup.sh: all ${#packages[@]} packages present"
