//! The admin's page: accounts, the ticketmaster role, disabling.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::account::AccountView;
use super::session::LoggedIn;
use super::{ApiError, AppState};
use crate::clock;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/accounts", web::get().to(list))
        .route("/accounts/{username}/ticketmaster", web::post().to(set_ticketmaster))
        .route("/accounts/{username}/disable", web::post().to(disable))
        .route("/accounts/{username}/enable", web::post().to(enable))
        .route("/cluster", web::get().to(cluster));
}

#[derive(Deserialize)]
struct ClusterQuery {
    room: Option<String>,
}

/// The cluster as this node sees it: the epoch it follows, each member and whether it is
/// connected, and (`?room=NAME`) which node is that meeting's home. `{"cluster": null}` for a
/// node on its own.
async fn cluster(state: web::Data<AppState>, who: LoggedIn, query: web::Query<ClusterQuery>) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let Some(cluster) = &state.cluster else { return Ok(HttpResponse::Ok().json(serde_json::json!({ "cluster": null }))) };
    let (view, live, now, loads) = (cluster.view(), cluster.live(), clock::now(), cluster.loads());
    let hex = |k: &[u8]| crate::secrets::hex(k);
    let members: Vec<serde_json::Value> = view
        .members(now)
        .map(|m| {
            let own = m.node_key == cluster.own_key();
            let load = loads.get(&m.node_key);
            serde_json::json!({
                "node_key": hex(&m.node_key),
                // What it said of itself lately (this node's own: its figures now).
                "seats": if own { Some(state.hub.counts().participants) } else { load.map(|l| l.seats) },
                "sockets": if own { Some(state.sockets.load(std::sync::atomic::Ordering::Relaxed)) } else { load.map(|l| l.sockets) },
                "draining": if own { Some(cluster.draining()) } else { load.map(|l| l.draining) },
                "roles": m.roles.names(),
                "addresses": m.addresses,
                "expires": m.expires,
                "connected": live.contains(&m.node_key),
                "this_node": m.node_key == cluster.own_key(),
            })
        })
        .collect();
    let home = query.room.as_deref().and_then(|room| confab_keys::RoomName::normalize(room).ok()).map(|room| hex(&cluster.home_of(room.as_str())));
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "cluster": hex(&view.cluster()),
        "epoch": view.epoch(),
        "this_node": hex(&cluster.own_key()),
        "members": members,
        "home": home,
    })))
}

async fn list(state: web::Data<AppState>, who: LoggedIn) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let accounts = state.db(|s| s.list_accounts()).await?;
    Ok(HttpResponse::Ok().json(accounts.iter().map(AccountView::from).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
struct GrantRequest {
    grant: bool,
}

fn no_such_account(name: &str) -> ApiError {
    ApiError::not_found("account_unknown", format!("There is no account named {name:?}."))
}

async fn set_ticketmaster(state: web::Data<AppState>, who: LoggedIn, path: web::Path<String>, body: web::Json<GrantRequest>) -> Result<HttpResponse, ApiError> {
    let admin = who.require_admin()?;
    let name = path.into_inner();
    let key = name.to_ascii_lowercase();
    let grant = body.grant;
    let updated = state.db(move |s| s.set_ticketmaster(&key, grant)).await?.ok_or_else(|| no_such_account(&name))?;
    tracing::info!(by = %admin.username, account = %updated.username, grant, "ticketmaster role changed");
    Ok(HttpResponse::Ok().json(AccountView::from(&updated)))
}

async fn disable(state: web::Data<AppState>, who: LoggedIn, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let admin = who.require_admin()?;
    let name = path.into_inner();
    let key = name.to_ascii_lowercase();
    if key == admin.username.to_ascii_lowercase() {
        return Err(ApiError::conflict("disable_self", "You cannot disable your own account: you would lock yourself out."));
    }
    let now = clock::now();
    let updated = state.db(move |s| s.disable_account(&key, now)).await?.ok_or_else(|| no_such_account(&name))?;
    tracing::info!(by = %admin.username, account = %updated.username, "account disabled");
    Ok(HttpResponse::Ok().json(AccountView::from(&updated)))
}

async fn enable(state: web::Data<AppState>, who: LoggedIn, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let admin = who.require_admin()?;
    let name = path.into_inner();
    let key = name.to_ascii_lowercase();
    let updated = state.db(move |s| s.enable_account(&key)).await?.ok_or_else(|| no_such_account(&name))?;
    tracing::info!(by = %admin.username, account = %updated.username, "account enabled");
    Ok(HttpResponse::Ok().json(AccountView::from(&updated)))
}
