//! `promo.*` (spec section 5.8): promotion codes a send may carry
//! (`promo_code`, code 440). Where the operator reviews promotions
//! (`promo.require_approval`), new ones wait as `pending` until
//! `moms admin promo approve`.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::campaign::{campaign_id, live};
use super::envelope::{Reply, XmlNode};
use super::error::{ApiError, Code};
use super::params::Params;
use super::{Ctx, Outcome};
use crate::store::promo::Promo;

const MAX_CODE_LEN: usize = 32;

/// promo.create (spec section 5.8): `<promo code=".." status=".."/>`.
pub async fn create(ctx: &Ctx) -> Outcome {
    let id = campaign_id(&ctx.params)?;
    let code = code(&ctx.params)?;
    let starts = date(&ctx.params, "starts")?;
    let ends = date(&ctx.params, "ends")?;
    if let (Some(starts), Some(ends)) = (starts, ends)
        && ends < starts
    {
        return Err(ApiError::detail(
            Code::BadRequest,
            format!("\"ends\" ({ends}) is before \"starts\" ({starts})"),
        ));
    }
    let max_uses = max_uses(&ctx.params)?;
    live(ctx, id).await?;
    let status = if ctx.app.config.promo.require_approval {
        "pending"
    } else {
        "approved"
    };
    let promo = Promo {
        code: code.to_string(),
        status: status.into(),
        uses: 0,
        max_uses,
        starts: starts.map(|d| d.to_string()),
        ends: ends.map(|d| d.to_string()),
    };
    if !ctx.app.store.create_promo(id, &promo).await? {
        return Err(ApiError::detail(
            Code::BadRequest,
            format!("campaign {id} already has promotion {code:?}"),
        ));
    }
    Ok(Reply::success("promotion created")
        .xml(
            XmlNode::new("promo")
                .attr("code", &promo.code)
                .attr("status", status),
        )
        .json("promo", json!({"code": promo.code, "status": status}))
        .into())
}

/// promo.list (spec section 5.8): every promotion of a campaign, newest first.
pub async fn list(ctx: &Ctx) -> Outcome {
    let id = campaign_id(&ctx.params)?;
    let limit = ctx.params.limit()?;
    live(ctx, id).await?;
    let promos = ctx.app.store.promos(id, limit).await?;
    let xml = XmlNode::new("promos").children(promos.iter().map(|p| {
        let [code, status, uses, max_uses, starts, ends] = fields(p);
        XmlNode::new("promo")
            .attr("code", code)
            .attr("status", status)
            .attr("uses", uses)
            .attr("max_uses", max_uses)
            .attr("starts", starts)
            .attr("ends", ends)
    }));
    let json: Vec<Value> = promos
        .iter()
        .map(|p| {
            let [code, status, uses, max_uses, starts, ends] = fields(p);
            json!({"code": code, "status": status, "uses": uses, "max_uses": max_uses, "starts": starts, "ends": ends})
        })
        .collect();
    Ok(Reply::success("promotions retrieved")
        .xml(xml)
        .json("promos", Value::Array(json))
        .into())
}

/// promo.destroy (spec section 5.8): an unknown code is 440.
pub async fn destroy(ctx: &Ctx) -> Outcome {
    let id = campaign_id(&ctx.params)?;
    let code = ctx.params.require("code", Code::MissingParameter)?.trim();
    live(ctx, id).await?;
    if !ctx.app.store.destroy_promo(id, code).await? {
        return Err(ApiError::detail(
            Code::NoSuchPromo,
            format!("campaign {id} has no promotion {code:?}"),
        ));
    }
    Ok(Reply::success("promotion removed").into())
}

/// A promotion's listed values as strings, empty where unset.
fn fields(p: &Promo) -> [String; 6] {
    [
        p.code.clone(),
        p.status.clone(),
        p.uses.to_string(),
        p.max_uses.map(|n| n.to_string()).unwrap_or_default(),
        p.starts.clone().unwrap_or_default(),
        p.ends.clone().unwrap_or_default(),
    ]
}

/// `code`: required (443), 1–32 ASCII letters and digits (400).
fn code(params: &Params) -> Result<&str, ApiError> {
    let code = params.require("code", Code::MissingParameter)?.trim();
    if code.is_empty()
        || code.len() > MAX_CODE_LEN
        || !code.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ApiError::detail(
            Code::BadRequest,
            format!("\"code\" {code:?} must be 1–{MAX_CODE_LEN} letters and digits"),
        ));
    }
    Ok(code)
}

/// An optional `YYYY-MM-DD` date that exists on the calendar (400).
fn date(params: &Params, key: &str) -> Result<Option<NaiveDate>, ApiError> {
    let Some(raw) = params.get(key) else {
        return Ok(None);
    };
    parse_date(raw.trim()).map(Some).ok_or_else(|| {
        ApiError::detail(
            Code::BadRequest,
            format!("\"{key}\" must be a date YYYY-MM-DD, not {raw:?}"),
        )
    })
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)
}

/// An optional positive integer (400).
fn max_uses(params: &Params) -> Result<Option<i64>, ApiError> {
    let Some(raw) = params.get("max_uses") else {
        return Ok(None);
    };
    let value = raw.trim();
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0 && value.bytes().all(|b| b.is_ascii_digit()))
        .map(Some)
        .ok_or_else(|| {
            ApiError::detail(
                Code::BadRequest,
                format!("\"max_uses\" must be a positive integer, not {raw:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_calendar_days_in_iso_form() {
        assert_eq!(
            parse_date("2024-02-29"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "24-01-01",
            "2024/01/01",
            "+024-01-01",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
