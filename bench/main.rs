//! amanat's benchmarks: each figure measured beside its reference, in the same run, on
//! the same machine, as a ratio; the median of several runs. `bench/run.sh` runs them
//! all and writes BENCHMARKS.md; `--tiny` is one small round of each (CI runs it to keep
//! the harness working; nothing anywhere depends on its timings).
//!
//! The server is the real `amanat serve` on loopback with three coalition recipients,
//! driven over HTTP by plain sockets (the test harness's client).

#[path = "../tests/it/common/mod.rs"]
mod common;
mod quorum;
mod replication;
mod resumable;
mod scale;
mod search;

use common::{Coalition, Server};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// The plot of the scale figures, in `bench/`, linked from BENCHMARKS.md.
const SCALE_PLOT: &str = "scale.svg";

/// How big each benchmark is: the real round, or a tiny one that only proves the
/// harness still runs.
struct Scale {
    large_bytes: u64,
    large_runs: usize,
    /// One upload counted by callgrind (about fifty times slower than natively).
    callgrind_bytes: u64,
    memory_clients: usize,
    memory_sizes: Vec<u64>,
    small_clients: usize,
    small_duration: Duration,
    small_runs: usize,
    review_files: Vec<(usize, u64)>,
    review_runs: usize,
    storage_submissions: usize,
    replica_clients: usize,
    replica_bytes: u64,
    replica_runs: usize,
    search_cases: Vec<usize>,
    search_runs: usize,
    /// Store sizes the scale figures are measured at, the first the reference.
    scale_sizes: Vec<usize>,
    scale_receipts: usize,
    /// Submissions new since the last export at each size, the rest exported before.
    scale_newest: usize,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            large_bytes: 1 << 30,
            large_runs: 3,
            callgrind_bytes: 64 * MIB,
            memory_clients: 16,
            memory_sizes: vec![64 * MIB, 256 * MIB],
            small_clients: 32,
            small_duration: Duration::from_secs(20),
            small_runs: 3,
            // About 1 GiB of evidence in mixed sizes, one file per submission.
            review_files: vec![(4, 128 * MIB), (48, 8 * MIB), (256, 512 * 1024)],
            review_runs: 3,
            storage_submissions: 10_000,
            replica_clients: 16,
            replica_bytes: 64 * MIB,
            replica_runs: 3,
            search_cases: vec![300, 10_000],
            search_runs: 10,
            scale_sizes: vec![10_000, 100_000, 1_000_000],
            scale_receipts: 20,
            scale_newest: 10_000,
        }
    }

    fn tiny() -> Scale {
        Scale {
            large_bytes: 8 * MIB,
            large_runs: 1,
            callgrind_bytes: MIB,
            memory_clients: 2,
            memory_sizes: vec![4 * MIB],
            small_clients: 4,
            small_duration: Duration::from_secs(1),
            small_runs: 1,
            review_files: vec![(2, 2 * MIB), (4, 256 * 1024)],
            review_runs: 1,
            storage_submissions: 50,
            replica_clients: 2,
            replica_bytes: 4 * MIB,
            replica_runs: 1,
            search_cases: vec![30],
            search_runs: 1,
            scale_sizes: vec![100, 300],
            scale_receipts: 2,
            scale_newest: 50,
        }
    }
}

/// One line of the results table.
struct Figure {
    name: String,
    amanat: String,
    reference: String,
    ratio: String,
    goal: String,
    met: Option<bool>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tiny = args.iter().any(|a| a == "--tiny");
    let markdown = args.iter().position(|a| a == "--markdown").map(|i| PathBuf::from(&args[i + 1]));
    let only: Vec<&str> = args
        .iter()
        .position(|a| a == "--only")
        .map_or(vec![], |i| args[i + 1].split(',').collect());
    let scale = if tiny { Scale::tiny() } else { Scale::full() };
    let want = |name: &str| only.is_empty() || only.contains(&name);

    let mut figures = Vec::new();
    let started = Instant::now();
    if want("large") {
        figures.extend(large_upload(&scale));
        figures.push(instructions_per_byte(&scale));
    }
    if want("memory") {
        figures.extend(memory(&scale));
    }
    if want("small") {
        figures.extend(small_testimonies(&scale));
    }
    if want("review") {
        figures.push(review(&scale));
    }
    if want("storage") {
        figures.push(storage(&scale));
    }
    if want("replication") {
        figures.extend(replication::figures(&scale));
    }
    if want("search") {
        figures.extend(search::figures(&scale));
    }
    if want("quorum") {
        figures.push(quorum::figure(&scale));
    }
    if want("resumable") {
        figures.push(resumable::figure(&scale));
    }
    let mut plot = None;
    if want("scale") {
        let scaled = scale::figures(&scale);
        figures.extend(scaled.figures);
        plot = Some(scaled.plot);
    }
    let table = render(&figures, tiny, started.elapsed());
    println!("{table}");
    // BENCHMARKS.md holds only whole, real rounds.
    match markdown {
        Some(path) if !tiny && only.is_empty() => {
            std::fs::write(&path, table).unwrap();
            eprintln!("wrote {}", path.display());
            let svg = path.with_file_name("bench").join(SCALE_PLOT);
            std::fs::write(&svg, plot.expect("a full round measures the scale")).unwrap();
            eprintln!("wrote {}", svg.display());
        }
        Some(_) => eprintln!("BENCHMARKS.md is written only by a full round"),
        None => {}
    }
    // A round whose figures were all measured succeeded, whatever they are.
}

// ---------- the figures ----------

/// Figure 1: One large file until the 201 (durable), against `age -R` on the same bytes.
fn large_upload(scale: &Scale) -> Vec<Figure> {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let evidence = dir.path().join("evidence.bin");
    write_random_file(&evidence, scale.large_bytes);
    let (mut reference, mut reference_cpu) = (Vec::new(), Vec::new());
    let (mut ours, mut ours_cpu) = (Vec::new(), Vec::new());
    for _ in 0..scale.large_runs {
        let out = dir.path().join("out.age");
        let before = children_cpu_seconds();
        reference.push(time(|| {
            let status = Command::new("age")
                .arg("-R")
                .arg(&coalition.recipients_file)
                .arg("-o")
                .arg(&out)
                .arg(&evidence)
                .status()
                .expect("Debian's age is installed");
            assert!(status.success());
        }));
        reference_cpu.push(children_cpu_seconds() - before);
        std::fs::remove_file(&out).unwrap();

        let data = dir.path().join("data");
        let server = Server::start_with_data(dir.path(), &data, &coalition, "");
        let before = cpu_seconds(server.pid());
        ours.push(time(|| upload_file(server.addr, &evidence)));
        ours_cpu.push(cpu_seconds(server.pid()) - before);
        drop(server);
        std::fs::remove_dir_all(&data).unwrap();
    }
    let (ours, reference) = (median(ours), median(reference));
    let gib = scale.large_bytes as f64 / (1u64 << 30) as f64;
    let median_f = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / gib
    };
    let (ours_cpu, reference_cpu) = (median_f(ours_cpu), median_f(reference_cpu));
    let ratio = secs(ours) / secs(reference);
    vec![
        Figure {
            name: format!("Large evidence: one {} file to 201 (durable)", human(scale.large_bytes)),
            amanat: format!("{:.2} s ({:.0} MiB/s)", secs(ours), rate_mib(scale.large_bytes, ours)),
            reference: format!("`age -R` to a file: {:.2} s", secs(reference)),
            ratio: format!("{ratio:.2}x"),
            goal: "at most 1.6x".into(),
            met: Some(ratio <= 1.6),
        },
        // CPU time holds where wall time on a shared machine drifts; the client's share
        // of the two cores is not in it.
        Figure {
            name: "Large evidence: server CPU per GiB (utime + stime)".into(),
            amanat: format!("{ours_cpu:.2} CPU-s"),
            reference: format!("`age -R`: {reference_cpu:.2} CPU-s"),
            ratio: format!("{:.2}x", ours_cpu / reference_cpu),
            goal: "at most 3.0 CPU-s".into(),
            met: Some(ours_cpu <= 3.0),
        },
    ]
}

/// Figure 2: The server's peak memory while many clients upload at once.
fn memory(scale: &Scale) -> Vec<Figure> {
    let mut figures = Vec::new();
    for &size in &scale.memory_sizes {
        let dir = tempfile::tempdir().unwrap();
        let coalition = Coalition::new(dir.path(), 3);
        let server = Server::start(dir.path(), &coalition, "max_submission_bytes = 4294967296");
        let idle = common::peak_memory_kib(server.pid());
        let addr = server.addr;
        let clients: Vec<_> = (0..scale.memory_clients)
            .map(|seed| {
                std::thread::spawn(move || {
                    upload_generated(addr, size, seed as u64 + 1);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let peak = common::peak_memory_kib(server.pid());
        let limit_kib = 64 * 1024;
        figures.push(Figure {
            name: format!(
                "Memory: {} clients uploading {} each at once",
                scale.memory_clients,
                human(size)
            ),
            amanat: format!("peak {:.1} MiB (VmHWM)", peak as f64 / 1024.0),
            reference: format!("idle server: {:.1} MiB", idle as f64 / 1024.0),
            ratio: format!("{:.2}x idle", peak as f64 / idle as f64),
            goal: "under 64 MiB, not growing with file size".into(),
            met: Some(peak < limit_kib),
        });
    }
    figures
}

/// Figure 3: small text-only testimonies from many clients, each durable before its
/// 201, against a bare actix-web endpoint that reads the same body and answers 201.
fn small_testimonies(scale: &Scale) -> Vec<Figure> {
    let body = small_body();
    let mut ours = Vec::new();
    let mut ceiling = Vec::new();
    let mut cpu_per_submission = Vec::new();
    for _ in 0..scale.small_runs {
        let dir = tempfile::tempdir().unwrap();
        let coalition = Coalition::new(dir.path(), 3);
        let server = Server::start(dir.path(), &coalition, "");
        let before = cpu_seconds(server.pid());
        let run = load(server.addr, &body, scale.small_clients, scale.small_duration);
        // CPU time holds on a noisy machine where rates swing by a tenth between runs.
        cpu_per_submission.push((cpu_seconds(server.pid()) - before) / run.count as f64);
        ours.push(run);
        drop(server);
        let bare = BareEndpoint::start();
        ceiling.push(load(bare.addr, &body, scale.small_clients, scale.small_duration));
    }
    let pick = |runs: Vec<Load>| {
        let mut runs = runs;
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        runs.swap_remove(runs.len() / 2)
    };
    let (ours, ceiling) = (pick(ours), pick(ceiling));
    let share = ours.rate / ceiling.rate;
    cpu_per_submission.sort_by(f64::total_cmp);
    let cpu = cpu_per_submission[cpu_per_submission.len() / 2];
    vec![
        Figure {
            name: format!(
                "Small testimonies: 2 KB, {} clients, {} s",
                scale.small_clients,
                scale.small_duration.as_secs()
            ),
            amanat: format!("{:.0} submissions/s", ours.rate),
            reference: format!("bare actix-web 201: {:.0}/s", ceiling.rate),
            ratio: format!("{share:.2} of the ceiling"),
            goal: "at least 2,000/s and half the ceiling".into(),
            met: Some(ours.rate >= 2000.0 && share >= 0.5),
        },
        Figure {
            name: "Small testimonies: latency p50 / p99".into(),
            amanat: format!("{:.1} / {:.1} ms", ms(ours.p50), ms(ours.p99)),
            reference: format!("bare: {:.1} / {:.1} ms", ms(ceiling.p50), ms(ceiling.p99)),
            ratio: format!("{:.1}x at p99", secs(ours.p99) / secs(ceiling.p99).max(1e-9)),
            goal: "p99 under 50 ms".into(),
            met: Some(ms(ours.p99) < 50.0),
        },
        Figure {
            name: "Small testimonies: server CPU per submission".into(),
            amanat: format!("{:.2} ms", cpu * 1000.0),
            reference: format!("{} cores: {:.0}/s at most", cores(), cores() as f64 / cpu),
            ratio: "-".into(),
            goal: "(explains the rate)".into(),
            met: None,
        },
    ]
}

/// Figure 4: `amanat open` on a bundle of mixed sizes, against `age -d` over the same objects.
fn review(scale: &Scale) -> Figure {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let server = Server::start(dir.path(), &coalition, "max_submission_bytes = 4294967296");
    let mut total = 0;
    let mut seed = 1;
    for &(count, size) in &scale.review_files {
        for _ in 0..count {
            upload_generated(server.addr, size, seed);
            seed += 1;
            total += size;
        }
    }
    let bundle = dir.path().join("bundle.tar");
    let out = amanat(&["export", "--all", "--data-dir", p(&server.data_dir), "--out", p(&bundle)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(server);
    // The reference decrypts the same objects: unpacked first, not timed.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let status =
        Command::new("tar").arg("-xf").arg(&bundle).arg("-C").arg(&unpacked).status().unwrap();
    assert!(status.success());
    let objects = common::files_in(&unpacked.join("objects"));
    let identity = &coalition.identity_files[0];

    let mut ours = Vec::new();
    let mut reference = Vec::new();
    for run in 0..scale.review_runs {
        let cases = dir.path().join(format!("cases-{run}"));
        let state = dir.path().join(format!("state-{run}"));
        ours.push(time(|| open_cases(&bundle, identity, &cases, &state)));
        std::fs::remove_dir_all(&cases).unwrap();
        let plain = dir.path().join(format!("plain-{run}"));
        std::fs::create_dir(&plain).unwrap();
        reference.push(time(|| age_decrypt_each(identity, &objects, &plain)));
        std::fs::remove_dir_all(&plain).unwrap();
    }
    let (ours, reference) = (median(ours), median(reference));
    let ratio = secs(ours) / secs(reference);
    Figure {
        name: format!(
            "Review: `amanat open` on a {} bundle ({} objects)",
            human(std::fs::metadata(&bundle).unwrap().len()),
            objects.len()
        ),
        amanat: format!("{:.2} s ({:.0} MiB/s)", secs(ours), rate_mib(total, ours)),
        reference: format!("`age -d` per object: {:.2} s", secs(reference)),
        ratio: format!("{ratio:.2}x"),
        goal: "at most 1.1x".into(),
        met: Some(ratio <= 1.1),
    }
}

/// Figure 5: Bytes the data directory takes on disk for the ciphertext it holds.
fn storage(scale: &Scale) -> Figure {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let server = Server::start(dir.path(), &coalition, "");
    populate(server.addr, scale.storage_submissions, true);
    let on_disk = disk_usage(&server.data_dir);
    let ciphertext = server.store_bytes();
    let ratio = on_disk as f64 / ciphertext as f64;
    Figure {
        name: format!("Storage: {} mixed submissions", scale.storage_submissions),
        amanat: format!("{} on disk (data directory)", human(on_disk)),
        reference: format!("ciphertext: {}", human(ciphertext)),
        ratio: format!("{ratio:.2}x"),
        goal: "at most 1.05x".into(),
        met: Some(ratio <= 1.05),
    }
}

// ---------- load ----------

struct Load {
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// Submissions answered.
    count: usize,
}

/// `clients` keep-alive connections posting `body` as fast as answers come, for
/// `duration`; every answer must be 201.
fn load(addr: SocketAddr, body: &[u8], clients: usize, duration: Duration) -> Load {
    let request = common::api_upload(body);
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut stream = keep_alive(addr);
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    stream.write_all(&request).unwrap();
                    let response = common::try_read_response(&mut stream).unwrap();
                    assert_eq!(response.status, 201, "{}", response.text());
                    latencies.push(sent.elapsed());
                    if response.header("connection") == Some("close") {
                        stream = keep_alive(addr);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> =
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Load {
        rate: latencies.len() as f64 / secs(elapsed),
        p50: at(0.50),
        p99: at(0.99),
        count: latencies.len(),
    }
}

fn keep_alive(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A 2 KB testimony as a complete keep-alive request.
fn small_body() -> Vec<u8> {
    let words = "They took me from the hospital bed at night and beat me in the van. ";
    let testimony: String = words.repeat(2048 / words.len() + 1)[..2048].to_string();
    common::multipart_body(&[common::text("testimony", &testimony)])
}

/// The HTTP ceiling: actix-web reading the same body and answering 201, nothing else.
struct BareEndpoint {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl BareEndpoint {
    fn start() -> BareEndpoint {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let workers = cores();
                let server = HttpServer::new(|| {
                    App::new().route(
                        "/api/v1/submissions",
                        web::post().to(|body: web::Bytes| async move {
                            std::hint::black_box(body);
                            HttpResponse::Created().finish()
                        }),
                    )
                })
                .workers(workers)
                .bind("127.0.0.1:0")
                .unwrap();
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await
            })
        });
        let (addr, handle) = rx.recv().unwrap();
        BareEndpoint { addr, handle }
    }
}

impl Drop for BareEndpoint {
    fn drop(&mut self) {
        let _ = futures_util::FutureExt::now_or_never(self.handle.stop(false));
    }
}

// ---------- uploads ----------

/// The multipart text before and after one evidence file.
fn multipart_around() -> (Vec<u8>, Vec<u8>) {
    let b = common::BOUNDARY;
    let head = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"testimony\"\r\n\r\nbenchmark\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"evidence\"; filename=\"v.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    );
    let tail = format!("\r\n--{b}--\r\n");
    (head.into_bytes(), tail.into_bytes())
}

fn upload_head(addr: SocketAddr, file_len: u64) -> (TcpStream, Vec<u8>) {
    let (head, tail) = multipart_around();
    let mut stream = TcpStream::connect(addr).unwrap();
    let length = head.len() as u64 + file_len + tail.len() as u64;
    let request = common::upload_head(&format!("Content-Length: {length}"));
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(&head).unwrap();
    (stream, tail)
}

/// Sends the multipart tail and returns the 201's JSON (its receipt).
fn finish_upload(mut stream: TcpStream, tail: &[u8]) -> serde_json::Value {
    stream.write_all(tail).unwrap();
    let response = common::try_read_response(&mut stream).unwrap();
    assert_eq!(response.status, 201, "{}", response.text());
    serde_json::from_slice(&response.body).unwrap()
}

/// Uploads a file from disk (the kernel copies it to the socket).
fn upload_file(addr: SocketAddr, path: &Path) {
    let mut file = std::fs::File::open(path).unwrap();
    let (mut stream, tail) = upload_head(addr, file.metadata().unwrap().len());
    std::io::copy(&mut file, &mut stream).unwrap();
    finish_upload(stream, &tail);
}

/// Uploads `len` bytes of noise made on the fly (no copy of it in the client's memory).
fn upload_generated(addr: SocketAddr, len: u64, seed: u64) -> serde_json::Value {
    let (mut stream, tail) = upload_head(addr, len);
    let mut noise = Noise::new(seed);
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        noise.fill(&mut buf[..n]);
        stream.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    finish_upload(stream, &tail)
}

/// Incompressible bytes, fast (xorshift).
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Noise {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

fn write_random_file(path: &Path, len: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut noise = Noise::new(42);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        noise.fill(&mut buf[..n]);
        file.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// `count` submissions from 16 clients: text only, or (`mixed`) one in four with a
/// 100 KB photo and one in fifty with a 2 MB video.
fn populate(addr: SocketAddr, count: usize, mixed: bool) {
    let text_only = std::sync::Arc::new(common::api_upload(&small_body()));
    submit_each(addr, count, 16, move |n| {
        let size = match n % 50 {
            _ if !mixed => 0,
            0 => 2_000_000,
            k if k % 4 == 1 => 100_000,
            _ => 0,
        };
        if size > 0 {
            upload_generated(addr, size, n as u64 + 1);
            return None;
        }
        Some(text_only.to_vec())
    });
}

/// Submissions `0..count` from `clients` keep-alive clients at once; `request(n)` is
/// the whole request of the `n`th (or none, when it sent one itself), each answered 201.
fn submit_each(
    addr: SocketAddr,
    count: usize,
    clients: usize,
    request: impl Fn(usize) -> Option<Vec<u8>> + Send + Sync + 'static,
) {
    let request = std::sync::Arc::new(request);
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut stream = keep_alive(addr);
                for n in (client..count).step_by(clients) {
                    let Some(bytes) = request(n) else { continue };
                    stream.write_all(&bytes).unwrap();
                    let response = common::try_read_response(&mut stream).unwrap();
                    assert_eq!(response.status, 201);
                    if response.header("connection") == Some("close") {
                        stream = keep_alive(addr);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

// ---------- small helpers ----------

/// User and system CPU time a process has used, in seconds.
/// `amanat open` of one bundle or pull file into `cases`.
fn open_cases(bundle: &Path, identity: &Path, cases: &Path, state: &Path) {
    let out = amanat(&[
        "open",
        p(bundle),
        "--identity",
        p(identity),
        "--out",
        p(cases),
        "--state",
        p(state),
    ]);
    let said = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "{}{}", said(&out.stdout), said(&out.stderr));
}

/// `age -d` of each object into `plain`, one file per object.
fn age_decrypt_each(identity: &Path, objects: &[PathBuf], plain: &Path) {
    for (i, object) in objects.iter().enumerate() {
        let status = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(identity)
            .arg("-o")
            .arg(plain.join(i.to_string()))
            .arg(object)
            .status()
            .expect("Debian's age is installed");
        assert!(status.success());
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// User and system CPU time of this process's children that have ended and been
/// waited for, in seconds (a reference tool run in between is the difference).
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn amanat(args: &[&str]) -> std::process::Output {
    Command::new(common::BIN).args(args).output().unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Bytes allocated on disk under `dir` (what `du` counts), every file and index.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            }
            total += meta.blocks() * 512;
        }
    }
    total
}

fn time(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate_mib(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / secs(d)
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= MIB {
        format!("{:.0} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

// ---------- the report ----------

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l[l.find(':').unwrap() + 1..].trim().to_string())
        })
        .unwrap_or_default();
    let cores = cores();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(String::new(), |kib| format!("{:.0} GiB", kib as f64 / f64::from(1 << 20)));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let age = Command::new("age")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {memory} memory, Linux {}, age {age}", kernel.trim())
}

fn render(figures: &[Figure], tiny: bool, took: Duration) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    if tiny {
        out.push_str("**A tiny round (`--tiny`): it proves the harness runs; its figures mean nothing.**\n\n");
    }
    out.push_str(&format!(
        "Measured by `bench/run.sh` (`cargo bench --bench amanat`) on {}, {}; the whole run \
         took {:.0} s. Each figure is the median of its runs, beside its reference measured \
         in the same run. The server is `amanat serve` on loopback with three recipients, \
         fsyncing every submission before its 201; `age` writes without fsync.\n\n",
        machine(),
        today(),
        secs(took)
    ));
    out.push_str(
        "Regenerate with `bench/run.sh` (needs Debian's `age`); `bench/run.sh --only \
         large,small` prints some figures without writing this file. Memory is the \
         server's VmHWM from /proc; storage counts allocated blocks of every file in the \
         data directory (objects, index, keys) against the objects' ciphertext bytes.\n\n",
    );
    out.push_str(
        "Every small testimony through the API opens a new case, and every new case costs \
         one Argon2id derivation of its codename (19 MiB, 2 passes; issue 15) on one core: \
         that, not the rest of the path, sets the small testimonies' rate. The scale rows \
         fill the store through `Store::commit` with field-kit submissions (no codename) \
         and then measure the real server on it; the older exported before the newest, as \
         a daily export leaves them. Plotted against the store's size: \
         [bench/scale.svg](bench/scale.svg).\n\n",
    );
    out.push_str(
        "| Figure | amanat | Reference | Ratio | Goal | Met |\n|---|---|---|---|---|---|\n",
    );
    for f in figures {
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {met} |\n",
            f.name, f.amanat, f.reference, f.ratio, f.goal
        ));
    }
    out
}

fn today() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Figure 1b: the server's user-space instructions per byte of one upload, counted by
/// callgrind (this VM has no hardware counters for `perf stat`). Under valgrind ring
/// finds no SHA-NI, so the two SHA-256 passes count as software; `age -R` cannot be
/// counted beside it (callgrind aborts on the Go runtime's signals).
fn instructions_per_byte(scale: &Scale) -> Figure {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let evidence = dir.path().join("evidence.bin");
    write_random_file(&evidence, scale.callgrind_bytes);
    let mut server = Server::start(dir.path(), &coalition, "");
    server.kill();
    let counted = dir.path().join("callgrind.out");
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", counted.display()))
        .args([common::BIN, "--config", p(&server.config), "serve"]);
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (mut child, addr) = common::spawn_command(command, &log);
    // Start-up's counts go to a dump of their own; the upload's are what follows.
    reset_counts(&child, &counted);
    upload_file(addr, &evidence);
    // SIGTERM: the server shuts down and callgrind writes its counts.
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    assert!(status.unwrap().success());
    child.wait().unwrap();
    let total = instructions(&std::fs::read_to_string(&counted).unwrap());
    let per_byte = total as f64 / scale.callgrind_bytes as f64;
    Figure {
        name: format!(
            "Large evidence: server instructions per byte (callgrind, user space, {} upload)",
            human(scale.callgrind_bytes)
        ),
        amanat: format!("{per_byte:.1} instructions/byte"),
        reference: "`age -R`: not countable (callgrind aborts on Go's signals)".into(),
        ratio: "-".into(),
        goal: "(explains the CPU row)".into(),
        met: None,
    }
}

/// Writes out callgrind's counts so far (`callgrind_control --dump`, which zeroes them)
/// and throws them away.
fn reset_counts(child: &std::process::Child, counted: &Path) {
    let status = Command::new("callgrind_control")
        .arg("--dump=started")
        .arg(child.id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("valgrind's callgrind_control");
    assert!(status.success());
    let dumped = PathBuf::from(format!("{}.1", counted.display()));
    common::wait_until("callgrind's dump", || dumped.exists());
    std::fs::remove_file(&dumped).unwrap();
}

/// The instruction total of a callgrind output file (its `summary:` or `totals:` line).
fn instructions(counted: &str) -> u64 {
    counted
        .lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
