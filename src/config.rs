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
    /// CIDRs of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
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
    pub shutdown: Shutdown,
    pub cluster: Cluster,
    /// SMPP binds, one entry each (`[[smpp]]`); none by default.
    #[serde(default)]
    pub smpp: Vec<SmppBind>,
    /// Carriers declared here are upserted into the store at start (spec
    /// section 7); none at all: the built-in sandbox carrier.
    #[serde(default)]
    pub carriers: Vec<CarrierConfig>,
    /// MMSCs, one entry per carrier whose connector is `mm7` (`[[mm7]]`).
    #[serde(default)]
    pub mm7: Vec<crate::mm7::Mm7Endpoint>,
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
    /// The largest MMS in bytes; 0: no limit.
    #[serde(default = "default_mms_max_bytes")]
    pub mms_max_bytes: i64,
}

fn default_mms_max_bytes() -> i64 {
    crate::domain::carrier::DEFAULT_MMS_MAX_BYTES
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
            mms_max_bytes: self.mms_max_bytes,
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
    pub body_idle_secs: u64,
    pub body_secs: u64,
    pub header_secs: u64,
    pub idle_secs: u64,
    pub max_parameters: usize,
    pub list_numbers: usize,
    pub failed_auth_per_ip: u32,
    pub failed_auth_per_client: u32,
    pub failed_auth_window_secs: u64,
}

/// How `moms serve` stops on SIGTERM or Ctrl-C.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shutdown {
    pub grace_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub validity_secs: i64,
    pub poll_millis: u64,
    pub batch: i64,
    /// Messages a second handed to carriers for one client; 0: no limit.
    pub client_per_second: f64,
    /// Messages a second handed to carriers for one campaign; 0: no limit.
    pub campaign_per_second: f64,
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

/// Several nodes sharing one PostgreSQL (`[cluster]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    /// This node's name in leases and logs; empty: `<hostname>:<listen port>`
    /// (a node restarted in place gets its own leases back at once).
    pub node: String,
    /// A node holds each SMPP bind through a lease it renews; one that has
    /// not renewed for this long loses it to another node.
    pub lease_secs: u64,
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
    /// `host:port` (`[v6]:port`); the port may be left out (see [`SmtpTls::default_port`]).
    pub relay: String,
    pub from: String,
    /// Empty with a password set: the address of `from`.
    pub username: String,
    pub password: String,
    pub tls: SmtpTls,
    pub timeout_secs: u64,
}

/// How the connection to the SMTP relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text throughout: only for a relay on the same host or network.
    None,
    /// Plain connection upgraded with STARTTLS, which the relay must offer.
    Starttls,
    /// TLS from the first byte ("SMTPS").
    Tls,
}

impl SmtpTls {
    /// The usual port of each mode: 25, 587 (submission), 465 (submissions).
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

impl Smtp {
    /// The relay's host and port; `None` when no relay is configured.
    pub fn relay_address(&self) -> anyhow::Result<Option<(String, u16)>> {
        let relay = self.relay.trim();
        if relay.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            anyhow::anyhow!(
                "smtp.relay {relay:?} is not host:port (e.g. \"smtp.example.com:587\" or \"[::1]:25\")"
            )
        };
        let parse_port = |port: &str| port.parse::<u16>().map_err(|_| invalid());
        let (host, port) = if let Some(rest) = relay.strip_prefix('[') {
            // An IPv6 address, bracketed so that its colons are not the port's.
            let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
            let port = match after {
                "" => None,
                after => Some(parse_port(after.strip_prefix(':').ok_or_else(invalid)?)?),
            };
            (host, port)
        } else {
            match relay.split_once(':') {
                Some((host, port)) => (host, Some(parse_port(port)?)),
                None => (relay, None),
            }
        };
        if host.is_empty() || host.contains(['/', ' ', '[', ']']) || port == Some(0) {
            return Err(invalid());
        }
        Ok(Some((
            host.to_string(),
            port.unwrap_or(self.tls.default_port()),
        )))
    }

    /// The sender mailbox, checked.
    pub fn from_mailbox(&self) -> anyhow::Result<lettre::message::Mailbox> {
        self.from.parse().map_err(|_| {
            anyhow::anyhow!(
                "smtp.from {:?} is not an e-mail address (e.g. \"moms@example.com\" or \"Moms <moms@example.com>\")",
                self.from
            )
        })
    }
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
    /// After the SMSC throttles, the connection halves its rate for this
    /// many seconds, then goes back to `max_per_second`.
    pub throttle_secs: u64,
    pub enquire_link_secs: u64,
    /// How long a `submit_sm` may wait for its response.
    pub response_timeout_secs: u64,
    pub registered_delivery: bool,
    pub source_ton: u8,
    pub source_npi: u8,
    pub dest_ton: u8,
    pub dest_npi: u8,
    /// Messages from phones whose text carries http(s) URLs of media (how
    /// some SMSCs pass an MMS): fetch them, store them as media and pass
    /// them as the message's images.
    pub inbound_media_urls: bool,
}

impl SmppBind {
    /// Values a typo would otherwise turn into a silent default.
    pub fn check(&self) -> anyhow::Result<()> {
        if !matches!(
            self.bind.as_str(),
            "transceiver" | "transmitter" | "receiver"
        ) {
            anyhow::bail!(
                "bind = {:?}: use \"transceiver\", \"transmitter\" or \"receiver\"",
                self.bind
            );
        }
        if !matches!(self.version.as_str(), "3.4" | "5.0") {
            anyhow::bail!("version = {:?}: use \"3.4\" or \"5.0\"", self.version);
        }
        if self.host.trim().is_empty() || self.port == 0 {
            anyhow::bail!(
                "host and port must name the SMSC (e.g. host = \"smsc.example.net\", port = 2775)"
            );
        }
        if self.window == 0 || self.binds == 0 {
            anyhow::bail!("window and binds must be at least 1");
        }
        if !(self.max_per_second >= 0.0 && self.max_per_second.is_finite()) {
            anyhow::bail!("max_per_second must be 0 (no limit) or a positive number");
        }
        Ok(())
    }
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
            throttle_secs: 10,
            enquire_link_secs: 30,
            response_timeout_secs: 10,
            registered_delivery: true,
            source_ton: 0,
            source_npi: 0,
            dest_ton: 1,
            dest_npi: 1,
            inbound_media_urls: false,
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
        // The name such URLs usually go by in deployments.
        if let Ok(url) = std::env::var("MOMS_DATABASE_URL") {
            figment = figment.merge(("store.url", url));
        }
        let config: Config = figment.extract().context(
            "invalid configuration (run `moms config` to see every key with its default)",
        )?;
        config.time_zone()?;
        config.trusted_proxies()?;
        if config.smtp.relay_address()?.is_some() {
            config.smtp.from_mailbox()?;
        }
        for (n, bind) in config.smpp.iter().enumerate() {
            bind.check().with_context(|| {
                format!("[[smpp]] entry {} (carrier {})", n + 1, bind.carrier_id)
            })?;
        }
        for (n, endpoint) in config.mm7.iter().enumerate() {
            endpoint.check().with_context(|| {
                format!("[[mm7]] entry {} (carrier {})", n + 1, endpoint.carrier_id)
            })?;
        }
        Ok(config)
    }

    /// The trusted proxies, parsed.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        crate::store::client::parse_whitelist(&self.trusted_proxies.join(","))
            .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))
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
        for endpoint in &mut shown.mm7 {
            for secret in [&mut endpoint.password, &mut endpoint.inbound_password] {
                if !secret.is_empty() {
                    *secret = "<redacted>".into();
                }
            }
        }
        shown.store.url = crate::store::redacted(&shown.store.url);
        toml::to_string_pretty(&shown).unwrap_or_default()
    }

    /// The database as a user knows it: the SQLite file, or the
    /// PostgreSQL URL without its password.
    pub fn database_name(&self) -> String {
        if crate::store::is_postgres_url(&self.store.url) {
            crate::store::redacted(&self.store.url)
        } else if let Some(path) = self.store.url.strip_prefix("sqlite:") {
            path.trim_start_matches("//").to_string()
        } else {
            self.database_path().display().to_string()
        }
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

    fn smtp(relay: &str, tls: SmtpTls) -> Smtp {
        Smtp {
            relay: relay.into(),
            from: "moms@localhost".into(),
            username: String::new(),
            password: String::new(),
            tls,
            timeout_secs: 30,
        }
    }

    #[test]
    fn smtp_relay_is_host_and_port() {
        let address = |relay, tls| smtp(relay, tls).relay_address().unwrap();
        assert_eq!(address("", SmtpTls::Tls), None);
        assert_eq!(
            address("smtp.example.com:2525", SmtpTls::Tls),
            Some(("smtp.example.com".into(), 2525))
        );
        assert_eq!(
            address("smtp.example.com", SmtpTls::Starttls),
            Some(("smtp.example.com".into(), 587))
        );
        assert_eq!(
            address("smtp.example.com", SmtpTls::Tls),
            Some(("smtp.example.com".into(), 465))
        );
        assert_eq!(address("[::1]:25", SmtpTls::Tls), Some(("::1".into(), 25)));
        assert_eq!(address("[::1]", SmtpTls::None), Some(("::1".into(), 25)));
        for bad in ["smtp.example.com:x", "host:0", ":25", "::1:25", "a b:25"] {
            let error = smtp(bad, SmtpTls::None).relay_address().unwrap_err();
            assert!(error.to_string().contains("smtp.relay"), "{bad}: {error}");
        }
    }

    #[test]
    fn smtp_settings_are_read_and_checked() {
        let config: Config = Figment::from(Toml::string(DEFAULTS))
            .merge(Toml::string(
                "[smtp]\nrelay = \"mail.example.com:2525\"\ntls = \"none\"\nusername = \"u\"",
            ))
            .extract()
            .unwrap();
        assert_eq!(config.smtp.tls, SmtpTls::None);
        assert_eq!(config.smtp.username, "u");
        assert_eq!(config.smtp.timeout_secs, 30);
        assert!(
            Figment::from(Toml::string(DEFAULTS))
                .merge(Toml::string("[smtp]\ntls = \"ssl\""))
                .extract::<Config>()
                .is_err()
        );
        let mut bad = smtp("mail.example.com", SmtpTls::Tls);
        bad.from = "not an address".into();
        assert!(
            bad.from_mailbox()
                .unwrap_err()
                .to_string()
                .contains("smtp.from")
        );
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

    #[test]
    fn smpp_binds_are_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("moms.toml");
        std::fs::write(
            &file,
            "[[smpp]]\ncarrier_id = 2\nhost = \"smsc\"\nbind = \"transciever\"\n",
        )
        .unwrap();
        let error = format!("{:#}", Config::load(Some(&file)).unwrap_err());
        assert!(
            error.contains("[[smpp]] entry 1 (carrier 2)") && error.contains("\"transceiver\""),
            "{error}"
        );
        std::fs::write(
            &file,
            "[[smpp]]\ncarrier_id = 2\nhost = \"smsc\"\nversion = \"3.3\"\n",
        )
        .unwrap();
        assert!(
            format!("{:#}", Config::load(Some(&file)).unwrap_err()).contains("\"3.4\" or \"5.0\"")
        );
        std::fs::write(&file, "[[smpp]]\ncarrier_id = 2\nhost = \"smsc\"\n").unwrap();
        assert!(Config::load(Some(&file)).is_ok());
    }
}
