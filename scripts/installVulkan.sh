#!/usr/bin/env bash
# Software Vulkan (Mesa lavapipe) from bookworm-backports, for the WebGPU execution-provider smoke test.
# Bookworm's own Mesa 22 finds no adapter; Mesa 25 from backports does (DESIGN.md section 4).
set -euo pipefail
if dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '^2[5-9]'; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
src=/etc/apt/sources.list.d/debian.sources
dst=/etc/apt/sources.list.d/whittle-backports.sources
if [ ! -f "$dst" ]; then
  # Copy the first bookworm deb822 entry with its suite renamed to bookworm-backports.
  awk 'BEGIN{RS=""; ORS="\n\n"} /Suites:[^\n]*bookworm/ && !done {sub(/Suites:[^\n]*/, "Suites: bookworm-backports"); print; done=1}' "$src" > "$dst"
fi
apt-get update -q
apt-get install -y -q --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1
