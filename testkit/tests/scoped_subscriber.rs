//! `logs::set_default_subscriber` against the call-site cache race of `tracing` (a process of
//! its own: which thread reaches a call site first is the point).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use courier_testkit::logs::set_default_subscriber;
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber, span};

/// Counts the spans it is asked to make.
#[derive(Clone, Default)]
struct Spans(Arc<AtomicUsize>);

impl Subscriber for Spans {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(self.0.fetch_add(1, Ordering::SeqCst) as u64 + 1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// The one call site of this test.
fn served() {
    let _span = tracing::info_span!("served").entered();
}

/// A thread with no subscriber of its own reaches the call site first, while this thread's
/// subscriber is the only scoped one: with `tracing::subscriber::set_default`, the call site
/// is then cached as wanted by nobody and this thread's subscriber never sees it.
#[test]
fn a_call_site_first_reached_on_a_thread_without_a_subscriber_still_reaches_this_ones() {
    let spans = Spans::default();
    let _guard = set_default_subscriber(spans.clone());
    let (done, reached) = mpsc::channel();
    std::thread::spawn(move || {
        served();
        done.send(()).expect("the test waits");
    });
    reached
        .recv()
        .expect("the other thread reached the call site");
    served();
    assert_eq!(
        spans.0.load(Ordering::SeqCst),
        1,
        "this thread's span was made"
    );
}
