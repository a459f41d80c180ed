//! Every code of spec section 3 is provoked by at least one test of this
//! suite: this test reads the suite's sources and fails naming any code that
//! no assertion checks.

use moms::api::error::Code;

/// Whether `line` asserts that an answer carried `code`.
fn asserts_code(line: &str, code: u16) -> bool {
    let n = code.to_string();
    let patterns = [
        format!(", {n});"),
        format!(", {n})"),
        format!("\"{n}\""),
        format!("({n})"),
        format!("code(), {n}"),
    ];
    let asserting =
        line.contains("assert") || line.contains("Terminated") || line.contains("\"code\"");
    asserting && patterns.iter().any(|p| line.contains(p.as_str()))
}

#[test]
fn every_code_of_the_table_is_provoked_by_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let mut sources = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("codes.rs") {
            sources.push_str(&std::fs::read_to_string(&path).unwrap());
            sources.push('\n');
        }
    }
    let missing: Vec<u16> = Code::ALL
        .iter()
        .map(|c| c.number())
        .filter(|&n| !sources.lines().any(|line| asserts_code(line, n)))
        .collect();
    assert!(missing.is_empty(), "codes no test asserts: {missing:?}");
}
