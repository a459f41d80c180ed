//! Fetching URLs (`url=`, `content_url`) and posting callbacks: the HTTP client.

use std::time::Duration;

use crate::config::Config;

pub fn http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(config.fetch.timeout_secs))
        .redirect(reqwest::redirect::Policy::limited(
            config.fetch.max_redirects,
        ))
        .build()?)
}

/// Refuses destinations on loopback, private and link-local networks unless
/// the configuration allows them (spec section 5.6); the same rule guards
/// fetches and callbacks.
pub async fn check_destination(config: &Config, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?}: only http and https URLs are fetched"));
    }
    if config.fetch.allow_private_networks {
        return Ok(());
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addresses = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for address in addresses {
        if !is_public(address.ip()) {
            return Err(format!(
                "{host} resolves to {}, a private address (set fetch.allow_private_networks to allow it)",
                address.ip()
            ));
        }
    }
    Ok(())
}

/// Not loopback, private, link-local, unspecified, multicast or shared.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(std::net::IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}
