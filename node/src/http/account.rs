//! Sign-up with a one-time token, login, logout, and who am I.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use confab_keys::Username;
use serde::{Deserialize, Serialize};

use super::error::{capitalize, name_error};
use super::session::{self, LoggedIn};
use super::{ApiError, AppState, peer_ip};
use crate::clock;
use crate::secrets::{self, check_password_rules, normalize_token};
use crate::store::{Account, TokenError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/signup", web::post().to(signup))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/me", web::get().to(me));
}

#[derive(Serialize)]
pub struct AccountView {
    pub username: String,
    pub is_admin: bool,
    pub is_ticketmaster: bool,
    pub disabled: bool,
    pub created_at: u64,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> AccountView {
        AccountView {
            username: a.username.clone(),
            is_admin: a.is_admin,
            is_ticketmaster: a.is_ticketmaster,
            disabled: a.disabled_at.is_some(),
            created_at: a.created_at,
        }
    }
}

#[derive(Deserialize)]
struct SignupRequest {
    username: String,
    password: String,
    token: String,
}

async fn signup(state: web::Data<AppState>, req: HttpRequest, body: web::Json<SignupRequest>) -> Result<HttpResponse, ApiError> {
    let SignupRequest { username, password, token } = body.into_inner();
    let ip = peer_ip(&req);
    let now = clock::now();
    state.limiter().check(None, ip, now).map_err(ApiError::too_many_attempts)?;
    let username = Username::parse(&username).map_err(|e| name_error("username_invalid", e))?;
    check_password_rules(&password).map_err(|m| ApiError::bad_request("password_invalid", format!("{}.", capitalize(&m))))?;
    let digest = secrets::digest(&normalize_token(&token));

    // Refuse a bad token before spending argon2 time; the redemption checks again atomically.
    let d = digest.clone();
    if let Err(e) = state.db(move |s| s.check_token(&d, now)).await? {
        if e == TokenError::Unknown {
            // Only guesses count against the address; a used or expired token is a mistake.
            state.limiter().record_failure(None, ip, now);
        }
        return Err(e.into());
    }
    let hash = state.password_work(move || secrets::hash_password(&password)).await?;
    let account = state.db(move |s| s.create_account(&username, &hash, &digest, now)).await?;
    tracing::info!(username = %account.username, admin = account.is_admin, "account created");
    let cookie = session::start(&state, account.id).await?;
    Ok(HttpResponse::Created().cookie(cookie).json(AccountView::from(&account)))
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

async fn login(state: web::Data<AppState>, req: HttpRequest, body: web::Json<LoginRequest>) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    let ip = peer_ip(&req);
    let now = clock::now();
    let key = username.trim().to_ascii_lowercase();
    if key.is_empty() || password.is_empty() {
        return Err(ApiError::bad_request("credentials_missing", "Enter both a username and a password."));
    }
    let wrong = || ApiError::new(StatusCode::UNAUTHORIZED, "credentials_wrong", "Wrong username or password.");
    // A name no account can have is a wrong login like any other (same work, same answer),
    // counted against the address only: the limiter never keys on what a stranger typed.
    let key = Username::parse(&key).is_ok().then_some(key);
    state.limiter().attempt(key.as_deref(), ip, now).map_err(ApiError::too_many_attempts)?;

    let k = key.clone();
    let found = match k {
        Some(k) => state.db(move |s| s.account_for_login(&k)).await?,
        None => None,
    };
    // The same argon2 work whether or not the account exists and whatever the password's
    // length, so that timing says nothing about which accounts exist.
    let verified = match found {
        Some((account, stored)) if password.len() <= secrets::PASSWORD_MAX => {
            state.password_work(move || secrets::verify_password(&password, &stored)).await?.then_some(account)
        }
        _ => {
            state.password_work(move || secrets::burn_password_time(&password)).await?;
            None
        }
    };
    let Some(account) = verified else {
        return Err(wrong());
    };
    state.limiter().succeeded(key.as_deref(), ip, now);
    if account.disabled_at.is_some() {
        return Err(ApiError::forbidden("account_disabled", "This account is disabled. Ask an admin of this Confab node."));
    }
    let cookie = session::start(&state, account.id).await?;
    Ok(HttpResponse::Ok().cookie(cookie).json(AccountView::from(&account)))
}

async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(cookie) = req.cookie(session::COOKIE) {
        let d = secrets::digest(cookie.value());
        state.db(move |s| s.delete_session(&d)).await?;
    }
    Ok(HttpResponse::NoContent().cookie(session::cleared()).finish())
}

#[derive(Serialize)]
struct MeView {
    #[serde(flatten)]
    account: AccountView,
    /// Ids (hex) of this account's live certificates, so a browser knows whether the one it
    /// holds still counts.
    certificates: Vec<String>,
}

async fn me(state: web::Data<AppState>, LoggedIn(account): LoggedIn) -> Result<HttpResponse, ApiError> {
    let id = account.id;
    let now = clock::now();
    let certificates = state.db(move |s| s.live_certificates(id, now)).await?;
    Ok(HttpResponse::Ok().json(MeView { account: AccountView::from(&account), certificates: certificates.iter().map(|c| c.to_hex()).collect() }))
}
