pub mod capabilities;
pub mod completions;
pub mod config;
pub mod dry_run;
pub mod env;
pub mod monitor;
pub mod plugins;
pub mod run;
