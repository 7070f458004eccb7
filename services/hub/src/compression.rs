//! Compression of server messages, negotiated per connection (the WebSocket library has no
//! permessage-deflate), tagged the way SpacetimeDB tags its server messages.
//!
//! A client asks with `compress=gzip` on the `/ws` URL (the SDK's
//! [`compression`](crate::sdk::HubClientBuilder::compression)). On such a connection every
//! binary frame from the server starts with a tag byte:
//!
//! | tag | rest |
//! |---|---|
//! | `0` | a binary message, as pushed |
//! | `2` | a text message over the threshold, gzip-compressed |
//!
//! Text messages up to the threshold stay text frames. Connections that did not ask see
//! exactly what they always did. Brotli (SpacetimeDB's tag `1`) is not offered: no brotli
//! crate is in the workspace.

use std::io::{Read, Write};

use bytes::Bytes;
use courier_traits::transport::Frame;

/// Tag of an uncompressed binary message.
pub const TAG_NONE: u8 = 0;
/// Tag of a gzip-compressed text message.
pub const TAG_GZIP: u8 = 2;

/// Largest message a client decompresses (a message that inflates further is refused).
pub const MAX_INFLATED: u64 = 16 << 20;

/// How a connection's server messages are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// gzip for text messages longer than `threshold` bytes.
    Gzip {
        /// Messages up to this many bytes are sent as they are.
        threshold: usize,
    },
}

impl Compression {
    /// The wire frame for `frame` on a connection with this compression.
    pub(crate) fn encode(self, frame: Frame) -> Frame {
        let Compression::Gzip { threshold } = self;
        match frame {
            Frame::Text(text) if text.len() > threshold => {
                let mut out = Vec::with_capacity(text.len() / 4 + 16);
                out.push(TAG_GZIP);
                let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                // Writing into a Vec cannot fail.
                match encoder
                    .write_all(text.as_bytes())
                    .and_then(|()| encoder.finish())
                {
                    Ok(out) => Frame::Binary(out.into()),
                    Err(_) => Frame::Text(text),
                }
            }
            Frame::Binary(bytes) => {
                let mut out = Vec::with_capacity(bytes.len() + 1);
                out.push(TAG_NONE);
                out.extend_from_slice(&bytes);
                Frame::Binary(out.into())
            }
            other => other,
        }
    }
}

/// Why a tagged server message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An empty frame or an unknown tag.
    #[error("unknown compression tag {0:?}")]
    UnknownTag(Option<u8>),
    /// The gzip stream is broken, not UTF-8, or inflates past [`MAX_INFLATED`].
    #[error("cannot decompress the message: {0}")]
    Corrupt(String),
}

/// The message a tagged binary frame carries (client side).
pub fn decode(bytes: &Bytes) -> Result<Frame, DecodeError> {
    match bytes.first() {
        Some(&TAG_NONE) => Ok(Frame::Binary(bytes.slice(1..))),
        Some(&TAG_GZIP) => {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[1..])
                .take(MAX_INFLATED + 1)
                .read_to_string(&mut text)
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
            if text.len() as u64 > MAX_INFLATED {
                return Err(DecodeError::Corrupt(format!(
                    "inflates past {MAX_INFLATED} bytes"
                )));
            }
            Ok(Frame::Text(text))
        }
        other => Err(DecodeError::UnknownTag(other.copied())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_text_is_gzipped_small_text_kept_binary_tagged() {
        let gzip = Compression::Gzip { threshold: 100 };
        let large = "{\"data\":\"".to_owned() + &"abc".repeat(1000) + "\"}";
        let Frame::Binary(wire) = gzip.encode(Frame::Text(large.clone())) else {
            panic!("large text becomes binary");
        };
        assert_eq!(wire[0], TAG_GZIP);
        assert!(wire.len() < large.len() / 10, "{} bytes", wire.len());
        assert_eq!(decode(&wire).expect("decodes"), Frame::Text(large));
        assert_eq!(
            gzip.encode(Frame::Text("small".into())),
            Frame::Text("small".into())
        );
        let Frame::Binary(tagged) = gzip.encode(Frame::Binary(Bytes::from_static(b"\x02raw")))
        else {
            panic!("binary stays binary");
        };
        assert_eq!(&tagged[..], b"\x00\x02raw");
        assert_eq!(
            decode(&tagged).expect("decodes"),
            Frame::Binary(Bytes::from_static(b"\x02raw"))
        );
        assert!(decode(&Bytes::from_static(b"\x02not gzip")).is_err());
        assert!(decode(&Bytes::from_static(b"\x07")).is_err());
        assert!(decode(&Bytes::new()).is_err());
    }
}
