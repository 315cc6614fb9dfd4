//! The witness's HTTP side: `POST /add-checkpoint`, bounded bodies, answers with the
//! statuses C2SP tlog-witness gives, and a log line of only the outcome's code.

use super::{Refusal, Witness, WitnessConfig, WitnessError};
use actix_web::{web, App, HttpResponse, HttpServer};
use std::sync::Arc;
use std::time::Duration;

/// An add-checkpoint body: 63 proof lines and a checkpoint with its signatures fit in
/// far less.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A whole body arrives within this, or the request is refused.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Connections at once: a witness answers a few logs, not the world.
const MAX_CONNECTIONS: usize = 256;

/// Starts the witness from its configuration and serves until stopped.
pub fn serve(config: &WitnessConfig) -> Result<(), WitnessError> {
    let refused = |e| WitnessError::Server(std::io::Error::other(e));
    crate::process::harden().map_err(refused)?;
    crate::process::check_user(config.allow_root).map_err(refused)?;
    let witness = Arc::new(Witness::open(config)?);
    tracing::info!(logs = config.logs.len(), "witness ready");
    let listen = config.listen.clone();
    actix_web::rt::System::new()
        .block_on(async move {
            let data = web::Data::from(witness);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .route("/add-checkpoint", web::post().to(add_checkpoint))
            })
            .client_request_timeout(Duration::from_secs(10))
            .keep_alive(Duration::from_secs(15))
            .shutdown_timeout(5)
            .workers(1)
            .max_connections(MAX_CONNECTIONS)
            .bind(&listen)?;
            for addr in server.addrs() {
                tracing::info!(address = %addr, "witness is listening");
            }
            server.run().await
        })
        .map_err(WitnessError::Server)
}

/// Seconds since the epoch, by this host's clock.
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
}

async fn add_checkpoint(witness: web::Data<Witness>, payload: web::Payload) -> HttpResponse {
    // A body that trickles is cut off: a stranger cannot hold a connection open.
    let body =
        match tokio::time::timeout(BODY_DEADLINE, payload.to_bytes_limited(MAX_BODY_BYTES)).await {
            Ok(Ok(Ok(body))) => body,
            Ok(Ok(Err(_))) => return HttpResponse::BadRequest().body("incomplete_body\n"),
            Ok(Err(_)) => {
                return HttpResponse::PayloadTooLarge().body("body_too_large: at most 64 KiB\n")
            }
            Err(_) => return HttpResponse::RequestTimeout().body("body_too_slow\n"),
        };
    let witness = witness.into_inner();
    let answer =
        actix_web::rt::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
    match answer {
        Ok(Ok(cosignature)) => {
            tracing::info!(code = "cosigned", "add-checkpoint");
            HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(cosignature)
        }
        Ok(Err(Ok(refusal))) => {
            tracing::info!(code = refusal.code(), "add-checkpoint");
            refused(&refusal)
        }
        Ok(Err(Err(e))) => {
            tracing::error!(error = %e, "add-checkpoint failed; nothing was cosigned");
            HttpResponse::InternalServerError().body("internal error: nothing was cosigned\n")
        }
        Err(_) => HttpResponse::InternalServerError().body("internal error\n"),
    }
}

fn refused(refusal: &Refusal) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(refusal.status())
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    let mut response = HttpResponse::build(status);
    match refusal {
        // The size this witness holds, for the log to prove from (C2SP tlog-witness).
        Refusal::Conflict(size) => {
            response.content_type("text/x.tlog.size").body(format!("{size}\n"))
        }
        other => response
            .content_type("text/plain; charset=utf-8")
            .body(format!("{}: {other}\n", other.code())),
    }
}
