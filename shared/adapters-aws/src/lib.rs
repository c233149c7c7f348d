//! The AWS adapters of every port: DynamoDB (one table), SQS, KMS and Secrets Manager.
//!
//! The single-table layout (DESIGN.md §3), all keys strings `pk`/`sk`, with one GSI `gsi1`
//! (`gsi1pk`/`gsi1sk`) and the TTL attribute `ttl`:
//!
//! | pk | sk | holds |
//! |---|---|---|
//! | `ORG#o` | `META` | org (gsi1 `ORGS` / org id, for listing) |
//! | `ORG#o` | `AGENT#a` | agent with numeric `version` |
//! | `ORG#o` | `COUNTERS` | `agents` count and `active` calls |
//! | `ORG#o` | `AGENTCALLS#a` | per-agent `active` calls |
//! | `APIKEY#k` | `META` | API key (gsi1 `ORG#o#APIKEYS` / key id) |
//! | `ORG#o` | `LEDGER#<idem-key>` | one event (gsi1 `ORG#o#LEDGER` / padded applied_at + key) |
//! | `ORG#o` | `BALANCE` / `USAGE#yyyymm` | `balance`, `minutes` |
//! | `ORG#o` | `LEASE#<call>` | a call slot (gsi1 `LEASES` / padded expires_at, for the sweeper) |
//! | `ORG#o` | `HOLD#<call>` / `HOLDS` / `HOLDSEQ` | a caller in the hold queue; the org's `waiting` count; its arrival `seq` |
//! | `IDEM#scope` | `KEY#k` | an `Idempotency-Key` record (ttl) |
//! | `CALL#c` | `CTX` | conversation snapshot (ttl) |
//! | `COUNTER#key#window` | `META` | fixed-window counter (ttl) |
//! | `NUMBER#<e164>` | `META` | a number granted to an org and its routing to an agent, if any (gsi1 `ORG#o#NUMBERS` / number) |
//! | `ORG#o` | `CALLREC#c` | call record (gsi1 `ORG#o#CALLS` / padded started_at + id; `status`, `erased_at` for conditions; ttl: the org's retention) |
//! | `ORG#o` | `CALLBLOB#c` | an encrypted transcript too large for a queue message (ttl) |
//! | `ORG#o` | `AUDIT#<padded at>#…` | one audit entry |
//! | `ORG#o` | `CRED#<name>` | a provider credential (value as a KMS envelope) |
//! | `WHD#<endpoint>` | `<created_at ms, 13 digits>#<delivery id>` | one webhook delivery attempt (`org_id`, `outcome`, `expires_at`; ttl) |
//!
//! Reads that decide something are strongly consistent (`GetItem`/`Query` on the table);
//! listings served by `gsi1` (orgs, API keys, ledger history, numbers, calls) and the lease
//! sweeper's scan are eventually consistent, as GSIs are. Transactions that lose a
//! `TransactionConflict` are retried with jittered backoff; condition failures are decoded
//! from the cancellation reasons by item index.
//!
//! Verified against moto 5 (`tests/`): cancellation reasons are reported for every item of a
//! cancelled transaction (so "org and agent both full" is visible); SQS moves a message to
//! the DLQ on the receive after `maxReceiveCount`; KMS binds the encryption context (a wrong
//! context fails `Decrypt` with `InvalidCiphertextException`), and AES-GCM binds it again;
//! `ChangeMessageVisibility` with a deleted message's receipt is `ReceiptHandleIsInvalid`.

mod control;
mod directory;
mod dynamo;
mod error;
mod hold;
mod kms;
mod leases;
mod ledger;
mod outbox;
mod records;
mod recovery;
mod sqs;
mod trunks;
mod webhooks;

pub use error::AwsError;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use dynamo::Table;
use error::sdk_error;
use golos_ports::{AuditLog, CallStore, HealthCheck, NumberStore, PortError, Queue, QueueConfig, Stores};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    /// moto / localstack override; `None` in production.
    pub endpoint_url: Option<String>,
    pub table_name: String,
    /// SQS queue names are `<prefix>-<QueueConfig.name>` and `...-dlq`.
    pub queue_prefix: String,
    /// `None` → `provision()` creates one (tests/dev).
    pub kms_key_id: Option<String>,
    /// Secret `x` is `<prefix>/x` in Secrets Manager.
    pub secrets_prefix: String,
}

impl AwsConfig {
    /// Every resource (table, queues, secrets) named `name`, in us-east-1, on an
    /// AWS-compatible endpoint: moto or LocalStack.
    pub fn on_endpoint(endpoint_url: String, name: &str) -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint_url),
            table_name: name.to_owned(),
            queue_prefix: name.to_owned(),
            kms_key_id: None,
            secrets_prefix: name.to_owned(),
        }
    }

    /// The variables golos reads this configuration from (docs/configuration.md), with its
    /// values: how a parent process (a test, a launcher) points a binary at the same resources.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("GOLOS_AWS_REGION".to_owned(), self.region.clone()),
            ("GOLOS_TABLE".to_owned(), self.table_name.clone()),
            ("GOLOS_QUEUE_PREFIX".to_owned(), self.queue_prefix.clone()),
            ("GOLOS_SECRETS_PREFIX".to_owned(), self.secrets_prefix.clone()),
        ];
        env.extend(self.endpoint_url.iter().map(|url| ("GOLOS_AWS_ENDPOINT_URL".to_owned(), url.clone())));
        env.extend(self.kms_key_id.iter().map(|key| ("GOLOS_KMS_KEY_ID".to_owned(), key.clone())));
        env
    }

    /// Names AWS would refuse, found before the first call.
    pub fn validate(&self) -> Result<(), AwsError> {
        let table_ok = (3..=255).contains(&self.table_name.len())
            && self.table_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !table_ok {
            return Err(AwsError::Config(format!("invalid table name {:?}", self.table_name)));
        }
        if self.queue_prefix.is_empty()
            || !self.queue_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AwsError::Config(format!("invalid queue prefix {:?}", self.queue_prefix)));
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(AwsError::Config(format!("invalid endpoint URL {url:?}")));
            }
        }
        Ok(())
    }
}

/// Clients for every service and the configuration; cheap to clone.
#[derive(Debug, Clone)]
pub struct AwsPlatform {
    config: Arc<AwsConfig>,
    table: Table,
    sqs: aws_sdk_sqs::Client,
    kms: aws_sdk_kms::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

impl AwsPlatform {
    pub async fn connect(config: AwsConfig) -> Result<Self, AwsError> {
        config.validate()?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint).credentials_provider(aws_credential_types::Credentials::new(
                "test",
                "test",
                None,
                None,
                "golos-static",
            ));
        }
        let sdk = loader.load().await;
        Ok(Self {
            table: Table { client: aws_sdk_dynamodb::Client::new(&sdk), name: Arc::from(config.table_name.as_str()) },
            sqs: aws_sdk_sqs::Client::new(&sdk),
            kms: aws_sdk_kms::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// For tests and dev: creates the table (pk/sk strings, GSI "gsi1" on gsi1pk/gsi1sk
    /// strings, PAY_PER_REQUEST, TTL on `ttl`) if missing and waits until ACTIVE, and a KMS
    /// key if none is configured. Production uses infra/terraform.
    pub async fn provision(&mut self) -> Result<(), AwsError> {
        self.provision_table().await?;
        if self.config.kms_key_id.is_none() {
            let out = self
                .kms
                .create_key()
                .description("golos envelope master key (dev)")
                .send()
                .await
                .map_err(|e| AwsError::call("CreateKey", sdk_error("CreateKey", &e)))?;
            let key_id = out
                .key_metadata
                .map(|m| m.key_id)
                .ok_or_else(|| AwsError::Config("CreateKey returned no key".to_owned()))?;
            tracing::info!(key_id, "created KMS key");
            Arc::make_mut(&mut self.config).kms_key_id = Some(key_id);
        }
        Ok(())
    }

    async fn provision_table(&self) -> Result<(), AwsError> {
        let client = &self.table.client;
        let name = &*self.table.name;
        let exists = match client.describe_table().table_name(name).send().await {
            Ok(_) => true,
            Err(e) => match sdk_error("DescribeTable", &e) {
                PortError::NotFound { .. } => false,
                other => return Err(AwsError::call("DescribeTable", other)),
            },
        };
        if !exists {
            let build = |e: aws_sdk_dynamodb::error::BuildError| AwsError::Config(format!("CreateTable request: {e}"));
            let attr = |n: &str| {
                AttributeDefinition::builder()
                    .attribute_name(n)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)
            };
            let key =
                |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build().map_err(build);
            let gsi = GlobalSecondaryIndex::builder()
                .index_name(dynamo::GSI1)
                .key_schema(key("gsi1pk", KeyType::Hash)?)
                .key_schema(key("gsi1sk", KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(build)?;
            let result = client
                .create_table()
                .table_name(name)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attr("pk")?)
                .attribute_definitions(attr("sk")?)
                .attribute_definitions(attr("gsi1pk")?)
                .attribute_definitions(attr("gsi1sk")?)
                .key_schema(key("pk", KeyType::Hash)?)
                .key_schema(key("sk", KeyType::Range)?)
                .global_secondary_indexes(gsi)
                .send()
                .await;
            if let Err(e) = result {
                use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
                if e.code() != Some("ResourceInUseException") {
                    return Err(AwsError::call("CreateTable", sdk_error("CreateTable", &e)));
                }
            }
            tracing::info!(table = name, "created DynamoDB table");
        }
        self.wait_active(name, Duration::from_secs(120)).await?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("ttl")
            .build()
            .map_err(|e| AwsError::Config(format!("UpdateTimeToLive request: {e}")))?;
        if let Err(e) = client.update_time_to_live().table_name(name).time_to_live_specification(ttl).send().await {
            // Already enabled is answered with a ValidationException; anything else is real.
            use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
            if e.code() != Some("ValidationException") {
                return Err(AwsError::call("UpdateTimeToLive", sdk_error("UpdateTimeToLive", &e)));
            }
        }
        Ok(())
    }

    pub fn stores(&self) -> Stores {
        let t = || self.table.clone();
        Stores {
            orgs: Arc::new(directory::DynamoOrgs(t())),
            agents: Arc::new(directory::DynamoAgents(t())),
            api_keys: Arc::new(directory::DynamoApiKeys(t())),
            ledger: Arc::new(ledger::DynamoLedger(t())),
            leases: Arc::new(leases::DynamoLeases(t())),
            idempotency: Arc::new(records::DynamoIdempotency(t())),
            contexts: Arc::new(records::DynamoContexts(t())),
            counters: Arc::new(records::DynamoCounters(t())),
            credentials: Arc::new(control::DynamoCredentials(t())),
            outbox: Arc::new(outbox::DynamoOutbox(t())),
            hold: Arc::new(hold::DynamoHoldQueue(t())),
            trunks: Arc::new(trunks::DynamoTrunks(t())),
            webhook_endpoints: Arc::new(webhooks::DynamoWebhookEndpoints(t())),
            webhook_deliveries: Arc::new(webhooks::DynamoWebhookDeliveries(t())),
        }
    }

    /// Phone numbers routed to agents.
    pub fn numbers(&self) -> Arc<dyn NumberStore> {
        Arc::new(control::DynamoNumbers(self.table.clone()))
    }

    /// Call records (transcripts stored as the envelope bytes the use-case gives).
    pub fn calls(&self) -> Arc<dyn CallStore> {
        Arc::new(control::DynamoCalls(self.table.clone()))
    }

    /// The audit log.
    pub fn audit(&self) -> Arc<dyn AuditLog> {
        Arc::new(control::DynamoAudit(self.table.clone()))
    }

    /// Creates (idempotently) the queue and its DLQ with RedrivePolicy
    /// maxReceiveCount = `config.max_receives`.
    pub async fn queue(&self, config: QueueConfig) -> Result<Arc<dyn Queue>, AwsError> {
        let queue = sqs::SqsQueue::create(self.sqs.clone(), &self.config.queue_prefix, config).await?;
        Ok(Arc::new(queue))
    }

    pub fn crypto(&self) -> Arc<dyn golos_ports::Crypto> {
        Arc::new(kms::KmsCrypto { client: self.kms.clone(), key_id: self.config.kms_key_id.clone() })
    }

    pub fn secrets(&self) -> Arc<dyn golos_ports::Secrets> {
        Arc::new(self.secrets_manager())
    }

    fn secrets_manager(&self) -> kms::SecretsManager {
        kms::SecretsManager { client: self.secrets.clone(), prefix: self.config.secrets_prefix.clone() }
    }

    /// `dynamodb`: DescribeTable of the table.
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        Arc::new(DynamoHealth(self.table.clone()))
    }

    /// Creates the secret, or puts a new value if it exists. The value is never logged.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<(), AwsError> {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
        let id = self.secrets_manager().secret_id(name);
        let created = self.secrets.create_secret().name(&id).secret_string(value).send().await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceExistsException") => {
                self.secrets
                    .put_secret_value()
                    .secret_id(&id)
                    .secret_string(value)
                    .send()
                    .await
                    .map_err(|e| AwsError::call("PutSecretValue", sdk_error("PutSecretValue", &e)))?;
                Ok(())
            }
            Err(e) => Err(AwsError::call("CreateSecret", sdk_error("CreateSecret", &e))),
        }
    }
}

#[derive(Debug)]
struct DynamoHealth(Table);

#[async_trait]
impl HealthCheck for DynamoHealth {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    async fn check(&self) -> golos_ports::Result<()> {
        self.0
            .client
            .describe_table()
            .table_name(&*self.0.name)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", &e))?;
        Ok(())
    }
}
