//! Refusals: a stable code for clients and tests, a status, and a message a person
//! understands. Messages never contain anything the survivor sent.

use actix_web::http::StatusCode;
use std::io;

/// Declares a refusal enum, its stable codes and the list of all of them from one
/// table, so that no refusal can be left out of the list.
macro_rules! stable_codes {
    ($(#[$outer:meta])* pub enum $name:ident {
        $( $(#[$doc:meta])* $variant:ident => $code:literal, )*
    }) => {
        $(#[$outer])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$doc])* $variant, )*
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
        }
    };
}

stable_codes! {
    pub enum IntakeError {
        /// All files together passed `limits.max_submission_bytes`.
        SubmissionTooLarge => "submission_too_large",
        TooManyFiles => "too_many_files",
        /// All text fields together passed `limits.max_text_bytes`.
        TextTooLarge => "text_too_large",
        TooManyFields => "too_many_fields",
        /// A part's headers did not fit the multipart parser's buffer.
        PartHeadersTooLarge => "part_headers_too_large",
        NotMultipart => "not_multipart",
        MalformedMultipart => "malformed_multipart",
        NestedMultipart => "nested_multipart",
        FieldWithoutName => "field_without_name",
        InvalidFieldName => "invalid_field_name",
        UnexpectedFile => "unexpected_file",
        InvalidUtf8 => "invalid_utf8",
        TestimonyMissing => "testimony_missing",
        /// The web form's consent question was not answered.
        ConsentMissing => "consent_missing",
        DuplicateTestimony => "duplicate_testimony",
        /// The client stopped sending before the upload was complete.
        IncompleteUpload => "incomplete_upload",
        /// No bytes arrived for `limits.idle_timeout_secs`.
        UploadStalled => "upload_stalled",
        /// The upload took longer than `limits.upload_deadline_secs` in all.
        UploadTooSlow => "upload_too_slow",
        /// The upload kept an average below `limits.min_upload_bytes_per_sec` past its grace.
        UploadRateTooLow => "upload_rate_too_low",
        StorageFull => "storage_full",
        NotFound => "not_found",
        /// A follow-up with neither text nor a file.
        NothingToAdd => "nothing_to_add",
        /// The codename opens no case (API only: the page answers with its form again).
        CodenameNotRecognized => "codename_not_recognized",
        /// The follow-up session is gone (15 minutes idle, or the server restarted).
        SessionExpired => "session_expired",
        /// The server holds as many open follow-up sessions as it allows.
        Busy => "busy",
        /// A form post from another site.
        CrossSite => "cross_site_request",
        /// Not a tar beginning with `sealed.json` of ours.
        NotASealedFile => "not_a_sealed_file",
        /// A tar member other than the objects `sealed.json` lists: a link, a device, a
        /// path outside `objects/`, a duplicate.
        SealedMemberRefused => "sealed_member_refused",
        SealedObjectMismatch => "sealed_object_mismatch",
        SealedObjectNotAge => "sealed_object_not_age",
        /// A field of `sealed.json` is not what the field kit writes (an id that is not
        /// 32 hex digits, a recipients fingerprint that is not 64).
        SealedFieldInvalid => "sealed_field_invalid",
        /// A JSON body on `/api/v1/sealed` that is not `{"upload": ID}`.
        SealedRequestInvalid => "sealed_request_invalid",
        /// No such resumable upload: never made, ended, its time ran out, or the server
        /// restarted since (unfinished uploads do not survive a restart).
        UploadNotFound => "upload_not_found",
        /// A submission named an upload that has not received all its bytes.
        UploadIncomplete => "upload_incomplete",
        /// A sealed file's upload named by a submission, or a survivor's file's by
        /// `/api/v1/sealed`.
        UploadWrongKind => "upload_wrong_kind",
        /// A PATCH's `Upload-Offset` is not what the server has (ask with HEAD).
        UploadOffsetMismatch => "upload_offset_mismatch",
        /// A PATCH without `Upload-Offset` (or not a number).
        UploadOffsetMissing => "upload_offset_missing",
        /// Another request is still feeding the upload and did not let go in time.
        UploadInUse => "upload_in_use",
        /// `Upload-Length` over `uploads.max_upload_bytes`.
        UploadTooLarge => "upload_too_large",
        /// More bytes than the upload's declared length.
        UploadOverrun => "upload_overrun",
        UploadEmpty => "upload_empty",
        /// A creation without `Upload-Length` (a deferred length is not supported).
        UploadLengthRequired => "upload_length_required",
        UploadMetadataInvalid => "upload_metadata_invalid",
        /// A PATCH whose body is not `application/offset+octet-stream`.
        UploadContentType => "upload_content_type",
        /// A tus request without `Tus-Resumable: 1.0.0`.
        TusVersionUnsupported => "tus_version_unsupported",
        /// The server holds `uploads.max_held` uploads already.
        TooManyUploads => "too_many_uploads",
        Internal => "internal_error",
    }
}

impl IntakeError {
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
        /// Not a request of this version, or a request out of order.
        BadRequest => "bad_request",
        NoSuchObject => "no_such_object",
        /// `reload` found a recipients file that fails the start-up checks.
        RecipientsRefused => "recipients_refused",
        ReplyRefused => "reply_refused",
        /// The export was not confirmed: nothing was marked exported.
        NotConfirmed => "not_confirmed",
        /// The server could not do it (its log has the reason).
        Failed => "failed",
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
