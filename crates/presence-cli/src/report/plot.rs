//! Self-contained SVG charts for the benchmark report: a log-log plot of
//! time against state size, and throughput bars. Hand-drawn rather than a
//! plotting crate's, so the output is byte-stable for the same figures.

use std::fmt::Write as _;

use presence_sim::svg::escape;

const WIDTH: f64 = 900.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 260.0;
const MARGIN_TOP: f64 = 50.0;
const MARGIN_BOTTOM: f64 = 60.0;
const PLOT_HEIGHT: f64 = 420.0;

/// One line of points, `(x, seconds)`.
pub struct Series {
    pub label: String,
    pub colour: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// A reference point drawn as a hollow diamond, with a bar over its range.
pub struct Anchor {
    pub label: String,
    pub x: f64,
    pub low: f64,
    pub high: f64,
    /// Whether the label goes left of the point (to keep clear of a
    /// neighbour's).
    pub label_left: bool,
}

/// A bar in a throughput chart.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub text: String,
    /// A target drawn as a tick across the bar's row.
    pub target: Option<f64>,
}

/// Bars that share a unit and a scale.
pub struct Section {
    pub title: String,
    pub bars: Vec<Bar>,
}

/// `1 µs`, `10 ms`, `1 s`: a decade of seconds as an axis label.
fn seconds_label(seconds: f64) -> String {
    let (value, unit) = if seconds < 1e-6 {
        (seconds * 1e9, "ns")
    } else if seconds < 1e-3 {
        (seconds * 1e6, "µs")
    } else if seconds < 1.0 {
        (seconds * 1e3, "ms")
    } else {
        (seconds, "s")
    };
    format!("{} {unit}", value.round())
}

/// `1k`, `100k`, `1m`: a decade of entries as an axis label.
fn count_label(count: f64) -> String {
    if count >= 1e6 {
        format!("{}m", (count / 1e6).round())
    } else if count >= 1e3 {
        format!("{}k", (count / 1e3).round())
    } else {
        format!("{}", count.round())
    }
}

fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (low, high) = values
        .filter(|value| *value > 0.0 && value.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    if !low.is_finite() {
        return (0, 1);
    }
    let low = low.log10().floor() as i32;
    let high = (high.log10().ceil() as i32).max(low + 1);
    (low, high)
}

fn header(out: &mut String, height: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{MARGIN_LEFT}" y="28" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
}

/// Time (seconds) against size, both axes logarithmic, with the anchors
/// on the same axes.
pub fn log_log(title: &str, x_label: &str, series: &[Series], anchors: &[Anchor]) -> String {
    let frame = LogFrame::around(series, anchors);
    let mut out = String::new();
    header(&mut out, frame.height(), title);
    frame.grid(&mut out, x_label);
    let legend_y = frame.series(&mut out, series);
    frame.anchors(&mut out, anchors, legend_y);
    out.push_str("</svg>\n");
    out
}

/// The axes of a log-log chart: whole decades around every point drawn.
struct LogFrame {
    x_decades: (i32, i32),
    y_decades: (i32, i32),
}

impl LogFrame {
    fn around(series: &[Series], anchors: &[Anchor]) -> Self {
        let xs = series
            .iter()
            .flat_map(|line| line.points.iter().map(|point| point.0))
            .chain(anchors.iter().map(|anchor| anchor.x));
        let ys = series
            .iter()
            .flat_map(|line| line.points.iter().map(|point| point.1))
            .chain(anchors.iter().flat_map(|anchor| [anchor.low, anchor.high]));
        Self {
            x_decades: decades(xs),
            y_decades: decades(ys),
        }
    }

    fn plot_width() -> f64 {
        WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    }

    fn height(&self) -> f64 {
        MARGIN_TOP + PLOT_HEIGHT + MARGIN_BOTTOM
    }

    fn x(&self, value: f64) -> f64 {
        let (low, high) = self.x_decades;
        MARGIN_LEFT + (value.log10() - f64::from(low)) / f64::from(high - low) * Self::plot_width()
    }

    fn y(&self, value: f64) -> f64 {
        let (low, high) = self.y_decades;
        MARGIN_TOP + PLOT_HEIGHT - (value.log10() - f64::from(low)) / f64::from(high - low) * PLOT_HEIGHT
    }

    fn legend_x() -> f64 {
        MARGIN_LEFT + Self::plot_width() + 20.0
    }

    /// A grid line per decade on each axis, the frame and the x label.
    fn grid(&self, out: &mut String, x_label: &str) {
        let plot_width = Self::plot_width();
        for decade in self.x_decades.0..=self.x_decades.1 {
            let px = self.x(10f64.powi(decade));
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" y1="{MARGIN_TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e5e7eb"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                MARGIN_TOP + PLOT_HEIGHT,
                MARGIN_TOP + PLOT_HEIGHT + 18.0,
                count_label(10f64.powi(decade))
            );
        }
        for decade in self.y_decades.0..=self.y_decades.1 {
            let py = self.y(10f64.powi(decade));
            let _ = write!(
                out,
                r##"<line x1="{MARGIN_LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                MARGIN_LEFT + plot_width,
                MARGIN_LEFT - 8.0,
                py + 4.0,
                seconds_label(10f64.powi(decade))
            );
        }
        let _ = write!(
            out,
            r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_width}" height="{PLOT_HEIGHT}" fill="none" stroke="#6b7280"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            MARGIN_LEFT + plot_width / 2.0,
            self.height() - 18.0,
            escape(x_label)
        );
    }

    /// Each series as a line with its points and a legend entry; returns
    /// where the next legend entry goes.
    fn series(&self, out: &mut String, series: &[Series]) -> f64 {
        let legend_x = Self::legend_x();
        let mut legend_y = MARGIN_TOP + 10.0;
        for line in series {
            let path: Vec<String> = line
                .points
                .iter()
                .map(|&(px, py)| format!("{:.1},{:.1}", self.x(px), self.y(py)))
                .collect();
            let _ = write!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                path.join(" "),
                line.colour
            );
            for &(px, py) in &line.points {
                let _ = write!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"/>"#,
                    self.x(px),
                    self.y(py),
                    line.colour
                );
            }
            let _ = write!(
                out,
                r#"<line x1="{legend_x}" y1="{legend_y}" x2="{:.1}" y2="{legend_y}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                legend_x + 18.0,
                line.colour,
                legend_x + 24.0,
                legend_y + 4.0,
                escape(&line.label)
            );
            legend_y += 20.0;
        }
        legend_y
    }

    /// Each anchor as a range with a diamond, and their legend entry at
    /// `legend_y`.
    fn anchors(&self, out: &mut String, anchors: &[Anchor], legend_y: f64) {
        for anchor in anchors {
            let (px, top, bottom) = (self.x(anchor.x), self.y(anchor.high), self.y(anchor.low));
            let mid = (top + bottom) / 2.0;
            let (label_x, label_anchor) = if anchor.label_left {
                (px - 10.0, "end")
            } else {
                (px + 10.0, "start")
            };
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="#b91c1c" stroke-width="2"/><path d="M{px:.1},{:.1} l6,6 l-6,6 l-6,-6 z" fill="white" stroke="#b91c1c" stroke-width="2"/><text x="{label_x:.1}" y="{:.1}" text-anchor="{label_anchor}" fill="#b91c1c">{}</text>"##,
                mid - 6.0,
                mid + 4.0,
                escape(&anchor.label)
            );
        }
        if !anchors.is_empty() {
            let legend_x = Self::legend_x();
            let _ = write!(
                out,
                r##"<path d="M{:.1},{:.1} l6,6 l-6,6 l-6,-6 z" fill="white" stroke="#b91c1c" stroke-width="2"/><text x="{:.1}" y="{:.1}">Phoenix.Tracker.State</text>"##,
                legend_x + 9.0,
                legend_y - 6.0,
                legend_x + 24.0,
                legend_y + 4.0
            );
        }
    }
}

/// Horizontal bars, one scale per section, each bar labelled with its
/// figure and, where one exists, a target tick.
pub fn bars(title: &str, sections: &[Section]) -> String {
    const ROW: f64 = 26.0;
    const LABEL: f64 = 380.0;
    let bar_width = WIDTH - LABEL - 190.0;
    let rows: usize = sections.iter().map(|section| section.bars.len() + 1).sum();
    let height = MARGIN_TOP + ROW * rows as f64 + 30.0;
    let mut out = String::new();
    header(&mut out, height, title);
    let mut top = MARGIN_TOP;
    for section in sections {
        let scale = section
            .bars
            .iter()
            .flat_map(|bar| [bar.value, bar.target.unwrap_or(0.0)])
            .fold(0.0f64, f64::max)
            .max(f64::MIN_POSITIVE);
        let _ = write!(
            out,
            r#"<text x="20" y="{:.1}" font-weight="bold">{}</text>"#,
            top + 17.0,
            escape(&section.title)
        );
        top += ROW;
        for bar in &section.bars {
            let length = bar.value / scale * bar_width;
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{LABEL}" y="{:.1}" width="{length:.1}" height="{:.1}" fill="#2563eb"/><text x="{:.1}" y="{:.1}">{}</text>"##,
                LABEL - 8.0,
                top + 17.0,
                escape(&bar.label),
                top + 4.0,
                ROW - 8.0,
                LABEL + length + 6.0,
                top + 17.0,
                escape(&bar.text)
            );
            if let Some(target) = bar.target {
                let tick = LABEL + target / scale * bar_width;
                let _ = write!(
                    out,
                    r##"<line x1="{tick:.1}" y1="{:.1}" x2="{tick:.1}" y2="{:.1}" stroke="#b91c1c" stroke-width="2" stroke-dasharray="4 2"/>"##,
                    top,
                    top + ROW
                );
            }
            top += ROW;
        }
    }
    let _ = write!(
        out,
        r##"<line x1="20" y1="{:.1}" x2="40" y2="{:.1}" stroke="#b91c1c" stroke-width="2" stroke-dasharray="4 2"/><text x="46" y="{:.1}">target</text>"##,
        top + 12.0,
        top + 12.0,
        top + 16.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_name_their_decades() {
        assert_eq!(seconds_label(1e-6), "1 µs");
        assert_eq!(seconds_label(0.01), "10 ms");
        assert_eq!(seconds_label(10.0), "10 s");
        assert_eq!(count_label(1e5), "100k");
        assert_eq!(count_label(1e6), "1m");
        assert_eq!(decades([3e-5, 0.2].into_iter()), (-5, 0));
        assert_eq!(decades(std::iter::empty()), (0, 1));
    }

    #[test]
    fn charts_are_well_formed_and_escaped() {
        let line = Series {
            label: "a < b".into(),
            colour: "#000",
            points: vec![(1e3, 1e-4), (1e6, 0.2)],
        };
        let anchor = Anchor {
            label: "P & Q".into(),
            x: 1e5,
            low: 0.27,
            high: 0.3,
            label_left: true,
        };
        let svg = log_log("t", "entries", &[line], &[anchor]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b") && svg.contains("P &amp; Q"));
        let section = Section {
            title: "MB/s".into(),
            bars: vec![Bar {
                label: "encode".into(),
                value: 250.0,
                text: "250 MB/s".into(),
                target: Some(300.0),
            }],
        };
        let svg = bars("throughput", &[section]);
        assert!(svg.contains("250 MB/s") && svg.contains("stroke-dasharray"));
    }
}
