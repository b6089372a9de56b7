//! Percentiles and table formatting.

use std::time::Duration;

/// The `p`-th percentile (0–100) of `sorted` (nearest rank), or zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `a / b` with two decimals, or `n/a`.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

/// A Markdown table: a header row and rows of cells.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!(
        "|{}\n",
        header.iter().map(|_| " --- |").collect::<String>()
    ));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// Of several rounds of one measurement, the round whose p99 is the median of the rounds'
/// (the upper one of an even count), with every round's p99 in the order they ran; `None`
/// without rounds. `latencies` gives a round's latencies, sorted.
pub fn median_by_p99<T>(
    rounds: Vec<T>,
    latencies: impl Fn(&T) -> &[Duration],
) -> Option<(T, Vec<Duration>)> {
    let p99s: Vec<Duration> = rounds
        .iter()
        .map(|r| percentile(latencies(r), 99.0))
        .collect();
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by_key(|&i| p99s[i]);
    let median = *order.get(order.len() / 2)?;
    let round = rounds.into_iter().nth(median)?;
    Some((round, p99s))
}

/// Durations as `a, b, c ms` (milliseconds with two decimals).
pub fn ms_list(ds: &[Duration]) -> String {
    let all: Vec<String> = ds.iter().map(|d| ms(*d)).collect();
    format!("{} ms", all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 latencies of 1 ms but two of `worst_ms`: their p99 (the 99th smallest) is
    /// `worst_ms`.
    fn round(worst_ms: u64) -> Vec<Duration> {
        let mut latencies = vec![Duration::from_millis(1); 98];
        latencies.extend([Duration::from_millis(worst_ms); 2]);
        latencies
    }

    #[test]
    fn the_median_round_by_p99_comes_with_every_round_s_p99() {
        let rounds = vec![round(40), round(3), round(5)];
        let (median, p99s) = median_by_p99(rounds, |r| r.as_slice()).expect("rounds");
        assert_eq!(percentile(&median, 99.0), Duration::from_millis(5));
        assert_eq!(
            p99s,
            [40, 3, 5].map(Duration::from_millis),
            "in the order they ran"
        );
        assert_eq!(ms_list(&p99s), "40.00, 3.00, 5.00 ms");
    }

    #[test]
    fn one_round_is_its_own_median_and_none_is_none() {
        let (median, p99s) = median_by_p99(vec![round(7)], |r| r.as_slice()).expect("a round");
        assert_eq!(percentile(&median, 99.0), Duration::from_millis(7));
        assert_eq!(p99s.len(), 1);
        let none: Vec<Vec<Duration>> = Vec::new();
        assert!(median_by_p99(none, |r| r.as_slice()).is_none());
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
