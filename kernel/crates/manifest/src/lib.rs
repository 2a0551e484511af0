//! llem's TOML manifest.
//!
//! ```text
//! text ──parse──> RawManifest ──(add_plugin / apply_set)──> RawManifest ──resolve──> Plan
//! ```
//!
//! * [`parse`] keeps a line:column on every key and value, so every later error
//!   points at the exact place to fix.
//! * [`RawManifest::add_plugin`] and [`RawManifest::apply_set`] are the CLI's
//!   `--plugins` and `--set`; what they write is checked like file contents.
//! * [`RawManifest::inherit`], [`RawManifest::take_table`] and
//!   [`RawManifest::remove_plugin`] are a study's whole-table edits (its `base`
//!   manifest, its own tables, the backend a configuration keeps).
//! * [`resolve`] checks everything against llem's own key tables ([`keys`]) and
//!   each plugin's declared options (found through a [`PluginCatalog`]), collects
//!   every problem as a [`ManifestError`], and returns a typed [`Plan`].
//! * [`render_default`] and [`json_schema`] document the same key tables for
//!   people (`llem config default`) and editors.

mod catalog;
mod check;
mod combine;
mod edit;
mod error;
mod grants;
mod inherit;
pub mod keys;
mod plan;
mod raw;
mod render;
mod resolve;
mod schema;
mod spans;
mod suggest;

pub use catalog::{CatalogEntry, LookupError, PluginCatalog};
pub use error::ManifestError;
pub use plan::{
    DEFAULT_MAX_TOKENS, Experiment, Grant, GrantAccess, GrantedBy, Load, Measurement, Plan,
    PluginPlan, SandboxGrants,
};
pub use raw::{ManifestSource, RawEntry, RawItem, RawManifest, RawTable, RawValue, parse};
pub use render::render_default;
pub use resolve::resolve;
pub use schema::json_schema;
pub use spans::{Loc, key_segment};
pub use suggest::suggest;
