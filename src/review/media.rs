//! What an evidence file says about itself, and working copies that say less.
//!
//! A photo's EXIF and a video's track metadata say when it was taken (by the device's
//! clock), by what device and software, and where: the survivor's location when the
//! camera recorded it. `open` shows all of it to the reviewer (`testimony.json`,
//! `report.html`), and beside the bit-exact `evidence/` writes `working/` copies with
//! location and identifying metadata removed, where the format can lose it without a
//! pixel changing. A file that could not be cleaned is said so, by name: it must not
//! be handed on as it is.

use img_parts::{Bytes, ImageEXIF};
use nom_exif::{EntryValue, ExifTag, GPSInfo, MediaParser, MediaSource, TrackInfoTag};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

/// The largest photo read into memory to be cleaned (its working copy is made whole).
const MAX_CLEAN_BYTES: u64 = 256 << 20;

/// What a file says about itself (`testimony.json`'s `embedded`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Embedded {
    /// What the bytes are by their own signature, not by the name or type the
    /// survivor's device gave: jpeg, png, webp, heif, mp4, mov, or other.
    pub format: String,
    /// When it was taken, as the file says (the device's clock, not proof).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<String>,
    /// Make and model of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// A serial number of the camera or lens: it can name the device's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
    /// SENSITIVE: where the device says it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// A still with a video inside (a phone's motion photo).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub embedded_video: bool,
    /// A content-provenance (C2PA) manifest is present. Its signature is not checked
    /// here: no crate checks one without a network or a trust list this laptop lacks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provenance_manifest: bool,
    /// Why what the file says could not be read (the file itself is intact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// Coordinates in decimal degrees (positive: north, east), as the file gives them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_m: Option<f64>,
}

impl Location {
    /// As a person reads it: degrees to a metre or so, and the altitude.
    pub fn text(&self) -> String {
        let mut text = format!("{:.6}, {:.6}", self.latitude, self.longitude);
        if let Some(altitude) = self.altitude_m {
            text.push_str(&format!(", {altitude:.0} m"));
        }
        text
    }
}

/// A copy to hand on (`testimony.json`'s `working`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkingCopy {
    /// Where it is, relative to the case folder; None when none could be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_as: Option<String>,
    /// What was taken out of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Why there is no copy: the evidence must not be handed on as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_cleaned: Option<String>,
}

/// What a reader that failed on a file (a panic in a parser, on hostile input) leaves
/// said of it: `open` goes on with the next file and case.
const READER_FAILED: &str = "the metadata reader failed on it (a malformed or hostile file)";

/// Reads what the file at `path` says about itself. Never fails: what cannot be read
/// is said in `unreadable`.
pub fn read_embedded(path: &Path) -> Embedded {
    std::panic::catch_unwind(|| read_embedded_unguarded(path)).unwrap_or_else(|_| Embedded {
        format: "other".into(),
        unreadable: Some(READER_FAILED.into()),
        ..Default::default()
    })
}

fn read_embedded_unguarded(path: &Path) -> Embedded {
    let format = match format_of(path) {
        Ok(format) => format,
        Err(e) => {
            return Embedded {
                format: "other".into(),
                unreadable: Some(e.to_string()),
                ..Default::default()
            }
        }
    };
    let mut embedded = Embedded { format: format.name().into(), ..Default::default() };
    let source = match MediaSource::open(path) {
        Ok(source) => source,
        Err(nom_exif::Error::UnsupportedFormat) => return embedded,
        Err(e) => {
            embedded.unreadable = Some(e.to_string());
            return embedded;
        }
    };
    let mut parser = MediaParser::new();
    if format.is_video() {
        match parser.parse_track(source) {
            Ok(track) => {
                let text = |tag| track.get(tag).map(ToString::to_string);
                embedded.taken_at = text(TrackInfoTag::CreateDate);
                embedded.device = device(text(TrackInfoTag::Make), text(TrackInfoTag::Model));
                embedded.software = text(TrackInfoTag::Software);
                embedded.location = track.gps_info().and_then(location);
            }
            Err(nom_exif::Error::TrackNotFound) => {}
            Err(e) => embedded.unreadable = Some(e.to_string()),
        }
        return embedded;
    }
    match parser.parse_exif(source) {
        Ok(iter) => {
            embedded.embedded_video = iter.has_embedded_track();
            let exif: nom_exif::Exif = iter.into();
            let text = |tag| exif.get(tag).map(EntryValue::to_string).filter(|t| !t.is_empty());
            embedded.taken_at = text(ExifTag::DateTimeOriginal)
                .or_else(|| text(ExifTag::CreateDate))
                .map(|at| match text(ExifTag::OffsetTimeOriginal) {
                    Some(offset) if !at.contains('+') => format!("{at} {offset}"),
                    _ => at,
                });
            embedded.device = device(text(ExifTag::Make), text(ExifTag::Model));
            embedded.serial =
                text(ExifTag::CameraSerialNumber).or_else(|| text(ExifTag::LensSerialNumber));
            embedded.software = text(ExifTag::Software);
            embedded.location = exif.gps_info().and_then(location);
        }
        Err(nom_exif::Error::ExifNotFound) => {}
        Err(e) => embedded.unreadable = Some(e.to_string()),
    }
    if matches!(format, Format::Jpeg | Format::Png | Format::Webp) {
        embedded.provenance_manifest = read_small(path)
            .ok()
            .and_then(|bytes| Photo::parse(format, bytes).ok())
            .is_some_and(|photo| photo.has_provenance_manifest());
    }
    embedded
}

/// Writes to `out` a copy of the evidence at `path` with its location and identifying
/// metadata removed, and says what was removed; or says why it cannot. The picture
/// itself is copied unchanged.
pub fn write_working_copy(path: &Path, out: &Path, saved_as: &str) -> WorkingCopy {
    std::panic::catch_unwind(|| write_working_copy_unguarded(path, out, saved_as)).unwrap_or_else(
        |_| WorkingCopy { not_cleaned: Some(READER_FAILED.into()), ..Default::default() },
    )
}

fn write_working_copy_unguarded(path: &Path, out: &Path, saved_as: &str) -> WorkingCopy {
    let refuse = |why: String| WorkingCopy { not_cleaned: Some(why), ..Default::default() };
    let format = match format_of(path) {
        Ok(format) => format,
        Err(e) => return refuse(format!("it could not be read: {e}")),
    };
    let why_not = match format {
        Format::Jpeg | Format::Png | Format::Webp => None,
        Format::Heif => Some("HEIC/HEIF: no well-kept crate rewrites it without its metadata"),
        Format::Mp4 | Format::Mov => {
            Some("video: its container's metadata (time, device, location) is not removed here")
        }
        Format::Other => Some("not a format whose metadata amanat can remove"),
    };
    if let Some(why) = why_not {
        return refuse(why.into());
    }
    let photo = match read_small(path) {
        Ok(bytes) => Photo::parse(format, bytes),
        Err(e) => return refuse(e.to_string()),
    };
    let (bytes, removed) = match photo.map(Photo::clean) {
        Ok(Ok(cleaned)) => cleaned,
        Ok(Err(why)) => return refuse(why.into()),
        Err(e) => return refuse(format!("its container could not be read: {e}")),
    };
    // Held to the same reader that found the metadata: a copy that still says where
    // or on what it was taken is not written.
    let left = read_embedded_bytes(bytes.clone());
    if left.location.is_some() || left.serial.is_some() || left.device.is_some() {
        return refuse("its metadata could not all be removed".into());
    }
    if let Err(e) = std::fs::write(out, &bytes) {
        return refuse(format!("the copy could not be written: {e}"));
    }
    WorkingCopy { saved_as: Some(saved_as.into()), removed, not_cleaned: None }
}

/// What the reader finds in bytes already in memory (a working copy, before it is
/// written).
fn read_embedded_bytes(bytes: Bytes) -> Embedded {
    let mut embedded = Embedded::default();
    let Ok(source) = MediaSource::from_memory(bytes) else { return embedded };
    if let Ok(iter) = MediaParser::new().parse_exif(source) {
        let exif: nom_exif::Exif = iter.into();
        embedded.location = exif.gps_info().and_then(location);
        embedded.serial = exif.get(ExifTag::CameraSerialNumber).map(ToString::to_string);
        embedded.device = exif.get(ExifTag::Model).map(ToString::to_string);
    }
    embedded
}

fn device(make: Option<String>, model: Option<String>) -> Option<String> {
    match (make, model) {
        (Some(make), Some(model)) if model.starts_with(&make) => Some(model),
        (Some(make), Some(model)) => Some(format!("{make} {model}")),
        (make, model) => make.or(model),
    }
}

fn location(gps: &GPSInfo) -> Option<Location> {
    Some(Location {
        latitude: gps.latitude_decimal()?,
        longitude: gps.longitude_decimal()?,
        altitude_m: gps.altitude_meters(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
    Webp,
    Heif,
    Mp4,
    Mov,
    Other,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Heif => "heif",
            Format::Mp4 => "mp4",
            Format::Mov => "mov",
            Format::Other => "other",
        }
    }

    fn is_video(self) -> bool {
        matches!(self, Format::Mp4 | Format::Mov)
    }
}

/// The format by the file's first bytes.
fn format_of(path: &Path) -> std::io::Result<Format> {
    let mut head = [0u8; 12];
    let mut file = std::fs::File::open(path)?;
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let head = &head[..got];
    Ok(if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Format::Jpeg
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Format::Png
    } else if head.len() == 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Format::Webp
    } else if head.len() == 12 && &head[4..8] == b"ftyp" {
        match &head[8..12] {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1"
            | b"avif" => Format::Heif,
            b"qt  " => Format::Mov,
            _ => Format::Mp4,
        }
    } else if head.len() >= 8 && matches!(&head[4..8], b"moov" | b"mdat" | b"wide" | b"free") {
        Format::Mov
    } else {
        Format::Other
    })
}

fn read_small(path: &Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() > MAX_CLEAN_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than the {} MiB a working copy is made of",
            MAX_CLEAN_BYTES >> 20
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CLEAN_BYTES).read_to_end(&mut bytes)?;
    Ok(Bytes::from(bytes))
}

/// A photo's container, parsed by img-parts: its segments or chunks, the picture's
/// own bytes untouched.
enum Photo {
    Jpeg(img_parts::jpeg::Jpeg),
    Png(img_parts::png::Png),
    Webp(img_parts::webp::WebP),
}

/// JPEG application segments kept: JFIF (`APP0`) and Adobe's colour transform
/// (`APP14`); `APP2` only for an ICC colour profile. Every other `APPn` and every
/// comment goes.
const JPEG_APP0: u8 = 0xE0;
const JPEG_APP2: u8 = 0xE2;
const JPEG_APP14: u8 = 0xEE;
const JPEG_COM: u8 = 0xFE;

/// PNG chunks a picture needs to look the same; every other chunk goes.
const PNG_KEPT: [&[u8; 4]; 18] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"cICP", b"mDCV", b"cLLI", b"bKGD", b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

/// WebP chunks a picture needs; EXIF, XMP and anything else go.
const WEBP_KEPT: [&[u8; 4]; 7] = [b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"];

impl Photo {
    fn parse(format: Format, bytes: Bytes) -> Result<Photo, img_parts::Error> {
        Ok(match format {
            Format::Jpeg => Photo::Jpeg(img_parts::jpeg::Jpeg::from_bytes(bytes)?),
            Format::Png => Photo::Png(img_parts::png::Png::from_bytes(bytes)?),
            Format::Webp => Photo::Webp(img_parts::webp::WebP::from_bytes(bytes)?),
            _ => return Err(img_parts::Error::WrongSignature),
        })
    }

    fn has_provenance_manifest(&self) -> bool {
        match self {
            // C2PA in JPEG: JUMBF boxes in APP11 segments.
            Photo::Jpeg(jpeg) => jpeg.segments_by_marker(0xEB).next().is_some(),
            Photo::Png(png) => png.chunk_by_type(*b"caBX").is_some(),
            Photo::Webp(webp) => webp.has_chunk(*b"C2PA"),
        }
    }

    /// The photo with every segment or chunk not needed to show it removed, and what
    /// those were; or why that could not be done.
    fn clean(self) -> Result<(Bytes, Vec<String>), &'static str> {
        let mut removed = BTreeSet::new();
        let bytes = match self {
            Photo::Jpeg(mut jpeg) => {
                let mut kept = Vec::new();
                for segment in jpeg.segments_mut().drain(..) {
                    let marker = segment.marker();
                    let contents = segment.contents();
                    let keep = match marker {
                        // JFIF's header, without the thumbnail it may carry (a picture
                        // of its own); its JFXX extension (a thumbnail) goes.
                        JPEG_APP0 if contents.starts_with(b"JFIF\0") && contents.len() >= 14 => {
                            let mut header = contents[..14].to_vec();
                            header[12..14].copy_from_slice(&[0, 0]);
                            if contents.len() > 14 {
                                removed.insert("the JFIF thumbnail".to_string());
                            }
                            kept.push(img_parts::jpeg::JpegSegment::new_with_contents(
                                marker,
                                Bytes::from(header),
                            ));
                            continue;
                        }
                        JPEG_APP14 => contents.starts_with(b"Adobe") && contents.len() == 12,
                        JPEG_APP2 => contents.starts_with(b"ICC_PROFILE\0"),
                        0xE0..=0xEF | JPEG_COM => false,
                        _ => true,
                    };
                    if !keep {
                        removed.insert(jpeg_segment_name(marker, contents));
                        continue;
                    }
                    if !segment.has_entropy() {
                        kept.push(segment);
                        continue;
                    }
                    // The first scan's segment holds the rest of the file: later scans,
                    // anything between them, the end of the picture and what follows it.
                    // (img-parts hands it out only as part of the segment's encoding.)
                    let encoded = segment.clone().encoder().bytes();
                    let scans = picture_scans(&encoded[segment.len()..], &mut removed)
                        .ok_or("its picture data could not be followed to its end")?;
                    kept.push(img_parts::jpeg::JpegSegment::new_with_entropy(
                        marker,
                        contents.clone(),
                        scans,
                    ));
                }
                *jpeg.segments_mut() = kept;
                jpeg.encoder().bytes()
            }
            Photo::Png(mut png) => {
                png.chunks_mut().retain(|chunk| {
                    let kind = chunk.kind();
                    let keep = PNG_KEPT.contains(&&kind);
                    if !keep {
                        removed.insert(chunk_name(kind));
                    }
                    keep
                });
                png.encoder().bytes()
            }
            Photo::Webp(mut webp) => {
                webp.chunks_mut().retain(|chunk| {
                    let id = chunk.id();
                    let keep = WEBP_KEPT.contains(&&id);
                    if !keep {
                        removed.insert(chunk_name(id));
                    }
                    keep
                });
                // Sets the extended header's flags to what is left.
                webp.set_exif(None);
                webp.encoder().bytes()
            }
        };
        Ok((bytes, removed.into_iter().collect()))
    }
}

/// A JPEG's entropy-coded data from its first scan on, up to and with the marker that
/// ends the picture: further scans and the tables between them kept, any application
/// segment or comment between them taken out, and everything after the end (a motion
/// photo's video, a multi-picture file's further pictures) cut. None when the data
/// does not reach an end of the picture.
fn picture_scans(data: &[u8], removed: &mut BTreeSet<String>) -> Option<Bytes> {
    let mut scans = Vec::with_capacity(data.len());
    let (mut at, mut copied_from) = (0, 0);
    while at + 1 < data.len() {
        if data[at] != 0xFF {
            at += 1;
            continue;
        }
        match data[at + 1] {
            // A stuffed 0xFF, a restart marker, fill, or TEM: part of the scan.
            0x00 | 0x01 | 0xD0..=0xD7 => at += 2,
            0xFF => at += 1,
            0xD9 => {
                scans.extend_from_slice(&data[copied_from..at + 2]);
                if at + 2 < data.len() {
                    removed.insert(
                        "data after the end of the picture (a motion photo's video, further \
                         pictures)"
                            .to_string(),
                    );
                }
                return Some(Bytes::from(scans));
            }
            // A second start of image inside the first: not a picture this follows.
            0xD8 => return None,
            marker => {
                let length =
                    usize::from(u16::from_be_bytes([*data.get(at + 2)?, *data.get(at + 3)?]));
                let end = at + 2 + length;
                if length < 2 || end > data.len() {
                    return None;
                }
                if (0xE0..=0xEF).contains(&marker) || marker == JPEG_COM {
                    scans.extend_from_slice(&data[copied_from..at]);
                    removed.insert(jpeg_segment_name(marker, &data[at + 4..end]));
                    copied_from = end;
                }
                at = end;
            }
        }
    }
    None
}

/// What a removed PNG or WebP chunk held, as the report says it.
fn chunk_name(kind: [u8; 4]) -> String {
    match &kind {
        b"eXIf" | b"EXIF" => "EXIF (time, device, serial number, location)".into(),
        b"tEXt" | b"zTXt" | b"iTXt" => "text chunks (XMP, comments, software, author)".into(),
        b"XMP " => "XMP".into(),
        b"tIME" => "the time it was last changed".into(),
        b"caBX" | b"C2PA" => "a content-provenance (C2PA) manifest".into(),
        other => format!("chunk {}", String::from_utf8_lossy(other)),
    }
}

fn jpeg_segment_name(marker: u8, contents: &[u8]) -> String {
    match marker {
        0xE1 if contents.starts_with(b"Exif\0") => {
            "EXIF (time, device, serial number, location, thumbnail)".into()
        }
        0xE1 if contents.starts_with(b"http://ns.adobe.com/") => "XMP".into(),
        JPEG_APP2 if contents.starts_with(b"MPF\0") => {
            "a multi-picture index (further pictures, with their own metadata)".into()
        }
        0xEB => "a content-provenance (C2PA) manifest".into(),
        0xED => "IPTC / Photoshop metadata (captions, author, place)".into(),
        JPEG_COM => "a comment".into(),
        marker => format!("application segment APP{}", marker - JPEG_APP0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_photo_says_so_and_gets_no_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "what happened").unwrap();
        let embedded = read_embedded(&path);
        assert_eq!(embedded.format, "other");
        assert!(embedded.location.is_none());
        let copy = write_working_copy(&path, &dir.path().join("copy"), "working/notes.txt");
        assert!(copy.saved_as.is_none() && copy.not_cleaned.is_some(), "{copy:?}");
        assert!(!dir.path().join("copy").exists());
    }

    #[test]
    fn a_jpeg_loses_what_hides_between_its_scans_and_after_its_end() {
        let photo = include_bytes!("../../tests/data/media/photo.jpg");
        assert!(photo.ends_with(&[0xFF, 0xD9]));
        let end = photo.len() - 2;
        // An EXIF segment after the first scan (where a parser that stops at the first
        // scan never looks), a thumbnail in JFIF's header, and a video after the end.
        let hidden: &[u8] = b"\xFF\xE1\x00\x12Exif\x00\x00GPS-43.238";
        let trailer: &[u8] = b"\x00\x00\x00\x18ftypmp42 motion photo, voices";
        let mut bytes = photo[..end].to_vec();
        bytes.extend_from_slice(hidden);
        bytes.extend_from_slice(&photo[end..]);
        bytes.extend_from_slice(trailer);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jpg");
        std::fs::write(&path, &bytes).unwrap();
        let copy = write_working_copy(&path, &dir.path().join("c.jpg"), "working/p.jpg");
        assert!(copy.not_cleaned.is_none(), "{copy:?}");
        let cleaned = std::fs::read(dir.path().join("c.jpg")).unwrap();
        assert!(cleaned.ends_with(&[0xFF, 0xD9]));
        for gone in [hidden, trailer] {
            assert!(!cleaned.windows(gone.len()).any(|w| w == gone), "{copy:?}");
        }
        assert!(copy.removed.iter().any(|r| r.contains("after the end")), "{copy:?}");
        assert!(copy.removed.iter().any(|r| r.starts_with("EXIF")), "{copy:?}");
        // The picture's own bytes, from the first scan to the end, are those sent.
        let scan = photo.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let kept = cleaned.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        assert_eq!(cleaned[kept..], photo[scan..]);
    }

    #[test]
    fn a_truncated_jpeg_is_refused_a_copy_and_read_as_far_as_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.jpg");
        std::fs::write(&path, [0xFF, 0xD8, 0xFF, 0xE1, 0x10]).unwrap();
        let embedded = read_embedded(&path);
        assert_eq!(embedded.format, "jpeg");
        let copy = write_working_copy(&path, &dir.path().join("copy"), "working/cut.jpg");
        assert!(copy.not_cleaned.is_some(), "{copy:?}");
    }
}
