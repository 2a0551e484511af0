//! Checks across tables, after each table is valid on its own: what the run
//! would otherwise refuse only after starting (or silently reduce). Each
//! error points at the key that breaks the combination, with file:line:col.
//!
//! * one backend and one dataset per experiment (sweeps over them are a study);
//! * `[load].goodput` keys are `ttft_ms`, `tpot_ms`, `e2el_ms`, each > 0;
//! * `[load].endpoint` is an `http://host:port[/path]` URL.

use crate::error::ManifestError;
use crate::keys::PLUGINS_TABLE;
use crate::plan::PluginPlan;
use crate::raw::{RawManifest, RawTable, RawValue};
use crate::spans::Loc;
use llem_sdk::PluginKind;

const GOODPUT_KEYS: [&str; 3] = ["ttft_ms", "tpot_ms", "e2el_ms"];

fn sub_table<'r>(table: &'r RawTable, key: &str) -> Option<&'r RawTable> {
    match &table.get(key)?.item.value {
        RawValue::Table(t) => Some(t),
        _ => None,
    }
}

pub(crate) fn check(raw: &RawManifest, plugins: &[PluginPlan], errors: &mut Vec<ManifestError>) {
    one_of_each(raw, plugins, errors);
    let Some(load) = sub_table(&raw.root, "load") else {
        return;
    };
    goodput(raw, load, errors);
    endpoint(raw, load, errors);
}

/// Where `[plugins.<instance>]` is written (its header), for errors.
fn plugin_loc(raw: &RawManifest, instance: &str) -> Loc {
    sub_table(&raw.root, PLUGINS_TABLE)
        .and_then(|t| t.get(instance))
        .map(|e| e.key_loc.clone())
        .unwrap_or(Loc::Nowhere)
}

fn one_of_each(raw: &RawManifest, plugins: &[PluginPlan], errors: &mut Vec<ManifestError>) {
    for kind in [PluginKind::Backend, PluginKind::Dataset] {
        let of_kind: Vec<&PluginPlan> = plugins.iter().filter(|p| p.kind == kind).collect();
        let Some((first, rest)) = of_kind.split_first() else {
            continue;
        };
        for extra in rest {
            errors.push(
                ManifestError::at(
                    &raw.source_name,
                    &plugin_loc(raw, &extra.instance),
                    format!("{PLUGINS_TABLE}.{}", extra.instance),
                    format!(
                        "a second {kind}: [plugins.{}] ({}) beside [plugins.{}] ({}); one experiment runs one {kind}",
                        extra.instance, extra.full_name, first.instance, first.full_name
                    ),
                )
                .with_help(format!(
                    "keep one {kind} and run the other as its own experiment (sweeps over {kind}s will be a study)"
                )),
            );
        }
    }
}

fn goodput(raw: &RawManifest, load: &RawTable, errors: &mut Vec<ManifestError>) {
    let Some(table) = sub_table(load, "goodput") else {
        return;
    };
    for entry in &table.entries {
        let key_path = format!("load.goodput.{}", entry.key);
        if !GOODPUT_KEYS.contains(&entry.key.as_str()) {
            errors.push(
                ManifestError::at(
                    &raw.source_name,
                    &entry.key_loc,
                    key_path,
                    format!("unknown service-level objective `{}`", entry.key),
                )
                .with_help_opt(
                    crate::suggest::did_you_mean(&entry.key, GOODPUT_KEYS.iter().copied()).or_else(
                        || Some(format!("known: {} (milliseconds)", GOODPUT_KEYS.join(", "))),
                    ),
                ),
            );
            continue;
        }
        let value = match &entry.item.value {
            RawValue::Integer(i) => Some(*i as f64),
            RawValue::Float(f) => Some(*f),
            _ => None,
        };
        if !value.is_some_and(|v| v.is_finite() && v > 0.0) {
            errors.push(ManifestError::at(
                &raw.source_name,
                &entry.item.loc,
                key_path,
                format!("`{}` must be a number of milliseconds > 0", entry.key),
            ));
        }
    }
}

fn endpoint(raw: &RawManifest, load: &RawTable, errors: &mut Vec<ManifestError>) {
    let Some(entry) = load.get("endpoint") else {
        return;
    };
    let RawValue::String(url) = &entry.item.value else {
        return; // the type check reported it
    };
    if let Err(why) = check_url(url) {
        errors.push(
            ManifestError::at(&raw.source_name, &entry.item.loc, "load.endpoint", why)
                .with_help("write the server's base URL, e.g. \"http://127.0.0.1:8000\""),
        );
    }
}

/// `http://host:port[/path]`: the load generator speaks plain HTTP/1.1.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            format!("`{url}`: https is not supported; use the server's plain http:// address")
        } else {
            format!("`{url}` is not an http:// URL")
        }
    })?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("`{url}` has no port (http://host:port)"))?;
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("`{url}`: `{port}` is not a port (1–65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn endpoint_urls() {
        assert!(check_url("http://127.0.0.1:8000").is_ok());
        assert!(check_url("http://localhost:8000/v1").is_ok());
        assert!(check_url("https://x:1").unwrap_err().contains("https"));
        assert!(check_url("localhost:8000").is_err());
        assert!(
            check_url("http://localhost")
                .unwrap_err()
                .contains("no port")
        );
        assert!(check_url("http://:80").unwrap_err().contains("no host"));
        assert!(check_url("http://h:99999").is_err());
    }
}
