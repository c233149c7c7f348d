//! The same API suite over the AWS adapter: DynamoDB, KMS and Secrets Manager on moto,
//! through the real AWS SDK.

mod suite;

use golos_control::EventQueues;

async fn aws() -> suite::Backend {
    let name = golos_testkit::moto::unique_name("golos-api");
    let config = golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &name);
    let mut platform = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
    platform.provision().await.expect("provision");
    suite::Backend {
        stores: platform.stores(),
        numbers: platform.numbers(),
        calls: platform.calls(),
        audit: platform.audit(),
        crypto: platform.crypto(),
        secrets: platform.secrets(),
        health: platform.health(),
        queues: EventQueues {
            call_events: platform.queue(golos_ports::QueueConfig::new(EventQueues::CALL_EVENTS)).await.expect("queue"),
            webhooks: platform.queue(golos_ports::QueueConfig::new(EventQueues::WEBHOOKS)).await.expect("queue"),
        },
        guard: Box::new(platform),
    }
}

api_tests!(aws());
