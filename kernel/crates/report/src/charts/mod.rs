//! One chart kind per file. Each returns finished [`Chart`]s (an `<svg>`
//! string with an id, a title and a caption saying what it shows); data come
//! from [`crate::data`], drawing from [`crate::svg`].

pub mod axis;
pub mod distribution;
pub mod pareto;
pub mod timeline;

/// A drawn chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Unique in the page; used for the download file names.
    pub id: String,
    pub title: String,
    /// What the chart shows, over which interval, from which file (plain text).
    pub caption: String,
    pub svg: String,
}

/// A page-unique id from free text: ASCII letters and digits only.
#[must_use]
pub fn slug(prefix: &str, n: usize) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{}-{n}", clean.trim_matches('-'))
}
