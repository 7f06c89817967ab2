//! Sluice: a stream processor that runs WebAssembly component transforms over Kafka topics.
//!
//! - [`engine`]: loads transform components and runs them sandboxed, in batches.
//! - [`pipeline`]: consumes Kafka partitions, runs the chain, writes outputs, commits.
//! - [`tables`]: lookup tables transforms read, materialised from Kafka topics.
//! - [`config`]: the `sluice.toml` file.
//! - [`api`]: health, readiness and Prometheus metrics over HTTP.
//! - [`cli`]: the `sluice` command's subcommands.

pub mod api;
pub mod cli;
pub mod config;
pub mod engine;
pub mod pipeline;
pub mod tables;
