//! `user.*` (spec section 5.3): a user is a phone number. Opt status per
//! campaign, carrier and handset as far as known, and the transactions a
//! client sent to the number.
//!
//! Parameters are checked in the order the spec lists them, then the
//! campaign named is looked up (spec section 3): another client's campaign
//! answers 432 like a missing one.

use chrono::{NaiveDate, TimeZone};
use serde_json::{Value, json};

use super::envelope::{Reply, XmlNode, js};
use super::error::{ApiError, Code, UserInfo};
use super::{Ctx, Outcome};
use crate::domain::carrier::{Carrier, CarrierTable, TestNumber};
use crate::domain::opt::OptStatus;
use crate::domain::phone::{LineType, PhoneNumber};
use crate::store::campaign::Campaign;
use crate::store::user::{OptSource, TransactionFilter, UserTransaction};

/// Shown for a carrier or handset that is not known (spec section 5.3).
const UNKNOWN: (i64, &str) = (0, "Unknown");

/// `user.getopt` (spec section 5.3): the status for one campaign, or for
/// every campaign of the client that has seen the number.
pub async fn getopt(ctx: &Ctx) -> Outcome {
    let number = number_param(ctx)?;
    let campaign_id = ctx.params.id("campaign_id", Code::InvalidCampaignId)?;
    let statuses = match campaign_id {
        Some(id) => {
            let campaign = live_campaign(ctx, id).await?;
            vec![(
                campaign.id,
                ctx.app.store.opt_status(number.digits(), id).await?,
            )]
        }
        None => {
            ctx.app
                .store
                .opt_statuses(ctx.client.id, number.digits())
                .await?
        }
    };
    let mut reply = Reply::success("opt status retrieved").cdata("number", number.digits());
    for (id, status) in &statuses {
        reply = reply.xml(campaign_status_node(*id, *status));
    }
    let campaigns: Vec<Value> = statuses
        .iter()
        .map(|(id, status)| {
            json!({"campaign_id": js(id), "status_code": js(status.code()), "status": status.label()})
        })
        .collect();
    Ok(reply.json("campaigns", Value::Array(campaigns)).into())
}

/// `user.setopt` (spec section 5.3): sets the status for one campaign,
/// with an audit row.
pub async fn setopt(ctx: &Ctx) -> Outcome {
    let number = number_param(ctx)?;
    let campaign_id = ctx.params.require_id(
        "campaign_id",
        Code::MissingCampaignId,
        Code::InvalidCampaignId,
    )?;
    let raw = ctx.params.require("status_code", Code::MissingParameter)?;
    let status = OptStatus::parse(raw).ok_or_else(|| {
        ApiError::detail(
            Code::BadRequest,
            format!("\"status_code\" must be one of 1, -2, 0, -1, not {raw:?}"),
        )
    })?;
    let campaign = live_campaign(ctx, campaign_id).await?;
    let source = OptSource::Api {
        client_id: ctx.client.id,
    };
    ctx.app
        .store
        .set_opt(number.digits(), campaign.id, status, source)
        .await?;
    // A confirmed double opt-in may have released held messages.
    if status == OptStatus::OptedIn {
        ctx.app.delivery_wake.notify_one();
    }
    let reply = Reply::success("opt status updated")
        .cdata("number", number.digits())
        .xml(campaign_status_node(campaign.id, status))
        .json(
            "campaign",
            json!({"id": js(campaign.id), "status_code": js(status.code()), "status": status.label()}),
        );
    Ok(reply.into())
}

/// `user.info` (spec section 5.3): the carrier as last resolved and the
/// handset, as far as known; nothing is resolved here.
pub async fn info(ctx: &Ctx) -> Outcome {
    let table = ctx.app.carrier_table();
    let number = number_param(ctx)?;
    check_can_receive(ctx, &number, &table)?;
    let user = ctx.app.store.user(number.digits()).await?;
    let carrier = user.carrier_id.and_then(|id| carrier_by_id(&table, id));
    Ok(user_info_reply(&number, carrier, user.handset).into())
}

/// `user.lookup` (spec section 5.3): resolves the carrier now, stores it,
/// and answers 603 (no carrier) or 605 (carrier not served).
pub async fn lookup(ctx: &Ctx) -> Outcome {
    let table = ctx.app.carrier_table();
    let number = number_param(ctx)?;
    check_can_receive(ctx, &number, &table)?;
    let carrier = table.resolve(&number);
    let store = &ctx.app.store;
    store
        .set_user_carrier(number.digits(), carrier.as_ref().map(|c| c.id))
        .await?;
    let Some(carrier) = carrier else {
        return Err(ApiError::new(Code::CarrierUnknown).with_user(UserInfo {
            number: number.digits().to_string(),
            ..UserInfo::default()
        }));
    };
    if !carrier.served {
        return Err(ApiError::new(Code::CarrierUnsupported).with_user(UserInfo {
            number: number.digits().to_string(),
            input: None,
            carrier: Some((carrier.id, carrier.name.clone())),
        }));
    }
    let user = store.user(number.digits()).await?;
    let reply = user_info_reply(
        &number,
        Some((carrier.id, carrier.name.clone())),
        user.handset,
    );
    Ok(reply.into())
}

/// `user.uncache` (spec section 5.3): forgets the stored carrier and handset.
pub async fn uncache(ctx: &Ctx) -> Outcome {
    let number = number_param(ctx)?;
    ctx.app.store.uncache_user(number.digits()).await?;
    Ok(Reply::success("user uncached")
        .cdata("number", number.digits())
        .into())
}

/// `user.transactions` (spec section 5.3): the client's transactions to the
/// number, newest first; XML has one `<campaign>` per transaction.
pub async fn transactions(ctx: &Ctx) -> Outcome {
    let number = number_param(ctx)?;
    let campaign_id = ctx.params.id("campaign_id", Code::InvalidCampaignId)?;
    let start = date_param(ctx, "start_date")?;
    let end = date_param(ctx, "end_date")?;
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        return Err(ApiError::detail(
            Code::BadRequest,
            format!("\"end_date\" {end} is before \"start_date\" {start}"),
        ));
    }
    let limit = ctx.params.limit()?;
    if let Some(id) = campaign_id {
        live_campaign(ctx, id).await?;
    }
    let tz = ctx.app.time_zone;
    let filter = TransactionFilter {
        campaign_id,
        from: start.map(|d| day_start(tz, d)),
        until: end.and_then(|d| d.succ_opt()).map(|d| day_start(tz, d)),
        limit,
    };
    let rows = ctx
        .app
        .store
        .user_transactions(ctx.client.id, number.digits(), &filter)
        .await?;
    let message = if rows.is_empty() {
        "no user transactions found"
    } else {
        "user transactions"
    };
    let mut reply = Reply::success(message);
    let mut list = Vec::with_capacity(rows.len());
    for row in &rows {
        let datestamp = datestamp(tz, row.created_at);
        reply = reply.xml(transaction_node(row, &datestamp));
        list.push(json!({
            "campaign_id": js(row.campaign_id),
            "campaign_name": row.campaign_name,
            "datestamp": datestamp,
            "hash": row.hash,
            "message_id": js(row.message_id),
            "from": row.sender,
            "to": row.recipient,
        }));
    }
    Ok(reply.json("transactions", Value::Array(list)).into())
}

/// The required `number`: 443 when absent, 602 with `<input>` when it is
/// not a phone number.
fn number_param(ctx: &Ctx) -> Result<PhoneNumber, ApiError> {
    let input = ctx.params.require("number", Code::MissingParameter)?;
    PhoneNumber::parse(input, ctx.app.region).map_err(|_| {
        ApiError::new(Code::UserTypeUnknown).with_user(UserInfo {
            number: String::new(),
            input: Some(input.to_string()),
            carrier: None,
        })
    })
}

/// 602 for a number of a type that cannot receive messages: toll-free,
/// fixed line (spec section 3), and the sandbox's fixed-line test number.
fn check_can_receive(
    ctx: &Ctx,
    number: &PhoneNumber,
    table: &CarrierTable,
) -> Result<(), ApiError> {
    let sandbox_fixed_line = TestNumber::of(number) == Some(TestNumber::FixedLine)
        && table.resolve(number).is_some_and(|c| c.is_sandbox());
    if number.line_type() != LineType::CannotReceive && !sandbox_fixed_line {
        return Ok(());
    }
    let input = ctx.params.get("number").unwrap_or_default();
    Err(ApiError::detail(
        Code::UserTypeUnknown,
        format!(
            "{} cannot receive messages (fixed line, toll-free or premium)",
            number.digits()
        ),
    )
    .with_user(UserInfo {
        number: number.digits().to_string(),
        input: Some(input.to_string()),
        carrier: None,
    }))
}

/// A live campaign of the caller, else 432.
async fn live_campaign(ctx: &Ctx, id: i64) -> Result<std::sync::Arc<Campaign>, ApiError> {
    ctx.app
        .campaign(ctx.client.id, id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NoSuchCampaign))
}

/// A stored carrier id's name. The sandbox's unserved carrier lives only in
/// its test-number rules, not in the table, but user.lookup stores it.
fn carrier_by_id(table: &CarrierTable, id: i64) -> Option<(i64, String)> {
    if let Some(carrier) = table.carrier(id) {
        return Some((carrier.id, carrier.name.clone()));
    }
    let unserved = Carrier::sandbox_unserved();
    (unserved.id == id).then_some((unserved.id, unserved.name))
}

/// The answer of user.info and user.lookup.
fn user_info_reply(
    number: &PhoneNumber,
    carrier: Option<(i64, String)>,
    handset: Option<(i64, String)>,
) -> Reply {
    let unknown = || (UNKNOWN.0, UNKNOWN.1.to_string());
    let (carrier_id, carrier_name) = carrier.unwrap_or_else(unknown);
    let (handset_id, handset_name) = handset.unwrap_or_else(unknown);
    Reply::success("user info")
        .cdata("number", number.digits())
        .xml(
            XmlNode::new("carrier")
                .attr("id", carrier_id)
                .cdata(carrier_name.clone()),
        )
        .xml(
            XmlNode::new("handset")
                .attr("id", handset_id)
                .cdata(handset_name.clone()),
        )
        .json("carrier_id", js(carrier_id))
        .json("carrier_name", js(carrier_name))
        .json("handset_id", js(handset_id))
        .json("handset_name", js(handset_name))
}

/// `<campaign id=".."><status code=".."><![CDATA[LABEL]]></status></campaign>`
fn campaign_status_node(campaign_id: i64, status: OptStatus) -> XmlNode {
    XmlNode::new("campaign").attr("id", campaign_id).child(
        XmlNode::new("status")
            .attr("code", status.code())
            .cdata(status.label()),
    )
}

/// One transaction of user.transactions, wrapped in its campaign.
fn transaction_node(row: &UserTransaction, datestamp: &str) -> XmlNode {
    let transaction = XmlNode::new("transaction")
        .attr("datestamp", datestamp)
        .attr("hash", &row.hash)
        .attr("message_id", row.message_id)
        .child(
            XmlNode::new("from")
                .attr("number", &row.sender)
                .cdata(row.from_name.as_str()),
        )
        .child(
            XmlNode::new("to")
                .attr("number", &row.recipient)
                .cdata(row.to_name.as_str()),
        );
    XmlNode::new("campaign")
        .attr("id", row.campaign_id)
        .attr("name", &row.campaign_name)
        .child(transaction)
}

/// An optional `YYYY-MM-DD` date (spec section 4); anything else is 400.
fn date_param(ctx: &Ctx, name: &str) -> Result<Option<NaiveDate>, ApiError> {
    let Some(raw) = ctx.params.get(name) else {
        return Ok(None);
    };
    parse_date(raw).map(Some).ok_or_else(|| {
        ApiError::detail(
            Code::BadRequest,
            format!("\"{name}\" must be a date as YYYY-MM-DD, not {raw:?}"),
        )
    })
}

fn parse_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    let shape_ok = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shape_ok
        .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
        .flatten()
}

/// Unix seconds of the first moment of a day in the configured time zone.
fn day_start(tz: chrono_tz::Tz, date: NaiveDate) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Where a DST change skips midnight, the day starts at the first hour that exists.
    (0..3)
        .find_map(|hour| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(hour)))
                .earliest()
        })
        .map(|at| at.timestamp())
        .unwrap_or_else(|| midnight.and_utc().timestamp())
}

/// `YYYY-MM-DD HH:MM:SS` in the configured time zone, without offset
/// (spec section 4).
fn datestamp(tz: chrono_tz::Tz, unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_must_be_iso_days() {
        assert_eq!(
            parse_date("2013-03-09"),
            NaiveDate::from_ymd_opt(2013, 3, 9)
        );
        for bad in [
            "2013-3-9",
            "2013-02-30",
            "09/03/2013",
            "2013-03-09T00:00",
            "x",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn datestamps_are_local_without_offset() {
        let la: chrono_tz::Tz = "America/Los_Angeles".parse().unwrap();
        // 2013-03-09 23:19:05 UTC
        assert_eq!(datestamp(la, 1_362_871_145), "2013-03-09 15:19:05");
        assert_eq!(
            datestamp(chrono_tz::UTC, 1_362_871_145),
            "2013-03-09 23:19:05"
        );
    }

    #[test]
    fn days_start_at_local_midnight() {
        let la: chrono_tz::Tz = "America/Los_Angeles".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2013, 3, 9).unwrap();
        assert_eq!(day_start(chrono_tz::UTC, day), 1_362_787_200);
        assert_eq!(day_start(la, day), 1_362_787_200 + 8 * 3600);
    }
}
