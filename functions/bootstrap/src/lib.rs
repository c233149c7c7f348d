//! Adapters to ports: the one place that knows which backend is in use. Every binary (the
//! `golos` worker, each Lambda function) builds its state here, so they cannot drift apart.

pub mod lambda;
pub mod settings;

use anyhow::{bail, Context};
use golos_control::{
    keys, ControlConfig, ControlMetrics, ControlState, EventQueues, CALL_TOKEN_KEY_SECRET, OPERATOR_KEY_SECRET,
    PEPPER_SECRET,
};
use golos_ports::{Clock, PortError, QueueConfig, SystemClock, UuidIds};
use std::path::PathBuf;
use std::sync::Arc;

/// Where state lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite, a key file and secret files in this directory.
    Local { data_dir: PathBuf },
    /// DynamoDB, SQS, KMS and Secrets Manager.
    Aws(golos_aws::AwsConfig),
}

/// The control plane's state over `backend`.
pub async fn control_state(backend: &Backend, config: ControlConfig) -> anyhow::Result<ControlState> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (stores, numbers, calls, audit, crypto, secrets, health, queues) = match backend {
        Backend::Local { data_dir } => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let platform =
                golos_local::LocalPlatform::open(data_dir, Arc::clone(&clock)).context("opening the embedded store")?;
            bootstrap_local_secrets(&platform).await?;
            let queues = EventQueues {
                call_events: platform.queue(QueueConfig::new(EventQueues::CALL_EVENTS))?,
                webhooks: platform.queue(QueueConfig::new(EventQueues::WEBHOOKS))?,
            };
            (
                platform.stores(),
                platform.numbers(),
                platform.calls(),
                platform.audit(),
                platform.crypto(),
                platform.secrets(),
                platform.health(),
                queues,
            )
        }
        Backend::Aws(aws) => {
            let platform = golos_aws::AwsPlatform::connect(aws.clone()).await.context("connecting to AWS")?;
            let queues = EventQueues {
                call_events: platform.queue(QueueConfig::new(EventQueues::CALL_EVENTS)).await?,
                webhooks: platform.queue(QueueConfig::new(EventQueues::WEBHOOKS)).await?,
            };
            (
                platform.stores(),
                platform.numbers(),
                platform.calls(),
                platform.audit(),
                platform.crypto(),
                platform.secrets(),
                platform.health(),
                queues,
            )
        }
    };
    let required = |name: &'static str| {
        let secrets = Arc::clone(&secrets);
        async move {
            match secrets.get(name).await {
                Ok(value) => Ok(value),
                Err(PortError::NotFound { .. }) => bail!(
                    "secret `{name}` is missing: in AWS the operator creates it once with `golos init-secrets --backend aws`; \
                     locally golos creates it on first start"
                ),
                Err(err) => Err(err).with_context(|| format!("reading the secret `{name}`")),
            }
        }
    };
    let pepper = required(PEPPER_SECRET).await?;
    let call_token_key = required(CALL_TOKEN_KEY_SECRET).await?;
    let operator_key_hash = match secrets.get(OPERATOR_KEY_SECRET).await {
        Ok(key) => Some(keys::hash_secret(&pepper, key.expose())),
        Err(PortError::NotFound { .. }) => {
            tracing::warn!("no `{OPERATOR_KEY_SECRET}` secret: operator routes (creating organisations) are disabled");
            None
        }
        Err(err) => return Err(err).context("reading the operator key"),
    };
    let config_egress = config.egress.clone();
    Ok(ControlState {
        stores,
        numbers,
        calls,
        audit,
        crypto,
        secrets,
        clock,
        ids: Arc::new(UuidIds),
        pepper,
        call_token_key,
        operator_key_hash,
        config,
        metrics: Arc::new(ControlMetrics::default()),
        health_checks: Arc::new(vec![health]),
        queues,
        http: reqwest::Client::builder().build().context("building the HTTP client")?,
        webhook_http: golos_egress::net::EgressClient::with_builder(
            config_egress,
            reqwest::Client::builder().pool_max_idle_per_host(64),
        )
        .context("building the webhook HTTP client")?,
    })
}

/// The platform's own keys, each with one job, and the prefix of a generated value.
const GENERATED_SECRETS: [(&str, &str); 4] = [
    (PEPPER_SECRET, ""),
    (CALL_TOKEN_KEY_SECRET, ""),
    (golos_control::tool_signing::TOOL_SIGNING_SECRET, ""),
    (OPERATOR_KEY_SECRET, "gop_"),
];

/// The embedded default must work out of the box: on first start it creates the pepper, the
/// call-token key, the tool-signing key and an operator key as 0600 files, and says where the operator key is
/// (never the key itself).
async fn bootstrap_local_secrets(platform: &golos_local::LocalPlatform) -> anyhow::Result<()> {
    let secrets = platform.secrets();
    for (name, prefix) in GENERATED_SECRETS {
        if let Err(PortError::NotFound { .. }) = secrets.get(name).await {
            let value = format!("{prefix}{}", random_token()?);
            platform.put_secret_file(name, &value).with_context(|| format!("writing secret {name}"))?;
            if name == OPERATOR_KEY_SECRET {
                tracing::info!("created the operator API key in the data directory's secrets/{OPERATOR_KEY_SECRET}");
            }
        }
    }
    Ok(())
}

/// `golos init-secrets`: creates the platform's generated secrets that do not exist yet (API-key
/// pepper, call-token key, operator key) and returns their names. In AWS this is how they come
/// to be, run once by the operator, so their values never pass through Terraform state;
/// existing secrets are never replaced (a new pepper would invalidate every API key).
pub async fn init_secrets(backend: &Backend) -> anyhow::Result<Vec<&'static str>> {
    let mut created = Vec::new();
    match backend {
        Backend::Local { data_dir } => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let platform = golos_local::LocalPlatform::open(data_dir, Arc::new(SystemClock))
                .context("opening the embedded store")?;
            let secrets = platform.secrets();
            for (name, prefix) in GENERATED_SECRETS {
                if let Err(PortError::NotFound { .. }) = secrets.get(name).await {
                    let value = format!("{prefix}{}", random_token()?);
                    platform.put_secret_file(name, &value).with_context(|| format!("writing secret {name}"))?;
                    created.push(name);
                }
            }
        }
        Backend::Aws(config) => {
            let platform = golos_aws::AwsPlatform::connect(config.clone()).await.context("connecting to AWS")?;
            let secrets = platform.secrets();
            for (name, prefix) in GENERATED_SECRETS {
                match secrets.get(name).await {
                    Ok(_) => {}
                    Err(PortError::NotFound { .. }) => {
                        let value = format!("{prefix}{}", random_token()?);
                        platform.put_secret(name, &value).await.with_context(|| format!("creating secret {name}"))?;
                        created.push(name);
                    }
                    Err(err) => return Err(err).with_context(|| format!("reading secret {name}")),
                }
            }
        }
    }
    Ok(created)
}

fn random_token() -> anyhow::Result<String> {
    keys::random_secret().map_err(|e| anyhow::anyhow!("no randomness: {e}"))
}
