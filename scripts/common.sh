# Shared by lab.sh and test.sh: install what lab needs from the distribution's
# packages (no other download), and find a Rust toolchain that can build it.

need_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing ${missing[*]} (apt-get)"
    apt_update || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Like need_packages, for what lab can do without (Tab completion): a machine
# that cannot install them still gets lab, and is told what it lacks.
want_packages() {
  need_packages "$@" || echo "Could not install $* (optional): lab works without it." >&2
  return 0
}

# apt-get update, said before it starts, and given LAB_APT_TIMEOUT seconds
# (default 120): without a network it would otherwise wait for minutes, silent.
apt_update() {
  local limit=${LAB_APT_TIMEOUT:-120}
  echo "Updating the package lists (apt-get update; at most ${limit} s)..."
  if ! timeout "$limit" apt-get update -qq; then
    echo "apt-get update did not finish in ${limit} s: check the network (or the mirror in /etc/apt/sources.list), then run this again." >&2
    return 1
  fi
}

# The packages lab itself uses: busybox-static for the default root filesystem,
# util-linux for unshare/nsenter/setpriv (the tests use setpriv), bubblewrap for the
# seccomp filter of step 8 typed by hand (bwrap --seccomp), iptables for the
# NAT of step 5, iproute2 and procps for the `ip`, `sysctl` and `pgrep` that
# `lab script 5` and the lessons use, libcap2-bin for the getcap and setcap of
# step 9's shifted copy typed by hand, a C toolchain to link Rust programs.
system_packages() {
  need_packages busybox-static util-linux iptables iproute2 procps bubblewrap libcap2-bin gcc libc6-dev ca-certificates
  want_packages bash-completion
}

# Rust 1.75 or newer (Cargo.toml's rust-version). Looks in PATH, in rustup's place in
# the home of the user who ran sudo, and in root's; else installs the distribution's
# cargo: `cargo` on Ubuntu 24.04 (1.75), `cargo-web` on Debian 12 (plain `cargo`
# there is 1.63, too old).
find_cargo() {
  local home candidates=()
  command -v cargo >/dev/null && candidates+=("$(command -v cargo)")
  if [ -n "${SUDO_USER:-}" ]; then
    home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    candidates+=("$home/.cargo/bin/cargo")
  fi
  candidates+=("/root/.cargo/bin/cargo" "/usr/bin/cargo")
  for c in "${candidates[@]}"; do
    if [ -x "$c" ] && cargo_recent "$c"; then CARGO=$c; return 0; fi
  done
  if apt-cache show cargo-web >/dev/null 2>&1; then
    need_packages cargo-web
  else
    need_packages cargo
  fi
  if cargo_recent /usr/bin/cargo; then CARGO=/usr/bin/cargo; return 0; fi
  echo "No Rust 1.75 or newer found, and the distribution's is older." >&2
  echo "Install Rust with rustup (https://rustup.rs), then run this again." >&2
  return 1
}

cargo_recent() {
  local v
  v=$("$1" --version 2>/dev/null | awk '{print $2}') || return 1
  [ -n "$v" ] && [ "$(printf '%s\n' 1.75.0 "$v" | sort -V | head -1)" = 1.75.0 ]
}

# Run a command with the toolchain of whoever owns it (rustup keeps it in a
# home), CARGO naming its cargo.
with_cargo_env() {
  local bin
  bin=$(dirname "$CARGO")
  if [ "$bin" != /usr/bin ]; then
    local home
    home=$(dirname "$(dirname "$bin")")
    PATH="$bin:$PATH" CARGO_HOME="${CARGO_HOME:-$home/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}" CARGO="$CARGO" "$@"
  else
    CARGO="$CARGO" "$@"
  fi
}

run_cargo() {
  with_cargo_env "$CARGO" "$@"
}

# lab's AppArmor profile (scripts/apparmor/lab), installed as /etc/apparmor.d/lab and
# loaded only where AppArmor keeps users from making user namespaces
# (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 24.04's default): there,
# rootless `lab step 9` needs it. It lets /usr/local/bin/lab make them; the
# restriction stays on for every other program. Elsewhere this does nothing. Run
# from lab's repository (lab.sh is).
apparmor_profile() {
  local restrict=/proc/sys/kernel/apparmor_restrict_unprivileged_userns
  local profile=/etc/apparmor.d/lab
  [ "$(cat "$restrict" 2>/dev/null)" = 1 ] || return 0
  if ! command -v apparmor_parser >/dev/null; then
    echo "AppArmor keeps users from making user namespaces here ($restrict is 1), and apparmor_parser, which would load lab's profile, is not installed: lab step 9 needs sudo (apt-get install apparmor, then run this again)." >&2
    return 0
  fi
  if cmp -s scripts/apparmor/lab "$profile" &&
    grep -q '^lab (' /sys/kernel/security/apparmor/profiles 2>/dev/null; then
    return 0 # installed and loaded already
  fi
  echo "AppArmor keeps users from making user namespaces here ($restrict is 1, Ubuntu's default)."
  echo "Installing lab's AppArmor profile as $profile and loading it (apparmor_parser -r $profile): it lets /usr/local/bin/lab make them, so that lab step 9 runs without sudo; the restriction stays on for every other program."
  install -m 0644 scripts/apparmor/lab "$profile"
  if ! apparmor_parser -r "$profile"; then
    echo "apparmor_parser could not load $profile: lab step 9 needs sudo here until it does (lab doctor says more)." >&2
  fi
  return 0
}
