//! File names from a submission are the survivor's device's words, or an attacker's:
//! before one becomes a path on the reviewer's laptop it loses every way to escape the
//! case folder, hide its extension, or run when double-clicked.

use std::collections::{HashMap, HashSet};

/// Longest name we write, in bytes (most file systems allow 255).
const MAX_NAME_BYTES: usize = 150;
/// Opened by a double click into a browser or an interpreter: made plain text instead.
const ACTIVE_EXTENSIONS: &[&str] = &[
    "html", "htm", "xhtml", "xht", "shtml", "svg", "svgz", "xml", "xsl", "mht", "mhtml", "hta",
    "js", "mjs", "jse", "vbs", "vbe", "wsf", "ps1", "bat", "cmd", "com", "exe", "scr", "msi",
    "jar", "sh", "bash", "desktop", "lnk", "url", "webloc", "app", "apk", "py", "pl", "rb",
];

/// Names already given in one case folder, compared case-insensitively as on the FAT
/// and NTFS drives evidence is copied to.
#[derive(Default)]
pub struct TakenNames {
    names: HashSet<String>,
    /// Next number to try per name, so many equal names cost linear time.
    next: HashMap<String, usize>,
}

/// A safe, unique name for `original` among `taken`, and records it there.
pub fn safe_name(original: &str, taken: &mut TakenNames) -> String {
    // Only the last path component, whichever separator the device used.
    let last = original.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last
        .chars()
        .map(|c| if is_forbidden(c) { '_' } else { c })
        .collect::<String>()
        .trim_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string();
    if name.is_empty() || is_reserved_windows_name(&name) {
        name = format!("file{}", if name.is_empty() { String::new() } else { format!("_{name}") });
    }
    let (stem, ext) = split_extension(&name);
    let mut ext = ext.to_string();
    if ACTIVE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
        ext.push_str(".txt");
    } else if ext.is_empty() {
        // Without an extension a browser may sniff it as a page: name it as data.
        ext.push_str("bin");
    }
    let stem = truncate_bytes(stem, MAX_NAME_BYTES.saturating_sub(ext.len() + 8).max(16));
    let ext = truncate_bytes(&ext, 32);
    let join = |suffix: &str| {
        if ext.is_empty() {
            format!("{stem}{suffix}")
        } else {
            format!("{stem}{suffix}.{ext}")
        }
    };
    let base = join("").to_lowercase();
    let mut candidate = join("");
    let mut n = taken.next.get(&base).copied().unwrap_or(2);
    while taken.names.contains(&candidate.to_lowercase()) {
        candidate = join(&format!(" ({n})"));
        n += 1;
    }
    taken.next.insert(base, n);
    taken.names.insert(candidate.to_lowercase());
    candidate
}

/// Control characters (NUL included), bidirectional overrides that disguise an
/// extension (`a\u{202E}gnp.exe` shows as `aexe.png`), and what Windows forbids.
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '/' | '\\')
}

fn is_reserved_windows_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit())
}

fn split_extension(name: &str) -> (&str, &str) {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() && ext.len() <= 16 => (stem, ext),
        _ => (name, ""),
    }
}

fn truncate_bytes(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str) -> String {
        safe_name(name, &mut TakenNames::default())
    }

    #[test]
    fn hostile_names_stay_inside_the_folder() {
        for hostile in ["../../x", "/etc/passwd", "..", ".", "", "a/../../b", "C:\\Windows\\x.dll"]
        {
            let safe = one(hostile);
            assert!(
                !safe.contains('/') && !safe.contains('\\') && safe != ".." && !safe.is_empty()
            );
            assert!(!safe.starts_with('.'), "{hostile:?} -> {safe:?}");
        }
        assert_eq!(one("../../x"), "x.bin");
        assert_eq!(one("/etc/passwd"), "passwd.bin");
    }

    #[test]
    fn disguises_and_control_characters_are_removed() {
        assert_eq!(one("a\u{202E}gnp.exe"), "a_gnp.exe.txt");
        assert_eq!(one("photo\0.jpg"), "photo_.jpg");
        assert_eq!(one("report.HTML"), "report.HTML.txt");
        assert_eq!(one("CON.txt"), "file_CON.txt");
    }

    #[test]
    fn long_names_are_cut_and_duplicates_numbered() {
        let long = format!("{}.jpg", "я".repeat(5000));
        let safe = one(&long);
        assert!(safe.len() <= MAX_NAME_BYTES && safe.ends_with(".jpg"), "{}", safe.len());
        let mut taken = TakenNames::default();
        assert_eq!(safe_name("IMG.jpg", &mut taken), "IMG.jpg");
        assert_eq!(safe_name("img.JPG", &mut taken), "img (2).JPG");
        assert_eq!(safe_name("IMG.jpg", &mut taken), "IMG (3).jpg");
        assert_eq!(one("README"), "README.bin");
        // Many equal names: linear, each unique.
        let mut taken = TakenNames::default();
        let names: HashSet<String> = (0..20_000).map(|_| safe_name("a", &mut taken)).collect();
        assert_eq!(names.len(), 20_000);
    }
}
