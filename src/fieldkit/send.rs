//! `amanat send`: the field kit's one step on a network. Sealed files (already ciphertext
//! to the coalition) go to a server's resumable uploads (`/api/v1/uploads`, tus 1.0,
//! `kind sealed`) in pieces, through Tor when asked, picking up where a dropped link
//! left off until each is whole; then `/api/v1/sealed` records it and answers with the
//! receipt. The server checks each sealed file as it arrives; this side checks first that
//! a file is one `amanat seal` made, so a photo or a video never leaves in the clear.
//!
//! tus's client side is three requests (POST, HEAD, PATCH): written here on ureq, the
//! HTTP client already in the tree, because the Rust tus clients are unmaintained or
//! unfinished. Nothing cryptographic happens here.

use crate::bundle::sealed::SealedFile;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

const TUS_VERSION: &str = "1.0.0";
/// `Upload-Metadata` for a sealed file: `kind` is `sealed` (base64). No file name is
/// sent: a name a volunteer gave could say who or where.
const SEALED_METADATA: &str = "kind c2VhbGVk";
/// The server's answers are small JSON documents (a receipt, an error).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a file was not delivered.
#[derive(Debug)]
pub enum SendError {
    /// The address is not one this client may send to (see `Server::new`).
    Address(String),
    /// The file is not a sealed file, or cannot be read.
    NotSealed(String),
    /// The server refused it for good: its code and message.
    Refused { status: u16, code: String, message: String },
    /// The server answered what a tus server of amanat's would not.
    Protocol(String),
    /// Gave up after `--give-up-after` without progress.
    GaveUp(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Address(why) | SendError::NotSealed(why) | SendError::Protocol(why) => {
                f.write_str(why)
            }
            SendError::Refused { status, code, message } => {
                write!(f, "the server refused it ({status} {code}): {message}")
            }
            SendError::GaveUp(last) => write!(f, "gave up without progress; last: {last}"),
        }
    }
}

impl std::error::Error for SendError {}

/// What happened on the way, for the progress bar and the volunteer.
pub enum Event<'a> {
    /// Bytes of the file the server has, of its length.
    Sent { sent: u64, total: u64 },
    /// A try failed and the next comes after `wait`.
    Retrying { wait: Duration, why: &'a str },
    /// The server no longer had the upload (it restarted, or its time ran out): the
    /// file goes again from its first byte.
    StartedOver,
}

/// A server's answer to a delivered sealed file.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct Delivered {
    pub id: String,
    pub received_at: String,
    pub already_imported: bool,
    /// The receipt: proof of the submission's place in the server's signed intake log.
    pub receipt: serde_json::Value,
}

/// A server to send to, and the way there.
pub struct Server {
    agent: ureq::Agent,
    base: String,
    give_up_after: Option<Duration>,
}

/// An upload under way: its address, and its offset when known.
struct Upload {
    url: String,
    offset: Option<u64>,
}

/// What one request did.
enum Step {
    /// The server recorded the file.
    Recorded(Delivered),
    /// The upload was made or grew.
    Moved,
    /// Only learned where the upload stands.
    Asked,
}

/// The server no longer has the upload: the file goes again from its first byte.
fn started_over(upload: &mut Option<Upload>, events: &mut impl FnMut(Event<'_>)) {
    *upload = None;
    events(Event::StartedOver);
}

/// One try's outcome that is not an answer: worth trying again, or not.
enum Failure {
    Again(String, Option<Duration>),
    Final(SendError),
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Failure {
        Failure::Final(e)
    }
}

impl Server {
    /// `to` is the server's address: `http://<name>.onion` (through `proxy`, Tor's
    /// SocksPort as `socks5h://`, so that Tor resolves the name), or a loopback address
    /// (a tunnel, a test). Any other plain-HTTP address would show everyone on the path
    /// that this laptop sends to that server, and is refused.
    pub fn new(
        to: &str,
        proxy: Option<&str>,
        give_up_after: Option<Duration>,
    ) -> Result<Server, SendError> {
        let (base, place) = private_address(to).ok_or_else(|| {
            SendError::Address(format!(
                "{to}: give the server's onion address (http://<56 letters and digits>.onion) \
                 or a loopback address (http://127.0.0.1:PORT); a plain-HTTP upload anywhere \
                 else would show the network where this laptop sends"
            ))
        })?;
        let proxy = match proxy {
            Some(url) => {
                let loopback = url
                    .strip_prefix("socks5h://")
                    .and_then(|rest| private_address(&format!("http://{rest}")))
                    .is_some_and(|(_, place)| place == Place::Loopback);
                if !loopback {
                    return Err(SendError::Address(format!(
                        "--proxy {url}: give Tor's SocksPort on this machine as \
                         socks5h://127.0.0.1:9050, so that Tor resolves the server's name \
                         (socks5:// would ask the local DNS, which the network sees)"
                    )));
                }
                Some(
                    ureq::Proxy::new(url)
                        .map_err(|e| SendError::Address(format!("--proxy: {e}")))?,
                )
            }
            None if place == Place::Onion => {
                return Err(SendError::Address(format!(
                    "{to} is an onion service: give --proxy socks5h://127.0.0.1:9050 (Tor)"
                )))
            }
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .user_agent(ureq::config::AutoHeaderValue::None)
            // A link that dies unseen shows as no bytes moving; Tor's circuits are slow
            // to build.
            .timeout_connect(Some(Duration::from_secs(120)))
            .timeout_per_write(Some(Duration::from_secs(90)))
            .timeout_per_read(Some(Duration::from_secs(180)))
            // A server that trickles its answer does not hold the volunteer for ever.
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .timeout_recv_body(Some(Duration::from_secs(300)))
            .build()
            .into();
        Ok(Server { agent, base, give_up_after })
    }

    /// Sends one sealed file in pieces of `piece` bytes until the server has it whole
    /// and has recorded it, trying again after every failure that is not a refusal.
    pub fn send(
        &self,
        path: &Path,
        piece: usize,
        mut events: impl FnMut(Event<'_>),
    ) -> Result<Delivered, SendError> {
        let sealed = SealedFile::open(path).map_err(|e| {
            SendError::NotSealed(format!(
                "{}: not a sealed file ({e}); amanat send sends only files made by amanat seal",
                path.display()
            ))
        })?;
        if let Some(missing) = sealed.missing() {
            return Err(SendError::NotSealed(format!(
                "{}: the sealed file is damaged ({missing}); send another copy of it",
                path.display()
            )));
        }
        let bound = sealed.bound_id();
        let mut file = File::open(path)
            .map_err(|e| SendError::NotSealed(format!("{}: {e}", path.display())))?;
        let total = file
            .metadata()
            .map_err(|e| SendError::NotSealed(format!("{}: {e}", path.display())))?
            .len();
        let mut buffer = vec![0u8; piece];
        let mut upload: Option<Upload> = None;
        let mut tries = Tries::new(self.give_up_after);
        loop {
            let step = self.step(&mut upload, &mut file, total, &mut buffer, &mut events);
            match step {
                Ok(Step::Recorded(delivered)) if delivered.id == bound => return Ok(delivered),
                Ok(Step::Recorded(delivered)) => {
                    return Err(SendError::Protocol(format!(
                        "the server answered for submission {}, not this file's {bound}",
                        delivered.id
                    )))
                }
                Ok(Step::Moved) => tries.progressed(),
                Ok(Step::Asked) => {}
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Again(why, asked)) => {
                    // After a failure, the server's offset is asked before the next piece;
                    // a whole upload is only asked again to be recorded (its answer may
                    // be what was lost).
                    if let Some(upload) = upload.as_mut().filter(|u| u.offset != Some(total)) {
                        upload.offset = None;
                    }
                    let wait = tries.failed(&why, asked)?;
                    events(Event::Retrying { wait, why: &why });
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// One request: creating the upload, asking its offset, a piece, or recording it.
    fn step(
        &self,
        upload: &mut Option<Upload>,
        file: &mut File,
        total: u64,
        buffer: &mut [u8],
        events: &mut impl FnMut(Event<'_>),
    ) -> Result<Step, Failure> {
        let Some(current) = upload else {
            *upload = Some(Upload { url: self.create(total)?, offset: Some(0) });
            events(Event::Sent { sent: 0, total });
            // Not progress: only bytes the server keeps are.
            return Ok(Step::Asked);
        };
        let Some(offset) = current.offset else {
            match self.offset(&current.url)? {
                Some(offset) => {
                    current.offset = Some(offset);
                    events(Event::Sent { sent: offset, total });
                }
                // Gone: the server restarted or the upload's time ran out.
                None => started_over(upload, events),
            }
            return Ok(Step::Asked);
        };
        if offset == total {
            if let Some(delivered) = self.record(&current.url)? {
                return Ok(Step::Recorded(delivered));
            }
            started_over(upload, events);
            return Ok(Step::Asked);
        }
        let n = ((total - offset) as usize).min(buffer.len());
        let read = (|| {
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut buffer[..n])
        })();
        read.map_err(|e| Failure::Final(SendError::NotSealed(format!("cannot read it: {e}"))))?;
        let response = self
            .agent
            .patch(&current.url)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Upload-Offset", offset.to_string())
            .content_type("application/offset+octet-stream")
            .send(&buffer[..n]);
        let answer = answer(response)?;
        match (answer.status, answer.offset) {
            // A cut or slow request answers 204 too, with what arrived.
            (204, Some(new_offset)) if new_offset > offset && new_offset <= total => {
                current.offset = Some(new_offset);
                events(Event::Sent { sent: new_offset, total });
                Ok(Step::Moved)
            }
            (204, _) => Err(Failure::Again("the piece did not arrive".into(), None)),
            // Another request of ours, cut, still held it, or the offset moved: ask again.
            (409 | 423, _) => Err(Failure::Again("the upload is busy".into(), None)),
            (404, _) => {
                started_over(upload, events);
                Ok(Step::Asked)
            }
            _ => Err(answer.refusal()),
        }
    }

    /// `POST /api/v1/uploads`: a new upload of `total` bytes; its address.
    fn create(&self, total: u64) -> Result<String, Failure> {
        let response = self
            .agent
            .post(format!("{}/api/v1/uploads", self.base))
            .header("Tus-Resumable", TUS_VERSION)
            .header("Upload-Length", total.to_string())
            .header("Upload-Metadata", SEALED_METADATA)
            .send_empty();
        let answer = answer(response)?;
        if answer.status != 201 {
            return Err(answer.refusal());
        }
        let location = answer.location.as_deref().ok_or_else(|| {
            SendError::Protocol("the server made an upload without a Location".into())
        })?;
        // Only an upload on the same server: a Location elsewhere is not followed.
        match location.strip_prefix('/') {
            Some(path) if path.starts_with("api/v1/uploads/") => {
                Ok(format!("{}/{path}", self.base))
            }
            _ => Err(SendError::Protocol(format!(
                "the server put the upload elsewhere ({location:?}); not followed"
            ))
            .into()),
        }
    }

    /// `HEAD`: how much of the upload the server has, or `None` when it has none of it.
    fn offset(&self, url: &str) -> Result<Option<u64>, Failure> {
        let answer = answer(self.agent.head(url).header("Tus-Resumable", TUS_VERSION).call())?;
        match answer.status {
            200 => answer
                .offset
                .map(Some)
                .ok_or_else(|| SendError::Protocol("HEAD gave no Upload-Offset".into()).into()),
            404 | 410 => Ok(None),
            _ => Err(answer.refusal()),
        }
    }

    /// `POST /api/v1/sealed` naming the whole upload: the server records it. `None`
    /// when the server no longer has the upload (it goes again).
    fn record(&self, url: &str) -> Result<Option<Delivered>, Failure> {
        let id = url.rsplit('/').next().unwrap_or_default();
        let body = serde_json::json!({ "upload": id }).to_string();
        let response = self
            .agent
            .post(format!("{}/api/v1/sealed", self.base))
            .content_type("application/json")
            .send(body.as_bytes());
        let answer = answer(response)?;
        match answer.status {
            200 | 201 => serde_json::from_str(&answer.body).map(Some).map_err(|e| {
                Failure::Final(SendError::Protocol(format!("the server's receipt: {e}")))
            }),
            404 => Ok(None),
            // Its last piece still being made durable, or another try of ours under way.
            409 | 423 => Err(Failure::Again("the upload is being finished".into(), None)),
            _ => Err(answer.refusal()),
        }
    }
}

/// Where a server is, when the path there is private.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Onion,
    Loopback,
}

/// `to` without a trailing slash, if it is `http://` to an onion service (v3: 56 base32
/// letters and digits) or to a loopback IP address, with no user part, path, query or
/// fragment; and which of the two it is.
fn private_address(to: &str) -> Option<(String, Place)> {
    let base = to.trim_end_matches('/');
    let authority = base.strip_prefix("http://")?;
    if authority.is_empty() || authority.contains(['@', '/', '?', '#', '\\']) {
        return None;
    }
    let uri: ureq::http::Uri = base.parse().ok()?;
    let host = uri.host()?;
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let place = if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        ip.is_loopback().then_some(Place::Loopback)?
    } else {
        let label = name.to_ascii_lowercase();
        let label = label.strip_suffix(".onion")?;
        let v3 = label.len() == 56 && label.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
        v3.then_some(Place::Onion)?
    };
    Some((base.to_string(), place))
}

/// What the server answered one request: its status, the headers this client reads,
/// and its body (small JSON, capped).
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    /// `Upload-Offset`, where the answer gives one.
    offset: Option<u64>,
    location: Option<String>,
    body: String,
}

/// The answer to a request; a failure to reach the server, or to read all of its
/// answer, is worth trying again.
fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, Failure> {
    let again = |e: &dyn std::fmt::Display| Failure::Again(e.to_string(), None);
    let mut response = response.map_err(|e| again(&e))?;
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string())
    };
    let retry_after = header("retry-after").and_then(|v| v.parse().ok()).map(Duration::from_secs);
    let offset = header("upload-offset").and_then(|v| v.parse().ok());
    let location = header("location");
    let mut body = String::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_ANSWER_BYTES)
        .read_to_string(&mut body)
        .map_err(|e| again(&e))?;
    Ok(Answer { status: response.status().as_u16(), retry_after, offset, location, body })
}

impl Answer {
    fn refusal(&self) -> Failure {
        refusal(self.status, &self.body, self.retry_after)
    }
}

/// A refusal: for good when it is the request's fault (4xx, but the server's slow and
/// busy answers), else worth trying again (5xx: busy, full, restarting).
fn refusal(status: u16, body: &str, retry_after: Option<Duration>) -> Failure {
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: Details,
    }
    #[derive(serde::Deserialize)]
    struct Details {
        code: String,
        message: String,
    }
    let (code, message) = match serde_json::from_str::<Refusal>(body) {
        Ok(Refusal { error }) => (error.code, error.message),
        Err(_) => (String::new(), String::new()),
    };
    if status >= 500 || status == 408 || status == 429 {
        let why = if code.is_empty() { format!("the server answered {status}") } else { code };
        return Failure::Again(why, retry_after);
    }
    Failure::Final(SendError::Refused { status, code, message })
}

/// Waits between tries: longer after each failure in a row, up to a minute, and the
/// server's `Retry-After` when it gives one. Gives up only when asked to, after that
/// long without progress.
struct Tries {
    failures: u32,
    since_progress: Duration,
    give_up_after: Option<Duration>,
}

impl Tries {
    fn new(give_up_after: Option<Duration>) -> Tries {
        Tries { failures: 0, since_progress: Duration::ZERO, give_up_after }
    }

    fn progressed(&mut self) {
        self.failures = 0;
        self.since_progress = Duration::ZERO;
    }

    fn failed(&mut self, why: &str, asked: Option<Duration>) -> Result<Duration, SendError> {
        self.failures += 1;
        let backoff = Duration::from_secs(1 << self.failures.min(6)).min(MAX_BACKOFF);
        let wait = asked.unwrap_or(backoff).min(MAX_BACKOFF * 10);
        if self.give_up_after.is_some_and(|limit| self.since_progress + wait > limit) {
            return Err(SendError::GaveUp(why.to_string()));
        }
        self.since_progress += wait;
        Ok(wait)
    }
}
