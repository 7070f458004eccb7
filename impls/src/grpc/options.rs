//! [`ChannelOptions`]: how the channels of [`GrpcChannels`](super::GrpcChannels) connect.

use std::time::Duration;

/// How channels connect. The defaults suit a client of a broker on the same network.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    /// Give up connecting after this long (the call then fails with [`GrpcError::Connect`](super::GrpcError::Connect)).
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive pings at this interval while calls are open (a long server stream
    /// notices a dead peer), `None` (or zero) for none.
    pub keep_alive_interval: Option<Duration>,
    /// A ping unanswered this long closes the connection.
    pub keep_alive_timeout: Duration,
    /// Ping idle connections too. Off by default: gRPC servers may answer pings on a
    /// connection without calls with `GOAWAY` ("too many pings").
    pub keep_alive_while_idle: bool,
}

impl Default for ChannelOptions {
    fn default() -> ChannelOptions {
        ChannelOptions {
            connect_timeout: Duration::from_secs(5),
            keep_alive_interval: Some(Duration::from_secs(20)),
            keep_alive_timeout: Duration::from_secs(10),
            keep_alive_while_idle: false,
        }
    }
}
