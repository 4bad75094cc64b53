#!/usr/bin/env python3
"""An independent interpolated modified Kneser-Ney model, to check `pipeline`'s `ngram` stage (docs/src/guide/learning-music.md, "Is it
learning music?"). Written from Chen & Goodman (1998) with plain dictionaries of tuples, sharing no code with the
Rust one:

    pipeline bench ngram experiments/baseline.toml --export /tmp/kn     # the windows' ids
    python3 bench/kneser_ney.py /tmp/kn                                  # held-out nats/token of every order
    python3 bench/kneser_ney.py /tmp/kn --expect reports/baseline/<run>/ngram.csv   # and compare (within 1 %)

Conventions (the same as the stage's, stated in src/nn/ngram.rs): n-grams never span two files; the highest order
uses raw counts, lower orders continuation counts (distinct left neighbours, plus one for an n-gram that opens a
file); three discounts per order from its count-of-counts, or one discount Y clamped to [0.05, 0.95] where those
are undefined or out of range; the lowest order interpolates with the uniform distribution over the vocabulary. A
held-out target is the token after each whole window of `seq_len` tokens in a validation file, and its context is
at most the window.
"""
import argparse, csv, json, math, sys
from collections import Counter, defaultdict


def read(path):
    with open(path) as f:
        return [[int(x) for x in line.split()] for line in f if line.strip()]


def discounts(counts):
    n = Counter(c for c in counts if 1 <= c <= 4)
    n1, n2, n3, n4 = (n[k] for k in (1, 2, 3, 4))
    try:
        y = n1 / (n1 + 2 * n2)
        d = [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
        if all(0 < dk < k + 1 for k, dk in enumerate(d)):
            return d
    except ZeroDivisionError:
        y = None
    one = min(max(y, 0.05), 0.95) if y is not None else 0.5
    return [one] * 3


class KneserNey:
    def __init__(self, files, order, vocab):
        self.order, self.vocab = order, vocab
        raw = [Counter() for _ in range(order + 1)]          # raw[n][ngram]
        left = [defaultdict(set) for _ in range(order + 1)]   # left[n][ngram] = tokens seen before it
        opens = [set() for _ in range(order + 1)]
        for seq in files:
            for i in range(len(seq)):
                for n in range(1, order + 1):
                    if i + n > len(seq):
                        break
                    g = tuple(seq[i:i + n])
                    raw[n][g] += 1
                    if i == 0:
                        opens[n].add(g)
                    else:
                        left[n][g].add(seq[i - 1])
        cont = [Counter() for _ in range(order + 1)]
        for n in range(1, order + 1):
            for g in raw[n]:
                cont[n][g] = len(left[n][g]) + (1 if g in opens[n] else 0)
        self.counts = {"raw": raw, "cont": cont}
        self.d = {kind: [None] + [discounts(list(self.counts[kind][n].values())) for n in range(1, order + 1)]
                  for kind in ("raw", "cont")}
        # Per context: (sum of followers' counts, [N1, N2, N3+]).
        self.ctx = {}
        for kind in ("raw", "cont"):
            table = [dict() for _ in range(order + 1)]
            for n in range(1, order + 1):
                for g, c in self.counts[kind][n].items():
                    total, ns = table[n].get(g[:-1], (0, [0, 0, 0]))
                    ns = list(ns)
                    ns[min(c, 3) - 1] += 1
                    table[n][g[:-1]] = (total + c, ns)
            self.ctx[kind] = table

    def level(self, kind, n, h, w, lower):
        total, ns = self.ctx[kind][n].get(h, (0, [0, 0, 0]))
        if total == 0:
            return lower
        d = self.d[kind][n]
        c = self.counts[kind][n].get(h + (w,), 0)
        own = max(c - d[min(c, 3) - 1], 0) if c else 0.0
        gamma = (d[0] * ns[0] + d[1] * ns[1] + d[2] * ns[2]) / total
        return own / total + gamma * lower

    def prob(self, history, w, order):
        """p(w | history) under the model of `order` (raw counts at its top level)."""
        p = 1.0 / self.vocab
        for n in range(1, order + 1):
            h = tuple(history[len(history) - (n - 1):]) if n > 1 else ()
            if len(h) < n - 1:
                break
            p = self.level("raw" if n == order else "cont", n, h, w, p)
        return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", help="a folder written by `pipeline bench ngram --export`")
    ap.add_argument("--expect", help="an ngram.csv to compare with: every order within 1 %%")
    args = ap.parse_args()
    meta = json.load(open(f"{args.export}/meta.json"))
    order, vocab, seq_len = meta["order"], meta["vocab"], meta["seq_len"]
    model = KneserNey(read(f"{args.export}/train.txt"), order, vocab)
    nll, targets = [0.0] * (order + 1), 0
    for seq in read(f"{args.export}/validation.txt"):
        for p in range(seq_len, len(seq)):
            history = seq[p - seq_len:p][-(order - 1):] if order > 1 else []
            targets += 1
            for k in range(1, order + 1):
                nll[k] -= math.log(model.prob(history, seq[p], k))
    ours = {k: nll[k] / targets for k in range(1, order + 1)}
    print(f"{targets} held-out targets, vocabulary {vocab}, windows of {seq_len}")
    print("order  held-out nats/token")
    for k, v in ours.items():
        print(f"{k:>5}  {v:.4f}")
    if args.expect:
        theirs = {int(r["order"]): float(r["val_loss"]) for r in csv.DictReader(open(args.expect))}
        worst = max(abs(ours[k] - theirs[k]) / theirs[k] for k in ours)
        print(f"largest relative difference from {args.expect}: {100 * worst:.4f} %")
        if worst > 0.01:
            sys.exit(1)


if __name__ == "__main__":
    main()
