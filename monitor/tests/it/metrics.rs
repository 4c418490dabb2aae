//! The `metrics` feature: depth, handled messages and handler time reach the recorder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use plexus_core::Mailbox;
use plexus_monitor::metrics::{HANDLER_SECONDS, MAILBOX_DEPTH, MESSAGES_HANDLED};
use tokio::sync::oneshot;

use crate::common::{Gate, Hold, Note, Ping, monitored, within};

/// One recorded series: counter total, gauge values in order, histogram samples.
#[derive(Default)]
struct Series {
    total: AtomicU64,
    values: Mutex<Vec<f64>>,
    samples: Mutex<Vec<f64>>,
}

impl Series {
    fn push_value(&self, change: impl FnOnce(f64) -> f64) {
        let mut values = self.values.lock().unwrap();
        let next = change(values.last().copied().unwrap_or(0.0));
        values.push(next);
    }
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.total.store(value, Ordering::SeqCst);
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.push_value(|last| last + value);
    }
    fn decrement(&self, value: f64) {
        self.push_value(|last| last - value);
    }
    fn set(&self, value: f64) {
        self.push_value(|_| value);
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        self.samples.lock().unwrap().push(value);
    }
}

/// Keeps every series by name and labels.
#[derive(Default)]
struct Capture {
    series: Mutex<HashMap<String, Arc<Series>>>,
}

impl Capture {
    fn series(&self, key: &Key) -> Arc<Series> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.series.lock().unwrap().entry(name).or_default().clone()
    }

    fn find(&self, name: &str, actor: &str) -> Arc<Series> {
        let series = self.series.lock().unwrap();
        series
            .iter()
            .find(|(key, _)| {
                key.starts_with(&format!("{name}{{")) && key.contains(&format!("actor={actor}"))
            })
            .map(|(_, series)| series.clone())
            .unwrap_or_else(|| panic!("no {name} series for {actor}: {:?}", series.keys()))
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

/// Each actor's handled count, handler times and mailbox depth reach the recorder under
/// its id.
#[tokio::test]
async fn actor_figures_reach_the_recorder() {
    let capture = Capture::default();
    let (_monitor, proc) = monitored("metrics");
    // Handles are registered at spawn, so a recorder scoped around the spawn serves the
    // actor for its whole life.
    let gate = metrics::with_local_recorder(&capture, || {
        proc.spawn_with("gate", Gate, Mailbox::Bounded(8)).unwrap()
    });
    let (release, hold) = oneshot::channel();
    gate.tell(Hold(hold)).await.unwrap();
    for _ in 0..4 {
        gate.tell(Note).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    release.send(()).unwrap();
    within("the ping", gate.ask(Ping)).await.unwrap();
    gate.stop();
    within("the stop", gate.wait_for_stop()).await;

    let actor = gate.id().to_string();
    let handled = capture.find(MESSAGES_HANDLED, &actor);
    assert_eq!(handled.total.load(Ordering::SeqCst), 6);
    let times = capture.find(HANDLER_SECONDS, &actor);
    let samples = times.samples.lock().unwrap().clone();
    assert_eq!(samples.len(), 6);
    assert!(samples[0] >= 0.02, "the held handler took {}s", samples[0]);
    // On this single-threaded runtime the four notes are queued before the actor first
    // runs, so the held handler starts with four behind it; the last (the ping) with none.
    let depth = capture.find(MAILBOX_DEPTH, &actor);
    let values = depth.values.lock().unwrap().clone();
    assert_eq!(values.len(), 6);
    assert_eq!(values.first(), Some(&4.0));
    assert_eq!(values.last(), Some(&0.0));
}
