//! Charts as server-rendered SVG: no script, no CDN, and every data point
//! is an element of its own that carries its value (`<rect data-count>` for
//! a bar, `<circle data-value>` for a point on a line), so a browser test
//! can count them and a screen reader can read their `<title>`.

use std::fmt::Write;

/// One chart's data: a value per labelled bucket, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub title: String,
    /// What the values count or measure ("tickets", "minutes").
    pub unit: String,
    pub points: Vec<Point>,
}

/// One bucket. `value: None` is a bucket without data (no first response
/// that day): a gap in a line, not a zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub value: Option<f64>,
}

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// Escapes text for SVG (XML): labels and titles come from configuration
/// and mail, never trusted.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A value as shown: whole numbers without decimals, others with one.
pub fn show(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn frame(out: &mut String, s: &Series, kind: &str, max: f64) {
    let _ = write!(
        out,
        r#"<svg class="chart" data-kind="{kind}" viewBox="0 0 {W} {H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(&s.title)
    );
    let plot_h = H - TOP - BOTTOM;
    // Three grid lines with their values, so a reader can read heights.
    for i in 0..=2 {
        let v = max * f64::from(i) / 2.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 2.0;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{W}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
            LEFT - 4.0,
            y + 3.0,
            show(v)
        );
    }
}

/// Where bucket `i` of `n` is centred, and how wide a bar may be.
fn slot(i: usize, n: usize) -> (f64, f64) {
    let width = (W - LEFT) / n.max(1) as f64;
    (LEFT + width * (i as f64 + 0.5), width)
}

/// Labels under the axis, thinned so they do not overlap.
fn labels(out: &mut String, s: &Series) {
    let n = s.points.len();
    let every = n.div_ceil(12).max(1);
    for (i, p) in s.points.iter().enumerate() {
        if i % every == 0 {
            let (x, _) = slot(i, n);
            let _ = write!(
                out,
                r##"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#555">{}</text>"##,
                H - 8.0,
                esc(&p.label)
            );
        }
    }
}

/// The largest value, rounded up so the top grid line is a round number.
fn scale(s: &Series) -> f64 {
    let max = s
        .points
        .iter()
        .filter_map(|p| p.value)
        .fold(0.0_f64, f64::max);
    if max <= 0.0 {
        return 1.0;
    }
    let step = 10f64.powf(max.log10().floor());
    (max / step).ceil() * step
}

/// A bar chart: one `<rect data-count>` per bucket, a bucket without data
/// counting 0.
pub fn bars(s: &Series) -> String {
    let mut out = String::new();
    let max = scale(s);
    frame(&mut out, s, "bars", max);
    let plot_h = H - TOP - BOTTOM;
    let n = s.points.len();
    for (i, p) in s.points.iter().enumerate() {
        let v = p.value.unwrap_or(0.0);
        let (x, width) = slot(i, n);
        let h = plot_h * v / max;
        let bw = (width * 0.7).max(1.0);
        let _ = write!(
            out,
            r##"<rect data-label="{}" data-count="{}" x="{:.1}" y="{:.1}" width="{bw:.1}" height="{h:.1}" fill="#3b6ea5"><title>{}: {} {}</title></rect>"##,
            esc(&p.label),
            show(v),
            x - bw / 2.0,
            TOP + plot_h - h,
            esc(&p.label),
            show(v),
            esc(&s.unit)
        );
    }
    labels(&mut out, s);
    out.push_str("</svg>");
    out
}

/// A line chart: one `<circle data-value>` per bucket with data, joined
/// by a line that breaks where a bucket has none.
pub fn line(s: &Series) -> String {
    let mut out = String::new();
    let max = scale(s);
    frame(&mut out, s, "line", max);
    let plot_h = H - TOP - BOTTOM;
    let n = s.points.len();
    let at = |i: usize, v: f64| {
        let (x, _) = slot(i, n);
        (x, TOP + plot_h - plot_h * v / max)
    };
    let mut path = String::new();
    let mut pen_down = false;
    for (i, p) in s.points.iter().enumerate() {
        match p.value {
            Some(v) => {
                let (x, y) = at(i, v);
                let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !path.is_empty() {
        let _ = write!(
            out,
            r##"<path d="{}" fill="none" stroke="#c05621" stroke-width="2"/>"##,
            path.trim_end()
        );
    }
    for (i, p) in s.points.iter().enumerate() {
        if let Some(v) = p.value {
            let (x, y) = at(i, v);
            let _ = write!(
                out,
                r##"<circle data-label="{}" data-value="{}" cx="{x:.1}" cy="{y:.1}" r="3.5" fill="#c05621"><title>{}: {} {}</title></circle>"##,
                esc(&p.label),
                show(v),
                esc(&p.label),
                show(v),
                esc(&s.unit)
            );
        }
    }
    labels(&mut out, s);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[Option<f64>]) -> Series {
        Series {
            title: "New <tickets>".into(),
            unit: "tickets".into(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| Point {
                    label: format!("d{i}"),
                    value: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn bars_have_one_rect_per_bucket_with_its_count() {
        let svg = bars(&series(&[Some(3.0), None, Some(1.0)]));
        assert_eq!(svg.matches("<rect ").count(), 3);
        assert!(svg.contains(r#"data-label="d0" data-count="3""#), "{svg}");
        assert!(svg.contains(r#"data-label="d1" data-count="0""#), "{svg}");
        assert!(
            svg.contains("aria-label=\"New &lt;tickets&gt;\""),
            "escaped: {svg}"
        );
        assert!(!svg.contains("<tickets>"));
    }

    #[test]
    fn a_line_has_a_circle_per_bucket_with_data_and_breaks_at_gaps() {
        let svg = line(&series(&[Some(2.5), None, Some(4.0), Some(1.0)]));
        assert_eq!(svg.matches("<circle ").count(), 3);
        assert!(svg.contains(r#"data-value="2.5""#), "{svg}");
        let d = svg
            .split("<path d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(d.matches('M').count(), 2, "a gap starts a new stroke: {d}");
        let empty = line(&series(&[None, None]));
        assert!(!empty.contains("<circle") && !empty.contains("<path"));
    }

    #[test]
    fn the_scale_rounds_up_to_a_round_number() {
        assert_eq!(scale(&series(&[Some(37.0)])), 40.0);
        assert_eq!(scale(&series(&[Some(0.0)])), 1.0);
        assert_eq!(scale(&series(&[Some(7.0)])), 7.0);
        assert_eq!(show(2.0), "2");
        assert_eq!(show(2.25), "2.2");
    }
}
