//! The fork rules: which source a fork may name, what it inherits (its content type, expiry and
//! the prefix of the source's records), decided here and only copied by each backend.

use bytes::Bytes;
use courier_traits::InvalidInput;
use courier_traits::storage::{
    DEFAULT_CONTENT_TYPE, Expiry, ForkFrom, StorageError, StreamConfig, StreamName, SubOffset,
};

use super::index_offset;

/// Refuses a fork of the stream itself (checked before the source is looked up).
pub(crate) fn reject_self_fork(name: &StreamName, fork: &ForkFrom) -> Result<(), StorageError> {
    if fork.source == *name {
        return Err(InvalidInput::new(
            "fork source",
            fork.source.as_str(),
            "a stream cannot fork itself",
        )
        .into());
    }
    Ok(())
}

/// The content type and expiry of a stream that is not a fork: as requested, with the default
/// content type when none is given.
pub(crate) fn own_settings(config: &StreamConfig) -> (String, Expiry) {
    let content_type = config
        .content_type
        .clone()
        .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
    (content_type, config.expiry)
}

/// The fork source as found: its content type and the expiry in force on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForkSource<'a> {
    /// The source's content type.
    pub(crate) content_type: &'a str,
    /// The source's expiry.
    pub(crate) expiry: Expiry,
}

/// A fork's content type and expiry, taken from its live `source`; a content type that differs
/// from the source's is a conflict. Without its own expiry a fork inherits the source's.
pub(crate) fn fork_settings(
    name: &StreamName,
    config: &StreamConfig,
    source: ForkSource<'_>,
) -> Result<(String, Expiry), StorageError> {
    if config
        .content_type
        .as_ref()
        .is_some_and(|ct| ct != source.content_type)
    {
        return Err(StorageError::ConfigConflict {
            stream: name.clone(),
            reason: format!(
                "content type differs from the fork source's {:?}",
                source.content_type
            ),
        });
    }
    let expiry = if config.expiry == Expiry::Never {
        source.expiry
    } else {
        config.expiry
    };
    Ok((source.content_type.to_owned(), expiry))
}

/// What a fork inherits from a source whose tail is at record index `tail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ForkPlan {
    /// The source's records at indexes `0..whole` are inherited whole.
    pub(crate) whole: u64,
    /// For a byte sub-offset: this many bytes of the records from `whole` on follow, the last
    /// one cut (see [`ByteCut`]).
    pub(crate) bytes: Option<u64>,
}

/// Plans a fork of `source` (tail at record index `tail`) as `spec` asks: the fork offset must
/// be one of the source's, and a record sub-offset must not run past the tail.
pub(crate) fn plan_fork(
    source: &StreamName,
    tail: u64,
    spec: &ForkFrom,
) -> Result<ForkPlan, StorageError> {
    let anchor = match &spec.offset {
        Some(offset) => {
            let index = index_offset::decode(source, offset)?;
            if index > tail {
                return Err(StorageError::UnknownOffset {
                    stream: source.clone(),
                    offset: offset.clone(),
                });
            }
            index
        }
        None => tail,
    };
    match spec.sub_offset {
        SubOffset::None => Ok(ForkPlan {
            whole: anchor,
            bytes: None,
        }),
        SubOffset::Records(n) if anchor.saturating_add(n) > tail => {
            Err(overshoot(n, format!("{} records", tail - anchor)))
        }
        SubOffset::Records(n) => Ok(ForkPlan {
            whole: anchor + n,
            bytes: None,
        }),
        SubOffset::Bytes(n) => Ok(ForkPlan {
            whole: anchor,
            bytes: Some(n),
        }),
    }
}

/// A sub-offset that asks for more than follows the fork offset.
fn overshoot(asked: u64, available: String) -> StorageError {
    InvalidInput::new(
        "fork sub-offset",
        &asked.to_string(),
        format!("only {available} follow the fork offset"),
    )
    .into()
}

/// Takes the first `wanted` bytes of the records that follow a fork offset, fed in order; the
/// last record taken is cut. Backends feed records only while [`ByteCut::wants_more`], so a
/// large source is not read further than the cut.
#[derive(Debug)]
pub(crate) struct ByteCut {
    wanted: u64,
    left: u64,
    taken: Vec<Bytes>,
}

impl ByteCut {
    /// A cut of `wanted` bytes.
    pub(crate) fn new(wanted: u64) -> ByteCut {
        ByteCut {
            wanted,
            left: wanted,
            taken: Vec::new(),
        }
    }

    /// Whether the cut needs more records.
    pub(crate) fn wants_more(&self) -> bool {
        self.left > 0
    }

    /// Takes what the cut still wants of the next record.
    pub(crate) fn push(&mut self, record: Bytes) {
        if self.left == 0 {
            return;
        }
        let take = usize::try_from(self.left).map_or(record.len(), |left| left.min(record.len()));
        self.left -= take as u64;
        self.taken.push(record.slice(..take));
    }

    /// The records the fork inherits past [`ForkPlan::whole`]; an error if the source ran out
    /// of bytes first.
    pub(crate) fn finish(self) -> Result<Vec<Bytes>, StorageError> {
        if self.left > 0 {
            return Err(overshoot(
                self.wanted,
                format!("{} bytes", self.wanted - self.left),
            ));
        }
        Ok(self.taken)
    }
}

#[cfg(test)]
mod tests {
    use courier_traits::storage::Offset;

    use super::*;

    fn source() -> StreamName {
        StreamName::new("src").expect("valid")
    }

    fn spec(offset: Option<u64>, sub_offset: SubOffset) -> ForkFrom {
        ForkFrom {
            source: source(),
            offset: offset.map(index_offset::encode),
            sub_offset,
        }
    }

    fn is_invalid(result: Result<impl std::fmt::Debug, StorageError>) -> bool {
        matches!(result, Err(StorageError::InvalidInput(_)))
    }

    #[test]
    fn a_fork_inherits_up_to_its_offset_or_the_whole_source() {
        let plan = |offset, sub| plan_fork(&source(), 5, &spec(offset, sub)).expect("valid");
        assert_eq!(
            plan(None, SubOffset::None),
            ForkPlan {
                whole: 5,
                bytes: None
            }
        );
        assert_eq!(plan(Some(2), SubOffset::None).whole, 2);
        assert_eq!(plan(Some(0), SubOffset::None).whole, 0);
        assert_eq!(
            plan(Some(2), SubOffset::Records(3)),
            ForkPlan {
                whole: 5,
                bytes: None
            }
        );
        assert_eq!(
            plan(Some(2), SubOffset::Bytes(7)),
            ForkPlan {
                whole: 2,
                bytes: Some(7)
            }
        );
    }

    #[test]
    fn a_fork_offset_past_the_tail_or_foreign_is_unknown() {
        for offset in [
            index_offset::encode(6),
            Offset::parse("0001").expect("well-formed"),
        ] {
            let fork = ForkFrom {
                source: source(),
                offset: Some(offset),
                sub_offset: SubOffset::None,
            };
            assert!(
                matches!(
                    plan_fork(&source(), 5, &fork),
                    Err(StorageError::UnknownOffset { stream, .. }) if stream == source()
                ),
                "{fork:?}"
            );
        }
    }

    #[test]
    fn a_record_sub_offset_must_stay_within_the_tail() {
        assert!(is_invalid(plan_fork(
            &source(),
            5,
            &spec(Some(2), SubOffset::Records(4))
        )));
        assert!(is_invalid(plan_fork(
            &source(),
            5,
            &spec(Some(2), SubOffset::Records(u64::MAX))
        )));
    }

    #[test]
    fn a_byte_cut_takes_whole_records_then_cuts_the_last() {
        let mut cut = ByteCut::new(5);
        for record in ["abc", "defg", "hij"] {
            if !cut.wants_more() {
                break;
            }
            cut.push(Bytes::from_static(record.as_bytes()));
        }
        assert!(!cut.wants_more());
        assert_eq!(
            cut.finish().expect("enough bytes"),
            vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")]
        );
        assert_eq!(
            ByteCut::new(0).finish().expect("nothing wanted"),
            Vec::<Bytes>::new()
        );
    }

    #[test]
    fn a_byte_cut_past_the_end_names_what_there_was() {
        let mut cut = ByteCut::new(10);
        cut.push(Bytes::from_static(b"abc"));
        match cut.finish() {
            Err(StorageError::InvalidInput(e)) => {
                assert!(e.to_string().contains("only 3 bytes"), "{e}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn fork_settings_inherit_the_source_and_refuse_another_content_type() {
        let name = StreamName::new("fork").expect("valid");
        let ttl = Expiry::Ttl(std::time::Duration::from_secs(9));
        let src = ForkSource {
            content_type: "text/plain",
            expiry: ttl,
        };
        assert_eq!(
            own_settings(&StreamConfig::default()),
            (DEFAULT_CONTENT_TYPE.to_owned(), Expiry::Never)
        );
        let inherited = fork_settings(&name, &StreamConfig::default(), src).expect("ok");
        assert_eq!(inherited, ("text/plain".to_owned(), ttl));
        let own = StreamConfig {
            expiry: Expiry::Never,
            ..StreamConfig::with_content_type("text/plain")
        };
        assert_eq!(fork_settings(&name, &own, src).expect("same type").1, ttl);
        assert!(matches!(
            fork_settings(&name, &StreamConfig::with_content_type("a/b"), src),
            Err(StorageError::ConfigConflict { .. })
        ));
        let fork = ForkFrom {
            source: name.clone(),
            offset: None,
            sub_offset: SubOffset::None,
        };
        assert!(is_invalid(reject_self_fork(&name, &fork)));
    }
}
