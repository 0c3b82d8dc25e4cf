//! PNG plots of a run, drawn with plotters' bitmap backend: latency histograms (log-spaced bins, so one slow request
//! neither hides nor is hidden) and a bar chart of p95 and p99 per endpoint. Text is drawn with the DejaVu Sans Mono
//! font vendored in `perf/assets` (its licence is beside it), so no system font library is needed.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use plotters::prelude::*;

/// Bins of a latency histogram.
pub const HISTOGRAM_BINS: usize = 60;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");

/// Registers the vendored font as `sans-serif`, the family plotters' captions and labels ask for.
fn register_font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the vendored font perf/assets/DejaVuSansMono.ttf does not load"))
    }
}

/// One set of samples to draw.
pub struct Series<'a> {
    pub label: String,
    pub samples_ms: &'a [f64],
}

const COLORS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// The log-spaced bin edges over `[lo, hi]` and each series' counts.
fn bins(series: &[Series<'_>]) -> Option<(Vec<f64>, Vec<Vec<u32>>)> {
    let all = series.iter().flat_map(|s| s.samples_ms.iter().copied()).filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = all.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return None;
    }
    let (lo, hi) = (lo * 0.95, (hi * 1.05).max(lo * 1.1));
    let (a, b) = (lo.ln(), hi.ln());
    #[allow(clippy::cast_precision_loss)]
    let edges: Vec<f64> = (0..=HISTOGRAM_BINS).map(|i| (a + (b - a) * i as f64 / HISTOGRAM_BINS as f64).exp()).collect();
    let counts = series
        .iter()
        .map(|s| {
            let mut c = vec![0_u32; HISTOGRAM_BINS];
            for v in s.samples_ms.iter().filter(|v| v.is_finite() && **v > 0.0) {
                let i = edges.partition_point(|e| e <= v).saturating_sub(1).min(HISTOGRAM_BINS - 1);
                c[i] += 1;
            }
            c
        })
        .collect();
    Some((edges, counts))
}

/// A histogram of one or more series, overlaid.
///
/// # Errors
/// The file cannot be drawn or written.
pub fn histogram(path: &Path, title: &str, series: &[Series<'_>]) -> anyhow::Result<bool> {
    let Some((edges, counts)) = bins(series) else { return Ok(false) };
    register_font()?;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let top = counts.iter().flatten().copied().max().unwrap_or(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((edges[0]..edges[HISTOGRAM_BINS]).log_scale(), 0_u32..top + top / 10 + 1)
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("milliseconds (log scale; every sample, none dropped)")
        .y_desc("requests")
        .x_label_formatter(&|v| if *v >= 10.0 { format!("{v:.0}") } else { format!("{v:.2}") })
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    for (k, (s, c)) in series.iter().zip(&counts).enumerate() {
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(
                c.iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| Rectangle::new([(edges[i], 0), (edges[i + 1], *n)], color.mix(0.55).filled())),
            )
            .map_err(|e| anyhow!("{e:?}"))?
            .label(format!("{} (n={})", s.label, s.samples_ms.len()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(true)
}

/// One bar pair of the p95/p99 chart.
pub struct Bar {
    pub name: String,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// Horizontal bars of p95 and p99 per endpoint, on a log scale.
///
/// # Errors
/// The file cannot be drawn or written.
pub fn p95_p99(path: &Path, title: &str, bars: &[Bar]) -> anyhow::Result<bool> {
    let bars: Vec<&Bar> = bars.iter().filter(|b| b.p99_ms > 0.0 && b.p95_ms > 0.0).collect();
    if bars.is_empty() {
        return Ok(false);
    }
    register_font()?;
    let rows = bars.len() * 2;
    let height = u32::try_from(120 + rows * 22).unwrap_or(4000);
    let root = BitMapBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let lo = bars.iter().map(|b| b.p95_ms).fold(f64::INFINITY, f64::min) * 0.5;
    let hi = bars.iter().map(|b| b.p99_ms).fold(0.0, f64::max) * 2.0;
    let labels: Vec<String> = bars.iter().flat_map(|b| [format!("{} p95", b.name), format!("{} p99", b.name)]).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(420)
        .build_cartesian_2d((lo..hi).log_scale(), (0..rows).into_segmented())
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => labels.get(*i).cloned().unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .x_desc("milliseconds (log scale)")
        .x_label_formatter(&|v| if *v >= 10.0 { format!("{v:.0}") } else { format!("{v:.2}") })
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .draw_series(bars.iter().enumerate().flat_map(|(i, b)| {
            [
                Rectangle::new([(lo, SegmentValue::Exact(2 * i)), (b.p95_ms, SegmentValue::Exact(2 * i + 1))], COLORS[0].filled()),
                Rectangle::new([(lo, SegmentValue::Exact(2 * i + 1)), (b.p99_ms, SegmentValue::Exact(2 * i + 2))], COLORS[1].filled()),
            ]
        }))
        .map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(true)
}

/// A file name from a label: lower case, letters and digits, dashes between.
#[must_use]
pub fn file_name(dir: &Path, prefix: &str, label: &str) -> PathBuf {
    let slug: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let slug = slug.split('-').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-");
    dir.join(format!("{prefix}-{slug}.png"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_bins_hold_every_sample() {
        let a = [1.0, 2.0, 3.0, 1000.0];
        let b = [5.0];
        let (edges, counts) = bins(&[Series { label: "a".into(), samples_ms: &a }, Series { label: "b".into(), samples_ms: &b }]).unwrap();
        assert_eq!(edges.len(), HISTOGRAM_BINS + 1);
        assert_eq!(counts[0].iter().sum::<u32>(), 4);
        assert_eq!(counts[1].iter().sum::<u32>(), 1);
        assert!(bins(&[Series { label: "e".into(), samples_ms: &[] }]).is_none());
    }

    #[test]
    fn draws_pngs_with_the_vendored_font() {
        let dir = std::env::temp_dir().join(format!("kerp-perf-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h = dir.join("h.png");
        assert!(histogram(&h, "t", &[Series { label: "x".into(), samples_ms: &[1.0, 2.0, 2.5, 40.0] }]).unwrap());
        let p = dir.join("p.png");
        assert!(p95_p99(&p, "t", &[Bar { name: "tb".into(), p95_ms: 3.0, p99_ms: 9.0 }]).unwrap());
        for f in [h, p] {
            assert_eq!(&std::fs::read(&f).unwrap()[1..4], b"PNG");
        }
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(file_name(Path::new("/r"), "latency", "Trial balance (ours)"), PathBuf::from("/r/latency-trial-balance-ours.png"));
    }
}
