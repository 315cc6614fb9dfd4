//! Turns docs/openapi.yaml, the API's one contract, into the JSON the server answers
//! `GET /api/v1/openapi.json` with: one source, converted once at build time, so the
//! server carries no YAML parser.

use serde_json::{Map, Value};
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

const CONTRACT: &str = "docs/openapi.yaml";

fn main() {
    println!("cargo:rerun-if-changed={CONTRACT}");
    let text = std::fs::read_to_string(CONTRACT).expect("docs/openapi.yaml is readable");
    let documents = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{CONTRACT}: {e}"));
    let [document] = documents.as_slice() else {
        panic!("{CONTRACT}: expected one YAML document");
    };
    let json = serde_json::to_string(&to_json(document, "")).expect("JSON");
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.json");
    std::fs::write(out, json).expect("OUT_DIR is writable");
}

/// The JSON value of a YAML node; `at` names where it is, for errors.
fn to_json(node: &Yaml, at: &str) -> Value {
    match node {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => {
            let number = r.parse::<f64>().ok().and_then(serde_json::Number::from_f64);
            Value::Number(number.unwrap_or_else(|| panic!("{CONTRACT}: {at}: {r} is not a number")))
        }
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        Yaml::Array(items) => Value::Array(
            items.iter().enumerate().map(|(i, item)| to_json(item, &format!("{at}/{i}"))).collect(),
        ),
        Yaml::Hash(entries) => {
            let mut object = Map::new();
            for (key, value) in entries {
                // JSON keys are text: a status code written `200:` is the key "200".
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => panic!("{CONTRACT}: {at}: a key that is not text: {other:?}"),
                };
                let value = to_json(value, &format!("{at}/{key}"));
                let twice = object.insert(key.clone(), value).is_some();
                assert!(!twice, "{CONTRACT}: {at}: the key {key} twice");
            }
            Value::Object(object)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            panic!("{CONTRACT}: {at}: anchors and aliases are not used here")
        }
    }
}
