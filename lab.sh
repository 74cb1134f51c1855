#!/bin/bash
# Set lab up on a Debian or Ubuntu machine and run it:   sudo ./lab.sh step 1
# The first run installs what lab needs (distribution packages only), builds it and
# installs it as /usr/local/bin/lab (with its AppArmor profile where AppArmor
# restricts user namespaces); later runs rebuild only what changed.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then
  echo "lab builds containers, which needs root: run it with sudo (sudo $0 ${*:-step 1})" >&2
  exit 1
fi
. scripts/common.sh
system_packages
find_cargo
run_cargo build --release --locked --quiet
install -m 0755 target/release/lab /usr/local/bin/lab
# Where AppArmor keeps users from making user namespaces (Ubuntu 24.04), a profile
# that lets lab make them, for lab step 9 without sudo (nothing elsewhere).
apparmor_profile
# Tab completion in bash (bash-completion loads it the first time lab is typed,
# in a shell that loaded bash-completion: a user's, or any login shell; root's
# ~/.bashrc on Debian does not load it, and the file works alone when sourced).
completion=/usr/local/share/bash-completion/completions/lab
first=false; [ -e "$completion" ] || first=true
mkdir -p "$(dirname "$completion")"
/usr/local/bin/lab completions bash > "$completion"
if $first; then
  echo "Tab completion for lab: in a new shell (bash -l), or in this one: source $completion" >&2
fi
if [ $# -eq 0 ]; then set -- steps; fi
exec /usr/local/bin/lab "$@"
