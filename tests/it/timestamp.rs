//! RFC 3161 tokens from OpenSSL's own TSA (`openssl ts -reply`, a CA made by
//! `openssl req`), checked by amanat's one token check: what OpenSSL stamps is
//! accepted, and a token from another CA, over other bytes, cut short, with an edited
//! time, or another nonce is not.

use crate::common::tsa::{KeyKind, TestTsa};
use amanat::log::timestamp::{check_token, TimestampError, TimestampRequest, TsaTrust};

const CHECKPOINT: &[u8] = b"amanat-test\n3\nRcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0=\n\n\xe2\x80\x94 amanat-test AAAA\n";

fn trust(tsa: &TestTsa) -> TsaTrust {
    TsaTrust::from_pem(&std::fs::read(&tsa.ca_pem).unwrap()).unwrap()
}

/// Replaces the first occurrence of `from` in `bytes` with `to` (same length).
fn edited(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the bytes are there");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn openssl_tokens_are_accepted_and_forgeries_refused() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [KeyKind::Rsa, KeyKind::P256] {
        let tsa = TestTsa::new(dir.path(), &format!("{kind:?}"), kind);
        let request = TimestampRequest::new(CHECKPOINT);
        let response = tsa.stamp(&request.der);

        // OpenSSL's own verifier and ours agree on the genuine token.
        let data = dir.path().join("checkpoint");
        let token = dir.path().join("token.tsr");
        std::fs::write(&data, CHECKPOINT).unwrap();
        std::fs::write(&token, &response).unwrap();
        assert!(tsa.openssl_verifies(&data, &token), "{kind:?}: openssl ts -verify");
        let stamp = request.check(&response, CHECKPOINT, &trust(&tsa)).expect("accepted");
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(stamp.time.abs_diff(now) < 120, "{kind:?}: the TSA's time, {}", stamp.time);
        assert_eq!(stamp.accuracy_ms, 1500);
        assert_eq!(stamp.tsa, format!("CN={kind:?} TSA"));
        // Without a nonce to compare (a lawyer's verify), the same token holds.
        check_token(&response, CHECKPOINT, None, &trust(&tsa)).unwrap();

        // Another CA's anchor.
        let stranger = TestTsa::new(dir.path(), &format!("stranger-{kind:?}"), kind);
        assert!(matches!(
            request.check(&response, CHECKPOINT, &trust(&stranger)),
            Err(TimestampError::Untrusted(_))
        ));
        // A token over another checkpoint.
        let other = b"amanat-test\n4\nAAAA\n\n";
        assert_eq!(
            request.check(&response, other, &trust(&tsa)),
            Err(TimestampError::WrongImprint)
        );
        assert!(!tsa.openssl_verifies(
            &{
                let p = dir.path().join("other");
                std::fs::write(&p, other).unwrap();
                p
            },
            &token
        ));
        // A token answering someone else's request (another nonce).
        let replay = TimestampRequest::new(CHECKPOINT);
        assert_eq!(
            replay.check(&response, CHECKPOINT, &trust(&tsa)),
            Err(TimestampError::WrongNonce)
        );
        // Cut short, anywhere.
        for cut in [0, 1, response.len() / 2, response.len() - 1] {
            assert!(matches!(
                request.check(&response[..cut], CHECKPOINT, &trust(&tsa)),
                Err(TimestampError::Malformed(_))
            ));
        }
        // The time edited, one digit of the year in genTime: the signed digest no
        // longer matches, and OpenSSL agrees.
        let year = time::OffsetDateTime::from_unix_timestamp(stamp.time as i64).unwrap().year();
        let forged =
            edited(&response, format!("{year}").as_bytes(), format!("{}", year - 1).as_bytes());
        assert_eq!(
            request.check(&forged, CHECKPOINT, &trust(&tsa)),
            Err(TimestampError::BadSignature)
        );
        std::fs::write(&token, &forged).unwrap();
        assert!(!tsa.openssl_verifies(&data, &token), "openssl refuses the edited time");
    }
}

#[test]
fn a_trust_file_must_hold_certificates() {
    assert!(TsaTrust::from_pem(b"").is_err());
    assert!(TsaTrust::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .is_err());
}
