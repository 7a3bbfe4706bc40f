//! AWS errors reduced to what a user needs: one line with the cause and, where there is
//! one, the fix — never the SDK's debug dump — and an [`ErrorKind`] so that providers ask
//! "is this a not-found?" instead of matching error-code strings in every file.
//!
//! [`aws_err`] is the one door from an SDK error into an [`AwsError`]: it keeps the
//! service's code and message, or, when the reply was not an AWS error at all (an HTML page
//! from a load balancer, a dropped connection, no credentials), says what happened.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an [`AwsError`] is, for the decisions callers make on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The resource does not exist (`NoSuchBucket`, `ParameterNotFound`, `…NotFoundFault`).
    NotFound,
    /// The caller may not do this (`AccessDenied`, `UnauthorizedOperation`).
    AccessDenied,
    /// No usable credentials: none found, expired, or rejected by AWS.
    Credentials,
    /// The endpoint could not be reached (refused, DNS, TLS).
    Unreachable,
    /// Throttling or a 5xx: the SDK retried it with backoff and it kept failing.
    Transient,
    /// Anything else: a validation error, a conflict, a failure of this tool's own.
    Other,
}

/// An AWS error: the service's error code and message (or this tool's account of a reply
/// that was not one), the HTTP status when there was a reply, and its [`ErrorKind`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    pub code: Option<String>,
    pub message: String,
    pub status: Option<u16>,
    kind: ErrorKind,
}

impl ErrorKind {
    /// The kind as CI reads it in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Credentials => "credentials",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Transient => "transient",
            ErrorKind::Other => "other",
        }
    }
}

impl AwsError {
    pub fn new(code: Option<&str>, message: impl Into<String>) -> Self {
        let kind = classify(code, None);
        AwsError {
            code: code.map(str::to_owned),
            message: message.into(),
            status: None,
            kind,
        }
    }

    /// A failure of this tool's own, not of AWS (a timeout, an unexpected reply).
    pub fn local(message: impl Into<String>) -> Self {
        AwsError::new(None, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Whether the error code is `code` (for the few codes a kind does not cover).
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// Kind from the error code, else from the HTTP status.
fn classify(code: Option<&str>, status: Option<u16>) -> ErrorKind {
    if let Some(code) = code {
        let c = code.trim_end_matches("Exception").trim_end_matches("Fault");
        match c {
            "AccessDenied"
            | "UnauthorizedOperation"
            | "AuthorizationError"
            | "Forbidden"
            | "AllAccessDisabled" => return ErrorKind::AccessDenied,
            "ExpiredToken"
            | "InvalidClientTokenId"
            | "UnrecognizedClient"
            | "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "InvalidSignature"
            | "AuthFailure"
            | "MissingAuthenticationToken"
            | "IncompleteSignature" => {
                return ErrorKind::Credentials;
            }
            "Throttling"
            | "RequestLimitExceeded"
            | "SlowDown"
            | "TooManyRequests"
            | "RequestThrottled"
            | "ProvisionedThroughputExceeded"
            | "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable" => return ErrorKind::Transient,
            _ => {}
        }
        if c.ends_with("NotFound") || c.starts_with("NoSuch") || c == "NotFound" {
            return ErrorKind::NotFound;
        }
    }
    match status {
        Some(404) if code.is_none() => ErrorKind::NotFound,
        Some(403) if code.is_none() => ErrorKind::AccessDenied,
        Some(429) => ErrorKind::Transient,
        Some(s) if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

/// Converts an SDK error into one line. The operation is taken from the error's type
/// (`GetBucketTaggingError` → `s3:GetBucketTagging`) so that an access-denied message can
/// name the action to grant even when the service's own message does not (S3's says only
/// "Access Denied").
pub fn aws_err<E>(err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let action = action_of::<E>();
    let (code, message, status) = match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.err();
            match (e.code(), e.message()) {
                (None, None) => (None, not_an_aws_error(ctx.raw()), Some(status)),
                (code, message) => (
                    code.map(str::to_owned),
                    message
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("HTTP {status} from {action} with no message")),
                    Some(status),
                ),
            }
        }
        SdkError::ResponseError(ctx) => {
            let status = ctx.raw().status().as_u16();
            (None, not_an_aws_error(ctx.raw()), Some(status))
        }
        SdkError::TimeoutError(_) => {
            return AwsError::local(format!("{action} timed out, on every attempt"))
                .with_kind(ErrorKind::Transient);
        }
        _ => {
            // Dispatch and construction failures: credentials, or the connection.
            if let Some(cred) = find::<CredentialsError>(&err) {
                return credentials_error(cred);
            }
            let chain = chain(&err);
            let root = chain.rsplit(": ").next().unwrap_or(&chain).to_owned();
            let what = if chain.contains("dns error") || chain.contains("failed to lookup") {
                "cannot resolve the endpoint's host name"
            } else if chain.contains("onnection refused") {
                "connection refused"
            } else if chain.contains("timed out") || chain.contains("timeout") {
                "no answer in time"
            } else {
                "the request could not be sent"
            };
            return AwsError::local(format!("{what} ({root})")).with_kind(ErrorKind::Unreachable);
        }
    };
    let kind = classify(code.as_deref(), status);
    let message = match kind {
        ErrorKind::AccessDenied if !message.contains(&action) => {
            format!(
                "{message} (action {action}): grant it to the caller, or use a profile that has it"
            )
        }
        ErrorKind::AccessDenied => {
            format!("{message}; grant it to the caller, or use a profile that has it")
        }
        ErrorKind::Credentials => {
            format!(
                "{message}: the credentials were rejected; refresh them (`aws sso login`, or new keys)"
            )
        }
        _ => message,
    };
    AwsError {
        code,
        message,
        status,
        kind,
    }
}

/// A reply that is not an AWS error (an HTML page from a proxy or load balancer), retried
/// by the SDK like any 5xx until its attempts ran out.
fn not_an_aws_error(raw: &HttpResponse) -> String {
    let status = raw.status().as_u16();
    let content_type = raw
        .headers()
        .get("content-type")
        .unwrap_or("no content type");
    let retried = if status >= 500 || status == 429 {
        ", on every attempt"
    } else {
        ""
    };
    // A HEAD (S3 HeadBucket) gets no body, so no code either: the status is all there is.
    if raw.body().bytes().is_some_and(<[u8]>::is_empty) {
        return match status {
            403 => "access denied (HTTP 403 with no error body)".into(),
            _ => format!(
                "HTTP {status} {} with no error body{retried}",
                reason(status)
            ),
        };
    }
    format!(
        "HTTP {status} {} with a body that is not an AWS error ({content_type}){retried}; a proxy or load balancer in front of the endpoint may have answered",
        reason(status)
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn credentials_error(err: &CredentialsError) -> AwsError {
    let detail = chain(err);
    let lower = detail.to_lowercase();
    let profile = std::env::var("AWS_PROFILE").ok();
    let not_found = "no AWS credentials found (looked in the environment, the AWS_PROFILE profile, web identity, ECS and EC2 instance metadata): set AWS_PROFILE to a configured profile, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
    let message = if matches!(err, CredentialsError::CredentialsNotLoaded(_)) {
        not_found.to_owned()
    } else if lower.contains("sso") || lower.contains("token") && lower.contains("expired") {
        let login = match &profile {
            Some(p) => format!("aws sso login --profile {p}"),
            None => "aws sso login".to_owned(),
        };
        format!("the SSO session has expired or was never started: run `{login}` ({detail})")
    } else if lower.contains("imds") && profile.is_none() {
        // The chain's last resort answered (off EC2: refused or forbidden), so nothing
        // before it had credentials.
        format!("{not_found} ({detail})")
    } else if matches!(err, CredentialsError::ProviderTimedOut(_)) {
        format!("loading AWS credentials timed out: {detail}")
    } else {
        format!("could not load AWS credentials: {detail}")
    };
    AwsError {
        code: None,
        message,
        status: None,
        kind: ErrorKind::Credentials,
    }
}

/// `s3:GetBucketTagging` from `aws_sdk_s3::operation::get_bucket_tagging::GetBucketTaggingError`.
fn action_of<E>() -> String {
    let name = std::any::type_name::<E>();
    let service = name
        .split("::")
        .next()
        .and_then(|c| c.strip_prefix("aws_sdk_"))
        .unwrap_or("aws");
    let op = name
        .rsplit("::")
        .next()
        .unwrap_or(name)
        .trim_end_matches("Error");
    format!("{service}:{op}")
}

/// The first error of type `T` in `err`'s source chain.
fn find<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// The Display of every error in the chain, joined by ": ", without the repeats the SDK's
/// wrappers add ("dispatch failure: io error: …") and without any Debug dump.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        let generic = matches!(
            text.as_str(),
            "dispatch failure" | "io error" | "other" | "failed to construct request"
        );
        if !generic && !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classify() {
        assert_eq!(
            classify(Some("NoSuchBucket"), Some(404)),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(Some("ParameterNotFound"), None),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(Some("DBInstanceNotFoundFault"), None),
            ErrorKind::NotFound
        );
        assert_eq!(classify(None, Some(404)), ErrorKind::NotFound);
        assert_eq!(
            classify(Some("AccessDeniedException"), Some(400)),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            classify(Some("ExpiredTokenException"), Some(400)),
            ErrorKind::Credentials
        );
        assert_eq!(
            classify(Some("ThrottlingException"), Some(400)),
            ErrorKind::Transient
        );
        assert_eq!(classify(None, Some(503)), ErrorKind::Transient);
        assert_eq!(
            classify(Some("ValidationException"), Some(400)),
            ErrorKind::Other
        );
        assert_eq!(
            classify(Some("BucketAlreadyOwnedByYou"), Some(409)),
            ErrorKind::Other
        );
    }

    #[test]
    fn action_from_the_error_type() {
        assert_eq!(
            action_of::<aws_sdk_s3::operation::get_bucket_tagging::GetBucketTaggingError>(),
            "s3:GetBucketTagging"
        );
        assert_eq!(
            action_of::<aws_sdk_ssm::operation::put_parameter::PutParameterError>(),
            "ssm:PutParameter"
        );
    }
}
