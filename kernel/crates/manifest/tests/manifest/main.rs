//! Integration tests of the manifest crate through its public API.

mod common;

mod edits;
mod grants;
mod inherit;
mod parse;
mod paths;
mod render;
mod resolve;
mod schema;
