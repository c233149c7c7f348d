//! The contract suites, one module per port. Every function takes a fresh [`Harness`] and
//! panics with a message on any deviation from the port's documented semantics.

pub mod calls;
pub mod crypto;
pub mod directory;
pub mod hold;
pub mod leases;
pub mod ledger;
pub mod numbers;
pub mod queue;
pub mod records;
pub mod trunks;
pub mod webhooks;

/// Expands to one `#[tokio::test]` per contract. `$make` is an expression evaluating to a
/// future of a fresh [`crate::Harness`]; it is evaluated once per test.
#[macro_export]
macro_rules! contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(@tests $make;
            directory::orgs_create_get_update_list,
            directory::agents_versioned_updates,
            directory::agents_quota_is_atomic,
            directory::agents_list_and_delete,
            directory::api_keys_lookup_list_revoke,
            ledger::applies_once_and_answers_duplicates_with_the_original,
            ledger::call_debits_add_monthly_usage,
            ledger::history_is_newest_first_and_paginates,
            ledger::rejects_invalid_events,
            ledger::concurrent_events_with_duplicates_balance_exactly,
            leases::concurrent_acquires_grant_exactly_the_limit,
            leases::agent_limit_and_idempotent_acquire,
            leases::release_is_idempotent,
            leases::expired_leases_are_swept_and_slots_reused,
            hold::hold_orders_by_priority_then_arrival,
            hold::hold_forgets_waiters_that_stop_asking,
            hold::hold_blocks_by_org_and_agent_limits,
            hold::hold_queue_is_bounded_per_org,
            hold::concurrent_holds_get_distinct_places,
            numbers::numbers_are_granted_to_one_org,
            numbers::routing_requires_a_grant,
            numbers::revoking_removes_the_routing,
            numbers::numbers_list_per_org_in_order,
            numbers::concurrent_grants_of_one_number_have_one_winner,
            records::idempotency_records,
            records::context_snapshots_expire,
            records::counters_are_atomic_per_window,
            records::provider_credentials_per_org,
            records::outbox_entries_are_written_once_and_listed_by_age,
            queue::send_receive_delete,
            queue::unacknowledged_message_reappears_after_visibility_timeout,
            queue::delayed_message_is_invisible_until_due,
            queue::dead_letters_after_max_receives_and_redrive,
            queue::stale_receipt_does_not_delete_a_redelivery,
            queue::dead_letter_goes_straight_to_the_dead_letter_queue,
            queue::redrive_ids_moves_only_the_named_dead_letters,
            calls::start_then_end_and_replays_change_nothing,
            calls::end_before_start_stays_ended,
            calls::racing_start_and_end_always_end_ended,
            calls::erasure_keeps_a_tombstone_without_personal_data,
            calls::expired_records_are_deleted,
            calls::transcript_blobs_expire_and_are_replaced,
            crypto::envelope_round_trip_and_context_binding,
            crypto::secrets_by_name,
            trunks::trunks_are_versioned_documents,
            webhooks::webhook_endpoints_are_versioned_documents_per_org,
            webhooks::webhook_endpoint_limit_is_atomic_and_deletes_free_slots,
            webhooks::webhook_deliveries_are_listed_newest_first_in_pages,
            webhooks::webhook_deliveries_are_put_by_id_and_expire,
            webhooks::webhook_delivery_failures_are_counted_since_with_a_cap,
        );
    };
    (@tests $make:expr; $($module:ident :: $name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let harness = $make.await;
                $crate::contracts::$module::$name(&harness).await;
            }
        )+
    };
}
