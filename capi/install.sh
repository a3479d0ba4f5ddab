#!/usr/bin/env bash
# Installs the C library under a prefix:
#   capi/install.sh PREFIX
# puts PREFIX/include/ember.h, PREFIX/lib/libember.so.X.Y.Z (+ the libember.so.X and
# libember.so links), PREFIX/lib/libember.a and PREFIX/lib/pkgconfig/ember.pc, so that
#   cc prog.c $(pkg-config --cflags --libs ember)
# works with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig.
set -euo pipefail
prefix=${1:?usage: capi/install.sh PREFIX}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}
# EMBER_LIB_DIR: take libember.so and libember.a from there instead of building them.
if [ -n "${EMBER_LIB_DIR:-}" ]; then
  target=$EMBER_LIB_DIR
else
  cargo build --release -q -p ember-capi
  target=${CARGO_TARGET_DIR:-$root/target}/release
fi
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
install -m 0644 include/ember.h "$prefix/include/ember.h"
install -m 0755 "$target/libember.so" "$prefix/lib/libember.so.$version"
ln -sf "libember.so.$version" "$prefix/lib/libember.so.$major"
ln -sf "libember.so.$major" "$prefix/lib/libember.so"
install -m 0644 "$target/libember.a" "$prefix/lib/libember.a"
cat > "$prefix/lib/pkgconfig/ember.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: ember
Description: Neighbour embeddings (t-SNE, UMAP, the contrastive family) and contrastive-learning kernels
Version: $version
Libs: -L\${libdir} -lember
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
echo "installed ember $version under $prefix"
