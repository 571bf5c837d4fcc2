//! Native (machine-code) frames: turning user and kernel addresses into symbol names.
//! Unwinding and the merge with Python frames come with `--native`.

pub mod symbolize;

pub use symbolize::NativeSymbolizer;
