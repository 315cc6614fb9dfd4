//! The intake: the actix-web app survivors talk to. Routes, streaming uploads, limits,
//! pages. Never records who connects: no addresses, agents, referrers or queries.

pub mod activity;
mod api;
pub mod contract;
pub mod error;
pub mod followup;
mod handoff;
mod pages;
pub mod resumable;
mod scripts;
pub mod sealed;
mod tus;
pub mod upload;

use crate::config::Config;
use crate::keys::LiveRecipients;
use crate::store::Store;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, DefaultHeaders, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use error::IntakeError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every request handler shares.
pub struct Intake {
    pub config: Config,
    /// Replaced on SIGHUP; each upload keeps the set it started with.
    pub recipients: Arc<LiveRecipients>,
    pub store: Arc<Store>,
    pub followup: followup::FollowUp,
    /// The upload and text lanes, and this hour's traffic.
    pub activity: Arc<activity::Activity>,
    /// Set when `replication.ack = "replicated"`: each acknowledgement waits for the
    /// submission to be in this many replicas, up to the deadline.
    pub ack_wait: Option<crate::replication::AckWait>,
    /// Resumable uploads between their requests (in memory only: a restart ends them).
    pub uploads: Arc<resumable::Uploads>,
}

/// Headers on every response: nothing leaves the page, nothing is cached, no framing.
const SECURITY_HEADERS: [(&str, &str); 8] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    (
        "Permissions-Policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), \
         hid=(), midi=(), magnetometer=(), gyroscope=(), accelerometer=(), ambient-light-sensor=(), \
         display-capture=(), fullscreen=(), screen-wake-lock=(), publickey-credentials-get=(), \
         interest-cohort=(), browsing-topics=()",
    ),
];

/// Runs the intake until SIGINT/SIGTERM. The store must already be swept.
pub async fn serve(intake: Intake) -> std::io::Result<()> {
    let listen = intake.config.listen.clone();
    let onion_location = intake.config.onion_location.clone();
    // The connection cap is per worker thread: one worker per core, the cap shared out.
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let connections_per_worker = intake.config.limits.max_connections.div_ceil(workers);
    // SIGHUP re-reads the recipients file (key rotation without dropping uploads).
    // Registered before listening: SIGHUP's default action would end the server.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let live = intake.recipients.clone();
    actix_web::rt::spawn(async move {
        while hangup.recv().await.is_some() {
            let live = live.clone();
            let _ = actix_web::rt::task::spawn_blocking(move || live.reload()).await;
        }
    });
    // Every minute: the hour's traffic line is written once its hour is over, requests
    // or not, and uploads whose time to resume ran out are ended, their ciphertext
    // deleted.
    let (activity, uploads) = (intake.activity.clone(), intake.uploads.clone());
    actix_web::rt::spawn(async move {
        let mut minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            minute.tick().await;
            activity.roll_hour();
            uploads.sweep();
        }
    });
    let intake = web::Data::new(intake);
    let server = HttpServer::new(move || {
        let mut headers = DefaultHeaders::new();
        for header in SECURITY_HEADERS {
            headers = headers.add(header);
        }
        if let Some(onion) = &onion_location {
            // Tor Browser offers to switch to the onion service.
            headers = headers.add(("Onion-Location", onion.as_str()));
        }
        App::new()
            .app_data(intake.clone())
            .wrap(from_fn(log_request))
            .wrap(headers)
            .configure(routes)
    })
    // Slow or idle clients must not hold connections (uploads have their own timeout).
    .client_request_timeout(Duration::from_secs(10))
    .keep_alive(Duration::from_secs(15))
    .shutdown_timeout(10)
    .workers(workers)
    .max_connections(connections_per_worker)
    .bind(&listen)?;
    for addr in server.addrs() {
        tracing::info!(address = %addr, "amanat is listening");
    }
    server.run().await
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/api/v1/submissions", web::post().to(api::submit))
        .route("/api/v1/sealed", web::post().to(api::sealed))
        .route("/api/v1/openapi.json", web::get().to(contract::openapi))
        .configure(tus::routes)
        .configure(scripts::routes)
        .configure(pages::routes)
        .configure(followup::routes)
        .default_service(web::to(not_found));
}

/// `200 ok` while the store takes durable writes and uploads are accepted; `503` with
/// the reason when either is not so: every upload slot taken (a monitor must see what
/// survivors see), or the store not writable. No counts: anyone can ask, and a live
/// count of sign-ins or uploads, polled, would tell a watcher of the network when a
/// survivor is using the service. `amanat status` has the counts.
async fn healthz(intake: web::Data<Intake>) -> HttpResponse {
    let store = intake.store.clone();
    let result = actix_web::rt::task::spawn_blocking(move || store.check_writable()).await;
    let saturated = intake.activity.saturation().saturated;
    match result {
        Ok(Ok(())) if !saturated => HttpResponse::Ok().content_type("text/plain").body("ok\n"),
        Ok(Ok(())) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("busy: every upload slot is taken\n"),
        _ => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("store not writable\n"),
    }
}

async fn not_found(req: actix_web::HttpRequest, intake: web::Data<Intake>) -> HttpResponse {
    if req.path().starts_with("/api/") {
        api::error_response(&intake, IntakeError::NotFound)
    } else {
        // No route matched, so the language is read from the path's first segment.
        let segment = req.path().split('/').nth(1).unwrap_or("");
        let lang = crate::i18n::Lang::from_code(segment)
            .or_else(|| pages::page_lang(&req))
            .unwrap_or(crate::i18n::Lang::Ru);
        pages::error_page(&intake, lang, IntakeError::NotFound, None)
    }
}

/// The error code of a refused request, for the request log.
#[derive(Clone, Copy)]
struct LoggedCode(&'static str);

/// Counts every request into the hour's traffic line (`activity`), and only at the
/// `debug` level logs it on its own line: method, route pattern (never the raw path or
/// query), status, latency, sizes. Never who, never what.
async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // Only standard methods by name: an invented one is client text.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "OPTIONS" | "PATCH") => m.to_string(),
        _ => "OTHER".to_string(),
    };
    let bytes_in = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let activity = req.app_data::<web::Data<Intake>>().map(|i| i.activity.clone());
    let response = next.call(req).await?;
    let code = response.response().extensions().get::<LoggedCode>().map(|c| c.0);
    let bytes_out = match response.response().body().size() {
        actix_web::body::BodySize::Sized(n) => Some(n),
        _ => None,
    };
    if let Some(activity) = activity {
        activity.count(code, bytes_in.unwrap_or(0), bytes_out.unwrap_or(0));
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".into());
        tracing::debug!(
            method = %method,
            route = %route,
            status = response.status().as_u16(),
            code = code.unwrap_or("-"),
            ms = started.elapsed().as_millis() as u64,
            bytes_in = bytes_in.unwrap_or(0),
            bytes_out = bytes_out.unwrap_or(0),
            "request"
        );
    }
    Ok(response)
}

/// Marks a refusal for the log and closes the connection: the rest of a refused
/// upload is never read, and an unread body cannot confuse the next request.
fn refusal(mut response: HttpResponse, error: IntakeError) -> HttpResponse {
    response.extensions_mut().insert(LoggedCode(error.code()));
    if let Some(secs) = error.retry_after() {
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from(secs),
        );
    }
    response.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    response
}
