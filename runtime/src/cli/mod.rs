//! The `sluice` command line.

pub mod author;
pub mod client;
pub mod demo;
pub mod gen_cmd;
pub mod peek;
pub mod pipelines;
pub mod run;
pub mod scaffold;
pub mod try_cmd;

use clap::{Parser, Subcommand};

/// Sluice runs WebAssembly transforms over Kafka topics.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipelines of a configuration file against Kafka.
    #[command(after_help = run::EXAMPLES)]
    Run(run::RunArgs),
    /// Run a transform over records without Kafka: one record value per input line.
    #[command(after_help = try_cmd::EXAMPLES)]
    Try(try_cmd::TryArgs),
    /// Try Sluice in one command: an embedded broker, generators, two pipelines, the dashboard.
    #[command(after_help = demo::EXAMPLES)]
    Demo(demo::DemoArgs),
    /// Send realistic test traffic (seed scenarios) to Kafka.
    #[command(after_help = gen_cmd::EXAMPLES)]
    Gen(gen_cmd::GenArgs),
    /// Show records of a topic as a table, CSV or JSON lines.
    #[command(after_help = peek::EXAMPLES)]
    Peek(peek::PeekArgs),
    /// List and upload modules of a running runtime (through its HTTP API).
    #[command(after_help = client::MODULES_EXAMPLES)]
    Modules(client::ModulesArgs),
    /// List, show, pause, resume and delete the pipelines of a running runtime (through its
    /// HTTP API).
    #[command(after_help = pipelines::PIPELINES_EXAMPLES)]
    Pipelines(pipelines::PipelinesArgs),
    /// Make a running runtime's pipelines match a file: create, update, delete (through its
    /// HTTP API); shows the changes first.
    #[command(after_help = pipelines::APPLY_EXAMPLES)]
    Apply(pipelines::ApplyArgs),
    /// Deploy a module version into a running pipeline, or roll back (through its HTTP API).
    #[command(after_help = client::DEPLOY_EXAMPLES)]
    Deploy(client::DeployArgs),
    /// Work on transforms: scaffold a crate (`new`), build it (`build`), deploy it (`deploy`).
    #[command(after_help = scaffold::EXAMPLES)]
    Transform(scaffold::TransformArgs),
    /// Build a transform crate, try its sample lines and deploy it into a running pipeline;
    /// with --watch, again whenever its sources change.
    #[command(after_help = author::DEV_EXAMPLES)]
    Dev(author::DevArgs),
}

/// Parses `KEY=VALUE`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}
