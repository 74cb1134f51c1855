#!/bin/bash
# Run `lab verify` of steps 6 to 9 on a pure cgroup v2 Linux: a small VM under
# qemu (software emulation), booted from Debian's kernel and an initramfs made
# here with busybox, lab and the libraries ldd names for it.
#
#   scripts/cgroup2-vm.sh LAB_BINARY WORKDIR
#
# Prints the guest's serial console. Each verify ends in a line
# `LAB-RESULT step=N rc=RC`, its JSON between LAB-JSON and LAB-END.
# Needs: qemu-system-x86, busybox-static, cpio (test.sh installs them), and the
# kernel package, which `scripts/cgroup2-vm.sh --fetch WORKDIR` downloads with apt.
set -euo pipefail

fetch_kernel() {
  local work=$1
  mkdir -p "$work/kernel"
  if ls "$work"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then return 0; fi
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -z "$pkg" ]; then apt-get update -qq; pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); fi
  [ -n "$pkg" ] || { echo "no linux-image package found (apt-cache depends linux-image-amd64)" >&2; return 1; }
  (cd "$work" && apt-get download -qq "$pkg" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$pkg"; })
  dpkg -x "$work"/linux-image-*.deb "$work/kernel"
  rm -f "$work"/linux-image-*.deb
}

if [ "${1:-}" = --fetch ]; then fetch_kernel "$2"; exit; fi

lab=$1
work=$2
fetch_kernel "$work"
kernel=$(ls "$work"/kernel/boot/vmlinuz-* | head -1)
moddir=$(ls -d "$work"/kernel/lib/modules/* | head -1)
# The package leaves modules.dep to its installation: make it here.
[ -f "$moddir/modules.dep" ] || depmod -b "$work/kernel" "$(basename "$moddir")"

root=$work/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,newroot,modules,etc,var}
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
cp "$lab" "$root/bin/lab"
# lab is linked dynamically: the libraries and the loader go in at the same paths.
for lib in $(ldd "$lab" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# Kernel modules: overlay (step 7); bridge, veth and what iptables-nft needs for
# NAT (step 5). Each after the modules it depends on (modules.dep), decompressed,
# listed in the order insmod must load them (crc32c_generic: the softdep of libcrc32c,
# which nf_tables needs).
declare -A seen=()
add_module() {
  local line path dep
  line=$(grep -E "(^|/)$1\.ko(\.xz|\.zst)?:" "$moddir/modules.dep" | head -1)
  [ -n "$line" ] || { echo "module $1 is not in the kernel package" >&2; exit 1; }
  path=${line%%:*}
  [ -z "${seen[$path]:-}" ] || return 0
  seen[$path]=1
  for dep in ${line#*:}; do add_module "$(basename "$dep" | sed -E 's/\.ko(\.xz|\.zst)?$//')"; done
  local name; name=$(basename "$path" | sed -E 's/\.ko(\.xz|\.zst)?$//')
  case $path in
    *.xz) xz -dc "$moddir/$path" > "$root/modules/$name.ko" ;;
    *.zst) zstd -dqc "$moddir/$path" > "$root/modules/$name.ko" ;;
    *) cp "$moddir/$path" "$root/modules/$name.ko" ;;
  esac
  echo "$name.ko" >> "$root/modules/order"
}
for m in overlay bridge veth crc32c_generic nf_tables nft_compat nft_chain_nat nf_nat nf_conntrack \
         xt_MASQUERADE xt_nat xt_addrtype xt_conntrack xt_tcpudp; do
  add_module "$m"
done
# iptables (the nft one, as on Debian and Ubuntu), its extensions and libraries.
multi=$(readlink -f "$(command -v iptables)")
cp "$multi" "$root/usr/sbin/"
for name in iptables iptables-save; do ln -sf "$(basename "$multi")" "$root/usr/sbin/$name"; done
xtdir=$(dirname "$(find /usr/lib -name 'libxt_MASQUERADE.so' | head -1)")
mkdir -p "$root$xtdir"
cp "$xtdir"/*.so "$root$xtdir/"
for lib in $(ldd "$multi" "$xtdir"/*.so 2>/dev/null | grep -o '/[^ ]*' | grep -v ':$' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cat > "$root/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
if [ "$1" != stage2 ]; then
  # pivot_root refuses the initramfs (rootfs) as the old root: move to a tmpfs.
  mount -t tmpfs -o size=450m tmpfs /newroot
  for d in bin sbin usr lib lib64 etc var modules init; do [ -e /$d ] && cp -a /$d /newroot/; done
  mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
  exec switch_root /newroot /init stage2
fi
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# As systemd mounts it (nsdelegate): from inside a cgroup namespace, the files
# of its root cgroup are read-only (lab verify 6 says the escape of step 6 is
# closed already here).
mount -t cgroup2 -o nsdelegate none /sys/fs/cgroup
for m in $(cat /modules/order); do insmod /modules/$m || echo "LAB-MODULE $m did not load"; done
echo "LAB-CGROUP2 $(cat /sys/fs/cgroup/cgroup.controllers)"
lab doctor > /tmp/out 2>&1
echo "LAB-DOCTOR rc=$?"; sed 's/^/LAB-DOCTOR /' /tmp/out
for n in 6 7 8 9; do
  LAB_TIMINGS=1 lab verify $n --json --publish 8080:80 > /tmp/out 2> /tmp/err
  rc=$?
  echo "LAB-JSON step=$n"; cat /tmp/out; echo "LAB-STDERR"; cat /tmp/err; echo "LAB-END"
  echo "LAB-RESULT step=$n rc=$rc"
done
# The container's first process is born in its cgroup (clone3 with
# CLONE_INTO_CGROUP), at step 6 and from the host at step 9: LAB_TIMINGS says so.
for n in 6 9; do
  LAB_TIMINGS=1 lab step $n --no-checks -- cat /proc/self/cgroup > /tmp/out 2> /tmp/err
  rc=$?
  echo "LAB-BORN step=$n rc=$rc in=$(grep "^0::" /tmp/out) $(grep -o 'done by clone3[^]]*' /tmp/err)"
done
# lab exec's program is born in the container's cgroup too.
lab step 6 --no-checks --name ex -- sleep 60 > /dev/null 2>&1 &
for i in $(seq 100); do [ -e /run/lab/containers/ex/pid ] && break; sleep 0.1; done
echo "LAB-EXEC $(lab exec ex -- cat /proc/self/cgroup 2>/dev/null | grep '^0::')"
kill $!; wait $!
# The overlay of a container whose layer goes at exit is volatile: how does
# Debian 12's kernel write it in mountinfo (this machine's 6.18: fsync=volatile)?
echo "LAB-ROOTMOUNT $(lab step 7 --no-checks -- cat /proc/self/mountinfo 2>/dev/null | grep ' / / .* - overlay ')"
# What a systemd host does: this shell sits in a cgroup of its own, as a login
# session does. A cgroup under it cannot get controllers (no-internal-process
# rule): lab must say so, and leave nothing behind.
mkdir /sys/fs/cgroup/session
echo $$ > /sys/fs/cgroup/session/cgroup.procs
lab step 6 --cgroup-parent lab -- true > /tmp/out 2> /tmp/err
rc=$?
echo $$ > /sys/fs/cgroup/cgroup.procs
echo "LAB-STDERR"; cat /tmp/err; echo "LAB-END"
echo "LAB-RESULT step=busy rc=$rc"
echo "LAB-LEFT [$(ls -d /sys/fs/cgroup/lab /sys/fs/cgroup/session/lab /run/lab/containers/* 2>/dev/null)]"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) > "$work/initramfs.cpio.gz"

# qemu exits 0 whenever the guest powers off: the marker lines are the result.
timeout 600 qemu-system-x86_64 -machine pc -accel tcg -m 768 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.cpio.gz" \
  -append 'console=ttyS0 quiet panic=-1 rdinit=/init'
