//! Every error an HTTP caller can see: a status, a stable machine-readable code, and a
//! sentence a person understands. Internal failures are logged in full and shown only as
//! "internal error".

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use confab_keys::{CapabilityError, DecodeError, NameError};
use serde::Serialize;

use crate::clock::format_utc;
use crate::store::{SignupError, StoreError, TokenError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn too_many_attempts(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("Too many failed attempts. Try again in {} minute(s).", retry_after.div_ceil(60)),
            )
        }
    }

    /// A POST whose body is not declared as JSON (see `require_json_posts`).
    pub fn not_json() -> ApiError {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json", "The request body must be JSON, sent with Content-Type: application/json.")
    }

    pub fn internal() -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error: the node's log has the details.")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            response.insert_header(("Retry-After", secs.to_string()));
        }
        response.json(Body { error: self.code, message: &self.message })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if let StoreError::AccountDisabled = e {
            return ApiError::forbidden("account_disabled", "This account is disabled. Ask an admin of this Confab node.");
        }
        tracing::error!(error = %e, "database failure");
        ApiError::internal()
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> ApiError {
        tracing::error!(error = %e, "blocking task failed");
        ApiError::internal()
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        let message = format!("{}.", capitalize(&e.to_string()));
        match e {
            TokenError::Unknown => ApiError::bad_request("token_invalid", message),
            TokenError::AlreadyUsed { .. } => ApiError::conflict("token_used", message),
            TokenError::Expired { at } => {
                ApiError::new(StatusCode::GONE, "token_expired", format!("This sign-up token expired at {}: ask a ticketmaster for a new one.", format_utc(at)))
            }
            TokenError::Revoked { .. } => ApiError::new(StatusCode::GONE, "token_revoked", message),
        }
    }
}

impl From<SignupError> for ApiError {
    fn from(e: SignupError) -> ApiError {
        match e {
            SignupError::Token(t) => t.into(),
            SignupError::UsernameTaken(name) => {
                ApiError::conflict("username_taken", format!("The username {name:?} is taken (names are compared without regard to case). Choose another."))
            }
            SignupError::Store(s) => s.into(),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> ApiError {
        ApiError::bad_request(
            "capability_malformed",
            format!("This invite is not valid: {e}. Check that the whole link was copied, including the part after '#'."),
        )
    }
}

impl From<CapabilityError> for ApiError {
    fn from(e: CapabilityError) -> ApiError {
        use CapabilityError::*;
        let ask = "Ask the person who invited you for a new link.";
        let (code, message) = match &e {
            Malformed(d) => return d.clone().into(),
            WrongNode => ("capability_wrong_node", format!("This invite was made for another Confab server. {ask}")),
            BadCertificateSignature | BadInviteSignature => {
                ("capability_bad_signature", format!("This invite's signature does not match: the link was altered or cut short. {ask}"))
            }
            CertificateExpired { at } => ("capability_issuer_expired", format!("The inviting account's certificate expired at {}. {ask}", format_utc(*at))),
            CertificateNotYetValid { from } | NotYetValid { from } => {
                ("capability_not_yet_valid", format!("This invite is not valid before {}.", format_utc(*from)))
            }
            Expired { at } => ("capability_expired", format!("This invite expired at {}. {ask}", format_utc(*at))),
            WrongRoom { invited, requested } => ("capability_wrong_room", format!("This invite is for the meeting {invited:?}, not {requested:?}.")),
            Revoked { .. } => ("capability_revoked", format!("This invite was revoked by the person who made it. {ask}")),
            CertificateRevoked { .. } => {
                ("capability_revoked", format!("This invite is no longer valid: the inviting account was disabled or its key withdrawn. {ask}"))
            }
            RoleNotGranted { granted, claimed } => ("capability_role", format!("This invite lets you join as {granted}, not as {claimed}.")),
            ExceedsIssuerRole { .. } | OutlivesIssuer => ("capability_exceeds_issuer", format!("This invite claims more than its issuer may grant. {ask}")),
        };
        ApiError::forbidden(code, message)
    }
}

pub fn name_error(field: &'static str, e: NameError) -> ApiError {
    ApiError::bad_request(field, format!("{}.", capitalize(&e.0)))
}

pub(super) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
