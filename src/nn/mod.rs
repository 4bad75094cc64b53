//! The models: the paper's LSTM in Candle, a fused LSTM layer for the CPU and a scorer that keeps only the state, optimizers with savable state, device
//! selection, and the Kneser–Ney n-gram model every LSTM is measured against.

pub mod device;
pub mod fast_lstm;
pub mod fast_score;
pub mod model;
pub mod ngram;
pub mod optim;
