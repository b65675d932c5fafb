//! The web client's files, embedded in the binary, and the HTML pages.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use confab_keys::RoomName;
use rust_embed::RustEmbed;

use super::AppState;

#[derive(RustEmbed)]
#[folder = "../web-client/"]
struct Assets;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| page("index.html")))
        .route("/create", web::get().to(|| page("create.html")))
        .route("/login", web::get().to(|| page("login.html")))
        .route("/account", web::get().to(|| page("account.html")))
        .route("/tokens", web::get().to(|| page("tokens.html")))
        .route("/admin", web::get().to(|| page("admin.html")))
        .route("/m/{room}", web::get().to(meeting))
        .route("/static/{path:.*}", web::get().to(asset))
        .default_service(web::to(not_found));
}

async fn page(name: &'static str) -> HttpResponse {
    serve(name).unwrap_or_else(|| error_page(StatusCode::INTERNAL_SERVER_ERROR, "Missing page", &format!("This build has no page {name}.")))
}

fn serve(path: &str) -> Option<HttpResponse> {
    let file = Assets::get(path)?;
    Some(
        HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, file.metadata.mimetype()))
            // Small files, always revalidated: a new binary never serves an old script.
            .insert_header((CACHE_CONTROL, "no-cache"))
            .body(file.data.into_owned()),
    )
}

async fn asset(path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    // Only the static/ folder is public under this prefix; pages have their own routes.
    serve(&format!("static/{path}")).unwrap_or_else(|| error_page(StatusCode::NOT_FOUND, "Not found", "There is no such file."))
}

/// `/m/ROOM`: the meeting page, if the meeting exists. The invite rides in the fragment,
/// which never reaches the server: the page's script checks it through the API.
async fn meeting(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let raw = path.into_inner();
    let room = match RoomName::normalize(&raw) {
        Ok(room) => room,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Not a meeting address", &format!("{}. Check the link you were given.", e.0)),
    };
    if room.as_str() != raw {
        // Browsers keep the fragment (the invite) across a redirect.
        return HttpResponse::PermanentRedirect().insert_header((LOCATION, format!("/m/{room}"))).finish();
    }
    let r = room.to_string();
    match state.db(move |s| s.meeting(&r)).await {
        Ok(Some(_)) => page("meeting.html").await,
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            "No such meeting",
            &format!("There is no meeting named \u{201c}{room}\u{201d} on this server. Check the link, or ask the person who invited you."),
        ),
        Err(e) => error_page(e.status, "Error", &e.message),
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    error_page(StatusCode::NOT_FOUND, "Not found", &format!("There is no page at {}.", req.path()))
}

/// A page that explains an error. `message` is escaped: it may quote what the visitor sent.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let template =
        Assets::get("error.html").map(|f| String::from_utf8_lossy(&f.data).into_owned()).unwrap_or_else(|| "<h1>{{title}}</h1><p>{{message}}</p>".into());
    let body = template.replace("{{title}}", &escape_html(title)).replace("{{message}}", &escape_html(message));
    HttpResponse::build(status).insert_header((CONTENT_TYPE, "text/html; charset=utf-8")).body(body)
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(super::escape_html("<img src=x onerror='a'>&"), "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;");
    }
}
