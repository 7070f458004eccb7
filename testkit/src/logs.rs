//! Log capture for tests that assert what a component logs (a warning is part of its contract).

use std::io::Write;
use std::sync::{Arc, Mutex, Once, PoisonError};

use tracing::subscriber::{DefaultGuard, Interest};
use tracing::{Metadata, Subscriber, span};

/// Makes `subscriber` this thread's default until the guard drops, as
/// `tracing::subscriber::set_default` does, but reliable beside tests running on other threads
/// of the same process (plain `cargo test`).
///
/// Why: `tracing` decides once per call site whether anyone may want its spans and events, and
/// caches that. While a single thread-scoped subscriber exists, it asks only the subscriber of
/// the thread that reaches the call site first; when that is another test's thread, which has
/// none, the answer "never" is cached and this thread's subscriber never sees that call site.
/// A global subscriber that answers "sometimes" keeps every call site asking the current
/// thread's subscriber each time. It is set once per process; if another global subscriber
/// was set first, that one decides instead.
pub fn set_default_subscriber<S>(subscriber: S) -> DefaultGuard
where
    S: Subscriber + Send + Sync + 'static,
{
    static UNDECIDED: Once = Once::new();
    UNDECIDED.call_once(|| {
        let _ = tracing::subscriber::set_global_default(Undecided);
    });
    tracing::subscriber::set_default(subscriber)
}

/// The global subscriber of [`set_default_subscriber`]: records nothing, and never lets a
/// call site's interest be cached as "never".
struct Undecided;

impl Subscriber for Undecided {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// A shared, clonable `io::Write` sink: give a clone to a `tracing_subscriber` writer
/// (`.with_writer(move || log.clone())`) and read what was logged with [`take`](Self::take).
#[derive(Clone, Debug, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// The text logged since the last call (lossy UTF-8), leaving the buffer empty.
    pub fn take(&self) -> String {
        let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&std::mem::take(&mut *bytes)).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
