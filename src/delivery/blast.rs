//! Blasts: a list.send's members become transactions in the background
//! (spec sections 5.5 and 6.3).
//!
//! Each step takes one page of members of every blast still queueing, in
//! number order from the blast's cursor, with their opt statuses in the
//! same read; checks each member as transaction.send would
//! (`api::transaction::address_given`: opted-out and otherwise refused
//! members are skipped and counted); and commits the page's transactions
//! together with the cursor's move past the page. A crash leaves a page
//! queued whole or not at all, so no member is sent twice and none is
//! missed, without a per-member key to look up.
//!
//! When every queued transaction has ended (the delivery worker counts
//! `sent` and `failed` on the blast), the blast is done and its callback of
//! spec section 6.3 is queued in the same commit: a POST for a URL, a mail
//! (sent by [`crate::mail`]) for an e-mail address.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::api::blast::is_email_address;
use crate::api::envelope::Reply;
use crate::api::error::Code;
use crate::api::transaction::{
    Composed, MmsRoutes, OptIn, address_given, expires_ms, new_transaction, opt_in_prompt,
};
use crate::app::App;
use crate::domain::phone::PhoneNumber;
use crate::mail::Mail;
use crate::store::blast::{Blast, BlastPage};
use crate::store::webhook::NewWebhook;

/// Members turned into transactions per commit: one read and one commit each.
const PAGE: i64 = 10_000;
/// Pages one step queues of a blast before the next blast gets its turn.
const PAGES_PER_STEP: usize = 20;

/// What list.send composed, kept as JSON in `blasts.request`; the
/// campaign is looked up again when members are queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlastRequest {
    pub sender: String,
    pub from_name: Option<String>,
    pub to_name: Option<String>,
    pub kind: String,
    pub body: String,
    pub subject: String,
    pub content_id: Option<i64>,
    pub promo: Option<(i64, String)>,
    pub udp: String,
}

impl BlastRequest {
    pub fn of(composed: &Composed) -> BlastRequest {
        BlastRequest {
            sender: composed.sender.clone(),
            from_name: composed.from_name.clone(),
            to_name: composed.to_name.clone(),
            kind: composed.kind.to_string(),
            body: composed.body.clone(),
            subject: composed.subject.clone(),
            content_id: composed.content_id,
            promo: composed.promo.clone(),
            udp: composed.udp.clone(),
        }
    }
}

/// Runs until `stop` changes: a step, then, when it found nothing to do, a
/// wait for a new blast, a blast transaction's end, or the poll interval.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let poll = Duration::from_millis(app.config.delivery.poll_millis.max(1) * 5);
    // Nodes sharing PostgreSQL queue blasts one at a time: two nodes
    // queueing the same page would both find its members' idempotency keys
    // unused and send them twice.
    let lease = crate::cluster::Lease::new(app.clone(), "blasts".into());
    let shared = app.store.db.is_postgres();
    loop {
        if shared && !lease.try_take().await {
            tokio::select! {
                _ = tokio::time::sleep(poll) => continue,
                _ = stop.changed() => return,
            }
        }
        let handled = match run_once(&app).await {
            Ok(handled) => handled,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "blast step failed");
                0
            }
        };
        if *stop.borrow() {
            return;
        }
        if handled > 0 {
            continue;
        }
        tokio::select! {
            _ = app.blast_wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One step: some pages of every blast still queueing, and the end of
/// every blast whose transactions have all ended. Returns how many blasts
/// moved on (pages queued, queueing finished, or the blast done).
pub async fn run_once(app: &App) -> anyhow::Result<usize> {
    let mut moved = 0;
    for blast in app.store.active_blasts().await? {
        let progressed = if blast.state == "queueing" {
            queue_pages(app, &blast)
                .await
                .with_context(|| format!("blast {}", blast.id))?
        } else {
            finish(app, &blast).await?
        };
        moved += usize::from(progressed);
    }
    Ok(moved)
}

/// Queues up to [`PAGES_PER_STEP`] pages of members, reading and checking
/// each page while the one before it commits (the check runs here, the
/// commit on the store's writer: two cores at once). False when another
/// worker moved the cursor first.
async fn queue_pages(app: &App, blast: &Blast) -> anyhow::Result<bool> {
    let composed = composed_of(app, blast).await?;
    let mut next = prepare_page(app, blast, composed.as_ref(), &blast.cursor).await?;
    let mut moved = false;
    for _ in 0..PAGES_PER_STEP {
        let Some(page) = next else {
            app.store.blast_all_queued(blast.id).await?;
            return Ok(true);
        };
        let cursor = page.to.clone();
        let (committed, following) = tokio::join!(
            app.store.queue_blast_page(page),
            prepare_page(app, blast, composed.as_ref(), &cursor)
        );
        if committed?.is_none() {
            return Ok(moved);
        }
        moved = true;
        app.delivery_wake.notify_one();
        next = following?;
    }
    Ok(moved)
}

/// The page of members after `cursor`, checked as transaction.send checks
/// a recipient; `None` when no member is left. Without a campaign (it was
/// destroyed) every member is skipped.
async fn prepare_page(
    app: &App,
    blast: &Blast,
    composed: Option<&Composed>,
    cursor: &str,
) -> anyhow::Result<Option<BlastPage>> {
    let members = app
        .store
        .blast_members(blast.list_id, blast.campaign_id, cursor, PAGE)
        .await?;
    let Some((last, _)) = members.last() else {
        return Ok(None);
    };
    let mut page = BlastPage {
        blast_id: blast.id,
        from: cursor.to_string(),
        to: last.clone(),
        ..BlastPage::default()
    };
    let Some(composed) = composed else {
        page.skipped = members.len() as i64;
        return Ok(Some(page));
    };
    let expires_ms = expires_ms(app);
    let mut routes = MmsRoutes::new();
    page.sends.reserve(members.len());
    for (member, opt) in &members {
        let number = PhoneNumber::from_e164_digits(member);
        match address_given(app, composed, &number, member, *opt, &mut routes).await {
            Ok(ok) => {
                let mut transaction = new_transaction(composed, &number, member, &ok, expires_ms);
                transaction.blast_id = Some(blast.id);
                if ok.opt_in == (OptIn::Hold { prompt: true }) {
                    page.prompts
                        .push(opt_in_prompt(&transaction, &composed.campaign.name, None));
                }
                page.sends.push(transaction);
            }
            Err(error) if error.code == Code::Internal => {
                anyhow::bail!("checking {member} failed");
            }
            Err(_) => page.skipped += 1,
        }
    }
    Ok(Some(page))
}

/// The send rebuilt for members; `None` when the campaign is gone (every
/// member left is then skipped).
async fn composed_of(app: &App, blast: &Blast) -> anyhow::Result<Option<Composed>> {
    let Some(campaign) = app.campaign(blast.client_id, blast.campaign_id).await? else {
        return Ok(None);
    };
    let request: BlastRequest =
        serde_json::from_str(&blast.request).context("reading the blast's request")?;
    Ok(Some(Composed {
        campaign,
        sender: request.sender,
        from_name: request.from_name,
        to_name: request.to_name,
        kind: if request.kind == "mms" { "mms" } else { "sms" },
        body: request.body,
        subject: request.subject,
        content_id: request.content_id,
        promo: request.promo,
        // The blast's callback reports the whole blast, not each message.
        callback: String::new(),
        udp: request.udp,
    }))
}

/// Ends a blast whose transactions have all ended, queueing its callback:
/// a POST to a URL, or a summary mail to an e-mail address.
async fn finish(app: &App, blast: &Blast) -> anyhow::Result<bool> {
    if blast.sent + blast.failed < blast.queued {
        return Ok(false);
    }
    let mail = is_email_address(&blast.callback);
    let callback = if blast.callback.is_empty() {
        None
    } else if mail {
        Some(summary_mail(blast).queued(blast.client_id))
    } else {
        Some(NewWebhook {
            client_id: blast.client_id,
            url: blast.callback.clone(),
            content_type: "application/xml",
            body: summary(blast).to_xml(),
        })
    };
    let done = app.store.finish_blast(blast.id, callback.as_ref()).await?;
    if done && callback.is_some() {
        if mail {
            app.mail_wake.notify_one();
        } else {
            app.webhook_wake.notify_one();
        }
    }
    Ok(done)
}

/// The blast-end callback of spec section 6.3: plain-text figures, always XML.
fn summary(blast: &Blast) -> Reply {
    Reply::success("list send complete")
        .text("list_id", blast.list_id)
        .text("total", blast.total)
        .text("sent", blast.sent)
        .text("skipped", blast.skipped)
        .text("failed", blast.failed)
}

/// The blast-end mail of spec section 6.3: the callback's figures as text.
fn summary_mail(blast: &Blast) -> Mail {
    Mail {
        to: blast.callback.clone(),
        subject: format!("list send complete: list {}", blast.list_id),
        text: format!(
            "list send complete\n\nlist_id: {}\ntotal: {}\nsent: {}\nskipped: {}\nfailed: {}",
            blast.list_id, blast.total, blast.sent, blast.skipped, blast.failed
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blast() -> Blast {
        Blast {
            id: 1,
            client_id: 2,
            list_id: 8228,
            campaign_id: 3,
            request: String::new(),
            callback: String::new(),
            total: 5,
            queued: 4,
            skipped: 1,
            sent: 3,
            failed: 1,
            cursor: String::new(),
            state: "sending".into(),
        }
    }

    #[test]
    fn summary_is_the_spec_callback() {
        assert_eq!(
            summary(&blast()).to_xml(),
            r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[list send complete]]></message><list_id>8228</list_id><total>5</total><sent>3</sent><skipped>1</skipped><failed>1</failed></response>"#
        );
    }

    #[test]
    fn summary_mail_has_the_same_figures_as_text() {
        let blast = Blast {
            callback: "ops@example.com".into(),
            ..blast()
        };
        assert_eq!(
            summary_mail(&blast),
            Mail {
                to: "ops@example.com".into(),
                subject: "list send complete: list 8228".into(),
                text:
                    "list send complete\n\nlist_id: 8228\ntotal: 5\nsent: 3\nskipped: 1\nfailed: 1"
                        .into(),
            }
        );
    }
}
