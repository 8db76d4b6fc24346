#!/usr/bin/env bash
# Installs the real servers the tests run (they never use mocks): Prometheus with promtool, and
# nats-server, from the Debian/Ubuntu packages; openssl makes the TLS tests' certificates; tmux
# gives the terminal-output test a real terminal. Does nothing when they are already on the PATH.
set -euo pipefail
need=()
{ command -v prometheus && command -v promtool; } >/dev/null || need+=(prometheus)
command -v nats-server >/dev/null || need+=(nats-server)
command -v openssl >/dev/null || need+=(openssl)
command -v tmux >/dev/null || need+=(tmux)      # the terminal-output test reads a real terminal's screen
# The native backend: npm ci builds its oneDNN addon when a C++ toolchain and libdnnl-dev are present.
{ command -v g++ && command -v make; } >/dev/null || need+=(build-essential)
[ -e /usr/include/oneapi/dnnl/dnnl.hpp ] || need+=(libdnnl-dev)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
echo "installing ${need[*]} (apt)" >&2
"${sudo[@]}" apt-get update -qq
# The tests start these binaries themselves; the packages' systemd units are not needed.
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
