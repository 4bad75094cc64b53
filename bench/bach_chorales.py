#!/usr/bin/env python3
"""Bach's chorales as MIDI files: the public benchmark of `experiments/bach.toml`, a corpus none of the defaults
were tuned on (docs/src/guide/bach.md).

    python3 bench/bach_chorales.py data/bach          # ~410 files; the first time a few minutes

It needs only Python 3 and network access to PyPI the first time: it installs music21 (pinned, below) into a
virtual environment outside the clone (`$PIPELINE_BENCH_VENVS`, default `~/.cache/pipeline/venvs`) and runs itself
there. music21's corpus ships the chorales as MusicXML; music21 writes each one as a MIDI file (one track per voice,
all on the piano). Files music21 cannot read or write are listed and skipped. Existing files in OUT_DIR are
overwritten, nothing else there is touched.
"""
import os
import subprocess
import sys

MUSIC21 = "10.5.1"


def venv_python():
    root = os.environ.get("PIPELINE_BENCH_VENVS") or os.path.join(os.path.expanduser("~"), ".cache", "pipeline", "venvs")
    venv = os.path.join(root, f"music21-{MUSIC21}")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(os.path.join(venv, ".complete")):
        print(f"installing music21 {MUSIC21} into {venv} (once)", file=sys.stderr)
        if subprocess.run([sys.executable, "-m", "venv", "--clear", venv]).returncode != 0:
            sys.exit(f"cannot make a virtual environment at {venv}: install Python's venv module (Debian and Ubuntu: "
                     "apt install python3-venv), or set PIPELINE_BENCH_VENVS to a writable folder")
        if subprocess.run([python, "-m", "pip", "install", "-q", f"music21=={MUSIC21}"]).returncode != 0:
            sys.exit(f"cannot install music21 {MUSIC21} from PyPI into {venv}: pip's message is above")
        open(os.path.join(venv, ".complete"), "w").close()
    return python


def write(out):
    from music21 import corpus

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


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR   (e.g. data/bach, where experiments/bach.toml looks)")
    try:
        import music21

        if music21.__version__ != MUSIC21:
            raise ImportError
    except ImportError:
        python = venv_python()
        sys.exit(subprocess.run([python, os.path.abspath(__file__), sys.argv[1]]).returncode)
    write(sys.argv[1])


if __name__ == "__main__":
    main()
