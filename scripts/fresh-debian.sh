#!/bin/bash
# Run one of the README's set-up commands the way a fresh Debian 12 machine would: debootstrap a
# minimal bookworm (minbase: only "required" packages, no gpg, openssl, python3, systemd...),
# clone this repo's HEAD into its /root (mode 0700, as a root user would), pivot into it in a
# private mount namespace (PID 1 stays the machine's, as here) and run the command there.
# A missing apt/pip step or a path assumption shows up here, not on a machine that already has
# everything.
#
#   bash scripts/fresh-debian.sh [test|demo] [--keep]     (as root; needs deb.debian.org)
#
# test runs `bash .ci/run` (= scripts/test.sh), demo runs `bash scripts/demo.sh`. The root
# lives in /var/tmp/rktd-less-fresh-debian and is removed at the end unless --keep. The
# machine's own extra CA certificates (/usr/local/share/ca-certificates) and /etc/pip.conf are
# carried over, so the fresh root reaches the package registries as the machine does.
set -euo pipefail
cd "$(dirname "$0")/.."
what=test
keep=no
for a in "$@"; do
    case "$a" in
        test|demo) what=$a ;;
        --keep) keep=yes ;;
        *) echo "fresh-debian.sh: unknown argument $a (use test, demo, --keep)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "fresh-debian.sh: run as root (debootstrap, mounts)" >&2
    exit 1
fi
root=/var/tmp/rktd-less-fresh-debian
cleanup() {
    if [ "$keep" = no ]; then
        rm -rf --one-file-system "$root"
    else
        echo "fresh-debian.sh: kept $root"
    fi
}
trap cleanup EXIT
rm -rf --one-file-system "$root"
if ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
echo "fresh-debian.sh: debootstrap --variant=minbase bookworm $root"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
cp /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
git clone -q "$PWD" "$root/root/rktd-less"
chmod 0700 "$root/root"
case "$what" in
    test) cmd="bash .ci/run" ;;
    demo) cmd="bash scripts/demo.sh" ;;
esac
echo "fresh-debian.sh: running \`$cmd\` in /root/rktd-less of the fresh root"
# In the child: / becomes the fresh root (pivot_root, so nspawn and nsenter see a real root,
# not a chroot); /proc, /sys and /dev are the machine's; the old root is detached. Only
# ca-certificates is installed ahead of the command (install.sh installs it too), so that the
# machine's CAs are in the bundle before pip runs; everything else is install.sh's to install.
status=0
unshare --mount --propagation private -- bash -c '
set -eu
root=$1 cmd=$2
mount --bind "$root" "$root"
mkdir -p "$root/.oldroot"
cd "$root"
pivot_root . .oldroot
exec /usr/sbin/chroot . /usr/bin/env -i HOME=/root TERM=dumb CI=true \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt bash -c "
set -e
mount -t proc proc /proc
mount --rbind /.oldroot/sys /sys
mount --rbind /.oldroot/dev /dev
umount -l /.oldroot
rmdir /.oldroot
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq ca-certificates >/dev/null
update-ca-certificates >/dev/null
cd /root/rktd-less && $cmd"
' fresh "$root" "$cmd" || status=$?
echo "fresh-debian.sh: \`$cmd\` exited $status"
exit "$status"
