//! Deleting a stream that may sit in a fork chain: the decisions every backend makes the same
//! way, whatever statements or scripts carry them out.
//!
//! A stream that live forks still read through is only marked deleted (soft). A stream without
//! live forks is removed for real and releases its share of its fork source; a source that was
//! deleted already and has just lost its last fork is removed next, and so on up the chain.

use courier_traits::storage::StreamName;

/// One stream of the chain as the delete finds it, read under the lock (or compare-and-set)
/// that covers this step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainLink {
    /// How many live forks read through it.
    pub(crate) live_forks: i64,
    /// Its fork source, if it is a fork.
    pub(crate) parent: Option<StreamName>,
}

/// What deleting one stream of the chain does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Live forks still read through it: mark it deleted, keep its records, and stop.
    Soft,
    /// Remove it with its records and producer state; then, for a fork, take one off its
    /// `parent`'s live forks and report the result with [`RemoveChain::released`].
    Hard {
        /// The fork source to release.
        parent: Option<StreamName>,
    },
}

/// The walk of one delete up a fork chain.
///
/// ```text
/// let mut chain = RemoveChain::new(name);
/// while let Some(current) = chain.next() {
///     match chain.decide(<current's link, None when absent>) {
///         None => break,
///         Some(Removal::Soft) => <mark current deleted>,
///         Some(Removal::Hard { parent }) => {
///             <remove current>;
///             if let Some(parent) = parent { <release parent>; chain.released(&parent, ..) }
///         }
///     }
/// }
/// ```
///
/// Every stream the walk finds is deleted (softly or not): its waiters must be woken.
#[derive(Debug)]
pub(crate) struct RemoveChain {
    next: Option<StreamName>,
}

impl RemoveChain {
    /// A walk that starts by deleting `name`.
    pub(crate) fn new(name: &StreamName) -> RemoveChain {
        RemoveChain {
            next: Some(name.clone()),
        }
    }

    /// The stream to delete now; `None` once the walk is over.
    pub(crate) fn next(&mut self) -> Option<StreamName> {
        self.next.take()
    }

    /// What to do with the current stream, found as `link` (`None`: it is not there, and the
    /// walk ends). A pure decision: a backend that retries a step under compare-and-set
    /// decides each attempt again.
    pub(crate) fn decide(&self, link: Option<ChainLink>) -> Option<Removal> {
        let link = link?;
        Some(if link.live_forks > 0 {
            Removal::Soft
        } else {
            Removal::Hard {
                parent: link.parent,
            }
        })
    }

    /// After a hard removal released `parent`, which is now `soft_deleted` (or not) with
    /// `live_forks_left` live forks: a parent kept only for its forks, and now without any, is
    /// deleted next.
    pub(crate) fn released(
        &mut self,
        parent: &StreamName,
        soft_deleted: bool,
        live_forks_left: i64,
    ) {
        if soft_deleted && live_forks_left <= 0 {
            self.next = Some(parent.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn name(n: &str) -> StreamName {
        StreamName::new(n).expect("valid")
    }

    /// A toy store run through the walk, as every backend runs it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Stream {
        live_forks: i64,
        parent: Option<StreamName>,
        soft_deleted: bool,
    }

    fn delete(streams: &mut HashMap<StreamName, Stream>, target: &StreamName) -> Vec<StreamName> {
        let mut chain = RemoveChain::new(target);
        let mut touched = Vec::new();
        let mut steps = 0;
        while let Some(current) = chain.next() {
            steps += 1;
            assert!(steps <= 10, "the walk must end");
            let link = streams.get(&current).map(|s| ChainLink {
                live_forks: s.live_forks,
                parent: s.parent.clone(),
            });
            let decision = chain.decide(link);
            if decision.is_some() {
                touched.push(current.clone());
            }
            match decision {
                None => break,
                Some(Removal::Soft) => {
                    if let Some(s) = streams.get_mut(&current) {
                        s.soft_deleted = true;
                    }
                }
                Some(Removal::Hard { parent }) => {
                    streams.remove(&current);
                    if let Some(parent) = parent
                        && let Some(p) = streams.get_mut(&parent)
                    {
                        p.live_forks -= 1;
                        chain.released(&parent, p.soft_deleted, p.live_forks);
                    }
                }
            }
        }
        touched
    }

    /// a <- b <- c (c forks b, b forks a).
    fn chain_of_three() -> HashMap<StreamName, Stream> {
        let stream = |live_forks, parent: Option<&str>| Stream {
            live_forks,
            parent: parent.map(name),
            soft_deleted: false,
        };
        HashMap::from([
            (name("a"), stream(1, None)),
            (name("b"), stream(1, Some("a"))),
            (name("c"), stream(0, Some("b"))),
        ])
    }

    #[test]
    fn a_stream_with_live_forks_is_only_marked_deleted() {
        let mut streams = chain_of_three();
        assert_eq!(delete(&mut streams, &name("a")), vec![name("a")]);
        assert!(streams[&name("a")].soft_deleted);
        assert_eq!(streams.len(), 3);
    }

    #[test]
    fn deleting_the_last_fork_reclaims_every_source_kept_only_for_it() {
        let mut streams = chain_of_three();
        delete(&mut streams, &name("a"));
        delete(&mut streams, &name("b"));
        assert_eq!(
            delete(&mut streams, &name("c")),
            vec![name("c"), name("b"), name("a")]
        );
        assert!(streams.is_empty());
    }

    #[test]
    fn a_live_source_only_loses_a_fork() {
        let mut streams = chain_of_three();
        assert_eq!(delete(&mut streams, &name("c")), vec![name("c")]);
        assert_eq!(streams[&name("b")].live_forks, 0);
        assert!(!streams[&name("b")].soft_deleted);
        // b, now without forks, goes for real and releases a, which is live: a stays.
        assert_eq!(delete(&mut streams, &name("b")), vec![name("b")]);
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[&name("a")].live_forks, 0);
    }

    #[test]
    fn a_missing_stream_ends_the_walk_untouched() {
        let mut streams = chain_of_three();
        assert!(delete(&mut streams, &name("x")).is_empty());
        assert_eq!(streams, chain_of_three());
    }
}
