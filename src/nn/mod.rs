//! The neural network: the paper's LSTM model in Candle, a fused LSTM layer for the CPU, optimizers with savable
//! state, and device selection.

pub mod device;
pub mod fast_lstm;
pub mod model;
pub mod optim;
