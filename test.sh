#!/bin/bash
# The whole test suite:   sudo ./test.sh
# As root, the privileged tests build real containers (they keep the host as it
# was). They are #[ignore = "needs root: ..."]: without root the summary counts
# them as ignored (never as passed); as root this script runs them with
# --include-ignored, and with CI=true it does so without root too, where they fail.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" = 0 ]; then
  . scripts/common.sh
  system_packages
  need_packages attr # getfattr, to read overlayfs's xattrs in the image tests
  # Real images for step 7's tests: umoci makes and unpacks them (lab's tree must
  # equal umoci's), skopeo turns them into oci-archive and docker-archive files.
  need_packages umoci skopeo
  # Real runtimes that lab grades (tests/it/peers.rs): Docker (dockerd and
  # containerd), Podman, runc, systemd-nspawn; bwrap comes with the system's.
  need_packages docker.io podman runc systemd-container
  # The tutor's terminal tests drive lab on a pseudo-terminal (tests/it/tutor.rs).
  need_packages tmux
  # The cgroup v2 test boots Debian's kernel under qemu (tests/it/cgroup2_vm.rs).
  need_packages qemu-system-x86 cpio kmod # kmod: depmod, for the VM's module list
  # The classroom VM: its Vagrantfile is validated, its provisioning run on a fresh
  # Debian made by mmdebstrap (tests/it/provision.rs); lab's AppArmor profile is
  # parsed by Debian 13's apparmor_parser in another (tests/it/apparmor.rs).
  need_packages vagrant mmdebstrap
  # Its cloud-init file (Multipass) is checked by `cloud-init schema`. Installed
  # here for that alone: switched off at boot, so that it never configures this
  # machine.
  if ! command -v cloud-init >/dev/null; then
    need_packages cloud-init
    touch /etc/cloud/cloud-init.disabled
  fi
  # The lessons and slides are rendered in headless Chromium (tests/it/render.rs);
  # Marp, for the slides, comes from the npm registry.
  # graphviz: the diagrams (scripts/diagrams.sh); fonts-liberation: the deck is
  # laid out for Arial's widths (Liberation Sans on Linux): with DejaVu Sans
  # alone, wider, three slides run past their edges.
  need_packages chromium graphviz fonts-liberation
  command -v npm >/dev/null || need_packages npm
  scripts/cgroup2-vm.sh --fetch target/tmp/vm
  find_cargo
else
  echo "Not root: the privileged tests will be ignored. Run every test with: sudo ./test.sh" >&2
  . scripts/common.sh
  CARGO=$(command -v cargo)
fi
for tool in fmt clippy; do
  if ! run_cargo "$tool" --version >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then echo "cargo $tool is missing and CI=true: install it (rustup component add rustfmt clippy)" >&2; exit 1; fi
    echo "cargo $tool is not installed: that check is skipped (rustup component add rustfmt clippy)" >&2
    continue
  fi
  case $tool in
    fmt) run_cargo fmt --all -- --check ;;
    clippy) run_cargo clippy --locked --all-targets --quiet -- -D warnings ;;
  esac
done
if [ "$(id -u)" = 0 ]; then
  # mdBook, for the lessons' render test (near the end), takes minutes to build
  # from crates.io: it builds in the background while the first tests wait on
  # the kernel; the render test's build script waits for it (a lock).
  mkdir -p target
  with_cargo_env scripts/build-lessons.sh --tools >target/mdbook-build.log 2>&1 &
fi
if [ "$(id -u)" = 0 ] || [ "${CI:-}" = true ]; then
  run_cargo test --locked --all-targets -- --include-ignored
else
  run_cargo test --locked --all-targets
  echo "The privileged tests were ignored (not root): run every test with sudo ./test.sh" >&2
fi
