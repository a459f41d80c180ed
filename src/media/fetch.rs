//! Fetching URLs (`url=`, `content_url`) and the HTTP client that callbacks
//! are posted with (spec section 5.6).
//!
//! One rule guards every outgoing request: http or https only, and no
//! loopback, private, link-local, unspecified or multicast destination unless
//! `fetch.allow_private_networks` is set. The client enforces it itself, so
//! DNS cannot point around it: host names are resolved by [`GuardedResolver`],
//! which refuses a name that has any such address and hands the connector only
//! the addresses it checked; IP literals (which never reach a resolver) are
//! checked by [`check_destination`] before the first request and by the
//! redirect policy on every hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};
use tokio::io::AsyncWriteExt;

use crate::api::error::{ApiError, Code};
use crate::api::params::Upload;
use crate::app::App;
use crate::config::Config;

/// The client every outgoing request uses: the guard above, the configured
/// timeout and redirect limit, and never a proxy (a proxy would resolve the
/// destination where the guard cannot see it).
pub fn http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let allow_private = config.fetch.allow_private_networks;
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(config.fetch.timeout_secs))
        .no_proxy()
        .redirect(redirect_policy(config.fetch.max_redirects, allow_private))
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .build()?)
}

/// Whether an address is on the public internet: `false` for loopback,
/// private, shared (CGNAT), link-local, unspecified, multicast, broadcast,
/// documentation-free reserved ranges, and IPv6 unique-local and
/// site-local; IPv4 addresses embedded in IPv6 are judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0 // "this network"
        || (a == 100 && b & 0xC0 == 64) // 100.64.0.0/10, carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24, protocol assignments
        || (a == 198 && b & 0xFE == 18) // 198.18.0.0/15, benchmarking
        || a >= 240; // reserved
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach IPv4 hosts.
    let embeds_v4 = segments[..6] == [0; 6] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if embeds_v4 && !ip.is_unspecified() && !ip.is_loopback() {
        let [.., hi, lo] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    let special = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || segments[0] & 0xFE00 == 0xFC00 // unique local
        || segments[0] & 0xFFC0 == 0xFE80 // link-local
        || segments[0] & 0xFFC0 == 0xFEC0; // site-local
    !special
}

/// Checks that `url` may be fetched or posted to: http or https, and (unless
/// private networks are allowed) a host whose every address is public. The
/// `Err` says why, for a developer.
pub async fn check_destination(config: &Config, url: &str) -> Result<(), String> {
    let url = parse_url(url)?;
    if config.fetch.allow_private_networks {
        return Ok(());
    }
    if let Some(reason) = literal_refusal(&url, false) {
        return Err(reason);
    }
    if let (None, Some(host)) = (literal_ip(&url), url.host_str()) {
        resolve_public(host, url.port_or_known_default().unwrap_or(0)).await?;
    }
    Ok(())
}

/// Checks what can be checked of `url` without resolving it: an http or
/// https URL with a host that is not a refused IP literal. For URLs kept to
/// be used later (callbacks), whose names are checked when they are used.
pub fn check_url(config: &Config, url: &str) -> Result<Url, String> {
    let parsed = parse_url(url)?;
    match literal_refusal(&parsed, config.fetch.allow_private_networks) {
        Some(reason) => Err(reason),
        None => Ok(parsed),
    }
}

/// An absolute http or https URL with a host.
fn parse_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    check_scheme(&parsed)?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(parsed)
}

fn check_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!(
            "{other}: URLs are not fetched, only http and https"
        )),
    }
}

/// Why a URL's scheme or IP-literal host is refused, if it is; host names
/// are left to the resolver.
fn literal_refusal(url: &Url, allow_private: bool) -> Option<String> {
    if let Err(reason) = check_scheme(url) {
        return Some(reason);
    }
    let ip = literal_ip(url)?;
    (!allow_private && !is_public(ip)).then(|| refused(&ip.to_string()))
}

/// The host as an IP address, when it is one (the URL parser has already
/// normalised forms such as `2130706433` to `127.0.0.1`).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

fn refused(host: &str) -> String {
    format!(
        "{host} is a loopback, private or link-local address, which this server does not fetch (fetch.allow_private_networks)"
    )
}

/// Resolves `host`, refusing it when any of its addresses is not public
/// (a name with one private address could be steered to it).
async fn resolve_public(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if let Some(private) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(refused(&format!("{host} ({})", private.ip())));
    }
    Ok(addrs)
}

/// The client's resolver: the system resolver, plus the guard.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = if allow_private {
                tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .collect::<Vec<_>>()
            } else {
                resolve_public(&host, 0).await?
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Follows at most `max` redirects, each to an http(s) URL whose IP-literal
/// host (if it has one) passes the guard; names are checked when resolved.
fn redirect_policy(max: usize, allow_private: bool) -> Policy {
    Policy::custom(move |attempt: Attempt| {
        if attempt.previous().len() > max {
            let error = format!("more than {max} redirects");
            return attempt.error(error);
        }
        match literal_refusal(attempt.url(), allow_private) {
            Some(reason) => attempt.error(reason),
            None => attempt.follow(),
        }
    })
}

/// Why a fetch failed, mapped to the codes of spec section 3.
#[derive(Debug)]
pub enum FetchError {
    /// Not fetchable (bad URL, refused destination, network error, not 2xx): 460.
    Failed(String),
    /// Over `limits.media_bytes`: 461.
    TooLarge(u64),
    /// Our own disk failed: 500.
    Io(std::io::Error),
}

impl From<FetchError> for ApiError {
    fn from(error: FetchError) -> ApiError {
        match error {
            FetchError::Failed(detail) => ApiError::detail(Code::BadMedia, detail),
            FetchError::TooLarge(limit) => ApiError::detail(
                Code::MediaTooLarge,
                format!("the file at the URL is over {limit} bytes"),
            ),
            FetchError::Io(error) => error.into(),
        }
    }
}

/// Fetches `url` into a temp file under `<data_dir>/tmp`, streamed, at most
/// `limits.media_bytes`. The result is shaped like an upload, its file name
/// the URL's last path segment, so storage treats both alike.
pub async fn fetch_to_temp(app: &App, url: &str) -> Result<Upload, FetchError> {
    check_destination(&app.config, url)
        .await
        .map_err(FetchError::Failed)?;
    let parsed = parse_url(url).map_err(FetchError::Failed)?;
    let limit = app.config.limits.media_bytes;
    let mut response = app
        .http
        .get(parsed.clone())
        .send()
        .await
        .map_err(|e| FetchError::Failed(format!("cannot fetch {url}: {}", chain(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Failed(format!("{url} answered HTTP {status}")));
    }
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(FetchError::TooLarge(limit));
    }
    let path: PathBuf = app
        .config
        .tmp_dir()
        .join(format!("fetch-{}", crate::store::client::random_hex(12)));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(FetchError::Io)?;
    // From here the Upload owns the path and removes it on every early return.
    let mut fetched = Upload {
        path,
        file_name: last_segment(&parsed),
        size: 0,
    };
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| FetchError::Failed(format!("cannot read {url}: {}", chain(&e))))?;
        let Some(chunk) = chunk else { break };
        fetched.size += chunk.len() as u64;
        if fetched.size > limit {
            return Err(FetchError::TooLarge(limit));
        }
        file.write_all(&chunk).await.map_err(FetchError::Io)?;
    }
    file.flush().await.map_err(FetchError::Io)?;
    Ok(fetched)
}

/// The URL's last non-empty path segment, percent-decoded.
fn last_segment(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.rev().find(|s| !s.is_empty())?;
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    Some(decoded.into_owned())
}

/// An error with its causes, which reqwest keeps in `source()`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(ip: &str) -> bool {
        is_public(ip.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!public(ip), "{ip}");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(public(ip), "{ip}");
        }
    }

    fn config(allow_private: bool) -> Config {
        let mut config = Config::load(None).unwrap();
        config.fetch.allow_private_networks = allow_private;
        config
    }

    #[tokio::test]
    async fn destinations_are_checked_by_scheme_literal_and_name() {
        let strict = config(false);
        for url in [
            "ftp://example.com/x.png",
            "file:///etc/passwd",
            "http://127.0.0.1:8080/x",
            "http://[::1]/x",
            "http://[::ffff:7f00:1]/x",
            "http://2130706433/x",
            "http://localhost/x",
            "not a url",
        ] {
            assert!(check_destination(&strict, url).await.is_err(), "{url}");
        }
        assert!(
            check_destination(&strict, "http://93.184.216.34/x")
                .await
                .is_ok()
        );
        let open = config(true);
        assert!(check_destination(&open, "http://127.0.0.1/x").await.is_ok());
        assert!(
            check_destination(&open, "gopher://127.0.0.1/x")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_client_itself_refuses_names_that_resolve_privately() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://localhost:{port}/");
        let strict = http_client(&config(false)).unwrap();
        let error = strict.get(&url).send().await.unwrap_err();
        assert!(chain(&error).contains("private"), "{}", chain(&error));
        // The same request with the guard off reaches the listener.
        let open = http_client(&config(true)).unwrap();
        let sent = tokio::spawn(async move { open.get(&url).send().await });
        let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
        let (socket, _) = accepted.expect("the open client connects").unwrap();
        drop(socket);
        let _ = sent.await;
    }

    #[test]
    fn last_segment_is_decoded_and_skips_trailing_slash() {
        let segment = |u: &str| last_segment(&Url::parse(u).unwrap());
        assert_eq!(segment("http://h/a/b%20c.png?x=1"), Some("b c.png".into()));
        assert_eq!(segment("http://h/a/dir/"), Some("dir".into()));
        assert_eq!(segment("http://h/"), None);
    }
}
