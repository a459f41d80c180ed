//! Callbacks to clients' applications (spec section 6).

use std::sync::Arc;

use tokio::sync::watch;

use crate::app::App;

pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let _ = (&app, stop.changed().await);
}
