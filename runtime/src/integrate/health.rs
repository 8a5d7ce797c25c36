//! Active health checks of a pool's targets: every `interval`, a `GET` of the check
//! path to each target at once, each within `timeout`; a `2xx` answer is a good check.
//! `unhealthy` failed checks in a row take a target out, `healthy` good ones bring it
//! back. One task per pool version, on the runtime of the reloader (the main thread);
//! it holds its pool weakly and ends with the last snapshot that uses it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Limited};

use crate::config::Protocol;
use crate::pool::{HealthSpec, Pool, Target};

/// Largest check answer body read (the rest closes the connection).
const MAX_CHECK_BODY: usize = 64 * 1024;

/// Starts the health task of `pool` on the current runtime.
pub fn spawn(pool: &Arc<Pool>) {
    tokio::spawn(run(Arc::downgrade(pool)));
}

async fn run(pool: Weak<Pool>) {
    let Some(tick) = pool.upgrade().map(|p| p.tick()) else {
        return;
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Per target id: good checks in a row (> 0) or failed ones (< 0).
    let mut streaks: HashMap<Arc<str>, i64> = HashMap::new();
    loop {
        interval.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.refresh_gauges();
        let Some(spec) = &pool.spec.health else {
            continue;
        };
        let members = pool.members();
        streaks.retain(|id, _| members.targets.iter().any(|t| t.id == *id));
        let http2 = pool.protocol() != Protocol::Http1;
        let checks = members.targets.iter().map(|t| check(t, spec, http2));
        let results = futures_util::future::join_all(checks).await;
        for (target, good) in members.targets.iter().zip(results) {
            let streak = streaks.entry(target.id.clone()).or_insert(0);
            *streak = match (good, *streak) {
                (true, s) if s > 0 => s + 1,
                (true, _) => 1,
                (false, s) if s < 0 => s - 1,
                (false, _) => -1,
            };
            let healthy = target.checked_healthy();
            if healthy && -*streak >= i64::from(spec.unhealthy) {
                pool.set_checked(target, false);
            } else if !healthy && *streak >= i64::from(spec.healthy) {
                pool.set_checked(target, true);
            }
        }
    }
}

/// One check, over the target's own connections: whether it answered `2xx` within the
/// timeout.
async fn check(target: &Target, spec: &HealthSpec, http2: bool) -> bool {
    let Ok(uri) = format!("{}{}", target.base, spec.path).parse::<http::Uri>() else {
        return false;
    };
    let mut req = Request::new(crate::pool::link::whole(Bytes::new()));
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    if !http2 {
        req.headers_mut()
            .insert(header::HOST, target.authority.clone());
    }
    req.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static("weir-health-check"),
    );
    let exchange = async {
        let resp = target.send(req, http2).await.ok()?;
        let good = resp.status().is_success();
        // Read so that the connection can be reused.
        Limited::new(resp.into_body(), MAX_CHECK_BODY)
            .collect()
            .await
            .ok()?;
        Some(good)
    };
    matches!(
        tokio::time::timeout(spec.timeout, exchange).await,
        Ok(Some(true))
    )
}
