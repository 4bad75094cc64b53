//! A fast LSTM layer for training on the CPU: the whole sequence's recurrence and its backward pass through time
//! as one candle custom op, instead of hundreds of small autograd nodes.
//!
//! The input projection of every step (`x · W_ihᵀ + b`) stays one large candle matmul, so autograd handles it. This
//! op takes those pre-activations and `W_hh` and runs the recurrence: per step one sgemm (`h · W_hhᵀ`, weights read
//! in place, no transposed copy) and one fused pass over the four gates. It keeps the gate activations and cell states
//! for the backward pass, which again needs one sgemm per step (`dgates · W_hh`) plus, for `W_hh`'s gradient, one
//! large sgemm per sequence at the end. Buffers are allocated once per call, never per step. f32 on the CPU only;
//! [`crate::model::Lstm`] falls back to plain candle ops on other devices and types.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// `dst = (accumulate ? dst : 0) + lhs · rhs` for row-major views given by strides: `dst` is m×n with row stride
/// `dst_rs`, `lhs` m×k, `rhs` k×n. Every index is checked against the slices before gemm runs.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + (n - 1) < dst.len(),
        "sgemm: dst out of bounds"
    );
    assert!(
        (m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len(),
        "sgemm: lhs out of bounds"
    );
    assert!(
        (k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len(),
        "sgemm: rhs out of bounds"
    );
    // Single-threaded: the callers run one slice of sequences per thread.
    let parallelism = Parallelism::None;
    // SAFETY: the asserts above keep every element gemm reads or writes inside the three slices, and `dst` does
    // not overlap `lhs` or `rhs` (it is a distinct `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// e^x for f32 in straight-line arithmetic (Cody–Waite range reduction and a degree-6 polynomial, as in Cephes'
/// `expf`), within 3 ulp of libm. Unlike a call into libm it inlines, so loops over gates vectorize: the
/// transcendental functions were a fifth of a training step.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and subtracting 1.5·2²³ (no call to `roundf`, which does not vectorize).
    const SHIFT: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh(x) = 2σ(2x) − 1: absolute error below 3e-7 (a few ulp near ±1).
#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 / (1.0 + exp(-2.0 * x)) - 1.0
}

/// What the forward pass keeps for the backward pass.
struct Saved {
    /// Activated gates i, f, g, o per (batch, step): `(B, T, 4H)`.
    gates: Vec<f32>,
    /// Cell states `(B, T, H)`.
    cells: Vec<f32>,
    /// `tanh` of the cell states, kept so the backward pass does not recompute it.
    cells_tanh: Vec<f32>,
    /// Hidden states `(B, T, H)` (the op's output).
    hidden: Vec<f32>,
    /// `W_hh`, `(4H, H)`.
    w_hh: Vec<f32>,
}

/// The recurrence of one LSTM layer over a whole sequence from a zero state.
/// Inputs: pre-activations `(B, T, 4H)` (input projection and both biases applied) and `W_hh` `(4H, H)`.
/// Output: every step's hidden state `(B, T, H)`.
pub struct LstmSequence {
    saved: Mutex<Option<Saved>>,
}

impl LstmSequence {
    pub fn new() -> Self {
        Self {
            saved: Mutex::new(None),
        }
    }
}

impl Default for LstmSequence {
    fn default() -> Self {
        Self::new()
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("fast LSTM: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("fast LSTM: {what} must be contiguous"),
    }
}

/// How many sequences of a batch each thread takes: sequences are independent, so each thread runs the whole
/// recurrence for its slice with single-threaded products, and no thread waits for another at every step.
fn rows_per_thread(b: usize) -> usize {
    b.div_ceil(candle_core::utils::get_num_threads().clamp(1, b.max(1)))
        .max(1)
}

/// Runs the forward recurrence; returns the saved state (its `hidden` is the output).
fn forward(xg: &[f32], w_hh: &[f32], b: usize, t: usize, h: usize) -> Saved {
    let g4 = 4 * h;
    let mut gates = xg.to_vec();
    let mut cells = vec![0f32; b * t * h];
    let mut cells_tanh = vec![0f32; b * t * h];
    let mut hidden = vec![0f32; b * t * h];
    let rows = rows_per_thread(b);
    gates
        .par_chunks_mut(rows * t * g4)
        .zip(cells.par_chunks_mut(rows * t * h))
        .zip(cells_tanh.par_chunks_mut(rows * t * h))
        .zip(hidden.par_chunks_mut(rows * t * h))
        .for_each(|(((gates, cells), cells_tanh), hidden)| {
            forward_rows(gates, cells, cells_tanh, hidden, w_hh, t, h)
        });
    Saved {
        gates,
        cells,
        cells_tanh,
        hidden,
        w_hh: w_hh.to_vec(),
    }
}

/// The forward recurrence for a slice of whole sequences (`gates` holds their pre-activations on entry).
fn forward_rows(
    gates: &mut [f32],
    cells: &mut [f32],
    cells_tanh: &mut [f32],
    hidden: &mut [f32],
    w_hh: &[f32],
    t: usize,
    h: usize,
) {
    let g4 = 4 * h;
    let b = hidden.len() / (t * h);
    for step in 0..t {
        if step > 0 {
            // gates[:, step] += hidden[:, step-1] · W_hhᵀ ; W_hhᵀ (H × 4H) read from W_hh (4H × H) by strides.
            let (dst, lhs) = (&mut gates[step * g4..], &hidden[(step - 1) * h..]);
            sgemm((b, g4, h), dst, t * g4, true, lhs, (t * h, 1), w_hh, (1, h));
        }
        for bi in 0..b {
            let g = &mut gates[(bi * t + step) * g4..][..g4];
            let row = (bi * t + step) * h;
            // Activations over contiguous slices, so they vectorize: σ for i and f, tanh for g, σ for o.
            let (ifg, o) = g.split_at_mut(3 * h);
            let (i_f, gg) = ifg.split_at_mut(2 * h);
            i_f.iter_mut().for_each(|v| *v = sigmoid(*v));
            o.iter_mut().for_each(|v| *v = sigmoid(*v));
            gg.iter_mut().for_each(|v| *v = tanh(*v));
            let g = &*g;
            for j in 0..h {
                let c_prev = if step > 0 { cells[row - h + j] } else { 0.0 };
                cells[row + j] = g[h + j] * c_prev + g[j] * g[2 * h + j];
            }
            for j in 0..h {
                let tc = tanh(cells[row + j]);
                cells_tanh[row + j] = tc;
                hidden[row + j] = g[3 * h + j] * tc;
            }
        }
    }
}

/// Backward through time; returns (d pre-activations `(B, T, 4H)`, d `W_hh` `(4H, H)`).
fn backward(saved: &Saved, grad: &[f32], b: usize, t: usize, h: usize) -> (Vec<f32>, Vec<f32>) {
    let g4 = 4 * h;
    let rows = rows_per_thread(b);
    let mut dgates = vec![0f32; b * t * g4];
    let partial: Vec<Vec<f32>> = dgates
        .par_chunks_mut(rows * t * g4)
        .enumerate()
        .map(|(chunk, dgates)| {
            let (seq, cell) = (chunk * rows * t * h, rows * t * h);
            fn part(v: &[f32], seq: usize, cell: usize) -> &[f32] {
                &v[seq..(seq + cell).min(v.len())]
            }
            let slices = Slices {
                gates: &saved.gates[chunk * rows * t * g4..][..dgates.len()],
                cells: part(&saved.cells, seq, cell),
                cells_tanh: part(&saved.cells_tanh, seq, cell),
                hidden: part(&saved.hidden, seq, cell),
                grad: part(grad, seq, cell),
            };
            backward_rows(&slices, dgates, &saved.w_hh, t, h)
        })
        .collect();
    // W_hh's gradient: the sum of every slice's.
    let mut dw = vec![0f32; g4 * h];
    for p in partial {
        dw.iter_mut().zip(p).for_each(|(d, p)| *d += p);
    }
    (dgates, dw)
}

/// What the backward pass reads for a slice of whole sequences.
struct Slices<'a> {
    gates: &'a [f32],
    cells: &'a [f32],
    cells_tanh: &'a [f32],
    hidden: &'a [f32],
    grad: &'a [f32],
}

/// Backward through time for a slice of whole sequences; fills their `dgates`, returns their part of d`W_hh`.
fn backward_rows(saved: &Slices, dgates: &mut [f32], w_hh: &[f32], t: usize, h: usize) -> Vec<f32> {
    let g4 = 4 * h;
    let b = saved.hidden.len() / (t * h);
    let mut dh_next = vec![0f32; b * h];
    let mut dc_next = vec![0f32; b * h];
    for step in (0..t).rev() {
        for bi in 0..b {
            let row = (bi * t + step) * h;
            let g = &saved.gates[(bi * t + step) * g4..][..g4];
            let dg = &mut dgates[(bi * t + step) * g4..][..g4];
            for j in 0..h {
                let (i, f, gg, o) = (g[j], g[h + j], g[2 * h + j], g[3 * h + j]);
                let c_prev = if step > 0 {
                    saved.cells[row - h + j]
                } else {
                    0.0
                };
                let tc = saved.cells_tanh[row + j];
                let dh = saved.grad[row + j] + dh_next[bi * h + j];
                let dc = dh * o * (1.0 - tc * tc) + dc_next[bi * h + j];
                dg[j] = dc * gg * i * (1.0 - i);
                dg[h + j] = dc * c_prev * f * (1.0 - f);
                dg[2 * h + j] = dc * i * (1.0 - gg * gg);
                dg[3 * h + j] = dh * tc * o * (1.0 - o);
                dc_next[bi * h + j] = dc * f;
            }
        }
        if step > 0 {
            // dh_next = dgates[:, step] · W_hh  ((B × 4H) · (4H × H)).
            let lhs = &dgates[step * g4..];
            sgemm(
                (b, h, g4),
                &mut dh_next,
                h,
                false,
                lhs,
                (t * g4, 1),
                w_hh,
                (h, 1),
            );
        }
    }
    // dW_hh = Σ_{b, step ≥ 1} dgates[b, step]ᵀ · hidden[b, step - 1]: one (4H × (T-1)) · ((T-1) × H) per sequence.
    let mut dw = vec![0f32; g4 * h];
    if t > 1 {
        for bi in 0..b {
            let lhs = &dgates[(bi * t + 1) * g4..];
            let rhs = &saved.hidden[bi * t * h..];
            sgemm(
                (g4, h, t - 1),
                &mut dw,
                h,
                bi > 0,
                lhs,
                (1, g4),
                rhs,
                (h, 1),
            );
        }
    }
    dw
}

impl CustomOp2 for LstmSequence {
    fn name(&self) -> &'static str {
        "lstm-sequence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, g4) = l1.shape().dims3()?;
        let (rows, h) = l2.shape().dims2()?;
        if g4 != rows || g4 != 4 * h {
            candle_core::bail!(
                "fast LSTM: pre-activations {:?} do not fit W_hh {:?}",
                l1.shape(),
                l2.shape()
            );
        }
        let xg = f32_slice(s1, l1, "the pre-activations")?;
        let w_hh = f32_slice(s2, l2, "W_hh")?;
        let saved = forward(xg, w_hh, b, t, h);
        let hidden = saved.hidden.clone();
        *self.saved.lock().expect("the op's state is never poisoned") = Some(saved);
        Ok((CpuStorage::F32(hidden), Shape::from((b, t, h))))
    }

    fn bwd(
        &self,
        xg: &Tensor,
        _w_hh: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, g4) = xg.dims3()?;
        let h = g4 / 4;
        let guard = self.saved.lock().expect("the op's state is never poisoned");
        let Some(saved) = guard.as_ref() else {
            candle_core::bail!("fast LSTM: backward without a forward pass");
        };
        let grad: Vec<f32> = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let (dgates, dw) = backward(saved, &grad, b, t, h);
        let device = xg.device();
        Ok((
            Some(Tensor::from_vec(dgates, (b, t, g4), device)?),
            Some(Tensor::from_vec(dw, (g4, h), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inlined_functions_match_libm() {
        for i in -8000..=8000 {
            let x = i as f32 / 100.0;
            let rel = |a: f32, b: f32| (a - b).abs() / b.abs().max(f32::MIN_POSITIVE);
            assert!(
                rel(exp(x), x.exp()) < 3e-7,
                "exp({x}) = {} vs {}",
                exp(x),
                x.exp()
            );
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 3e-7,
                "sigmoid({x})"
            );
            assert!(
                (tanh(x) - x.tanh()).abs() < 3e-7,
                "tanh({x}) = {} vs {}",
                tanh(x),
                x.tanh()
            );
        }
        assert_eq!(exp(-1000.0), (-87f32).exp());
        assert!(exp(1000.0).is_finite());
    }
}
