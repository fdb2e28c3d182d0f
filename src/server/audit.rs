//! `GET /v1/audit?from=SEQ` (auditor role): the log as NDJSON, from a
//! sequence number on, across rotated files. Reading it is itself logged.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{ApiError, AppState};
use crate::config::Role;
use crate::event::Event;
use crate::tls::PeerIdentity;

pub(super) async fn stream(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The role first: nothing about the request is answered to a stranger.
    state.require(&id, Role::Auditor)?;
    let from = match query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("from="))
    {
        None => 0,
        Some(n) => n
            .parse::<u64>()
            .map_err(|_| ApiError::BadRequest("`from` must be a sequence number".into()))?,
    };
    state
        .log(Event::AuditRead { from_seq: from }, Some(&id))
        .ok_or(ApiError::AuditUnavailable)?;
    let files = state.audit.open_files().map_err(|_| ApiError::Internal)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(64 * 1024);
        let copied = crate::audit::copy_records(files, from, |line| {
            buf.extend_from_slice(line);
            buf.len() < 60 * 1024
                || tx
                    .blocking_send(Ok(Bytes::from(std::mem::take(&mut buf))))
                    .is_ok()
        });
        match copied {
            Ok(()) if !buf.is_empty() => drop(tx.blocking_send(Ok(Bytes::from(buf)))),
            Ok(()) => {}
            Err(e) => drop(tx.blocking_send(Err(e))),
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(r)
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
