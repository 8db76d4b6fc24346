#!/usr/bin/env bash
# Installs the real servers the tests run (they never use mocks): Prometheus with promtool, and
# nats-server, from the Debian/Ubuntu packages; openssl makes the TLS tests' certificates; tmux
# gives the terminal-output test a real terminal; shellcheck lints the tfjs-node-gpu install script.
# Does nothing when they are already on the PATH.
set -euo pipefail
need=()
{ command -v prometheus && command -v promtool; } >/dev/null || need+=(prometheus)
command -v nats-server >/dev/null || need+=(nats-server)
command -v openssl >/dev/null || need+=(openssl)
command -v tmux >/dev/null || need+=(tmux)      # the terminal-output test reads a real terminal's screen
command -v shellcheck >/dev/null || need+=(shellcheck)   # the deploy tests lint scripts/install-tfjs-node-gpu.sh
command -v ip >/dev/null || need+=(iproute2)            # the simulated cluster's namespaces, links and tc shaping (root tests)
command -v setpriv >/dev/null || need+=(util-linux)     # the root tests drop privileges with it
# The native backend: npm ci builds its oneDNN addon when a C++ toolchain and libdnnl-dev are present.
{ command -v g++ && command -v make; } >/dev/null || need+=(build-essential)
[ -e /usr/include/oneapi/dnnl/dnnl.hpp ] || need+=(libdnnl-dev)
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
# The webgpu backend's tests run on Mesa's software Vulkan adapter (lavapipe). Dawn rejects the Mesa
# of Debian 12's main archive (22.3: no shaderUniform*ArrayDynamicIndexing); bookworm-backports has
# Mesa 25. Newer Debian and Ubuntu carry a new enough Mesa in their main archive.
vulkan=()
mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
# An older Mesa already installed (22.3) is not enough: it is upgraded too.
{ [ -n "$mesa" ] && dpkg --compare-versions "$mesa" ge 23; } || vulkan=(mesa-vulkan-drivers libvulkan1)
vulkan_release=()
if [ ${#vulkan[@]} -gt 0 ]; then
  . /etc/os-release
  if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
    vulkan_release=(-t bookworm-backports)
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "adding the bookworm-backports suite to apt's sources (for Mesa 25's Vulkan driver)" >&2
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        | "${sudo[@]}" tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    fi
  fi
fi
if [ ${#need[@]} -eq 0 ] && [ ${#vulkan[@]} -eq 0 ]; then exit 0; fi
[ ${#need[@]} -eq 0 ] || echo "installing ${need[*]} (apt)" >&2
"${sudo[@]}" apt-get update -qq
# The tests start these binaries themselves; the packages' systemd units are not needed.
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ${#vulkan[@]} -gt 0 ]; then
  echo "installing ${vulkan[*]} ${vulkan_release[*]} (apt)" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${vulkan_release[@]}" "${vulkan[@]}" >/dev/null
fi
