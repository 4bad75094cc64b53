#!/usr/bin/env python3
"""Reference timing: the same network and training step as `pipeline bench train`, in PyTorch.

Optional, never needed by the tests. Run both on one machine in one sitting:

    pip install torch numpy            # CPU wheels are enough
    python3 bench/torch_lstm.py --layers 2 --hidden 256 --seq-len 64 --threads 2
    target/release/pipeline bench train --layers 2 --hidden 256 --seq-len 64

    python3 bench/torch_lstm.py --layers 3 --hidden 512 --seq-len 100 --vocab 154 --threads 2
    target/release/pipeline bench train --layers 3 --hidden 512 --seq-len 100 --vocab 154

The network: input (id / vocab as one float, or an embedding) -> LSTM -> dropout -> ... -> LSTM (last step) ->
dense (ReLU) -> dropout -> linear to the vocabulary, cross-entropy, RMSprop (alpha 0.9, eps 1e-7, as Keras and
`pipeline`). FLOPs are counted as `pipeline` counts them: matrix products only, backward at twice the forward.
"""

import argparse
import statistics
import time

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, vocab, layers, hidden, dense, dropout, embedding, embed_dim):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, embed_dim) if embedding else None
        width = embed_dim if embedding else 1
        self.lstm = nn.LSTM(width, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0, batch_first=True)
        self.dense = nn.Linear(hidden, dense) if dense > 0 else None
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dense if dense > 0 else hidden, vocab)

    def forward(self, ids):
        x = self.embed(ids) if self.embed is not None else (ids.float() / self.vocab).unsqueeze(-1)
        out, _ = self.lstm(x)
        x = out[:, -1]
        if self.dense is not None:
            x = self.drop(torch.relu(self.dense(x)))
        return self.out(x)


def forward_flops(a, input_dim):
    b, t, h = a.batch, a.seq_len, a.hidden
    width, flops = input_dim, 0.0
    for _ in range(a.layers):
        flops += 2 * b * t * width * 4 * h + 2 * b * t * h * 4 * h
        width = h
    if a.dense > 0:
        flops += 2 * b * width * a.dense
        width = a.dense
    return flops + 2 * b * width * a.vocab


def sgemm_peak():
    n = 1024
    x, y = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(6):
        start = time.perf_counter()
        (x @ y).sum().item()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--vocab", type=int, default=150)
    p.add_argument("--dense", type=int, default=256)
    p.add_argument("--input", choices=["scalar", "embedding"], default="scalar")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    net = Net(a.vocab, a.layers, a.hidden, a.dense, 0.3, a.input == "embedding", a.embed_dim).to(dev)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    ids = torch.randint(0, a.vocab, (a.batch, a.seq_len), device=dev)
    targets = torch.randint(0, a.vocab, (a.batch,), device=dev)
    times = []
    for i in range(a.steps + 2):
        start = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(net(ids), targets)
        loss.backward()
        opt.step()
        loss.item()  # waits for the device
        if i >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    flops = 3 * forward_flops(a, a.embed_dim if a.input == "embedding" else 1)
    gflops = flops / (ms / 1e3) / 1e9
    print(f"torch {torch.__version__} train {a.layers}x{a.hidden} seq_len {a.seq_len} batch {a.batch} {a.input} "
          f"vocab {a.vocab} dense {a.dense} on {a.device} ({a.threads} threads)")
    print(f"  median {ms:.1f} ms/step over {len(times)} steps (min {min(times):.1f}, max {max(times):.1f})")
    print(f"  {a.batch / (ms / 1e3):.0f} windows/s")
    print(f"  {gflops:.1f} GFLOP/s of matrix products ({flops / 1e9:.2f} GFLOP per step)")
    if a.device == "cpu":
        peak = sgemm_peak()
        print(f"  {100 * gflops / peak:.0f}% of this machine's sgemm ({peak:.1f} GFLOP/s, 1024^3 in torch)")


if __name__ == "__main__":
    main()
