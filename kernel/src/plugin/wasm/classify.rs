//! Decide which plugin world a component implements, from its exports, and
//! refuse contracts this llem does not speak, with a message that says so.

use crate::plugin::FailureKind;
use llem_sdk::PluginKind;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package this llem hosts, and the versions it accepts from plugins.
pub const PACKAGE: &str = "llem:plugin";
pub const HOST_VERSION: (u64, u64, u64) = (0, 1, 0);

pub struct Refusal(pub FailureKind, pub String);

/// Semver compatibility as the component model applies it: same major, and
/// for 0.x also the same minor.
pub fn compatible(version: (u64, u64, u64)) -> bool {
    let (major, minor, _) = version;
    if major != HOST_VERSION.0 {
        return false;
    }
    major != 0 || minor == HOST_VERSION.1
}

fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

type Version = (u64, u64, u64);

/// `llem:plugin/energy@0.1.0` -> ("energy", Some((0,1,0))).
fn split_llem_name(name: &str) -> Option<(&str, Option<Version>)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    match rest.split_once('@') {
        Some((iface, version)) => Some((iface, parse_version(version))),
        None => Some((rest, None)),
    }
}

fn kind_of_interface(iface: &str) -> Option<PluginKind> {
    PluginKind::ALL.into_iter().find(|k| k.as_str() == iface)
}

pub fn plugin_kind(engine: &Engine, component: &Component) -> Result<PluginKind, Refusal> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let host = format!("{PACKAGE}@{}.{}.x", HOST_VERSION.0, HOST_VERSION.1);

    // A plugin built against another major of the contract: say which.
    for name in exports.iter().chain(&imports) {
        if let Some((_, Some(version))) = split_llem_name(name)
            && !compatible(version)
        {
            return Err(Refusal(
                FailureKind::Incompatible,
                format!(
                    "was built against {PACKAGE}@{}.{}.{} (it uses `{name}`); this llem hosts {host}",
                    version.0, version.1, version.2
                ),
            ));
        }
    }

    let kinds: Vec<PluginKind> = exports
        .iter()
        .filter_map(|name| split_llem_name(name))
        .filter_map(|(iface, _)| kind_of_interface(iface))
        .collect();
    match kinds.as_slice() {
        [kind] if exports.iter().any(|e| e == "describe") => Ok(*kind),
        [_] => Err(Refusal(
            FailureKind::NotAPlugin,
            "exports a plugin interface but no `describe` function, so it does not implement a full llem plugin world".into(),
        )),
        [] => Err(Refusal(
            FailureKind::NotAPlugin,
            format!(
                "is a WebAssembly component but not an llem plugin: it exports {} and none of the {host} worlds (energy-plugin, backend-plugin, dataset-plugin, sink-plugin)",
                if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") }
            ),
        )),
        many => Err(Refusal(
            FailureKind::NotAPlugin,
            format!(
                "exports several plugin kinds ({}); a plugin implements exactly one world",
                many.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_component_model_semver() {
        assert!(compatible((0, 1, 0)));
        assert!(compatible((0, 1, 7)));
        assert!(!compatible((0, 2, 0)));
        assert!(!compatible((1, 0, 0)));
    }

    #[test]
    fn llem_names_are_split() {
        assert_eq!(
            split_llem_name("llem:plugin/energy@0.1.0"),
            Some(("energy", Some((0, 1, 0))))
        );
        assert_eq!(split_llem_name("wasi:cli/run@0.2.0"), None);
        // The optional companion package is not a plugin kind of its own, so a
        // host (this one, or one that predates it) ignores it when classifying.
        assert_eq!(
            split_llem_name("llem:plugin-ext/energy-topology@0.1.0"),
            None
        );
        assert_eq!(parse_version("1.2.3-rc.1"), Some((1, 2, 3)));
    }
}
