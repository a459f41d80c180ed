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
