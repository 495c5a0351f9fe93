#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from Debian's `kubernetes` source package and
# caches them outside the work tree, keyed by version, so a machine builds them once.
# Prints the directory holding the two binaries on its last line.
#
# The source vendors github.com/modern-go/reflect2 v1.0.1, which does not work with Go 1.18 or
# later: built with Debian's Go 1.19, kube-apiserver crashes (SIGSEGV under json-iterator) as soon
# as it encodes a custom resource. Debian's golang-github-modern-go-reflect2-dev (1.0.2, same import
# path) is vendored in its place before the build; the cache key names it.
set -euo pipefail

cache_root="${RINGTAIL_CACHE_DIR:-/var/cache/ringtail}"
log="${cache_root}/control-plane-build.log"
mkdir -p "$cache_root"

have_version() { # the source package version Debian offers (empty when apt has no deb-src yet)
  apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ {print $2; exit}'
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -f /etc/apt/sources.list.d/ringtail-deb-src.sources ]; then
  as_root tee /etc/apt/sources.list.d/ringtail-deb-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
fi

version="$(have_version)"
if [ -z "$version" ]; then
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  version="$(have_version)"
fi
[ -n "$version" ] || { echo "no kubernetes source package found in apt" >&2; exit 1; }

reflect2_version=1.0.2
bin_dir="${cache_root}/kubernetes-${version}+reflect2-${reflect2_version}/bin"
if [ -x "$bin_dir/kube-apiserver" ] && [ -x "$bin_dir/kube-controller-manager" ]; then
  echo "$bin_dir"
  exit 0
fi

as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq golang-go rsync dpkg-dev make \
  golang-github-modern-go-reflect2-dev >&2
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
installed="$(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
case "$installed" in
  "${reflect2_version}"-*) ;;
  *) echo "golang-github-modern-go-reflect2-dev is ${installed}, expected ${reflect2_version}" >&2; exit 1 ;;
esac
src_parent="${cache_root}/src-${version}"
rm -rf "$src_parent"
mkdir -p "$src_parent"
(cd "$src_parent" && apt-get source -qq kubernetes >&2)
src_dir="$(find "$src_parent" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
[ -n "$src_dir" ] || { echo "apt-get source kubernetes produced no source tree" >&2; exit 1; }
vendored="$src_dir/vendor/github.com/modern-go/reflect2"
[ -d "$vendored" ] || { echo "the source tree vendors no github.com/modern-go/reflect2" >&2; exit 1; }
rsync -a --delete --exclude '*_test.go' --exclude LICENSE "$reflect2_src/" "$vendored/"

echo "building kube-apiserver and kube-controller-manager ${version} (about 15 minutes on 2 cores); log: $log" >&2
(cd "$src_dir" && make WHAT="cmd/kube-apiserver cmd/kube-controller-manager") >"$log" 2>&1 || {
  tail -n 40 "$log" >&2
  exit 1
}
mkdir -p "$bin_dir"
for b in kube-apiserver kube-controller-manager; do
  found="$(find "$src_dir/_output" -type f -name "$b" -perm -u+x | head -n1)"
  [ -n "$found" ] || { echo "built tree has no $b" >&2; exit 1; }
  cp "$found" "$bin_dir/$b"
done
rm -rf "$src_parent" "${HOME}/.cache/go-build"
echo "$bin_dir"
