//! The typed client is checked against the document: every endpoint it calls is in the committed
//! OpenAPI document (`docs/openapi.json`) with the same method, and every endpoint constant is
//! listed in `ep::ALL` (so a method added with a new constant is checked too).

use ferry_client::ep;

fn document() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/openapi.json is readable");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

#[test]
fn every_client_endpoint_is_in_the_openapi_document() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut missing = Vec::new();
    for e in ep::ALL {
        let found = paths
            .get(e.path)
            .and_then(|p| p.get(e.method))
            .is_some_and(|op| op.is_object());
        if !found {
            missing.push(format!("{} {}", e.method.to_uppercase(), e.path));
        }
    }
    assert!(
        missing.is_empty(),
        "the client calls endpoints docs/openapi.json does not have: {missing:?}"
    );
}

#[test]
fn every_endpoint_constant_is_listed_once() {
    let src = include_str!("../src/lib.rs");
    let defined = src.matches(": Ep = Ep::new(").count();
    assert_eq!(
        defined,
        ep::ALL.len(),
        "ep::ALL lists {} endpoints, but {defined} are defined: list every one",
        ep::ALL.len()
    );
    for (i, a) in ep::ALL.iter().enumerate() {
        assert!(
            !ep::ALL[i + 1..].contains(a),
            "{} {} is listed twice",
            a.method,
            a.path
        );
    }
}

#[test]
fn paths_are_filled_one_segment_per_argument() {
    assert_eq!(
        ep::OVERRIDE_REMOVE.fill(&["HR sync", "Doe, Jane/x"]),
        "/profiles/HR%20sync/overrides/Doe%2C%20Jane%2Fx"
    );
    assert_eq!(ep::CYCLES.fill(&[]), "/cycles");
}
