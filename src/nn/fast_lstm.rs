//! A fast LSTM layer for training on the CPU: the whole layer — input projection, recurrence and the backward
//! pass through time — as one candle custom op, instead of hundreds of small autograd nodes.
//!
//! Inputs: the layer input `x` `(B, T, D)`, the weights `[W_ih | W_hh]` side by side `(4H, D + H)` and the summed
//! biases `(4H)`. Forward: one large sgemm projects every step's input; then per step one product `h · W_hhᵀ` and one
//! fused pass over the four gates. Backward: per step one product `dgates · W_hh` and the fused gate derivatives
//! (both per-step products read `W_hh` from a copy laid out in 64-column panels, made once per call, so gemm reads
//! it in place and contiguously); then one sgemm each for the input's gradient
//! and for the weights' (`dgatesᵀ · [x | h_prev]`). Each thread runs all of this for its own slice of the batch, so
//! no thread waits for another at every step, and only three tensors per layer pass through autograd (candle zeroes
//! and adds every gradient it accumulates, which cost a fifth of a step when the projection and bias were separate
//! nodes). Buffers are allocated once per call, never per step. f32 on the CPU only; [`crate::nn::model::Lstm`] uses
//! plain candle ops on other devices and types.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use gemm::Parallelism;
use multiversion::multiversion;
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
    // Round to nearest by adding and subtracting 1.5·2²³ (no call to `roundf`, which does not vectorize); the sum's
    // low mantissa bits then hold n itself, so 2ⁿ is built from them with integer ops and no float→int conversion
    // (Rust's `as i32` adds NaN and range checks that kept the loops scalar).
    const SHIFT: f32 = 12_582_912.0;
    let z = x * std::f32::consts::LOG2_E + SHIFT;
    let n = z - SHIFT;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    // n ∈ [-126, 127] after the clamp, so (n + 127) << 23 is a normal float's exponent; the bits above it wrap away.
    e * f32::from_bits(z.to_bits().wrapping_add(127) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh(x) = 2σ(2x) − 1: absolute error below 3e-7 (a few ulp near ±1).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    2.0 / (1.0 + exp(-2.0 * x)) - 1.0
}

/// Activates one step's gates `g` (i, f, g, o, each `h` wide) in place, over contiguous slices so they vectorize:
/// σ for i and f, tanh for g, σ for o.
#[inline(always)]
pub(crate) fn activate(g: &mut [f32], h: usize) {
    let (ifg, o) = g.split_at_mut(3 * h);
    let (i_f, gg) = ifg.split_at_mut(2 * h);
    i_f.iter_mut().for_each(|v| *v = sigmoid(*v));
    o.iter_mut().for_each(|v| *v = sigmoid(*v));
    gg.iter_mut().for_each(|v| *v = tanh(*v));
}

/// What the forward pass keeps for the backward pass (the hidden states are the op's output, which candle hands
/// back to the backward pass).
struct Saved {
    /// Activated gates i, f, g, o per (batch, step): `(B, T, 4H)`.
    gates: Vec<f32>,
    /// Cell states `(B, T, H)`.
    cells: Vec<f32>,
    /// `tanh` of the cell states, kept so the backward pass does not recompute it.
    cells_tanh: Vec<f32>,
}

/// One LSTM layer over whole sequences from a zero state. Inputs: `x` `(B, T, D)`, `[W_ih | W_hh]` `(4H, D + H)`,
/// `b_ih + b_hh` `(4H)`. Output: every step's hidden state `(B, T, H)`.
pub struct LstmLayer {
    saved: Mutex<Option<Saved>>,
}

impl LstmLayer {
    pub fn new() -> Self {
        Self {
            saved: Mutex::new(None),
        }
    }
}

impl Default for LstmLayer {
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

/// A CPU f32 tensor's elements in place, without copying them out (the guard keeps the storage borrowed).
pub(crate) fn cpu_f32<'a>(
    (storage, layout): &'a (impl std::ops::Deref<Target = Storage>, &Layout),
    what: &str,
) -> Result<&'a [f32]> {
    let Storage::Cpu(cpu) = &**storage else {
        candle_core::bail!("fast LSTM: {what} must be on the CPU");
    };
    f32_slice(cpu, layout, what)
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    /// Steps per sequence.
    t: usize,
    /// Input width.
    d: usize,
    /// Hidden units.
    h: usize,
}

impl Dims {
    /// The batch size and sizes of a layer with input `x` `(B, T, D)`, weights `[W_ih | W_hh]` `(4H, D + H)` and
    /// summed biases `(4H)`, or an error when they do not fit together.
    fn of(x: &Shape, w: &Shape, bias: &Shape) -> Result<(usize, Self)> {
        let (b, t, d) = x.dims3()?;
        let (g4, w_cols) = w.dims2()?;
        let h = g4 / 4;
        if g4 != 4 * h || w_cols != d + h || bias.dims1()? != g4 {
            candle_core::bail!(
                "fast LSTM: input {x:?}, weights {w:?} and bias {bias:?} do not fit together"
            );
        }
        Ok((b, Self { t, d, h }))
    }

    fn g4(self) -> usize {
        4 * self.h
    }
    /// Row length of `[W_ih | W_hh]`.
    fn w_cols(self) -> usize {
        self.d + self.h
    }
}

/// How many sequences of a batch each thread takes: sequences are independent, so each thread runs the whole
/// recurrence for its slice with single-threaded products.
pub(crate) fn rows_per_thread(b: usize) -> usize {
    b.div_ceil(candle_core::utils::get_num_threads().clamp(1, b.max(1)))
        .max(1)
}

/// The forward pass for the whole batch; returns the saved state and the hidden states.
fn forward(x: &[f32], w: &[f32], bias: &[f32], b: usize, dims: Dims) -> (Saved, Vec<f32>) {
    let Dims { t, d, .. } = dims;
    let g4 = dims.g4();
    // gates[:, step] += h[:, step-1] · W_hhᵀ, with W_hhᵀ `(H, 4H)`.
    let recurrent = Recurrent::new(
        &w[d..],
        (dims.h, g4),
        (1, dims.w_cols()),
        rows_per_thread(b),
    );
    // Every row starts as the bias; each thread then adds its slice's input projection, every step's at once:
    // gates = bias + x · W_ihᵀ.
    recurrence(bias.repeat(b * t), b, dims, &recurrent, |first, gates| {
        // One row per (sequence, step) of the slice.
        let n = gates.len() / g4;
        let x = &x[first * t * d..][..n * d];
        sgemm(
            (n, g4, d),
            gates,
            g4,
            true,
            x,
            (d, 1),
            w,
            (1, dims.w_cols()),
        );
    })
}

/// Runs the recurrence over `gates` `(B, T, 4H)`, each thread over its own slice of whole sequences after
/// `project(first sequence of the slice, its gates)` has added that slice's input projection; returns the saved state
/// and the hidden states.
fn recurrence(
    mut gates: Vec<f32>,
    b: usize,
    dims: Dims,
    recurrent: &Recurrent,
    project: impl Fn(usize, &mut [f32]) + Sync,
) -> (Saved, Vec<f32>) {
    let Dims { t, h, .. } = dims;
    let g4 = dims.g4();
    let mut cells = vec![0f32; b * t * h];
    let mut cells_tanh = vec![0f32; b * t * h];
    let mut hidden = vec![0f32; b * t * h];
    let rows = rows_per_thread(b);
    gates
        .par_chunks_mut(rows * t * g4)
        .enumerate()
        .zip(cells.par_chunks_mut(rows * t * h))
        .zip(cells_tanh.par_chunks_mut(rows * t * h))
        .zip(hidden.par_chunks_mut(rows * t * h))
        .for_each(|((((slice, gates), cells), cells_tanh), hidden)| {
            project(slice * rows, gates);
            forward_rows(gates, cells, cells_tanh, hidden, recurrent, dims);
        });
    let saved = Saved {
        gates,
        cells,
        cells_tanh,
    };
    (saved, hidden)
}

/// Widest product row block handed to gemm at once: for more rows (over 8 × its 6-wide kernel) gemm copies its
/// other operand into a scratch layout first, at every step, which cost more than it saved (the copy is 128 KB per
/// panel for a few µs of arithmetic).
const MAX_ROWS: usize = 48;

/// Columns per panel of [`Panels`]: the width of gemm's AVX-512 f32 kernel (4 × 16 lanes), a multiple of its AVX2
/// one.
const PANEL: usize = 64;

/// A `k × n` matrix stored as column panels of [`PANEL`] columns, each `k × width` and contiguous. The per-step
/// products read every panel in place: read straight from `[W_ih | W_hh]` (or a plain transposed copy), each kernel
/// call walks a 64-float row per depth step, 4–8 KB apart, so the block gemm keeps for reuse conflicts in the cache
/// and comes from L3 again for every 6 rows of the batch (~300 GFLOP/s at the paper's shape; ~420–480 so).
pub(crate) struct Panels {
    k: usize,
    data: Vec<f32>,
}

impl Panels {
    /// The panels of the `k × n` matrix whose element `(row, col)` is `at(row, col)`.
    fn new(k: usize, n: usize, at: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        let mut data = vec![0f32; k * n];
        data.par_chunks_mut(k * PANEL)
            .enumerate()
            .for_each(|(p, panel)| {
                let width = panel.len() / k;
                for (r, row) in panel.chunks_exact_mut(width).enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = at(r, p * PANEL + j);
                    }
                }
            });
        Self { k, data }
    }
}

/// `W_hh` as the right-hand side of the per-step products: `W_hhᵀ` `(H, 4H)` forward, `W_hh` `(4H, H)` backward.
pub(crate) enum Recurrent<'a> {
    Panels(Panels),
    /// In place, as a `k × n` view with strides `(rows, cols)`: with a few sequences per thread the product is a
    /// matrix–vector one that streams the weights once anyway, and the copy would cost more than it saves
    /// (sampling).
    InPlace {
        w: &'a [f32],
        kn: (usize, usize),
        strides: (usize, usize),
    },
}

impl<'a> Recurrent<'a> {
    /// The `k × n` matrix of `w` with strides `strides`, for products with `rows` rows per thread.
    pub(crate) fn new(
        w: &'a [f32],
        kn: (usize, usize),
        strides: (usize, usize),
        rows: usize,
    ) -> Self {
        if rows < 4 {
            return Self::InPlace { w, kn, strides };
        }
        let (rs, cs) = strides;
        Self::Panels(Panels::new(kn.0, kn.1, |r, c| w[r * rs + c * cs]))
    }

    /// `dst = (accumulate ? dst : 0) + lhs · self` for `m` rows; `dst` and `lhs` are row-major with the given row
    /// strides.
    pub(crate) fn product(
        &self,
        m: usize,
        (dst, dst_rs): (&mut [f32], usize),
        accumulate: bool,
        (lhs, lhs_rs): (&[f32], usize),
    ) {
        match self {
            Self::InPlace {
                w,
                kn: (k, n),
                strides,
            } => sgemm(
                (m, *n, *k),
                dst,
                dst_rs,
                accumulate,
                lhs,
                (lhs_rs, 1),
                w,
                *strides,
            ),
            Self::Panels(Panels { k, data }) => {
                let rows = m.div_ceil(m.div_ceil(MAX_ROWS).max(1)).max(1);
                for (p, panel) in data.chunks(k * PANEL).enumerate() {
                    let width = panel.len() / k;
                    for r0 in (0..m).step_by(rows) {
                        sgemm(
                            (rows.min(m - r0), width, *k),
                            &mut dst[r0 * dst_rs + p * PANEL..],
                            dst_rs,
                            accumulate,
                            &lhs[r0 * lhs_rs..],
                            (lhs_rs, 1),
                            panel,
                            (width, 1),
                        );
                    }
                }
            }
        }
    }
}

/// The recurrence for a slice of whole sequences (`gates` holds their input projections on entry). Compiled for
/// AVX-512 and AVX2 as well, chosen at run time: the gate math is a sixth of a step and runs 4× wider there.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn forward_rows(
    gates: &mut [f32],
    cells: &mut [f32],
    cells_tanh: &mut [f32],
    hidden: &mut [f32],
    recurrent: &Recurrent,
    dims: Dims,
) {
    let Dims { t, h, .. } = dims;
    let g4 = 4 * h;
    let b = hidden.len() / (t * h);
    let zeros = vec![0f32; h];
    // This step's recurrent products, one contiguous row per sequence: written in place into `gates`, whose rows of
    // one step lie `T · 4H` floats apart, gemm's 6-row tiles all fell into the same L1 sets and its products ran
    // 15-20 % slower.
    let mut products = vec![0f32; b * g4];
    for step in 0..t {
        if step > 0 {
            // products = hidden[:, step-1] · W_hhᵀ.
            recurrent.product(
                b,
                (&mut products, g4),
                false,
                (&hidden[(step - 1) * h..], t * h),
            );
        }
        for bi in 0..b {
            let row = (bi * t + step) * h;
            let g = &mut gates[(bi * t + step) * g4..][..g4];
            if step > 0 {
                g.iter_mut()
                    .zip(&products[bi * g4..][..g4])
                    .for_each(|(g, p)| *g += p);
            }
            activate(g, h);
            let (i, f, gg, o) = (&g[..h], &g[h..2 * h], &g[2 * h..3 * h], &g[3 * h..]);
            let (before, now) = cells.split_at_mut(row);
            let c_prev = if step > 0 {
                &before[row - h..]
            } else {
                &zeros[..]
            };
            let (c, c_prev) = (&mut now[..h], &c_prev[..h]);
            let (ct, hd) = (&mut cells_tanh[row..][..h], &mut hidden[row..][..h]);
            // Three simple passes rather than one: LLVM left the combined loop scalar.
            for j in 0..h {
                c[j] = f[j] * c_prev[j] + i[j] * gg[j];
            }
            ct.iter_mut().zip(&*c).for_each(|(ct, &c)| *ct = tanh(c));
            hd.iter_mut()
                .zip(o.iter().zip(&*ct))
                .for_each(|(hd, (&o, &ct))| *hd = o * ct);
        }
    }
}

/// What the backward pass reads for the whole batch.
struct Inputs<'a> {
    saved: &'a Saved,
    x: &'a [f32],
    w: &'a [f32],
    hidden: &'a [f32],
    grad: &'a [f32],
}

/// One slice's share of the weights' gradients.
struct WeightGrads {
    /// `(4H, D + H)`, laid out as `[W_ih | W_hh]`.
    w: Vec<f32>,
    /// `(4H)`.
    bias: Vec<f32>,
}

/// Backward through time; returns (dx `(B, T, D)`, d`[W_ih | W_hh]`, d bias).
fn backward(inputs: &Inputs, b: usize, dims: Dims) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims { t, d, h } = dims;
    let g4 = dims.g4();
    let rows = rows_per_thread(b);
    // dh_prev = dgates[:, step] · W_hh, with W_hh `(4H, H)`.
    let recurrent = Recurrent::new(&inputs.w[d..], (g4, h), (dims.w_cols(), 1), rows);
    let mut dx = vec![0f32; b * t * d];
    let partial: Vec<WeightGrads> = dx
        .par_chunks_mut(rows * t * d)
        .enumerate()
        .map(|(chunk, dx)| {
            let n = dx.len() / d;
            let (first, cell) = (chunk * rows * t, n * h);
            let slice = Slice {
                gates: &inputs.saved.gates[first * g4..][..n * g4],
                cells: &inputs.saved.cells[first * h..][..cell],
                cells_tanh: &inputs.saved.cells_tanh[first * h..][..cell],
                hidden: &inputs.hidden[first * h..][..cell],
                grad: &inputs.grad[first * h..][..cell],
                x: &inputs.x[first * d..][..n * d],
            };
            backward_rows(&slice, dx, inputs.w, &recurrent, dims)
        })
        .collect();
    // The weights' gradients: the sum of every slice's.
    let mut total = WeightGrads {
        w: vec![0f32; g4 * dims.w_cols()],
        bias: vec![0f32; g4],
    };
    for p in partial {
        total.w.iter_mut().zip(p.w).for_each(|(a, b)| *a += b);
        total.bias.iter_mut().zip(p.bias).for_each(|(a, b)| *a += b);
    }
    (dx, total.w, total.bias)
}

/// What the backward pass reads for a slice of whole sequences.
struct Slice<'a> {
    gates: &'a [f32],
    cells: &'a [f32],
    cells_tanh: &'a [f32],
    hidden: &'a [f32],
    grad: &'a [f32],
    x: &'a [f32],
}

/// Backward for a slice of whole sequences: fills their `dx`, returns their part of the weights' gradients.
/// Compiled for AVX-512 and AVX2 as well, like [`forward_rows`].
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn backward_rows(
    s: &Slice,
    dx: &mut [f32],
    w: &[f32],
    recurrent: &Recurrent,
    dims: Dims,
) -> WeightGrads {
    let Dims { t, d, h } = dims;
    let (g4, w_cols) = (dims.g4(), dims.w_cols());
    let n = s.hidden.len() / h;
    let b = n / t;
    let mut dgates = vec![0f32; n * g4];
    let mut dh_next = vec![0f32; b * h];
    let mut dc_next = vec![0f32; b * h];
    let zeros = vec![0f32; h];
    // This step's gate gradients, one contiguous row per sequence, for the product below (as in the forward pass,
    // rows `T · 4H` apart slow gemm); copied into `dgates` for the products over all steps after the loop.
    let mut step_dgates = vec![0f32; b * g4];
    for step in (0..t).rev() {
        for bi in 0..b {
            let row = (bi * t + step) * h;
            let g = &s.gates[(bi * t + step) * g4..][..g4];
            let dg = &mut step_dgates[bi * g4..][..g4];
            let c_prev = if step > 0 {
                &s.cells[row - h..][..h]
            } else {
                &zeros[..]
            };
            let (tc, grad) = (&s.cells_tanh[row..][..h], &s.grad[row..][..h]);
            let dh_next = &dh_next[bi * h..][..h];
            let dc_next = &mut dc_next[bi * h..][..h];
            gate_grads(dg, dc_next, g, [c_prev, tc, grad, dh_next]);
            dgates[(bi * t + step) * g4..][..g4].copy_from_slice(dg);
        }
        if step > 0 {
            // dh_next = dgates[:, step] · W_hh  ((B × 4H) · (4H × H)).
            recurrent.product(b, (&mut dh_next, h), false, (&step_dgates, g4));
        }
    }
    // dx = dgates · W_ih  ((BT × 4H) · (4H × D)).
    sgemm((n, d, g4), dx, d, false, &dgates, (g4, 1), w, (w_cols, 1));
    // d[W_ih | W_hh] = dgatesᵀ · [x | h_prev] over every (sequence, step), h_prev being 0 at each first step:
    // one product of depth BT each instead of one per sequence.
    let mut z = vec![0f32; n * w_cols];
    for (r, z) in z.chunks_exact_mut(w_cols).enumerate() {
        z[..d].copy_from_slice(&s.x[r * d..][..d]);
        if r % t > 0 {
            z[d..].copy_from_slice(&s.hidden[(r - 1) * h..][..h]);
        }
    }
    let mut grads = WeightGrads {
        w: vec![0f32; g4 * w_cols],
        bias: vec![0f32; g4],
    };
    sgemm(
        (g4, w_cols, n),
        &mut grads.w,
        w_cols,
        false,
        &dgates,
        (1, g4),
        &z,
        (w_cols, 1),
    );
    for dg in dgates.chunks_exact(g4) {
        grads.bias.iter_mut().zip(dg).for_each(|(a, b)| *a += b);
    }
    grads
}

/// The gates' gradients for one (sequence, step), and the cell gradient carried to the step before. A function of
/// its own, not inlined, because only then do its slices reach LLVM as non-aliasing: written inside the loop over
/// steps it stayed scalar.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
#[inline(never)]
fn gate_grads(
    dg: &mut [f32],
    dc_next: &mut [f32],
    g: &[f32],
    [c_prev, tc, grad, dh_next]: [&[f32]; 4],
) {
    let h = dc_next.len();
    let (di, rest) = dg[..4 * h].split_at_mut(h);
    let (df, rest) = rest.split_at_mut(h);
    let (dgg, d_o) = rest.split_at_mut(h);
    let (i, f, gg, o) = (&g[..h], &g[h..2 * h], &g[2 * h..3 * h], &g[3 * h..4 * h]);
    let (c_prev, tc, grad, dh_next) = (&c_prev[..h], &tc[..h], &grad[..h], &dh_next[..h]);
    for j in 0..h {
        let dh = grad[j] + dh_next[j];
        let dc = dh * o[j] * (1.0 - tc[j] * tc[j]) + dc_next[j];
        di[j] = dc * gg[j] * i[j] * (1.0 - i[j]);
        df[j] = dc * c_prev[j] * f[j] * (1.0 - f[j]);
        dgg[j] = dc * i[j] * (1.0 - gg[j] * gg[j]);
        d_o[j] = dh * tc[j] * o[j] * (1.0 - o[j]);
        dc_next[j] = dc * f[j];
    }
}

impl CustomOp3 for LstmLayer {
    fn name(&self) -> &'static str {
        "lstm-layer"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, dims) = Dims::of(l1.shape(), l2.shape(), l3.shape())?;
        let Dims { t, h, .. } = dims;
        let x = f32_slice(s1, l1, "the input")?;
        let w = f32_slice(s2, l2, "the weights")?;
        let bias = f32_slice(s3, l3, "the bias")?;
        let (saved, hidden) = forward(x, w, bias, b, dims);
        *self.saved.lock().expect("the op's state is never poisoned") = Some(saved);
        Ok((CpuStorage::F32(hidden), Shape::from((b, t, h))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, d) = x.dims3()?;
        let (g4, w_cols) = w.dims2()?;
        let dims = Dims { t, d, h: g4 / 4 };
        let guard = self.saved.lock().expect("the op's state is never poisoned");
        let Some(saved) = guard.as_ref() else {
            candle_core::bail!("fast LSTM: backward without a forward pass");
        };
        let grad = grad.to_dtype(DType::F32)?.contiguous()?;
        let held = [x, w, res, &grad].map(|t| t.storage_and_layout());
        let inputs = Inputs {
            saved,
            x: cpu_f32(&held[0], "the input")?,
            w: cpu_f32(&held[1], "the weights")?,
            hidden: cpu_f32(&held[2], "the output")?,
            grad: cpu_f32(&held[3], "the output's gradient")?,
        };
        let (dx, dw, dbias) = backward(&inputs, b, dims);
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (b, t, d), device)?),
            Some(Tensor::from_vec(dw, (g4, w_cols), device)?),
            Some(Tensor::from_vec(dbias, g4, device)?),
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
