#!/usr/bin/env bash
# Re-encodes the load test's video clips (embedded in the binary by loadtest/media.rs): a
# two-second moving test pattern per simulcast layer, VP8 in IVF, one keyframe at the start
# and none after (a bot restarts the loop when asked for a keyframe), no hidden alt-ref
# frames. Needs python3 and vpxenc (apt-get install vpx-tools). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
frames=60
# Targets above the layers' rates: over two seconds the encoder settles about a fifth below.
for layer in "l 320 180 190" "m 640 360 640" "h 1280 720 1900"; do
  set -- $layer
  python3 pattern.py "$2" "$3" "$frames" > "$tmp/$1.y4m"
  vpxenc --quiet --codec=vp8 --end-usage=cbr --target-bitrate="$4" --fps=30/1 --timebase=1/30 \
    --kf-min-dist=9999 --kf-max-dist=9999 --auto-alt-ref=0 --lag-in-frames=0 --error-resilient=1 \
    --cpu-used=4 --undershoot-pct=5 --ivf -o "$1.ivf" "$tmp/$1.y4m"
  echo "$1.ivf: $(stat -c %s "$1.ivf") bytes, $frames frames"
done
