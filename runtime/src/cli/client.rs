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
  sluice modules upload my_transform.wasm --name enrich-orders --api http://10.0.0.5:8080 --token \"$SLUICE_API_TOKEN\"

The same variables as `sluice run`'s: SLUICE_API_TOKEN is the token, and without --api the
runtime is looked for at SLUICE_API_LISTEN (else 127.0.0.1:8080).";

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
    /// The runtime's API: a URL, or the address it listens on (`[api] listen` of `sluice
    /// run`, which is also read from SLUICE_API_LISTEN). Default: SLUICE_API_LISTEN, else
    /// 127.0.0.1:8080.
    #[arg(
        long,
        env = "SLUICE_API_LISTEN",
        value_name = "URL|HOST:PORT",
        global = true
    )]
    pub api: Option<String>,
    /// Bearer token, when the runtime sets api.token (the same variable as `sluice run`'s).
    #[arg(long, env = "SLUICE_API_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// The API's base URL from `--api`: `http://` is added to a bare address, and a listen address
/// on every interface (0.0.0.0) is reached on loopback.
fn api_url(api: Option<&str>) -> String {
    let api = api.unwrap_or("127.0.0.1:8080").trim_end_matches('/');
    if api.contains("://") {
        return api.to_string();
    }
    let local = api
        .strip_prefix("0.0.0.0:")
        .or_else(|| api.strip_prefix("[::]:"))
        .map(|port| format!("127.0.0.1:{port}"));
    format!("http://{}", local.as_deref().unwrap_or(api))
}

/// `text` as one segment of a URL's path or a query value: everything but letters, digits and
/// `-._~` percent-encoded, so that a name holding `#`, `?` or `/` stays one name.
pub(super) fn seg(text: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(text, KEEP).to_string()
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
    /// Configuration for the module's `init`, replacing the slot's; repeatable. Without it, a
    /// new version of the slot's module keeps the slot's configuration and another module
    /// starts from its own defaults.
    #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = super::key_value)]
    config: Vec<(String, String)>,
    /// Keep the slot's configuration even for another module.
    #[arg(long, conflicts_with = "config")]
    keep_config: bool,
    /// Return the slot to what it ran before its last deploy.
    #[arg(long, conflicts_with_all = ["module", "config", "keep_config"])]
    rollback: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// A runtime's API.
pub(super) struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(super) fn new(args: &ApiArgs) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Client {
            agent,
            base: api_url(args.api.as_deref()),
            token: args.token.clone(),
        }
    }

    /// Sends a request; the answer, or the API's error message.
    pub(super) fn call<T: DeserializeOwned>(
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
        // No content (a delete) reads as null.
        let text = if text.is_empty() { "null".into() } else { text };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{url} answered {status} with something this sluice does not understand: {text}"
            )
        })
    }

    pub(super) fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call("GET", path, "application/json", None)
    }

    /// POSTs with no body (pause, resume, rollback).
    pub(super) fn post<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call("POST", path, "application/json", None)
    }

    /// PUTs `body` as JSON.
    pub(super) fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body).expect("API request types serialise");
        self.call("PUT", path, "application/json", Some(&body))
    }

    pub(super) fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.call("DELETE", path, "application/json", None)
    }

    /// Creates or replaces the pipeline `definition` names.
    pub(super) fn put_pipeline(
        &self,
        definition: &crate::config::PipelineConfig,
    ) -> anyhow::Result<Pipeline> {
        self.put(&format!("/pipelines/{}", seg(&definition.name)), definition)
    }

    pub(super) fn upload(&self, file: &Path, name: Option<&str>) -> anyhow::Result<Uploaded> {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = name.unwrap_or(&stem);
        self.call(
            "POST",
            &format!("/modules?name={}", seg(name)),
            "application/wasm",
            Some(&bytes),
        )
        .with_context(|| format!("{} was refused", file.display()))
    }
}

/// Uploads `file` as the next version of module `name` and deploys it with `config` into slot
/// `slot` of `pipeline`; returns the version and the pipeline as it then is.
pub fn upload_and_deploy(
    api: &ApiArgs,
    pipeline: &str,
    slot: usize,
    file: &Path,
    name: &str,
    config: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<(u32, Pipeline)> {
    let client = Client::new(api);
    let uploaded = client.upload(file, Some(name))?;
    let body = DeployRequest {
        module: uploaded.name,
        version: Some(uploaded.version.version),
        config: Some(crate::config::scalars(config)),
    };
    let path = format!("/pipelines/{}/transforms/{slot}", seg(pipeline));
    let answer = client.put(&path, &body)?;
    Ok((uploaded.version.version, answer))
}

/// Uploads `file` as the next version of module `name` and adds it with `config` as a new last
/// slot of `pipeline`'s chain; returns the version and the pipeline as it then is.
pub fn upload_and_append(
    api: &ApiArgs,
    pipeline: &str,
    file: &Path,
    name: &str,
    config: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<(u32, Pipeline)> {
    let client = Client::new(api);
    let uploaded = client.upload(file, Some(name))?;
    let current: Pipeline = client.get(&format!("/pipelines/{}", seg(pipeline)))?;
    let mut definition = current
        .definition
        .with_context(|| format!("pipeline `{pipeline}` was just deleted"))?;
    definition.transform.push(crate::config::TransformConfig {
        module: format!("{}@{}", uploaded.name, uploaded.version.version),
        config: crate::config::scalars(config),
    });
    let answer = client.put_pipeline(&definition)?;
    Ok((uploaded.version.version, answer))
}

/// Runs `sluice modules`.
pub fn modules(args: ModulesArgs) -> anyhow::Result<i32> {
    let client = Client::new(&args.api);
    match args.command {
        ModulesCommand::List => {
            let answer: ModuleList = client.get("/modules")?;
            print!("{}", module_table(&answer));
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

/// The module list as a table whose columns are as wide as their longest value.
fn module_table(list: &ModuleList) -> String {
    let mut rows = vec![["MODULE", "VERSION", "SHA256", "BYTES", "UPLOADED"].map(String::from)];
    for module in &list.modules {
        for v in &module.versions {
            rows.push([
                module.name.clone(),
                v.version.to_string(),
                v.sha256[..v.sha256.len().min(12)].to_string(),
                v.size.to_string(),
                v.uploaded_at.clone(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut table = String::new();
    for row in &rows {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// Runs `sluice deploy`.
pub fn deploy(args: DeployArgs) -> anyhow::Result<i32> {
    let client = Client::new(&args.api);
    let slot_path = format!(
        "/pipelines/{}/transforms/{}",
        seg(&args.pipeline),
        args.slot
    );
    let pipeline: Pipeline = if args.rollback {
        client.post(&format!("{slot_path}/rollback"))?
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
        let config = if args.keep_config {
            let current: Pipeline = client.get(&format!("/pipelines/{}", seg(&args.pipeline)))?;
            let slot =
                (current.slots.into_iter().find(|s| s.index == args.slot)).with_context(|| {
                    format!("pipeline `{}` has no slot {}", args.pipeline, args.slot)
                })?;
            Some(crate::config::scalars(slot.config))
        } else {
            (!args.config.is_empty()).then(|| crate::config::scalars(args.config))
        };
        let body = DeployRequest {
            module: name,
            version,
            config,
        };
        client.put(&slot_path, &body)?
    };
    let chain: Vec<String> = pipeline
        .slots
        .iter()
        .map(|s| format!("[{}] {}@{}", s.index, s.module, s.version))
        .collect();
    println!("{}: {}", args.pipeline, chain.join(" -> "));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::Module;
    use crate::control::store::ModuleVersion;

    #[test]
    fn names_in_urls_stay_whole() {
        assert_eq!(seg("x#y"), "x%23y");
        assert_eq!(seg("a/b?c=d&e"), "a%2Fb%3Fc%3Dd%26e");
        assert_eq!(seg("tz_normaliser-2.~"), "tz_normaliser-2.~");
    }

    #[test]
    fn the_api_is_a_url_or_the_address_sluice_run_listens_on() {
        assert_eq!(api_url(None), "http://127.0.0.1:8080");
        assert_eq!(api_url(Some("127.0.0.1:9000")), "http://127.0.0.1:9000");
        assert_eq!(api_url(Some("0.0.0.0:9000")), "http://127.0.0.1:9000");
        assert_eq!(
            api_url(Some("https://sluice.internal/")),
            "https://sluice.internal"
        );
    }

    #[test]
    fn the_module_list_lines_up_whatever_the_names() {
        let version = |version: u32, size: u64| ModuleVersion {
            version,
            sha256: "ab".repeat(32),
            size,
            uploaded_at: "2026-12-05T10:00:00Z".into(),
            exports: Vec::new(),
        };
        let list = ModuleList {
            modules: vec![
                Module {
                    name: "a_module_with_a_name_longer_than_twenty_four".into(),
                    versions: vec![version(1, 222_184)],
                },
                Module {
                    name: "tz".into(),
                    versions: vec![version(12, 1_198_461)],
                },
            ],
        };
        let table = module_table(&list);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        // Every column starts at the same place on every line.
        let starts = |line: &str, field: &str| line.find(field).unwrap();
        let sha = &"ab".repeat(6);
        assert_eq!(starts(lines[1], sha), starts(lines[2], sha), "{table}");
        assert_eq!(starts(lines[0], "SHA256"), starts(lines[1], sha), "{table}");
        assert_eq!(lines[0].find("UPLOADED"), lines[2].find("2026"), "{table}");
        assert!(
            lines[1].contains(" 222184 ") && lines[2].contains("1198461 "),
            "{table}"
        );
    }
}
