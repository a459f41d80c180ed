//! The smart URL `/oc/<token>`: stored media served to phones.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::app::App;

pub async fn smart_url(State(_app): State<Arc<App>>, Path(_token): Path<String>) -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
