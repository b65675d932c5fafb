#!/usr/bin/env bash
# Re-encodes the load test's video clips (embedded in the binary by loadtest/media.rs): a
# two-second moving test pattern per simulcast layer, VP8 in IVF, one keyframe at the start
# and none after (a bot restarts the loop when asked for a keyframe), no hidden alt-ref
# frames. Each layer has a constant quantizer chosen for about the browser client's rate
# (150, 500, 1500 kbit/s): a rate-controlled encoder starts its frames after a keyframe far
# below its target, and a loop restarted on every keyframe request would then send less
# than the layer's rate. Needs python3 and vpxenc (apt-get install vpx-tools).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
frames=60
for layer in "l 320 180 30" "m 640 360 11" "h 1280 720 6"; do
  set -- $layer
  python3 pattern.py "$2" "$3" "$frames" > "$tmp/$1.y4m"
  # vpxenc asks before using equal min and max quantizers: yes.
  vpxenc --quiet --codec=vp8 --end-usage=q --cq-level="$4" --min-q="$4" --max-q="$4" \
    --fps=30/1 --timebase=1/30 --kf-min-dist=9999 --kf-max-dist=9999 --auto-alt-ref=0 \
    --lag-in-frames=0 --error-resilient=1 --cpu-used=4 --ivf -o "$1.ivf" "$tmp/$1.y4m" 2>/dev/null < <(yes)
  echo "$1.ivf: $(stat -c %s "$1.ivf") bytes, $frames frames"
done
