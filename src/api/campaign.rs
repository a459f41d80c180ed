//! `campaign.*` (spec section 5.7): a client's sending settings. Every
//! setting is parsed here, in the order campaign.create lists them, so the
//! first bad one is the one reported (spec section 3); uniqueness of the name
//! and of the master keyword is decided by the store, inside the write.
//!
//! The master keyword lives on the campaign's sender when that is a short
//! code, else on the client's default short code (spec section 5.4); moving
//! the sender or changing the keyword moves it.

use serde_json::{Value, json};

use super::envelope::{Reply, XmlNode, js};
use super::error::{ApiError, Code};
use super::params::Params;
use super::{Ctx, Outcome};
use crate::domain::keyword::Keyword;
use crate::domain::name::parse_name;
use crate::domain::phone::Sender;
use crate::store::Store;
use crate::store::campaign::{Campaign, Conflict};
use crate::store::client::Client;

/// Longest help or stop message: ten concatenated GSM segments (spec section 7).
const MAX_REPLY_CHARS: usize = 1530;
const MAX_URL_CHARS: usize = 2000;

/// campaign.create (spec section 5.7): `<campaign id=".."/>`, JSON `"campaign_id"`.
pub async fn create(ctx: &Ctx) -> Outcome {
    let id = create_from(&ctx.app.store, &ctx.client, ctx.app.region, &ctx.params).await?;
    Ok(Reply::success("campaign created")
        .xml(XmlNode::new("campaign").attr("id", id))
        .json("campaign_id", js(id))
        .into())
}

/// campaign.info (spec section 5.7): every setting, in create's order.
pub async fn info(ctx: &Ctx) -> Outcome {
    let id = campaign_id(&ctx.params)?;
    let campaign = live(ctx, id).await?;
    Ok(Reply::success("campaign retrieved")
        .xml(campaign_xml(&campaign))
        .json("campaign", campaign_json(&campaign))
        .into())
}

/// campaign.list (spec section 5.7): the client's live campaigns, newest first.
pub async fn list(ctx: &Ctx) -> Outcome {
    let limit = ctx.params.limit()?;
    let campaigns = ctx.app.store.campaigns(ctx.client.id, limit).await?;
    let xml = XmlNode::new("campaigns").children(campaigns.iter().map(|c| {
        XmlNode::new("campaign")
            .attr("id", c.id)
            .attr("type", &c.kind)
            .cdata(c.name.clone())
    }));
    let json: Vec<Value> = campaigns
        .iter()
        .map(|c| json!({"id": js(c.id), "name": c.name, "type": c.kind}))
        .collect();
    Ok(Reply::success("campaigns retrieved")
        .xml(xml)
        .json("campaigns", Value::Array(json))
        .into())
}

/// campaign.update (spec section 5.7): changes the settings given, and only
/// those, with create's validation. Running servers drop the cached copy.
pub async fn update(ctx: &Ctx) -> Outcome {
    let id = campaign_id(&ctx.params)?;
    let settings = Settings::parse(&ctx.client, ctx.app.region, &ctx.params)?;
    let current = live(ctx, id).await?;
    let mut campaign = (*current).clone();
    settings.apply(&mut campaign);
    let shortcode = master_shortcode(&ctx.client, &campaign)?;
    let written = ctx
        .app
        .store
        .update_campaign(&campaign, shortcode.as_deref())
        .await?;
    written.map_err(|conflict| conflict_error(conflict, &campaign, shortcode.as_deref()))?;
    forget(ctx, id).await?;
    Ok(Reply::success("campaign updated").into())
}

/// campaign.destroy (spec section 5.7): `name` must be the campaign's, as a
/// guard against destroying the wrong one; its keywords are released.
pub async fn destroy(ctx: &Ctx) -> Outcome {
    let id = campaign_id(&ctx.params)?;
    let name = ctx.params.require("name", Code::InvalidName)?;
    let campaign = live(ctx, id).await?;
    if parse_name(name) != Some(campaign.name.as_str()) {
        return Err(ApiError::detail(
            Code::InvalidName,
            format!("{name:?} is not the name of campaign {id}"),
        ));
    }
    let destroyed = ctx.app.store.destroy_campaign(id).await?;
    forget(ctx, id).await?;
    if !destroyed {
        return Err(no_such_campaign(id));
    }
    Ok(Reply::success("campaign destroyed").into())
}

/// Validates campaign.create's parameters and creates the campaign; shared
/// with `moms admin campaign create` and the demo seeding.
pub async fn create_from(
    store: &Store,
    client: &Client,
    region: rlibphonenumber::enums::Region,
    params: &Params,
) -> Result<i64, ApiError> {
    // `name` is the first parameter: missing, it is the first problem.
    params.require("name", Code::InvalidName)?;
    let settings = Settings::parse(client, region, params)?;
    let mut campaign = Campaign {
        id: 0,
        client_id: client.id,
        name: String::new(),
        kind: "sms".into(),
        sender: String::new(),
        keyword: String::new(),
        callback_url: String::new(),
        callback_format: "xml".into(),
        opt_in: "none".into(),
        require_names: false,
        help_message: String::new(),
        stop_message: String::new(),
        mms_fallback: "fail".into(),
        destroyed: false,
    };
    settings.apply(&mut campaign);
    let shortcode = master_shortcode(client, &campaign)?;
    let id = store
        .create_campaign_checked(&campaign, shortcode.as_deref())
        .await?
        .map_err(|conflict| conflict_error(conflict, &campaign, shortcode.as_deref()))?;
    Ok(id)
}

/// `campaign_id`, required (430/431).
pub(crate) fn campaign_id(params: &Params) -> Result<i64, ApiError> {
    params.require_id(
        "campaign_id",
        Code::MissingCampaignId,
        Code::InvalidCampaignId,
    )
}

/// A live campaign of the caller; destroyed, missing and other clients'
/// campaigns are all 432 alike (spec section 3).
pub(crate) async fn live(ctx: &Ctx, id: i64) -> Result<std::sync::Arc<Campaign>, ApiError> {
    ctx.app
        .campaign(ctx.client.id, id)
        .await?
        .ok_or_else(|| no_such_campaign(id))
}

fn no_such_campaign(id: i64) -> ApiError {
    ApiError::detail(Code::NoSuchCampaign, format!("no campaign {id}"))
}

/// Drops the cached campaign here and, through the change counter, on every
/// other server.
async fn forget(ctx: &Ctx, id: i64) -> Result<(), ApiError> {
    ctx.app.campaigns.remove(&id);
    ctx.app.store.bump_generation().await?;
    Ok(())
}

/// The short code that carries a campaign's master keyword (spec section
/// 5.4); `None` when the campaign has no keyword. A keyword with no short
/// code to live on is a bad `keyword` (400).
pub(crate) fn master_shortcode(
    client: &Client,
    campaign: &Campaign,
) -> Result<Option<String>, ApiError> {
    if campaign.keyword.is_empty() {
        return Ok(None);
    }
    default_shortcode(client, campaign)
        .map(|s| Some(s.to_string()))
        .ok_or_else(|| {
            ApiError::detail(
                Code::BadRequest,
                "\"keyword\" needs a short code: the campaign's \"from\" is not one and the client has none",
            )
        })
}

/// The campaign's sender when it is a short code, else the client's default
/// short code (spec section 5.4).
pub(crate) fn default_shortcode<'a>(client: &'a Client, campaign: &'a Campaign) -> Option<&'a str> {
    if is_short_code(&campaign.sender) {
        Some(campaign.sender.as_str())
    } else {
        client.default_short_code()
    }
}

/// 5–6 digits (spec section 4).
pub(crate) fn is_short_code(sender: &str) -> bool {
    (5..=6).contains(&sender.len()) && sender.bytes().all(|b| b.is_ascii_digit())
}

fn conflict_error(conflict: Conflict, campaign: &Campaign, shortcode: Option<&str>) -> ApiError {
    match conflict {
        Conflict::NameTaken => ApiError::detail(
            Code::InvalidName,
            format!("another campaign is named {:?}", campaign.name),
        ),
        Conflict::KeywordTaken => ApiError::detail(
            Code::BadRequest,
            format!(
                "keyword {:?} is taken on short code {}",
                campaign.keyword,
                shortcode.unwrap_or("")
            ),
        ),
    }
}

/// The XML of campaign.info. CDATA or plain per spec section 2: `name` and
/// `type` are CDATA by the table; `from` is CDATA as in transaction.lookup;
/// `keyword` is `<keyword>` text, CDATA; `callback_url` is CDATA like
/// `smart_url` (a URL's `&` must survive regular-expression readers);
/// `callback_format` and `opt_in` are words of the same kind as `type`,
/// CDATA; `help_message` and `stop_message` are free text like every
/// `<message>`, CDATA; `require_names` is a boolean like `available`, plain.
fn campaign_xml(c: &Campaign) -> XmlNode {
    XmlNode::new("campaign").attr("id", c.id).children([
        XmlNode::new("name").cdata(c.name.clone()),
        XmlNode::new("type").cdata(c.kind.clone()),
        XmlNode::new("from").cdata(c.sender.clone()),
        XmlNode::new("keyword").cdata(c.keyword.clone()),
        XmlNode::new("callback_url").cdata(c.callback_url.clone()),
        XmlNode::new("callback_format").cdata(c.callback_format.clone()),
        XmlNode::new("opt_in").cdata(c.opt_in.clone()),
        XmlNode::new("require_names").text(c.require_names),
        XmlNode::new("help_message").cdata(c.help_message.clone()),
        XmlNode::new("stop_message").cdata(c.stop_message.clone()),
        // Settings added after the documented ones follow them.
        XmlNode::new("mms_fallback").cdata(c.mms_fallback.clone()),
    ])
}

fn campaign_json(c: &Campaign) -> Value {
    json!({
        "id": js(c.id),
        "name": c.name,
        "type": c.kind,
        "from": c.sender,
        "keyword": c.keyword,
        "callback_url": c.callback_url,
        "callback_format": c.callback_format,
        "opt_in": c.opt_in,
        "require_names": js(c.require_names),
        "help_message": c.help_message,
        "stop_message": c.stop_message,
        "mms_fallback": c.mms_fallback,
    })
}

/// The settings a request gives, each already valid; `None` is "not given".
#[derive(Debug, Default)]
struct Settings {
    name: Option<String>,
    kind: Option<&'static str>,
    sender: Option<String>,
    keyword: Option<Keyword>,
    callback_url: Option<String>,
    callback_format: Option<&'static str>,
    opt_in: Option<&'static str>,
    require_names: Option<bool>,
    help_message: Option<String>,
    stop_message: Option<String>,
    mms_fallback: Option<&'static str>,
}

impl Settings {
    /// Parses the settings in campaign.create's parameter order.
    fn parse(
        client: &Client,
        region: rlibphonenumber::enums::Region,
        params: &Params,
    ) -> Result<Settings, ApiError> {
        Ok(Settings {
            name: params.get("name").map(name).transpose()?,
            kind: choice(params, "type", &["sms", "mms"])?,
            sender: params
                .get("from")
                .map(|from| sender(client, region, from))
                .transpose()?,
            keyword: params.get("keyword").map(keyword).transpose()?,
            callback_url: params.get("callback_url").map(callback_url).transpose()?,
            callback_format: choice(params, "callback_format", &["xml", "json"])?,
            opt_in: choice(params, "opt_in", &["none", "single", "double"])?,
            require_names: choice(params, "require_names", &["true", "false"])?
                .map(|v| v == "true"),
            help_message: reply_text(params, "help_message")?,
            stop_message: reply_text(params, "stop_message")?,
            mms_fallback: choice(params, "mms_fallback", &["fail", "sms"])?,
        })
    }

    /// Overwrites what was given, keeps the rest.
    fn apply(self, c: &mut Campaign) {
        fn set<T>(slot: &mut T, value: Option<impl Into<T>>) {
            if let Some(value) = value {
                *slot = value.into();
            }
        }
        set(&mut c.name, self.name);
        set(&mut c.kind, self.kind);
        set(&mut c.sender, self.sender);
        set(&mut c.keyword, self.keyword.map(|k| k.as_str().to_string()));
        set(&mut c.callback_url, self.callback_url);
        set(&mut c.callback_format, self.callback_format);
        set(&mut c.opt_in, self.opt_in);
        set(&mut c.require_names, self.require_names);
        set(&mut c.help_message, self.help_message);
        set(&mut c.stop_message, self.stop_message);
        set(&mut c.mms_fallback, self.mms_fallback);
    }
}

fn name(input: &str) -> Result<String, ApiError> {
    parse_name(input).map(str::to_string).ok_or_else(|| {
        ApiError::detail(
            Code::InvalidName,
            "a campaign name is 1–64 characters without control characters",
        )
    })
}

/// One of a few words, case-insensitive, stored lower-case; else 400.
fn choice(
    params: &Params,
    key: &str,
    allowed: &[&'static str],
) -> Result<Option<&'static str>, ApiError> {
    let Some(raw) = params.get(key) else {
        return Ok(None);
    };
    let value = raw.trim().to_ascii_lowercase();
    allowed
        .iter()
        .find(|a| **a == value)
        .map(|a| Some(*a))
        .ok_or_else(|| {
            ApiError::detail(
                Code::BadRequest,
                format!(
                    "\"{key}\" must be one of {}, not {raw:?}",
                    allowed.join(", ")
                ),
            )
        })
}

/// A short code or number this client may send from (434).
fn sender(
    client: &Client,
    region: rlibphonenumber::enums::Region,
    from: &str,
) -> Result<String, ApiError> {
    let sender = Sender::parse(from, region).ok_or_else(|| {
        ApiError::detail(
            Code::InvalidFrom,
            format!("{from:?} is neither a short code nor a phone number"),
        )
    })?;
    if !client.may_send_from(sender.digits()) {
        return Err(ApiError::detail(
            Code::InvalidFrom,
            format!("{} is not one of this client's senders", sender.digits()),
        ));
    }
    Ok(sender.digits().to_string())
}

fn keyword(input: &str) -> Result<Keyword, ApiError> {
    Keyword::parse(input).map_err(|e| ApiError::detail(Code::BadRequest, e.explain(input)))
}

/// An absolute http or https URL with a host (400).
fn callback_url(input: &str) -> Result<String, ApiError> {
    let input = input.trim();
    let bad = || {
        ApiError::detail(
            Code::BadRequest,
            format!("\"callback_url\" must be an http or https URL, not {input:?}"),
        )
    };
    if input.len() > MAX_URL_CHARS {
        return Err(bad());
    }
    let url = reqwest::Url::parse(input).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(input.to_string())
}

/// A help or stop message: sent back by SMS, so no longer than ten segments.
fn reply_text(params: &Params, key: &str) -> Result<Option<String>, ApiError> {
    let Some(text) = params.get(key) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_REPLY_CHARS {
        return Err(ApiError::detail(
            Code::BadRequest,
            format!("\"{key}\" is longer than {MAX_REPLY_CHARS} characters"),
        ));
    }
    Ok(Some(text.to_string()))
}
