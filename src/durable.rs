//! Files that survive power loss, written one way everywhere. A package (a bundle, a
//! sealed file, a reply bundle, a disclosure package) or a new key is written to a side
//! file, fsynced, moved into place without ever replacing a file that is there (also on
//! FAT and exFAT sticks, which have no hard links), and its folder fsynced. State that
//! is meant to be replaced (the reviewer's tree heads, a case's reply key) is replaced
//! atomically. A partly written file never stands under the final name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;

use std::path::{Path, PathBuf};

/// A new file being written, published under its name only by `publish`. Dropped
/// unpublished (an error, a panic), the side file is removed.
pub struct NewFile {
    out: PathBuf,
    partial: PathBuf,
    writer: Option<BufWriter<File>>,
    /// Set once the bytes stand under `out`: until then, dropping removes the side file,
    /// also when `publish` itself failed.
    published: bool,
}

impl NewFile {
    /// Starts `out`; refuses (`AlreadyExists`) when `out` is there already. Mode 0600:
    /// only ciphertext goes into packages, but who sent what to whom is no one else's.
    pub fn create(out: &Path) -> io::Result<NewFile> {
        NewFile::with_buffer(out, 256 * 1024)
    }

    /// `create` with a buffer of `capacity` bytes (0: every write goes straight to the
    /// file, for key material that must not linger in an unwiped buffer).
    fn with_buffer(out: &Path, capacity: usize) -> io::Result<NewFile> {
        if out.exists() {
            return Err(exists(out));
        }
        let partial = side_file(out);
        let file = create_private(&partial)?;
        Ok(NewFile {
            out: out.to_path_buf(),
            partial,
            writer: Some(BufWriter::with_capacity(capacity, file)),
            published: false,
        })
    }

    /// Where the bytes are while being written: to read them back before publishing.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Makes the bytes durable, then moves them to the final name (never over a file
    /// that appeared meanwhile) and fsyncs the folder. Returns the file's length.
    pub fn publish(mut self) -> io::Result<u64> {
        let writer = self.writer.take().expect("published once");
        let file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        let len = file.metadata()?.len();
        drop(file);
        move_without_replacing(&self.partial, &self.out)?;
        self.published = true;
        sync_parent(&self.out)?;
        Ok(len)
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.as_mut().expect("not yet published").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().expect("not yet published").flush()
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.published {
            drop(self.writer.take());
            let _ = fs::remove_file(&self.partial);
        }
    }
}

/// Writes a whole new file at once (a key, a small package): `NewFile` in one call,
/// unbuffered, so no second copy of a key is left in memory.
pub fn write_new(out: &Path, bytes: &[u8]) -> io::Result<u64> {
    let mut file = NewFile::with_buffer(out, 0)?;
    file.write_all(bytes)?;
    file.publish()
}

/// A new 0600 file that is not a link: a stale side file of an earlier run is
/// removed first, never followed or reused with its old mode.
fn create_private(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Replaces `path` with `bytes` atomically: readers see the old file or the new one,
/// after power loss too.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let partial = side_file(path);
    let result = (|| {
        let mut file = create_private(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&partial, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

/// Renames `from` to `to` unless `to` exists. A hard link does that atomically; FAT and
/// exFAT sticks have none, so there the existence check comes just before a rename.
pub fn move_without_replacing(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        // Published under `to`; the side name goes (a failure to remove it is reported,
        // and the caller's drop tries again).
        Ok(()) => fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists(to)),
        Err(_) if to.exists() => Err(exists(to)),
        Err(_) => fs::rename(from, to),
    }
}

/// fsyncs a directory so that a rename or unlink in it survives power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsyncs the folder `path` is in.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    sync_dir(parent)
}

/// `<name>.partial` beside `out`: never a name amanat reads as a package.
fn side_file(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn exists(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} exists (an existing file is never overwritten)", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_never_replaces_one_that_appears_while_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bundle.tar");
        let mut file = NewFile::create(&out).unwrap();
        file.write_all(b"ours").unwrap();
        fs::write(&out, b"theirs").unwrap();
        let e = file.publish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // The refused bytes did not stay behind under another name.
        assert_eq!(fs::read(&out).unwrap(), b"theirs");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no side file left");
        assert_eq!(NewFile::create(&out).err().unwrap().kind(), io::ErrorKind::AlreadyExists);
        let other = dir.path().join("other.tar");
        drop(NewFile::create(&other).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "dropped: nothing left");
        assert_eq!(write_new(&other, b"x").unwrap(), 1);
        replace(&other, b"yz").unwrap();
        assert_eq!(fs::read(&other).unwrap(), b"yz");
    }
}
