//! Login sessions: a random value in an HttpOnly, Secure, SameSite=Lax cookie; its digest in
//! the database. Extractors give handlers the logged-in account, or refuse with 401/403.
//!
//! Cross-site requests cannot act with the cookie: every state-changing endpoint takes a JSON
//! body, which a cross-site form cannot send without a CORS preflight that we never grant.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{FromRequest, HttpRequest, web};

use super::{ApiError, AppState};
use crate::clock;
use crate::secrets::{digest, random_bytes};
use crate::store::Account;

/// `__Host-`: browsers accept it only from HTTPS, with `Path=/` and no `Domain`, so no other
/// host under the same domain (and no plain-HTTP page) can plant or overwrite it.
pub const COOKIE: &str = "__Host-confab_session";
pub const SESSION_LIFETIME_SECS: u64 = 30 * 86_400;

/// Creates a session for the account and returns the cookie that carries it.
pub async fn start(state: &AppState, account_id: i64) -> Result<Cookie<'static>, ApiError> {
    let value = base64_url(&random_bytes::<32>());
    let now = clock::now();
    let d = digest(&value);
    state.db(move |s| s.create_session(&d, account_id, now, now + SESSION_LIFETIME_SECS)).await?;
    Ok(Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(SESSION_LIFETIME_SECS as i64))
        .finish())
}

/// A cookie that removes the session cookie from the browser.
pub fn cleared() -> Cookie<'static> {
    let mut c = Cookie::build(COOKIE, "").path("/").http_only(true).secure(true).same_site(SameSite::Lax).finish();
    c.make_removal();
    c
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The logged-in, enabled account behind the request's cookie.
pub struct LoggedIn(pub Account);

impl FromRequest for LoggedIn {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<LoggedIn, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let cookie = req.cookie(COOKIE).map(|c| c.value().to_string());
        Box::pin(async move {
            let state = state.ok_or_else(ApiError::internal)?;
            let not_logged_in =
                || ApiError::new(actix_web::http::StatusCode::UNAUTHORIZED, "not_logged_in", "You are not logged in (or your session ended). Log in again.");
            let value = cookie.ok_or_else(not_logged_in)?;
            let d = digest(&value);
            let now = clock::now();
            let account = state.db(move |s| s.session_account(&d, now)).await?;
            account.map(LoggedIn).ok_or_else(not_logged_in)
        })
    }
}

impl LoggedIn {
    pub fn require_ticketmaster(self) -> Result<Account, ApiError> {
        if !self.0.is_ticketmaster {
            return Err(ApiError::forbidden("not_ticketmaster", "Only ticketmasters can do this. An admin can grant the role."));
        }
        Ok(self.0)
    }

    pub fn require_admin(self) -> Result<Account, ApiError> {
        if !self.0.is_admin {
            return Err(ApiError::forbidden("not_admin", "Only admins can do this."));
        }
        Ok(self.0)
    }
}
