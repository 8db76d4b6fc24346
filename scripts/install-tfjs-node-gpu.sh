#!/usr/bin/env bash
# Installs @tensorflow/tfjs-node-gpu 4.22.0 next to gradfleet against a current libtensorflow GPU
# build (2.15–2.18, CUDA 12), and builds its binding from source.
#
# Why: the package's own install script downloads libtensorflow 2.9.1 (CUDA 11.2), and that
# download fails (tensorflow/tfjs#8742: 403). The binding only calls TensorFlow's C API, so it can
# be compiled against a newer libtensorflow instead (see ../shared/docs/gpu-facts.md). The package
# reads `scripts/custom-binary.json` {"tf-lib": URL} in its folder for a custom library; this script
# writes that file (so a later `npm rebuild` of the package fetches the same library, not 2.9.1),
# stages the library into the package's deps/ itself (curl follows redirects, checks a SHA-256 and
# fails loudly; the package's downloader does none of these, and takes https URLs only), then runs
# the build the package's install script runs for a custom library: `node-pre-gyp install
# --build-from-source`, i.e. `node-gyp rebuild` in the package folder with the addon's paths.
#
# Not verified on a GPU machine from here (no network to Google's storage, no GPU): the first run
# on one is the test. Needs network for npm and, unless --libtensorflow names a local file, for
# storage.googleapis.com.
set -euo pipefail

TFJS_VERSION=4.22.0
usage() {
  cat <<EOF
usage: scripts/install-tfjs-node-gpu.sh [--tf-version 2.15.0..2.18.x] [--libtensorflow FILE|URL] [--sha256 HEX] [--dir DIR] [--check-load]

Installs @tensorflow/tfjs-node-gpu@${TFJS_VERSION} into DIR's node_modules (default: this
repository) without its install script, stages libtensorflow GPU into the package's deps/ and
builds the binding (node-pre-gyp install --build-from-source, which runs node-gyp rebuild).

  --tf-version V      libtensorflow version, 2.15–2.18 (default 2.18.0; env TF_VERSION).
                      CUDA/cuDNN it needs: 2.15 → 12.2/8.9, 2.16–2.17 → 12.3/8.9, 2.18 → 12.5/9.3.
  --libtensorflow X   a libtensorflow-gpu-linux-x86_64 .tar.gz already downloaded, or its https URL
                      (env LIBTENSORFLOW; default: Google's URL for V).
  --sha256 HEX        the tarball's expected SHA-256 (env LIBTENSORFLOW_SHA256); checked if given.
  --dir DIR           the gradfleet folder to install into (default: this repository).
  --check-load        after building, load the package and run one op (needs the CUDA libraries;
                      no GPU needed) and print TensorFlow's version.
  -h, --help          this text.

Needs: node >= 20, npm, tar, python3, make, g++ (build-essential), and curl for a URL.
EOF
}

die() { echo "install-tfjs-node-gpu: $*" >&2; exit 1; }
say() { echo "install-tfjs-node-gpu: $*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tf_version=${TF_VERSION:-2.18.0}
source=${LIBTENSORFLOW:-}
sha256=${LIBTENSORFLOW_SHA256:-}
dir=$here
check_load=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tf-version) [ $# -ge 2 ] || die "--tf-version needs a value"; tf_version=$2; shift 2 ;;
    --libtensorflow) [ $# -ge 2 ] || die "--libtensorflow needs a value"; source=$2; shift 2 ;;
    --sha256) [ $# -ge 2 ] || die "--sha256 needs a value"; sha256=$2; shift 2 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
    --check-load) check_load=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# 2.15 is the first C library built for CUDA 12; 2.18 the last Google published for Linux GPU.
[[ $tf_version =~ ^2\.1[5-8]\.[0-9]+$ ]] || die "--tf-version $tf_version: this script supports libtensorflow 2.15–2.18 (CUDA 12)"
[ -z "$sha256" ] || [[ $sha256 =~ ^[0-9a-fA-F]{64}$ ]] || die "--sha256 must be 64 hex digits"
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || die "libtensorflow GPU is published for Linux x86_64 only (this is $(uname -s)-$(uname -m))"
[ -f "$dir/package.json" ] || die "--dir $dir: no package.json there"

# The default URL is the form TensorFlow's C install page gives for 2.15 onwards.
default_url="https://storage.googleapis.com/tensorflow/versions/${tf_version}/libtensorflow-gpu-linux-x86_64.tar.gz"
source=${source:-$default_url}
is_url=0
case "$source" in
  https://*) is_url=1 ;;
  http://*) die "--libtensorflow $source: use https (the package's own downloader accepts nothing else)" ;;
  *) [ -f "$source" ] || die "--libtensorflow $source: no such file" ;;
esac
case "$source" in *.tar.gz|*.tgz) ;; *) die "--libtensorflow $source: expected a .tar.gz" ;; esac

missing=()
for tool in node npm tar python3 make g++; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ "$is_url" -eq 0 ] || command -v curl >/dev/null || missing+=(curl)
[ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]} (Debian/Ubuntu: apt-get install nodejs npm tar python3 build-essential curl)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node $(node --version): gradfleet needs node >= 20"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The tarball, checked before anything is installed.
tarball=$work/libtensorflow.tar.gz
if [ "$is_url" -eq 1 ]; then
  say "downloading $source"
  curl -fL --retry 3 --retry-delay 2 -o "$tarball" "$source" || die "download of $source failed"
else
  cp "$source" "$tarball"
fi
if [ -n "$sha256" ]; then
  echo "${sha256,,}  $tarball" | sha256sum -c --status - || die "SHA-256 of $source is $(sha256sum "$tarball" | cut -d' ' -f1), not $sha256"
fi
listing=$work/listing
tar -tzf "$tarball" >"$listing" || die "$source is not a readable .tar.gz"
# What the binding compiles against (binding.gyp: deps/include, -ltensorflow -ltensorflow_framework from deps/lib).
for f in include/tensorflow/c/c_api.h include/tensorflow/c/eager/c_api.h lib/libtensorflow.so lib/libtensorflow_framework.so; do
  grep -Eq "^(\./)?$f\$" "$listing" || die "$source has no $f: not a libtensorflow C library tarball"
done

# 2. The package, without its install script (that would fetch libtensorflow 2.9.1 and fail).
cd "$dir"
say "npm install --no-save --ignore-scripts @tensorflow/tfjs-node-gpu@${TFJS_VERSION} (in $dir)"
npm install --no-save --ignore-scripts "@tensorflow/tfjs-node-gpu@${TFJS_VERSION}"
pkg=$(node -p "require('path').dirname(require.resolve('@tensorflow/tfjs-node-gpu/package.json', { paths: [process.cwd()] }))")
[ -f "$pkg/binding.gyp" ] || die "$pkg has no binding.gyp: not the package this script knows"

# 3. The custom-binary mechanism: the package's install script (scripts/deps-constants.js) reads
# "tf-lib" from here. A local file cannot be named there (it downloads over https only).
if [ "$is_url" -eq 1 ]; then
  printf '{\n  "tf-lib": "%s"\n}\n' "$source" >"$pkg/scripts/custom-binary.json"
  say "wrote $pkg/scripts/custom-binary.json (tf-lib: $source)"
else
  say "a local tarball cannot go into custom-binary.json: a later 'npm rebuild' of the package would fetch 2.9.1 again; rerun this script instead"
fi
rm -rf "$pkg/deps" "$pkg/lib/napi-v"* "$pkg/build"
mkdir -p "$pkg/deps"
tar -xzf "$tarball" -C "$pkg/deps"

# 4. The build: what the package's install.js runs for a custom library without a prebuilt addon.
# Outside an npm script npm_config_node_gyp is unset and node-pre-gyp may not find node-gyp: use npm's own.
if [ -z "${npm_config_node_gyp:-}" ]; then
  npm_gyp="$(npm prefix -g)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
  if [ -f "$npm_gyp" ]; then export npm_config_node_gyp=$npm_gyp
  elif command -v node-gyp >/dev/null; then export npm_config_node_gyp; npm_config_node_gyp=$(command -v node-gyp)
  else die "node-gyp not found (npm's bundled one is missing): npm install -g node-gyp"
  fi
fi
# Distribution builds of Node ship their headers (the node image's /usr/local/include/node): use them, not a download.
node_prefix=$(dirname "$(dirname "$(node -p process.execPath)")")
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node_api.h" ]; then export npm_config_nodedir=$node_prefix; fi
pre_gyp=$(PKG=$pkg node -p "require.resolve('@mapbox/node-pre-gyp/bin/node-pre-gyp', { paths: [process.env.PKG] })")
say "building the binding against libtensorflow $tf_version (node-pre-gyp install --build-from-source in $pkg)"
(cd "$pkg" && node "$pre_gyp" install --build-from-source) || die "building the binding failed (see the compiler output above)"

# 5. Checks: the addon exists where the package looks for it, and its libraries all resolve.
shopt -s nullglob
addons=("$pkg"/lib/napi-v*/tfjs_binding.node)
[ ${#addons[@]} -gt 0 ] || die "no tfjs_binding.node under $pkg/lib after the build"
for addon in "${addons[@]}"; do
  unresolved=$(ldd "$addon" | grep 'not found' || true)
  [ -z "$unresolved" ] || die "$addon: unresolved libraries: $(echo "$unresolved" | tr -s ' \t\n' ' ')"
done
say "built ${addons[*]}"

if [ "$check_load" -eq 1 ]; then
  # One op through the binding; TF_Version proves which libtensorflow it loaded.
  loaded=$(node -e "
    const tf = require('@tensorflow/tfjs-node-gpu');
    tf.matMul(tf.ones([2, 2]), tf.ones([2, 2])).dataSync();
    process.stdout.write(String(tf.backend().binding.TF_Version));
  ") || die "the package does not load (are the CUDA ${tf_version} runtime libraries on the library path?)"
  [ "$loaded" = "$tf_version" ] || die "the binding loaded libtensorflow $loaded, not $tf_version"
  say "loads: libtensorflow $loaded"
fi
say "done: gradfleet --backend auto (or tensorflow) now tries @tensorflow/tfjs-node-gpu first"
