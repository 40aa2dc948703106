#!/bin/sh
# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PID 1 of a lab site that is a User-mode Linux guest (the lab module's engine "uml").
#
# Stage 1 runs on the machine's root file system (hostfs, read-only): it registers the guest's
# modprobe wrapper as the kernel's module loader, mounts an overlay with a tmpfs upper layer over
# that root and re-executes itself in it. Stage 2 mounts the pseudo file systems, loads the
# XFRM/ESP modules, names and addresses the NICs, and becomes the lab's site init (sshd and the
# service supervisor), as on a namespace site.
#
# Environment (from the kernel command line): IKELAB_GUEST_DIR, the guest's files written by the
# lab module (modprobe wrapper, module list, NIC set-up; boot/: the site init and its config).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
dir="${IKELAB_GUEST_DIR:?IKELAB_GUEST_DIR is not set}"

say() { echo "ikelab-guest: [$(cut -d" " -f1 /proc/uptime 2>/dev/null)] $*"; }
die() {
  say "FATAL: $*"
  echo o >/proc/sysrq-trigger
  sleep 60
}

if [ "${1:-}" != stage2 ]; then
  mount -t proc proc /proc || die "mount /proc"
  mount -t tmpfs -o mode=0755 tmpfs /run || die "mount /run"
  # the kernel's module loader (until stage 2 replaces it): the wrapper in the site's
  # directory, which hostfs shows at its own path
  echo "$dir/modprobe" >/proc/sys/kernel/modprobe
  "$dir/modprobe" overlay || die "modprobe overlay"
  mkdir -p /run/ov/upper /run/ov/work /run/ov/root
  mount -t overlay overlay -o lowerdir=/,upperdir=/run/ov/upper,workdir=/run/ov/work \
    /run/ov/root || die "mount overlay"
  umount /proc
  exec chroot /run/ov/root /bin/sh "$0" stage2
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
ln -sf /dev/pts/ptmx /dev/ptmx 2>/dev/null
mount -t tmpfs tmpfs /dev/shm
ln -sf /proc/self/fd /dev/fd 2>/dev/null

# everything read from the site's directory is read before tmpfs covers /run and /tmp (the
# lab's directory may be under either): modules, NICs, then the site init's files
# (a module that does not load is reported, not fatal: the agent says what it lacks)
if ! "$dir/modprobe" -a $(cat "$dir/modules") 2>/dev/null; then
  for m in $(cat "$dir/modules"); do
    "$dir/modprobe" "$m" || say "module $m did not load"
  done
fi
ip -batch "$dir/net.batch" || die "network set-up failed"
echo 1 >/proc/sys/net/ipv4/ip_forward
say "modules loaded, network up"
boot=/run/ikelab-boot
mount -t tmpfs -o mode=0755 tmpfs /run || die "mount /run"
mkdir -m 0700 "$boot" && cp "$dir"/boot/* "$boot"/ || die "copy the site init's files"
# the kernel's module loader runs in this root too: give it a wrapper that stays visible
cp -a "$dir/modroot" "$boot/modroot" || die "copy the module tree"
printf '#!/bin/sh\nexec /sbin/modprobe -d %s/modroot "$@"\n' "$boot" >"$boot/modprobe"
chmod 0755 "$boot/modprobe"
echo "$boot/modprobe" >/proc/sys/kernel/modprobe
mount -t tmpfs -o mode=1777 tmpfs /tmp || die "mount /tmp"

exec /usr/bin/python3 -I -B "$boot/ikelab_site_init.py" --guest "$boot/site.json"
