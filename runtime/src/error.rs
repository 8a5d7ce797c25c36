//! Typed request failures and the one place that turns them into responses.

use http::StatusCode;

use crate::plugin::PluginError;

/// Why a request could not be served normally. Every stage returns these; only
/// [`GatewayError::status_and_message`] decides what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matched.
    #[error("no route matches")]
    NotFound,
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
    /// The request body could not be read.
    #[error("reading the request body: {0}")]
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
    /// The integration did not answer in time.
    #[error("integration timed out after {0:?}")]
    IntegrationTimeout(std::time::Duration),
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
            GatewayError::IntegrationTimeout(_) => {
                (StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
            }
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
