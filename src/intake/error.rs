//! Refusals: a stable code for clients and tests, a status, and a message a person
//! understands. Messages never contain anything the survivor sent.

use actix_web::http::StatusCode;
use std::io;

/// Declares a refusal enum, its stable codes and the list of all of them from one
/// table, so that no refusal can be left out of the list; each code says when it is
/// answered and what the client should do (the table in docs/error-codes.md is made
/// from them).
macro_rules! stable_codes {
    ($(#[$outer:meta])* pub enum $name:ident {
        $( $variant:ident => $code:literal { when: $when:literal, then: $then:literal $(,)? }, )*
    }) => {
        $(#[$outer])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( #[doc = $when] $variant, )*
        }

        impl $name {
            /// Every refusal, in one list: the stable codes clients may rely on.
            pub const ALL: &[$name] = &[$($name::$variant),*];

            /// The stable code clients and tests rely on.
            pub fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// When the refusal is answered, for the table of codes.
            pub fn when(self) -> &'static str {
                match self {
                    $($name::$variant => $when,)*
                }
            }

            /// What a client should do on it, for the table of codes.
            pub fn then(self) -> &'static str {
                match self {
                    $($name::$variant => $then,)*
                }
            }
        }
    };
}

stable_codes! {
    pub enum IntakeError {
        SubmissionTooLarge => "submission_too_large" {
            when: "The files of one submission together pass `limits.max_submission_bytes`.",
            then: "Send fewer or smaller files, the rest in another submission of the same case.",
        },
        TooManyFiles => "too_many_files" {
            when: "More than `limits.max_files` files in one submission.",
            then: "Send the rest in another submission.",
        },
        TextTooLarge => "text_too_large" {
            when: "The text fields together pass `limits.max_text_bytes`.",
            then: "Shorten the text, or attach it as a file.",
        },
        TooManyFields => "too_many_fields" {
            when: "More than `limits.max_fields` text fields.",
            then: "Send fewer fields; put free text in `testimony`.",
        },
        PartHeadersTooLarge => "part_headers_too_large" {
            when: "A multipart part's headers do not fit the parser's buffer (a file name of many kilobytes).",
            then: "Shorten the part's headers (rename the file) and send again.",
        },
        NotMultipart => "not_multipart" {
            when: "The body is not `multipart/form-data`.",
            then: "Fix the client: send the media type the route takes.",
        },
        MalformedMultipart => "malformed_multipart" {
            when: "The multipart structure is broken (boundary, part headers).",
            then: "Send the whole request again; if it repeats, fix the client.",
        },
        NestedMultipart => "nested_multipart" {
            when: "A part is itself multipart.",
            then: "Fix the client: send each file as its own `evidence` part.",
        },
        FieldWithoutName => "field_without_name" {
            when: "A part has no `name` in its Content-Disposition.",
            then: "Fix the client: name every part.",
        },
        InvalidFieldName => "invalid_field_name" {
            when: "A field name is empty, over 64 bytes, or holds control characters.",
            then: "Fix the client: use short printable field names.",
        },
        UnexpectedFile => "unexpected_file" {
            when: "A file arrives in a field other than `evidence`.",
            then: "Send files only as `evidence` parts.",
        },
        InvalidUtf8 => "invalid_utf8" {
            when: "A text field is not valid UTF-8.",
            then: "Send text as UTF-8.",
        },
        TestimonyMissing => "testimony_missing" {
            when: "A submission without a `testimony` field (or with an empty one).",
            then: "Ask the person to write what happened, and send again.",
        },
        ConsentMissing => "consent_missing" {
            when: "The web form's consent question was not answered (pages only).",
            then: "Answer the form's last section and send again.",
        },
        DuplicateTestimony => "duplicate_testimony" {
            when: "The `testimony` field appears more than once.",
            then: "Fix the client: send one `testimony`.",
        },
        IncompleteUpload => "incomplete_upload" {
            when: "The client stopped sending before the body was complete.",
            then: "Send it again; for large files use the resumable uploads.",
        },
        UploadStalled => "upload_stalled" {
            when: "No bytes arrived for `limits.idle_timeout_secs`.",
            then: "Send it again, or use the resumable uploads on a failing link.",
        },
        UploadTooSlow => "upload_too_slow" {
            when: "The request took longer than `limits.upload_deadline_secs` in all.",
            then: "Use the resumable uploads, or send fewer files at a time.",
        },
        UploadRateTooLow => "upload_rate_too_low" {
            when: "After its grace, the upload averaged under `limits.min_upload_bytes_per_sec`.",
            then: "Use the resumable uploads, or a better connection.",
        },
        StorageFull => "storage_full" {
            when: "The server's disk or quota is full; nothing was stored.",
            then: "Keep the submission and try again later (hours, not seconds).",
        },
        NotFound => "not_found" {
            when: "No such route or page.",
            then: "Check the path against this document.",
        },
        NothingToAdd => "nothing_to_add" {
            when: "A follow-up with neither text nor a file.",
            then: "Send text, a file, or both.",
        },
        CodenameNotRecognized => "codename_not_recognized" {
            when: "The codename opens no case.",
            then: "Check each word with the person; do not retry in a loop (every try costs the server a derivation).",
        },
        SessionExpired => "session_expired" {
            when: "The follow-up session is gone: 15 minutes idle, or the server restarted.",
            then: "Open the case again with the codename.",
        },
        Busy => "busy" {
            when: "Every upload place (`limits.max_concurrent_uploads`) is taken, or the same sealed file is being imported at this moment.",
            then: "Wait `Retry-After` seconds, then send again.",
        },
        CrossSite => "cross_site_request" {
            when: "A form post that `Sec-Fetch-Site` or `Origin` says came from another site (pages only).",
            then: "Post the form from the server's own page.",
        },
        NotASealedFile => "not_a_sealed_file" {
            when: "The body is not a tar beginning with the field kit's `sealed.json`.",
            then: "Send only files made by `amanat seal`; never plaintext.",
        },
        SealedMemberRefused => "sealed_member_refused" {
            when: "A tar member other than the objects `sealed.json` lists (a link, a device, a path outside `objects/`, a duplicate).",
            then: "Seal the submission again with `amanat seal`.",
        },
        SealedObjectMismatch => "sealed_object_mismatch" {
            when: "An object's bytes do not hash to its id: damaged or altered on the way.",
            then: "Get another copy of the sealed file and send that.",
        },
        SealedObjectNotAge => "sealed_object_not_age" {
            when: "An object of the sealed file is not age-encrypted.",
            then: "Seal the submission again with `amanat seal`.",
        },
        SealedFieldInvalid => "sealed_field_invalid" {
            when: "A field of `sealed.json` is not what the field kit writes (an id not of 32 hex digits, a fingerprint not of 64).",
            then: "Seal the submission again with `amanat seal`.",
        },
        SealedRequestInvalid => "sealed_request_invalid" {
            when: "A JSON body on `/api/v1/sealed` that is not `{\"upload\": ID}`.",
            then: "Fix the client: send the id of a finished sealed upload.",
        },
        UploadNotFound => "upload_not_found" {
            when: "No such resumable upload: never made, ended, its time ran out, or the server restarted since.",
            then: "Create a new upload and send the file from the start.",
        },
        UploadIncomplete => "upload_incomplete" {
            when: "A submission names an upload that has not received all its bytes.",
            then: "Finish the upload (HEAD, then PATCH from its offset), then send the submission again.",
        },
        UploadWrongKind => "upload_wrong_kind" {
            when: "A sealed file's upload named in a submission, or a survivor's file's upload sent to `/api/v1/sealed`.",
            then: "Name each upload where its kind belongs.",
        },
        UploadOffsetMismatch => "upload_offset_mismatch" {
            when: "A PATCH's `Upload-Offset` is not the server's.",
            then: "Ask with HEAD and resume from the `Upload-Offset` it gives.",
        },
        UploadOffsetMissing => "upload_offset_missing" {
            when: "A PATCH without `Upload-Offset` in digits.",
            then: "Fix the client: send the offset it resumes from.",
        },
        UploadInUse => "upload_in_use" {
            when: "Another request is still feeding or submitting the upload.",
            then: "Wait a few seconds, then HEAD and resume.",
        },
        UploadTooLarge => "upload_too_large" {
            when: "`Upload-Length` over `uploads.max_upload_bytes` (OPTIONS gives it as `Tus-Max-Size`).",
            then: "Split the evidence into smaller files.",
        },
        UploadOverrun => "upload_overrun" {
            when: "More bytes than the upload's declared length.",
            then: "Fix the client: send exactly `Upload-Length` bytes.",
        },
        UploadEmpty => "upload_empty" {
            when: "A new upload of length 0.",
            then: "Do not upload empty files.",
        },
        UploadLengthRequired => "upload_length_required" {
            when: "A creation without `Upload-Length` (a deferred length is not supported).",
            then: "Send the file's length when creating the upload.",
        },
        UploadMetadataInvalid => "upload_metadata_invalid" {
            when: "`Upload-Metadata` is not comma-separated keys with base64 values of UTF-8 text, or names an unknown `kind`.",
            then: "Fix the client's metadata.",
        },
        UploadContentType => "upload_content_type" {
            when: "A PATCH whose body is not `application/offset+octet-stream`.",
            then: "Fix the client: send that media type.",
        },
        TusVersionUnsupported => "tus_version_unsupported" {
            when: "A tus request without `Tus-Resumable: 1.0.0`.",
            then: "Speak tus 1.0.0.",
        },
        TooManyUploads => "too_many_uploads" {
            when: "The server holds `uploads.max_held` unfinished uploads already.",
            then: "Wait `Retry-After` seconds, then create the upload again.",
        },
        Internal => "internal_error" {
            when: "Something failed on the server; nothing was stored (its log has the reason).",
            then: "Send again later; tell the operator if it repeats.",
        },
    }
}

impl IntakeError {
    /// Seconds a client should wait before sending again, where the refusal is for
    /// load (answered as `Retry-After`).
    pub fn retry_after(self) -> Option<u32> {
        matches!(self, IntakeError::Busy | IntakeError::TooManyUploads).then_some(120)
    }

    pub fn status(self) -> StatusCode {
        use IntakeError::{
            Busy, CodenameNotRecognized, ConsentMissing, CrossSite, DuplicateTestimony,
            FieldWithoutName, IncompleteUpload, Internal, InvalidFieldName, InvalidUtf8,
            MalformedMultipart, NestedMultipart, NotASealedFile, NotFound, NotMultipart,
            NothingToAdd, PartHeadersTooLarge, SealedFieldInvalid, SealedMemberRefused,
            SealedObjectMismatch, SealedObjectNotAge, SealedRequestInvalid, SessionExpired,
            StorageFull, SubmissionTooLarge, TestimonyMissing, TextTooLarge, TooManyFields,
            TooManyFiles, TooManyUploads, TusVersionUnsupported, UnexpectedFile, UploadContentType,
            UploadEmpty, UploadInUse, UploadIncomplete, UploadLengthRequired,
            UploadMetadataInvalid, UploadNotFound, UploadOffsetMismatch, UploadOffsetMissing,
            UploadOverrun, UploadRateTooLow, UploadStalled, UploadTooLarge, UploadTooSlow,
            UploadWrongKind,
        };
        match self {
            SubmissionTooLarge | TooManyFiles | TextTooLarge | TooManyFields
            | PartHeadersTooLarge | UploadTooLarge | UploadOverrun => StatusCode::PAYLOAD_TOO_LARGE,
            NotMultipart | UploadContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MalformedMultipart
            | NestedMultipart
            | FieldWithoutName
            | InvalidFieldName
            | UnexpectedFile
            | InvalidUtf8
            | TestimonyMissing
            | ConsentMissing
            | DuplicateTestimony
            | IncompleteUpload
            | NothingToAdd
            | NotASealedFile
            | SealedMemberRefused
            | SealedObjectMismatch
            | SealedObjectNotAge
            | SealedFieldInvalid
            | SealedRequestInvalid
            | UploadEmpty
            | UploadLengthRequired
            | UploadMetadataInvalid
            | UploadOffsetMissing => StatusCode::BAD_REQUEST,
            CrossSite => StatusCode::FORBIDDEN,
            CodenameNotRecognized | SessionExpired => StatusCode::UNAUTHORIZED,
            Busy | TooManyUploads => StatusCode::SERVICE_UNAVAILABLE,
            UploadStalled | UploadTooSlow | UploadRateTooLow => StatusCode::REQUEST_TIMEOUT,
            StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            NotFound | UploadNotFound => StatusCode::NOT_FOUND,
            UploadIncomplete | UploadOffsetMismatch | UploadWrongKind => StatusCode::CONFLICT,
            UploadInUse => StatusCode::LOCKED,
            TusVersionUnsupported => StatusCode::PRECONDITION_FAILED,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Plain words for the person who sent the request. `limit` fills in the number
    /// for limit refusals.
    pub fn message(self, limits: &crate::config::Limits) -> String {
        use IntakeError::{
            Busy, CodenameNotRecognized, ConsentMissing, CrossSite, DuplicateTestimony,
            FieldWithoutName, IncompleteUpload, Internal, InvalidFieldName, InvalidUtf8,
            MalformedMultipart, NestedMultipart, NotASealedFile, NotFound, NotMultipart,
            NothingToAdd, PartHeadersTooLarge, SealedFieldInvalid, SealedMemberRefused,
            SealedObjectMismatch, SealedObjectNotAge, SealedRequestInvalid, SessionExpired,
            StorageFull, SubmissionTooLarge, TestimonyMissing, TextTooLarge, TooManyFields,
            TooManyFiles, TooManyUploads, TusVersionUnsupported, UnexpectedFile, UploadContentType,
            UploadEmpty, UploadInUse, UploadIncomplete, UploadLengthRequired,
            UploadMetadataInvalid, UploadNotFound, UploadOffsetMismatch, UploadOffsetMissing,
            UploadOverrun, UploadRateTooLow, UploadStalled, UploadTooLarge, UploadTooSlow,
            UploadWrongKind,
        };
        match self {
            SubmissionTooLarge => format!(
                "The files are too large together: the limit is {} for one submission \
                 (limits.max_submission_bytes). Send fewer or smaller files now and the \
                 rest in another submission.",
                human_bytes(limits.max_submission_bytes)
            ),
            TooManyFiles => format!(
                "Too many files: at most {} in one submission (limits.max_files). Send the \
                 rest in another submission.",
                limits.max_files
            ),
            TextTooLarge => format!(
                "The text is too long: at most {} of text in one submission \
                 (limits.max_text_bytes). Shorten it, or attach it as a file.",
                human_bytes(limits.max_text_bytes as u64)
            ),
            TooManyFields => {
                format!("Too many form fields: at most {} (limits.max_fields).", limits.max_fields)
            }
            PartHeadersTooLarge => "A part of the form has headers that are too long \
                                    (a file name of many kilobytes?). Rename the file and send \
                                    again."
                .into(),
            NotMultipart => {
                "The request must be sent as multipart/form-data, as a web form with files is."
                    .into()
            }
            MalformedMultipart => "The upload could not be read: its multipart structure is \
                                   broken. Nothing was stored; please send it again."
                .into(),
            NestedMultipart => "Nested multipart parts are not accepted.".into(),
            FieldWithoutName => "A part of the form has no name; nothing was stored.".into(),
            InvalidFieldName => "A form field name is empty, too long (over 64 bytes) or \
                                 contains control characters."
                .into(),
            UnexpectedFile => "Files are accepted only in the field named \"evidence\".".into(),
            InvalidUtf8 => "A text field is not valid UTF-8 text.".into(),
            TestimonyMissing => "Please write what happened: the testimony is the one thing \
                                 this form needs."
                .into(),
            DuplicateTestimony => "The testimony field was sent more than once.".into(),
            ConsentMissing => "Please say who may read this (the form's last section). \
                               Nothing was stored."
                .into(),
            IncompleteUpload => "The upload ended before it was complete, so nothing was \
                                 stored. Please send it again."
                .into(),
            UploadStalled => format!(
                "The upload stopped: no data arrived for {} seconds \
                 (limits.idle_timeout_secs). Nothing was stored; please send it again.",
                limits.idle_timeout_secs
            ),
            UploadTooSlow => format!(
                "The upload took longer than {} minutes in all (limits.upload_deadline_secs). \
                 Nothing was stored; send fewer files at a time.",
                limits.upload_deadline_secs / 60
            ),
            UploadRateTooLow => format!(
                "The upload was too slow: after its first {} seconds it averaged under {} per \
                 second (limits.min_upload_bytes_per_sec). Nothing was stored; send it again \
                 from a better connection, or fewer files at a time.",
                limits.slow_upload_grace_secs,
                human_bytes(limits.min_upload_bytes_per_sec)
            ),
            StorageFull => "The server is out of storage space, so nothing was stored. \
                            Please try again later."
                .into(),
            NotFound => "There is no such page.".into(),
            NothingToAdd => "There is nothing to add: write something or choose a file.".into(),
            CodenameNotRecognized => "This codename does not open a case. Check each word; \
                                      Cyrillic or Latin letters, capitals and spaces do not \
                                      matter."
                .into(),
            SessionExpired => "Your case was closed after 15 minutes without activity, to \
                               protect you. Nothing was stored. Enter your codename again."
                .into(),
            CrossSite => "This form was sent from another website, so it was refused and \
                          nothing was stored. Open this site's own page and try again."
                .into(),
            NotASealedFile => "This is not a sealed file made by `amanat seal`: it must be a \
                               tar beginning with sealed.json. Nothing was stored."
                .into(),
            SealedMemberRefused => "The sealed file holds something other than the encrypted \
                                    objects its sealed.json lists (another path, a link, a \
                                    device, or an object twice). Nothing was stored."
                .into(),
            SealedObjectMismatch => "An object in the sealed file does not match its id: it \
                                     was damaged or altered on the way. Nothing was stored; \
                                     ask for another copy."
                .into(),
            SealedObjectNotAge => "An object in the sealed file is not an age-encrypted file. \
                                   Nothing was stored."
                .into(),
            SealedFieldInvalid => "A field of the sealed file's sealed.json is not what \
                                   `amanat seal` writes (an id or a fingerprint of the wrong \
                                   form). Nothing was stored."
                .into(),
            SealedRequestInvalid => "As JSON, /api/v1/sealed takes only {\"upload\": ID}, the \
                                     id of a finished upload of a sealed file. Nothing was \
                                     stored."
                .into(),
            Busy => {
                "The server is busy. Nothing was stored. Please try again in a few minutes.".into()
            }
            UploadNotFound => "There is no such upload: it was ended, its time to resume ran \
                               out, or the server restarted since (unfinished uploads do not \
                               survive a restart). Nothing of it is kept; please upload the \
                               file again."
                .into(),
            UploadIncomplete => "An upload this submission names has not received all its \
                                 bytes yet. Nothing was stored; finish the upload, then send \
                                 again."
                .into(),
            UploadWrongKind => "This upload is not of the kind this request takes: a sealed \
                                file's upload goes to /api/v1/sealed, a survivor's file's in a \
                                submission's upload field. Nothing was stored."
                .into(),
            UploadOffsetMismatch => "The upload's offset is not where the server is: ask with \
                                     HEAD and resume from the Upload-Offset it gives."
                .into(),
            UploadInUse => "Another request is still sending or submitting this upload. Try \
                            again in a few seconds."
                .into(),
            UploadOffsetMissing => "A PATCH must give the offset it resumes from \
                                    (Upload-Offset, in digits)."
                .into(),
            UploadTooLarge => "The file is too large for one upload (uploads.max_upload_bytes; \
                               OPTIONS gives the limit as Tus-Max-Size)."
                .into(),
            UploadOverrun => "More bytes were sent than the upload's declared length; they \
                              were not taken."
                .into(),
            UploadEmpty => "The file is empty: there is nothing to upload.".into(),
            UploadLengthRequired => "A new upload must give its length (Upload-Length); a \
                                     deferred length is not supported."
                .into(),
            UploadMetadataInvalid => "Upload-Metadata must be comma-separated keys, each with \
                                      a base64 value of UTF-8 text."
                .into(),
            UploadContentType => "An upload's bytes must be sent as \
                                  application/offset+octet-stream."
                .into(),
            TusVersionUnsupported => {
                "This server speaks tus 1.0.0: send Tus-Resumable: 1.0.0.".into()
            }
            TooManyUploads => "The server holds as many unfinished uploads as it allows. \
                               Nothing was stored. Please try again in a few minutes."
                .into(),
            Internal => "Something went wrong on the server and nothing was stored. \
                         Please try again."
                .into(),
        }
    }

    /// Maps a storage failure: a full disk is the client's business (507, try later);
    /// anything else is ours.
    pub fn from_io(e: &io::Error) -> IntakeError {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => IntakeError::StorageFull,
            _ => {
                tracing::error!(error = %e, "storage failure");
                IntakeError::Internal
            }
        }
    }
}

/// Sizes as people read them: "2 GiB", "256 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{} {}", value as u64, UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

stable_codes! {
    /// The admin socket's own refusals. Their codes are in the same stable list as the
    /// API's (`all_codes`); an imported sealed file is refused with the API's codes.
    pub enum AdminRefusal {
        BadRequest => "bad_request" {
            when: "Not a request of this version, or a request out of order.",
            then: "Use the `amanat` of the server's own version.",
        },
        NoSuchObject => "no_such_object" {
            when: "`amanat object` names an object the store does not hold.",
            then: "Check the id (`amanat status`, the bundle's index).",
        },
        RecipientsRefused => "recipients_refused" {
            when: "`reload` found a recipients file that fails the start-up checks; the old recipients stay.",
            then: "Fix the recipients file and reload again.",
        },
        ReplyRefused => "reply_refused" {
            when: "A reply that is not a sealed reply to the case's current key, or to no such case.",
            then: "Seal the reply again with `amanat reply` from a current bundle.",
        },
        NotConfirmed => "not_confirmed" {
            when: "An export was not confirmed: nothing was marked exported.",
            then: "Export again; the same submissions are still new.",
        },
        Failed => "failed" {
            when: "The server could not do it (its log has the reason).",
            then: "Read the server's log, fix the cause, and try again.",
        },
    }
}

/// Every stable error code amanat answers with, the API's and the admin socket's.
pub fn all_codes() -> impl Iterator<Item = &'static str> {
    IntakeError::ALL.iter().map(|e| e.code()).chain(AdminRefusal::ALL.iter().map(|r| r.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_stable_snake_case_and_names_one_refusal() {
        let codes: Vec<&str> = all_codes().collect();
        assert_eq!(codes.len(), IntakeError::ALL.len() + AdminRefusal::ALL.len());
        let unique: std::collections::HashSet<&str> = codes.iter().copied().collect();
        assert_eq!(unique.len(), codes.len(), "a code used twice: {codes:?}");
        assert!(codes
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
    }

    #[test]
    fn limits_are_named_in_human_units() {
        assert_eq!(human_bytes(2 * 1024 * 1024 * 1024), "2 GiB");
        assert_eq!(human_bytes(262_144), "256 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100), "100 bytes");
    }
}
