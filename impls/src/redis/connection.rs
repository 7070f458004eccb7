//! The storage's and the bus's connection to Redis: one multiplexed connection shared by every
//! call of an instance, replaced after a connection failure.
//!
//! A pool (deadpool-redis, used before) pinged each connection before handing it out, one
//! extra round trip per call; and a multiplexed connection already carries any number of concurrent
//! commands, pipelined, so concurrent batches of several streams reach Redis together and share
//! its fsync. A command that fails with a connection error (the server restarted, or stopped
//! answering for the response timeout) discards the connection, and the next call opens a new
//! one; the commands still in flight on the old one finish or fail on their own.

use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{self, AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::errors::is_transient;

/// Opens connections to one server and keeps the current one.
pub(super) struct SharedConnection {
    client: redis::Client,
    config: AsyncConnectionConfig,
    /// The current connection and its number (so a failure on an old connection does not
    /// discard its replacement).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    opened: Mutex<u64>,
    /// Held while a connection is being opened, so concurrent calls after a failure wait for
    /// one new connection instead of each opening their own. An async mutex: opening one is
    /// the critical section, and it awaits.
    opening: tokio::sync::Mutex<()>,
}

impl SharedConnection {
    pub(super) fn new(client: redis::Client, config: AsyncConnectionConfig) -> SharedConnection {
        SharedConnection {
            client,
            config,
            current: Mutex::new(None),
            opened: Mutex::new(0),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current connection, opened if there is none.
    pub(super) async fn get(self: &Arc<Self>) -> redis::RedisResult<Connection> {
        let (number, inner) = match self.current() {
            Some(current) => current,
            None => {
                let _opening = self.opening.lock().await;
                match self.current() {
                    Some(current) => current,
                    None => {
                        let inner = self
                            .client
                            .get_multiplexed_async_connection_with_config(&self.config)
                            .await?;
                        let number = {
                            let mut opened =
                                self.opened.lock().unwrap_or_else(PoisonError::into_inner);
                            *opened += 1;
                            *opened
                        };
                        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some((number, inner.clone()));
                        (number, inner)
                    }
                }
            }
        };
        Ok(Connection {
            inner,
            number,
            owner: self.clone(),
        })
    }

    /// Forgets connection `number` if it is still the current one.
    fn discard(&self, number: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(n, _)| *n == number) {
            *current = None;
        }
    }
}

/// A handle on the shared connection for one call; a connection failure seen through it
/// discards the connection.
pub(super) struct Connection {
    inner: MultiplexedConnection,
    number: u64,
    owner: Arc<SharedConnection>,
}

impl Connection {
    fn check<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && (is_transient(e) || e.is_unrecoverable_error())
        {
            self.owner.discard(self.number);
        }
        result
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.inner.req_packed_command(cmd).await;
            self.check(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.check(result)
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
