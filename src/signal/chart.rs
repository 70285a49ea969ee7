//! `biometric-bridge users chart`: one person as an SVG picture — nightly HRV with its 7-day
//! mean and personal band, the other signals where present, and every trigger marked.
//!
//! The band is recomputed with the processor's own baseline code and the topology's rule, from
//! the nights in the history table (`biometric_events`, written by `sink postgres`) or from a
//! synthetic cohort person. The SVG is written by hand: a few lines, rectangles and text do not
//! justify a plotting crate and its font stack in this build.

use std::fmt::Write as _;

use crate::event::Severity;
use crate::processor::baseline::BaselineState;
use crate::topology::BaselineParams;

/// One night of one person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChartNight {
    /// Days since 1970-01-01 (the night's local date).
    pub day: i32,
    pub rmssd_ms: Option<f64>,
    pub resting_hr_bpm: Option<f64>,
    pub respiratory_rate: Option<f64>,
    pub temperature_deviation_c: Option<f64>,
    /// Every trigger of the night's event, by type and severity.
    pub triggers: Vec<(String, Severity)>,
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const HRV_HEIGHT: f64 = 260.0;
const SIGNAL_HEIGHT: f64 = 90.0;
const GAP: f64 = 34.0;

/// The per-day band: (day, 7-day mean, baseline mean, lower band), all in ms.
fn band(nights: &[ChartNight], params: &BaselineParams) -> Vec<(i32, f64, f64, f64)> {
    let mut state = BaselineState::default();
    let mut out = Vec::new();
    for (index, night) in nights.iter().enumerate() {
        if let Some(rmssd) = night.rmssd_ms.filter(|v| *v > 0.0) {
            state.add(night.day, index as u64, rmssd, params);
        }
        if let Some(j) = state.judge(night.day, params) {
            out.push((night.day, j.recent_mean.exp(), j.baseline_mean.exp(), j.lower_band.exp()));
        }
    }
    out
}

/// A value axis: maps a value into a panel's pixel rows.
struct Panel {
    top: f64,
    height: f64,
    low: f64,
    high: f64,
}

impl Panel {
    fn new(top: f64, height: f64, values: impl Iterator<Item = f64>) -> Panel {
        let (mut low, mut high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        if !low.is_finite() {
            (low, high) = (0.0, 1.0);
        }
        let pad = ((high - low) * 0.08).max(0.5);
        Panel { top, height, low: low - pad, high: high + pad }
    }

    fn y(&self, value: f64) -> f64 {
        self.top + self.height * (1.0 - (value - self.low) / (self.high - self.low))
    }
}

fn polyline(svg: &mut String, points: &[(f64, f64)], style: &str) {
    if points.len() < 2 {
        return;
    }
    let path: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(svg, r#"<polyline fill="none" {style} points="{}"/>"#, path.join(" "));
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn trigger_colour(trigger_type: &str) -> &'static str {
    match trigger_type {
        "ILLNESS_RISK" => "#c0392b",
        "HRV_BELOW_BASELINE" => "#e67e22",
        "URGENT_INTERVENTION" | "STRESS_INTERVENTION" => "#7f8c8d",
        _ => "#8e44ad",
    }
}

/// Reads one signal of a night, for a strip of the chart.
type SignalOf = fn(&ChartNight) -> Option<f64>;

/// The SVG of one person. `title` names them (a pseudonym in shared pictures).
pub fn render(title: &str, nights: &[ChartNight], params: &BaselineParams) -> String {
    let signals: [(&str, SignalOf); 3] = [
        ("resting HR (bpm)", |n| n.resting_hr_bpm),
        ("respiratory rate (/min)", |n| n.respiratory_rate),
        ("temperature deviation (°C)", |n| n.temperature_deviation_c),
    ];
    let present: Vec<_> = signals.iter().filter(|(_, get)| nights.iter().any(|n| get(n).is_some())).collect();
    let height = 60.0 + HRV_HEIGHT + present.len() as f64 * (SIGNAL_HEIGHT + GAP) + 50.0;
    let (first, last) =
        (nights.first().map_or(0, |n| n.day), nights.last().map_or(1, |n| n.day).max(nights.first().map_or(0, |n| n.day) + 1));
    let x = |day: i32| LEFT + (WIDTH - LEFT - RIGHT) * f64::from(day - first) / f64::from(last - first);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(svg, r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#, escape(title));

    // HRV: nightly dots, the band between baseline mean and lower band, the 7-day mean.
    let bands = band(nights, params);
    let hrv =
        Panel::new(44.0, HRV_HEIGHT, nights.iter().filter_map(|n| n.rmssd_ms).chain(bands.iter().flat_map(|(_, m, b, l)| [*m, *b, *l])));
    let _ = writeln!(svg, r##"<text x="{LEFT}" y="40" fill="#333">nightly rMSSD (ms), 7-day mean and personal band</text>"##);
    if !bands.is_empty() {
        let upper: Vec<(f64, f64)> = bands.iter().map(|(d, _, b, _)| (x(*d), hrv.y(*b))).collect();
        let lower: Vec<(f64, f64)> = bands.iter().rev().map(|(d, _, _, l)| (x(*d), hrv.y(*l))).collect();
        let area: Vec<String> = upper.iter().chain(&lower).map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
        let _ = writeln!(svg, r##"<polygon fill="#d6eaf8" stroke="none" points="{}"/>"##, area.join(" "));
        polyline(&mut svg, &lower, r##"stroke="#5dade2" stroke-dasharray="4 3""##);
        polyline(
            &mut svg,
            &bands.iter().map(|(d, m, _, _)| (x(*d), hrv.y(*m))).collect::<Vec<_>>(),
            r##"stroke="#1f618d" stroke-width="2""##,
        );
    }
    for night in nights {
        if let Some(v) = night.rmssd_ms {
            let _ = writeln!(svg, r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#34495e"/>"##, x(night.day), hrv.y(v));
        }
    }
    axis(&mut svg, &hrv);

    // Triggers: a tick per night and type above the HRV panel's floor.
    let mut row_of: Vec<String> = Vec::new();
    for night in nights {
        for (trigger_type, severity) in &night.triggers {
            let row = row_of.iter().position(|t| t == trigger_type).unwrap_or_else(|| {
                row_of.push(trigger_type.clone());
                row_of.len() - 1
            });
            let y = hrv.top + hrv.height - 8.0 - 9.0 * row as f64;
            let size = if *severity >= Severity::High { 4.0 } else { 3.0 };
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{size}" height="{size}" fill="{}"/>"#,
                x(night.day) - size / 2.0,
                y,
                trigger_colour(trigger_type)
            );
        }
    }
    for (row, trigger_type) in row_of.iter().enumerate() {
        let y = 60.0 + 16.0 * row as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{}"/>"#,
            WIDTH - RIGHT + 12.0,
            y - 8.0,
            trigger_colour(trigger_type)
        );
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{y:.1}" font-size="10">{}</text>"#, WIDTH - RIGHT + 25.0, escape(trigger_type));
    }

    // The other signals.
    let mut top = 44.0 + HRV_HEIGHT + GAP;
    for (name, get) in present {
        let panel = Panel::new(top, SIGNAL_HEIGHT, nights.iter().filter_map(get));
        let _ = writeln!(svg, r##"<text x="{LEFT}" y="{:.1}" fill="#333">{}</text>"##, top - 6.0, escape(name));
        let points: Vec<(f64, f64)> = nights.iter().filter_map(|n| get(n).map(|v| (x(n.day), panel.y(v)))).collect();
        polyline(&mut svg, &points, r##"stroke="#117a65" stroke-width="1.5""##);
        axis(&mut svg, &panel);
        top += SIGNAL_HEIGHT + GAP;
    }
    let date = |day: i32| chrono::NaiveDate::from_num_days_from_ce_opt(day + 719_163).map_or_else(String::new, |d| d.to_string());
    let _ = writeln!(svg, r#"<text x="{LEFT}" y="{:.1}">{}</text>"#, top - 6.0, date(first));
    let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, WIDTH - RIGHT, top - 6.0, date(last));
    svg.push_str("</svg>\n");
    svg
}

/// A panel's frame and its low and high labels.
fn axis(svg: &mut String, panel: &Panel) {
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#aaa"/>"##,
        panel.top,
        WIDTH - LEFT - RIGHT,
        panel.height
    );
    for value in [panel.low, panel.high] {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{value:.1}</text>"#,
            LEFT - 6.0,
            panel.y(value) + 4.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picture_has_every_night_the_band_and_the_triggers() {
        let nights: Vec<ChartNight> = (0..60)
            .map(|i| ChartNight {
                day: 20_000 + i,
                rmssd_ms: Some(if i >= 50 { 30.0 } else { 50.0 + f64::from(i % 3) }),
                resting_hr_bpm: Some(55.0),
                triggers: if i >= 52 { vec![("HRV_BELOW_BASELINE".into(), Severity::Medium)] } else { Vec::new() },
                ..ChartNight::default()
            })
            .collect();
        let svg = render("person <1>", &nights, &BaselineParams::default());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 60, "one dot per night");
        assert!(svg.contains("<polygon"), "the band");
        assert!(svg.contains("HRV_BELOW_BASELINE") && svg.contains("person &lt;1&gt;"), "legend, escaped title");
        assert!(svg.contains("resting HR") && !svg.contains("respiratory"), "only the signals present");
        assert!(svg.contains("2024-10-04"), "dates on the axis: {}", &svg[svg.len() - 300..]);
    }
}
