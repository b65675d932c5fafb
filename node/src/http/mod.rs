//! The HTTPS shell: actix-web over rustls. Handlers parse, call the store (on the blocking
//! pool) and the pure modules, and map errors to `ApiError`. No decisions live here that a
//! unit test could not make without a socket.

mod account;
mod admin;
mod error;
mod meetings;
pub mod mux;
mod pages;
mod session;
mod signaling;
mod tokens;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{DefaultHeaders, ErrorHandlerResponse};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use confab_keys::NodeKey;
use tokio::sync::Semaphore;

pub use error::ApiError;

use crate::meeting::Hub;
use crate::meeting::protocol::IceServer;
use crate::ratelimit::LoginLimiter;
use crate::store::Store;

/// Largest JSON body any endpoint accepts. The biggest real one (an invite) is under 1 KiB.
pub const JSON_LIMIT: usize = 16 * 1024;

pub struct AppState {
    pub store: Arc<Store>,
    pub node_key: NodeKey,
    pub public_url: String,
    pub limiter: Mutex<LoginLimiter>,
    /// argon2 takes 19 MiB and tens of milliseconds per hash: at most this many at once, so a
    /// flood of sign-ups or logins queues instead of exhausting memory.
    pub password_work: Semaphore,
    pub hub: Hub,
    /// Given to every participant for their peer connections.
    pub ice_servers: Vec<IceServer>,
    /// The SFU: where participants' connections go once their room passes the threshold.
    pub relay: confab_relay::Relay,
    /// Where each participant's media ends (here, or at their edge node): what the room
    /// decides about someone's media goes through it.
    pub edges: Arc<crate::cluster::edges::Edges>,
    /// The embedded TURN relay, when on: credentials per seat, and its listeners.
    pub turn: Option<(crate::turn::Issuer, crate::turn::service::Turn)>,
    /// The node keys whose certificates admit a seat here.
    pub trusted: crate::cluster::Trusted,
    /// The cluster's control plane, when this node is a member of one.
    pub cluster: Option<Arc<crate::cluster::net::Cluster>>,
    /// Signaling sockets this node takes at most (0: no limit), and how many it has.
    pub max_participants: usize,
    pub sockets: std::sync::atomic::AtomicUsize,
}

impl AppState {
    pub fn new(store: Arc<Store>, node_key: NodeKey, public_url: String, hub: Hub, ice_servers: Vec<IceServer>, relay: confab_relay::Relay) -> AppState {
        let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        AppState {
            store,
            public_url,
            limiter: Mutex::new(LoginLimiter::default()),
            password_work: Semaphore::new(parallel * 2),
            hub,
            ice_servers,
            trusted: crate::cluster::Trusted::only(node_key.public()),
            node_key,
            edges: Arc::new(crate::cluster::edges::Edges::new(relay.clone(), None)),
            relay,
            turn: None,
            cluster: None,
            max_participants: 0,
            sockets: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn with_turn(mut self, issuer: crate::turn::Issuer, service: crate::turn::service::Turn) -> AppState {
        self.turn = Some((issuer, service));
        self
    }

    /// The ICE servers for one seat: the configured ones, then the node's own STUN and
    /// TURN with credentials scoped to the seat.
    pub fn ice_servers_for(&self, room: &str, participant: u64) -> Vec<IceServer> {
        let mut servers = self.ice_servers.clone();
        if let Some((issuer, _)) = &self.turn {
            servers.extend(issuer.ice_servers(room, participant, crate::clock::now()));
        }
        servers
    }

    /// A meeting's settings changed: the meeting in progress (if any) follows, and the relay
    /// stops forwarding the shares that the change ended.
    pub fn apply_settings(&self, room: &str, settings: crate::meeting::room::MeetingSettings) {
        let ice_servers = |id: crate::meeting::protocol::ParticipantId| self.ice_servers_for(room, id.0);
        let mut stopped = Vec::new();
        self.hub.existing(room, |r, now| stopped = r.set_settings(settings, &ice_servers, now));
        self.stop_shares(room, &stopped);
    }

    /// The relay forwards none of these participants' screens any more.
    pub fn stop_shares(&self, room: &str, participants: &[crate::meeting::protocol::ParticipantId]) {
        for id in participants {
            self.edges.share(confab_relay::PeerKey { room: room.to_string(), participant: id.0 }, false);
        }
    }

    /// Runs a store call on the blocking pool.
    pub async fn db<T, E>(&self, f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let store = self.store.clone();
        web::block(move || f(&store)).await?.map_err(Into::into)
    }

    /// Runs argon2 work on the blocking pool, bounded by `password_work`.
    pub async fn password_work<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let _permit = self.password_work.acquire().await.map_err(|_| ApiError::internal())?;
        Ok(web::block(f).await?)
    }

    pub fn limiter(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The client's address; for a connection that came through the HTTPS port's TURN/HTTP
/// split (`mux`), the address the split accepted it from.
pub fn peer_ip(req: &HttpRequest) -> IpAddr {
    match req.peer_addr() {
        Some(addr) => mux::client_of(addr).unwrap_or(addr.ip()),
        None => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Pages and API routes that work on the accounts database (sign-up, login, sessions,
/// tokens, accounts, meetings, certificates, invites): in a cluster only the accounts node
/// serves them. Meeting links, the invite check, signaling, health and metrics work on every
/// node.
fn is_accounts_route(path: &str) -> bool {
    const PAGES: &[&str] = &["/", "/create", "/login", "/account", "/tokens", "/admin"];
    const API: &[&str] =
        &["/api/signup", "/api/login", "/api/logout", "/api/me", "/api/certificate", "/api/meetings", "/api/invites", "/api/tokens", "/api/accounts"];
    if PAGES.contains(&path) {
        return true;
    }
    path != "/api/invites/check" && API.iter().any(|prefix| path == *prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')))
}

/// The path as the router matches it: percent-encoded characters decoded, except `%`, `/`
/// and `+` (actix-router's requoting), so `/api/%6Cogin` is `/api/login` here exactly as it
/// is to the route table. A decision about which handler runs must be taken on this, never
/// on the raw `req.path()`, or another spelling of the same route slips past it.
fn routed_path(req: &actix_web::dev::ServiceRequest) -> &str {
    req.match_info().as_str()
}

/// A 307 to the same path and query on the accounts node (307 keeps a POST a POST), or 503
/// while that node is out of reach.
fn accounts_redirect(cluster: &crate::cluster::net::Cluster, req: &actix_web::dev::ServiceRequest) -> ServiceResponse {
    let (http, _) = req.parts();
    let response = match cluster.accounts_url() {
        Some(url) => {
            let target = format!("{url}{}", req.uri().path_and_query().map_or("/", |p| p.as_str()));
            HttpResponse::TemporaryRedirect().insert_header((header::LOCATION, target)).insert_header((header::CACHE_CONTROL, "no-store")).finish()
        }
        None => actix_web::ResponseError::error_response(&ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "accounts_unavailable",
            "Accounts are kept on one node of this cluster, and it cannot be reached right now. Meetings go on; try again in a while.",
        )),
    };
    ServiceResponse::new(http.clone(), response)
}

/// The pages' Content-Security-Policy: everything from this node only. In a cluster a
/// meeting page may also open its signaling socket on the other nodes (to carry on when
/// this one stops answering), so their `wss://` origins join `connect-src`.
fn content_security_policy(cluster: Option<&crate::cluster::net::Cluster>) -> String {
    let others: String = cluster.map(|c| c.node_urls()).unwrap_or_default().iter().map(|u| format!(" {}", u.replacen("https://", "wss://", 1))).collect();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob: mediastream:; connect-src 'self'{others}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// Routes and middleware, shared by the server and by tests that run the app in-process.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(JSON_LIMIT).error_handler(|err, _req| json_error(err).into()))
        .app_data(web::PathConfig::default().error_handler(|err, _req| ApiError::bad_request("bad_path", format!("This address is not valid: {err}.")).into()))
        .route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .configure(signaling::routes)
        .service(
            web::scope("/api")
                .wrap(actix_web::middleware::from_fn(require_json_posts))
                .configure(account::routes)
                .configure(tokens::routes)
                .configure(admin::routes)
                .configure(meetings::routes)
                .default_service(web::to(api_not_found)),
        )
        .configure(pages::routes);
}

/// Every POST to the API carries JSON. A cross-site page can send JSON only after a CORS
/// preflight, which this node never grants, so no other site can act with a visitor's cookie.
async fn require_json_posts(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if req.method() == actix_web::http::Method::POST && !is_json {
        return Err(ApiError::not_json().into());
    }
    next.call(req).await
}

fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("The request body is larger than the {} KiB this endpoint accepts.", limit / 1024),
        ),
        E::ContentType => ApiError::not_json(),
        E::Deserialize(e) => ApiError::bad_request("bad_json", format!("The request body is not what this endpoint expects: {e}.")),
        other => ApiError::bad_request("bad_body", format!("The request body could not be read: {other}.")),
    }
}

/// For load balancers and monitoring: 200 when the database answers and every relay shard
/// is running, 503 otherwise, with what failed.
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let database = match web::block(move || store.check()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    let stalled = state.relay.counters.stalled_shards(confab_relay::STALL_LIMIT);
    // A node being drained answers 503 too, so that load balancers send nobody new.
    let draining = state.cluster.as_ref().is_some_and(|c| c.draining());
    let healthy = database == "ok" && stalled == 0 && !draining;
    let body = serde_json::json!({
        "status": if draining { "draining" } else if healthy { "ok" } else { "unhealthy" },
        "draining": draining,
        "version": env!("CARGO_PKG_VERSION"),
        "database": database,
        "relay_shards": state.relay.counters.heartbeats.len(),
        "stalled_relay_shards": stalled,
        "participants": state.hub.counts().participants,
    });
    let mut response = if healthy { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    response.insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut text = crate::metrics::render(
        state.hub.counts(),
        &state.relay.counters,
        state.turn.as_ref().map(|(_, t)| &*t.counters),
        crate::metrics::ProcessFigures::read(),
    );
    if let Some(cluster) = &state.cluster {
        text += &crate::metrics::render_cluster(&crate::metrics::ClusterFigures::of(cluster));
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}

async fn api_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("no_such_endpoint", format!("There is no API endpoint {} {}.", req.method(), req.path())))
}

/// Serves on `listener` until SIGINT or SIGTERM (actix handles both and drains connections).
pub async fn run(
    state: AppState,
    listener: std::net::TcpListener,
    tls: rustls::ServerConfig,
    mut notices: tokio::sync::mpsc::UnboundedReceiver<confab_relay::Notice>,
    turn_on_https: bool,
) -> std::io::Result<()> {
    let split = match (&state.turn, turn_on_https) {
        (Some((_, turn)), true) => Some(turn.clone()),
        _ => None,
    };
    let state = web::Data::new(state);
    // Grace periods and hold-downs: the rooms decide, this only gives them the time.
    let ticking = state.clone();
    actix_web::rt::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            every.tick().await;
            ticking.hub.tick();
        }
    });
    // What other members send: frames for the relay, and calls about participants' media.
    if let Some(cluster) = state.cluster.clone() {
        let receiving = state.clone();
        cluster.cascade.set_inbound(Box::new(move |from, received| match received {
            crate::cluster::cascade::Received::Control(bytes) => receiving.relay.deliver_control(&bytes),
            crate::cluster::cascade::Received::Media(packets) => receiving.relay.deliver_media(packets),
            crate::cluster::cascade::Received::Node(bytes) => {
                if let Some(notice) = receiving.edges.handle(&from, &bytes) {
                    signaling::relay_notice(&receiving, notice);
                }
            }
        }));
    }
    // What the relay says about a participant goes to that participant.
    let relaying = state.clone();
    actix_web::rt::spawn(async move {
        while let Some(notice) = notices.recv().await {
            signaling::relay_notice(&relaying, notice);
        }
    });
    // A meeting whose home is now another node (one came back, or a partition healed) moves
    // there: once this node has seen it so twice in a row, its participants are sent to find
    // the new home.
    if let Some(cluster) = state.cluster.clone() {
        let moving = state.clone();
        actix_web::rt::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
            let mut elsewhere: std::collections::HashSet<String> = Default::default();
            loop {
                every.tick().await;
                cluster.report_load(moving.hub.counts().participants, moving.sockets.load(std::sync::atomic::Ordering::Relaxed));
                let now_elsewhere: std::collections::HashSet<String> =
                    moving.hub.rooms().into_iter().filter(|room| cluster.home_of(room) != cluster.own_key()).collect();
                for room in now_elsewhere.intersection(&elsewhere) {
                    tracing::info!(room, home = %crate::secrets::hex(&cluster.home_of(room)), "the meeting moves to its home node");
                    moving.hub.move_away(room);
                }
                elsewhere = now_elsewhere;
            }
        });
    }
    // Seats of meetings homed here whose participants' sockets are on other nodes.
    if let Some(mut seats) = state.cluster.as_ref().and_then(|c| c.take_seats()) {
        let serving = state.clone().into_inner();
        actix_web::rt::spawn(async move {
            while let Some(seat) = seats.recv().await {
                actix_web::rt::spawn(signaling::serve_remote_seat(serving.clone(), seat));
            }
        });
    }
    let fixed_policy = header::HeaderValue::from_str(&content_security_policy(None)).expect("the policy is a valid header");
    let server = HttpServer::new(move || {
        let (cluster, fixed_policy) = (state.cluster.clone(), fixed_policy.clone());
        let accounts_elsewhere = state.cluster.clone();
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::ErrorHandlers::new().default_handler(log_server_errors))
            // In a cluster, accounts live on one node: their pages and API calls are sent there.
            .wrap_fn(move |req, srv| {
                // Asked each time: a new epoch may give the accounts to another node. Decided
                // on the path the router matches (percent-decoded), never on its spelling.
                let redirect =
                    accounts_elsewhere.as_ref().filter(|c| is_accounts_route(routed_path(&req)) && !c.holds_accounts()).map(|c| accounts_redirect(c, &req));
                let fut = redirect.is_none().then(|| srv.call(req));
                async move {
                    match (fut, redirect) {
                        (Some(fut), _) => fut.await.map(|res| res.map_into_left_body()),
                        (None, Some(res)) => Ok(res.map_into_right_body()),
                        (None, None) => unreachable!("one of the two is set"),
                    }
                }
            })
            .wrap_fn(move |req, srv| {
                let fut = srv.call(req);
                // The same for every response on a node on its own; in a cluster it follows
                // the members this node reaches.
                let policy = match &cluster {
                    None => Some(fixed_policy.clone()),
                    Some(c) => header::HeaderValue::from_str(&content_security_policy(Some(c))).ok(),
                };
                async move {
                    let mut res = fut.await?;
                    if let Some(value) = policy {
                        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
                    }
                    Ok(res)
                }
            })
            .wrap(
                DefaultHeaders::new()
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add(("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)"))
                    // The node speaks only HTTPS; a year, as recommended for HSTS.
                    .add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000")),
            )
            // HEAD is GET without the body (RFC 9110): the routes are GET routes, and the
            // connection writes no body for a HEAD request.
            .wrap_fn(|mut req, srv| {
                if req.method() == actix_web::http::Method::HEAD {
                    req.head_mut().method = actix_web::http::Method::GET;
                }
                srv.call(req)
            })
            .wrap_fn(|req, srv| {
                let method = req.method().clone();
                let path = req.path().to_string();
                let started = std::time::Instant::now();
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    tracing::info!(%method, %path, status = res.status().as_u16(), ms = started.elapsed().as_millis() as u64, "request");
                    Ok(res)
                }
            })
            .configure(configure)
    })
    .shutdown_timeout(10);
    let server = match split {
        None => server.listen_rustls_0_23(listener, tls)?,
        Some(turn) => {
            // The public port splits TLS streams between TURN and the web server, which
            // listens on loopback only.
            let internal = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
            let web = internal.local_addr()?;
            listener.set_nonblocking(true)?;
            let public = tokio::net::TcpListener::from_std(listener)?;
            actix_web::rt::spawn(mux::serve(public, web, Arc::new(tls), turn));
            server.listen(internal)?
        }
    };
    server.run().await
}

fn log_server_errors<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // A 503 from /healthz is its answer (unhealthy, or draining), not a failure of ours; a
    // 503 naming accounts out of reach is the cluster's state, logged where it changes.
    let expected =
        res.status() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE && (res.request().path() == "/healthz" || res.request().path().starts_with("/api/"));
    if res.status().is_server_error() && !expected {
        tracing::error!(path = %res.request().path(), status = res.status().as_u16(), "server error");
    }
    Ok(ErrorHandlerResponse::Response(res.map_into_left_body()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every account page and API route, as a client may send it: plain, each letter
    /// percent-encoded (upper- and lower-case hex), and one letter encoded.
    const ACCOUNT_ROUTES: &[&str] = &[
        "/",
        "/create",
        "/login",
        "/account",
        "/tokens",
        "/admin",
        "/api/signup",
        "/api/login",
        "/api/logout",
        "/api/me",
        "/api/certificate",
        "/api/meetings",
        "/api/meetings/standup/settings",
        "/api/meetings/standup/rename",
        "/api/meetings/standup/delete",
        "/api/invites",
        "/api/invites/00ff/revoke",
        "/api/tokens",
        "/api/tokens/7/revoke",
        "/api/accounts",
        "/api/accounts/ana/ticketmaster",
        "/api/accounts/ana/disable",
        "/api/accounts/ana/enable",
    ];

    fn spellings(path: &str) -> Vec<String> {
        let encode_all = |upper: bool| {
            path.bytes()
                .map(|b| match b {
                    b'/' => "/".to_string(),
                    b if upper => format!("%{b:02X}"),
                    b => format!("%{b:02x}"),
                })
                .collect::<String>()
        };
        let mut out = vec![path.to_string(), encode_all(true), encode_all(false)];
        if let Some(i) = path.rfind(|c: char| c.is_ascii_alphabetic()) {
            out.push(format!("{}%{:02X}{}", &path[..i], path.as_bytes()[i], &path[i + 1..]));
        }
        out
    }

    fn routed(uri: &str) -> String {
        let req = actix_web::test::TestRequest::with_uri(uri).to_srv_request();
        routed_path(&req).to_string()
    }

    #[test]
    fn every_spelling_of_an_account_route_is_an_account_route() {
        for route in ACCOUNT_ROUTES {
            for spelled in spellings(route) {
                assert_eq!(routed(&spelled), *route, "{spelled} reaches the route table as {route}");
                assert!(is_accounts_route(routed(&spelled).as_str()), "{spelled} is an account route");
                let with_query = format!("{spelled}?token=x");
                assert!(is_accounts_route(routed(&with_query).as_str()), "{with_query} is an account route");
            }
        }
    }

    #[test]
    fn meeting_links_and_the_invite_check_stay_on_every_node_however_spelled() {
        for route in ["/api/invites/check", "/m/standup", "/healthz", "/metrics", "/static/js/protocol.js"] {
            for spelled in spellings(route) {
                assert!(!is_accounts_route(routed(&spelled).as_str()), "{spelled} is served on every node");
            }
        }
    }

    #[test]
    fn an_encoded_slash_or_percent_is_not_decoded_into_another_route() {
        // The router keeps %2F and %25 as they are, so these match no account route here nor
        // in the route table (404), rather than reaching one under another name.
        for uri in ["/api%2Flogin", "/api/%256Cogin", "/%2Fapi/signup"] {
            let routed = routed(uri);
            assert!(!is_accounts_route(&routed), "{uri} is {routed}");
        }
    }
}
