"""A moving test pattern as raw YUV 4:2:0 in a Y4M stream on stdout: a field of smooth
waves and fine stripes that pans, and a textured square that crosses it, so that the encoder
spends about what it would on a camera. Deterministic."""
import math
import sys

width, height, frames = (int(a) for a in sys.argv[1:4])
scale = width / 1280


def wave(x, period, amplitude):
    return amplitude * math.sin(2 * math.pi * x / (period * scale))


# Rows are a horizontal profile (panned each frame) plus a vertical offset, quantised so
# that a few hundred precomputed rows cover every frame.
profile = [wave(x, 160, 40) + wave(x, 23, 20) + wave(x, 5, 12) for x in range(2 * width)]
levels = {}


def row(offset):
    key = round(offset)
    if key not in levels:
        levels[key] = bytes(max(16, min(235, int(110 + p + key))) for p in profile)
    return levels[key]


side = height // 3
box = [bytes(235 if ((x // max(1, int(8 * scale))) + (y // max(1, int(8 * scale)))) % 2 else 60 for x in range(side)) for y in range(side)]
out = sys.stdout.buffer
out.write(b"YUV4MPEG2 W%d H%d F30:1 Ip A1:1 C420jpeg\n" % (width, height))
for t in range(frames):
    out.write(b"FRAME\n")
    shift = (t * 4 * max(1, int(scale * 2))) % width
    box_x = (t * (width - side)) // max(frames - 1, 1)
    box_y = side + int(side / 3 * math.sin(2 * math.pi * t / frames))
    for y in range(height):
        line = bytearray(row(wave(y, 90, 30) + wave(y, 9, 12))[shift:shift + width])
        if box_y <= y < box_y + side:
            line[box_x:box_x + side] = box[y - box_y]
        out.write(line)
    for plane in (128, 128):
        out.write(bytes([plane]) * ((width // 2) * (height // 2)))
