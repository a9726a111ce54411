#!/usr/bin/env bash
# Build the Debian package of rktd-less: dist/rktd-less_<version>_<arch>.deb (or --out DIR).
#
#   bash scripts/build-deb.sh [--out DIR] [--guest-kernel DIR]
#
# --guest-kernel DIR: the kvm stage1's guest kernel from DIR (what `python3 -m
# rktd_less.stage1.kvmguest DIR` fetched: vmlinux, modules/, kernel-release) instead of
# downloading Debian's linux-image-amd64 now (offline builds).
# Needs dpkg-deb, python3 and pip (this checkout's .venv, else a venv made under build/).
# Root is not needed. Steps:
#   1. the wheel, built by `pip wheel` from a clean copy of the sources (setup.py builds the
#      stage1 images from stage1-*/ into rktd_less/stage1-images/);
#   2. the wheel installed with `pip install --target` into usr/lib/python3/dist-packages of a
#      staging root; its stage1 images moved to usr/lib/rkt/stage1-images (the package's
#      rktd_less/stage1-images becomes a link to it), its dist-info kept for `pip list`;
#   3. /usr/bin/rkt and /usr/bin/acbuild, the units of units/ (@RKT@ = /usr/bin/rkt) in /lib/systemd/system, the
#      tmpfiles.d file, a bash completion made by the built `rkt completion bash`;
#   4. DEBIAN/ from packaging/deb: control (Depends on Debian's python3-* packages, with the
#      wheel's lower bounds), postinst, prerm, postrm, md5sums;
#   5. dpkg-deb --build --root-owner-group.
# The architecture is dpkg's: the stage1 images carry the build machine's arch label.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
PKG=rktd-less
OUT=$REPO/dist
GUEST_KERNEL=

say() { echo "build-deb.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
    --out)
        [ $# -ge 2 ] || die "--out needs a directory"
        OUT=$2
        shift 2
        ;;
    --out=*)
        OUT=${1#--out=}
        shift
        ;;
    --guest-kernel)
        [ $# -ge 2 ] || die "--guest-kernel needs a directory"
        GUEST_KERNEL=$2
        shift 2
        ;;
    --guest-kernel=*)
        GUEST_KERNEL=${1#--guest-kernel=}
        shift
        ;;
    -h | --help)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$1' (usage: build-deb.sh [--out DIR] [--guest-kernel DIR])" ;;
    esac
done

for tool in dpkg-deb dpkg python3 tar; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
ARCH=$(dpkg --print-architecture)
umask 022

# The python that runs pip: this checkout's venv, else one made (once) under build/ that sees
# the system's packages.
PY=$REPO/.venv/bin/python
if ! { [ -x "$PY" ] && "$PY" -m pip --version >/dev/null 2>&1; }; then
    PY=$REPO/build/deb-venv/bin/python
    if ! { [ -x "$PY" ] && "$PY" -m pip --version >/dev/null 2>&1; }; then
        say "making a virtual environment in build/deb-venv"
        python3 -m venv --system-site-packages "$REPO/build/deb-venv" ||
            die "python3 -m venv failed (install python3-venv)"
    fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rktd-less-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/src
ROOT=$WORK/root
DP=$ROOT/usr/lib/python3/dist-packages
IMAGES=$ROOT/usr/lib/rkt/stage1-images

# 1. The wheel, from a copy without build output, caches or images of an editable install
#    (setuptools would put stale files of an in-tree build/ into the wheel).
mkdir -p "$SRC" "$WORK/wheel"
tar -C "$REPO" -c -f - \
    --exclude=./.git --exclude=./.venv --exclude=./.testbed --exclude=./build --exclude=./dist \
    --exclude=./rktd_less/stage1-images --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache . |
    tar -C "$SRC" -x -f -
say "building the wheel"
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/wheel" "$SRC" >&2
WHEELS=("$WORK"/wheel/rktd_less-*-py3-none-any.whl)
[ -f "${WHEELS[0]}" ] || die "pip wheel wrote no rktd_less-*-py3-none-any.whl"

# 2. The package and its metadata in dist-packages; the stage1 images in /usr/lib/rkt.
"$PY" -m pip install --quiet --no-deps --no-compile --no-index --target "$DP" "${WHEELS[0]}" >&2
rm -rf "$DP/bin" # pip's console scripts: /usr/bin/rkt and acbuild are written below
find "$DP" -name __pycache__ -prune -exec rm -rf {} +
DISTINFO=("$DP"/rktd_less-*.dist-info)
[ -f "${DISTINFO[0]}/METADATA" ] || die "no rktd_less-*.dist-info/METADATA in the wheel"
DISTINFO=${DISTINFO[0]}
# Written by pip at install time, meaningless for a dpkg-installed package.
rm -f "$DISTINFO/INSTALLER" "$DISTINFO/REQUESTED" "$DISTINFO/direct_url.json"

shopt -s nullglob
ACIS=("$DP"/rktd_less/stage1-images/stage1-*.aci)
shopt -u nullglob
[ ${#ACIS[@]} -gt 0 ] || die "the wheel holds no rktd_less/stage1-images/stage1-*.aci"
mkdir -p "$IMAGES"
mv "$DP"/rktd_less/stage1-images/* "$IMAGES/"
rmdir "$DP/rktd_less/stage1-images"
# Relative, as Debian policy wants within /usr: .../dist-packages/rktd_less -> /usr/lib/rkt.
ln -s ../../../rkt/stage1-images "$DP/rktd_less/stage1-images"
[ -f "$DP/rktd_less/stage1-images/$(basename "${ACIS[0]}")" ] || die "stage1-images link is wrong"

# The kvm stage1's guest kernel, fetched at the package's build: Debian's linux-image-amd64
# downloaded and unpacked here (its vmlinux and the guest's modules, in /usr/lib/rkt/stage1-kvm).
KVM=$ROOT/usr/lib/rkt/stage1-kvm
if [ -n "$GUEST_KERNEL" ]; then
    for f in vmlinux kernel-release modules/load-order; do
        [ -s "$GUEST_KERNEL/$f" ] || die "--guest-kernel $GUEST_KERNEL: no $f"
    done
    mkdir -p "$KVM/modules"
    cp "$GUEST_KERNEL/vmlinux" "$GUEST_KERNEL/kernel-release" "$KVM/"
    while read -r mod; do
        cp "$GUEST_KERNEL/modules/$mod" "$KVM/modules/"
    done <"$GUEST_KERNEL/modules/load-order"
    cp "$GUEST_KERNEL/modules/load-order" "$KVM/modules/"
else
    say "fetching the kvm stage1's guest kernel"
    PYTHONPATH=$DP "$PY" -m rktd_less.stage1.kvmguest "$KVM" >/dev/null ||
        die "fetching the guest kernel failed (apt-get download linux-image-amd64)"
fi

VERSION=$(sed -n 's/^Version: *//p' "$DISTINFO/METADATA" | head -n 1)
[ -n "$VERSION" ] || die "no Version in $DISTINFO/METADATA"
# PEP 440 pre-releases sort before the release in Debian only with a tilde: 1.0rc1 -> 1.0~rc1.
DEB_VERSION=$(printf '%s' "$VERSION" | sed -E 's/\.?(a|b|rc|dev)([0-9]*)/~\1\2/')

# The Depends for the wheel's Requires-Dist (packaging/deb/python-depends names the Debian
# package of each distribution) and Requires-Python.
debian_package_of() { # normalised distribution name -> Debian package, or nothing
    local dist pkg
    while read -r dist pkg; do
        case "$dist" in '' | '#'*) continue ;; esac
        if [ "$(normalise "$dist")" = "$1" ]; then
            printf '%s' "$pkg"
            return
        fi
    done <"$REPO/packaging/deb/python-depends"
}
normalise() { printf '%s' "$1" | tr 'A-Z_.' 'a-z--'; }
version_clause() { # "" | ">=X" -> "" | " (>= X)"
    case "$1" in
    '') ;;
    '>='*) printf ' (>= %s)' "${1#>=}" ;;
    *) return 1 ;;
    esac
}
REQ_RE='^([A-Za-z0-9._-]+) *\(?([^();]*)\)? *$'
DEPENDS=()
while IFS= read -r line; do
    spec=${line#*:}
    spec=${spec# }
    case "$spec" in *';'*) continue ;; esac # an extra's or another platform's requirement
    [[ $spec =~ $REQ_RE ]] || die "cannot read '$line' of the wheel's METADATA"
    name=$(normalise "${BASH_REMATCH[1]}")
    bound=${BASH_REMATCH[2]// /}
    pkg=$(debian_package_of "$name")
    [ -n "$pkg" ] || die "requirement '$spec' has no Debian package in packaging/deb/python-depends"
    clause=$(version_clause "$bound") ||
        die "requirement '$spec': only a lower bound (>=) can become a Depends"
    DEPENDS+=("$pkg$clause")
done < <(grep '^Requires-Dist:' "$DISTINFO/METADATA" || true)
PY_BOUND=$(sed -n 's/^Requires-Python: *//p' "$DISTINFO/METADATA" | tr -d ' ')
PY_CLAUSE=$(version_clause "$PY_BOUND") ||
    die "Requires-Python '$PY_BOUND': only a lower bound (>=) can become a Depends"
PYTHON_DEPENDS="python3$PY_CLAUSE"
for dep in "${DEPENDS[@]}"; do
    PYTHON_DEPENDS+=", $dep"
done

# 3. The command, the units, tmpfiles.d, bash completion, the copyright file.
mkdir -p "$ROOT/usr/bin"
cat >"$ROOT/usr/bin/rkt" <<'EOF'
#!/usr/bin/python3 -I
# rkt of the rktd-less Debian package (its code: /usr/lib/python3/dist-packages/rktd_less).
from rktd_less.cli.main import entry

entry()
EOF
cat >"$ROOT/usr/bin/acbuild" <<'EOF'
#!/usr/bin/python3 -I
# acbuild of the rktd-less Debian package (its code: /usr/lib/python3/dist-packages/rktd_less).
from rktd_less.cli.acbuild import entry

entry()
EOF
for unit in "$SRC"/units/*.service "$SRC"/units/*.timer; do
    dest=$ROOT/lib/systemd/system/$(basename "$unit")
    mkdir -p "$(dirname "$dest")"
    sed 's|@RKT@|/usr/bin/rkt|g' "$unit" >"$dest"
    if grep -q '@[A-Z_]*@' "$dest"; then
        die "$(basename "$unit") has a placeholder this script does not fill"
    fi
done
install -D -m 0644 "$SRC/units/tmpfiles.d/rkt.conf" "$ROOT/usr/lib/tmpfiles.d/rkt.conf"
mkdir -p "$ROOT/usr/share/bash-completion/completions"
# (run from $WORK: a -c script's sys.path starts with the current directory)
(cd "$WORK" && PYTHONPATH=$DP "$PY" -c \
    'import sys; sys.argv[0] = "rkt"; from rktd_less.cli.main import entry; entry()' \
    completion bash) >"$ROOT/usr/share/bash-completion/completions/rkt"
[ -s "$ROOT/usr/share/bash-completion/completions/rkt" ] || die "rkt completion bash printed nothing"
find "$DP" -name __pycache__ -prune -exec rm -rf {} + # the completion run may have made some
install -D -m 0644 "$REPO/packaging/deb/copyright" "$ROOT/usr/share/doc/$PKG/copyright"

# The dist-info's RECORD, rewritten for the files as shipped (pip's names bin/rkt and the images
# where they are no longer), so importlib.metadata and pip see the truth.
"$PY" - "$DP" "$DISTINFO" <<'EOF'
import base64, hashlib, os, sys
from pathlib import Path
dp, distinfo = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for top in (dp / "rktd_less", distinfo):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames) + sorted(d for d in dirnames if (Path(dirpath) / d).is_symlink()):
            path = Path(dirpath) / name
            rel = path.relative_to(dp).as_posix()
            if path.is_symlink() or path == distinfo / "RECORD":
                rows.append(f"{rel},,")
                continue
            data = path.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{rel},sha256={digest},{len(data)}")
(distinfo / "RECORD").write_text("\n".join(rows) + "\n")
EOF

# 4. DEBIAN/: control, maintainer scripts, md5sums.
chmod -R u+rwX,go=rX "$ROOT"
chmod 0755 "$ROOT/usr/bin/rkt" "$ROOT/usr/bin/acbuild"
INSTALLED_SIZE=$(du -s -k --apparent-size "$ROOT" | cut -f1)
mkdir -p "$ROOT/DEBIAN"
sed -e "s|@VERSION@|$DEB_VERSION|" -e "s|@ARCH@|$ARCH|" \
    -e "s|@INSTALLED_SIZE@|$INSTALLED_SIZE|" -e "s|@PYTHON_DEPENDS@|$PYTHON_DEPENDS|" \
    "$REPO/packaging/deb/control.in" >"$ROOT/DEBIAN/control"
for script in postinst prerm postrm; do
    install -m 0755 "$REPO/packaging/deb/$script" "$ROOT/DEBIAN/$script"
done
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/md5sums"

# 5. The package.
mkdir -p "$OUT"
DEB=$OUT/${PKG}_${DEB_VERSION}_${ARCH}.deb
dpkg-deb --build --root-owner-group "$ROOT" "$DEB" >/dev/null
say "wrote $DEB"
echo "$DEB"
