#!/usr/bin/env python3
"""Reference training: the same recipe as an experiment's `train` stage, in PyTorch, on the same ids and split.

Optional, never needed by the tests. It answers "is pipeline's time to beat the n-gram floor a property of the
recipe, or of the implementation?" Run both on one machine in one sitting (docs/src/guide/learning-music.md):

    pipeline bench ngram experiments/bach.toml --export /tmp/lm       # ids, the floor, the train stage's recipe
    python3 bench/torch_lm.py /tmp/lm --threads 2 --csv /tmp/torch-loss.csv
    pipeline run experiments/bach.toml                                  # its loss.csv: the same columns

`meta.json` (written by the export) carries the vocabulary, the window length, the floor's held-out loss and the
train stage's parameters; this script trains what they say:

- embedding -> LSTM layers (dropout between them) -> dense with ReLU -> dropout -> linear to the vocabulary;
- each epoch draws `epoch_windows` training windows (stride 1, never across files) from a fresh shuffle, a loss at
  every step with `targets = "all"` (else after the last), in batches of `batch_size`;
- Adam (beta 0.9/0.999, eps 1e-7 as Keras and pipeline) or RMSprop (alpha 0.9, eps 1e-7), `clip_norm`, and the
  `constant` / `plateau` (halve after `lr_patience` epochs without a lower validation loss) / `cosine` schedules with
  `warmup`;
- validation as pipeline scores it: the token after every whole window of every held-out file, no dropout;
- early stopping after `patience` epochs without a lower validation loss.

It prints one line per epoch and, at the end, the wall time at which the validation loss first went below the floor
(epoch time summed, as pipeline's `seconds` column). Initial weights and shuffles are PyTorch's own (seeded with
`seed`), so the losses follow the same course, not the same digits.
"""

import argparse
import json
import math
import os
import random
import time

import torch
from torch import nn


def read_ids(path):
    with open(path) as f:
        return [[int(t) for t in line.split()] for line in f if line.strip()]


def window_starts(files, seq_len):
    """One flat id array and the start of every window (seq_len ids and the one after) inside a file."""
    flat, starts = [], []
    for ids in files:
        base = len(flat)
        flat.extend(ids)
        starts.extend(base + s for s in range(max(0, len(ids) - seq_len)))
    return torch.tensor(flat, dtype=torch.long), torch.tensor(starts, dtype=torch.long)


class Net(nn.Module):
    def __init__(self, vocab, p):
        super().__init__()
        self.embed = nn.Embedding(vocab, p["embed_dim"])
        self.lstm = nn.LSTM(p["embed_dim"], p["hidden"], num_layers=p["layers"], batch_first=True,
                            dropout=p["dropout"] if p["layers"] > 1 else 0.0)
        width = p["hidden"]
        self.dense = nn.Linear(width, p["dense"]) if p["dense"] > 0 else None
        self.drop = nn.Dropout(p["dropout"])
        self.out = nn.Linear(p["dense"] if p["dense"] > 0 else width, vocab)

    def forward(self, ids, every):
        x, _ = self.lstm(self.embed(ids))
        if not every:
            x = x[:, -1]
        if self.dense is not None:
            x = self.drop(torch.relu(self.dense(x)))
        return self.out(x)


def recipe(meta):
    """The train stage's parameters, with pipeline's defaults for those the export leaves out."""
    p = {"layers": 2, "hidden": 128, "dropout": 0.3, "dense": 256, "embed_dim": 32, "epochs": 10,
         "batch_size": 32, "optimizer": "rmsprop", "learning_rate": 0.001, "seed": 42, "patience": 0,
         "epoch_windows": 0, "targets": "last", "lr_schedule": "constant", "lr_patience": 2, "warmup": 0,
         "clip_norm": 0.0, "input": "embedding"}
    p.update(meta.get("train") or {})
    if p["input"] != "embedding":
        raise SystemExit("torch_lm.py trains `input = \"embedding\"` recipes only")
    return p


def rate(p, epoch, history):
    base, warmup = p["learning_rate"], p["warmup"]
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    if p["lr_schedule"] == "cosine":
        span = max(p["epochs"] - warmup, 1)
        return base * 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / span))
    if p["lr_schedule"] == "plateau":
        best, since, halvings = math.inf, 0, 0
        for loss in history:
            if loss < best:
                best, since = loss, 0
            else:
                since += 1
                if since >= max(p["lr_patience"], 1):
                    halvings, since = halvings + 1, 0
        return base * 0.5 ** halvings
    return base


def gather(flat, starts, seq_len, every):
    offsets = torch.arange(seq_len)
    x = flat[starts[:, None] + offsets]
    y = flat[starts[:, None] + offsets + 1] if every else flat[starts + seq_len]
    return x, y


def evaluate(net, flat, starts, seq_len, batch):
    net.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            x, y = gather(flat, starts[i:i + batch], seq_len, False)
            total += nn.functional.cross_entropy(net(x, False), y, reduction="sum").item()
            n += len(y)
    net.train()
    return total / max(n, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="the folder `pipeline bench ngram FILE --export DIR` wrote")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="instead of the recipe's")
    ap.add_argument("--csv", help="write epoch,train_loss,val_loss,seconds here")
    a = ap.parse_args()
    with open(os.path.join(a.dir, "meta.json")) as f:
        meta = json.load(f)
    p = recipe(meta)
    epochs = a.epochs or p["epochs"]
    torch.set_num_threads(a.threads)
    torch.manual_seed(p["seed"])
    random.seed(p["seed"])
    seq_len, vocab, floor = meta["seq_len"], meta["vocab"], meta.get("floor_val_loss")
    train_flat, train_starts = window_starts(read_ids(os.path.join(a.dir, "train.txt")), seq_len)
    val_flat, val_starts = window_starts(read_ids(os.path.join(a.dir, "validation.txt")), seq_len)
    every = p["targets"] == "all"
    net = Net(vocab, p)
    if p["optimizer"] == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=p["learning_rate"], eps=1e-7)
    elif p["optimizer"] == "rmsprop":
        opt = torch.optim.RMSprop(net.parameters(), lr=p["learning_rate"], alpha=0.9, eps=1e-7)
    else:
        raise SystemExit(f"torch_lm.py has no optimizer {p['optimizer']!r}")
    per_epoch = p["epoch_windows"] or len(train_starts)
    per_epoch = min(per_epoch, len(train_starts))
    batch = p["batch_size"]
    print(f"torch {torch.__version__}, {a.threads} threads: {len(train_starts)} training windows "
          f"({per_epoch} an epoch), {len(val_starts)} held-out, vocabulary {vocab}, floor "
          + (f"{floor:.4f}" if floor is not None else "none"))
    history, elapsed, to_floor, best_at = [], 0.0, None, 0
    rows = ["epoch,train_loss,val_loss,seconds,lr"]
    for epoch in range(epochs):
        lr = rate(p, epoch, history)
        for g in opt.param_groups:
            g["lr"] = lr
        started = time.perf_counter()
        order = train_starts[torch.randperm(len(train_starts))[:per_epoch]]
        total = 0.0
        for i in range(0, per_epoch, batch):
            x, y = gather(train_flat, order[i:i + batch], seq_len, every)
            logits = net(x, every)
            loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            if p["clip_norm"] > 0:
                nn.utils.clip_grad_norm_(net.parameters(), p["clip_norm"])
            opt.step()
            total += loss.item() * len(x)
        val = evaluate(net, val_flat, val_starts, seq_len, batch)
        seconds = time.perf_counter() - started
        elapsed += seconds
        if floor is not None and to_floor is None and val < floor:
            to_floor = elapsed
        best = not history or val < min(history)
        history.append(val)
        if best:
            best_at = epoch + 1
        print(f"epoch {epoch + 1}/{epochs} train {total / per_epoch:.4f} val {val:.4f} "
              f"{seconds:.1f} s (lr {lr:.2e}){' best' if best else ''}", flush=True)
        rows.append(f"{epoch + 1},{total / per_epoch:.6f},{val:.6f},{seconds:.3f},{lr:.6g}")
        if p["patience"] and epoch + 1 - best_at >= p["patience"]:
            break
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("\n".join(rows) + "\n")
    print(f"best held-out loss {min(history):.4f} (epoch {best_at}), {elapsed:.0f} s in all; "
          + (f"below the floor ({floor:.4f}) after {to_floor:.0f} s" if to_floor is not None
             else "never below the floor" + (f" ({floor:.4f})" if floor is not None else " (none exported)")))


if __name__ == "__main__":
    main()
