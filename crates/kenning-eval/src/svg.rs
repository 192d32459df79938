//! Hand-written SVG plots: DET curves and grouped bar charts with
//! confidence whiskers. Self-contained files, no fonts or scripts needed.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

const W: f64 = 720.0;
const H: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 90.0;
/// Colour-blind-safe palette (Okabe-Ito).
const COLOURS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
];

/// A named line of (x, y) points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points in data units.
    pub points: Vec<(f64, f64)>,
}

/// One bar: a value with an optional interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Height.
    pub value: f64,
    /// Lower whisker.
    pub low: Option<f64>,
    /// Upper whisker (`None` draws an open-ended whisker when `low` is set).
    pub high: Option<f64>,
}

/// Bars for one category (e.g. one demographic group), one per series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarGroup {
    /// Category label.
    pub label: String,
    /// One bar per series, `None` when missing.
    pub bars: Vec<Option<Bar>>,
}

/// A grouped bar chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// Series names (e.g. "global", "fair").
    pub series: Vec<String>,
    /// Categories.
    pub groups: Vec<BarGroup>,
    /// Logarithmic y axis (for rates spanning decades).
    pub log_y: bool,
    /// Optional horizontal reference line and its label (e.g. target FMR).
    pub reference: Option<(f64, String)>,
}

/// XML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Compact tick label: 1e-4 style for powers of ten, else short decimals.
fn tick_label(v: f64, log: bool) -> String {
    if log {
        let e = v.log10().round() as i32;
        match e {
            0 => "1".into(),
            -1 => "0.1".into(),
            -2 => "0.01".into(),
            _ => format!("1e{e}"),
        }
    } else if v == 0.0 {
        "0".into()
    } else if v.abs() >= 0.01 {
        format!("{}", (v * 1000.0).round() / 1000.0)
    } else {
        format!("{v:.0e}")
    }
}

/// An axis mapping data values to pixels.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    p0: f64,
    p1: f64,
}

impl Axis {
    fn new(min: f64, max: f64, log: bool, p0: f64, p1: f64) -> Self {
        let (lo, hi) = if log {
            let lo = min.max(1e-12).log10().floor();
            let hi = max.max(1e-12).log10().ceil();
            (lo, if hi > lo { hi } else { lo + 1.0 })
        } else {
            let hi = nice_ceiling(max.max(1e-12));
            (0.0f64.min(min), hi)
        };
        Self {
            lo,
            hi,
            log,
            p0,
            p1,
        }
    }
    fn px(&self, v: f64) -> f64 {
        let t = if self.log {
            v.max(10f64.powf(self.lo)).log10()
        } else {
            v
        };
        self.p0 + (t - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)
    }
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            (self.lo as i32..=self.hi as i32)
                .map(|e| 10f64.powi(e))
                .collect()
        } else {
            (0..=5)
                .map(|k| self.lo + (self.hi - self.lo) * k as f64 / 5.0)
                .collect()
        }
    }
}

fn nice_ceiling(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&v| v >= x)
        .unwrap_or(10.0 * p)
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"##,
        (LEFT + W - RIGHT) / 2.0,
        esc(title)
    );
}

fn frame(out: &mut String, x: Option<&Axis>, y: &Axis, x_label: &str, y_label: &str) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    for t in y.ticks() {
        let py = y.px(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{py:.1}" x2="{x1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            py + 4.0,
            tick_label(t, y.log)
        );
    }
    if let Some(x) = x {
        for t in x.ticks() {
            let px = x.px(t);
            let _ = writeln!(
                out,
                r##"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{y1}" stroke="#e5e5e5"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + 18.0,
                tick_label(t, x.log)
            );
        }
    }
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="none" stroke="#333"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text transform="translate(20 {}) rotate(-90)" text-anchor="middle">{}</text>"##,
        x1 - x0,
        y0 - y1,
        (x0 + x1) / 2.0,
        H - 20.0,
        esc(x_label),
        (y0 + y1) / 2.0,
        esc(y_label)
    );
}

fn legend(out: &mut String, names: &[String], lines: bool) {
    for (k, name) in names.iter().enumerate() {
        let (x, y) = (W - RIGHT + 16.0, TOP + 10.0 + 20.0 * k as f64);
        let c = COLOURS[k % COLOURS.len()];
        if lines {
            let _ = write!(
                out,
                r##"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="2.5"/>"##,
                x + 22.0
            );
        } else {
            let _ = write!(
                out,
                r##"<rect x="{x}" y="{}" width="14" height="12" fill="{c}"/>"##,
                y - 6.0
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}">{}</text>"##,
            x + 28.0,
            y + 4.0,
            esc(name)
        );
    }
}

/// A DET curve: FMR (x) against FNMR (y), both logarithmic. Points with a
/// zero rate are drawn on the axis floor.
pub fn det_svg(title: &str, series: &[Series]) -> String {
    let pos = |f: fn(&(f64, f64)) -> f64| {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(f))
            .filter(|&v| v > 0.0)
            .fold(f64::INFINITY, f64::min)
    };
    let (xmin, ymin) = (pos(|p| p.0), pos(|p| p.1));
    let x = Axis::new(
        if xmin.is_finite() { xmin } else { 1e-4 },
        1.0,
        true,
        LEFT,
        W - RIGHT,
    );
    let y = Axis::new(
        if ymin.is_finite() { ymin } else { 1e-3 },
        1.0,
        true,
        H - BOTTOM,
        TOP,
    );
    let mut out = String::new();
    header(&mut out, title);
    frame(
        &mut out,
        Some(&x),
        &y,
        "False match rate (FMR)",
        "False non-match rate (FNMR)",
    );
    for (k, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(a, b)| format!("{:.1},{:.1}", x.px(a), y.px(b)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline data-series="{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
            esc(&s.name),
            COLOURS[k % COLOURS.len()],
            pts.join(" ")
        );
    }
    legend(
        &mut out,
        &series.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        true,
    );
    out.push_str("</svg>\n");
    out
}

/// A grouped bar chart with confidence whiskers. On a log axis, zero bars
/// are drawn as a small hollow marker on the floor.
pub fn bar_chart_svg(chart: &BarChart) -> String {
    let vals = chart
        .groups
        .iter()
        .flat_map(|g| g.bars.iter().flatten())
        .flat_map(|b| [Some(b.value), b.low, b.high])
        .flatten();
    let vals: Vec<f64> = vals
        .chain(chart.reference.iter().map(|r| r.0))
        .filter(|v| v.is_finite())
        .collect();
    let max = vals.iter().copied().fold(0.0, f64::max);
    let min_pos = vals
        .iter()
        .copied()
        .filter(|&v| v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let y = if chart.log_y {
        Axis::new(
            if min_pos.is_finite() { min_pos } else { 1e-6 },
            max.max(1e-12),
            true,
            H - BOTTOM,
            TOP,
        )
    } else {
        Axis::new(0.0, max, false, H - BOTTOM, TOP)
    };
    let mut out = String::new();
    header(&mut out, &chart.title);
    frame(&mut out, None, &y, "", &chart.y_label);
    let ng = chart.groups.len().max(1) as f64;
    let slot = (W - RIGHT - LEFT) / ng;
    let ns = chart.series.len().max(1) as f64;
    let bw = (slot * 0.8 / ns).min(40.0);
    let floor = H - BOTTOM;
    for (gi, g) in chart.groups.iter().enumerate() {
        let cx = LEFT + slot * (gi as f64 + 0.5);
        let start = cx - bw * ns / 2.0;
        for (si, bar) in g.bars.iter().enumerate() {
            let Some(b) = bar else { continue };
            let c = COLOURS[si % COLOURS.len()];
            let bx = start + bw * si as f64;
            if chart.log_y && b.value <= 0.0 {
                let _ = writeln!(
                    out,
                    r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="4" fill="none" stroke="{c}"><title>{}: 0</title></rect>"##,
                    bx + 1.0,
                    floor - 4.0,
                    bw - 2.0,
                    esc(&chart.series[si])
                );
            } else {
                let top = y.px(b.value);
                let _ = writeln!(
                    out,
                    r##"<rect data-series="{}" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{c}"><title>{}: {}</title></rect>"##,
                    esc(&chart.series[si]),
                    bx + 1.0,
                    bw - 2.0,
                    (floor - top).max(0.0),
                    esc(&g.label),
                    b.value
                );
            }
            if let Some(lo) = b.low {
                let mx = bx + bw / 2.0;
                let (ylo, yhi) = (y.px(lo.max(0.0)), b.high.map_or(TOP, |h| y.px(h)));
                let cap_hi = if b.high.is_some() {
                    format!(
                        r##"<line x1="{:.1}" y1="{yhi:.1}" x2="{:.1}" y2="{yhi:.1}" stroke="#222"/>"##,
                        mx - 4.0,
                        mx + 4.0
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    r##"<line x1="{mx:.1}" y1="{ylo:.1}" x2="{mx:.1}" y2="{yhi:.1}" stroke="#222"/><line x1="{:.1}" y1="{ylo:.1}" x2="{:.1}" y2="{ylo:.1}" stroke="#222"/>{cap_hi}"##,
                    mx - 4.0,
                    mx + 4.0
                );
            }
        }
        let ty = floor + 14.0;
        let _ = writeln!(
            out,
            r##"<text transform="translate({cx:.1} {ty}) rotate(-30)" text-anchor="end" font-size="11">{}</text>"##,
            esc(&g.label)
        );
    }
    if let Some((v, label)) = &chart.reference {
        let py = y.px(*v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#555" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="#555">{}</text>"##,
            W - RIGHT,
            W - RIGHT + 6.0,
            py + 4.0,
            esc(label)
        );
    }
    legend(&mut out, &chart.series, false);
    out.push_str("</svg>\n");
    out
}
