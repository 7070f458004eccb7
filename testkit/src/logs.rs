//! Log capture for tests that assert what a component logs (a warning is part of its contract).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

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
