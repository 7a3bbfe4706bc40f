//! First contact with AWS: one `sts:GetCallerIdentity` call before anything is read, so
//! that missing or expired credentials, an unreachable endpoint or a mistyped region are
//! reported once, in one line with the fix, instead of as the first of many failed reads.
//! The identity it returns (account, ARN) is what the account checks and the history use.

use std::time::Duration;

use super::{Aws, AwsError, ErrorKind, aws_err};

/// Who the credentials belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account: String,
    pub arn: String,
}

/// Regions as of this build; only used to explain a failure ("did you mean …"), never to
/// refuse a region, so a region launched after this build still works.
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

impl Aws {
    /// Asks STS who the credentials are, with a short retry budget of its own (a refused
    /// connection fails in well under a second; a 20 % fault rate still gets through).
    pub async fn caller(&self) -> Result<Caller, AwsError> {
        let mut conf = aws_sdk_sts::config::Builder::from(&self.config);
        conf.set_retry_partition(Some(self.retry_partition_for("aws_sdk_sts-identity")));
        conf.set_retry_config(Some(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_millis(400)),
        ));
        let sts = aws_sdk_sts::Client::from_conf(conf.build());
        match sts.get_caller_identity().send().await {
            Ok(out) => {
                let c = Caller {
                    account: out.account().unwrap_or_default().to_owned(),
                    arn: out.arn().unwrap_or_default().to_owned(),
                };
                let _ = self.identity.set(c.clone());
                Ok(c)
            }
            Err(e) => Err(self.explain(aws_err(e))),
        }
    }

    /// Adds where the request went, and what to check, to a first-contact failure.
    fn explain(&self, e: AwsError) -> AwsError {
        if e.kind() != ErrorKind::Unreachable {
            return e;
        }
        let region = self.config.region().map(|r| r.as_ref().to_owned());
        let mut message = match self.config.endpoint_url() {
            Some(url) => format!(
                "cannot reach AWS at {url} (from AWS_ENDPOINT_URL or the profile's endpoint_url): {}",
                e.message
            ),
            None => format!(
                "cannot reach AWS in region {}: {}",
                region.as_deref().unwrap_or("(none)"),
                e.message
            ),
        };
        if self.config.endpoint_url().is_none()
            && let Some(r) = &region
            && !KNOWN_REGIONS.contains(&r.as_str())
        {
            let best = KNOWN_REGIONS
                .iter()
                .min_by_key(|k| strsim::levenshtein(k, r))
                .copied()
                .unwrap_or("us-east-1");
            message = format!(
                "unknown region `{r}`: did you mean `{best}`? Set it in [stack] region, AWS_REGION or the profile ({})",
                e.message
            );
        } else if self.config.endpoint_url().is_some() {
            message.push_str("; is the endpoint running?");
        } else {
            message.push_str("; check the network, proxy settings and AWS_REGION");
        }
        AwsError::local(message).with_kind(ErrorKind::Unreachable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_regions_are_sorted_and_unique() {
        let mut sorted = KNOWN_REGIONS.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, KNOWN_REGIONS);
    }
}
