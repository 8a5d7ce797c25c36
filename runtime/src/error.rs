//! Typed request failures, and what each one means to the client: its status and
//! message ([`GatewayError::status_and_message`]). [`crate::respond`] builds the responses.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::plugin::PluginError;
use crate::quota::Exhausted;
use crate::throttle::{Level, Refusal, Throttled};

/// What is wrong with a request's API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyProblem {
    /// No key was sent (or the authorizer returned none).
    Missing,
    /// The key is not one of `[[api_keys]]`.
    Unknown,
    /// The key (named) is disabled.
    Disabled(Arc<str>),
}

impl std::fmt::Display for ApiKeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiKeyProblem::Missing => f.write_str("missing"),
            ApiKeyProblem::Unknown => f.write_str("unknown"),
            ApiKeyProblem::Disabled(name) => write!(f, "`{name}` is disabled"),
        }
    }
}

/// Why a request could not be served normally. Every stage returns these; only
/// [`GatewayError::status_and_message`] decides what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matched.
    #[error("no route matches")]
    NotFound,
    /// The client's address is refused by `ip_allow` / `ip_deny`.
    #[error("client address {0} is not allowed")]
    IpDenied(std::net::IpAddr),
    /// The body is larger than `limits.max_body`.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The request line plus headers exceed `limits.max_header_bytes`.
    #[error("request line and headers exceed {limit} bytes")]
    HeadersTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request is malformed: its path, its handshake, or its body.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// An identity source the authorizer needs is absent.
    #[error("identity source {0} is missing")]
    MissingIdentity(String),
    /// The authorizer said no.
    #[error("authorizer denied the request ({status}): {message}")]
    Denied {
        /// 401 or 403.
        status: u16,
        /// The authorizer's message.
        message: String,
    },
    /// The authorizer failed (trap, deadline, memory); the request is denied.
    #[error("authorizer failed: {0}")]
    AuthorizerFailed(#[source] PluginError),
    /// A mapper or CORS plugin failed.
    #[error("{0}")]
    PluginFailed(#[source] PluginError),
    /// A plugin returned something the gateway refuses to send (bad header, status).
    #[error("plugin `{plugin}` returned an invalid {what}")]
    PluginOutput {
        /// Plugin name.
        plugin: String,
        /// What was wrong.
        what: String,
    },
    /// The upstream could not be reached or broke the exchange.
    #[error("upstream error: {0}")]
    BadGateway(String),
    /// A function failed: it reported an error, its process crashed or could not
    /// start, or its answer is malformed (AWS: `502 Internal Server Error`).
    #[error("{0}")]
    FunctionFailed(String),
    /// Every process of the function is busy and its queue is full.
    #[error("function `{0}` is at its concurrency and its queue is full")]
    FunctionThrottled(Arc<str>),
    /// Every target of the route's upstream pool is unhealthy or ejected.
    #[error("no target of upstream `{0}` is available")]
    NoHealthyTarget(Arc<str>),
    /// The integration did not answer in time.
    #[error("integration timed out after {0:?}")]
    IntegrationTimeout(std::time::Duration),
    /// A token bucket is empty.
    #[error("throttled at the {} level; a token is free in {retry_after:?}", .level.name())]
    Throttled {
        /// The level whose bucket was empty.
        level: Level,
        /// Time until it has a token.
        retry_after: Duration,
    },
    /// The API key's usage-plan quota is used up for this period.
    #[error("quota of API key `{key}` is used up; the period ends in {retry_after:?}")]
    QuotaExceeded {
        /// The key's name.
        key: Arc<str>,
        /// Time until the period ends.
        retry_after: Duration,
    },
    /// The route requires an API key and the request has no valid, enabled one.
    #[error("API key {0}")]
    ApiKey(ApiKeyProblem),
    /// The client did not send its body in time.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// A plain request to a WebSocket API's path.
    #[error("a WebSocket API needs an upgrade request")]
    UpgradeRequired,
    /// The cluster's shared store did not answer and the node refuses meanwhile
    /// (`[cluster] on_store_error = "deny"`).
    #[error("the cluster store did not answer")]
    StoreUnavailable,
}

impl From<Refusal> for GatewayError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Throttled(t) => t.into(),
            Refusal::StoreUnavailable => GatewayError::StoreUnavailable,
        }
    }
}

impl From<Throttled> for GatewayError {
    fn from(t: Throttled) -> Self {
        GatewayError::Throttled {
            level: t.level,
            retry_after: t.retry_after,
        }
    }
}

impl From<Exhausted> for GatewayError {
    fn from(e: Exhausted) -> Self {
        GatewayError::QuotaExceeded {
            key: e.key,
            retry_after: e.retry_after,
        }
    }
}

impl GatewayError {
    /// The status and `message` the client gets.
    pub fn status_and_message(&self) -> (StatusCode, &str) {
        match self {
            GatewayError::NotFound => (StatusCode::NOT_FOUND, "Not Found"),
            GatewayError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
            }
            GatewayError::HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large",
            ),
            GatewayError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad Request"),
            GatewayError::MissingIdentity(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            GatewayError::Denied { status, message } => {
                let status = if *status == 401 {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                };
                (status, message.as_str())
            }
            GatewayError::AuthorizerFailed(_)
            | GatewayError::PluginFailed(_)
            | GatewayError::PluginOutput { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
            GatewayError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "Bad Gateway"),
            GatewayError::FunctionFailed(_) => (StatusCode::BAD_GATEWAY, "Internal Server Error"),
            GatewayError::FunctionThrottled(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
            }
            GatewayError::NoHealthyTarget(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            }
            GatewayError::IntegrationTimeout(_) => {
                (StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
            }
            GatewayError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
            GatewayError::QuotaExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "Limit Exceeded"),
            GatewayError::ApiKey(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            GatewayError::IpDenied(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            GatewayError::UpgradeRequired => (StatusCode::UPGRADE_REQUIRED, "Upgrade Required"),
            GatewayError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "Request Timeout"),
            GatewayError::StoreUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            }
        }
    }

    /// For a `Retry-After` header: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::Throttled { retry_after, .. }
            | GatewayError::QuotaExceeded { retry_after, .. } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(secs.max(1))
            }
            _ => None,
        }
    }

    /// The JSON body the client gets: `{"message": ...}`.
    pub fn body(&self) -> String {
        let (_, message) = self.status_and_message();
        serde_json::json!({ "message": message }).to_string()
    }

    /// Whether this failure is the gateway's or a plugin's fault (logged at error level)
    /// rather than the client's.
    pub fn is_server_fault(&self) -> bool {
        self.status_and_message().0.is_server_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let throttled = |ms| GatewayError::Throttled {
            level: Level::Route,
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(throttled(1).retry_after_secs(), Some(1));
        assert_eq!(throttled(0).retry_after_secs(), Some(1));
        assert_eq!(throttled(2000).retry_after_secs(), Some(2));
        assert_eq!(throttled(2001).retry_after_secs(), Some(3));
        assert_eq!(GatewayError::NotFound.retry_after_secs(), None);
        let refused = throttled(5);
        let (status, message) = refused.status_and_message();
        assert_eq!((status.as_u16(), message), (429, "Too Many Requests"));
        let quota = GatewayError::QuotaExceeded {
            key: "k".into(),
            retry_after: Duration::from_secs(60),
        };
        assert_eq!(quota.body(), r#"{"message":"Limit Exceeded"}"#);
        let key = GatewayError::ApiKey(ApiKeyProblem::Missing);
        assert_eq!(key.status_and_message().0, StatusCode::FORBIDDEN);
    }
}
