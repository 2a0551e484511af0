//! SVG building blocks: escaping, linear scales, tick placement, paths and a
//! plot frame (axes with units, grid, legend, title).

use std::fmt::Write as _;

/// HTML/XML-escape untrusted text for element content and quoted attributes.
#[must_use]
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed in XML.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Shorten to `max` characters with an ellipsis (before escaping).
#[must_use]
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Colours for series (colour-blind-friendly Tableau 10).
pub const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1", "#9c755f", "#ff9da7",
    "#edc948", "#bab0ac",
];

#[must_use]
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// A linear map from a data interval onto a pixel interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    /// `d0 == d1` is widened so the map stays defined.
    #[must_use]
    pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Scale {
        let (d0, d1) = if (d1 - d0).abs() > f64::EPSILON * d0.abs().max(1.0) {
            (d0, d1)
        } else {
            let pad = if d0 == 0.0 { 1.0 } else { d0.abs() * 0.1 };
            (d0 - pad, d1 + pad)
        };
        Scale { d0, d1, r0, r1 }
    }

    #[must_use]
    pub fn map(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// A "nice" tick step (1, 2 or 5 × 10^k) for about `count` ticks over `span`.
#[must_use]
pub fn nice_step(span: f64, count: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / count.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The data interval `[lo, hi]` widened to whole tick steps, with its step.
#[must_use]
pub fn nice_domain(lo: f64, hi: f64, count: usize) -> (f64, f64, f64) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo.min(hi), lo.max(hi))
    } else {
        (0.0, 1.0)
    };
    let (lo, hi) = if hi - lo > 0.0 {
        (lo, hi)
    } else if lo == 0.0 {
        (0.0, 1.0)
    } else {
        (lo - lo.abs() * 0.1, hi + hi.abs() * 0.1)
    };
    let step = nice_step(hi - lo, count);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// Ticks from `lo` to `hi` (inclusive) every `step`.
#[must_use]
pub fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let mut out = Vec::new();
    if !(step > 0.0 && lo.is_finite() && hi.is_finite()) {
        return out;
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    for k in first..=last.min(first + 200) {
        out.push(k as f64 * step);
    }
    out
}

/// A tick label with as many decimals as the step needs.
#[must_use]
pub fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_owned()
    } else {
        s
    }
}

/// A figure with three significant digits (tables, labels).
#[must_use]
pub fn fmt_sig(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&mag) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - mag).max(0) as usize;
    format!("{v:.decimals$}")
}

/// An SVG path through `points` (pixel coordinates), rounded to 0.01 px.
#[must_use]
pub fn path_d(points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        let _ = write!(
            d,
            "{}{},{}",
            if i == 0 { "M" } else { " L" },
            round2(*x),
            round2(*y)
        );
    }
    d
}

fn round2(v: f64) -> f64 {
    let r = (v * 100.0).round() / 100.0;
    if r == 0.0 { 0.0 } else { r }
}

/// A legend entry's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Line,
    Dashed,
    Dot,
    Ring,
    Band,
}

/// One plot: a frame with axes, ticks, grid, labels, legend, and a body of
/// SVG elements drawn in data coordinates through [`Plot::px`] and [`Plot::py`].
#[derive(Debug)]
pub struct Plot {
    pub id: String,
    pub title: String,
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub x: Scale,
    pub y: Scale,
    x_step: f64,
    y_step: f64,
    pub x_label: String,
    pub y_label: String,
    /// Categorical x axis: (position, label) instead of numeric ticks.
    pub x_categories: Option<Vec<(f64, String)>>,
    legend: Vec<(String, Mark, String)>,
    body: String,
    /// Drawn after the body, unclipped (point labels).
    overlay: String,
}

pub const WIDTH: f64 = 960.0;
pub const HEIGHT: f64 = 340.0;
const LEGEND_W: f64 = 230.0;

impl Plot {
    /// A plot over the data ranges `x` and `y` (widened to nice ticks).
    #[must_use]
    pub fn new(
        id: &str,
        title: &str,
        x_label: &str,
        y_label: &str,
        x: (f64, f64),
        y: (f64, f64),
    ) -> Plot {
        let (left, right, top, bottom) = (78.0, 24.0, 36.0, 52.0);
        let (x0, x1, x_step) = nice_domain(x.0, x.1, 8);
        let (y0, y1, y_step) = nice_domain(y.0, y.1, 5);
        Plot {
            id: id.to_owned(),
            title: title.to_owned(),
            width: WIDTH,
            height: HEIGHT,
            left,
            right,
            top,
            bottom,
            x: Scale::new(x0, x1, left, WIDTH - right),
            y: Scale::new(y0, y1, HEIGHT - bottom, top),
            x_step,
            y_step,
            x_label: x_label.to_owned(),
            y_label: y_label.to_owned(),
            x_categories: None,
            legend: Vec::new(),
            body: String::new(),
            overlay: String::new(),
        }
    }

    /// A categorical x axis: `labels[i]` at position `i`.
    #[must_use]
    pub fn with_categories(mut self, labels: &[String]) -> Plot {
        let n = labels.len().max(1) as f64;
        self.x = Scale::new(-0.5, n - 0.5, self.x.r0, self.x.r1);
        self.x_categories = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i as f64, l.clone()))
                .collect(),
        );
        self.bottom = 64.0;
        self.y.r0 = self.height - self.bottom;
        self
    }

    /// Set the plot height (before drawing).
    #[must_use]
    pub fn with_height(mut self, height: f64) -> Plot {
        self.height = height;
        self.y.r0 = height - self.bottom;
        self
    }

    /// Reserve a legend column on the right (before drawing).
    fn make_room_for_legend(&mut self) {
        if self.right < LEGEND_W {
            self.right = LEGEND_W;
            self.x.r1 = self.width - self.right;
        }
    }

    #[must_use]
    pub fn px(&self, v: f64) -> f64 {
        self.x.map(v)
    }

    #[must_use]
    pub fn py(&self, v: f64) -> f64 {
        self.y.map(v)
    }

    /// Add an entry to the legend; call before drawing (it narrows the plot area).
    pub fn legend(&mut self, colour: &str, mark: Mark, label: &str) {
        self.make_room_for_legend();
        self.legend
            .push((colour.to_owned(), mark, label.to_owned()));
    }

    /// Raw SVG appended to the body (the caller escapes what it writes).
    pub fn raw(&mut self, svg: &str) {
        self.body.push_str(svg);
    }

    /// A polyline through data points.
    pub fn line(&mut self, points: &[(f64, f64)], colour: &str, dashed: bool, title: &str) {
        if points.is_empty() {
            return;
        }
        let px: Vec<(f64, f64)> = points
            .iter()
            .map(|&(x, y)| (self.px(x), self.py(y)))
            .collect();
        let _ = write!(
            self.body,
            r#"<path class="series" d="{}" fill="none" stroke="{colour}" stroke-width="1.8"{} stroke-linejoin="round"><title>{}</title></path>"#,
            path_d(&px),
            if dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            },
            esc(title)
        );
    }

    /// A dot at a data point, with a hover title.
    pub fn dot(&mut self, x: f64, y: f64, r: f64, colour: &str, filled: bool, title: &str) {
        let (fill, stroke) = if filled {
            (colour, "#ffffff")
        } else {
            ("#ffffff", colour)
        };
        let _ = write!(
            self.body,
            r#"<circle class="point" cx="{}" cy="{}" r="{r}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"><title>{}</title></circle>"#,
            round2(self.px(x)),
            round2(self.py(y)),
            esc(title)
        );
    }

    /// A vertical error bar from `lo` to `hi` at `x`.
    pub fn error_bar(&mut self, x: f64, lo: f64, hi: f64, colour: &str) {
        let (cx, y0, y1) = (round2(self.px(x)), round2(self.py(lo)), round2(self.py(hi)));
        let _ = write!(
            self.body,
            r#"<path d="M{cx},{y0} L{cx},{y1} M{},{y0} L{},{y0} M{},{y1} L{},{y1}" stroke="{colour}" stroke-width="1.3" fill="none"/>"#,
            cx - 5.0,
            cx + 5.0,
            cx - 5.0,
            cx + 5.0
        );
    }

    /// A text label at a data point (escaped), offset in pixels; points in
    /// the right third of the plot are labelled on their left.
    pub fn label(&mut self, x: f64, y: f64, dx: f64, dy: f64, text: &str) {
        let (px, py) = (self.px(x), self.py(y));
        let right = px > self.x.r0 + 0.66 * (self.x.r1 - self.x.r0);
        let _ = write!(
            self.overlay,
            r##"<text x="{}" y="{}" font-size="11" fill="#333" text-anchor="{}">{}</text>"##,
            round2(if right { px - dx } else { px + dx }),
            round2(py + dy),
            if right { "end" } else { "start" },
            esc(&truncate(text, 40))
        );
    }

    /// The finished `<svg>` element.
    #[must_use]
    pub fn finish(&self) -> String {
        let (w, h) = (self.width, self.height);
        let (x0, x1) = (self.x.r0, self.x.r1);
        let (y0, y1) = (self.y.r0, self.y.r1); // bottom, top
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" class="plot" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#,
            id = esc(&self.id)
        );
        let _ = write!(s, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
        let _ = write!(
            s,
            r##"<text x="{x0}" y="20" font-size="14" font-weight="bold" fill="#222">{}</text>"##,
            esc(&self.title)
        );
        // Grid and y ticks.
        for t in ticks(self.y.d0, self.y.d1, self.y_step) {
            let py = round2(self.py(t));
            let _ = write!(
                s,
                r##"<line x1="{x0}" x2="{x1}" y1="{py}" y2="{py}" stroke="#e6e6e6"/><text x="{}" y="{}" text-anchor="end" fill="#444">{}</text>"##,
                x0 - 6.0,
                py + 4.0,
                fmt_tick(t, self.y_step)
            );
        }
        match &self.x_categories {
            Some(cats) => {
                for (pos, label) in cats {
                    let px = round2(self.px(*pos));
                    let _ = write!(
                        s,
                        r##"<line x1="{px}" x2="{px}" y1="{y0}" y2="{}" stroke="#444"/><text x="{px}" y="{}" text-anchor="middle" fill="#444">{}<title>{}</title></text>"##,
                        y0 + 5.0,
                        y0 + 18.0,
                        esc(&truncate(label, 22)),
                        esc(label)
                    );
                }
            }
            None => {
                for t in ticks(self.x.d0, self.x.d1, self.x_step) {
                    let px = round2(self.px(t));
                    let _ = write!(
                        s,
                        r##"<line x1="{px}" x2="{px}" y1="{y1}" y2="{y0}" stroke="#f0f0f0"/><line x1="{px}" x2="{px}" y1="{y0}" y2="{}" stroke="#444"/><text x="{px}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
                        y0 + 5.0,
                        y0 + 18.0,
                        fmt_tick(t, self.x_step)
                    );
                }
            }
        }
        // Axes.
        let _ = write!(
            s,
            r##"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" fill="none" stroke="#444"/>"##
        );
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#222">{}</text>"##,
            round2((x0 + x1) / 2.0),
            h - 10.0,
            esc(&self.x_label)
        );
        let ym = round2((y0 + y1) / 2.0);
        let _ = write!(
            s,
            r##"<text x="18" y="{ym}" text-anchor="middle" transform="rotate(-90 18 {ym})" fill="#222">{}</text>"##,
            esc(&self.y_label)
        );
        // Body, clipped to the plot area.
        let clip = format!("clip-{}", esc(&self.id));
        let _ = write!(
            s,
            r#"<clipPath id="{clip}"><rect x="{x0}" y="{}" width="{}" height="{}"/></clipPath><g clip-path="url(#{clip})">{}</g>"#,
            y1 - 8.0,
            x1 - x0 + 8.0,
            y0 - y1 + 16.0,
            self.body
        );
        s.push_str(&self.overlay);
        // Legend.
        let lx = x1 + 16.0;
        for (i, (colour, mark, label)) in self.legend.iter().enumerate() {
            let ly = y1 + 6.0 + 20.0 * i as f64;
            let sym = match mark {
                Mark::Line => format!(
                    r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2.5"/>"#,
                    lx + 22.0
                ),
                Mark::Dashed => format!(
                    r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2.5" stroke-dasharray="6 4"/>"#,
                    lx + 22.0
                ),
                Mark::Dot => format!(
                    r##"<circle cx="{}" cy="{ly}" r="5" fill="{colour}" stroke="#fff"/>"##,
                    lx + 11.0
                ),
                Mark::Ring => format!(
                    r##"<circle cx="{}" cy="{ly}" r="5" fill="#fff" stroke="{colour}" stroke-width="1.5"/>"##,
                    lx + 11.0
                ),
                Mark::Band => format!(
                    r#"<rect x="{lx}" y="{}" width="22" height="12" fill="{colour}"/>"#,
                    ly - 6.0
                ),
            };
            let _ = write!(
                s,
                r##"{sym}<text x="{}" y="{}" fill="#222">{}<title>{}</title></text>"##,
                lx + 28.0,
                ly + 4.0,
                esc(&truncate(label, 30)),
                esc(label)
            );
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("a\u{1}b"), "a\u{fffd}b");
    }

    #[test]
    fn a_scale_maps_its_ends_and_midpoint() {
        let s = Scale::new(0.0, 10.0, 100.0, 300.0);
        assert_eq!(s.map(0.0), 100.0);
        assert_eq!(s.map(5.0), 200.0);
        assert_eq!(s.map(10.0), 300.0);
        // Inverted pixel range (y axis).
        let y = Scale::new(0.0, 4.0, 200.0, 0.0);
        assert_eq!(y.map(1.0), 150.0);
        // A degenerate domain stays finite.
        assert!(Scale::new(3.0, 3.0, 0.0, 1.0).map(3.0).is_finite());
    }

    #[test]
    fn nice_domains_and_ticks() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(0.37, 5), 0.1);
        assert_eq!(nice_domain(0.3, 9.2, 5), (0.0, 10.0, 2.0));
        assert_eq!(ticks(0.0, 10.0, 2.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(fmt_tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(fmt_tick(-0.0, 0.5), "0.0");
        assert_eq!(fmt_tick(250.0, 50.0), "250");
        assert_eq!(fmt_sig(0.0012345), "0.00123");
        assert_eq!(fmt_sig(123.456), "123");
        assert_eq!(fmt_sig(f64::NAN), "–");
    }

    #[test]
    fn a_known_series_maps_to_known_coordinates() {
        // x 0..10 onto 78..(960-24) px, y 0..10 onto (340-52)..36 px.
        let mut p = Plot::new("t", "T", "x (s)", "y (W)", (0.0, 10.0), (0.0, 10.0));
        assert_eq!(p.px(0.0), 78.0);
        assert_eq!(p.px(10.0), 936.0);
        assert_eq!(p.py(0.0), 288.0);
        assert_eq!(p.py(10.0), 36.0);
        p.line(&[(0.0, 0.0), (5.0, 10.0), (10.0, 5.0)], "#000", false, "s");
        let svg = p.finish();
        assert!(svg.contains(r#"d="M78,288 L507,36 L936,162""#), "{svg}");
        assert_eq!(path_d(&[(1.004, 2.0), (3.0, 4.555)]), "M1,2 L3,4.56");
    }

    #[test]
    fn labels_in_the_frame_are_escaped() {
        let mut p = Plot::new("<id>", "<b>t</b>", "x", "y", (0.0, 1.0), (0.0, 1.0));
        p.legend("#000", Mark::Line, "<script>alert(1)</script>");
        p.dot(0.5, 0.5, 3.0, "#000", true, "<script>");
        p.label(0.5, 0.5, 0.0, 0.0, "<img src=x>");
        let svg = p.finish();
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<img"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }
}
