#!/usr/bin/env python3
"""Synthetic MIDI corpora for scale checks (docs/src/dev/development.md, "Scale"); optional, never needed by the tests.

    python3 bench/make_corpus.py big 7500000 /tmp/one/huge.mid   # one ~50 MB file, 7.5 M notes
    python3 bench/make_corpus.py many 10000 /tmp/many            # 10,000 files of 200 notes
    python3 bench/make_corpus.py varied 1000 /tmp/varied         # 1,000 files of 200 onsets, chords and rhythm

Each file is format 0, one piano part of random notes (seeded), written with running status. `many` plays quavers
over two octaves (a vocabulary of 26 timed tokens); `varied` plays notes and two- or three-note chords over four
octaves with six lengths and rests, so its n-grams are nearly all distinct (the n-gram floor's worst case).
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
def varied(onsets, seed):
    r = random.Random(seed)
    ev = bytearray(b"\x00\xc0\x00")
    rest = 0
    for _ in range(onsets):
        keys = sorted(r.sample(range(36, 84), r.choice([1, 1, 1, 2, 3])))
        length = r.choice([120, 240, 240, 360, 480, 960])
        for i, k in enumerate(keys):
            ev += vlq(rest if i == 0 else 0) + bytes([0x90, k, 80])
        for i, k in enumerate(keys):
            ev += vlq(length if i == 0 else 0) + bytes([0x80, k, 0])
        rest = r.choice([0, 0, 0, 240])
    ev += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + track(bytes(ev))
mode = sys.argv[1]
if mode == "big":
    data = song(int(sys.argv[2]), 1)
    open(sys.argv[3], "wb").write(data)
    print(len(data))
else:
    d = sys.argv[3]; os.makedirs(d, exist_ok=True)
    make = song if mode == "many" else varied
    for i in range(int(sys.argv[2])):
        open(f"{d}/{i:05}.mid", "wb").write(make(200, i))
