//! Refusals as HTTP answers: a short stable code and a message that never
//! holds a NIR, a code, an index, a key or a share.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::Role;
use crate::seal::QuorumRefusal;

/// A refused request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The certificate lacks the role.
    #[error("this certificate does not have the {} role", .0.name())]
    Forbidden(Role),
    /// The service is sealed.
    #[error("the service is sealed: key holders must submit their shares")]
    Sealed,
    /// Unsupported body type.
    #[error("unsupported content type: send text/csv or application/x-ndjson")]
    UnsupportedType,
    /// A header or the CSV header line is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than configured.
    #[error("the request is larger than the configured limit of {0} bytes")]
    TooLarge(u64),
    /// A body sent without `Content-Length` went past what the service
    /// reads before answering.
    #[error("a batch larger than {0} bytes must declare its Content-Length")]
    LengthRequired(u64),
    /// The guard: the client's quota for this purpose is used up.
    #[error("over this client's quota ({}) for this purpose; retry after {} s", .0.limit, .0.retry_after)]
    QuotaExceeded(super::guard::Refusal),
    /// The guard: a batch of this client was judged a sweep of the NIR
    /// space, and the client is refused until an operator lifts it.
    #[error("this client is suspended: one of its batches was judged a sweep of the NIR space (an operator lifts it with `cstatns guard release`)")]
    Suspended(super::guard::Refusal),
    /// The client's certificate was revoked (or its CA replaced) since its
    /// connection opened.
    #[error("this certificate is no longer accepted (revoked since the connection opened)")]
    CertificateNoLongerValid,
    /// No such resource for this client.
    #[error("not found")]
    NotFound,
    /// The route does not take this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// A share was refused; the message names the holder.
    #[error("{0}")]
    ShareRefused(String),
    /// The share's holder is not the certificate's holder.
    #[error("{0}")]
    WrongHolderCertificate(String),
    /// Already unsealed, or share already received.
    #[error("{0}")]
    Conflict(String),
    /// The traceability log cannot be written: the service fails closed.
    #[error("the traceability log cannot be written; the service refuses work until it can")]
    AuditUnavailable,
    /// A trait batch came and the service has no register to look people
    /// up in (none configured, or it could not be read).
    #[error("{0}")]
    RegisterUnavailable(&'static str),
    /// A quorum operation's proposal, approval or cancellation was refused.
    #[error("{0}")]
    Quorum(crate::seal::QuorumRefusal),
    /// A research project batch or result was refused.
    #[error("{0}")]
    Project(crate::seal::ProjectRefusal),
    /// The certificate is not the one the project's terms name.
    #[error("{0}")]
    NotForThisProject(&'static str),
    /// A project result was fetched already, erased, or never made.
    #[error("no such result: fetched already (results are erased once fetched), erased when its window closed, or never made")]
    ResultGone,
    /// Something failed inside the service; details are in its own log.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Forbidden(_) | ApiError::WrongHolderCertificate(_) => StatusCode::FORBIDDEN,
            ApiError::Sealed | ApiError::AuditUnavailable | ApiError::RegisterUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::LengthRequired(_) => StatusCode::LENGTH_REQUIRED,
            ApiError::QuotaExceeded(_) | ApiError::Suspended(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::CertificateNoLongerValid => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ShareRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Quorum(r) => quorum_status(r),
            ApiError::Project(crate::seal::ProjectRefusal::Ended(_)) | ApiError::ResultGone => {
                StatusCode::GONE
            }
            ApiError::Project(_) => StatusCode::NOT_FOUND,
            ApiError::NotForThisProject(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The stable code sent to the client.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Sealed => "sealed",
            ApiError::UnsupportedType => "unsupported_media_type",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge(_) => "too_large",
            ApiError::LengthRequired(_) => "length_required",
            ApiError::QuotaExceeded(_) => "quota_exceeded",
            ApiError::Suspended(_) => "sweep_suspected",
            ApiError::CertificateNoLongerValid => "certificate_no_longer_valid",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::ShareRefused(_) => "share_refused",
            ApiError::WrongHolderCertificate(_) => "wrong_holder_certificate",
            ApiError::Conflict(_) => "conflict",
            ApiError::AuditUnavailable => "audit_unavailable",
            ApiError::RegisterUnavailable(_) => "register_unavailable",
            ApiError::Internal => "internal",
            ApiError::Quorum(QuorumRefusal::WrongCertificate { .. }) => "wrong_holder_certificate",
            ApiError::Quorum(QuorumRefusal::Verification { .. }) => "share_refused",
            ApiError::Quorum(QuorumRefusal::LogUnavailable) => "audit_unavailable",
            ApiError::Quorum(r) => r.reason(),
            ApiError::Project(crate::seal::ProjectRefusal::Ended(_)) => "project_ended",
            ApiError::Project(_) => "unknown_project",
            ApiError::NotForThisProject(_) => "not_for_this_project",
            ApiError::ResultGone => "result_gone",
        }
    }
}

fn quorum_status(r: &QuorumRefusal) -> StatusCode {
    match r {
        QuorumRefusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        QuorumRefusal::Malformed | QuorumRefusal::Invalid(_) => StatusCode::BAD_REQUEST,
        QuorumRefusal::UnknownOperation => StatusCode::NOT_FOUND,
        QuorumRefusal::WrongCertificate { .. } => StatusCode::FORBIDDEN,
        QuorumRefusal::Verification { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        QuorumRefusal::DigestMismatch { .. }
        | QuorumRefusal::Duplicate(_)
        | QuorumRefusal::TooManyPending => StatusCode::CONFLICT,
        QuorumRefusal::Sealing | QuorumRefusal::LogUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        super::metrics::refused(self.code());
        let body = crate::wire::ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        let mut r = (self.status(), axum::Json(body)).into_response();
        if let ApiError::QuotaExceeded(q) | ApiError::Suspended(q) = &self {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(q.retry_after.max(1)));
        }
        if matches!(
            self,
            ApiError::Sealed
                | ApiError::AuditUnavailable
                | ApiError::RegisterUnavailable(_)
                | ApiError::Quorum(QuorumRefusal::LogUnavailable | QuorumRefusal::Sealing)
        ) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        r
    }
}
