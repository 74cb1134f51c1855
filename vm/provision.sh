#!/bin/bash
# Provision the classroom VM (the Vagrantfile, vm/cloud-init.yaml for Multipass,
# or Lima: see docs/classroom-vm.md): what lab needs from the
# distribution's packages (busybox-static, iptables, iproute2, a C toolchain, Rust),
# lab built and installed as /usr/local/bin/lab (on Ubuntu 24.04 with its AppArmor
# profile, for `lab step 9` without sudo), the default root filesystem built,
# and `lab doctor` run, so that `sudo lab step 1` works in the VM.
#
#   sudo vm/provision.sh [SOURCE]     SOURCE: lab's repository [default: /vagrant]
#
# It builds in a copy (/opt/lab), not in the shared folder, which may be slow or
# read-only. Running it again updates the copy and rebuilds. Tested on a fresh
# Debian 12 root filesystem by tests/it/provision.rs.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "run it as root: sudo $0 $*" >&2; exit 1; fi
src=${1:-/vagrant}
[ -f "$src/Cargo.toml" ] || { echo "$src is not lab's repository (no Cargo.toml)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
# On a cloud image (Multipass, Lima), cloud-init may still be installing packages.
if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null || true; fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends rsync >/dev/null
mkdir -p /opt/lab
rsync -a --delete --exclude /target --exclude /.git "$src"/ /opt/lab/
cd /opt/lab
# lab.sh installs the packages, builds lab and installs it; then it runs lab.
./lab.sh rootfs
lab doctor
echo "The classroom VM is ready: vagrant ssh, then sudo lab step 1 (lab lesson intro to start reading)."
