//! `sluice modules` and `sluice deploy`: clients of a running runtime's HTTP API, for scripts
//! and terminals (the dashboard does the same from a browser).

use crate::api::model::{DeployRequest, ErrorBody, ModuleList, Pipeline, Uploaded};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Examples shown by `sluice modules --help`.
pub const MODULES_EXAMPLES: &str = "\
Examples:
  sluice modules list
  sluice modules upload target/wasm32-wasip2/release/tz_normaliser.wasm
  sluice modules upload my_transform.wasm --name enrich-orders --api http://10.0.0.5:8080 --token \"$SLUICE_TOKEN\"";

/// Examples shown by `sluice deploy --help`.
pub const DEPLOY_EXAMPLES: &str = "\
Examples:
  sluice deploy unify tz_normaliser@2                  # version 2 into slot 0
  sluice deploy unify tz_normaliser                    # its latest version
  sluice deploy unify target/wasm32-wasip2/release/tz_normaliser.wasm   # upload, then deploy
  sluice deploy orders enricher --slot 1 -c table=customers -c key_field=customer_id
  sluice deploy unify --rollback                       # back to what slot 0 ran before

Every partition switches at its next batch boundary; no record is lost or written twice.";

/// Where the runtime's API is.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The runtime's API address ([api] listen of `sluice run`).
    #[arg(
        long,
        env = "SLUICE_API",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api: String,
    /// Bearer token, when the runtime sets api.token.
    #[arg(long, env = "SLUICE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// Arguments of `sluice modules`.
#[derive(Debug, Args)]
pub struct ModulesArgs {
    #[command(subcommand)]
    command: ModulesCommand,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Subcommand)]
enum ModulesCommand {
    /// List stored modules and their versions.
    List,
    /// Upload a transform component as the next version of a module.
    Upload {
        /// The `.wasm` component.
        file: PathBuf,
        /// The module's name; the file's name without `.wasm` by default.
        #[arg(long)]
        name: Option<String>,
    },
}

/// Arguments of `sluice deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The pipeline to deploy into.
    pipeline: String,
    /// MODULE, MODULE@VERSION, or a `.wasm` file to upload first.
    #[arg(required_unless_present = "rollback")]
    module: Option<String>,
    /// The transform slot, from 0.
    #[arg(long, default_value_t = 0)]
    slot: usize,
    /// Configuration for the module's `init`, replacing the slot's; repeatable.
    #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = super::key_value)]
    config: Vec<(String, String)>,
    /// Return the slot to what it ran before its last deploy.
    #[arg(long, conflicts_with_all = ["module", "config"])]
    rollback: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// A runtime's API.
struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(args: &ApiArgs) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Client {
            agent,
            base: args.api.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        }
    }

    /// Sends a request; the answer, or the API's error message.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<T> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", content_type);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(body.unwrap_or_default().to_vec())
            .context("bad request")?;
        let mut response = self
            .agent
            .run(request)
            .with_context(|| format!("cannot reach the runtime's API at {}", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .context("cannot read the API's answer")?;
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorBody>(&text).map_or(text, |e| e.error);
            anyhow::bail!("{message} ({status})");
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{url} answered {status} with something this sluice does not understand: {text}"
            )
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call("GET", path, "application/json", None)
    }

    fn upload(&self, file: &Path, name: Option<&str>) -> anyhow::Result<Uploaded> {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = name.unwrap_or(&stem);
        self.call(
            "POST",
            &format!("/modules?name={name}"),
            "application/wasm",
            Some(&bytes),
        )
        .with_context(|| format!("{} was refused", file.display()))
    }
}

/// Runs `sluice modules`.
pub fn modules(args: ModulesArgs) -> anyhow::Result<i32> {
    let client = Client::new(&args.api);
    match args.command {
        ModulesCommand::List => {
            let answer: ModuleList = client.get("/modules")?;
            println!(
                "{:<24} {:>7}  {:<12}  {:>9}  UPLOADED",
                "MODULE", "VERSION", "SHA256", "BYTES"
            );
            for module in &answer.modules {
                for v in &module.versions {
                    println!(
                        "{:<24} {:>7}  {:<12}  {:>9}  {}",
                        module.name,
                        v.version,
                        &v.sha256[..v.sha256.len().min(12)],
                        v.size,
                        v.uploaded_at
                    );
                }
            }
        }
        ModulesCommand::Upload { file, name } => {
            let Uploaded { name, version: v } = client.upload(&file, name.as_deref())?;
            println!(
                "{name} version {} (sha256 {}, {} bytes)",
                v.version, v.sha256, v.size
            );
        }
    }
    Ok(0)
}

/// Runs `sluice deploy`.
pub fn deploy(args: DeployArgs) -> anyhow::Result<i32> {
    let client = Client::new(&args.api);
    let slot_path = format!("/pipelines/{}/transforms/{}", args.pipeline, args.slot);
    let pipeline: Pipeline = if args.rollback {
        client.call(
            "POST",
            &format!("{slot_path}/rollback"),
            "application/json",
            None,
        )?
    } else {
        let module = args.module.as_deref().unwrap_or_default();
        let (name, version) = if module.ends_with(".wasm") || Path::new(module).is_file() {
            let uploaded = client.upload(Path::new(module), None)?;
            (uploaded.name, Some(uploaded.version.version))
        } else {
            match module.split_once('@') {
                Some((name, version)) => {
                    let version = version.parse::<u32>().with_context(|| {
                        format!("`{version}` in `{module}` is not a version number")
                    })?;
                    (name.to_string(), Some(version))
                }
                None => (module.to_string(), None),
            }
        };
        let body = DeployRequest {
            module: name,
            version,
            // The slot's current configuration unless some is given.
            config: (!args.config.is_empty()).then(|| args.config.into_iter().collect()),
        };
        let body = serde_json::to_vec(&body).expect("a deploy request serialises");
        client.call("PUT", &slot_path, "application/json", Some(&body))?
    };
    let chain: Vec<String> = pipeline
        .slots
        .iter()
        .map(|s| format!("[{}] {}@{}", s.index, s.module, s.version))
        .collect();
    println!("{}: {}", args.pipeline, chain.join(" -> "));
    Ok(0)
}
