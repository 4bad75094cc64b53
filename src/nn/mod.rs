//! The models: the paper's LSTM in Candle, a fused LSTM layer for the CPU, optimizers with savable state, device
//! selection, and the Kneser–Ney n-gram model every LSTM is measured against.

pub mod device;
pub mod fast_lstm;
pub mod model;
pub mod ngram;
pub mod optim;
