//! The ticketmaster's page: issue, list and revoke one-time sign-up tokens.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::session::LoggedIn;
use super::{ApiError, AppState};
use crate::clock;
use crate::duration::Span;
use crate::secrets;
use crate::store::{NewToken, RevokeTokenError, TokenRecord, TokenStatus};

pub const NOTE_MAX: usize = 200;
pub const DEFAULT_TOKEN_LIFETIME: &str = "7d";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tokens", web::get().to(list)).route("/tokens", web::post().to(issue)).route("/tokens/{id}/revoke", web::post().to(revoke));
}

#[derive(Serialize)]
pub struct TokenView {
    id: i64,
    note: String,
    issued_by: Option<String>,
    issued_at: u64,
    expires_at: u64,
    status: &'static str,
    used_by: Option<String>,
    status_at: Option<u64>,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> TokenView {
        let (used_by, status_at) = match &t.status {
            TokenStatus::Unused => (None, None),
            TokenStatus::Used { by, at } => (Some(by.clone()), Some(*at)),
            TokenStatus::Expired { at } | TokenStatus::Revoked { at } => (None, Some(*at)),
        };
        TokenView {
            id: t.id,
            note: t.note,
            issued_by: t.issued_by,
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            status: t.status.label(),
            used_by,
            status_at,
        }
    }
}

async fn list(state: web::Data<AppState>, who: LoggedIn) -> Result<HttpResponse, ApiError> {
    who.require_ticketmaster()?;
    let now = clock::now();
    let tokens = state.db(move |s| s.list_tokens(now)).await?;
    Ok(HttpResponse::Ok().json(tokens.into_iter().map(TokenView::from).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
struct IssueRequest {
    #[serde(default)]
    note: String,
    /// A duration such as "7d"; the default is seven days.
    expires: Option<String>,
}

#[derive(Serialize)]
struct Issued {
    id: i64,
    /// Shown once: only its digest is stored.
    token: String,
    expires_at: u64,
}

async fn issue(state: web::Data<AppState>, who: LoggedIn, body: web::Json<IssueRequest>) -> Result<HttpResponse, ApiError> {
    let account = who.require_ticketmaster()?;
    let IssueRequest { note, expires } = body.into_inner();
    let note = note.trim().to_string();
    if note.chars().count() > NOTE_MAX {
        return Err(ApiError::bad_request("note_too_long", format!("A note has at most {NOTE_MAX} characters.")));
    }
    let lifetime: Span =
        expires.as_deref().unwrap_or(DEFAULT_TOKEN_LIFETIME).parse().map_err(|e: String| ApiError::bad_request("expires_invalid", format!("Expiry: {e}.")))?;
    let now = clock::now();
    let token = secrets::new_signup_token();
    let digest = secrets::digest(&token);
    let expires_at = now + lifetime.secs();
    let id =
        state.db(move |s| s.issue_token(NewToken { digest: &digest, note: &note, issued_by: Some(account.id), expires_at, grants_admin: false }, now)).await?;
    Ok(HttpResponse::Created().json(Issued { id, token, expires_at }))
}

async fn revoke(state: web::Data<AppState>, who: LoggedIn, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    who.require_ticketmaster()?;
    let id = path.into_inner();
    let now = clock::now();
    state.db(move |s| s.revoke_token(id, now)).await?;
    Ok(HttpResponse::NoContent().finish())
}

impl From<RevokeTokenError> for ApiError {
    fn from(e: RevokeTokenError) -> ApiError {
        let message = format!("{}.", super::error::capitalize(&e.to_string()));
        match e {
            RevokeTokenError::Unknown(_) => ApiError::not_found("token_unknown", message),
            RevokeTokenError::AlreadyUsed(_) => ApiError::conflict("token_used", message),
            RevokeTokenError::AlreadyRevoked(_) => ApiError::conflict("token_revoked", message),
            RevokeTokenError::Store(s) => s.into(),
        }
    }
}
