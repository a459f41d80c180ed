//! Messages from phones (spec section 7 "Inbound keywords", section 6.1):
//! opt-outs, opt-ins, help, and routing to a campaign.
//!
//! Every message is stored. The first word decides what it means: STOP and
//! its synonyms opt the user out, START and its synonyms opt back in (and
//! confirm a double opt-in), HELP asks for the campaign's help text;
//! anything else goes to the campaign whose keyword it is, or to the
//! campaign that last messaged the user from that short code. The opt
//! change, its audit row and the campaign's callback are one commit, so a
//! callback never reports a change that was lost, nor the other way round.

use std::fmt;

use rlibphonenumber::enums::Region;

use crate::api::envelope::{XML_DECLARATION, XmlNode};
use crate::config::Config;
use crate::domain::carrier::CarrierTable;
use crate::domain::opt::OptStatus;
use crate::domain::phone::{PhoneNumber, Sender, parse_region};
use crate::store::campaign::Campaign;
use crate::store::inbound::NewInbound;
use crate::store::sends::NewTransaction;
use crate::store::user::OptSource;
use crate::store::webhook::NewWebhook;
use crate::store::{Store, now_ms};

/// A message from a phone, as a connector hands it over.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub from: PhoneNumber,
    /// The short code (or E.164 digits of the number) it was sent to.
    pub to: String,
    pub text: String,
    /// MMS subject; empty for SMS.
    pub subject: String,
    /// Smart URLs of the images it carried, already stored as media.
    pub images: Vec<String>,
}

/// What became of an inbound message.
#[derive(Debug, Clone)]
pub struct Received {
    pub inbound_id: i64,
    /// The campaign it was routed to (the first, for STOPALL).
    pub campaign_id: Option<i64>,
    /// `stop`, `opt-in`, `reply-y`, `help`, `message-in` or `unrouted`.
    pub event: String,
    /// Every campaign it reached (several for STOPALL).
    pub campaign_ids: Vec<i64>,
    /// The message queued back to the phone (stop or help text).
    pub reply_message_id: Option<i64>,
    /// Callbacks queued; the caller wakes the callback sender when > 0.
    pub webhooks: usize,
}

impl Received {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "inbound_id": self.inbound_id,
            "campaign_id": self.campaign_id,
            "event": self.event,
            "campaign_ids": self.campaign_ids,
            "reply_message_id": self.reply_message_id,
        })
    }
}

impl fmt::Display for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inbound message {}: {}", self.inbound_id, self.event)?;
        if let Some(id) = self.campaign_id {
            write!(f, " (campaign {id})")?;
        }
        if let Some(id) = self.reply_message_id {
            write!(f, ", reply message_id {id}")?;
        }
        Ok(())
    }
}

/// What the first word asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Stop,
    StopAll,
    Start,
    Help,
    /// Anything else: routed by keyword or conversation.
    Message,
}

impl Command {
    fn of(word: &str) -> Command {
        match word {
            "STOP" | "END" | "CANCEL" | "UNSUBSCRIBE" | "QUIT" => Command::Stop,
            "STOPALL" => Command::StopAll,
            "START" | "UNSTOP" | "YES" | "Y" => Command::Start,
            "HELP" | "INFO" => Command::Help,
            _ => Command::Message,
        }
    }
}

/// The first `n` words, upper-case, without surrounding punctuation
/// (`Stop.` is STOP).
fn words(text: &str, n: usize) -> Vec<String> {
    text.split_whitespace()
        .take(n)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_uppercase()
        })
        .collect()
}

/// Receives a message through the sandbox carrier (`moms admin mo`).
pub async fn receive_sandbox(
    store: &Store,
    config: &Config,
    from: &str,
    to: &str,
    text: &str,
) -> anyhow::Result<Received> {
    let region = parse_region(&config.default_region).unwrap_or(Region::US);
    let from = PhoneNumber::parse(from, region)
        .map_err(|_| anyhow::anyhow!("--from {from:?} is not a phone number"))?;
    let to = Sender::parse(to, region).ok_or_else(|| {
        anyhow::anyhow!("--to {to:?} is neither a 5–6 digit short code nor a phone number")
    })?;
    let carriers = store.carrier_table().await?;
    let message = InboundMessage {
        from,
        to: to.digits().to_string(),
        text: text.to_string(),
        subject: String::new(),
        images: Vec::new(),
    };
    receive(store, config, &carriers, message).await
}

/// Stores and routes one inbound message; see the module documentation.
pub async fn receive(
    store: &Store,
    config: &Config,
    carriers: &CarrierTable,
    message: InboundMessage,
) -> anyhow::Result<Received> {
    let carrier = carriers
        .resolve(&message.from)
        .map(|c| (c.id, c.name.clone()));
    let first_two = words(&message.text, 2);
    let command = Command::of(first_two.first().map(String::as_str).unwrap_or(""));
    let targets = route(store, &message, command, &first_two).await?;
    let number = message.from.digits();

    let (inbound_id, outcome, webhooks) = crate::with_db!(store, |pool, writer| {
        let mut tx = writer.begin().await?;
        let inbound_id = on::insert_inbound(
            &mut tx,
            &NewInbound {
                sender: number,
                shortcode: &message.to,
                body: &message.text,
                subject: &message.subject,
                campaign_id: targets.first().map(|c| c.id),
                carrier_id: carrier.as_ref().map(|(id, _)| *id),
            },
        )
        .await?;
        let mut outcome = "unrouted";
        let mut webhooks = 0;
        for campaign in &targets {
            let (event, callback_event) = on::apply(&mut tx, command, number, campaign.id).await?;
            outcome = event;
            if !campaign.callback_url.is_empty() {
                let hook = mo_webhook(campaign, callback_event, &message, carrier.as_ref());
                on::enqueue_webhook(&mut tx, &hook).await?;
                webhooks += 1;
            }
        }
        tx.commit().await?;
        (inbound_id, outcome, webhooks)
    });

    let reply = match reply_text(command, &targets) {
        Some((campaign, text)) => {
            send_reply(store, config, campaign, &message, carrier.as_ref(), text).await
        }
        None => None,
    };
    Ok(Received {
        inbound_id,
        campaign_id: targets.first().map(|c| c.id),
        event: outcome.to_string(),
        campaign_ids: targets.iter().map(|c| c.id).collect(),
        reply_message_id: reply,
        webhooks,
    })
}

/// The campaigns a message reaches.
async fn route(
    store: &Store,
    message: &InboundMessage,
    command: Command,
    first_two: &[String],
) -> sqlx::Result<Vec<Campaign>> {
    let number = message.from.digits();
    let code = message.to.as_str();
    match command {
        Command::StopAll => {
            let mut campaigns = store.shortcode_campaigns(code).await?;
            if let Some(talking) = store.conversation_campaign(code, number).await?
                && !campaigns.iter().any(|c| c.id == talking.id)
            {
                campaigns.insert(0, talking);
            }
            Ok(campaigns)
        }
        Command::Stop | Command::Start | Command::Help => {
            // `STOP DEMO` names its campaign; a bare STOP means the one the
            // user is talking to. With neither, a short code that only one
            // campaign uses can only mean that one: an opt-out must not be
            // dropped for want of a conversation.
            if let Some(keyword) = first_two.get(1)
                && let Some(campaign) = store.keyword_campaign(code, keyword).await?
            {
                return Ok(vec![campaign]);
            }
            if let Some(campaign) = store.conversation_campaign(code, number).await? {
                return Ok(vec![campaign]);
            }
            let mut campaigns = store.shortcode_campaigns(code).await?;
            if campaigns.len() == 1 {
                return Ok(campaigns.split_off(0));
            }
            Ok(Vec::new())
        }
        Command::Message => {
            if let Some(keyword) = first_two.first().filter(|k| !k.is_empty())
                && let Some(campaign) = store.keyword_campaign(code, keyword).await?
            {
                return Ok(vec![campaign]);
            }
            Ok(store
                .conversation_campaign(code, number)
                .await?
                .into_iter()
                .collect())
        }
    }
}

/// The text to send back, and the campaign it comes from.
fn reply_text(command: Command, targets: &[Campaign]) -> Option<(&Campaign, &str)> {
    let pick = |text: fn(&Campaign) -> &str| {
        // STOPALL confirms once, with the first campaign that has a text.
        targets
            .iter()
            .map(|c| (c, text(c)))
            .find(|(_, t)| !t.trim().is_empty())
    };
    match command {
        Command::Stop | Command::StopAll => pick(|c| c.stop_message.as_str()),
        Command::Help => targets
            .first()
            .map(|c| (c, c.help_message.as_str()))
            .filter(|(_, t)| !t.trim().is_empty()),
        _ => None,
    }
}

/// Queues a reply from the campaign's sender (else the short code the user
/// wrote to) back to the phone; returns its message_id. The opt change is
/// already committed, so a reply that cannot be stored is logged, not fatal.
async fn send_reply(
    store: &Store,
    config: &Config,
    campaign: &Campaign,
    message: &InboundMessage,
    carrier: Option<&(i64, String)>,
    text: &str,
) -> Option<i64> {
    let sender = if campaign.sender.is_empty() {
        message.to.clone()
    } else {
        campaign.sender.clone()
    };
    let number = message.from.digits().to_string();
    let reply = NewTransaction {
        client_id: campaign.client_id,
        campaign_id: campaign.id,
        from_name: sender.clone(),
        sender,
        recipient: number.clone(),
        to_input: number.clone(),
        to_name: number,
        kind: "sms",
        body: text.to_string(),
        carrier_id: carrier.map(|(id, _)| *id),
        conversation: Some(message.to.clone()),
        expires_ms: now_ms() + config.delivery.validity_secs.max(1) * 1000,
        ..NewTransaction::default()
    };
    match store.accept_now(reply).await {
        Ok(accepted) => Some(accepted.message_id),
        Err(error) => {
            tracing::warn!(
                ?error,
                campaign_id = campaign.id,
                "reply to an inbound message not stored"
            );
            None
        }
    }
}

/// The callback of spec section 6.1 in the campaign's `callback_format`.
fn mo_webhook(
    campaign: &Campaign,
    event: &str,
    message: &InboundMessage,
    carrier: Option<&(i64, String)>,
) -> NewWebhook {
    let fields = MoFields {
        event,
        campaign_id: campaign.id,
        msisdn: message.from.digits(),
        carrier_id: carrier.map(|(id, _)| *id).unwrap_or(0),
        carrier: carrier.map(|(_, name)| name.as_str()).unwrap_or("Unknown"),
        shortcode: &message.to,
        message: &message.text,
        subject: &message.subject,
        images: &message.images,
    };
    let (content_type, body) = if campaign.callback_format.eq_ignore_ascii_case("json") {
        ("application/json", fields.json())
    } else {
        ("application/xml", fields.xml())
    };
    NewWebhook {
        client_id: campaign.client_id,
        url: campaign.callback_url.clone(),
        content_type,
        body,
    }
}

/// Every field an MO callback carries (spec section 6.1).
struct MoFields<'a> {
    event: &'a str,
    campaign_id: i64,
    msisdn: &'a str,
    carrier: &'a str,
    carrier_id: i64,
    shortcode: &'a str,
    message: &'a str,
    subject: &'a str,
    images: &'a [String],
}

impl MoFields<'_> {
    /// `<mogreet>` with the element order of spec section 6.1; `carrier_id`
    /// and `shortcode` follow `<carrier>` as plain text.
    fn xml(&self) -> String {
        let mut root = XmlNode::new("mogreet").children([
            XmlNode::new("event").text(self.event),
            XmlNode::new("campaign_id").text(self.campaign_id),
            XmlNode::new("msisdn").text(self.msisdn),
            XmlNode::new("carrier").cdata(self.carrier),
            XmlNode::new("carrier_id").text(self.carrier_id),
            XmlNode::new("shortcode").text(self.shortcode),
            XmlNode::new("message").cdata(self.message),
            XmlNode::new("subject").cdata(self.subject),
        ]);
        if !self.images.is_empty() {
            root = root.child(
                XmlNode::new("images").children(
                    self.images
                        .iter()
                        .map(|url| XmlNode::new("image").cdata(url.as_str())),
                ),
            );
        }
        let mut out = String::from(XML_DECLARATION);
        root.write(&mut out);
        out
    }

    /// The same fields as JSON strings, `images` only when there are some.
    fn json(&self) -> String {
        let mut body = serde_json::json!({
            "event": self.event,
            "campaign_id": self.campaign_id.to_string(),
            "msisdn": self.msisdn,
            "carrier": self.carrier,
            "carrier_id": self.carrier_id.to_string(),
            "shortcode": self.shortcode,
            "message": self.message,
            "subject": self.subject,
        });
        if !self.images.is_empty() {
            let images: Vec<_> = self
                .images
                .iter()
                .map(|url| serde_json::json!({"image": url}))
                .collect();
            body["images"] = serde_json::Value::Array(images);
        }
        body.to_string()
    }
}

crate::store::dual! {
    /// Applies a command to one campaign inside the transaction; returns the
    /// outcome and the callback event of spec section 6.1.
    pub(crate) async fn apply(
        tx: &mut Conn,
        command: Command,
        number: &str,
        campaign_id: i64,
    ) -> sqlx::Result<(&'static str, &'static str)> {
        Ok(match command {
            Command::Stop | Command::StopAll => {
                on::set_opt_in(
                    tx,
                    number,
                    campaign_id,
                    OptStatus::OptedOut,
                    OptSource::Keyword,
                )
                .await?;
                ("stop", "stop")
            }
            Command::Start => {
                let before = on::set_opt_in(
                    tx,
                    number,
                    campaign_id,
                    OptStatus::OptedIn,
                    OptSource::Keyword,
                )
                .await?;
                if before == OptStatus::Grey {
                    on::release_held(tx, number, campaign_id).await?;
                    ("reply-y", "reply-y")
                } else {
                    // Not an answer to a prompt: the campaign still sees the message.
                    ("opt-in", "message-in")
                }
            }
            Command::Help => ("help", "help"),
            Command::Message => ("message-in", "message-in"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(images: &[String]) -> MoFields<'_> {
        MoFields {
            event: "message-in",
            campaign_id: 49136,
            msisdn: "17078496085",
            carrier: "Verizon Wireless",
            carrier_id: 3,
            shortcode: "343434",
            message: "Booyah",
            subject: "",
            images,
        }
    }

    #[test]
    fn keywords_are_recognised_in_any_case_and_with_punctuation() {
        assert_eq!(words(" stop. now", 2), vec!["STOP", "NOW"]);
        assert_eq!(Command::of("UNSUBSCRIBE"), Command::Stop);
        assert_eq!(Command::of("STOPALL"), Command::StopAll);
        assert_eq!(Command::of("Y"), Command::Start);
        assert_eq!(Command::of("INFO"), Command::Help);
        assert_eq!(Command::of("STOPPED"), Command::Message);
        assert!(words("", 2).is_empty());
    }

    #[test]
    fn json_callback_matches_the_spec_sample() {
        let images = vec!["http://m.example/oc/abc".to_string()];
        assert_eq!(
            fields(&images).json(),
            r#"{"event":"message-in","campaign_id":"49136","msisdn":"17078496085","carrier":"Verizon Wireless","carrier_id":"3","shortcode":"343434","message":"Booyah","subject":"","images":[{"image":"http://m.example/oc/abc"}]}"#
        );
        assert!(!fields(&[]).json().contains("images"));
    }

    #[test]
    fn xml_callback_keeps_the_spec_order() {
        let images = vec!["http://m.example/oc/abc".to_string()];
        assert_eq!(
            fields(&images).xml(),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><mogreet><event>message-in</event>"#,
                r#"<campaign_id>49136</campaign_id><msisdn>17078496085</msisdn>"#,
                r#"<carrier><![CDATA[Verizon Wireless]]></carrier><carrier_id>3</carrier_id>"#,
                r#"<shortcode>343434</shortcode><message><![CDATA[Booyah]]></message>"#,
                r#"<subject><![CDATA[]]></subject><images><image><![CDATA[http://m.example/oc/abc]]></image></images></mogreet>"#
            )
        );
    }
}
