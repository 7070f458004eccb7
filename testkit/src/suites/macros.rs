//! The macros that stamp the suites out as one `#[tokio::test]` per case.

/// Stamps out the universal [`MessageBus`](courier_traits::bus::MessageBus) suite in the
/// current module: one `#[tokio::test]` per case, cases needing a capability declared `false`
/// ignored with that capability as the reason, plus `capabilities_match_declaration`.
///
/// The capabilities are literal `true`/`false`, all of them, in this order. `factory` is an
/// expression (it may `.await`) evaluated in each test, yielding a
/// [`BusFactory`](crate::suites::BusFactory). The calling crate needs `tokio` (with `macros`
/// and `rt-multi-thread`) as a dependency.
///
/// | case | needs |
/// |---|---|
/// | `publish_subscribe`, `payload_sizes`, `caller_chosen_ids`, `concurrent_subscribe`, `many_topics`, `fan_out`, `topic_isolation`, `subscribe_after_close`, `concurrent_close` | — |
/// | `ordering` | `ordered` |
/// | `slow_subscriber_lag` | `lag_reporting` |
/// | `resume_from_position` | `resume` |
/// | `reconnect_after_restart`, `unavailable_while_server_down` | `survives_restart` |
/// | `multi_node` | `shared` |
#[macro_export]
macro_rules! bus_suite {
    (
        factory = $factory:expr,
        persistent = $persistent:tt,
        resume = $resume:tt,
        ordered = $ordered:tt,
        exactly_once = $exactly_once:tt,
        lag_reporting = $lag_reporting:tt,
        shared = $shared:tt,
        survives_restart = $survives_restart:tt $(,)?
    ) => {
        $crate::__suite_case!(true, "", bus, publish_subscribe, $factory);
        $crate::__suite_case!(true, "", bus, payload_sizes, $factory);
        $crate::__suite_case!(true, "", bus, caller_chosen_ids, $factory);
        $crate::__suite_case!(true, "", bus, concurrent_subscribe, $factory);
        $crate::__suite_case!(true, "", bus, many_topics, $factory);
        $crate::__suite_case!(true, "", bus, fan_out, $factory);
        $crate::__suite_case!(true, "", bus, topic_isolation, $factory);
        $crate::__suite_case!(true, "", bus, subscribe_after_close, $factory);
        $crate::__suite_case!(true, "", bus, concurrent_close, $factory);
        $crate::__suite_case!(
            $ordered,
            "needs capability `ordered`",
            bus,
            ordering,
            $factory
        );
        $crate::__suite_case!(
            $lag_reporting,
            "needs capability `lag_reporting`",
            bus,
            slow_subscriber_lag,
            $factory
        );
        $crate::__suite_case!(
            $resume,
            "needs capability `resume`",
            bus,
            resume_from_position,
            $factory
        );
        $crate::__suite_case!(
            private,
            $survives_restart,
            "needs capability `survives_restart`",
            bus,
            reconnect_after_restart,
            $factory
        );
        $crate::__suite_case!(
            private,
            $survives_restart,
            "needs capability `survives_restart`",
            bus,
            unavailable_while_server_down,
            $factory
        );
        $crate::__suite_case!(
            $shared,
            "needs capability `shared`",
            bus,
            multi_node,
            $factory
        );

        #[::tokio::test]
        async fn capabilities_match_declaration() {
            use $crate::__reexport::MessageBus as _;
            let factory = $factory;
            let bus = $crate::suites::BusFactory::connect(&factory).await;
            let declared = $crate::__reexport::BusCapabilities {
                persistent: $persistent,
                resume: $resume,
                ordered: $ordered,
                exactly_once: $exactly_once,
                lag_reporting: $lag_reporting,
                shared: $shared,
                survives_restart: $survives_restart,
            };
            assert_eq!(
                bus.capabilities(),
                declared,
                "the suite's declaration must match what the backend reports"
            );
        }
    };
}

/// Stamps out the universal [`StreamStorage`](courier_traits::storage::StreamStorage) suite in
/// the current module; see [`bus_suite!`] for the conventions.
///
/// | case | needs |
/// |---|---|
/// | `create_is_idempotent`, `create_conflicts`, `missing_stream_errors`, `invalid_input_is_named`, `round_trip_sizes`, `offsets_strictly_increase`, `read_from_every_offset`, `read_limits_page_through`, `wait_wakeups`, `wait_times_out`, `close_semantics`, `writer_seq`, `delete_and_recreate`, `concurrent_writers` | — |
/// | `race_creates_same_config`, `race_creates_different_configs`, `race_append_delete`, `race_append_close` (two instances at once, [`storage_races`](crate::suites::storage_races)) | — |
/// | `ttl_sliding_window`, `absolute_expiry` (on the factory's [`clock`](crate::suites::StorageFactory::clock)) | `ttl` |
/// | `producer_dedup`, `producer_epochs_and_gaps`, `producer_close_retry`, `failed_append_keeps_producer_state` | `producers` |
/// | `race_same_producer_seq`, `race_batches` | `producers` |
/// | `fork_reads`, `fork_sub_offsets`, `fork_errors`, `fork_delete_lifecycle` | `forks` |
/// | `race_fork_delete_source` | `forks` |
/// | `survives_server_restart`, `unavailable_while_server_down` | `survives_restart` |
/// | `wait_across_nodes` | `shared` |
/// | `keyed_window_expiry` (on the factory's clock), `keyed_repeats_in_one_call`, `keyed_concurrent_nodes` (two instances), `keyed_failure_writes_nothing` | `keyed_append` |
/// | `keyed_survives_server_restart` | `keyed_append` and `survives_restart` |
#[macro_export]
macro_rules! storage_suite {
    (
        factory = $factory:expr,
        durable = $durable:tt,
        shared = $shared:tt,
        ttl = $ttl:tt,
        producers = $producers:tt,
        forks = $forks:tt,
        survives_restart = $survives_restart:tt,
        keyed_append = $keyed_append:tt $(,)?
    ) => {
        $crate::__suite_case!(true, "", storage, create_is_idempotent, $factory);
        $crate::__suite_case!(true, "", storage, create_conflicts, $factory);
        $crate::__suite_case!(true, "", storage, missing_stream_errors, $factory);
        $crate::__suite_case!(true, "", storage, invalid_input_is_named, $factory);
        $crate::__suite_case!(true, "", storage, round_trip_sizes, $factory);
        $crate::__suite_case!(true, "", storage, offsets_strictly_increase, $factory);
        $crate::__suite_case!(true, "", storage, read_from_every_offset, $factory);
        $crate::__suite_case!(true, "", storage, read_limits_page_through, $factory);
        $crate::__suite_case!(true, "", storage, wait_wakeups, $factory);
        $crate::__suite_case!(true, "", storage, wait_times_out, $factory);
        $crate::__suite_case!(true, "", storage, close_semantics, $factory);
        $crate::__suite_case!(true, "", storage, writer_seq, $factory);
        $crate::__suite_case!(true, "", storage, delete_and_recreate, $factory);
        $crate::__suite_case!(true, "", storage, concurrent_writers, $factory);
        $crate::__suite_case!(true, "", storage_races, race_creates_same_config, $factory);
        $crate::__suite_case!(
            true,
            "",
            storage_races,
            race_creates_different_configs,
            $factory
        );
        $crate::__suite_case!(true, "", storage_races, race_append_delete, $factory);
        $crate::__suite_case!(true, "", storage_races, race_append_close, $factory);
        $crate::__suite_case!(
            $producers,
            "needs capability `producers`",
            storage_races,
            race_same_producer_seq,
            $factory
        );
        $crate::__suite_case!(
            $producers,
            "needs capability `producers`",
            storage_races,
            race_batches,
            $factory
        );
        $crate::__suite_case!(
            $forks,
            "needs capability `forks`",
            storage_races,
            race_fork_delete_source,
            $factory
        );
        $crate::__suite_case!(
            $ttl,
            "needs capability `ttl`",
            storage,
            ttl_sliding_window,
            $factory
        );
        $crate::__suite_case!(
            $ttl,
            "needs capability `ttl`",
            storage,
            absolute_expiry,
            $factory
        );
        $crate::__suite_case!(
            $producers,
            "needs capability `producers`",
            storage,
            producer_dedup,
            $factory
        );
        $crate::__suite_case!(
            $producers,
            "needs capability `producers`",
            storage,
            producer_epochs_and_gaps,
            $factory
        );
        $crate::__suite_case!(
            $producers,
            "needs capability `producers`",
            storage,
            producer_close_retry,
            $factory
        );
        $crate::__suite_case!(
            $producers,
            "needs capability `producers`",
            storage,
            failed_append_keeps_producer_state,
            $factory
        );
        $crate::__suite_case!(
            $forks,
            "needs capability `forks`",
            storage,
            fork_reads,
            $factory
        );
        $crate::__suite_case!(
            $forks,
            "needs capability `forks`",
            storage,
            fork_sub_offsets,
            $factory
        );
        $crate::__suite_case!(
            $forks,
            "needs capability `forks`",
            storage,
            fork_errors,
            $factory
        );
        $crate::__suite_case!(
            $forks,
            "needs capability `forks`",
            storage,
            fork_delete_lifecycle,
            $factory
        );
        $crate::__suite_case!(
            private,
            $survives_restart,
            "needs capability `survives_restart`",
            storage,
            survives_server_restart,
            $factory
        );
        $crate::__suite_case!(
            private,
            $survives_restart,
            "needs capability `survives_restart`",
            storage,
            unavailable_while_server_down,
            $factory
        );
        $crate::__suite_case!(
            $shared,
            "needs capability `shared`",
            storage,
            wait_across_nodes,
            $factory
        );

        $crate::__suite_case!(
            $keyed_append,
            "needs capability `keyed_append`",
            storage,
            keyed_window_expiry,
            $factory
        );
        $crate::__suite_case!(
            $keyed_append,
            "needs capability `keyed_append`",
            storage,
            keyed_repeats_in_one_call,
            $factory
        );
        $crate::__suite_case!(
            $keyed_append,
            "needs capability `keyed_append`",
            storage,
            keyed_concurrent_nodes,
            $factory
        );
        $crate::__suite_case!(
            $keyed_append,
            "needs capability `keyed_append`",
            storage,
            keyed_failure_writes_nothing,
            $factory
        );
        $crate::__keyed_restart_case!($keyed_append, $survives_restart, $factory);

        #[::tokio::test]
        async fn capabilities_match_declaration() {
            use $crate::__reexport::StreamStorage as _;
            let factory = $factory;
            let storage = $crate::suites::StorageFactory::connect(&factory).await;
            let reported = storage.capabilities();
            let declared = $crate::__reexport::StorageCapabilities {
                durable: $durable,
                shared: $shared,
                ttl: $ttl,
                producers: $producers,
                forks: $forks,
                survives_restart: $survives_restart,
                keyed_append: $keyed_append,
                max_record_bytes: reported.max_record_bytes,
            };
            assert_eq!(
                reported, declared,
                "the suite's declaration must match what the backend reports"
            );
        }
    };
}

/// `keyed_survives_server_restart`, which needs both `keyed_append` and `survives_restart`.
#[doc(hidden)]
#[macro_export]
macro_rules! __keyed_restart_case {
    (true, true, $factory:expr) => {
        $crate::__suite_case!(
            private,
            true,
            "",
            storage,
            keyed_survives_server_restart,
            $factory
        );
    };
    (false, $survives_restart:tt, $factory:expr) => {
        $crate::__suite_case!(
            private,
            false,
            "needs capability `keyed_append`",
            storage,
            keyed_survives_server_restart,
            $factory
        );
    };
    (true, false, $factory:expr) => {
        $crate::__suite_case!(
            private,
            false,
            "needs capability `survives_restart`",
            storage,
            keyed_survives_server_restart,
            $factory
        );
    };
}

/// One case: run it, or (capability `false`) mark it ignored with the reason. A case marked
/// `private` stops, restarts or freezes its server, so its factory's `shared()` fixtures start
/// private servers ([`with_private_servers`](crate::fixtures::with_private_servers)).
#[doc(hidden)]
#[macro_export]
macro_rules! __suite_case {
    (private, $run:tt, $reason:literal, $suite:ident, $case:ident, $factory:expr) => {
        $crate::__suite_case!(@test $run, $reason, $case, {
            $crate::fixtures::with_private_servers(async {
                let factory = $factory;
                $crate::suites::$suite::$case(&factory).await;
            })
            .await;
        });
    };
    ($run:tt, $reason:literal, $suite:ident, $case:ident, $factory:expr) => {
        $crate::__suite_case!(@test $run, $reason, $case, {
            let factory = $factory;
            $crate::suites::$suite::$case(&factory).await;
        });
    };
    (@test true, $reason:literal, $case:ident, $body:block) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() $body
    };
    (@test false, $reason:literal, $case:ident, $body:block) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = $reason]
        async fn $case() $body
    };
}
