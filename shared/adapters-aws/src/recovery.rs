//! Disaster recovery of the table (docs/disaster-recovery.md): point-in-time recovery on,
//! on-demand backups, and restores into a new table that a deployment is then pointed at
//! (`GOLOS_TABLE`). DynamoDB never restores over a live table, so neither does this.
//!
//! A restored table comes back with its keys, indexes and items, but not its TTL setting,
//! its point-in-time recovery or its tags: `restore_*` switch TTL and PITR on again before
//! answering, so the new table is as recoverable as the old one from its first write.

use crate::error::sdk_error;
use crate::{AwsError, AwsPlatform};
use aws_sdk_dynamodb::types::{PointInTimeRecoverySpecification, TableStatus, TimeToLiveSpecification};
use std::time::{Duration, Instant, SystemTime};

impl AwsPlatform {
    /// Switches point-in-time recovery on for `table` (the deployment's own by default):
    /// continuous backups restorable to any second of the last 35 days.
    pub async fn enable_point_in_time_recovery(&self, table: Option<&str>) -> Result<(), AwsError> {
        let table = table.unwrap_or(&self.table.name);
        let spec = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
            .map_err(|e| AwsError::Config(format!("UpdateContinuousBackups request: {e}")))?;
        self.table
            .client
            .update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(spec)
            .send()
            .await
            .map_err(|e| AwsError::call("UpdateContinuousBackups", sdk_error("UpdateContinuousBackups", &e)))?;
        Ok(())
    }

    /// An on-demand backup of the deployment's table; answers its ARN.
    pub async fn create_backup(&self, backup_name: &str) -> Result<String, AwsError> {
        let out = self
            .table
            .client
            .create_backup()
            .table_name(&*self.table.name)
            .backup_name(backup_name)
            .send()
            .await
            .map_err(|e| AwsError::call("CreateBackup", sdk_error("CreateBackup", &e)))?;
        out.backup_details
            .map(|details| details.backup_arn)
            .ok_or_else(|| AwsError::Config("CreateBackup returned no backup".to_owned()))
    }

    /// Restores the backup `backup_arn` into the new table `target`, and waits until it
    /// takes requests.
    pub async fn restore_from_backup(&self, backup_arn: &str, target: &str) -> Result<(), AwsError> {
        self.table
            .client
            .restore_table_from_backup()
            .backup_arn(backup_arn)
            .target_table_name(target)
            .send()
            .await
            .map_err(|e| AwsError::call("RestoreTableFromBackup", sdk_error("RestoreTableFromBackup", &e)))?;
        self.finish_restore(target).await
    }

    /// Restores the deployment's table as it was at `at` (`None`: the latest restorable
    /// time, about 5 minutes ago) into the new table `target`, and waits until it takes
    /// requests.
    pub async fn restore_to_point_in_time(&self, target: &str, at: Option<SystemTime>) -> Result<(), AwsError> {
        let request = self
            .table
            .client
            .restore_table_to_point_in_time()
            .source_table_name(&*self.table.name)
            .target_table_name(target);
        let request = match at {
            Some(at) => request.restore_date_time(aws_sdk_dynamodb::primitives::DateTime::from(at)),
            None => request.use_latest_restorable_time(true),
        };
        request
            .send()
            .await
            .map_err(|e| AwsError::call("RestoreTableToPointInTime", sdk_error("RestoreTableToPointInTime", &e)))?;
        self.finish_restore(target).await
    }

    async fn finish_restore(&self, target: &str) -> Result<(), AwsError> {
        self.wait_active(target, Duration::from_secs(3_600)).await?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("ttl")
            .build()
            .map_err(|e| AwsError::Config(format!("UpdateTimeToLive request: {e}")))?;
        if let Err(e) =
            self.table.client.update_time_to_live().table_name(target).time_to_live_specification(ttl).send().await
        {
            use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
            // Already enabled is answered with a ValidationException.
            if e.code() != Some("ValidationException") {
                return Err(AwsError::call("UpdateTimeToLive", sdk_error("UpdateTimeToLive", &e)));
            }
        }
        self.enable_point_in_time_recovery(Some(target)).await
    }

    /// Waits until `table` is ACTIVE (a restore of a large table takes tens of minutes).
    pub(crate) async fn wait_active(&self, table: &str, within: Duration) -> Result<(), AwsError> {
        let deadline = Instant::now() + within;
        loop {
            let out = self
                .table
                .client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| AwsError::call("DescribeTable", sdk_error("DescribeTable", &e)))?;
            if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(AwsError::Timeout(format!("table {table} to become ACTIVE")));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
