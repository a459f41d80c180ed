//! `keyword.*` (spec section 5.4): the words that route inbound messages on
//! a short code to a campaign. A campaign's master keyword is managed with
//! the campaign (campaign.create/update); these methods add and remove the
//! extra ones. `shortcode` must be a short code the client may send from; it
//! defaults to the campaign's sender when that is a short code, else to the
//! client's default short code.

use serde_json::{Value, json};

use super::campaign::{campaign_id, default_shortcode, is_short_code, live};
use super::envelope::{Reply, XmlNode, js};
use super::error::{ApiError, Code};
use super::{Ctx, Outcome};
use crate::domain::keyword::{Keyword, KeywordError};
use crate::store::keyword::Removal;

/// keyword.list (spec section 5.4): the keywords of one campaign, or of all
/// the client's live campaigns.
pub async fn list(ctx: &Ctx) -> Outcome {
    let campaign = ctx.params.id("campaign_id", Code::InvalidCampaignId)?;
    let limit = ctx.params.limit()?;
    if let Some(id) = campaign {
        live(ctx, id).await?;
    }
    let rows = ctx
        .app
        .store
        .keywords(ctx.client.id, campaign, limit)
        .await?;
    let xml = XmlNode::new("keywords").children(rows.iter().map(|k| {
        XmlNode::new("keyword")
            .attr("master", k.master)
            .cdata(k.keyword.clone())
    }));
    let json: Vec<Value> = rows
        .iter()
        .map(|k| json!({"name": k.keyword, "master": js(k.master)}))
        .collect();
    Ok(Reply::success("keywords retrieved")
        .xml(xml)
        .json("keywords", Value::Array(json))
        .into())
}

/// keyword.check (spec section 5.4): whether a keyword could be added on a
/// short code. Reserved words are never available; a malformed one is 400.
pub async fn check(ctx: &Ctx) -> Outcome {
    let input = ctx.params.require("keyword", Code::MissingParameter)?;
    let keyword = Keyword::parse_any(input).map_err(|e| bad_keyword(e, input))?;
    let shortcode = match shortcode_param(ctx)? {
        Some(shortcode) => shortcode,
        None => ctx
            .client
            .default_short_code()
            .map(str::to_string)
            .ok_or_else(no_shortcode)?,
    };
    let available = !keyword.is_reserved()
        && ctx
            .app
            .store
            .keyword_holder(&shortcode, keyword.as_str())
            .await?
            .is_none();
    let message = if available {
        "Keyword available"
    } else {
        "Keyword not available"
    };
    Ok(Reply::success(message).text("available", available).into())
}

/// keyword.add (spec section 5.4): an extra keyword for a campaign; a taken
/// or reserved keyword is 400.
pub async fn add(ctx: &Ctx) -> Outcome {
    let id = campaign_id(&ctx.params)?;
    let input = ctx.params.require("keyword", Code::MissingParameter)?;
    let keyword = Keyword::parse(input).map_err(|e| bad_keyword(e, input))?;
    let given = shortcode_param(ctx)?;
    let campaign = live(ctx, id).await?;
    let shortcode = resolve_shortcode(ctx, given, &campaign)?;
    if !ctx
        .app
        .store
        .add_keyword(id, &shortcode, keyword.as_str())
        .await?
    {
        return Err(ApiError::detail(
            Code::BadRequest,
            format!("keyword {keyword} is taken on short code {shortcode}"),
        ));
    }
    Ok(Reply::success("keyword added").into())
}

/// keyword.remove (spec section 5.4): an extra keyword of the campaign. The
/// master keyword goes only with campaign.update; another campaign's keyword
/// and one that does not exist are 400.
pub async fn remove(ctx: &Ctx) -> Outcome {
    let id = campaign_id(&ctx.params)?;
    let input = ctx.params.require("keyword", Code::MissingParameter)?;
    let keyword = Keyword::parse_any(input).map_err(|e| bad_keyword(e, input))?;
    let given = shortcode_param(ctx)?;
    let campaign = live(ctx, id).await?;
    let shortcode = resolve_shortcode(ctx, given, &campaign)?;
    let detail = match ctx
        .app
        .store
        .remove_keyword(id, &shortcode, keyword.as_str())
        .await?
    {
        Removal::Removed => return Ok(Reply::success("keyword removed").into()),
        Removal::IsMaster => {
            format!("{keyword} is the campaign's master keyword: change it with campaign.update")
        }
        Removal::NotFound => {
            format!("campaign {id} has no keyword {keyword} on short code {shortcode}")
        }
    };
    Err(ApiError::detail(Code::BadRequest, detail))
}

/// `shortcode` when given: a 5–6 digit short code of this client (400).
fn shortcode_param(ctx: &Ctx) -> Result<Option<String>, ApiError> {
    let Some(raw) = ctx.params.get("shortcode") else {
        return Ok(None);
    };
    let shortcode = raw.trim();
    if !is_short_code(shortcode) || !ctx.client.may_send_from(shortcode) {
        return Err(ApiError::detail(
            Code::BadRequest,
            format!("\"shortcode\" {raw:?} is not a short code of this client"),
        ));
    }
    Ok(Some(shortcode.to_string()))
}

/// The given short code, else the campaign's default (spec section 5.4).
fn resolve_shortcode(
    ctx: &Ctx,
    given: Option<String>,
    campaign: &crate::store::campaign::Campaign,
) -> Result<String, ApiError> {
    match given {
        Some(shortcode) => Ok(shortcode),
        None => default_shortcode(&ctx.client, campaign)
            .map(str::to_string)
            .ok_or_else(no_shortcode),
    }
}

fn no_shortcode() -> ApiError {
    ApiError::detail(
        Code::BadRequest,
        "no short code: give \"shortcode\" (this client has no 5–6 digit sender)",
    )
}

fn bad_keyword(error: KeywordError, input: &str) -> ApiError {
    ApiError::detail(Code::BadRequest, error.explain(input))
}
