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
    /// Carriers declared here are upserted into the store at start (spec
    /// section 7); none at all: the built-in sandbox carrier.
    #[serde(default)]
    pub carriers: Vec<CarrierConfig>,
}

/// One `[[carriers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierConfig {
    pub id: i64,
    pub name: String,
    /// E.164 digit prefixes, e.g. `["1310", "1424"]`.
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default = "yes")]
    pub served: bool,
    #[serde(default = "yes")]
    pub mms: bool,
    #[serde(default = "sandbox_connector")]
    pub connector: String,
}

fn yes() -> bool {
    true
}

fn sandbox_connector() -> String {
    "sandbox".into()
}

impl CarrierConfig {
    pub fn to_carrier(&self) -> crate::domain::carrier::Carrier {
        crate::domain::carrier::Carrier {
            id: self.id,
            name: self.name.trim().to_string(),
            prefixes: self.prefixes.iter().map(|p| p.trim().to_string()).collect(),
            served: self.served,
            mms: self.mms,
            connector: self.connector.trim().to_string(),
        }
    }
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
        let shown = config.redacted_toml();
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("s3cret"));
        assert!(shown.contains("postgres://moms:<redacted>@db"));
    }

    #[test]
    fn carriers_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("moms.toml");
        std::fs::write(
            &file,
            "[[carriers]]\nid = 5\nname = \"West\"\nprefixes = [\"1310\"]\nmms = false\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert!(Config::load(None).unwrap().carriers.is_empty());
        let west = &config.carriers[0];
        assert_eq!((west.id, west.served, west.mms), (5, true, false));
        assert_eq!(west.connector, "sandbox");
        // `moms config` shows them, and reads back.
        let shown: Config = toml::from_str(&config.redacted_toml()).unwrap();
        assert_eq!(shown.carriers, config.carriers);
    }
}
