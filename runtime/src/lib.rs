//! Sluice: a stream processor that runs WebAssembly component transforms over Kafka topics.
//!
//! - [`engine`]: loads transform components and runs them sandboxed, in batches.
//! - [`cli`]: the `sluice` command's subcommands.

pub mod cli;
pub mod engine;
