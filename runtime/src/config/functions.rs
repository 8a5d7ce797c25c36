//! `[functions.NAME]`: processes that implement the AWS Lambda Runtime API's client side
//! (a runtime interface client and a handler), which the gateway starts and feeds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[functions.NAME]`: one function, run as up to `concurrency` processes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// The program and its arguments (the image's entrypoint), e.g.
    /// `["python3", "-m", "awslambdaric", "app.handler"]`.
    pub command: Vec<String>,
    /// The working directory, relative to the config file (default: the config's).
    pub dir: Option<PathBuf>,
    /// Environment variables, besides the `AWS_LAMBDA_*` ones the gateway sets.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Most processes at once; each handles one invocation at a time (default 1).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Processes kept started, waiting for work (default 0: started on demand).
    #[serde(default)]
    pub min_warm: u32,
    /// Time one invocation may run (default 29 s); past it the process is killed.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Invocations that may wait for a busy process (default 10 × `concurrency`);
    /// past it, `429`.
    pub max_queue: Option<u32>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` as the function sees it, in MB (default 128;
    /// informative, not enforced).
    #[serde(default = "default_memory_size")]
    pub memory_size: u32,
    /// A process above `min_warm` that waited this long for work is stopped (default
    /// 10 min; Lambda keeps idle environments for minutes too).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_concurrency() -> u32 {
    1
}
fn default_timeout() -> Duration {
    Duration::from_secs(29)
}
fn default_memory_size() -> u32 {
    128
}

/// Which event format a `type = "lambda"` integration sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum PayloadFormat {
    /// HTTP API payload format 1.0 (REST API's proxy format).
    #[serde(rename = "1.0")]
    V1,
    /// HTTP API payload format 2.0.
    #[default]
    #[serde(rename = "2.0")]
    V2,
}
