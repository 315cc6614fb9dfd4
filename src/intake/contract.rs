//! The API as a contract: docs/openapi.yaml (turned into JSON by build.rs) served at
//! `GET /api/v1/openapi.json`, and the table of every stable error code
//! (docs/error-codes.md), made from the codes' one list in `error`. Tests here keep the
//! code, the document and the table saying the same.

use super::error::{AdminRefusal, IntakeError};
use actix_web::HttpResponse;

/// docs/openapi.yaml as JSON, converted at build time.
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI_JSON)
}

/// docs/error-codes.md: every stable code, its status, when it is answered and what a
/// client should do.
pub fn code_table() -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         <!-- Made from the codes' own list (src/intake/error.rs) by \
         `AMANAT_BLESS=1 cargo test --release --lib contract`; a test fails when this \
         file and the code differ. -->\n\n\
         Every refusal of the HTTP API is JSON, `{\"error\": {\"code\": CODE, \"message\": \
         TEXT}}`: the code is stable and meant for programs, the message is for a person \
         and may change. Pages answer the same refusals as a page in the survivor's \
         language. A refused request stored nothing. The same codes, with each route's \
         own, are in the API's contract, [docs/openapi.yaml](openapi.yaml).\n\n\
         | Code | HTTP status | When | What the client should do |\n|---|---|---|---|\n",
    );
    for error in IntakeError::ALL {
        let status = error.status();
        let mut answer =
            format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default());
        if let Some(secs) = error.retry_after() {
            answer.push_str(&format!(", `Retry-After: {secs}`"));
        }
        out.push_str(&row(error.code(), &answer, error.when(), error.then()));
    }
    out.push_str(
        "\nThe admin socket (`amanat status`, `export`, `reload`, `reply` and the other \
         operator commands, over the Unix socket only) answers its own refusals with these \
         codes, and a refused import of a sealed file with the API's codes above.\n\n\
         | Code | Answered on | When | What the operator should do |\n|---|---|---|---|\n",
    );
    for refusal in AdminRefusal::ALL {
        out.push_str(&row(refusal.code(), "the admin socket", refusal.when(), refusal.then()));
    }
    out
}

fn row(code: &str, answer: &str, when: &str, then: &str) -> String {
    format!("| `{code}` | {answer} | {when} | {then} |\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};

    fn document() -> Value {
        serde_json::from_str(OPENAPI_JSON).unwrap()
    }

    /// What `$ref` (a local JSON pointer) names in `doc`.
    fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                let target = doc.pointer(pointer.trim_start_matches('#'));
                resolve(doc, target.unwrap_or_else(|| panic!("{pointer} names nothing")))
            }
            None => value,
        }
    }

    /// Every error code a response's schema lists (an `enum` or `const` of the error
    /// body's `code`), following references.
    fn codes_in(doc: &Value, value: &Value, depth: usize, out: &mut BTreeSet<String>) {
        assert!(depth < 32, "references loop");
        let value = resolve(doc, value);
        if let Some(code) = value.pointer("/properties/error/properties/code") {
            let code = resolve(doc, code);
            let listed = code.get("enum").and_then(Value::as_array).cloned().unwrap_or_default();
            out.extend(
                listed.iter().chain(code.get("const")).filter_map(Value::as_str).map(String::from),
            );
        }
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    if key != "examples" && key != "example" {
                        codes_in(doc, inner, depth + 1, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| codes_in(doc, i, depth + 1, out)),
            _ => {}
        }
    }

    /// (status, code) for every code any operation says it answers.
    fn answered(doc: &Value) -> BTreeSet<(u16, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(responses) = operation.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                for (status, response) in responses {
                    let mut codes = BTreeSet::new();
                    codes_in(doc, response, 0, &mut codes);
                    let status: u16 = status.parse().unwrap_or_else(|_| {
                        panic!("{method} {path}: the status {status} is not a number")
                    });
                    out.extend(codes.into_iter().map(|c| (status, c)));
                }
            }
        }
        out
    }

    #[test]
    fn every_code_the_server_answers_is_in_the_contract_under_its_own_status_and_no_other() {
        let doc = document();
        let ours: BTreeMap<String, u16> =
            IntakeError::ALL.iter().map(|e| (e.code().to_string(), e.status().as_u16())).collect();
        let listed: BTreeMap<String, u16> = doc["x-error-codes"]
            .as_object()
            .expect("x-error-codes")
            .iter()
            .map(|(code, status)| (code.clone(), status.as_u64().unwrap() as u16))
            .collect();
        assert_eq!(listed, ours, "x-error-codes and IntakeError differ");
        let answered = answered(&doc);
        let named: BTreeSet<&String> = answered.iter().map(|(_, code)| code).collect();
        // The codes only pages answer (the form's consent, a page's session, a cross-site
        // form post) are listed apart; every other code is some operation's.
        let missing: BTreeSet<&String> = ours.keys().filter(|c| !named.contains(c)).collect();
        let page_only = doc["x-page-only-error-codes"].as_array().expect("x-page-only-error-codes");
        let page_only: BTreeSet<&String> = page_only
            .iter()
            .map(|c| ours.get_key_value(c.as_str().unwrap()).expect("a page-only code of ours").0)
            .collect();
        assert_eq!(missing, page_only, "codes no operation of the contract names");
        for (status, code) in &answered {
            assert_eq!(
                ours.get(code),
                Some(status),
                "the contract answers {code} with {status}, the server with {:?}",
                ours.get(code)
            );
        }
    }

    #[test]
    fn the_table_of_codes_in_docs_is_the_codes_own() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/error-codes.md");
        let table = code_table();
        if std::env::var_os("AMANAT_BLESS").is_some() {
            std::fs::write(path, &table).unwrap();
        }
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == table,
            "docs/error-codes.md is not the codes' own table: run \
             AMANAT_BLESS=1 cargo test --release --lib contract"
        );
    }
}
