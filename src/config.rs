//! Configuration: the embedded defaults of `config/default.toml`, then an
//! optional TOML file, then `MOMS_*` environment variables (spec section 8).

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// The commented defaults, embedded so `moms config` can print them.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    pub public_url: String,
    pub time_zone: String,
    pub default_region: String,
    pub demo: bool,
    pub store: StoreConfig,
    pub limits: Limits,
    pub delivery: Delivery,
    pub sandbox: Sandbox,
    pub fetch: Fetch,
    pub callbacks: Callbacks,
    pub compat: Compat,
    pub promo: Promo,
    pub retention: Retention,
    pub tls: Tls,
    pub smtp: Smtp,
    /// SMPP binds, one entry each (`[[smpp]]`); none by default.
    #[serde(default)]
    pub smpp: Vec<SmppBind>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreConfig {
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    pub body_bytes: usize,
    pub media_bytes: u64,
    pub max_parameters: usize,
    pub list_numbers: usize,
    pub failed_auth_per_ip: u32,
    pub failed_auth_window_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub validity_secs: i64,
    pub poll_millis: u64,
    pub batch: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    pub receipt_millis: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fetch {
    pub allow_private_networks: bool,
    pub timeout_secs: u64,
    pub max_redirects: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Callbacks {
    pub max_attempts: i64,
    pub first_retry_secs: i64,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Compat {
    pub legacy_http_status: bool,
    pub legacy_json_error_code: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Promo {
    pub require_approval: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retention {
    pub days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Smtp {
    pub relay: String,
    pub from: String,
    pub password: String,
}

/// One SMPP bind to an SMSC, for the carrier whose connector is `smpp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmppBind {
    /// The carrier (as in the carrier table) whose messages go here.
    pub carrier_id: i64,
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    /// `transceiver`, `transmitter` or `receiver`.
    pub bind: String,
    /// How many connections of this bind to hold.
    pub binds: usize,
    /// `3.4` or `5.0`.
    pub version: String,
    /// Outstanding `submit_sm` without a response, per connection.
    pub window: usize,
    /// Messages a second, per connection; 0 = no limit.
    pub max_per_second: f64,
    pub enquire_link_secs: u64,
    /// How long a `submit_sm` may wait for its response.
    pub response_timeout_secs: u64,
    pub registered_delivery: bool,
    pub source_ton: u8,
    pub source_npi: u8,
    pub dest_ton: u8,
    pub dest_npi: u8,
}

impl Default for SmppBind {
    fn default() -> Self {
        SmppBind {
            carrier_id: 0,
            host: "127.0.0.1".into(),
            port: 2775,
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            bind: "transceiver".into(),
            binds: 1,
            version: "3.4".into(),
            window: 64,
            max_per_second: 0.0,
            enquire_link_secs: 30,
            response_timeout_secs: 10,
            registered_delivery: true,
            source_ton: 0,
            source_npi: 0,
            dest_ton: 1,
            dest_npi: 1,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!(
                    "config file {} does not exist (run `moms config` to see every key with its default)",
                    file.display()
                );
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("MOMS_").split("__"));
        let config: Config = figment.extract().context(
            "invalid configuration (run `moms config` to see every key with its default)",
        )?;
        config.time_zone()?;
        Ok(config)
    }

    /// The configured time zone, checked.
    pub fn time_zone(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.time_zone.parse().map_err(|_| {
            anyhow::anyhow!(
                "time_zone {:?} is not an IANA time zone name (e.g. \"UTC\", \"America/Los_Angeles\")",
                self.time_zone
            )
        })
    }

    /// The effective configuration as TOML, with secrets replaced.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.smtp.password.is_empty() {
            shown.smtp.password = "<redacted>".into();
        }
        for bind in &mut shown.smpp {
            if !bind.password.is_empty() {
                bind.password = "<redacted>".into();
            }
        }
        if let Some(at) = shown.store.url.find('@') {
            // postgres://user:password@host → postgres://user:<redacted>@host
            if let Some(colon) = shown.store.url[..at].rfind(':').filter(|c| *c > 12) {
                shown.store.url.replace_range(colon + 1..at, "<redacted>");
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_default()
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("moms.db")
    }

    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.limits.media_bytes, 157_286_400);
        assert!(!config.compat.legacy_http_status);
    }

    #[test]
    fn secrets_are_redacted() {
        let mut config = Config::load(None).unwrap();
        config.smtp.password = "hunter2".into();
        config.store.url = "postgres://moms:s3cret@db:5432/moms".into();
        config.smpp.push(SmppBind {
            password: "smscpw".into(),
            ..SmppBind::default()
        });
        let shown = config.redacted_toml();
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("s3cret"));
        assert!(!shown.contains("smscpw"));
        assert!(shown.contains("postgres://moms:<redacted>@db"));
    }
}
