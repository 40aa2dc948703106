#!/bin/sh
# PID 1 of a User-mode Linux guest started by ikelab_testing.uml (see that module).
#
# Stage 1 runs on the machine's root file system (hostfs, read-only): it registers the lab's
# modprobe wrapper, mounts an overlay with a tmpfs upper layer over that root and re-executes
# itself in it.  Stage 2 mounts the pseudo file systems, the guest's shared directory (hostfs,
# read-write), loads the modules, configures the network from the host-written net.sh and starts
# the command server; when the server ends, the guest powers off.
#
# Environment (from the kernel command line): IKELAB_DIR, the guest's host work directory.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
dir="${IKELAB_DIR:?IKELAB_DIR is not set}"

say() { echo "ikelab-init: [$(cut -d" " -f1 /proc/uptime 2>/dev/null)] $*"; }
die() {
  say "FATAL: $*"
  echo o >/proc/sysrq-trigger
  sleep 60
}

if [ "${1:-}" != stage2 ]; then
  mount -t proc proc /proc || die "mount /proc"
  say "stage 1"
  mount -t tmpfs -o mode=0755 tmpfs /run || die "mount /run"
  # the kernel runs its module loader from this root (not the overlay): the wrapper lives in
  # the host work directory, visible here through hostfs
  echo "$dir/modprobe" >/proc/sys/kernel/modprobe
  "$dir/modprobe" overlay || die "modprobe overlay"
  mkdir -p /run/ov/upper /run/ov/work /run/ov/root
  mount -t overlay overlay -o lowerdir=/,upperdir=/run/ov/upper,workdir=/run/ov/work \
    /run/ov/root || die "mount overlay"
  umount /proc
  exec chroot /run/ov/root /bin/sh "$0" stage2
fi

mount -t proc proc /proc
say "stage 2"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p "$dir"
mount -t hostfs hostfs "$dir" -o "$dir" || die "mount hostfs $dir"
ln -sf /proc/self/fd /dev/fd 2>/dev/null

# modules for ESP/XFRM and their algorithms; a missing one is reported, not fatal
if ! "$dir/modprobe" -a $(cat "$dir/modules"); then
  for m in $(cat "$dir/modules"); do
    "$dir/modprobe" "$m" || say "module $m failed to load"
  done
fi

say "modules loaded"
ip link set lo up
. "$dir/net.sh" || die "network set-up failed"
say "network up"

# the command server: it listens in the guest's own "mgmt" network namespace and runs commands
# in this one (see ikelab_testing/uml_guest.py)
"$(cat "$dir/python")" -I -S "$(dirname "$0")/uml_guest.py" "$dir" &
server=$!
say "server started (pid $server)"
# PID 1 reaps orphans; when the server is gone the guest powers off
while kill -0 "$server" 2>/dev/null; do
  wait
done
say "server exited; powering off"
echo o >/proc/sysrq-trigger
sleep 60
