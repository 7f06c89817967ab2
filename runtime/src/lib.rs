//! Sluice: a stream processor that runs WebAssembly component transforms over Kafka topics.
//!
//! - [`engine`]: loads transform components and runs them sandboxed, in batches.
//! - [`pipeline`]: consumes Kafka partitions, runs the chain, writes outputs, commits.
//! - [`tables`]: lookup tables transforms read, materialised from Kafka topics.
//! - [`config`]: the `sluice.toml` file.
//! - [`control`]: stored modules and deployments; deploy, roll back, pause.
//! - [`api`]: the HTTP API, the dashboard, health, readiness and Prometheus metrics.
//! - [`cli`]: the `sluice` command's subcommands.
//! - [`generator`]: realistic test traffic (the seed scenarios) for `sluice gen` and `sluice demo`.

pub mod api;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod generator;
pub mod kafka;
pub mod pipeline;
pub mod tables;
