//! One replica's bucket, through `object_store`'s S3 client: the few operations
//! replication, `replica pull` and `replica audit` need, each failure turned into
//! fixed words (a store's own error text can name keys, hosts or object names, and is
//! never shown or logged as it is).

use super::BadReplica;
use crate::bundle::replica::{attestation_key, notice_key, object_key, segment_key, write_segment};
use crate::config::ReplicaEndpoint;
use crate::record::ObjectId;
use crate::store::{DeletionRule, Segment, Store};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use std::io::Read;
use std::time::Duration;

/// Objects up to this size go up in one request; larger ones in parts of this size,
/// two at a time, so an upload holds at most a few parts in memory.
const PART_BYTES: usize = 8 << 20;
const PARTS_AT_ONCE: usize = 2;

/// A configured replica, its client built and its secret read.
pub struct Replica {
    name: String,
    s3: AmazonS3,
    /// What the server may delete there.
    pub rule: DeletionRule,
}

impl Replica {
    /// Builds the client for `endpoint`; the secret key is read from its file, which
    /// only the server's user may read.
    pub fn connect(endpoint: &ReplicaEndpoint, proxy: Option<&str>) -> Result<Replica, BadReplica> {
        let bad = |why: String| BadReplica(format!("[[replicas]] {:?}: {why}", endpoint.name));
        let secret = read_secret(&endpoint.secret_access_key_file).map_err(|e| bad(e.0))?;
        let mut options = ClientOptions::new()
            .with_allow_http(true)
            .with_timeout(Duration::from_secs(120))
            .with_connect_timeout(Duration::from_secs(30));
        if let Some(proxy) = proxy {
            options = options.with_proxy_url(proxy);
        }
        let s3 = AmazonS3Builder::new()
            .with_endpoint(endpoint.endpoint.trim_end_matches('/'))
            .with_region(&endpoint.region)
            .with_bucket_name(&endpoint.bucket)
            .with_access_key_id(&endpoint.access_key_id)
            .with_secret_access_key(secret.as_str())
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(60),
                ..Default::default()
            })
            .build()
            .map_err(|_| bad("its settings are not a usable S3 endpoint".into()))?;
        let rule = DeletionRule { purge: endpoint.purge, retention_days: endpoint.retention_days };
        Ok(Replica { name: endpoint.name.clone(), s3, rule })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Puts one stored object under `<server>/objects/<id>`, unless the bucket holds it
    /// already (a retry after a crash): create-only where the store honours it.
    pub async fn put_object(
        &self,
        server: &str,
        store: &Store,
        id: &ObjectId,
        len: u64,
    ) -> Result<(), &'static str> {
        let key = Key::from(object_key(server, id));
        // A copy of another length (cut short, or replaced) is overwritten; none, put.
        let replace = match self.s3.head(&key).await {
            Ok(meta) if meta.size == len => return Ok(()),
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(words(&e)),
        };
        let (mut object, _) = store.open_object(id).map_err(|_| "cannot read a stored object")?;
        if len <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            object.read_to_end(&mut bytes).map_err(|_| "cannot read a stored object")?;
            if replace {
                return self.put_small(key.as_ref(), &bytes).await;
            }
            return self.put_new(&key, Bytes::from(bytes)).await;
        }
        let upload = self.s3.put_multipart(&key).await.map_err(|e| words(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut part = vec![0u8; PART_BYTES];
        let mut sent = 0u64;
        loop {
            writer.wait_for_capacity(PARTS_AT_ONCE).await.map_err(|e| words(&e))?;
            let n = read_full(&mut object, &mut part).map_err(|_| "cannot read a stored object")?;
            if n == 0 {
                break;
            }
            writer.write(&part[..n]);
            sent += n as u64;
        }
        if sent != len {
            writer.abort().await.map_err(|e| words(&e))?;
            return Err("a stored object changed size while being sent");
        }
        writer.finish().await.map_err(|e| words(&e))?;
        Ok(())
    }

    /// Create-only where the engine honours it (then an existing copy, the same bytes
    /// by its name, is kept); a plain put where it does not (Garage).
    async fn put_new(&self, key: &Key, bytes: Bytes) -> Result<(), &'static str> {
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.s3.put_opts(key, PutPayload::from(bytes.clone()), create).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(object_store::Error::NotImplemented { .. }) => {
                self.s3.put(key, PutPayload::from(bytes)).await.map(|_| ()).map_err(|e| words(&e))
            }
            Err(e) => Err(words(&e)),
        }
    }

    /// Writes (or rewrites, as it grows) one journal segment.
    pub async fn put_segment(&self, segment: &Segment) -> Result<(), &'static str> {
        let bytes = write_segment(&segment.note, &segment.body)
            .map_err(|_| "cannot make the journal segment")?;
        let key = Key::from(segment_key(&segment.header.server, segment.header.from));
        self.s3.put(&key, PutPayload::from(bytes)).await.map(|_| ()).map_err(|e| words(&e))
    }

    /// Puts a signed purge notice, before the deletions it announces.
    pub async fn put_notice(&self, server: &str, note: &str) -> Result<(), &'static str> {
        self.put_small(&notice_key(server, note), note.as_bytes()).await
    }

    /// Puts (or replaces, as it grows) one attestation file of an attested checkpoint.
    pub async fn put_attestation(
        &self,
        server: &str,
        member: &str,
        bytes: &[u8],
    ) -> Result<(), &'static str> {
        self.put_small(&attestation_key(server, member), bytes).await
    }

    async fn put_small(&self, key: &str, bytes: &[u8]) -> Result<(), &'static str> {
        let payload = PutPayload::from(Bytes::from(bytes.to_vec()));
        self.s3.put(&Key::from(key), payload).await.map(|_| ()).map_err(|e| words(&e))
    }

    /// Deletes one object (gone already is done).
    pub async fn delete_object(&self, server: &str, id: &ObjectId) -> Result<(), &'static str> {
        match self.s3.delete(&Key::from(object_key(server, id))).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(words(&e)),
        }
    }

    /// The server ids the bucket holds (its top-level names of 32 hex digits).
    pub async fn servers(&self) -> Result<Vec<String>, &'static str> {
        let listing = self.s3.list_with_delimiter(None).await.map_err(|e| words(&e))?;
        let mut servers: Vec<String> = listing
            .common_prefixes
            .iter()
            .map(|p| p.as_ref().trim_end_matches('/').to_string())
            .filter(|s| crate::record::is_hex(s, 32))
            .collect();
        servers.sort();
        Ok(servers)
    }

    /// Every key under `prefix` with its size, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, &'static str> {
        let prefix = Key::from(prefix);
        let mut listing = self.s3.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| words(&e))?;
            out.push((meta.location.to_string(), meta.size));
        }
        out.sort();
        Ok(out)
    }

    /// A key's bytes, whole, when at most `max` (a segment).
    pub async fn get_small(&self, key: &str, max: u64) -> Result<Vec<u8>, &'static str> {
        let got = self.s3.get(&Key::from(key)).await.map_err(|e| words(&e))?;
        if got.meta.size > max {
            return Err("an object is larger than a journal segment may be");
        }
        got.bytes().await.map(|b| b.to_vec()).map_err(|e| words(&e))
    }

    /// A key's bytes as a stream of chunks, with its size.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<
        (u64, futures_util::stream::BoxStream<'static, Result<Bytes, &'static str>>),
        &'static str,
    > {
        let got = self.s3.get(&Key::from(key)).await.map_err(|e| words(&e))?;
        let size = got.meta.size;
        let stream = got.into_stream().map(|chunk| chunk.map_err(|e| words(&e))).boxed();
        Ok((size, stream))
    }
}

/// Fills `buf` as far as the reader allows.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The secret access key, from a file no one but the server's user may read.
fn read_secret(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>, BadReplica> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("secret_access_key_file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "secret_access_key_file {} may be read by others: chmod 600 it",
            path.display()
        )
        .into());
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("secret_access_key_file {}: {e}", path.display()))?,
    );
    let secret = zeroize::Zeroizing::new(text.trim().to_string());
    if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("secret_access_key_file {} holds no key", path.display()).into());
    }
    Ok(secret)
}

/// A key the bucket does not hold, in fixed words.
pub const NOT_FOUND: &str = "not found in the replica";

/// A store's failure in fixed words.
fn words(e: &object_store::Error) -> &'static str {
    match e {
        object_store::Error::NotFound { .. } => NOT_FOUND,
        object_store::Error::PermissionDenied { .. } => "the replica refused (permission denied)",
        object_store::Error::Unauthenticated { .. } => {
            "the replica refused the credentials (unauthenticated)"
        }
        object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } => {
            "the replica refused a conditional write"
        }
        _ => "the replica is unreachable or answered with an error",
    }
}
