//! E-mail callbacks (spec sections 5.5, 6.3 and 8): a blast whose `callback`
//! is an e-mail address ends with a plain-text summary, mailed through the
//! SMTP relay of the configuration (`smtp.*`).
//!
//! A mail waits in the `webhooks` table like any callback, as a row whose URL
//! is `mailto:<address>?subject=<subject>` (RFC 6068) and whose body is the
//! text. It is queued in the commit that ends the blast, so it survives a
//! restart, and it is retried with the callbacks' back-off
//! (`callbacks.max_attempts`, `callbacks.first_retry_secs`). This loop sends
//! only those rows; the callback sender never claims them. Without
//! `smtp.relay` the mails stay queued, and a warning names the key to set.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use tokio::sync::watch;

use crate::app::App;
use crate::config::{Smtp, SmtpTls};
use crate::store::now_ms;
use crate::store::webhook::{DueWebhook, NewWebhook};
use crate::webhooks::retry_delay_ms;

/// Mails sent at once; each is bounded by `smtp.timeout_secs`.
const BATCH: i64 = 8;

/// Escaped in a `mailto:` URL: everything but what addresses commonly hold.
const MAILTO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'@')
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'+');

/// A plain-text mail to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl Mail {
    /// The queue row of this mail, for `enqueue_webhook`; [`run`] sends it.
    pub fn queued(&self, client_id: i64) -> NewWebhook {
        NewWebhook {
            client_id,
            url: format!(
                "mailto:{}?subject={}",
                utf8_percent_encode(&self.to, MAILTO),
                utf8_percent_encode(&self.subject, MAILTO)
            ),
            content_type: "text/plain; charset=utf-8",
            body: self.text.clone(),
        }
    }

    /// The mail a queue row holds; `None` when the row is no mail.
    pub fn of_row(url: &str, body: &str) -> Option<Mail> {
        let rest = url.strip_prefix("mailto:")?;
        let (to, query) = rest.split_once('?').unwrap_or((rest, ""));
        let subject = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("subject="))
            .unwrap_or("");
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        Some(Mail {
            to: decode(to)?,
            subject: decode(subject)?,
            text: body.to_string(),
        })
    }
}

/// Runs until `stop` changes.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let poll = Duration::from_millis(app.config.delivery.poll_millis.max(50) * 5);
    // Mails last counted while no relay is set: warn again only for new ones.
    let mut warned = 0;
    loop {
        let step = if app.config.smtp.relay.trim().is_empty() {
            warn_kept_queued(&app, &mut warned).await.map(|()| 0)
        } else {
            run_once(&app).await
        };
        match step {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "mail step failed"),
        }
        tokio::select! {
            _ = app.mail_wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Without a relay nothing is sent; the operator is told what to set.
async fn warn_kept_queued(app: &App, warned: &mut i64) -> anyhow::Result<()> {
    let queued = app
        .store
        .queued_mails(app.config.callbacks.max_attempts)
        .await?;
    if queued > *warned {
        tracing::warn!(
            queued,
            "e-mail callbacks are kept queued: no SMTP relay is configured; \
             set smtp.relay (e.g. MOMS_SMTP__RELAY=smtp.example.com:587) to send them"
        );
    }
    *warned = queued;
    Ok(())
}

/// Why a mail was not sent.
#[derive(Debug)]
enum Failure {
    /// Worth another try later (the relay refused or could not be reached).
    Retry(String),
    /// No try can succeed (the row holds no deliverable address).
    GiveUp(String),
}

/// Sends every mail due now through the relay; returns how many were tried.
pub async fn run_once(app: &App) -> anyhow::Result<usize> {
    let smtp = &app.config.smtp;
    let Some((host, port)) = smtp.relay_address()? else {
        return Ok(0);
    };
    let from = smtp.from_mailbox()?;
    let timeout = Duration::from_secs(smtp.timeout_secs.max(1));
    let transport = transport(smtp, &host, port, timeout, &from)?;
    // A claimed row is pushed past the time its sending can take, so a crash
    // mid-conversation retries it rather than losing it.
    let lease_ms = now_ms() + 2 * timeout.as_millis() as i64 + 1000;
    let due = app
        .store
        .claim_mails(app.config.callbacks.max_attempts, lease_ms, BATCH)
        .await?;
    let count = due.len();
    let results =
        futures_util::future::join_all(due.iter().map(|row| send(&transport, &from, row, timeout)))
            .await;
    for (row, result) in due.iter().zip(results) {
        record(app, row, result).await?;
    }
    Ok(count)
}

/// The relay connection of the configuration (one per mail: mails are rare).
fn transport(
    smtp: &Smtp,
    host: &str,
    port: u16,
    timeout: Duration,
    from: &Mailbox,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let builder = match smtp.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
    }
    .port(port)
    .timeout(Some(timeout));
    if smtp.username.is_empty() && smtp.password.is_empty() {
        return Ok(builder.build());
    }
    let username = if smtp.username.is_empty() {
        from.email.to_string()
    } else {
        smtp.username.clone()
    };
    Ok(builder
        .credentials(Credentials::new(username, smtp.password.clone()))
        .authentication(vec![Mechanism::Plain, Mechanism::Login])
        .build())
}

/// One SMTP conversation, bounded as a whole by `timeout`.
async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    row: &DueWebhook,
    timeout: Duration,
) -> Result<(), Failure> {
    let message = message(from, row)?;
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(Failure::Retry(format!("relay: {error}"))),
        Err(_) => Err(Failure::Retry(format!(
            "relay did not finish within {} s",
            timeout.as_secs()
        ))),
    }
}

/// The message of a queue row: headers of the moment, stored subject and text.
fn message(from: &Mailbox, row: &DueWebhook) -> Result<Message, Failure> {
    let mail = Mail::of_row(&row.url, &row.body)
        .ok_or_else(|| Failure::GiveUp(format!("{:?} is not a mailto: URL", row.url)))?;
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|error| Failure::GiveUp(format!("address {:?}: {error}", mail.to)))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject)
        .message_id(None)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.text)
        .map_err(|error| Failure::GiveUp(format!("building the message: {error}")))
}

/// Deletes a sent mail, or schedules the next try (none after the last).
async fn record(app: &App, row: &DueWebhook, result: Result<(), Failure>) -> anyhow::Result<()> {
    let max_attempts = app.config.callbacks.max_attempts;
    let (attempts, error) = match result {
        Ok(()) => {
            tracing::info!(id = row.id, to = %row.url, "e-mail callback sent");
            app.store.webhook_delivered(row.id).await?;
            return Ok(());
        }
        Err(Failure::Retry(error)) => (row.attempts + 1, error),
        Err(Failure::GiveUp(error)) => (max_attempts.max(row.attempts + 1), error),
    };
    if attempts >= max_attempts {
        tracing::warn!(id = row.id, to = %row.url, %error, attempts, "e-mail callback given up");
    }
    let due_ms = now_ms() + retry_delay_ms(app.config.callbacks.first_retry_secs, attempts);
    app.store
        .webhook_failed(row.id, attempts, due_ms, &error)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(to: &str, subject: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: subject.into(),
            text: "list_id: 12\n".into(),
        }
    }

    #[test]
    fn a_queued_mail_is_a_mailto_row() {
        let queued = mail("ops@example.com", "list send complete: list 12").queued(7);
        assert_eq!(queued.client_id, 7);
        assert_eq!(
            queued.url,
            "mailto:ops@example.com?subject=list%20send%20complete%3A%20list%2012"
        );
        assert_eq!(queued.content_type, "text/plain; charset=utf-8");
        assert_eq!(queued.body, "list_id: 12\n");
    }

    #[test]
    fn rows_read_back_as_the_mail_queued() {
        for (to, subject) in [
            ("ops@example.com", "list send complete: list 12"),
            ("a?b&c%d#e@example.com", "subject=x&y ü"),
            ("first.last+tag@example.co.uk", ""),
        ] {
            let queued = mail(to, subject).queued(1);
            assert_eq!(
                Mail::of_row(&queued.url, &queued.body),
                Some(mail(to, subject)),
                "{}",
                queued.url
            );
        }
        assert_eq!(Mail::of_row("https://example.com/hook", ""), None);
    }
}
