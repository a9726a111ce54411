#!/usr/bin/env bash
# Install everything rktd-less needs on Debian 12, as root: Debian packages, then a virtual
# environment in .venv (Debian's /usr/bin/python3) with the project and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (apt-get, systemd-nspawn and mounts need it)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# systemd-container: systemd-nspawn, machinectl, machined; dbus: the system bus in the test bed;
# busybox-static: the test payload; python3-venv: the virtual environment; python3-dbus-next
# python3-systemd python3-pyroute2 python3-gnupg python3-aiohttp python3-zstandard: our
# dependencies as Debian 12 ships them (the .deb depends on them; the venv below sees them
# through --system-site-packages, so every test runs against these versions);
# util-linux: unshare/nsenter; containernetworking-plugins iptables: pod networks (CNI plugins
# in /usr/lib/cni; ipMasq and port forwarding rules); iproute2: the network tests' checks;
# curl: the network tests' client (busybox-static's wget crashes here);
# docker-registry skopeo apache2-utils (htpasswd): the docker:// fetch tests' loopback registry;
# gpg gpg-agent: signature checks (python-gnupg runs gpg) and the tests' signing keys;
# ca-certificates: HTTPS fetches; openssl zstd: the tests' certificates and zstd layers.
# libc6-dev: the confinement tests build a static probe; swtpm tpm2-tools: the TPM tests' throw-away
# software TPM and an independent PCR reader; qemu-system-x86: the kvm stage1's VMM.
apt-get install -y -qq systemd systemd-container dbus busybox-static \
    gcc libc6-dev python3-venv util-linux tar gzip bzip2 xz-utils \
    containernetworking-plugins iptables iproute2 curl \
    python3-dbus-next python3-systemd python3-pyroute2 python3-gnupg python3-aiohttp \
    python3-zstandard make \
    docker-registry skopeo apache2-utils gpg gpg-agent ca-certificates openssl zstd \
    swtpm swtpm-tools tpm2-tools >/dev/null
apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null

# A venv made before the dependencies came from Debian (without system site packages) is
# made anew.
if [ -x .venv/bin/python ] && ! grep -q '^include-system-site-packages = true' .venv/pyvenv.cfg
then
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
# pip's own chatter goes to a log, shown only when the install fails.
# editable_mode=compat: the checkout on sys.path through a .pth file, not setuptools' import
# hook, which cost ~10 ms at every start of rkt and of each stage1 entrypoint.
if ! .venv/bin/pip install -q --disable-pip-version-check --config-settings editable_mode=compat \
        -e '.[dev]' >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    echo "install.sh: pip install failed" >&2
    exit 1
fi
# The editable install's stage1 images (a wheel or .deb build makes them in setup.py):
# rebuilt at every install, so a changed stage1-*/ source is never shadowed by an old image.
if ! .venv/bin/python -m rktd_less.stage1.image rktd_less/stage1-images >/dev/null; then
    echo "install.sh: building the stage1 images failed" >&2
    exit 1
fi
# The kvm stage1's guest kernel: Debian's linux-image-amd64, downloaded and unpacked (not
# installed on this machine): its vmlinux and the guest's modules; fetched once.
KVM=/usr/lib/rkt/stage1-kvm
if [ ! -s "$KVM/kernel-release" ] || [ ! -s "$KVM/modules/load-order" ]; then
    if ! .venv/bin/python -m rktd_less.stage1.kvmguest "$KVM" >/dev/null; then
        echo "install.sh: fetching the kvm stage1's guest kernel failed" >&2
        exit 1
    fi
fi
echo "install.sh: ready: $(.venv/bin/rkt version | head -1)"
