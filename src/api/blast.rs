//! `list.send`: a blast (spec section 5.5). The call checks what every
//! member would get, stores the blast and answers `queued` at once; the
//! blast worker (`delivery::blast`) turns the members into transactions.

use super::envelope::Reply;
use super::error::{ApiError, Code};
use super::list::owned_list;
use super::transaction::compose_with;
use super::{Ctx, Outcome};
use crate::delivery::blast::BlastRequest;
use crate::store::blast::NewBlast;

/// list.send (5.5): checks in spec section 3's order — 430/431, 443/444
/// (`list_id`), then the checks every transaction.send makes but the
/// recipient's — then queues the blast.
pub async fn send(ctx: &Ctx) -> Outcome {
    super::limits::check_send(ctx).await?;
    let campaign_id = ctx.params.require_id(
        "campaign_id",
        Code::MissingCampaignId,
        Code::InvalidCampaignId,
    )?;
    let list = owned_list(ctx).await?;
    let composed = compose_with(ctx, campaign_id, true).await?;
    let request = serde_json::to_string(&BlastRequest::of(&composed))
        .map_err(|e| ApiError::internal(format_args!("encoding a blast: {e}")))?;
    let blast = NewBlast {
        client_id: ctx.client.id,
        list_id: list.id,
        campaign_id: composed.campaign.id,
        request,
        callback: composed.callback.clone(),
    };
    ctx.app.store.create_blast(&blast).await?;
    ctx.app.blast_wake.notify_one();
    Ok(Reply::success("queued").into())
}

/// An e-mail address as a `callback` of list.send: `local@domain.tld`,
/// no spaces, at most 254 characters.
pub fn is_email_address(raw: &str) -> bool {
    let Some((local, domain)) = raw.split_once('@') else {
        return false;
    };
    raw.len() <= 254
        && !local.is_empty()
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !raw.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_addresses_are_told_from_urls() {
        assert!(is_email_address("ops@example.com"));
        assert!(is_email_address("first.last+blasts@mail.example.org"));
        assert!(!is_email_address("https://example.com/hook"));
        assert!(!is_email_address("http://user@example.com/hook"));
        assert!(!is_email_address("ops@localhost"));
        assert!(!is_email_address("@example.com"));
        assert!(!is_email_address("a b@example.com"));
        assert!(!is_email_address("a@b@example.com"));
    }
}
