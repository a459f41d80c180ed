//! Authentication (spec section 1): `client_id` and `token`, the client's IP
//! whitelist, and throttling of addresses, and of client ids, that keep
//! failing (a token guessed from many addresses is throttled too).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::error::{ApiError, Code, Rejection};
use super::params::{Params, parse_id};
use crate::app::App;
use crate::store::client::{Client, hash_token};

/// Checks the credentials of a request; the client on success.
pub async fn authenticate(app: &App, params: &Params, ip: IpAddr) -> Result<Arc<Client>, ApiError> {
    match check(app, params, ip).await {
        Ok(client) => Ok(client),
        Err(error) if error.code == Code::Internal => Err(error),
        Err(error) => {
            let client_id = params.get("client_id").and_then(parse_id);
            match app.auth_failures.fail(ip, client_id) {
                Some((retry_after, why)) => Err(ApiError {
                    rejection: Rejection::TooMany { retry_after },
                    ..ApiError::detail(Code::Forbidden, why)
                }),
                None => Err(error),
            }
        }
    }
}

async fn check(app: &App, params: &Params, ip: IpAddr) -> Result<Arc<Client>, ApiError> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| ApiError::credentials("\"client_id\" is required"))?;
    let client_id = parse_id(client_id)
        .ok_or_else(|| ApiError::credentials("\"client_id\" is not a positive integer"))?;
    let token = params
        .get("token")
        .ok_or_else(|| ApiError::credentials("\"token\" is required"))?;
    if token.len() != 32
        || !token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ApiError::credentials(
            "\"token\" must be 32 lower-case hex characters",
        ));
    }
    let presented = hash_token(token);
    let mut client = app.client(client_id).await?;
    // A token rotated by another process: the cached hash is stale, read again once.
    if client
        .as_ref()
        .is_some_and(|c| !bool::from(c.token_hash.ct_eq(&presented)))
    {
        app.clients.remove(&client_id);
        client = app.client(client_id).await?;
    }
    let client = client
        .filter(|c| bool::from(c.token_hash.ct_eq(&presented)))
        .ok_or_else(|| ApiError::credentials("client_id and token do not match"))?;
    if !client.allows_ip(ip) {
        return Err(ApiError::credentials(format!(
            "{ip} is not on this client's whitelist"
        )));
    }
    Ok(client)
}

/// The caller's address: the peer, or, when the peer is a trusted proxy,
/// the last address of `X-Forwarded-For` that is not a trusted proxy
/// (addresses left of it could be written by anyone).
pub fn caller_ip(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .map_while(|hop| hop.parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// Counts failed authentications per address and per client id, each
/// within a sliding window.
pub struct AuthLimiter {
    per_ip: u32,
    per_client: u32,
    window: Duration,
    by_ip: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    by_client: Mutex<HashMap<i64, (Instant, u32)>>,
}

/// Counts one failure of `key`; `Some(seconds to wait)` once over `limit`.
fn count<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, (Instant, u32)>>,
    key: K,
    limit: u32,
    window: Duration,
) -> Option<u64> {
    let now = Instant::now();
    let mut failures = map.lock().expect("auth limiter lock");
    // Bounded memory under a flood of distinct keys.
    if failures.len() > 100_000 {
        failures.retain(|_, (start, _)| now.duration_since(*start) < window);
    }
    let entry = failures.entry(key).or_insert((now, 0));
    if now.duration_since(entry.0) >= window {
        *entry = (now, 0);
    }
    entry.1 += 1;
    if entry.1 > limit {
        let left = window.saturating_sub(now.duration_since(entry.0));
        Some(left.as_secs().max(1))
    } else {
        None
    }
}

impl AuthLimiter {
    pub fn new(per_ip: u32, per_client: u32, window: Duration) -> AuthLimiter {
        AuthLimiter {
            per_ip,
            per_client,
            window,
            by_ip: Mutex::new(HashMap::new()),
            by_client: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure from `ip` naming `client_id`; once either is over
    /// its limit, the seconds to wait and why.
    pub fn fail(&self, ip: IpAddr, client_id: Option<i64>) -> Option<(u64, &'static str)> {
        let ip_wait = count(&self.by_ip, ip, self.per_ip, self.window);
        let client_wait =
            client_id.and_then(|id| count(&self.by_client, id, self.per_client, self.window));
        match (ip_wait, client_wait) {
            (Some(wait), _) => Some((wait, "too many failed authentications from this address")),
            (None, Some(wait)) => {
                Some((wait, "too many failed authentications for this client_id"))
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted = crate::store::client::parse_whitelist("10.0.0.0/8").unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let headers = forwarded("203.0.113.9, 192.0.2.1, 10.0.0.5");
        // Through two trusted hops: the last untrusted address.
        assert_eq!(
            caller_ip(proxy, &headers, &trusted),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        // From anyone else the header is ignored.
        assert_eq!(caller_ip(stranger, &headers, &trusted), stranger);
        // Garbage stops the walk: the proxy itself stands.
        assert_eq!(caller_ip(proxy, &forwarded("nonsense"), &trusted), proxy);
        assert_eq!(
            caller_ip(proxy, &axum::http::HeaderMap::new(), &trusted),
            proxy
        );
    }

    #[test]
    fn limiter_allows_the_limit_then_throttles() {
        let limiter = AuthLimiter::new(3, 100, Duration::from_secs(300));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(limiter.fail(ip, None), None);
        assert_eq!(limiter.fail(ip, Some(1001)), None);
        assert_eq!(limiter.fail(ip, None), None);
        let (wait, _) = limiter.fail(ip, None).expect("throttled");
        assert!(wait > 0 && wait <= 300);
        assert_eq!(limiter.fail("192.0.2.2".parse().unwrap(), None), None);
    }

    #[test]
    fn one_client_id_failing_from_many_addresses_is_throttled() {
        let limiter = AuthLimiter::new(3, 5, Duration::from_secs(300));
        for n in 1..=5u8 {
            let ip = IpAddr::from([198, 51, 100, n]);
            assert_eq!(limiter.fail(ip, Some(1001)), None);
        }
        let (wait, why) = limiter
            .fail("198.51.100.6".parse().unwrap(), Some(1001))
            .expect("throttled");
        assert!(wait > 0 && wait <= 300);
        assert_eq!(why, "too many failed authentications for this client_id");
        // Another client id from a fresh address is not.
        assert_eq!(
            limiter.fail("198.51.100.7".parse().unwrap(), Some(1002)),
            None
        );
    }
}
