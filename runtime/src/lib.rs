//! Sluice: a stream processor that runs WebAssembly component transforms over Kafka topics.
//!
//! - [`engine`]: loads transform components and runs them sandboxed, in batches.
//! - [`pipeline`]: consumes Kafka partitions, runs the chain, writes outputs, commits.
//! - [`config`]: the `sluice.toml` file.
//! - [`cli`]: the `sluice` command's subcommands.

pub mod cli;
pub mod config;
pub mod engine;
pub mod pipeline;
