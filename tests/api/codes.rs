//! Every code of spec section 3 is provoked by at least one test of this
//! suite: this test reads the suite's sources and fails naming any code that
//! no assertion checks.

use std::collections::BTreeSet;

use moms::api::error::Code;

/// The codes asserted in `source` (whitespace removed): the last argument
/// of every `assert_code(…)`, JSON `"code"` comparisons, `.code(), N`, and
/// the codes of terminal history events (`Terminated (600)`).
fn asserted_codes(source: &str) -> BTreeSet<u16> {
    let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut codes = BTreeSet::new();
    let mut rest = compact.as_str();
    while let Some(at) = rest.find("assert_code(") {
        rest = &rest[at + "assert_code(".len()..];
        let (mut depth, mut end) = (1, 0);
        for (i, c) in rest.char_indices() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = i;
                break;
            }
        }
        let args = &rest[..end];
        if let Some(last) = args.rsplit(',').find(|s| !s.is_empty())
            && let Ok(code) = last.parse()
        {
            codes.insert(code);
        }
    }
    for prefix in ["[\"code\"],\"", "code(),", "Terminated(", "Terminated ("] {
        let mut rest = compact.as_str();
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(code) = digits.parse() {
                codes.insert(code);
            }
        }
    }
    codes
}

#[test]
fn every_code_of_the_table_is_provoked_by_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let mut asserted = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("codes.rs") {
            asserted.extend(asserted_codes(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    let missing: Vec<u16> = Code::ALL
        .iter()
        .map(|c| c.number())
        .filter(|n| !asserted.contains(n))
        .collect();
    assert!(missing.is_empty(), "codes no test asserts: {missing:?}");
}

#[test]
fn the_scanner_sees_multi_line_assertions_only() {
    let source =
        "assert_code(\n    &send(&server, &[(\"to\", \"1\")]).await,\n    437,\n);\nlet x = 438;";
    assert_eq!(asserted_codes(source), BTreeSet::from([437]));
}
