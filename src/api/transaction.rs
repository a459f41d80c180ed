//! `transaction.send` and `transaction.lookup` (spec section 5.2).
//!
//! A send is checked in two halves that `list.send` shares: [`compose`]
//! checks what every recipient gets (campaign, sender, names, media,
//! promotion, text), and [`address`] checks one recipient (line type,
//! opt-out, carrier, barring). Both report problems in the order of spec
//! section 3. [`new_transaction`] turns the two into a row to store.

use std::sync::Arc;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::envelope::{Reply, XmlNode, js};
use super::error::{ApiError, Code, UserInfo};
use super::params::parse_id;
use super::{Ctx, Outcome};
use crate::app::App;
use crate::domain::carrier::TestNumber;
use crate::domain::message_body::{BodyError, MAX_SEGMENTS, MessageBody};
use crate::domain::phone::{LineType, PhoneNumber, Sender};
use crate::store::campaign::Campaign;
use crate::store::now_ms;
use crate::store::sends::{Accepted, NewTransaction, Rejected};

/// The longest `request_id` (spec section 5.2).
const MAX_REQUEST_ID: usize = 64;
/// The longest `callback` URL we keep.
const MAX_CALLBACK: usize = 2048;

/// What every recipient of a send gets, checked.
#[derive(Debug, Clone)]
pub struct Composed {
    pub campaign: Arc<Campaign>,
    /// The sender's digits: a short code or E.164 digits.
    pub sender: String,
    pub from_name: Option<String>,
    pub to_name: Option<String>,
    /// `sms` or `mms`.
    pub kind: &'static str,
    pub body: String,
    pub subject: String,
    pub content_id: Option<i64>,
    /// A promotion to use once per send: (campaign id, upper-case code).
    pub promo: Option<(i64, String)>,
    pub callback: String,
    /// JSON array of `[name, value]`; empty when there are none.
    pub udp: String,
}

/// What a send does to a number's opt status (spec section 5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptIn {
    /// Sending does not depend on opt-in, or the number already opted in.
    None,
    /// `single`: this first message opts an UNSEEN number in.
    Single,
    /// `double`: the message waits for a "Reply Y"; `prompt` when the
    /// number is UNSEEN and the prompt still has to go out (a GREY number
    /// has had it already).
    Hold { prompt: bool },
}

/// A recipient that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressOk {
    pub carrier_id: i64,
    pub opt_in: OptIn,
    /// An MMS for a carrier that cannot carry one, under a campaign whose
    /// `mms_fallback` is `sms`: the smart URL the SMS carries instead.
    pub fallback_url: Option<String>,
}

/// Checks the parameters `transaction.send` and `list.send` share, after
/// the campaign id and the recipient, in spec section 3's order:
/// 439 → 443 → 432 → 433/434 → 437/438 → 460 → 440 → 607 (then 400 for a
/// malformed `request_id` or `callback`).
pub async fn compose(ctx: &Ctx, campaign_id: i64) -> Result<Composed, ApiError> {
    compose_with(ctx, campaign_id, false).await
}

/// [`compose`]; with `email_callback`, `callback` may also be an e-mail
/// address (list.send, spec section 5.5).
pub async fn compose_with(
    ctx: &Ctx,
    campaign_id: i64,
    email_callback: bool,
) -> Result<Composed, ApiError> {
    let params = &ctx.params;
    let text = params.get("message").unwrap_or("");
    let media_given = params.get("content_id").is_some() || params.get("content_url").is_some();
    if text.is_empty() && !media_given {
        return Err(ApiError::detail(
            Code::MissingMessage,
            "an SMS needs \"message\"; an MMS needs \"message\", \"content_id\" or \"content_url\"",
        ));
    }
    let campaign = ctx
        .app
        .campaign(ctx.client.id, campaign_id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NoSuchCampaign))?;
    let sender = sender(ctx, &campaign)?;
    let (from_name, to_name) = names(ctx, &campaign)?;
    let content_id = media(ctx).await?;
    let promo = promo(ctx, &campaign).await?;
    let kind = kind_of(&campaign, content_id)?;
    if kind == "sms" {
        check_length(text)?;
    }
    let callback = match params.get("callback") {
        Some(raw) if email_callback && super::blast::is_email_address(raw) => raw.to_string(),
        raw => callback(raw)?,
    };
    if params
        .get("request_id")
        .is_some_and(|r| r.chars().count() > MAX_REQUEST_ID)
    {
        return Err(ApiError::detail(
            Code::BadRequest,
            "\"request_id\" is longer than 64 characters",
        ));
    }
    Ok(Composed {
        campaign,
        sender,
        from_name,
        to_name,
        kind,
        body: text.to_string(),
        subject: params.get("subject").unwrap_or("").to_string(),
        content_id,
        promo,
        callback,
        udp: udp_json(params.udp()),
    })
}

/// 433/434: `from`, or the campaign's default sender.
fn sender(ctx: &Ctx, campaign: &Campaign) -> Result<String, ApiError> {
    let (raw, given) = match ctx.params.get("from") {
        Some(from) => (from, true),
        None if !campaign.sender.is_empty() => (campaign.sender.as_str(), false),
        None => {
            return Err(ApiError::detail(
                Code::MissingFrom,
                "\"from\" is required: the campaign has no default sender",
            ));
        }
    };
    let whose = if given {
        "\"from\""
    } else {
        "the campaign's default sender"
    };
    let Some(sender) = Sender::parse(raw, ctx.app.region) else {
        return Err(ApiError::detail(
            Code::InvalidFrom,
            format!("{whose} {raw:?} is not a short code or a phone number"),
        ));
    };
    if !ctx.client.may_send_from(sender.digits()) {
        return Err(ApiError::detail(
            Code::InvalidFrom,
            format!(
                "{whose} {:?} is not one of this client's senders",
                sender.digits()
            ),
        ));
    }
    Ok(sender.digits().to_string())
}

/// 437/438: names, required by some campaigns.
fn names(ctx: &Ctx, campaign: &Campaign) -> Result<(Option<String>, Option<String>), ApiError> {
    let from_name = ctx.params.get("from_name").map(str::to_string);
    let to_name = ctx.params.get("to_name").map(str::to_string);
    if campaign.require_names {
        if from_name.is_none() {
            return Err(ApiError::detail(
                Code::MissingFromName,
                "this campaign requires names",
            ));
        }
        if to_name.is_none() {
            return Err(ApiError::detail(
                Code::MissingToName,
                "this campaign requires names",
            ));
        }
    }
    Ok((from_name, to_name))
}

/// 460: `content_id` (this client's live media) or `content_url` (fetched
/// and stored like an upload), not both.
async fn media(ctx: &Ctx) -> Result<Option<i64>, ApiError> {
    match (ctx.params.get("content_id"), ctx.params.get("content_url")) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::detail(
            Code::BadMedia,
            "give \"content_id\" or \"content_url\", not both",
        )),
        (Some(raw), None) => {
            let unknown =
                || ApiError::detail(Code::BadMedia, format!("no media with content_id {raw:?}"));
            let id = parse_id(raw).ok_or_else(unknown)?;
            let media = ctx.app.store.media(id).await?;
            match media {
                Some(m) if m.client_id == Some(ctx.client.id) && !m.destroyed => Ok(Some(m.id)),
                _ => Err(unknown()),
            }
        }
        (None, Some(url)) => {
            let media =
                crate::media::store_from_url(&ctx.app, ctx.client.id, url, &ctx.public_url())
                    .await?;
            Ok(Some(media.id))
        }
    }
}

/// 440: an approved, current, unexhausted promotion of the campaign.
async fn promo(ctx: &Ctx, campaign: &Campaign) -> Result<Option<(i64, String)>, ApiError> {
    let Some(code) = ctx.params.get("promo_code") else {
        return Ok(None);
    };
    let key = code.trim().to_uppercase();
    let today = chrono::Utc::now()
        .with_timezone(&ctx.app.time_zone)
        .format("%Y-%m-%d")
        .to_string();
    if ctx
        .app
        .store
        .promo_usable(campaign.id, &key, &today)
        .await?
    {
        Ok(Some((campaign.id, key)))
    } else {
        Err(ApiError::detail(
            Code::NoSuchPromo,
            format!("{code:?} is not an approved, current promotion of this campaign"),
        ))
    }
}

/// 607 for media on an SMS-only campaign; otherwise `mms` when media is given.
fn kind_of(campaign: &Campaign, content_id: Option<i64>) -> Result<&'static str, ApiError> {
    match (content_id, campaign.kind.as_str()) {
        (None, _) => Ok("sms"),
        (Some(_), "mms") => Ok("mms"),
        (Some(_), _) => Err(ApiError::detail(
            Code::InvalidContent,
            "this campaign sends SMS only: media needs an mms campaign",
        )),
    }
}

/// 607 for a text over [`MAX_SEGMENTS`] segments.
fn check_length(text: &str) -> Result<(), ApiError> {
    match MessageBody::parse(text) {
        Ok(_) => Ok(()),
        Err(BodyError::TooLong { segments }) => Err(ApiError::detail(
            Code::InvalidContent,
            format!("the message needs {segments} segments; at most {MAX_SEGMENTS} are allowed"),
        )),
    }
}

/// 400 for a `callback` that is not an http(s) URL.
fn callback(raw: Option<&str>) -> Result<String, ApiError> {
    let Some(raw) = raw else {
        return Ok(String::new());
    };
    let valid = raw.len() <= MAX_CALLBACK
        && reqwest::Url::parse(raw)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
    if valid {
        Ok(raw.to_string())
    } else {
        Err(ApiError::detail(
            Code::BadRequest,
            format!("\"callback\" {raw:?} is not an http or https URL"),
        ))
    }
}

fn udp_json(udp: Vec<(String, String)>) -> String {
    if udp.is_empty() {
        return String::new();
    }
    let pairs: Vec<[String; 2]> = udp.into_iter().map(|(k, v)| [k, v]).collect();
    serde_json::to_string(&pairs).unwrap_or_default()
}

/// Checks one recipient in spec section 3's order: 602 → 606 → 603 → 605 →
/// 604, then 607 for an MMS the carrier cannot carry (see [`mms_route`]).
pub async fn address(
    app: &App,
    composed: &Composed,
    number: &PhoneNumber,
    input: &str,
) -> Result<AddressOk, ApiError> {
    let opt = app
        .store
        .opt_status_of(number.digits(), composed.campaign.id)
        .await?;
    address_given(app, composed, number, input, opt, &mut MmsRoutes::new()).await
}

/// The MMS route of each carrier met so far ([`mms_route`]): the members of
/// one blast page share them instead of reading the media once each.
pub type MmsRoutes = std::collections::HashMap<i64, Result<Option<String>, ApiError>>;

/// [`address`] with the number's opt status already read (`None`: UNSEEN),
/// as a blast reads a whole page's at once.
pub async fn address_given(
    app: &App,
    composed: &Composed,
    number: &PhoneNumber,
    input: &str,
    opt: Option<i64>,
    routes: &mut MmsRoutes,
) -> Result<AddressOk, ApiError> {
    let table = app.carrier_table();
    let carrier = table.resolve(number);
    let sandbox_fixed = TestNumber::of(number) == Some(TestNumber::FixedLine)
        && carrier.as_ref().is_some_and(|c| c.is_sandbox());
    if number.line_type() == LineType::CannotReceive || sandbox_fixed {
        return Err(ApiError::new(Code::UserTypeUnknown).with_user(UserInfo {
            number: number.digits().to_string(),
            input: Some(input.to_string()),
            carrier: None,
        }));
    }
    let just_number = || UserInfo {
        number: number.digits().to_string(),
        ..UserInfo::default()
    };
    if opt == Some(OPTED_OUT) {
        return Err(ApiError::new(Code::OptedOut).with_user(just_number()));
    }
    let Some(carrier) = carrier else {
        return Err(ApiError::new(Code::CarrierUnknown).with_user(just_number()));
    };
    let with_carrier = UserInfo {
        carrier: Some((carrier.id, carrier.name.clone())),
        ..just_number()
    };
    if !carrier.served {
        return Err(ApiError::new(Code::CarrierUnsupported).with_user(with_carrier));
    }
    if table.is_blacklisted(number, carrier.id) {
        return Err(ApiError::new(Code::Blacklisted).with_user(with_carrier));
    }
    let fallback_url = if composed.kind == "mms" {
        match routes.get(&carrier.id) {
            Some(route) => route.clone()?,
            None => {
                let route = mms_route(app, composed, &carrier).await;
                routes.insert(carrier.id, route.clone());
                route?
            }
        }
    } else {
        None
    };
    Ok(AddressOk {
        carrier_id: carrier.id,
        opt_in: opt_in_effect(&composed.campaign.opt_in, opt),
        fallback_url,
    })
}

/// How an MMS reaches `carrier` (spec section 7): as an MMS (`None`), as
/// an SMS with the text and the media's smart URL when the carrier cannot
/// carry MMS and the campaign's `mms_fallback` is `sms`, or not at all
/// (607): no MMS and `mms_fallback` is `fail`, or audio or video over the
/// carrier's size limit (images over it are scaled down when sent).
async fn mms_route(
    app: &App,
    composed: &Composed,
    carrier: &crate::domain::carrier::Carrier,
) -> Result<Option<String>, ApiError> {
    let Some(content_id) = composed.content_id else {
        return Ok(None);
    };
    let media = app
        .store
        .media(content_id)
        .await?
        .ok_or_else(|| ApiError::detail(Code::BadMedia, "the media is gone"))?;
    if !carrier.carries_mms() {
        if composed.campaign.mms_fallback != "sms" {
            return Err(ApiError::detail(
                Code::InvalidContent,
                format!(
                    "carrier {} does not carry MMS; set the campaign's mms_fallback to sms to send the text and a link to the media instead",
                    carrier.name
                ),
            ));
        }
        let url = media.smart_url();
        // The stored link gains `?r=<message id>` (at most 10 digits).
        check_length(&fallback_body(
            &composed.body,
            &format!("{url}?r=9999999999"),
        ))?;
        return Ok(Some(url));
    }
    if let Some(limit) = carrier.mms_limit()
        && media.kind != "image"
        && media.size as u64 > limit
    {
        return Err(ApiError::detail(
            Code::InvalidContent,
            format!(
                "the {} is {} bytes, over the {limit} bytes carrier {} takes in an MMS; audio and video are not shortened or re-encoded: send a smaller file",
                media.kind, media.size, carrier.name
            ),
        ));
    }
    Ok(None)
}

/// The text of an MMS sent as an SMS: the message, then the media's link.
pub fn fallback_body(text: &str, url: &str) -> String {
    if text.trim().is_empty() {
        url.to_string()
    } else {
        format!("{text}\n{url}")
    }
}

/// Opt statuses of the `opt_status` table.
const OPTED_IN: i64 = 1;
const GREY: i64 = 0;
const OPTED_OUT: i64 = -2;

/// What sending does under the campaign's policy, given the number's
/// status (`None`: UNSEEN).
fn opt_in_effect(policy: &str, status: Option<i64>) -> OptIn {
    match (policy, status) {
        ("single", None) => OptIn::Single,
        ("double", None) => OptIn::Hold { prompt: true },
        ("double", Some(GREY)) => OptIn::Hold { prompt: false },
        _ => OptIn::None,
    }
}

/// The row to store for one recipient. `request_id` and `blast_id` are
/// left for the caller.
pub fn new_transaction(
    composed: &Composed,
    number: &PhoneNumber,
    input: &str,
    address: &AddressOk,
    expires_ms: i64,
) -> NewTransaction {
    let held = matches!(address.opt_in, OptIn::Hold { .. });
    // A fallback is an SMS that keeps its content_id: the store records
    // "MMS Fallback to SMS" in its history for that.
    let (kind, body) = match &address.fallback_url {
        Some(url) => ("sms", fallback_body(&composed.body, url)),
        None => (composed.kind, composed.body.clone()),
    };
    NewTransaction {
        client_id: composed.campaign.client_id,
        campaign_id: composed.campaign.id,
        sender: composed.sender.clone(),
        from_name: composed
            .from_name
            .clone()
            .unwrap_or_else(|| composed.sender.clone()),
        recipient: number.digits().to_string(),
        to_input: input.to_string(),
        to_name: composed
            .to_name
            .clone()
            .unwrap_or_else(|| input.to_string()),
        kind,
        body,
        subject: composed.subject.clone(),
        content_id: composed.content_id,
        carrier_id: Some(address.carrier_id),
        callback: composed.callback.clone(),
        udp: composed.udp.clone(),
        request_id: None,
        blast_id: None,
        held,
        promo: composed.promo.clone(),
        opt_in: match address.opt_in {
            OptIn::None => None,
            OptIn::Single => Some(OPTED_IN),
            OptIn::Hold { .. } => Some(GREY),
        },
        conversation: conversation(&composed.sender),
        expires_ms,
    }
}

/// The "Reply Y" prompt of a double opt-in, sent as its own transaction.
/// `request_id` is the held message's, so a retried send does not prompt twice.
pub fn opt_in_prompt(
    held: &NewTransaction,
    campaign_name: &str,
    request_id: Option<&str>,
) -> NewTransaction {
    NewTransaction {
        kind: "sms",
        body: format!("Reply Y to receive messages from {campaign_name}"),
        subject: String::new(),
        content_id: None,
        callback: String::new(),
        udp: String::new(),
        // Past the 64 characters a client may use, so it never meets one of theirs.
        request_id: request_id.map(|r| format!("{r}\u{1}{}", "opt-in prompt".repeat(5))),
        held: false,
        // A prompt is not one of a blast's messages.
        blast_id: None,
        promo: None,
        opt_in: None,
        ..held.clone()
    }
}

/// Replies to a short code route back to this campaign.
fn conversation(sender: &str) -> Option<String> {
    (sender.len() <= 6).then(|| sender.to_string())
}

/// When a message accepted now stops being worth delivering.
pub fn expires_ms(app: &App) -> i64 {
    now_ms() + app.config.delivery.validity_secs.saturating_mul(1000)
}

/// Hands a message to the batched writer: 440 when its promotion ran out
/// meanwhile, 500 when the store failed.
pub async fn accept(app: &App, transaction: NewTransaction) -> Result<Accepted, ApiError> {
    match app.sends.accept(transaction).await {
        Ok(accepted) => Ok(accepted),
        Err(Rejected::PromoExhausted) => Err(ApiError::detail(
            Code::NoSuchPromo,
            "the promotion has been used up",
        )),
        Err(Rejected::Store(cause)) => {
            Err(ApiError::store(format_args!("accepting a send: {cause}")))
        }
    }
}

/// transaction.send (spec section 5.2): checks in spec section 3's order,
/// then stores the message durably before answering.
pub async fn send(ctx: &Ctx) -> Outcome {
    super::limits::check_send(ctx).await?;
    let campaign_id = ctx.params.require_id(
        "campaign_id",
        Code::MissingCampaignId,
        Code::InvalidCampaignId,
    )?;
    let input = ctx.params.require("to", Code::MissingTo)?;
    let number = PhoneNumber::parse(input, ctx.app.region).map_err(|_| {
        ApiError::detail(Code::InvalidTo, format!("{input:?} is not a phone number"))
    })?;
    let request_id = ctx.params.get("request_id");
    if let Some(request_id) = request_id {
        // A retry gets the first answer even if something changed since.
        if let Some(first) = ctx
            .app
            .store
            .request_answer(ctx.client.id, request_id)
            .await?
        {
            return Ok(accepted_reply(&first).into());
        }
    }
    let composed = compose(ctx, campaign_id).await?;
    let address = address(&ctx.app, &composed, &number, input).await?;
    let mut transaction =
        new_transaction(&composed, &number, input, &address, expires_ms(&ctx.app));
    transaction.request_id = request_id.map(str::to_string);
    let prompt = (address.opt_in == OptIn::Hold { prompt: true })
        .then(|| opt_in_prompt(&transaction, &composed.campaign.name, request_id));
    let accepted = accept(&ctx.app, transaction).await?;
    if let Some(prompt) = prompt {
        accept(&ctx.app, prompt).await?;
    }
    Ok(accepted_reply(&accepted).into())
}

fn accepted_reply(accepted: &Accepted) -> Reply {
    Reply::success("API Request Accepted")
        .text("message_id", accepted.message_id)
        .text("hash", &accepted.hash)
}

/// transaction.lookup (spec section 5.2): flat XML, every text in CDATA;
/// JSON nests the fields under `transaction`. A transaction that cannot be
/// found with this message_id and hash (or is another client's) is a 403
/// with HTTP 200.
pub async fn lookup(ctx: &Ctx) -> Outcome {
    let raw_id = ctx.params.require("message_id", Code::MissingParameter)?;
    let hash = ctx.params.require("hash", Code::MissingParameter)?;
    let not_found = || {
        ApiError::detail(
            Code::Forbidden,
            "no transaction with this message_id and hash",
        )
    };
    let id = parse_id(raw_id).ok_or_else(not_found)?;
    let (transaction, history) = ctx
        .app
        .store
        .transaction_with_history(id)
        .await?
        .filter(|(t, _)| {
            t.client_id == ctx.client.id && bool::from(t.hash.as_bytes().ct_eq(hash.as_bytes()))
        })
        .ok_or_else(not_found)?;
    let content_id = transaction
        .content_id
        .map(|c| c.to_string())
        .unwrap_or_default();
    let fields = [
        ("campaign_id", transaction.campaign_id.to_string()),
        ("from", transaction.sender),
        ("from_name", transaction.from_name),
        ("to", transaction.to_input),
        ("to_name", transaction.to_name),
        ("content_id", content_id),
        ("status", transaction.status),
    ];
    let events: Vec<(String, String)> = history
        .into_iter()
        .map(|e| (timestamp(&ctx.app, e.at_ms), e.event))
        .collect();
    let mut reply = Reply::success("transaction found");
    let mut json = Map::new();
    for (name, value) in fields {
        reply = reply.xml(XmlNode::new(name).cdata(value.clone()));
        json.insert(name.to_string(), js(value));
    }
    reply = reply.xml(
        XmlNode::new("history").children(events.iter().map(|(at, event)| {
            XmlNode::new("event")
                .attr("timestamp", at)
                .cdata(event.clone())
        })),
    );
    let history_json: Vec<Value> = events
        .into_iter()
        .map(|(at, event)| serde_json::json!({"timestamp": at, "event": event}))
        .collect();
    json.insert("history".into(), Value::Array(history_json));
    Ok(reply.json("transaction", Value::Object(json)).into())
}

/// `YYYY-MM-DD HH:MM:SS ±HHMM` in the configured time zone (spec section 4).
fn timestamp(app: &App, at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .with_timezone(&app.time_zone)
        .format("%Y-%m-%d %H:%M:%S %z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_in_policies() {
        assert_eq!(opt_in_effect("none", None), OptIn::None);
        assert_eq!(opt_in_effect("single", None), OptIn::Single);
        assert_eq!(opt_in_effect("single", Some(OPTED_IN)), OptIn::None);
        assert_eq!(opt_in_effect("double", None), OptIn::Hold { prompt: true });
        assert_eq!(
            opt_in_effect("double", Some(GREY)),
            OptIn::Hold { prompt: false }
        );
        assert_eq!(opt_in_effect("double", Some(OPTED_IN)), OptIn::None);
    }

    #[test]
    fn callbacks_are_http_urls() {
        assert_eq!(callback(None).unwrap(), "");
        assert!(callback(Some("https://example.com/cb?a=1")).is_ok());
        assert!(callback(Some("http://10.0.0.1:8080/")).is_ok());
        for bad in ["example.com/cb", "mailto:a@b.c", "ftp://x/y", "http://"] {
            assert_eq!(
                callback(Some(bad)).unwrap_err().code,
                Code::BadRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn only_short_codes_hold_conversations() {
        assert_eq!(conversation("21534").as_deref(), Some("21534"));
        assert_eq!(conversation("13105550100"), None);
    }
}
