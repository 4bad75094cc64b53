#!/usr/bin/env python3
"""Synthetic MIDI corpora for scale checks (README, "Scale"); optional, never needed by the tests.

    python3 bench/make_corpus.py big 7500000 /tmp/one/huge.mid   # one ~50 MB file, 7.5 M notes
    python3 bench/make_corpus.py many 10000 /tmp/many            # 10,000 files of 200 notes

Each file is format 0, one piano part of random notes (seeded), written with running status.
"""
import struct, sys, os, random
def vlq(n):
    out = [n & 0x7f]; n >>= 7
    while n:
        out.append((n & 0x7f) | 0x80); n >>= 7
    return bytes(reversed(out))
def track(events):
    return b"MTrk" + struct.pack(">I", len(events)) + events
def song(notes, seed, program=0):
    r = random.Random(seed)
    ev = bytearray(b"\x00\xc0" + bytes([program]))
    for i in range(notes):
        k = 48 + r.randrange(24)
        ev += bytes([0, 0x90, k, 80]) if i == 0 else bytes([0, k, 80])  # on (running status after the first)
        ev += vlq(240) + bytes([k, 0])   # off (velocity 0)
    ev += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + track(bytes(ev))
mode = sys.argv[1]
if mode == "big":
    data = song(int(sys.argv[2]), 1)
    open(sys.argv[3], "wb").write(data)
    print(len(data))
else:
    d = sys.argv[3]; os.makedirs(d, exist_ok=True)
    for i in range(int(sys.argv[2])):
        open(f"{d}/{i:05}.mid", "wb").write(song(200, i))
