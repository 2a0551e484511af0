pub mod completions;
pub mod config;
pub mod plugins;
pub mod run;
