//! `llem report`: run and study directories gathered into one self-contained
//! HTML page (inline SVG charts, nothing fetched when it is viewed) and a
//! terminal summary of the same figures.
//!
//! * [`data`] reads the directories (result.json, timeseries.csv,
//!   requests.jsonl, study.json, design.json) into plain structures;
//! * [`pareto`] computes energy–latency frontiers (pure);
//! * [`svg`] holds scales, ticks, paths and the plot frame;
//! * [`charts`] draws one kind of chart per file;
//! * [`html`] assembles the page, [`terminal`] the text summary.
//!
//! Every string that comes from a run (labels, model, device and host names)
//! is untrusted and escaped with [`svg::esc`] wherever it is written.

pub mod charts;
pub mod data;
pub mod html;
pub mod pareto;
pub mod svg;
pub mod terminal;

pub use data::{Report, gather};
