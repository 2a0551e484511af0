//! What a plugin may touch once it runs, for `llem plugins inspect`: native
//! code is trusted and unconfined; a WASM plugin gets only what the user's
//! words grant, and this shows what those would be with no option set.

use llem::manifest::Grant;
use llem::plugin::sanitize;
use llem::{Catalog, Plugin, PluginFormat};

/// Grants the plugin gets from an otherwise empty manifest (`--plugins NAME`):
/// `Err` when it cannot be configured without options.
pub fn default_grants(catalog: &Catalog, plugin: &Plugin) -> Result<Vec<Grant>, String> {
    // Pinned to the inspected file, whatever else on the path has its name.
    let short = llem::discovery::short_name(plugin.name());
    let pin = format!("{short}.path={:?}", plugin.path().display().to_string());
    llem::probe::default_entry(catalog, short, &[pin]).map(|entry| entry.grants)
}

pub fn print(catalog: &Catalog, plugin: &Plugin) {
    if plugin.format() == PluginFormat::Native {
        println!(
            "  access: native code, trusted: it runs inside llem with all your permissions\n\
             \x20         (files, network, environment, processes); sandbox grants do not apply,\n\
             \x20         and a [plugins.<instance>.sandbox] table for it is an error"
        );
        return;
    }
    let shipped = llem::discovery::is_shipped(plugin.path());
    println!(
        "  access: sandboxed: no files, environment, network or processes beyond its grants:\n\
         \x20   - a `path` option you set (manifest, --set) grants what it names: a file, that\n\
         \x20     file alone, read-only; a directory, its tree, read-only; for a sink, writable\n\
         \x20   - [plugins.<instance>.sandbox] read/write/env grant more, nothing else does\n\
         \x20   - memory_mib (default 256, at most 4096) and call_timeout_ms (default 5000) bound it;\n\
         \x20     its strings, lists, errors and log lines are size-limited and sanitised"
    );
    if shipped {
        println!("    - it ships with llem, so its `path` defaults are granted too");
    } else {
        println!("    - its own defaults grant nothing (it does not ship with llem)");
    }
    match default_grants(catalog, plugin) {
        Ok(grants) if grants.is_empty() => println!("  granted with no option set: nothing"),
        Ok(grants) => {
            println!("  granted with no option set:");
            for grant in grants {
                println!("    {}", sanitize(&grant.to_string()));
            }
        }
        Err(why) => println!(
            "  granted with no option set: (it needs options first: {})",
            sanitize(&why)
        ),
    }
}
