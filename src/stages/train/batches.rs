//! Windows into tensors, each epoch's randomness, and the held-out windows scored in batches of a size that does
//! not change the result.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::artifact::{Split, WindowSet};
use crate::nn::model::Model;

/// A generator for one purpose in one epoch, so every epoch's randomness is independent of where training started.
pub(super) fn rng_for(seed: u64, epoch: usize, purpose: u64) -> ChaCha8Rng {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..].copy_from_slice(&purpose.to_le_bytes());
    ChaCha8Rng::from_seed(*blake3::hash(&key).as_bytes())
}

/// The `(batch, seq_len)` inputs and `(batch)` targets of the windows starting at `starts`.
pub(super) fn batch_tensors(
    windows: &WindowSet,
    starts: &[usize],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let mut inputs = Vec::with_capacity(starts.len() * windows.seq_len);
    let mut targets = Vec::with_capacity(starts.len());
    for &s in starts {
        let (x, y) = windows.window(s);
        inputs.extend_from_slice(x);
        targets.push(y);
    }
    Ok((
        Tensor::from_vec(inputs, (starts.len(), windows.seq_len), device)?,
        Tensor::from_vec(targets, starts.len(), device)?,
    ))
}

/// The `(batch, seq_len)` inputs and the `(batch, seq_len)` tokens that follow each of their prefixes.
pub(super) fn batch_tensors_every(
    windows: &WindowSet,
    starts: &[usize],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let n = windows.seq_len;
    let mut inputs = Vec::with_capacity(starts.len() * n);
    let mut targets = Vec::with_capacity(starts.len() * n);
    for &s in starts {
        inputs.extend_from_slice(&windows.ids[s..s + n]);
        targets.extend_from_slice(&windows.ids[s + 1..s + n + 1]);
    }
    Ok((
        Tensor::from_vec(inputs, (starts.len(), n), device)?,
        Tensor::from_vec(targets, starts.len() * n, device)?,
    ))
}

/// Mean loss and accuracy over the validation windows, without dropout: the token after each window, scored
/// in batches of [`scoring_batch`] windows and summed per window, so the result does not depend on the batch.
pub(super) fn evaluate(
    model: &Model,
    windows: &WindowSet,
    device: &Device,
) -> candle_core::Result<Option<(f64, f64)>> {
    let starts: Vec<usize> = windows.starts(Split::Validation).collect();
    if starts.is_empty() {
        return Ok(None);
    }
    let (mut nll, mut correct) = (0.0, 0usize);
    let hidden = model.config().hidden;
    for chunk in starts.chunks(scoring_batch(device, windows.seq_len, hidden)) {
        let (x, y) = batch_tensors(windows, chunk, device)?;
        let logits = model.score(&x)?;
        let log_p = candle_nn::ops::log_softmax(&logits, 1)?
            .gather(&y.unsqueeze(1)?, 1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        nll -= log_p.iter().map(|&l| f64::from(l)).sum::<f64>();
        correct += logits
            .argmax(1)?
            .eq(&y)?
            .to_dtype(candle_core::DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()? as usize;
    }
    Ok(Some((
        nll / starts.len() as f64,
        correct as f64 / starts.len() as f64,
    )))
}

/// Windows per scoring batch, whatever the training's batch. On the CPU, 48 sequences per thread: each thread
/// runs its own slice of the batch, and 48 rows fill gemm's 6-row AVX-512 (and 4- and 3-row AVX2) kernels with no
/// narrow remainder, where the 32 per thread of a batch of 64 on two cores left a 2-row one (scoring the Bach
/// chorales' held-out windows took 6 % longer so). At most 256 MB of input gates, for long windows and many
/// threads; on a GPU, 256 windows.
fn scoring_batch(device: &Device, seq_len: usize, hidden: usize) -> usize {
    if !device.is_cpu() {
        return 256;
    }
    let wanted = 48 * candle_core::utils::get_num_threads().max(1);
    let cap = (256 << 20) / (seq_len * 4 * hidden * std::mem::size_of::<f32>()).max(1);
    wanted.min(cap).max(1)
}
