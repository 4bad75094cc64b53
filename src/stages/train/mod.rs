//! `train`: fits the paper's LSTM to the training windows with Candle, writing `loss.csv` as it goes.
//!
//! Batches are drawn from a shuffle seeded by `(seed, epoch)` and dropout masks from a generator seeded the same
//! way, so epoch N does the same work whether it runs in one go or after a resume; extending a finished training
//! (raising only `epochs`) continues from the saved weights and optimizer state and gives the same result as
//! training the longer run at once.
//!
//! The parts: `params` (the stage's parameters, their bounds and checks, and the summary it reports), `batches`
//! (windows into tensors, each epoch's randomness, scoring the held-out windows) and `trainer` (the stage itself:
//! resuming, the epoch loop, early stopping, checkpoints and the result).

mod batches;
mod params;
mod trainer;

pub use params::{Train, TrainSummary};
