//! The read connections: reads run on tokio's blocking threads, each on a connection taken
//! from this pool, so a read that waits on the disk never stalls the async runtime. Under WAL
//! readers never wait for the writer, and a permit per connection bounds the reads in flight.

use std::sync::{Arc, Mutex};

use courier_traits::storage::StorageError;
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::errors::storage_closed;

/// Idle read connections and one permit per connection.
pub(super) struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    /// A pool of `connections` (at least one).
    pub(super) fn new(connections: Vec<Connection>) -> Arc<Readers> {
        Arc::new(Readers {
            permits: Arc::new(Semaphore::new(connections.len())),
            idle: Mutex::new(connections),
        })
    }

    /// Runs `read` on an idle connection off the async runtime, once one is free.
    pub(super) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| storage_closed())?;
        let pool = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let conn = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
            // A permit is held per connection taken, so one is idle unless the pool was closed.
            let Some(conn) = conn else {
                return Err(storage_closed());
            };
            let result = read(&conn);
            if !pool.permits.is_closed()
                && let Ok(mut idle) = pool.idle.lock()
            {
                idle.push(conn);
            }
            drop(permit);
            result
        });
        task.await.map_err(|e| StorageError::Backend {
            message: format!("sqlite read task failed: {e}"),
            source: None,
        })?
    }

    /// Closes the connections; later reads fail with a retryable error.
    pub(super) fn close(&self) {
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
