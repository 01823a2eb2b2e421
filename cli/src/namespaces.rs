//! `floe namespace …`

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use floe_catalog::{Catalog, NamespaceDoc, NamespaceUpdate, TableTemplate};
use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{Namespace, TableIdent};
use serde_json::json;

use crate::{NamespaceCommand, NamespaceSetArgs};

fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in items {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("invalid {what} '{kv}': expected KEY=VALUE");
        };
        if k.trim().is_empty() {
            bail!("invalid {what} '{kv}': empty key");
        }
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// The template the flags describe, if any flag names one.
fn template(args: &NamespaceSetArgs) -> Result<Option<TableTemplate>> {
    let schema = if let Some(path) = &args.template_schema {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read template schema {}", path.display()))?;
        Some(schema::schema_from_json(
            &text,
            &path.display().to_string(),
        )?)
    } else if args.template_default {
        Some(schema::default_iot_schema())
    } else {
        None
    };
    let Some(schema) = schema else {
        if args.template_partition.is_some() || !args.template_properties.is_empty() {
            bail!("--template-partition and --template-property need --template-schema or --template-default");
        }
        return Ok(None);
    };
    let partition = args.template_partition.clone().unwrap_or_else(|| {
        if args.template_default {
            DEFAULT_PARTITION.to_string()
        } else {
            String::new()
        }
    });
    let t = TableTemplate {
        schema,
        partition,
        properties: key_values(&args.template_properties, "--template-property")?,
    };
    t.validate()?;
    Ok(Some(t))
}

fn doc_json(ns: &Namespace, doc: &NamespaceDoc) -> serde_json::Value {
    json!({
        "namespace": ns.to_string(),
        "properties": doc.properties,
        "template": doc.template.as_ref().map(|t| json!({
            "schema": t.schema,
            "partition": t.partition,
            "properties": t.properties,
        })),
    })
}

pub async fn run(catalog: &Catalog, cmd: NamespaceCommand) -> Result<()> {
    match cmd {
        NamespaceCommand::Create { namespace, set } => {
            let ns = Namespace::parse(&namespace)?;
            let doc = NamespaceDoc {
                properties: key_values(&set.properties, "property")?,
                template: template(&set)?,
                ..NamespaceDoc::default()
            };
            catalog.create_namespace(&ns, doc).await?;
            println!("created namespace {ns}");
        }
        NamespaceCommand::List { parent, json } => {
            let list = match parent {
                Some(p) => {
                    catalog
                        .list_namespaces(Some(&Namespace::parse(&p)?))
                        .await?
                }
                None => catalog.list_all_namespaces().await?,
            };
            let names: Vec<String> = list.iter().map(|n| n.to_string()).collect();
            if json {
                println!("{}", serde_json::to_string(&names)?);
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        NamespaceCommand::Describe { namespace, json } => {
            let ns = Namespace::parse(&namespace)?;
            let doc = catalog.describe_namespace(&ns).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&doc_json(&ns, &doc))?);
            } else {
                println!("namespace  {ns}");
                for (k, v) in &doc.properties {
                    println!("  {k} = {v}");
                }
                match &doc.template {
                    None => println!("template   (none: tables are created explicitly)"),
                    Some(t) => {
                        let cols: Vec<String> = t
                            .schema
                            .as_struct()
                            .fields()
                            .iter()
                            .map(|f| format!("{} {}", f.name, f.field_type))
                            .collect();
                        println!("template   {}", cols.join(", "));
                        println!(
                            "           partitioned by {}",
                            if t.partition.is_empty() {
                                "(nothing)"
                            } else {
                                &t.partition
                            }
                        );
                    }
                }
            }
        }
        NamespaceCommand::Set {
            namespace,
            set,
            unset,
            no_template,
        } => {
            let ns = Namespace::parse(&namespace)?;
            let change = NamespaceUpdate {
                set: key_values(&set.properties, "property")?,
                unset,
                template: if no_template {
                    Some(None)
                } else {
                    template(&set)?.map(Some)
                },
            };
            catalog.update_namespace(&ns, &change).await?;
            println!("updated namespace {ns}");
        }
    }
    Ok(())
}

/// `floe check NS`: the name is a namespace (and no table of that name exists).
pub(crate) async fn namespace_to_check(catalog: &Catalog, name: &str) -> Result<Option<Namespace>> {
    let Ok(ns) = Namespace::parse(name) else {
        return Ok(None);
    };
    if let Ok(ident) = TableIdent::parse(name) {
        match catalog.load_table(&ident).await {
            Err(floe_catalog::Error::Table(floe_table_format::Error::TableNotFound { .. })) => {}
            _ => return Ok(None),
        }
    }
    Ok(catalog.namespace_exists(&ns).await?.then_some(ns))
}

/// Check and repair a namespace's table index (spec: catalog.md, "The table index").
pub(crate) async fn check_index(catalog: &Catalog, ns: &Namespace, json: bool) -> Result<()> {
    if catalog.sql_backend().is_some() {
        bail!("floe check {ns}: an SQL catalog records its tables itself; there is no table index to check");
    }
    let repair = catalog.repair_index(ns).await?;
    if json {
        println!(
            "{}",
            json!({"namespace": ns.to_string(), "recorded": repair.recorded, "removed": repair.removed})
        );
        return Ok(());
    }
    for t in &repair.recorded {
        println!(
            "{ns}.{t}: was missing from the table index, or recorded with an old schema: recorded"
        );
    }
    for t in &repair.removed {
        println!("{ns}.{t}: the table index named a table that is gone: marker removed");
    }
    if repair.recorded.is_empty() && repair.removed.is_empty() {
        println!("{ns}: table index ok");
    } else {
        println!(
            "{ns}: table index repaired ({} recorded, {} removed)",
            repair.recorded.len(),
            repair.removed.len()
        );
    }
    Ok(())
}
