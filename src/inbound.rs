//! Messages from phones (spec section 7): opt-outs, keywords, routing.

use std::fmt;

use crate::config::Config;
use crate::store::Store;

/// What became of an inbound message.
#[derive(Debug, Clone)]
pub struct Received {
    pub inbound_id: i64,
    pub campaign_id: Option<i64>,
    pub event: String,
}

impl Received {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"inbound_id": self.inbound_id, "campaign_id": self.campaign_id, "event": self.event})
    }
}

impl fmt::Display for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inbound message {}: {}", self.inbound_id, self.event)
    }
}

/// Receives a message through the sandbox carrier (`moms admin mo`).
pub async fn receive_sandbox(
    _store: &Store,
    _config: &Config,
    _from: &str,
    _to: &str,
    _text: &str,
) -> anyhow::Result<Received> {
    anyhow::bail!("inbound messages are not handled yet")
}
