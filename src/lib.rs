//! moms: a self-hostable SMS/MMS messaging server that speaks the MoMS/CM API.
//!
//! - [`api`]: HTTP requests in, envelopes out (spec sections 1–5); every method in `api::method`.
//! - [`domain`]: phone numbers, message bodies, keywords, carriers: rules without I/O.
//! - [`store`]: the only module that speaks SQL.
//! - [`delivery`]: the worker that hands queued messages to carriers and records outcomes.
//! - [`smpp`]: the SMPP connector: binds to SMSCs, submits, receipts, messages from phones.
//! - [`mm7`]: the MM7 connector: MMS to an MMSC, its delivery reports and messages from phones.
//! - [`inbound`]: messages from phones: opt-outs, keywords, routing to campaigns.
//! - [`webhooks`]: callbacks to clients' applications, retried and signed.
//! - [`mail`]: e-mail callbacks (a blast's summary) through the configured SMTP relay.
//! - [`media`]: uploads checked by their bytes, smart URLs served to phones.
//! - [`admin`]: the operator's commands (`moms admin …`), straight on the store.
//! - [`tls`]: HTTPS served directly, from the PEM files of `tls.cert` and `tls.key`.
//! - [`connection_idle`]: closes HTTP connections left idle; [`fuzzing`]: the
//!   checks the fuzz targets and the stable corpus replay share.
//! - [`app`]: the shared state and `serve`; [`config`]: layered configuration;
//!   [`cli`]: the command line; [`metrics`]: Prometheus output.

pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connection_idle;
pub mod delivery;
pub mod domain;
pub mod fuzzing;
pub mod inbound;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod mm7;
pub mod smpp;
pub mod store;
pub mod tls;
pub mod webhooks;
