#!/usr/bin/env bash
# Builds the ember MEX gateways for GNU Octave: build_octave.sh [OUTDIR] (default target/mex).
# libember.a is linked statically, so no library search path can pick up another build.
# EMBER_LIB names a prebuilt libember.a; otherwise cargo builds one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/mex}
lib=${EMBER_LIB:-}
if [ -z "$lib" ]; then
  cargo build --release -p ember-capi --manifest-path "$root/Cargo.toml"
  lib=$root/target/release/libember.a
fi
mkdir -p "$out"
for f in ember_tsne ember_umap ember_ne ember_knn; do
  mkoctfile --mex -I"$root/include" -I"$root/matlab" -o "$out/$f.mex" "$root/matlab/$f.c" "$lib" \
    -lpthread -ldl -lm
done
echo "built $out/{ember_tsne,ember_umap,ember_ne,ember_knn}.mex"
