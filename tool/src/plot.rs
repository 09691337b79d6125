//! The score-over-time plot of `vigil eval --plot` and the demo's report: label intervals shaded red,
//! the threshold dashed, the score in blue; as SVG or rasterised to PNG.

use std::fmt::Write as _;

use crate::labels::Label;

/// The plot of `(time, score, scored)` windows over `labels`, as SVG.
pub fn svg(windows: &[(f64, f64, bool)], labels: &[Label]) -> String {
    let (w, h, pad) = (1200.0, 360.0, 40.0);
    let t0 = windows.first().map_or(0.0, |x| x.0);
    let t1 = windows.last().map_or(1.0, |x| x.0).max(t0 + 1e-9);
    let x = |t: f64| pad + (t - t0) / (t1 - t0) * (w - 2.0 * pad);
    let y = |s: f64| h - pad - s.clamp(0.0, 1.0) * (h - 2.0 * pad);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><rect width="100%" height="100%" fill="white"/>"#
    );
    for l in labels
        .iter()
        .filter(|l| l.anomaly && l.end >= t0 && l.start <= t1)
    {
        let (a, b) = (x(l.start.max(t0)), x(l.end.min(t1)));
        let _ = write!(
            out,
            r##"<rect x="{a:.1}" y="{pad}" width="{:.1}" height="{}" fill="#f4a6a6" fill-opacity="0.5"><title>labelled anomaly ({})</title></rect>"##,
            (b - a).max(1.0),
            h - 2.0 * pad,
            l.source
        );
    }
    let _ = write!(
        out,
        r##"<line x1="{pad}" x2="{}" y1="{t:.1}" y2="{t:.1}" stroke="#c00" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" font-size="12" fill="#c00">threshold 0.5</text>"##,
        w - pad,
        w - pad - 90.0,
        y(0.5) - 4.0,
        t = y(0.5)
    );
    out.push_str(r##"<polyline fill="none" stroke="#1f5fbf" stroke-width="1" points=""##);
    // At most ~4,000 points: keep the max of each bucket so spikes stay visible.
    let step = (windows.len() / 4000).max(1);
    for chunk in windows.chunks(step) {
        let top = chunk.iter().fold((chunk[0].0, f64::NEG_INFINITY), |a, c| {
            if c.1 > a.1 { (c.0, c.1) } else { a }
        });
        let _ = write!(out, "{:.1},{:.1} ", x(top.0), y(top.1));
    }
    out.push_str(r#""/>"#);
    let _ = write!(
        out,
        r##"<line x1="{pad}" x2="{pad}" y1="{pad}" y2="{}" stroke="#333"/><line x1="{pad}" x2="{}" y1="{b}" y2="{b}" stroke="#333"/><text x="4" y="{}" font-size="12">1</text><text x="4" y="{}" font-size="12">0</text><text x="{pad}" y="{}" font-size="12">score over time ({:.0} s)</text></svg>"##,
        h - pad,
        w - pad,
        pad + 4.0,
        h - pad,
        h - 8.0,
        t1 - t0,
        b = h - pad
    );
    out
}

/// The same plot as [`svg`], rasterised: label intervals shaded red, threshold dashed, score in blue.
pub fn png(windows: &[(f64, f64, bool)], labels: &[Label]) -> Vec<u8> {
    let (w, h, pad) = (1200.0, 360.0, 40.0);
    let t0 = windows.first().map_or(0.0, |x| x.0);
    let t1 = windows.last().map_or(1.0, |x| x.0).max(t0 + 1e-9);
    let x = |t: f64| pad + (t - t0) / (t1 - t0) * (w - 2.0 * pad);
    let y = |s: f64| h - pad - s.clamp(0.0, 1.0) * (h - 2.0 * pad);
    let mut r = crate::png::Raster::new(w as usize, h as usize);
    for l in labels
        .iter()
        .filter(|l| l.anomaly && l.end >= t0 && l.start <= t1)
    {
        let a = x(l.start.max(t0));
        r.shade(
            a,
            pad,
            x(l.end.min(t1)).max(a + 1.0),
            h - pad,
            [244, 120, 120],
        );
    }
    r.line((pad, h - pad), (w - pad, h - pad), [51, 51, 51], 0);
    r.line((pad, pad), (pad, h - pad), [51, 51, 51], 0);
    r.line((pad, y(0.5)), (w - pad, y(0.5)), [204, 0, 0], 6);
    let step = (windows.len() / 4000).max(1);
    let mut prev: Option<(f64, f64)> = None;
    for chunk in windows.chunks(step) {
        let top = chunk.iter().fold((chunk[0].0, f64::NEG_INFINITY), |a, c| {
            if c.1 > a.1 { (c.0, c.1) } else { a }
        });
        let p = (x(top.0), y(top.1));
        if let Some(q) = prev {
            r.line(q, p, [31, 95, 191], 0);
        }
        prev = Some(p);
    }
    r.to_png()
}
