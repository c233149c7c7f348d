/// One `#[tokio::test]` per API case, over the backend `$make` builds.
#[macro_export]
macro_rules! api_tests {
    ($make:expr) => {
        $crate::api_tests!(@each $make;
            walkthrough_org_key_agent, etag_and_if_match, validation_and_agent_quotas, authentication,
            key_lifecycle, every_route_enforces_the_rbac_matrix, rate_limits_per_key_and_org,
            idempotent_posts, idempotency_cannot_leak, failed_authentication_is_throttled_per_address, org_updates_do_not_undo_each_other, provider_credentials, numbers_and_routing, calls_billing_usage_and_audit, health_and_openapi,
            call_events_debit_once_and_emit_webhooks, admission_leases_hold_queue_and_sweeper,
            admission_hold_queue_is_bounded,
            started_and_ended_race_in_both_orders, transcripts_never_cross_a_queue_in_plaintext,
            erasure_removes_a_callers_data_from_the_store, retention_is_per_org_and_swept,
            sip_trunks_are_the_operators_and_admins_read_their_own,
            webhook_endpoints_are_the_orgs_with_a_secret_shown_once);
        $crate::api_tests!(@webhooks $make;
            failed_deliveries_are_retried_after_one_then_two_seconds,
            permanent_refusals_are_dead_lettered_at_once_and_redriven, slow_and_untrusted_endpoints_are_retried,
            an_endpoint_failing_ten_times_in_an_hour_is_disabled, a_test_delivery_reports_how_the_endpoint_answers);
        $crate::api_tests!(@spending $make;
            spending_is_bounded_while_calls_run, lost_workers_are_billed_once, call_ends_survive_a_queue_outage);
    };
    (@spending $make:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let app = suite::spawn_app($make.await).await;
                suite::spending::$name(&app).await;
            }
        )+
    };
    (@webhooks $make:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let app = suite::spawn_app_with($make.await, suite::webhooks::config()).await;
                suite::webhooks::$name(&app).await;
            }
        )+
    };
    (@each $make:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let app = suite::spawn_app($make.await).await;
                suite::cases::$name(&app).await;
            }
        )+
    };
}
