//! Scoring windows on the CPU: the whole LSTM stack run step by step for the token after each window, keeping
//! only the state.
//!
//! Training needs every step's gates and cells for its backward pass, so [`crate::nn::fast_lstm`] runs one layer
//! over every step before the next layer starts. Scoring needs none of that: for a batch of 96 windows of 64 steps
//! at 256 units, the layer-at-a-time pass wrote 25 MB of gates and 12 MB of cells per layer, far beyond the caches,
//! to read back the last hidden state. Here every layer advances one step at a time, each thread over its own slice
//! of windows; an upper layer's input projection and recurrent product are one product (`[input | h] ·
//! [W_ih | W_hh]ᵀ`, twice as deep as either, so gemm runs nearer its peak), and the state of a slice stays in cache.

use candle_core::{Result, Tensor};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::nn::fast_lstm::{Recurrent, activate, cpu_f32, rows_per_thread, tanh};

/// One upper layer of a stack: `[W_ih | W_hh]` `(4H, D + H)` and the summed biases `(4H)`.
pub struct Upper {
    pub w: Tensor,
    pub bias: Tensor,
}

/// The last hidden state of the top layer `(B, H)` after each window `ids` `(B, T)`, from a zero state. The first
/// layer's input projections (input weights and both biases applied) are rows of `table` `(vocab, 4H)`, its
/// recurrent weights `w_hh` `(4H, H)`; `upper` are the layers above it, each as wide as the first.
pub fn score_last(ids: &Tensor, table: &Tensor, w_hh: &Tensor, upper: &[Upper]) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let (vocab, g4) = table.dims2()?;
    let h = g4 / 4;
    if g4 != 4 * h || w_hh.dims2()? != (g4, h) {
        candle_core::bail!(
            "fast scoring: table {:?} and recurrent weights {:?} do not fit together",
            table.shape(),
            w_hh.shape()
        );
    }
    for layer in upper {
        if layer.w.dims2()? != (g4, 2 * h) || layer.bias.dims1()? != g4 {
            candle_core::bail!(
                "fast scoring: an upper layer's weights {:?} and bias {:?} do not fit {h} units",
                layer.w.shape(),
                layer.bias.shape()
            );
        }
    }
    let ids = ids.flatten_all()?.to_vec1::<u32>()?;
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        candle_core::bail!("fast scoring: token id {bad} is outside the vocabulary of {vocab}");
    }
    if b == 0 || t == 0 {
        return Tensor::zeros((b, h), candle_core::DType::F32, table.device());
    }
    let table = table.contiguous()?;
    let first = w_hh.contiguous()?;
    let uppers: Vec<(Tensor, Tensor)> = upper
        .iter()
        .map(|l| Ok((l.w.contiguous()?, l.bias.contiguous()?)))
        .collect::<Result<_>>()?;
    let held_table = table.storage_and_layout();
    let held_first = first.storage_and_layout();
    let held_upper: Vec<_> = uppers
        .iter()
        .map(|(w, bias)| (w.storage_and_layout(), bias.storage_and_layout()))
        .collect();
    let rows = rows_per_thread(b);
    let mut layers = vec![Layer {
        recurrent: Recurrent::new(cpu_f32(&held_first, "the weights")?, (h, g4), (1, h), rows),
        bias: None,
        input: 0,
    }];
    for (w, bias) in &held_upper {
        layers.push(Layer {
            recurrent: Recurrent::new(cpu_f32(w, "the weights")?, (2 * h, g4), (1, 2 * h), rows),
            bias: Some(cpu_f32(bias, "the bias")?),
            input: h,
        });
    }
    let rows_of = cpu_f32(&held_table, "the table")?;
    let mut last = vec![0f32; b * h];
    last.par_chunks_mut(rows * h)
        .zip(ids.par_chunks(rows * t))
        .for_each(|(last, ids)| score_rows(ids, rows_of, &layers, (t, h), last));
    Tensor::from_vec(last, (b, h), table.device())
}

/// One layer as the scorer steps it.
struct Layer<'a> {
    /// `W_hhᵀ` `(H, 4H)` for the first layer; `[W_ih | W_hh]ᵀ` `(D + H, 4H)` above it.
    recurrent: Recurrent<'a>,
    /// The summed biases of an upper layer; the first layer's are in the table.
    bias: Option<&'a [f32]>,
    /// Width of the input beside the hidden state in the layer's product: 0 for the first layer.
    input: usize,
}

/// Runs a slice of windows (`ids` row-major, `t` a row) through every layer and writes the top layer's last hidden
/// state into `last`. Each layer keeps `[input | h]` per window as one row (its product's left side: the layer below
/// writes its new hidden state into the input half), its cells, and one step's gates.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn score_rows(
    ids: &[u32],
    table: &[f32],
    layers: &[Layer],
    (t, h): (usize, usize),
    last: &mut [f32],
) {
    let g4 = 4 * h;
    let rows = ids.len() / t;
    let mut states: Vec<Vec<f32>> = layers
        .iter()
        .map(|l| vec![0f32; rows * (l.input + h)])
        .collect();
    let mut cells: Vec<Vec<f32>> = layers.iter().map(|_| vec![0f32; rows * h]).collect();
    let mut gates = vec![0f32; rows * g4];
    for step in 0..t {
        for (l, layer) in layers.iter().enumerate() {
            let width = layer.input + h;
            // gates = the input projection (a table row, or the bias) + [input | h] · [W_ih | W_hh]ᵀ.
            match layer.bias {
                None => {
                    for (row, &id) in gates
                        .chunks_exact_mut(g4)
                        .zip(ids[step..].iter().step_by(t))
                    {
                        row.copy_from_slice(&table[id as usize * g4..][..g4]);
                    }
                }
                Some(bias) => gates
                    .chunks_exact_mut(g4)
                    .for_each(|row| row.copy_from_slice(bias)),
            }
            // At the first step the first layer's state is zero and its input is in the table: nothing to add.
            if step > 0 || layer.input > 0 {
                layer
                    .recurrent
                    .product(rows, (&mut gates, g4), true, (&states[l], width));
            }
            let (below, here) = states.split_at_mut(l + 1);
            let state = &mut below[l];
            for r in 0..rows {
                let g = &mut gates[r * g4..][..g4];
                let hd = &mut state[r * width + layer.input..][..h];
                cell_step(g, &mut cells[l][r * h..][..h], hd);
                if let Some(next) = here.first_mut() {
                    let next_width = next.len() / rows;
                    next[r * next_width..][..h].copy_from_slice(hd);
                }
            }
        }
    }
    let top = states.last().expect("a stack has a layer");
    let width = top.len() / rows;
    for (r, out) in last.chunks_exact_mut(h).enumerate() {
        out.copy_from_slice(&top[r * width + width - h..][..h]);
    }
}

/// One step of one window: activates the gates `g` (i, f, g, o, each `H` wide) in place, updates the cell state
/// `c` in place and writes the hidden state into `hd`. The same arithmetic as training's forward pass.
#[inline(always)]
fn cell_step(g: &mut [f32], c: &mut [f32], hd: &mut [f32]) {
    let h = c.len();
    activate(g, h);
    let (i, f, gg, o) = (&g[..h], &g[h..2 * h], &g[2 * h..3 * h], &g[3 * h..]);
    for j in 0..h {
        c[j] = f[j] * c[j] + i[j] * gg[j];
    }
    hd.iter_mut()
        .zip(o.iter().zip(&*c))
        .for_each(|(hd, (&o, &c))| *hd = o * tanh(c));
}
