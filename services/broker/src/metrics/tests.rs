use std::time::Duration;

use super::*;
use crate::topic::TopicName;

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("valid")
}

fn sample(text: &str, line_start: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with(line_start))
        .map(|line| line[line_start.len()..].trim().to_owned())
}

#[test]
fn partitions_count_under_their_topic() {
    let metrics = BrokerMetrics::new();
    metrics.topic(&topic("/default/orders")).produced.inc();
    metrics
        .topic(&topic("/default/orders-part-0"))
        .produced
        .inc();
    metrics.topic(&topic("/default/orders-part-1")).acked.add(2);
    let text = metrics.render();
    assert_eq!(
        sample(
            &text,
            "courier_broker_messages_produced_total{topic=\"/default/orders\"}"
        )
        .as_deref(),
        Some("2"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "courier_broker_messages_acked_total{topic=\"/default/orders\"}"
        )
        .as_deref(),
        Some("2"),
        "{text}"
    );
    assert!(!text.contains("part-"), "{text}");
}

#[test]
fn topics_past_the_limit_share_one_label() {
    let metrics = BrokerMetrics::new();
    for index in 0..MAX_TOPIC_LABELS + 10 {
        metrics
            .topic(&topic(&format!("/default/t{index}")))
            .delivered
            .inc();
    }
    // A topic labelled before the limit keeps its label.
    metrics.topic(&topic("/default/t0")).delivered.inc();
    let text = metrics.render();
    let delivered: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("courier_broker_messages_delivered_total{"))
        .collect();
    assert_eq!(delivered.len(), MAX_TOPIC_LABELS + 1, "bounded");
    assert_eq!(
        sample(
            &text,
            "courier_broker_messages_delivered_total{topic=\"(other)\"}"
        )
        .as_deref(),
        Some("10")
    );
    assert_eq!(
        sample(
            &text,
            "courier_broker_messages_delivered_total{topic=\"/default/t0\"}"
        )
        .as_deref(),
        Some("2")
    );
}

#[test]
fn send_latency_is_a_histogram_in_seconds() {
    let metrics = BrokerMetrics::new();
    metrics.sent(Duration::from_millis(3));
    metrics.sent(Duration::from_secs(20));
    let text = metrics.render();
    assert!(
        text.contains("# TYPE courier_broker_send_seconds histogram\n"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "courier_broker_send_seconds_bucket{le=\"0.005\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&text, "courier_broker_send_seconds_bucket{le=\"+Inf\"}").as_deref(),
        Some("2")
    );
    assert_eq!(
        sample(&text, "courier_broker_send_seconds_count").as_deref(),
        Some("2")
    );
}
