#!/usr/bin/env python3
"""Bach's chorales as MIDI files, a corpus none of the defaults were tuned on (README, "Is it learning music?").

    python3 -m venv /tmp/m21 && /tmp/m21/bin/pip install music21
    /tmp/m21/bin/python bench/bach_chorales.py /tmp/bach          # ~410 files, a few minutes

music21's corpus ships the chorales as MusicXML; music21 writes each one as a MIDI file (one track per voice, all
on the piano). Files music21 cannot read or write are listed and skipped.
"""
import os, sys

from music21 import corpus

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
paths = [p for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml", ".musicxml"))]
written, failed = 0, []
for path in sorted(paths, key=str):
    name = os.path.splitext(os.path.basename(str(path)))[0]
    try:
        corpus.parse(path).write("midi", fp=os.path.join(out, f"{name}.mid"))
        written += 1
    except Exception as e:  # music21 raises many kinds; a skipped file is named below
        failed.append(f"{name}: {e}")
print(f"{written} chorales written to {out}; {len(failed)} skipped")
for f in failed:
    print("  skipped", f)
