//! Figure 11: one large file sent resumably (tus, in 5 MiB `PATCH` requests, each on a new
//! connection, as tuspy sends them) and then named by a submission, next to the same
//! file as one multipart request: time to the 201, the server's CPU (utime + stime) and
//! its peak memory (`VmHWM`), each on a fresh server.

use crate::common::{self, Coalition, Server};
use crate::{cpu_seconds, human, median, rate_mib, secs, upload_file, Figure, Scale};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// What tuspy sends in one request by default here (`chunk_size` in the tests).
const PATCH_BYTES: u64 = 5 << 20;

pub fn figure(scale: &Scale) -> Figure {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let evidence = dir.path().join("evidence.bin");
    crate::write_random_file(&evidence, scale.large_bytes);
    let (mut resumable, mut multipart) = (Vec::new(), Vec::new());
    for _ in 0..scale.large_runs {
        multipart.push(measured(dir.path(), &coalition, |addr| upload_file(addr, &evidence)));
        resumable.push(measured(dir.path(), &coalition, |addr| upload_resumably(addr, &evidence)));
    }
    let summary = |runs: &[Run]| {
        let wall = median(runs.iter().map(|r| r.wall).collect());
        let mut cpu: Vec<f64> = runs.iter().map(|r| r.cpu).collect();
        cpu.sort_by(f64::total_cmp);
        let peak = runs.iter().map(|r| r.peak_kib).max().unwrap_or(0);
        (wall, cpu[cpu.len() / 2], peak as f64 / 1024.0)
    };
    let (r_wall, r_cpu, r_peak) = summary(&resumable);
    let (m_wall, m_cpu, m_peak) = summary(&multipart);
    let ratio = secs(r_wall) / secs(m_wall);
    let bytes = scale.large_bytes;
    Figure {
        name: format!(
            "Resumable: one {} file in {} tus PATCHes, then its submission, to 201",
            human(bytes),
            human(PATCH_BYTES)
        ),
        amanat: format!(
            "{:.2} s ({:.0} MiB/s), {r_cpu:.2} CPU-s, peak {r_peak:.1} MiB",
            secs(r_wall),
            rate_mib(bytes, r_wall)
        ),
        reference: format!(
            "one multipart request: {:.2} s ({:.0} MiB/s), {m_cpu:.2} CPU-s, peak {m_peak:.1} MiB",
            secs(m_wall),
            rate_mib(bytes, m_wall)
        ),
        ratio: format!("{ratio:.2}x"),
        goal: "at most 1.25x; under 64 MiB".into(),
        met: Some(ratio <= 1.25 && r_peak < 64.0),
    }
}

struct Run {
    wall: Duration,
    cpu: f64,
    peak_kib: u64,
}

/// `send` against a fresh server, timed on the wall and in the server's CPU.
fn measured(dir: &Path, coalition: &Coalition, send: impl FnOnce(SocketAddr)) -> Run {
    let data = dir.join("data");
    let server =
        Server::start_with_data(dir, &data, coalition, "max_submission_bytes = 4294967296");
    let cpu = cpu_seconds(server.pid());
    let started = Instant::now();
    send(server.addr);
    let wall = started.elapsed();
    let run = Run {
        wall,
        cpu: cpu_seconds(server.pid()) - cpu,
        peak_kib: common::peak_memory_kib(server.pid()),
    };
    drop(server);
    std::fs::remove_dir_all(&data).unwrap();
    run
}

/// One tus request on a new connection: its status and `Location`.
fn tus(addr: SocketAddr, head: &str, body: &mut dyn Read) -> (u16, Option<String>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            format!("{head}Host: {addr}\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    std::io::copy(body, &mut stream).unwrap();
    let response = common::try_read_response(&mut stream).unwrap();
    (response.status, response.header("location").map(str::to_string))
}

/// Creates an upload, sends the file in `PATCH` requests, names it in a submission.
fn upload_resumably(addr: SocketAddr, path: &Path) {
    let mut file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let head =
        format!("POST /api/v1/uploads HTTP/1.1\r\nUpload-Length: {len}\r\nContent-Length: 0\r\n");
    let (status, location) = tus(addr, &head, &mut std::io::empty());
    assert_eq!(status, 201);
    let location = location.unwrap();
    let mut offset = 0;
    while offset < len {
        let n = PATCH_BYTES.min(len - offset);
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nUpload-Offset: {offset}\r\nContent-Length: {n}\r\n\
             Content-Type: application/offset+octet-stream\r\n"
        );
        let (status, _) = tus(addr, &head, &mut (&mut file).take(n));
        assert_eq!(status, 204);
        offset += n;
    }
    let id = location.rsplit('/').next().unwrap();
    let parts = [common::text("testimony", "benchmark"), common::text("upload", id)];
    let sent = common::post_multipart(addr, "/api/v1/submissions", &parts);
    assert_eq!(sent.status, 201, "{}", sent.text());
}
