//! Compression of server messages, negotiated per connection (the WebSocket library has no
//! permessage-deflate), tagged the way SpacetimeDB tags its server messages.
//!
//! A client asks with `compress=gzip` or `compress=brotli` on the `/ws` URL (the SDK's
//! [`compress_with`](crate::sdk::HubClientBuilder::compress_with)). On such a connection every
//! binary frame from the server starts with a tag byte (SpacetimeDB's numbering):
//!
//! | tag | rest |
//! |---|---|
//! | `0` | a binary message, as pushed |
//! | `1` | a text message over the threshold, brotli-compressed |
//! | `2` | a text message over the threshold, gzip-compressed |
//!
//! Text messages up to the threshold stay text frames. Connections that did not ask see
//! exactly what they always did.

use std::io::{Read, Write};

use bytes::Bytes;
use courier_traits::transport::Frame;

/// Tag of an uncompressed binary message.
pub const TAG_NONE: u8 = 0;
/// Tag of a brotli-compressed text message.
pub const TAG_BROTLI: u8 = 1;
/// Tag of a gzip-compressed text message.
pub const TAG_GZIP: u8 = 2;

/// Largest message a client decompresses (a message that inflates further is refused).
pub const MAX_INFLATED: u64 = 16 << 20;

/// Brotli quality (0-11): 4 compresses JSON about as fast as gzip's fastest level and
/// smaller; every connection that asked compresses its own copy, so speed matters.
const BROTLI_QUALITY: u32 = 4;
/// Brotli window, log2 bytes (22: 4 MiB, the format's default).
const BROTLI_WINDOW: u32 = 22;

/// A compression algorithm a client may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// gzip (tag `2`).
    Gzip,
    /// brotli (tag `1`).
    Brotli,
}

impl Algorithm {
    /// The name a client asks with (`compress=NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gzip => "gzip",
            Algorithm::Brotli => "brotli",
        }
    }

    /// The algorithm called `name`, if offered.
    pub fn named(name: &str) -> Option<Algorithm> {
        [Algorithm::Gzip, Algorithm::Brotli]
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// This algorithm for text messages longer than `threshold` bytes.
    pub fn above(self, threshold: usize) -> Compression {
        match self {
            Algorithm::Gzip => Compression::Gzip { threshold },
            Algorithm::Brotli => Compression::Brotli { threshold },
        }
    }
}

/// How a connection's server messages are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// gzip for text messages longer than `threshold` bytes.
    Gzip {
        /// Messages up to this many bytes are sent as they are.
        threshold: usize,
    },
    /// brotli for text messages longer than `threshold` bytes.
    Brotli {
        /// Messages up to this many bytes are sent as they are.
        threshold: usize,
    },
}

impl Compression {
    /// The wire frame for `frame` on a connection with this compression.
    pub(crate) fn encode(self, frame: Frame) -> Frame {
        let (Compression::Gzip { threshold } | Compression::Brotli { threshold }) = self;
        match frame {
            Frame::Text(text) if text.len() > threshold => match self.compress(text.as_bytes()) {
                Ok(out) => Frame::Binary(out.into()),
                Err(_) => Frame::Text(text),
            },
            Frame::Binary(bytes) => {
                let mut out = Vec::with_capacity(bytes.len() + 1);
                out.push(TAG_NONE);
                out.extend_from_slice(&bytes);
                Frame::Binary(out.into())
            }
            other => other,
        }
    }

    /// The tag byte followed by `plain` compressed. (Writing into a `Vec` does not fail.)
    fn compress(self, plain: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plain.len() / 4 + 16);
        match self {
            Compression::Gzip { .. } => {
                out.push(TAG_GZIP);
                let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                encoder.write_all(plain)?;
                encoder.finish()
            }
            Compression::Brotli { .. } => {
                out.push(TAG_BROTLI);
                let mut encoder =
                    brotli::CompressorWriter::new(out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
                encoder.write_all(plain)?;
                Ok(encoder.into_inner())
            }
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
    let compressed = bytes.get(1..).unwrap_or_default();
    match bytes.first() {
        Some(&TAG_NONE) => Ok(Frame::Binary(bytes.slice(1..))),
        Some(&TAG_GZIP) => inflate(flate2::read::GzDecoder::new(compressed)),
        Some(&TAG_BROTLI) => inflate(brotli::Decompressor::new(compressed, 4096)),
        other => Err(DecodeError::UnknownTag(other.copied())),
    }
}

/// Reads a compressed text message whole, refusing one larger than [`MAX_INFLATED`].
fn inflate(decoder: impl Read) -> Result<Frame, DecodeError> {
    let mut text = String::new();
    decoder
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

    #[test]
    fn brotli_round_trips_smaller_than_gzip_and_refuses_garbage() {
        let large = "{\"data\":\"".to_owned() + &"abc".repeat(1000) + "\"}";
        let brotli = Algorithm::Brotli.above(100);
        let Frame::Binary(wire) = brotli.encode(Frame::Text(large.clone())) else {
            panic!("large text becomes binary");
        };
        assert_eq!(wire[0], TAG_BROTLI);
        assert!(wire.len() < large.len() / 10, "{} bytes", wire.len());
        assert_eq!(decode(&wire).expect("decodes"), Frame::Text(large.clone()));
        let Frame::Binary(gzipped) = Algorithm::Gzip.above(100).encode(Frame::Text(large)) else {
            panic!("large text becomes binary");
        };
        assert!(
            wire.len() < gzipped.len(),
            "{} vs gzip {}",
            wire.len(),
            gzipped.len()
        );
        assert_eq!(
            brotli.encode(Frame::Text("small".into())),
            Frame::Text("small".into())
        );
        assert!(decode(&Bytes::from_static(b"\x01not brotli")).is_err());
        assert_eq!(Algorithm::named("brotli"), Some(Algorithm::Brotli));
        assert_eq!(Algorithm::named("zstd"), None);
    }
}
