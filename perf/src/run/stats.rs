//! Latency distributions: every sample kept, sorted, and read by nearest rank, so that no outlier is dropped and the
//! reported max is the worst request that happened.

use serde::{Deserialize, Serialize};

/// The distribution of one set of latencies (or any durations), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    /// Samples, failed requests included (a failure that took long is part of what a client waited).
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Dist {
    /// The distribution of `samples` (milliseconds); all zero when there are none.
    #[must_use]
    pub fn of(samples: &[f64]) -> Dist {
        if samples.is_empty() {
            return Dist::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Dist {
            count: sorted.len(),
            p50: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
            mean,
        }
    }
}

/// The nearest-rank percentile `p` (0 to 100) of sorted samples: the smallest sample with at least p% of the samples at
/// or below it. Nearest rank never interpolates, so each figure is a latency a request really had.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `ours / theirs`, or `None` when theirs is zero (nothing measured).
#[must_use]
pub fn ratio(ours: f64, theirs: f64) -> Option<f64> {
    (theirs > 0.0).then(|| ours / theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let d = Dist::of(&samples);
        assert_eq!((d.count, d.p50, d.p95, d.p99, d.max), (100, 50.0, 95.0, 99.0, 100.0));
        assert!((d.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn unsorted_input_and_a_single_outlier_are_kept() {
        let mut samples = vec![1.0; 99];
        samples.insert(17, 5_000.0);
        let d = Dist::of(&samples);
        assert_eq!((d.p50, d.p99, d.max), (1.0, 1.0, 5_000.0));
        let d = Dist::of(&[3.0, 1.0, 2.0]);
        assert_eq!((d.p50, d.p95, d.p99, d.max), (2.0, 3.0, 3.0, 3.0));
    }

    #[test]
    fn empty_and_ratio() {
        assert_eq!(Dist::of(&[]), Dist::default());
        assert_eq!(percentile(&[], 99.0), 0.0);
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
