//! The form's only scripts, for browsers that run them: tus-js-client (vendored from
//! the npm registry, pinned in `vendor/tus-js-client/package-lock.json`) and our own
//! `amanat-upload.js`, which sends the form's files resumably. Both are served from the
//! server itself and pinned in the page by their SHA-384 (Subresource Integrity); only
//! the pages that load them widen the Content-Security-Policy, to `script-src 'self'`
//! and `connect-src 'self'`. The form works the same without them.

use actix_web::http::header::{HeaderValue, CONTENT_SECURITY_POLICY};
use actix_web::{web, HttpResponse};
use base64::Engine as _;
use sha2::{Digest, Sha384};
use std::sync::LazyLock;

const TUS: &[u8] = include_bytes!("static/tus.min.js");
const OURS: &[u8] = include_bytes!("static/amanat-upload.js");

/// The policy of a page that loads the scripts: the intake's own, plus scripts and
/// requests to this server only.
const POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                      style-src 'self'; img-src 'self'; form-action 'self'; \
                      frame-ancestors 'none'; base-uri 'none'";

/// The scripts' integrity values, as a page's `integrity` attributes give them.
pub struct Integrity {
    pub tus: String,
    pub ours: String,
}

pub static INTEGRITY: LazyLock<Integrity> =
    LazyLock::new(|| Integrity { tus: sri(TUS), ours: sri(OURS) });

fn sri(bytes: &[u8]) -> String {
    let digest = Sha384::digest(bytes);
    format!("sha384-{}", base64::engine::general_purpose::STANDARD.encode(digest))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/tus.min.js", web::get().to(|| async { script(TUS) }))
        .route("/static/amanat-upload.js", web::get().to(|| async { script(OURS) }));
}

fn script(body: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok().content_type("text/javascript; charset=utf-8").body(body)
}

/// A page that loads the scripts: its policy lets them run (and nothing else).
pub fn allowing_scripts(mut page: HttpResponse) -> HttpResponse {
    page.headers_mut().insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    page
}
