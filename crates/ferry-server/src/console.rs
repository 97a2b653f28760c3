//! The web console: one page and its two assets, embedded in the binary (no CDN, works offline),
//! served with a Content-Security-Policy that allows nothing but this server.

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The page, with where the admin token is (`<meta name="ferry-admin-token">`, read by the
/// sign-in page): the path an operator needs to sign in the first time, nothing more.
async fn index(State(st): State<AppState>) -> impl IntoResponse {
    let meta = format!(
        r#"<meta name="ferry-admin-token" content="{}">"#,
        attribute(&st.admin_token_source)
    );
    let body = INDEX.replacen("<!-- ferry-admin-token -->", &meta, 1);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// Text made safe inside a double-quoted HTML attribute.
fn attribute(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_cannot_leave_its_attribute() {
        assert_eq!(
            super::attribute(r#"/srv/"x"<script>&"#),
            "/srv/&quot;x&quot;&lt;script&gt;&amp;"
        );
    }
}
