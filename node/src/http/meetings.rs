//! Meetings, account certificates and invites.
//!
//! The account holder's private key never reaches the node: the browser sends its public
//! key, the node certifies it, the browser signs invites and registers them here so that
//! they can be listed and revoked.

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confab_keys::{CapabilityId, Invite, RoomName};
use serde::{Deserialize, Serialize};

use super::error::name_error;
use super::session::LoggedIn;
use super::{ApiError, AppState};
use crate::capabilities::{AdmissionError, admit, certify};
use crate::clock;
use crate::secrets::random_bytes;
use crate::store::{InviteRecord, Meeting};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/certificate", web::post().to(certify_key))
        .route("/meetings", web::get().to(list_meetings))
        .route("/meetings", web::post().to(create_meeting))
        .route("/meetings/{room}/settings", web::post().to(change_settings))
        .route("/meetings/{room}/rename", web::post().to(rename_meeting))
        .route("/meetings/{room}/delete", web::post().to(delete_meeting))
        .route("/invites", web::get().to(list_invites))
        .route("/invites", web::post().to(register_invite))
        .route("/invites/check", web::post().to(check_invite))
        .route("/invites/{id}/revoke", web::post().to(revoke_invite));
}

#[derive(Deserialize)]
struct CertifyRequest {
    /// The account's ed25519 public key, 32 bytes in URL-safe base64.
    public_key: String,
}

#[derive(Serialize)]
struct Certified {
    certificate: String,
    id: String,
    expires_at: u64,
}

async fn certify_key(state: web::Data<AppState>, LoggedIn(account): LoggedIn, body: web::Json<CertifyRequest>) -> Result<HttpResponse, ApiError> {
    let public_key = parse_public_key(&body.public_key)?;
    let now = clock::now();
    let st = state.clone();
    let cert = state.db(move |s| certify(s, &st.node_key, &account, public_key, now)).await?;
    Ok(HttpResponse::Created().json(Certified { certificate: cert.to_text(), id: cert.body().id.to_hex(), expires_at: cert.body().expires }))
}

fn parse_public_key(text: &str) -> Result<[u8; 32], ApiError> {
    let bad = || ApiError::bad_request("public_key_invalid", "The public key must be 32 bytes of ed25519 key in URL-safe base64.");
    let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    if !confab_keys::is_valid_public_key(&bytes) {
        return Err(bad());
    }
    Ok(bytes)
}

#[derive(Serialize)]
struct MeetingView {
    room: String,
    owner: String,
    created_at: u64,
    url: String,
    lobby: bool,
    share: &'static str,
    muted_above: u32,
    /// When the meeting opens to guests (Unix seconds; 0: always).
    opens_at: u64,
    /// What people see; the room name when the owner gave no title.
    title: String,
}

fn meeting_view(state: &AppState, m: Meeting) -> MeetingView {
    let s = m.settings;
    let title = if m.title.is_empty() { m.room.clone() } else { m.title };
    MeetingView {
        url: format!("{}/m/{}", state.public_url, m.room),
        room: m.room,
        owner: m.owner,
        created_at: m.created_at,
        lobby: s.lobby,
        share: if s.share_hosts_only { "hosts" } else { "everyone" },
        muted_above: s.muted_above,
        opens_at: s.opens_at,
        title,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    /// Empty: back to the room name.
    title: String,
}

/// The owner gives a meeting a title for people; links keep the room name.
async fn rename_meeting(
    state: web::Data<AppState>,
    LoggedIn(account): LoggedIn,
    path: web::Path<String>,
    body: web::Json<Rename>,
) -> Result<HttpResponse, ApiError> {
    let room = RoomName::normalize(&path.into_inner()).map_err(|e| name_error("room_invalid", e))?;
    let raw = body.into_inner().title;
    let title = if raw.trim().is_empty() {
        String::new()
    } else {
        crate::meeting::protocol::display_name(&raw).map_err(|_| ApiError::bad_request("title_invalid", "A title has 1 to 64 visible characters."))?
    };
    let r = room.to_string();
    match state.db(move |s| s.set_meeting_title(&r, account.id, &title)).await? {
        Some(meeting) => Ok(HttpResponse::Ok().json(meeting_view(&state, meeting))),
        None => Err(ApiError::not_found("meeting_unknown", "You have no meeting with that name.")),
    }
}

/// The owner deletes a meeting: every invite registered to it is revoked, and a meeting in
/// progress ends for everyone.
async fn delete_meeting(state: web::Data<AppState>, LoggedIn(account): LoggedIn, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let room = RoomName::normalize(&path.into_inner()).map_err(|e| name_error("room_invalid", e))?;
    let (r, now) = (room.to_string(), clock::now());
    if !state.db(move |s| s.delete_meeting(&r, account.id, now)).await? {
        return Err(ApiError::not_found("meeting_unknown", "You have no meeting with that name."));
    }
    state.hub.existing(room.as_str(), |r, now| r.end_all(now));
    Ok(HttpResponse::NoContent().finish())
}

/// Settings to change; those left out stay as they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Guests wait in the lobby until a host admits them.
    lobby: Option<bool>,
    /// Who may share a screen.
    share: Option<Share>,
    /// Newcomers join muted once the meeting has more than this many participants (0: never).
    muted_above: Option<u32>,
    /// When the meeting opens to guests (Unix seconds; 0: always).
    opens_at: Option<u64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Share {
    Everyone,
    Hosts,
}

/// The most participants `muted_above` may name (a meeting's capacity is at most this).
const MAX_MUTED_ABOVE: u32 = 10_000;
/// The latest opening time accepted (year 2286): larger values are mistakes (milliseconds).
const MAX_OPENS_AT: u64 = 9_999_999_999;

/// The owner changes a meeting's settings; a meeting in progress follows at once (turning
/// the lobby off lets everyone waiting in; hosts-only sharing ends guests' shares).
async fn change_settings(
    state: web::Data<AppState>,
    LoggedIn(account): LoggedIn,
    path: web::Path<String>,
    body: web::Json<Settings>,
) -> Result<HttpResponse, ApiError> {
    let room = RoomName::normalize(&path.into_inner()).map_err(|e| name_error("room_invalid", e))?;
    let change = body.into_inner();
    if change.opens_at.is_some_and(|t| t > MAX_OPENS_AT) {
        return Err(ApiError::bad_request("settings_invalid", "opens_at is a time in Unix seconds (0: always open)."));
    }
    if change.muted_above.is_some_and(|n| n > MAX_MUTED_ABOVE) {
        return Err(ApiError::bad_request("settings_invalid", format!("muted_above is at most {MAX_MUTED_ABOVE} (0: never).")));
    }
    let r = room.to_string();
    let owner = account.id;
    let changed = state
        .db(move |s| {
            let Some(current) = s.meeting(&r)?.filter(|m| m.owner_id == owner) else { return Ok(None) };
            let mut settings = current.settings;
            settings.lobby = change.lobby.unwrap_or(settings.lobby);
            settings.share_hosts_only = change.share.map_or(settings.share_hosts_only, |share| matches!(share, Share::Hosts));
            settings.muted_above = change.muted_above.unwrap_or(settings.muted_above);
            settings.opens_at = change.opens_at.unwrap_or(settings.opens_at);
            s.set_meeting_settings(&r, owner, settings)
        })
        .await?;
    let Some(meeting) = changed else {
        return Err(ApiError::not_found("meeting_unknown", "You have no meeting with that name."));
    };
    state.apply_settings(room.as_str(), meeting.settings);
    Ok(HttpResponse::Ok().json(meeting_view(&state, meeting)))
}

async fn list_meetings(state: web::Data<AppState>, LoggedIn(account): LoggedIn) -> Result<HttpResponse, ApiError> {
    let meetings = state.db(move |s| s.meetings_of(account.id)).await?;
    Ok(HttpResponse::Ok().json(meetings.into_iter().map(|m| meeting_view(&state, m)).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
struct CreateMeeting {
    /// Omitted or empty: a random name.
    room: Option<String>,
}

async fn create_meeting(state: web::Data<AppState>, LoggedIn(account): LoggedIn, body: web::Json<CreateMeeting>) -> Result<HttpResponse, ApiError> {
    let chosen = body.into_inner().room.filter(|r| !r.trim().is_empty());
    let room = match &chosen {
        Some(name) => RoomName::normalize(name).map_err(|e| name_error("room_invalid", e))?,
        None => random_room_name(),
    };
    let now = clock::now();
    let r = room.to_string();
    match state.db(move |s| s.create_meeting(&r, account.id, now)).await? {
        Some(meeting) => Ok(HttpResponse::Created().json(meeting_view(&state, meeting))),
        None => Err(ApiError::conflict("room_taken", format!("A meeting named {:?} already exists. Choose another name.", room.as_str()))),
    }
}

/// Three groups of four letters and digits: ~62 bits, so names cannot be guessed and
/// collisions never happen in practice.
fn random_room_name() -> RoomName {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bytes = random_bytes::<12>();
    let mut name = String::with_capacity(14);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            name.push('-');
        }
        name.push(ALPHABET[(*b as usize) % ALPHABET.len()] as char);
    }
    RoomName::parse(&name).expect("the alphabet and the pattern make a valid room name")
}

#[derive(Serialize)]
struct InviteView {
    id: String,
    room: String,
    role: String,
    not_before: u64,
    expires_at: u64,
    created_at: u64,
    status: &'static str,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_whom: Option<String>,
}

impl InviteView {
    fn new(r: &InviteRecord, now: u64) -> InviteView {
        let status = if r.revoked {
            "revoked"
        } else if now >= r.expires_at {
            "expired"
        } else {
            "active"
        };
        InviteView {
            id: r.id.to_hex(),
            room: r.room.clone(),
            role: r.role.clone(),
            not_before: r.not_before,
            expires_at: r.expires_at,
            created_at: r.created_at,
            status,
            for_whom: r.for_whom.clone(),
        }
    }
}

/// An invite as listed: with its link while it is active and the node kept its text.
#[derive(Serialize)]
struct ListedInvite {
    #[serde(flatten)]
    invite: InviteView,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

async fn list_invites(state: web::Data<AppState>, LoggedIn(account): LoggedIn) -> Result<HttpResponse, ApiError> {
    let invites = state.db(move |s| s.invites_of(account.id)).await?;
    let now = clock::now();
    let listed = invites.iter().map(|r| {
        let invite = InviteView::new(r, now);
        let link = r.text.as_ref().filter(|_| invite.status == "active").map(|text| format!("{}/m/{}#{text}", state.public_url, r.room));
        ListedInvite { invite, link }
    });
    Ok(HttpResponse::Ok().json(listed.collect::<Vec<_>>()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterInvite {
    invite: String,
    /// The one person this invite is for, if it is made for one: a host may then revoke
    /// it along with removing them.
    #[serde(default, rename = "for")]
    for_whom: Option<String>,
}

#[derive(Serialize)]
struct Registered {
    #[serde(flatten)]
    invite: InviteView,
    link: String,
}

async fn register_invite(state: web::Data<AppState>, LoggedIn(account): LoggedIn, body: web::Json<RegisterInvite>) -> Result<HttpResponse, ApiError> {
    let RegisterInvite { invite: text, for_whom } = body.into_inner();
    let for_whom = match for_whom.filter(|f| !f.trim().is_empty()) {
        Some(name) => Some(
            crate::meeting::protocol::display_name(&name)
                .map_err(|_| ApiError::bad_request("for_invalid", "Whom a link is for: a name of 1 to 64 visible characters."))?,
        ),
        None => None,
    };
    let invite = Invite::from_text(&text)?;
    let room = invite.body().room.clone();
    let now = clock::now();
    let node_keys = state.trusted.keys();
    let (r, t) = (room.clone(), text.clone());
    let (granted, meeting) = state.db(move |s| admit(s, &node_keys, &r, &t, now)).await?;
    // `admit` established that the certificate belongs to the meeting's owner.
    if meeting.owner_id != account.id {
        return Err(ApiError::forbidden("invite_not_yours", "This invite was not signed with a key certified for your account."));
    }
    let record = InviteRecord {
        id: granted.invite_id,
        room: room.to_string(),
        account_id: account.id,
        certificate_id: granted.certificate_id,
        role: granted.role.to_string(),
        not_before: invite.body().not_before,
        expires_at: granted.expires,
        created_at: now,
        revoked: false,
        text: Some(text.trim().to_string()),
        for_whom,
    };
    let rec = record.clone();
    if !state.db(move |s| s.record_invite(&rec)).await? {
        return Err(ApiError::conflict("invite_exists", "This invite is already registered."));
    }
    Ok(HttpResponse::Created().json(Registered { invite: InviteView::new(&record, now), link: format!("{}/m/{}#{}", state.public_url, room, text.trim()) }))
}

#[derive(Deserialize)]
struct CheckInvite {
    room: String,
    invite: String,
}

#[derive(Serialize)]
struct Checked {
    ice_servers: Vec<crate::meeting::protocol::IceServer>,
    room: String,
    /// What people see: the owner's title, or the room name.
    title: String,
    /// When the meeting opens to guests (Unix seconds; 0: always), and the node's clock now,
    /// for the invite page's countdown.
    opens_at: u64,
    now: u64,
    role: &'static str,
    issuer: String,
    expires_at: u64,
    /// In a cluster, the other nodes (`https://…`) the page may connect through when this
    /// one is full or being drained.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<String>,
}

/// Public: what the meeting page asks before showing the prejoin screen.
async fn check_invite(state: web::Data<AppState>, body: web::Json<CheckInvite>) -> Result<HttpResponse, ApiError> {
    let CheckInvite { room, invite } = body.into_inner();
    let room = RoomName::parse(&room).map_err(|e| name_error("room_invalid", e))?;
    if invite.trim().is_empty() {
        return Err(ApiError::bad_request("capability_missing", "This link has no invite in it. Ask the person who invited you for the full link."));
    }
    let now = clock::now();
    let node_keys = state.trusted.keys();
    let r = room.clone();
    let (granted, meeting) = state.db(move |s| admit(s, &node_keys, &r, &invite, now)).await?;
    let room = granted.room.to_string();
    // For the prejoin self-test: which of the node's paths (UDP, TCP, TLS) this network lets through.
    let ice_servers = state.ice_servers_for(&room, crate::turn::PROBE_PARTICIPANT);
    let title = if meeting.title.is_empty() { room.clone() } else { meeting.title.clone() };
    Ok(HttpResponse::Ok().json(Checked {
        room,
        title,
        role: granted.role.as_str(),
        issuer: granted.issuer.to_string(),
        expires_at: granted.expires,
        ice_servers,
        opens_at: meeting.settings.opens_at,
        now,
        nodes: state.cluster.as_ref().map(|c| c.node_urls()).unwrap_or_default(),
    }))
}

async fn revoke_invite(state: web::Data<AppState>, LoggedIn(account): LoggedIn, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = CapabilityId::from_hex(&path.into_inner()).ok_or_else(|| ApiError::bad_request("invite_id_invalid", "An invite id is 32 hexadecimal digits."))?;
    let now = clock::now();
    match state.db(move |s| s.revoke_invite(account.id, id, now)).await? {
        None => Err(ApiError::not_found("invite_unknown", "You have no invite with that id.")),
        Some(_) => Ok(HttpResponse::NoContent().finish()),
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> ApiError {
        match e {
            AdmissionError::Malformed(d) => d.into(),
            AdmissionError::Refused(c) => c.into(),
            AdmissionError::UnknownRoom(room) => ApiError::not_found(
                "room_unknown",
                format!("There is no meeting named {room:?} on this node. Check the link, or ask its host whether the meeting was deleted."),
            ),
            AdmissionError::NotOwner { .. } => ApiError::forbidden(
                "capability_not_owner",
                "This invite was signed by an account that does not own this meeting. Ask the meeting's host for a link.",
            ),
            AdmissionError::OwnerDisabled(_) => ApiError::forbidden(
                "meeting_owner_disabled",
                "This meeting belongs to an account an admin has disabled, so it admits nobody. Ask the person who invited you.",
            ),
            AdmissionError::UnknownCertificate => ApiError::forbidden(
                "capability_unknown_certificate",
                "This invite was signed with a key this node does not know. Ask the person who invited you for a new link.",
            ),
            AdmissionError::Store(s) => s.into(),
        }
    }
}
