//! Reading a service's Prometheus/OpenMetrics exposition in tests.

/// The value of the sample `series` (a metric name with its labels, e.g.
/// `podid_agent_kubelet_lists_total{result="ok"}`) in `text`; 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// [`sample`] of the exposition `GET url` answers.
///
/// # Panics
/// When the service does not answer.
pub async fn scrape(client: &reqwest::Client, url: &str, series: &str) -> f64 {
    let answer = client.get(url).send().await.expect("the metrics answer");
    sample(&answer.text().await.unwrap_or_default(), series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text =
            "# TYPE a counter\na_total{result=\"ok\"} 3\na_total{result=\"okay\"} 5\nb 1.5\n";
        assert_eq!(sample(text, "a_total{result=\"ok\"}"), 3.0);
        assert_eq!(sample(text, "a_total{result=\"okay\"}"), 5.0);
        assert_eq!(sample(text, "b"), 1.5);
        assert_eq!(sample(text, "c"), 0.0);
    }
}
