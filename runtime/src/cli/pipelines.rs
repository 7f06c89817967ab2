//! `sluice pipelines` and `sluice apply`: pipelines as data, through a running runtime's API
//! (the same routes as the dashboard's form).

use super::client::{ApiArgs, Client, seg};
use crate::api::model::{Module, Pipeline, PipelineList};
use crate::config::{Config, Overrides, PipelineConfig};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Examples shown by `sluice pipelines --help`.
pub const PIPELINES_EXAMPLES: &str = "\
Examples:
  sluice pipelines list
  sluice pipelines show orders > orders.toml     # its definition, ready for `sluice apply`
  sluice pipelines pause orders
  sluice pipelines delete orders                 # drains, commits and stops it";

/// Examples shown by `sluice apply --help`.
pub const APPLY_EXAMPLES: &str = "\
Examples:
  sluice apply -f pipelines.toml --dry-run       # what would change, changing nothing
  sluice apply -f pipelines.toml                 # make the runtime's pipelines match the file
  sluice apply -f pipelines.toml --keep-others   # create and update, delete nothing

The file holds [[pipeline]] tables as in sluice.toml (other tables are checked, not applied).
A transform's `module` is a stored module (NAME, NAME@VERSION) or a `.wasm` file, which is
uploaded first. Each change is the pipeline's latest, and wins over an older one, whoever made
it (see README, \"Pipelines as data\").";

/// Arguments of `sluice pipelines`.
#[derive(Debug, Args)]
pub struct PipelinesArgs {
    #[command(subcommand)]
    command: PipelinesCommand,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Subcommand)]
enum PipelinesCommand {
    /// List the pipelines: status, chain and latest change.
    List,
    /// Print a pipeline's definition as TOML, as `sluice apply` reads it.
    Show {
        /// The pipeline.
        name: String,
    },
    /// Stop consuming; the pipeline keeps its group membership.
    Pause {
        /// The pipeline.
        name: String,
    },
    /// Go on consuming.
    Resume {
        /// The pipeline.
        name: String,
    },
    /// Delete a pipeline: it drains, commits and stops; its consumer group keeps its offsets.
    Delete {
        /// The pipeline.
        name: String,
    },
}

/// Arguments of `sluice apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The file of `[[pipeline]]` tables.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    /// Show what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep the runtime's pipelines that the file does not name (by default they are deleted,
    /// so that the runtime matches the file).
    #[arg(long)]
    keep_others: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs `sluice pipelines`.
pub fn pipelines(args: PipelinesArgs) -> anyhow::Result<i32> {
    let client = Client::new(&args.api);
    match args.command {
        PipelinesCommand::List => {
            let list: PipelineList = client.get("/pipelines")?;
            for p in &list.pipelines {
                let chain: Vec<String> = (p.slots.iter())
                    .map(|s| format!("{}@{}", s.module, s.version))
                    .collect();
                let change = (p.last_change.as_ref())
                    .map(|c| format!("  ({} by {} at {})", c.what, c.by, c.at))
                    .unwrap_or_default();
                println!(
                    "{}  {}  {} -> [{}] -> {}{change}",
                    p.stats.name,
                    status_name(p),
                    p.inputs.join(","),
                    chain.join(" -> "),
                    p.outputs.join(","),
                );
            }
        }
        PipelinesCommand::Show { name } => {
            let p: Pipeline = client.get(&format!("/pipelines/{}", seg(&name)))?;
            let definition = p
                .definition
                .with_context(|| format!("pipeline `{name}` was just deleted"))?;
            print!("{}", to_toml(&definition)?);
        }
        PipelinesCommand::Pause { ref name } | PipelinesCommand::Resume { ref name } => {
            let verb = if matches!(args.command, PipelinesCommand::Pause { .. }) {
                "pause"
            } else {
                "resume"
            };
            let p: Pipeline = client.post(&format!("/pipelines/{}/{verb}", seg(name)))?;
            println!("{name}: {}", status_name(&p));
        }
        PipelinesCommand::Delete { name } => {
            client.delete(&format!("/pipelines/{}", seg(&name)))?;
            println!("{name}: deleted");
        }
    }
    Ok(0)
}

/// `p`'s status as the API names it.
fn status_name(p: &Pipeline) -> String {
    let name = serde_json::to_value(p.stats.status).ok();
    (name.as_ref().and_then(|v| v.as_str()))
        .unwrap_or_default()
        .to_string()
}

/// `definition` as a `[[pipeline]]` table.
fn to_toml(definition: &PipelineConfig) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        pipeline: [&'a PipelineConfig; 1],
    }
    Ok(toml::to_string(&File {
        pipeline: [definition],
    })?)
}

/// One change `sluice apply` makes.
#[derive(Debug, PartialEq)]
enum Step {
    Create(PipelineConfig),
    Update {
        definition: PipelineConfig,
        /// `field: before -> after`, one per field that changes.
        fields: Vec<String>,
    },
    Delete(String),
}

/// Runs `sluice apply`.
pub fn apply(args: ApplyArgs) -> anyhow::Result<i32> {
    let file = Config::load(&args.file, Overrides::default())?;
    let client = Client::new(&args.api);
    let current: PipelineList = client.get("/pipelines")?;
    let current: BTreeMap<String, PipelineConfig> = (current.pipelines.into_iter())
        .filter_map(|p| Some((p.stats.name, p.definition?)))
        .collect();
    let mut wanted = Vec::new();
    for pipeline in &file.pipeline {
        wanted.push(resolve(&client, pipeline, args.dry_run)?);
    }
    let steps = plan(&current, &wanted, args.keep_others);
    if steps.is_empty() {
        println!(
            "{}: the runtime matches it, nothing to do",
            args.file.display()
        );
        return Ok(0);
    }
    for step in &steps {
        match step {
            Step::Create(p) => println!("+ {} (create)", p.name),
            Step::Update { definition, fields } => {
                println!("~ {} (update)", definition.name);
                for field in fields {
                    println!("    {field}");
                }
            }
            Step::Delete(name) => println!("- {name} (delete: not in the file)"),
        }
    }
    if args.dry_run {
        println!("dry run: nothing changed");
        return Ok(0);
    }
    for step in steps {
        match step {
            Step::Create(definition) | Step::Update { definition, .. } => {
                client
                    .put_pipeline(&definition)
                    .with_context(|| format!("pipeline `{}` was refused", definition.name))?;
            }
            Step::Delete(name) => {
                client.delete(&format!("/pipelines/{}", seg(&name)))?;
            }
        }
    }
    println!("applied {}", args.file.display());
    Ok(0)
}

/// `pipeline` with every module as the `NAME@VERSION` the runtime has (or will have) it as:
/// `.wasm` files uploaded (or, in a dry run, looked up by their sha256: `NAME@new` if the
/// runtime does not have them), `NAME` as its latest version.
fn resolve(
    client: &Client,
    pipeline: &PipelineConfig,
    dry_run: bool,
) -> anyhow::Result<PipelineConfig> {
    let mut resolved = pipeline.clone();
    for transform in &mut resolved.transform {
        if transform.is_file() {
            let path = Path::new(&transform.module);
            let name = (path.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let version = if dry_run {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let sha256 = crate::engine::hex_sha256(&bytes);
                (versions(client, &name)?.into_iter())
                    .find(|v| v.sha256 == sha256)
                    .map_or("new".to_string(), |v| v.version.to_string())
            } else {
                client
                    .upload(path, Some(&name))?
                    .version
                    .version
                    .to_string()
            };
            transform.module = format!("{name}@{version}");
        } else if let Ok((name, None)) = transform.stored() {
            let latest = versions(client, name)?.last().map(|v| v.version);
            let latest = latest.with_context(|| {
                format!("pipeline `{}`: no module is called `{name}`", pipeline.name)
            })?;
            transform.module = format!("{name}@{latest}");
        }
    }
    Ok(resolved)
}

/// The versions the runtime has of module `name`; none if it has no such module.
fn versions(
    client: &Client,
    name: &str,
) -> anyhow::Result<Vec<crate::control::store::ModuleVersion>> {
    match client.get::<Module>(&format!("/modules/{}", seg(name))) {
        Ok(module) => Ok(module.versions),
        Err(e) if e.to_string().ends_with("(404 Not Found)") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// What makes the runtime's pipelines (`current`) match `wanted`.
fn plan(
    current: &BTreeMap<String, PipelineConfig>,
    wanted: &[PipelineConfig],
    keep_others: bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for definition in wanted {
        match current.get(&definition.name) {
            None => steps.push(Step::Create(definition.clone())),
            Some(now) => {
                let fields = differences(now, definition);
                if !fields.is_empty() {
                    steps.push(Step::Update {
                        definition: definition.clone(),
                        fields,
                    });
                }
            }
        }
    }
    if !keep_others {
        for name in current.keys() {
            if !wanted.iter().any(|w| &w.name == name) {
                steps.push(Step::Delete(name.clone()));
            }
        }
    }
    steps
}

/// `field: before -> after` for each field of a definition that differs.
fn differences(before: &PipelineConfig, after: &PipelineConfig) -> Vec<String> {
    let as_map = |p: &PipelineConfig| match serde_json::to_value(p) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => unreachable!("a definition is an object"),
    };
    let (before, after) = (as_map(before), as_map(after));
    (after.iter())
        .filter(|(field, value)| before.get(*field) != Some(value))
        .map(|(field, value)| {
            let was = before.get(field).cloned().unwrap_or_default();
            format!("{field}: {was} -> {value}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(extra: &str) -> PipelineConfig {
        let text = format!(
            "[[pipeline]]\nname = \"p\"\ninputs = [\"a\"]\noutputs = [\"b\"]\n{extra}\n\
             [[pipeline.transform]]\nmodule = \"tz@1\"\n"
        );
        Config::parse(&text).unwrap().pipeline.remove(0)
    }

    #[test]
    fn apply_creates_updates_and_deletes_what_differs_and_nothing_else() {
        let current: BTreeMap<String, PipelineConfig> = [
            ("p".to_string(), definition("")),
            ("gone".to_string(), {
                let mut d = definition("");
                d.name = "gone".into();
                d
            }),
        ]
        .into();
        let mut new = definition("");
        new.name = "new".into();
        let changed = definition("batch_size = 10");
        let steps = plan(&current, &[changed.clone(), new.clone()], false);
        assert_eq!(
            steps,
            [
                Step::Update {
                    definition: changed.clone(),
                    fields: vec!["batch_size: 1024 -> 10".into()]
                },
                Step::Create(new.clone()),
                Step::Delete("gone".into()),
            ]
        );
        assert_eq!(plan(&current, &[changed, new], true).len(), 2);
        assert!(plan(&current, &[definition(""), current["gone"].clone()], false).is_empty());
    }

    #[test]
    fn a_definition_shown_as_toml_is_read_back_the_same() {
        let mut shown = definition("guarantee = \"exactly-once\"\ndead_letter = \"dlq\"");
        shown.transform[0]
            .config
            .insert("field".into(), crate::config::Scalar("at".into()));
        let text = to_toml(&shown).unwrap();
        assert_eq!(Config::parse(&text).unwrap().pipeline[0], shown, "{text}");
    }
}
